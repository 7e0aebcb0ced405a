// The packed DiT through its one runner (src/worker/dit.ts), whose blocks are the plans of src/models/ditBlocks.ts,
// against the reference fixtures: every `dit_forward` case fp32 on the CPU executor (the README's 1e-4 bar, with the
// RoPE table and the packed tokens), one case fp32 on WebGPU/SwiftShader through the float-weight kernels, weights
// streamed within a budget, the 4-bit plan on WebGPU against the 4-bit plan on the CPU (the same weights: what the
// product runs, checked value for value), and the 4-bit and fp16 paths against the fixtures with ceilings. TeaCache's
// probe is checked against a float64 computation of block 0's modulation, and the plans, built for the real config,
// must consume exactly the real checkpoint's tensors (12,874,314,816 parameters). Dispatch counts come from the plans.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import realConfigJson from '../../src/models/configs/transformer.json' with { type: 'json' };
import { buildDiT, ditTensorShapes, hiddenSize, parseDiTConfig, type DiTConfig } from '../../src/models/dit.ts';
import { forwardDispatches, planDispatches, stageReads, stageWrites, stagesFor, TEACACHE_PROBE, type BlockPlan } from '../../src/models/ditBlocks.ts';
import { distilledGuidanceValue, fmDenoiser, type VelocityModel } from '../../src/pipeline/fmWrapper.ts';
import { packedRopeTable, ropeConfigFromDit } from '../../src/pipeline/ropeTables.ts';
import { fluxMu, fluxSigmas, noisyTokenCount } from '../../src/pipeline/sigmas.ts';
import { TeaCacheRule } from '../../src/pipeline/teacache.ts';
import { sampleUniPC } from '../../src/pipeline/unipc.ts';
import type { Tensor } from '../../src/pipeline/tensor.ts';
import { formatError, tensorError } from '../../src/pipeline/tensorError.ts';
import { openCheckpoint, type Checkpoint } from '../../src/weights/checkpoint.ts';
import { nodeFolderSource } from '../../src/weights/nodeFileSource.ts';
import { DiTInputError } from '../../src/errors/index.ts';
import { createDiT, timestepSinusoid, type DiTEmbedding, type DiTInputs, type DiTRunner, type DiTRunnerOptions, type DiTStreams, type TeaCacheSlot } from '../../src/worker/dit.ts';
import { cpuTensor, tensorData, type OrtTensor } from '../../src/runtime/ort.ts';
import { fixturesDir, listCases, loadFixture, type FixtureFile } from '../helpers/fixtures.ts';
import { ortReady } from '../helpers/ortSetup.ts';
import { testGpu } from '../helpers/webgpu.ts';
import { WeightResidency, hostBlockBytes } from '../../src/runtime/residency.ts';
import { hostWeights } from '../../src/runtime/weightFeeds.ts';

const REAL_PARAMETERS = 12_874_314_816;
const dir = fixturesDir();
const caseFiles: FixtureFile[] = [];
const samplerCases: FixtureFile[] = [];
for (const path of await listCases(dir)) {
  const f = await loadFixture(path);
  if (f.meta.case === 'dit_forward') caseFiles.push(f);
  if (f.meta.case === 'sampler') samplerCases.push(f);
}
const caseName = (f: FixtureFile) => f.path.split('/').pop()!.replace('.safetensors', '');

const checkpoints = new Map<string, Promise<Checkpoint>>();
function checkpointOf(f: FixtureFile): Promise<Checkpoint> {
  const folder = join(dir, f.meta.weights as string);
  let c = checkpoints.get(folder);
  if (!c) checkpoints.set(folder, (c = openCheckpoint(nodeFolderSource(folder), folder, 'diffusion_pytorch_model.safetensors')));
  return c;
}

/** The case's inputs as the engine would pass them, the RoPE table built by pipeline/ropeTables.ts. */
function caseInputs(f: FixtureFile, config: Record<string, unknown>, patchSize: number, latents: Tensor = f.f32('hidden_states')): DiTInputs {
  const [h, w] = latents.shape.slice(3);
  const indices = {
    latentIndices: f.ints('latent_indices'),
    cleanLatentIndices: f.ints('clean_latent_indices'),
    clean2xIndices: f.ints('clean_latent_2x_indices'),
    clean4xIndices: f.ints('clean_latent_4x_indices'),
  };
  return {
    latents,
    timestep: f.names.includes('timestep') ? f.f32('timestep').data[0] : NaN,
    guidance: f.names.includes('guidance') ? f.f32('guidance').data[0] : NaN,
    textStates: f.f32('encoder_hidden_states'),
    textMask: f.bools('encoder_attention_mask'),
    pooledProjections: f.f32('pooled_projections'),
    imageEmbeddings: f.f32('image_embeddings'),
    cleanLatents: f.f32('clean_latents'),
    cleanLatents2x: f.f32('clean_latents_2x'),
    cleanLatents4x: f.f32('clean_latents_4x'),
    rope: packedRopeTable(indices, h, w, patchSize, ropeConfigFromDit(config)),
  };
}

async function inputsOf(f: FixtureFile): Promise<DiTInputs> {
  const checkpoint = await checkpointOf(f);
  return caseInputs(f, checkpoint.config, parseDiTConfig(checkpoint.config).patchSize);
}

/** One runner per weights folder and options, shared by the tests and released at the end of the file. */
const runners = new Map<string, Promise<DiTRunner>>();
function runnerFor(f: FixtureFile, options: DiTRunnerOptions): Promise<DiTRunner> {
  const key = `${f.meta.weights as string}/${JSON.stringify(options)}`;
  let r = runners.get(key);
  if (!r) runners.set(key, (r = ortReady().then(async () => createDiT(await checkpointOf(f), options))));
  return r;
}
afterAll(async () => {
  for (const r of runners.values()) await (await r).release();
});

describe('DiT plans: the real checkpoint layout and the plans\' shape', () => {
  it('parses the tiny and the real config.json', async () => {
    const tiny = parseDiTConfig((await checkpointOf(caseFiles[0])).config);
    expect(hiddenSize(tiny)).toBe(64);
    expect(tiny.ropeAxesDim).toEqual([8, 12, 12]);
    const real = parseDiTConfig(realConfigJson);
    expect([hiddenSize(real), real.layers, real.singleLayers, real.refinerLayers]).toEqual([3072, 20, 40, 2]);
  });

  it(`consumes exactly the real transformer tensors with their shapes, ${REAL_PARAMETERS.toLocaleString('en')} parameters, 4-bit or not`, () => {
    const realShapes = (JSON.parse(readFileSync(join(dir, 'real_shapes.json'), 'utf8')) as Record<string, Record<string, number[]>>).transformer;
    const count = (shapes: Iterable<number[]>) => [...shapes].reduce((n, s) => n + s.reduce((a, b) => a * b, 1), 0);
    expect(count(Object.values(realShapes))).toBe(REAL_PARAMETERS);
    const config = parseDiTConfig(realConfigJson);
    for (const quantized of [false, true]) {
      const consumed = ditTensorShapes(config, buildDiT(config, { quantized }));
      // The reference reads every tensor of its checkpoint: nothing is allowed to go unused.
      const missing = Object.keys(realShapes).filter((n) => !consumed.has(n));
      const extra = [...consumed.keys()].filter((n) => !(n in realShapes));
      expect({ missing, extra }).toEqual({ missing: [], extra: [] });
      for (const [name, shape] of consumed) expect([name, shape]).toEqual([name, realShapes[name]]);
      expect(count(consumed.values())).toBe(REAL_PARAMETERS);
    }
  });

  it('at the real size: the products each plan makes, every one 4-bit when quantized and float otherwise', () => {
    const config = parseDiTConfig(realConfigJson);
    const products = (plan: BlockPlan) =>
      plan.stages.flatMap((s) => {
        if (s.op !== 'linear' && s.op !== 'adaParams') return [];
        const l = s.linear;
        const names = l.parts.map((p) => p.prefix.replace(/^(single_)?transformer_blocks\.\{i\}\./, '')).join(' + ');
        const rows = s.op === 'linear' && s.rows ? ` (${s.rows} rows)` : s.op === 'adaParams' ? ` of SiLU(temb) → ${s.out} [${s.chunks} × ${l.n / s.chunks}]` : '';
        return [`${names} [${l.kOffset}:${l.kOffset + l.k}] → ${l.n}${l.bias ? ' +bias' : ''}${l.epilogue === 'gelu_tanh' ? ' +gelu' : ''}${rows}`];
      });
    for (const quantized of [true, false]) {
      const { blocks } = buildDiT(config, { dtype: 'float16', quantized });
      expect(products(blocks.dual)).toEqual([
        'norm1.linear [0:3072] → 18432 +bias of SiLU(temb) → mod_x [6 × 3072]',
        'norm1_context.linear [0:3072] → 18432 +bias of SiLU(temb) → mod_c [6 × 3072]',
        'attn.to_q + attn.to_k + attn.to_v [0:3072] → 9216 +bias',
        'attn.add_q_proj + attn.add_k_proj + attn.add_v_proj [0:3072] → 9216 +bias',
        'attn.to_out.0 [0:3072] → 3072 +bias (image rows)',
        'attn.to_add_out [0:3072] → 3072 +bias (context rows)',
        'ff.net.0.proj [0:3072] → 12288 +bias +gelu',
        'ff.net.2 [0:12288] → 3072 +bias',
        'ff_context.net.0.proj [0:3072] → 12288 +bias +gelu',
        'ff_context.net.2 [0:12288] → 3072 +bias',
      ]);
      expect(products(blocks.single)).toEqual([
        'norm.linear [0:3072] → 9216 +bias of SiLU(temb) → mod [3 × 3072]',
        'attn.to_q + attn.to_k + attn.to_v [0:3072] → 9216 +bias',
        'proj_mlp [0:3072] → 12288 +bias +gelu',
        'proj_out [0:3072] → 3072',
        'proj_out [3072:15360] → 3072 +bias',
      ]);
      for (const plan of [blocks.dual, blocks.single]) {
        for (const s of plan.stages) if (s.op === 'linear' || s.op === 'adaParams') expect(s.linear.format).toBe(quantized ? 'q4' : 'float');
      }
    }
  });

  it('each plan is well formed: every value read was written before (or is an input), every value is written, outputs exist', () => {
    const config = parseDiTConfig(realConfigJson);
    for (const plan of Object.values(buildDiT(config, { quantized: true }).blocks)) {
      const written = new Set<string>(plan.inputs);
      for (const stage of plan.stages) {
        for (const r of stageReads(stage)) expect(written.has(r), `${plan.kind}: ${stage.op} reads ${r}`).toBe(true);
        for (const w of stageWrites(stage)) {
          expect(plan.values[w], `${plan.kind}: ${w} has no value info`).toBeDefined();
          written.add(w);
        }
      }
      expect(new Set(Object.keys(plan.values))).toEqual(written);
      expect(written.has(plan.outputs.x) && written.has(plan.outputs.ctx)).toBe(true);
    }
    // TeaCache's probe needs only the dual plan's image AdaLN parameters and first modulation.
    const probe = stagesFor(buildDiT(config, { quantized: true }).blocks.dual, TEACACHE_PROBE);
    expect(probe.map((s) => s.op)).toEqual(['adaParams', 'adaNorm']);
  });
});

/** Runs a case's forward on `dit` and returns its error against the fixture output. */
async function forwardError(dit: DiTRunner, f: FixtureFile) {
  const started = performance.now();
  const out = await dit.forward(await inputsOf(f));
  return { out, err: tensorError(out.data, f.f32('output').data), ms: performance.now() - started };
}

describe('DiT forward, fp32 on the CPU executor (what check-reference and --provider wasm run)', () => {
  for (const f of caseFiles) {
    it(`${caseName(f)}: RoPE table, packed tokens and output within 1e-4; one call of each stage per block`, async () => {
      const dit = await runnerFor(f, { provider: 'wasm' });
      const inputs = await inputsOf(f);
      const ropeErr = tensorError(inputs.rope, f.f32('rope_freqs').data);
      const embedding = await dit.embed(inputs);
      const tokensErr = tensorError(embedding.imageTokens.data, f.f32('packed_tokens').data);
      expect(embedding.imageTokens.shape).toEqual(f.shape('packed_tokens'));
      const before = { ...dit.blocks.dispatches };
      const { out, err, ms } = await forwardError(dit, f);
      console.log(`dit ${caseName(f)} cpu fp32: output ${formatError(err)}; packed_tokens ${formatError(tokensErr)}; rope_freqs ${formatError(ropeErr)} (forward ${ms.toFixed(0)} ms)`);
      expect(out.shape).toEqual(f.shape('output'));
      expect(ropeErr.rel).toBeLessThan(1e-4);
      expect(tokensErr.rel).toBeLessThan(1e-4);
      expect(err.rel).toBeLessThan(1e-4);
      const want = forwardDispatches(dit.config, dit.network.blocks);
      for (const key of ['linear', 'adaParams', 'attention', 'fused'] as const) expect(dit.blocks.dispatches[key] - before[key]).toBe(want[key]);
      expect(dit.blocks.executor).toBe('cpu');
    });
  }

  it('refuses inputs that do not fit, saying why', async () => {
    const f = caseFiles[0];
    const dit = await runnerFor(f, { provider: 'wasm' });
    const inputs = await inputsOf(f);
    const mask = [...inputs.textMask!];
    mask[0] = false; // a hole before valid tokens: cropping would not be exact
    await expect(dit.forward({ ...inputs, textMask: mask })).rejects.toThrow(DiTInputError);
    await expect(dit.forward({ ...inputs, rope: inputs.rope.subarray(64) })).rejects.toThrow(/RoPE table has/);
    const odd = { data: new Float32Array(16 * 3 * 12 * 9), shape: [1, 16, 3, 12, 9] };
    await expect(dit.forward({ ...inputs, latents: odd })).rejects.toThrow(/not a multiple of the patch/);
  });
});

/** float64 y = W·x + b for a checkpoint Linear. */
async function linear64(ck: Checkpoint, prefix: string, x: Float64Array): Promise<Float64Array> {
  const w = await ck.f32(`${prefix}.weight`);
  const b = await ck.f32(`${prefix}.bias`);
  const out = new Float64Array(b.length);
  for (let o = 0; o < b.length; o++) {
    let s = b[o];
    for (let i = 0; i < x.length; i++) s += w[o * x.length + i] * x[i];
    out[o] = s;
  }
  return out;
}
const silu64 = (x: Float64Array) => x.map((v) => v / (1 + Math.exp(-v)));

/** Block 0's modulated input LN(x)·(1+scale)+shift from the fixture's packed tokens, all in float64. */
async function modulatedReference(ck: Checkpoint, config: DiTConfig, f: FixtureFile): Promise<Float64Array> {
  const mlp = async (prefix: string, x: Float64Array) => linear64(ck, `${prefix}.linear_2`, silu64(await linear64(ck, `${prefix}.linear_1`, x)));
  const t = await mlp('time_text_embed.timestep_embedder', Float64Array.from(timestepSinusoid(f.f32('timestep').data[0])));
  const g = await mlp('time_text_embed.guidance_embedder', Float64Array.from(timestepSinusoid(f.f32('guidance').data[0])));
  const p = await mlp('time_text_embed.text_embedder', Float64Array.from(f.f32('pooled_projections').data));
  const temb = t.map((v, i) => v + g[i] + p[i]);
  const mod = await linear64(ck, 'transformer_blocks.0.norm1.linear', silu64(temb));
  const d = hiddenSize(config);
  const x = f.f32('packed_tokens').data;
  const out = new Float64Array(x.length);
  for (let n = 0; n < x.length / d; n++) {
    let mean = 0, variance = 0;
    for (let i = 0; i < d; i++) mean += x[n * d + i] / d;
    for (let i = 0; i < d; i++) variance += (x[n * d + i] - mean) ** 2 / d;
    for (let i = 0; i < d; i++) out[n * d + i] = ((x[n * d + i] - mean) / Math.sqrt(variance + 1e-6)) * (1 + mod[d + i]) + mod[i];
  }
  return out;
}

/** The streams the blocks take, from an embedding and the packed RoPE table (cos and sin halves), as CPU tensors. */
function streamsOf(embedding: DiTEmbedding, rope: Float32Array, headDim: number): DiTStreams {
  const rows = rope.length / (2 * headDim);
  const half = (from: number) => Float32Array.from({ length: rows * headDim }, (_, i) => rope[Math.floor(i / headDim) * 2 * headDim + from + (i % headDim)]);
  const tensor = (t: Tensor) => cpuTensor('float32', t.data, t.shape);
  return {
    x: tensor(embedding.imageTokens), ctx: tensor(embedding.contextTokens), temb: tensor(embedding.temb),
    cos: cpuTensor('float32', half(0), [rows, headDim]), sin: cpuTensor('float32', half(headDim), [rows, headDim]),
  };
}

/** A rule that computes on the calls listed, recording the relative L1 each comparing call got. */
function scriptedRule(computes: boolean[], compares: boolean[], seen: (number | undefined)[]): TeaCacheSlot['rule'] {
  let call = 0;
  return {
    get needsRelL1() {
      return compares[call] ?? false;
    },
    step(rel) {
      seen.push(rel);
      return computes[call++] ?? true;
    },
  };
}

describe('DiT TeaCache, fp32 on the CPU executor', () => {
  const f = caseFiles[0];
  it(`${caseName(f)}: its probe is block 0's modulated input (the plan's first image stages); a skipped call adds the stored residual`, async () => {
    const dit = await runnerFor(f, { provider: 'wasm' });
    const checkpoint = await checkpointOf(f);
    const config = parseDiTConfig(checkpoint.config);
    const inputs = await inputsOf(f);
    const probe = await dit.blocks.probe('dual', 0, streamsOf(await dit.embed(inputs), inputs.rope, config.headDim), TEACACHE_PROBE);
    const modErr = tensorError(probe, await modulatedReference(checkpoint, config, f));
    await expect(dit.forward(inputs, { teacache: { rule: scriptedRule([false], [false], []) } })).rejects.toThrow(/first step of a section must compute/);

    // Computed, then the same inputs again with the blocks skipped: x_in + (x_out − x_in) must give the same velocity,
    // and the second call compares identical probes (relative L1 0).
    const seen: (number | undefined)[] = [];
    const slot: TeaCacheSlot = { rule: scriptedRule([true, false], [false, true], seen) };
    const computed = await dit.forward(inputs, { teacache: slot });
    const skipped = await dit.forward(inputs, { teacache: slot });
    slot.state?.release();
    const computedErr = tensorError(computed.data, f.f32('output').data);
    const skippedErr = tensorError(skipped.data, f.f32('output').data);
    console.log(`dit ${caseName(f)} teacache: modulated input ${formatError(modErr)}; computed ${formatError(computedErr)}; skipped ${formatError(skippedErr)}`);
    expect(seen).toEqual([undefined, 0]);
    expect(modErr.rel).toBeLessThan(1e-4);
    expect(computedErr.rel).toBeLessThan(1e-4);
    expect(skippedErr.rel).toBeLessThan(1e-4);
  });
});

describe('DiT in the sampler, fp32 on the CPU executor (multi-step bar 1e-3)', () => {
  for (const f of samplerCases.filter((s) => s.meta.teacache)) {
    it(`${caseName(f)}: UniPC result and each step's x0, TeaCache accumulator and the same skipped calls`, async () => {
      const source = typeof f.meta.inputs_from === 'string' ? await loadFixture(`${f.meta.inputs_from}.safetensors`) : f;
      const checkpoint = await checkpointOf(f);
      const config = parseDiTConfig(checkpoint.config);
      const noise = source.f32('noise');
      const [, , t, h, w] = noise.shape;
      const steps = f.meta.steps as number;
      const conditioning = caseInputs(source, checkpoint.config, config.patchSize, noise);
      const guidance = distilledGuidanceValue(f.meta.distilled_guidance as number, 'float32');
      const rule = new TeaCacheRule(steps, f.meta.rel_l1_thresh as number);
      const accumulated: number[] = [];
      const slot: TeaCacheSlot = {
        rule: {
          get needsRelL1() {
            return rule.needsRelL1;
          },
          step(rel) {
            const c = rule.step(rel);
            accumulated.push(rule.accumulated);
            return c;
          },
        },
      };
      const dit = await runnerFor(f, { provider: 'wasm' });
      const model: VelocityModel = async (x, timestep) =>
        (await dit.forward({ ...conditioning, latents: { data: x, shape: noise.shape }, timestep, guidance }, { teacache: slot })).data;
      const denoiser = fmDenoiser(model, { dtype: 'float32', cfg: f.meta.cfg as number, cfgRescale: f.meta.cfg_rescale as number });
      const x0s: Float32Array[] = [];
      const result = await sampleUniPC(denoiser, noise.data, fluxSigmas(steps, fluxMu(noisyTokenCount(t, h, w))), { variant: 'bh1', onStep: (_i, x0) => { x0s.push(x0.slice()); } });
      const err = tensorError(result, f.f32('result').data);
      const want = f.f32('denoised').data;
      const stepErrs = x0s.map((x0, i) => tensorError(x0, want.subarray(i * x0.length, (i + 1) * x0.length)).rel);
      const wantAcc = f.f32('accumulated_rel_l1').data;
      const accErr = tensorError(accumulated, wantAcc);
      console.log(`dit ${caseName(f)} sampler cpu fp32: result ${formatError(err)}; worst step x0 err ${Math.max(...stepErrs).toExponential(2)}; TeaCache accumulator ${formatError(accErr)}`);
      expect(stepErrs.length).toBe(steps);
      expect(err.rel).toBeLessThan(1e-3);
      for (const e of stepErrs) expect(e).toBeLessThan(1e-3);
      expect(accumulated.map((a) => a === 0)).toEqual(Array.from(wantAcc, (a) => a === 0)); // the same calls skip
      expect(accErr.rel).toBeLessThan(1e-3);
    });
  }
});

describe('DiT forward, fp32 on WebGPU (SwiftShader): the plan on our kernels with float weights', () => {
  const f = caseFiles[0];
  it(`${caseName(f)}: output within 1e-4; every stage in our kernels as the plan counts them; streamed weights give the same output`, async () => {
    const dit = await runnerFor(f, { provider: 'webgpu' });
    const before = { ...dit.blocks.dispatches };
    const { out, err, ms } = await forwardError(dit, f);
    console.log(`dit ${caseName(f)} webgpu fp32 (float weights): output ${formatError(err)} (${ms.toFixed(0)} ms, first run: mostly SwiftShader compiling shaders)`);
    expect(err.rel).toBeLessThan(1e-4);
    expect(dit.blocks.kernels).toEqual({ linear: 'float/portable', adaParams: 'float/portable', attention: 'portable' });
    const want = forwardDispatches(dit.config, dit.network.blocks);
    for (const key of ['linear', 'adaParams', 'attention', 'fused'] as const) expect(dit.blocks.dispatches[key] - before[key]).toBe(want[key]);
    // Every weight is resident, so no host copy is left once uploaded.
    expect(dit.hostCacheBytes()).toBe(0);

    // Weights streamed within a budget below the tiny transformer's block bytes: same output, bytes streamed stated.
    const { device } = await testGpu();
    const checkpoint = await checkpointOf(f);
    const { blocks } = dit.network;
    let blockBytes = 0;
    for (const [plan, count] of [[blocks.dual, dit.config.layers], [blocks.single, dit.config.singleLayers]] as const) {
      for (let i = 0; i < count; i++) blockBytes += hostBlockBytes(await hostWeights(plan.weights, checkpoint, i));
    }
    const residency = new WeightResidency(device, Math.floor(blockBytes / 2));
    const streamed = await runnerFor(f, { provider: 'webgpu', residency });
    const again = await streamed.forward(await inputsOf(f));
    console.log(`dit ${caseName(f)} webgpu, weights streamed within ${Math.floor(blockBytes / 2)} of ${blockBytes} block bytes: ${residency.stats.streamedBytes} bytes streamed, ${residency.stats.residentBytes} resident`);
    expect(residency.stats.streamedBytes).toBeGreaterThan(0);
    expect(residency.stats.residentBytes).toBeLessThanOrEqual(blockBytes / 2);
    expect(tensorError(again.data, out.data).abs).toBe(0);
    // The host keeps exactly the streamed blocks' copies (uploaded again each call), none of the resident ones.
    expect(streamed.hostCacheBytes()).toBe(residency.stats.streamedBytes);
    residency.release();
  }, 600_000);
});

/** The image tokens after every block, run by `dit`'s executor on the given embedding (RoPE tables from `rope`). */
async function imageTokensAfterBlocks(dit: DiTRunner, embedding: DiTEmbedding, rope: Float32Array): Promise<Float32Array> {
  const { headDim, layers, singleLayers } = dit.config;
  const rows = rope.length / (2 * headDim);
  const half = (from: number) => Float32Array.from({ length: rows * headDim }, (_, i) => rope[Math.floor(i / headDim) * 2 * headDim + from + (i % headDim)]);
  const tensor = (t: Tensor) => cpuTensor('float32', t.data, t.shape);
  const fixed = { temb: tensor(embedding.temb), cos: cpuTensor('float32', half(0), [rows, headDim]), sin: cpuTensor('float32', half(headDim), [rows, headDim]) };
  let x = tensor(embedding.imageTokens);
  let ctx = tensor(embedding.contextTokens);
  const free = (...ts: OrtTensor[]) => {
    for (const t of ts) if (t.location === 'gpu-buffer') t.dispose();
  };
  for (const [kind, count] of [['dual', layers], ['single', singleLayers]] as const) {
    for (let i = 0; i < count; i++) {
      const out = await dit.blocks.run(kind, i, { ...fixed, x, ctx });
      free(x, ctx);
      ({ x, ctx } = out);
    }
  }
  const data = Float32Array.from((await tensorData(x)) as Float32Array);
  free(x, ctx);
  return data;
}

describe('DiT forward, 4-bit on WebGPU (SwiftShader): the users\' path against the same 4-bit plan on the CPU', () => {
  const f = caseFiles[0];
  it(`${caseName(f)}: every block stage in our 4-bit and fused kernels; blocks, TeaCache probe and output agree with the CPU executor`, async () => {
    const gpu = await runnerFor(f, { provider: 'webgpu', quantized: true });
    const cpu = await runnerFor(f, { provider: 'wasm', quantized: true });
    const inputs = await inputsOf(f);
    const before = { ...gpu.blocks.dispatches };
    const { out, ms } = await forwardError(gpu, f);
    expect(gpu.blocks.kernels).toEqual({ linear: 'q4/portable', adaParams: 'q4/portable', attention: 'portable' });
    const want = forwardDispatches(gpu.config, gpu.network.blocks);
    for (const key of ['linear', 'adaParams', 'attention', 'fused'] as const) expect(gpu.blocks.dispatches[key] - before[key]).toBe(want[key]);
    // Per block, from the plans: 8 products + 2 AdaLN rows + 1 attention + 8 fused (dual); 4 + 1 + 1 + 6 (single).
    expect([planDispatches(gpu.network.blocks.dual), planDispatches(gpu.network.blocks.single)]).toEqual([
      { linear: 8, adaParams: 2, attention: 1, fused: 8 }, { linear: 4, adaParams: 1, attention: 1, fused: 6 },
    ]);

    const cpuOut = (await cpu.forward(inputs)).data;
    const err = tensorError(out.data, cpuOut);
    // The blocks alone, both executors fed the CPU path's embedding: what the plan computes, without the embedders.
    const embedding = await cpu.embed(inputs);
    const [gotBlocks, wantBlocks] = [await imageTokensAfterBlocks(gpu, embedding, inputs.rope), await imageTokensAfterBlocks(cpu, embedding, inputs.rope)];
    const blocksErr = tensorError(gotBlocks, wantBlocks);
    // The blocks' own contribution x_out − x_in, so the residual stream's scale cannot hide an error of theirs.
    const residual = (o: Float32Array) => o.map((v, i) => v - embedding.imageTokens.data[i]);
    const residualErr = tensorError(residual(gotBlocks), residual(wantBlocks));
    const streams = streamsOf(embedding, inputs.rope, gpu.config.headDim);
    const probeErr = tensorError(await gpu.blocks.probe('dual', 0, streams, TEACACHE_PROBE), await cpu.blocks.probe('dual', 0, streams, TEACACHE_PROBE));
    // TeaCache through forward on both executors: a computed call, then a comparing call at another timestep; the
    // relative L1 each executor reduces (on the GPU: two sums read back) must agree.
    const relOf = async (runner: DiTRunner) => {
      const seen: (number | undefined)[] = [];
      const slot: TeaCacheSlot = { rule: scriptedRule([true, true], [false, true], seen) };
      await runner.forward(inputs, { teacache: slot });
      await runner.forward({ ...inputs, timestep: inputs.timestep * 0.9 }, { teacache: slot });
      slot.state?.release();
      return seen[1]!;
    };
    const [relGpu, relCpu] = [await relOf(gpu), await relOf(cpu)];
    console.log(
      `dit ${caseName(f)} 4-bit webgpu vs 4-bit cpu: output ${formatError(err)}; blocks alone ${formatError(blocksErr)}, block residual ${formatError(residualErr)}; ` +
        `TeaCache's probe ${formatError(probeErr)}, its relative L1 ${relGpu} (GPU) against ${relCpu} (CPU) (${ms.toFixed(0)} ms, first run: mostly SwiftShader compiling shaders)`,
    );
    // Measured 5.2e-7–5.8e-7 (output), 1.9e-7 (blocks), 9.9e-7 (residual), 2.1e-7 (probe), 1.5e-6 (the relative L1
    // of the GPU's f32 sums against the CPU's float64 ones): the kernels' f32 accumulation against the CPU's float64,
    // on the same 4-bit weights. Ceilings ≈ 3× those.
    expect(err.rel).toBeLessThan(1.5e-6);
    expect(blocksErr.rel).toBeLessThan(6e-7);
    expect(residualErr.rel).toBeLessThan(3e-6);
    expect(probeErr.rel).toBeLessThan(6.5e-7);
    expect(relCpu).toBeGreaterThan(0);
    expect(Math.abs(relGpu - relCpu) / relCpu).toBeLessThan(5e-6);
  }, 600_000);
});

describe('DiT TeaCache on WebGPU (SwiftShader): the probe, its relative L1 and the residual stay on the GPU', () => {
  const f = caseFiles[0];
  it(`${caseName(f)}: a computed and a skipped call each read back the velocity and, comparing, the two L1 sums — nothing of the image tokens`, async () => {
    const gpu = await runnerFor(f, { provider: 'webgpu', quantized: true });
    const inputs = await inputsOf(f);
    const velocityBytes = f.f32('output').data.length * 4;
    const imageTokenBytes = f.f32('packed_tokens').data.length * 4;
    // Every readback, ours or ORT's, maps a buffer: count the bytes mapped during each call.
    const proto = (globalThis as unknown as { GPUBuffer: { prototype: GPUBuffer } }).GPUBuffer.prototype;
    const mapAsync = proto.mapAsync;
    let mapped = 0;
    proto.mapAsync = function (this: GPUBuffer, mode: GPUMapModeFlags, offset?: number, size?: number) {
      mapped += size ?? this.size - (offset ?? 0);
      return mapAsync.call(this, mode, offset, size);
    };
    const seen: (number | undefined)[] = [];
    const slot: TeaCacheSlot = { rule: scriptedRule([true, false], [false, true], seen) };
    const perCall: number[] = [];
    try {
      for (let call = 0; call < 2; call++) {
        mapped = 0;
        await gpu.forward(inputs, { teacache: slot });
        perCall.push(mapped);
      }
    } finally {
      proto.mapAsync = mapAsync;
      slot.state?.release();
    }
    console.log(`dit ${caseName(f)} teacache on webgpu: bytes read back per call ${perCall.join(', ')} (velocity ${velocityBytes}, image tokens ${imageTokenBytes}); relative L1 of identical probes ${seen[1]}`);
    expect(seen).toEqual([undefined, 0]);
    // The velocity the sampler needs (rounded up for staging), plus 8 bytes of sums on the comparing call.
    expect(perCall[0]).toBeGreaterThanOrEqual(velocityBytes);
    expect(perCall[0]).toBeLessThan(velocityBytes + 256);
    expect(perCall[1]).toBeLessThan(velocityBytes + 256 + 16);
    expect(perCall[1] - perCall[0]).toBeGreaterThanOrEqual(8);
  }, 600_000);
});

describe('DiT forward on the CPU executor, 4-bit weights and fp16 activations, against the fp32 fixtures', () => {
  // What 4-bit weights and fp16 storage cost on these tiny random weights (not the real model's quality). Measured on
  // the three dit_forward cases: 4-bit 7.4e-2 / 1.3e-1 / 1.8e-1, fp16 6.1e-4 / 8.4e-4 / 9.2e-4; ceilings ≈ 3× the
  // worst. A wiring error gives err ≈ 1.
  for (const f of caseFiles) {
    it(`${caseName(f)}: 4-bit error below 0.55, fp16 error below 3e-3`, async () => {
      const q4 = await forwardError(await runnerFor(f, { provider: 'wasm', quantized: true }), f);
      const f16 = await forwardError(await runnerFor(f, { provider: 'wasm', dtype: 'float16' }), f);
      console.log(`dit ${caseName(f)} cpu 4-bit weights: output ${formatError(q4.err)}; cpu fp16 activations: output ${formatError(f16.err)}`);
      expect(q4.err.rel).toBeLessThan(0.55);
      expect(f16.err.rel).toBeLessThan(3e-3);
    });
  }
});

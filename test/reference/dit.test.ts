// The packed DiT through its one runner (src/worker/dit.ts) against every `dit_forward` case of the reference
// fixtures: fp32 on the wasm EP (all cases, the README's 1e-4 bar), fp32 on WebGPU/SwiftShader (one case), 4-bit
// linears and fp16 activations on wasm (errors reported), 4-bit on WebGPU with the widest linears in our 4-bit
// kernel (against the fp32 path on 4-bit-rounded weights). Intermediates (RoPE table, packed tokens) are compared
// too, TeaCache's hook is checked against a float64 computation of block 0's modulation, and the builder, built for
// the real config, must consume exactly the real checkpoint's tensors (12,874,314,816 parameters), its kernel block
// plans exactly the whole-block graphs' weights.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import realConfigJson from '../../src/models/configs/transformer.json' with { type: 'json' };
import { buildDiTGraphs, ditTensorShapes, hiddenSize, parseDiTConfig, type BlockPlan, type DiTConfig } from '../../src/models/dit.ts';
import { distilledGuidanceValue, fmDenoiser, type VelocityModel } from '../../src/pipeline/fmWrapper.ts';
import { packedRopeTable, ropeConfigFromDit } from '../../src/pipeline/ropeTables.ts';
import { fluxMu, fluxSigmas, noisyTokenCount } from '../../src/pipeline/sigmas.ts';
import { TeaCacheRule } from '../../src/pipeline/teacache.ts';
import { sampleUniPC } from '../../src/pipeline/unipc.ts';
import type { Tensor } from '../../src/pipeline/tensor.ts';
import { formatError, tensorError } from '../../src/pipeline/tensorError.ts';
import { openCheckpoint, type Checkpoint } from '../../src/weights/checkpoint.ts';
import { nodeFolderSource } from '../../src/weights/nodeFileSource.ts';
import { createDiT, DiTInputError, timestepSinusoid, type DiTEmbedding, type DiTInputs, type DiTRunner, type DiTRunnerOptions, type TeaCacheSlot } from '../../src/worker/dit.ts';
import { cpuTensor, tensorData, type OrtTensor } from '../../src/runtime/ort.ts';
import { fixturesDir, listCases, loadFixture, type FixtureFile } from '../helpers/fixtures.ts';
import { ortReady } from '../helpers/ortSetup.ts';
import { testGpu } from '../helpers/webgpu.ts';
import { WeightResidency, hostBlockBytes } from '../../src/runtime/residency.ts';
import { bindingTensorName, hostWeights } from '../../src/runtime/weightFeeds.ts';
import { dequantizeQ4, quantizeQ4 } from '../../src/weights/quantize.ts';

/** Bytes of every block's weights as the WebGPU path binds them (fp32, attention split). */
async function ditBlockWeightBytes(checkpoint: Checkpoint): Promise<number> {
  const c = parseDiTConfig(checkpoint.config);
  const split = buildDiTGraphs(c, { attention: 'external' }).split!;
  let bytes = 0;
  for (const [graph, count] of [[split.dualPre, c.layers], [split.dualPost, c.layers], [split.singlePre, c.singleLayers], [split.singlePost, c.singleLayers]] as const) {
    for (let i = 0; i < count; i++) bytes += hostBlockBytes(await hostWeights(graph, checkpoint, i));
  }
  return bytes;
}

const REAL_PARAMETERS = 12_874_314_816;
const dir = fixturesDir();
const caseFiles: FixtureFile[] = [];
for (const path of await listCases(dir)) {
  const f = await loadFixture(path);
  if (f.meta.case === 'dit_forward') caseFiles.push(f);
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

/**
 * The checkpoint with every weight the 4-bit graphs quantize replaced by its dequantized 4-bit value
 * (quantize.ts's reference inverse): the fp32 path on it computes what the 4-bit path should, up to rounding.
 */
function fourBitRounded(base: Checkpoint): Checkpoint {
  const c = parseDiTConfig(base.config);
  const g = buildDiTGraphs(c, { quantized: true });
  const rounded = new Set<string>();
  for (const [graph, blocks] of [[g.embed, 1], [g.dual, c.layers], [g.single, c.singleLayers], [g.head, 1]] as const) {
    for (const w of graph.weights) {
      if (w.layout !== 'q4') continue;
      for (let i = 0; i < blocks; i++) rounded.add(bindingTensorName(w, i));
    }
  }
  return {
    ...base,
    f32: async (name) => {
      const w = await base.f32(name);
      if (!rounded.has(name)) return w;
      const [n, k] = base.tensors.get(name)!.shape;
      return dequantizeQ4(quantizeQ4(w, n, k));
    },
  };
}

/** One runner per weights folder and options, shared by the tests and released at the end of the file. */
const runners = new Map<string, Promise<DiTRunner>>();
function runnerFor(f: FixtureFile, options: DiTRunnerOptions, weights: '4-bit-rounded' | 'as stored' = 'as stored'): Promise<DiTRunner> {
  const key = `${f.meta.weights as string}/${weights}/${JSON.stringify(options)}`;
  let r = runners.get(key);
  if (!r) {
    const checkpoint = async () => (weights === 'as stored' ? checkpointOf(f) : fourBitRounded(await checkpointOf(f)));
    runners.set(key, (r = ortReady().then(async () => createDiT(await checkpoint(), options))));
  }
  return r;
}
afterAll(async () => {
  for (const r of runners.values()) await (await r).release();
});

describe('DiT builder: configs and the real checkpoint layout', () => {
  it('parses the tiny and the real config.json', async () => {
    const tiny = parseDiTConfig((await checkpointOf(caseFiles[0])).config);
    expect(hiddenSize(tiny)).toBe(64);
    expect(tiny.ropeAxesDim).toEqual([8, 12, 12]);
    const real = parseDiTConfig(realConfigJson);
    expect([hiddenSize(real), real.layers, real.singleLayers, real.refinerLayers]).toEqual([3072, 20, 40, 2]);
  });

  it(`consumes exactly the real transformer tensors with their shapes, ${REAL_PARAMETERS.toLocaleString('en')} parameters`, () => {
    const realShapes = (JSON.parse(readFileSync(join(dir, 'real_shapes.json'), 'utf8')) as Record<string, Record<string, number[]>>).transformer;
    const count = (shapes: Iterable<number[]>) => [...shapes].reduce((n, s) => n + s.reduce((a, b) => a * b, 1), 0);
    expect(count(Object.values(realShapes))).toBe(REAL_PARAMETERS);

    const config = parseDiTConfig(realConfigJson);
    for (const quantized of [false, true]) {
      const consumed = ditTensorShapes(config, buildDiTGraphs(config, { quantized }));
      // The reference reads every tensor of its checkpoint: nothing is allowed to go unused.
      const neverRead: string[] = [];
      const missing = Object.keys(realShapes).filter((n) => !consumed.has(n) && !neverRead.includes(n));
      const extra = [...consumed.keys()].filter((n) => !(n in realShapes));
      expect({ missing, extra }).toEqual({ missing: [], extra: [] });
      for (const [name, shape] of consumed) expect([name, shape]).toEqual([name, realShapes[name]]);
      expect(count(consumed.values())).toBe(REAL_PARAMETERS);
    }
  });

  it('with the large 4-bit linears in the kernel, each block plan reads exactly its whole-block graph\'s weights, once, in the same layouts', () => {
    const config = parseDiTConfig(realConfigJson);
    const graphs = buildDiTGraphs(config, { dtype: 'float16', quantized: true, attention: 'external', linears: 'kernel' });
    const bindings = (plan: BlockPlan) => {
      const all = [...plan.stages.flatMap((s) => (s.op === 'graph' ? s.graph.weights : [])), ...(plan.linearWeights?.weights ?? [])];
      return all.map((w) => `${w.tensor} ${w.layout}${w.part ? `/${w.part}` : ''} [${w.shape.join(', ')}] ${w.dtype}`).sort();
    };
    const wholeBlock = (graph: typeof graphs.dual) => bindings({ stages: [{ op: 'graph', graph }], linearWeights: null });
    expect(bindings(graphs.blocks.dual)).toEqual(wholeBlock(graphs.dual));
    expect(bindings(graphs.blocks.single)).toEqual(wholeBlock(graphs.single));
    // Each product: the Linears it reads (rows stacked), the columns, the output width, bias and GELU.
    const kernelLinears = (plan: BlockPlan) =>
      plan.stages.flatMap((s) => {
        if (s.op !== 'linear') return [];
        const l = s.linear;
        const names = l.parts.map((p) => p.prefix.replace(/^(single_)?transformer_blocks\.\{i\}\./, '')).join(' + ');
        return [`${names} [${l.kOffset}:${l.kOffset + l.k}] → ${l.n}${l.bias ? ' +bias' : ''}${l.epilogue === 'gelu_tanh' ? ' +gelu' : ''}${s.rows ? ` (${s.rows} rows)` : ''}`];
      });
    expect(kernelLinears(graphs.blocks.dual)).toEqual([
      'attn.to_q + attn.to_k + attn.to_v [0:3072] → 9216 +bias',
      'attn.add_q_proj + attn.add_k_proj + attn.add_v_proj [0:3072] → 9216 +bias',
      'attn.to_out.0 [0:3072] → 3072 +bias (image rows)',
      'attn.to_add_out [0:3072] → 3072 +bias (context rows)',
      'ff.net.0.proj [0:3072] → 12288 +bias +gelu',
      'ff.net.2 [0:12288] → 3072 +bias',
      'ff_context.net.0.proj [0:3072] → 12288 +bias +gelu',
      'ff_context.net.2 [0:12288] → 3072 +bias',
    ]);
    expect(kernelLinears(graphs.blocks.single)).toEqual([
      'attn.to_q + attn.to_k + attn.to_v [0:3072] → 9216 +bias',
      'proj_mlp [0:3072] → 12288 +bias +gelu',
      'proj_out [0:3072] → 3072',
      'proj_out [3072:15360] → 3072 +bias',
    ]);
    // The AdaLN parameters: one-row products of SiLU(temb) in q4Gemv.
    const adaParams = (plan: BlockPlan) =>
      plan.stages.flatMap((s) => (s.op === 'adaParams' ? [`${s.linear.parts.map((p) => p.prefix.replace(/^(single_)?transformer_blocks\.\{i\}\./, '')).join(' + ')} → ${s.out} [${s.chunks} × ${s.linear.n / s.chunks}]`] : []));
    expect(adaParams(graphs.blocks.dual)).toEqual(['norm1.linear → mod_x [6 × 3072]', 'norm1_context.linear → mod_c [6 × 3072]']);
    expect(adaParams(graphs.blocks.single)).toEqual(['norm.linear → mod [3 × 3072]']);
    // Nothing of a block is left to ORT.
    for (const plan of [graphs.blocks.dual, graphs.blocks.single]) expect(plan.stages.filter((s) => s.op === 'graph')).toEqual([]);
    expect(() => buildDiTGraphs(config, { attention: 'external', linears: 'kernel' })).toThrow(/quantized: true/);
  });
});

describe('DiT forward, fp32 on wasm', () => {
  for (const f of caseFiles) {
    it(`${caseName(f)}: RoPE table, packed tokens and output within 1e-4`, async () => {
      const dit = await runnerFor(f, { provider: 'wasm' });
      const checkpoint = await checkpointOf(f);
      const config = parseDiTConfig(checkpoint.config);
      const inputs = caseInputs(f, checkpoint.config, config.patchSize);
      const ropeErr = tensorError(inputs.rope, f.f32('rope_freqs').data);
      const embedding = await dit.embed(inputs);
      const tokensErr = tensorError(embedding.imageTokens.data, f.f32('packed_tokens').data);
      expect(embedding.imageTokens.shape).toEqual(f.shape('packed_tokens'));
      const started = performance.now();
      const out = await dit.forward(inputs);
      const ms = performance.now() - started;
      const err = tensorError(out.data, f.f32('output').data);
      console.log(`dit ${caseName(f)} wasm fp32: output ${formatError(err)}; packed_tokens ${formatError(tokensErr)}; rope_freqs ${formatError(ropeErr)} (forward ${ms.toFixed(0)} ms)`);
      expect(out.shape).toEqual(f.shape('output'));
      expect(ropeErr.rel).toBeLessThan(1e-4);
      expect(tokensErr.rel).toBeLessThan(1e-4);
      expect(err.rel).toBeLessThan(1e-4);
    });
  }

  it('refuses inputs that do not fit, saying why', async () => {
    const f = caseFiles[0];
    const dit = await runnerFor(f, { provider: 'wasm' });
    const checkpoint = await checkpointOf(f);
    const inputs = caseInputs(f, checkpoint.config, parseDiTConfig(checkpoint.config).patchSize);
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

describe('DiT TeaCache hook, fp32 on wasm', () => {
  const f = caseFiles[0];
  it(`${caseName(f)}: hands the rule block 0's modulated input; a skipped call adds the stored residual`, async () => {
    const dit = await runnerFor(f, { provider: 'wasm' });
    const checkpoint = await checkpointOf(f);
    const config = parseDiTConfig(checkpoint.config);
    const inputs = caseInputs(f, checkpoint.config, config.patchSize);
    const seen: Float32Array[] = [];
    const slot = { rule: { shouldCompute: (m: Float32Array) => (seen.push(m), seen.length === 1) }, residual: null as Float32Array | null };
    await expect(dit.forward(inputs, { teacache: { rule: { shouldCompute: () => false }, residual: null } })).rejects.toThrow(/first step of a section must compute/);

    const computed = await dit.forward(inputs, { teacache: slot });
    const modErr = tensorError(seen[0], await modulatedReference(checkpoint, config, f));
    expect(slot.residual?.length).toBe(f.f32('packed_tokens').data.length);
    // Same inputs again, blocks skipped: x_in + (x_out − x_in) must give the same velocity.
    const skipped = await dit.forward(inputs, { teacache: slot });
    const computedErr = tensorError(computed.data, f.f32('output').data);
    const skippedErr = tensorError(skipped.data, f.f32('output').data);
    console.log(`dit ${caseName(f)} teacache: modulated input ${formatError(modErr)}; computed ${formatError(computedErr)}; skipped ${formatError(skippedErr)}`);
    expect(seen.length).toBe(2);
    expect(tensorError(seen[1], seen[0]).abs).toBe(0);
    expect(modErr.rel).toBeLessThan(1e-4);
    expect(computedErr.rel).toBeLessThan(1e-4);
    expect(skippedErr.rel).toBeLessThan(1e-4);
  });
});

/** The `sampler` cases (UniPC over the DiT, with and without TeaCache), their inputs read from `inputs_from`. */
const samplerCases: FixtureFile[] = [];
for (const path of await listCases(dir)) {
  const f = await loadFixture(path);
  if (f.meta.case === 'sampler') samplerCases.push(f);
}

describe('DiT in the sampler, fp32 on wasm (multi-step bar 1e-3)', () => {
  for (const f of samplerCases) {
    it(`${caseName(f)}: UniPC result and each step's x0${f.meta.teacache ? ', TeaCache accumulator and skips' : ''}`, async () => {
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
      const slot: TeaCacheSlot = { rule: { shouldCompute: (m) => { const c = rule.shouldCompute(m); accumulated.push(rule.accumulated); return c; } }, residual: null };
      const dit = await runnerFor(f, { provider: 'wasm' });
      const model: VelocityModel = async (x, timestep) =>
        (await dit.forward({ ...conditioning, latents: { data: x, shape: noise.shape }, timestep, guidance }, f.meta.teacache ? { teacache: slot } : {})).data;
      const denoiser = fmDenoiser(model, { dtype: 'float32', cfg: f.meta.cfg as number, cfgRescale: f.meta.cfg_rescale as number });
      const x0s: Float32Array[] = [];
      const result = await sampleUniPC(denoiser, noise.data, fluxSigmas(steps, fluxMu(noisyTokenCount(t, h, w))), { variant: 'bh1', onStep: (_i, x0) => { x0s.push(x0.slice()); } });
      const err = tensorError(result, f.f32('result').data);
      const want = f.f32('denoised').data;
      const stepErrs = x0s.map((x0, i) => tensorError(x0, want.subarray(i * x0.length, (i + 1) * x0.length)).rel);
      console.log(`dit ${caseName(f)} sampler wasm fp32: result ${formatError(err)}; worst step x0 err ${Math.max(...stepErrs).toExponential(2)}`);
      expect(stepErrs.length).toBe(steps);
      expect(err.rel).toBeLessThan(1e-3);
      for (const e of stepErrs) expect(e).toBeLessThan(1e-3);
      if (f.meta.teacache) {
        const wantAcc = f.f32('accumulated_rel_l1').data;
        const accErr = tensorError(accumulated, wantAcc);
        console.log(`dit ${caseName(f)} TeaCache accumulator: ${accumulated.map((a) => a.toFixed(6)).join(' ')} (recorded ${Array.from(wantAcc, (a) => a.toFixed(6)).join(' ')}), ${formatError(accErr)}`);
        expect(accumulated.map((a) => a === 0)).toEqual(Array.from(wantAcc, (a) => a === 0)); // the same calls skip
        expect(accErr.rel).toBeLessThan(1e-3);
      }
    });
  }
});

describe('DiT forward, fp32 on WebGPU (SwiftShader)', () => {
  const f = caseFiles[0];
  it(`${caseName(f)}: output within 1e-4, attention through our WGSL kernel`, async () => {
    const checkpoint = await checkpointOf(f);
    const inputs = caseInputs(f, checkpoint.config, parseDiTConfig(checkpoint.config).patchSize);
    const dit = await runnerFor(f, { provider: 'webgpu' });
    const started = performance.now();
    const out = await dit.forward(inputs);
    const ms = performance.now() - started;
    const err = tensorError(out.data, f.f32('output').data);
    console.log(`dit ${caseName(f)} webgpu fp32: output ${formatError(err)} (${ms.toFixed(0)} ms, first run: mostly SwiftShader compiling shaders)`);
    expect(err.rel).toBeLessThan(1e-4);
    // The product path on WebGPU runs every block's attention in src/kernels/flashAttention.ts, not in ONNX.
    expect(dit.attentionKernel).toBe('portable');
    expect(dit.attentionDispatches).toBe(dit.config.layers + dit.config.singleLayers);

    // Weights streamed within a budget below the tiny transformer's block bytes: same output, bytes streamed stated.
    const { device } = await testGpu();
    const blockBytes = await ditBlockWeightBytes(checkpoint);
    const residency = new WeightResidency(device, Math.floor(blockBytes / 2));
    const streamed = await runnerFor(f, { provider: 'webgpu', residency });
    const again = await streamed.forward(inputs);
    console.log(`dit ${caseName(f)} webgpu, weights streamed within ${Math.floor(blockBytes / 2)} of ${blockBytes} block bytes: ${residency.stats.streamedBytes} bytes streamed, ${residency.stats.residentBytes} resident`);
    expect(residency.stats.streamedBytes).toBeGreaterThan(0);
    expect(residency.stats.residentBytes).toBeLessThanOrEqual(blockBytes / 2);
    expect(tensorError(again.data, out.data).abs).toBe(0);
    residency.release();
  }, 600_000);
});

/** The image tokens after every block, run by `dit`'s block runner on the given embedding (RoPE tables from `rope`). */
async function imageTokensAfterBlocks(dit: DiTRunner, embedding: DiTEmbedding, rope: Float32Array): Promise<Float32Array> {
  const { headDim, layers, singleLayers } = dit.config;
  const rows = rope.length / (2 * headDim);
  const half = (from: number) => Float32Array.from({ length: rows * headDim }, (_, i) => rope[Math.floor(i / headDim) * 2 * headDim + from + (i % headDim)]);
  const tensor = (t: Tensor) => cpuTensor('float32', t.data, t.shape);
  const fixed = { temb: tensor(embedding.temb), cos: cpuTensor('float32', half(0), [rows, headDim]), sin: cpuTensor('float32', half(headDim), [rows, headDim]) };
  let x = tensor(embedding.imageTokens);
  let ctx = tensor(embedding.contextTokens);
  const free = (...ts: OrtTensor[]) => ts.forEach((t) => t.location === 'gpu-buffer' && t.dispose());
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

describe('DiT forward, 4-bit on WebGPU (SwiftShader): the blocks\' token linears in the 4-bit matmul kernel', () => {
  const f = caseFiles[0];
  it(`${caseName(f)}: the kernel runs them; against the fp32 path on 4-bit-rounded weights the blocks and the whole output agree within 1e-4`, async () => {
    const checkpoint = await checkpointOf(f);
    const inputs = caseInputs(f, checkpoint.config, parseDiTConfig(checkpoint.config).patchSize);
    const dit = await runnerFor(f, { provider: 'webgpu', quantized: true });
    const started = performance.now();
    const out = await dit.forward(inputs);
    const ms = performance.now() - started;
    const { layers, singleLayers } = dit.config;
    // Per dual block: the AdaLN parameters, stacked q/k/v and the out projection of each stream, the two feed-forwards
    // (2 products each); per single block: the AdaLN parameters, stacked q/k/v, proj_mlp and proj_out's two halves.
    expect(dit.linearKernel).toBe('portable');
    expect(dit.linearDispatches).toBe(10 * layers + 5 * singleLayers);
    expect(dit.attentionDispatches).toBe(layers + singleLayers);
    // And the fused element-wise kernels, per stream: the first AdaLN, the q/k/v heads (norms, RoPE), the attention
    // residual with the second AdaLN and the feed-forward residual (dual); AdaLN, heads and the residual (single).
    expect(dit.blocks.fusedDispatches).toBe(8 * layers + 6 * singleLayers);

    // The reference: the fp32 wasm path on the weights the 4-bit path actually multiplies by.
    const reference = await runnerFor(f, { provider: 'wasm' }, '4-bit-rounded');
    const want = (await reference.forward(inputs)).data;
    const wasm4 = (await (await runnerFor(f, { provider: 'wasm', quantized: true })).forward(inputs)).data;
    // TeaCache's probe on this path reads block 0's AdaLN weights from the kernels' weights (no graph holds them).
    const probe = async (runner: DiTRunner) => {
      const seen: Float32Array[] = [];
      await runner.forward(inputs, { teacache: { rule: { shouldCompute: (m: Float32Array) => (seen.push(m), true) }, residual: null } });
      return seen[0];
    };
    const probeErr = tensorError(await probe(dit), await probe(reference));
    expect(probeErr.rel).toBeLessThan(1e-4);
    const err = tensorError(out.data, want);
    const wasmErr = tensorError(wasm4, want);
    // The embedders' token refiner still runs its 4-bit linears in ORT's MatMulNBits: its share, before any block.
    const refinerErr = tensorError((await dit.embed(inputs)).contextTokens.data, (await reference.embed(inputs)).contextTokens.data);
    console.log(
      `dit ${caseName(f)} webgpu 4-bit (kernel linears + ORT MatMulNBits): vs fp32 on 4-bit-rounded weights ${formatError(err)}; ` +
        `wasm 4-bit (ORT MatMulNBits) vs the same ${formatError(wasmErr)}; webgpu 4-bit vs wasm 4-bit ${formatError(tensorError(out.data, wasm4))}; ` +
        `context tokens out of the embedders (token refiner in ORT's WebGPU MatMulNBits) ${formatError(refinerErr)}; ` +
        `TeaCache's modulated input ${formatError(probeErr)}; webgpu 4-bit vs fixture ${formatError(tensorError(out.data, f.f32('output').data))}, the 4-bit weights alone ${formatError(tensorError(want, f.f32('output').data))} ` +
        `(${ms.toFixed(0)} ms, first run: mostly SwiftShader compiling shaders)`,
    );
    // The blocks alone, both paths fed the reference's embedding: what the kernel plans compute, without the refiner.
    const embedding = await reference.embed(inputs);
    const [gotBlocks, wantBlocks] = [await imageTokensAfterBlocks(dit, embedding, inputs.rope), await imageTokensAfterBlocks(reference, embedding, inputs.rope)];
    const blocksErr = tensorError(gotBlocks, wantBlocks);
    // The blocks' own contribution x_out − x_in, so the residual stream's scale cannot hide an error of theirs.
    const residual = (out: Float32Array) => out.map((v, i) => v - embedding.imageTokens.data[i]);
    const residualErr = tensorError(residual(gotBlocks), residual(wantBlocks));
    console.log(`dit ${caseName(f)} webgpu 4-bit blocks alone (kernel plans) vs fp32 wasm blocks on 4-bit-rounded weights, same input streams: image tokens ${formatError(blocksErr)}, block residual x_out − x_in ${formatError(residualErr)}`);
    // The block path alone does the reference's f32 arithmetic on the same weights (measured 2e-7, residual 1e-6):
    // the README's single-network bar.
    expect(blocksErr.rel).toBeLessThan(1e-4);
    expect(residualErr.rel).toBeLessThan(1e-4);
    expect(wasmErr.rel).toBeLessThan(1e-4);
    // The whole output, embedders' token refiner included (its 4-bit linears in ORT's WebGPU MatMulNBits at
    // accuracy_level 0), measured 6.4e-7. (At accuracy_level 4 ORT rounded the fp32 activations to int8 there: 1.4e-4.)
    expect(err.rel).toBeLessThan(1e-4);
  }, 600_000);
});

for (const variant of [
  { label: '4-bit block linears', options: { quantized: true } },
  { label: 'fp16 activations (ORT CPU: fp16 weights and tensors, casts around fp32 kernels)', options: { dtype: 'float16' as const } },
]) {
  describe(`DiT forward on wasm, ${variant.label} (error reported, not a parity bar)`, () => {
    for (const f of caseFiles) {
      it(`${caseName(f)}: finite output, error measured`, async () => {
        const dit = await runnerFor(f, { provider: 'wasm', ...variant.options });
        const checkpoint = await checkpointOf(f);
        const out: Tensor = await dit.forward(caseInputs(f, checkpoint.config, parseDiTConfig(checkpoint.config).patchSize));
        const err = tensorError(out.data, f.f32('output').data);
        console.log(`dit ${caseName(f)} wasm ${variant.label}: output ${formatError(err)}`);
        expect(Number.isFinite(err.abs)).toBe(true);
        // A sanity bound only: a wiring error gives err ≈ 1; the figure itself is what gets reported.
        expect(err.rel).toBeLessThan(0.5);
      });
    }
  });
}

// The packed DiT's forward pass: embed → 20 dual-stream blocks → 40 single-stream blocks → head
// (framepack-reference.md §5). The embedders and the head are ONNX graphs on onnxruntime (WebGPU or wasm); every
// block is its plan (src/models/ditBlocks.ts) run by one executor — our WGSL kernels on WebGPU
// (ditBlocksWebgpu.ts), the CPU reference with `provider: 'wasm'` (ditBlocksCpu.ts). This is the one code path the
// app, the CLI, the bench and the reference checks use. It also prepares what the graphs take and the reference
// computes on the side: the timestep/guidance sinusoids (float32, as torch computes diffusers'
// get_timestep_embedding), the replicate padding of the 2x/4x context latents (done here, on the CPU where the
// history lives, so the graph needs no data-dependent Pad), and the crop of the text to its valid tokens. On WebGPU
// the streams stay on the GPU from the embedders to the head. TeaCache (§8) decides between the embedders and the
// blocks, from block 0's modulated input (the plan's first image stage).

import { buildDiT, CLEAN_EMBEDDERS, DIT_IO, parseDiTConfig, TIMESTEP_CHANNELS, type DiTConfig, type DiTNetwork } from '../models/dit.ts';
import type { BlockPlan } from '../models/ditBlocks.ts';
import type { WeightSet } from '../models/graph.ts';
import { numel, type Tensor } from '../pipeline/tensor.ts';
import { cpuTensor, createSession, sharedDevice, tensorData, type ExecutionProvider, type OrtTensor } from '../runtime/ort.ts';
import { WeightResidency, hostBlockBytes, type HostBlock } from '../runtime/residency.ts';
import { hostWeights } from '../runtime/weightFeeds.ts';
import type { Checkpoint } from '../weights/checkpoint.ts';
import { stageWeightSource, type BlockExecutor, type DiTStreams, type TeaCacheState } from './ditBlocks.ts';
import { DiTInputError, DiTKernelInputError } from '../errors/engine.ts';
import { createWebgpuBlockExecutor } from './ditBlocksWebgpu.ts';
import { createCpuBlockExecutor } from './ditBlocksCpu.ts';

export type { DiTStreams };

/** One DiT call's inputs, as the reference's forward takes them (§5.1), plus the packed RoPE table. */
export interface DiTInputs {
  /** Noisy latents [1, C, T, H, W]. */
  latents: Tensor;
  /** σ·1000 as the model sees it (bf16-rounded on the 16-bit path, by the caller). */
  timestep: number;
  /** Distilled guidance ·1000 as the model sees it (10000, or 9984 after the bf16 cast). */
  guidance: number;
  /** Llama states [1, L, textDim]; with `textMask`, padded states whose valid tokens come first. */
  textStates: Tensor;
  /** Which of textStates' tokens are real (right padding); absent means all. */
  textMask?: readonly boolean[];
  /** CLIP pooled vector [1, P]. */
  pooledProjections: Tensor;
  /** SigLIP last hidden state [1, M, imageProjDim]. */
  imageEmbeddings: Tensor;
  /** Context latents: 1x [1, C, T1, H, W], 2x [1, C, T2, H, W], 4x [1, C, T4, H, W] (unpadded). */
  cleanLatents: Tensor;
  cleanLatents2x: Tensor;
  cleanLatents4x: Tensor;
  /**
   * The packed RoPE table [N_img, 2·headDim], rows in packed order [4x, 2x, 1x, noisy], each
   * [cos T | cos Y | cos X | sin T | sin Y | sin X] (pipeline/ropeTables.ts packedRopeTable).
   */
  rope: Float32Array;
}

/** TeaCache's decision per call (pipeline/teacache.ts TeaCacheRule is one). */
export interface BlockSkipRule {
  /** Whether this call compares block 0's modulated input with the previous call's. */
  readonly needsRelL1: boolean;
  /** Advances one call given that relative L1 (undefined when not needed); whether the blocks must run. */
  step(relL1?: number): boolean;
}

/**
 * One section and guidance branch's TeaCache: the rule, and the state the DiT keeps for it where its executor
 * computes (block 0's last modulated input, the last block residual x_out − x_in), made on first use; release it
 * when the section is done.
 */
export interface TeaCacheSlot {
  rule: BlockSkipRule;
  state?: TeaCacheState;
}

export interface DiTForwardOptions {
  /** With TeaCache: the blocks run only when the rule says so; otherwise x_out = x_in + the slot's stored residual. */
  teacache?: TeaCacheSlot;
  signal?: AbortSignal;
}

/** The embedders' outputs (float32): packed image tokens, [SigLIP; text] context tokens, temb. */
export interface DiTEmbedding {
  imageTokens: Tensor;
  contextTokens: Tensor;
  temb: Tensor;
}

export interface DiTRunner {
  config: DiTConfig;
  /** What runs: the embedders' and the head's graphs, the blocks' plans. */
  network: DiTNetwork;
  /** The velocity prediction [1, C_out, T, H, W] in float32. Throws DiTInputError, TeaCacheResidualMissing. */
  forward(inputs: DiTInputs, options?: DiTForwardOptions): Promise<Tensor>;
  /** The embedders alone (debugging and parity checks of the packed tokens). */
  embed(inputs: DiTInputs): Promise<DiTEmbedding>;
  /** The blocks' executor, as forward runs it (parity checks of the block path on given streams, benches, dispatch counts). */
  readonly blocks: BlockExecutor;
  /** Bytes of weights held in host memory now: the streamed blocks' copies (resident ones are dropped once uploaded). */
  hostCacheBytes(): number;
  release(): Promise<void>;
}

export interface DiTRunnerOptions {
  /** 'webgpu': the embedders and head on ORT's WebGPU EP, the blocks on our kernels; 'wasm': ORT's wasm EP and the CPU executor. */
  provider: ExecutionProvider;
  /** Activation dtype; 'float16' needs shader-f16 on WebGPU. */
  dtype?: 'float32' | 'float16';
  /** 4-bit block linears (see DiTGraphOptions.quantized; the token refiner stays in the activation dtype). */
  quantized?: boolean;
  /**
   * Where the weights live (resident within a budget, the rest streamed); the caller owns it. Absent: all resident
   * on ORT's device on WebGPU (our kernels read weights from GPU buffers), CPU feeds on the wasm EP.
   */
  residency?: WeightResidency;
  /** The block kernels' path on WebGPU (ditBlocksWebgpu.ts): 'auto' (default), 'portable' or 'subgroup-matrix'. */
  kernelPath?: 'auto' | 'portable' | 'subgroup-matrix';
}

// ───────────────────────────── input preparation ─────────────────────────────

/**
 * Where torch's float32 exp on x86-64 CPUs (SLEEF's expf, accurate to 1 ulp) returns the float one ulp ABOVE the
 * correctly rounded value in get_timestep_embedding's frequency table, keyed `${channels}/${maxPeriod}`: three of
 * the 128 frequencies of the standard table, found by comparing with torch 2.13 (AVX2 and AVX-512 agree). The
 * guidance angle (≈ 10⁴ rad) magnifies one ulp of frequency into ≈ 10⁻³ rad; without these the fixtures' DiT
 * output moves by 6e-5 relative instead of 6e-7.
 */
const TORCH_EXP_ROUNDS_UP: Record<string, readonly number[]> = { '256/10000': [13, 44, 119] };

/** The next float32 above a positive float32. */
function nextFloat32Up(x: number): number {
  const bits = new Uint32Array(Float32Array.of(x).buffer);
  bits[0] += 1;
  return new Float32Array(bits.buffer)[0];
}

/**
 * diffusers' get_timestep_embedding(value, channels, flip_sin_to_cos=True, downscale_freq_shift=0) in float32, as
 * torch computes it on the CPU: freq_j = exp(fl(−ln maxPeriod)·j / (channels/2)), angle_j = fl(value·freq_j),
 * output [cos(angles) | sin(angles)]. Values agree with torch's to 1 ulp (its sin/cos are SLEEF's too).
 */
export function timestepSinusoid(value: number, channels: number = TIMESTEP_CHANNELS, maxPeriod = 10000): Float32Array {
  const f = Math.fround;
  const half = channels / 2;
  const negLog = f(-Math.log(maxPeriod));
  const roundsUp = new Set(TORCH_EXP_ROUNDS_UP[`${channels}/${maxPeriod}`] ?? []);
  const out = new Float32Array(channels);
  for (let j = 0; j < half; j++) {
    const exact = f(Math.exp(f(f(negLog * j) / half)));
    const freq = roundsUp.has(j) ? nextFloat32Up(exact) : exact;
    const angle = f(f(value) * freq);
    out[j] = Math.cos(angle);
    out[half + j] = Math.sin(angle);
  }
  return out;
}

function check5d(t: Tensor, what: string, channels: number): [number, number, number] {
  if (t.shape.length !== 5 || t.shape[0] !== 1 || t.shape[1] !== channels) {
    throw new DiTInputError(`${what} must be [1, ${channels}, T, H, W], got [${t.shape.join(', ')}].`);
  }
  if (t.data.length !== numel(t.shape)) throw new DiTInputError(`${what} has ${t.data.length} values for its shape [${t.shape.join(', ')}].`);
  return [t.shape[2], t.shape[3], t.shape[4]];
}

/**
 * Replicate-pads [1, C, T, H, W] at the end of T, H and W up to multiples of `multiples` (the reference's
 * pad_for_3d_conv before the 2x/4x embedders). Returns the input itself when nothing is padded.
 */
export function padEndReplicate(x: Tensor, multiples: readonly [number, number, number]): Tensor {
  const [c, t, h, w] = x.shape.slice(1);
  const [pt, ph, pw] = [t, h, w].map((n, i) => Math.ceil(n / multiples[i]) * multiples[i]);
  if (pt === t && ph === h && pw === w) return x;
  const out = new Float32Array(c * pt * ph * pw);
  let o = 0;
  for (let ci = 0; ci < c; ci++) {
    for (let ti = 0; ti < pt; ti++) {
      const st = Math.min(ti, t - 1);
      for (let yi = 0; yi < ph; yi++) {
        const row = ((ci * t + st) * h + Math.min(yi, h - 1)) * w;
        for (let xi = 0; xi < pw; xi++) out[o++] = x.data[row + Math.min(xi, w - 1)];
      }
    }
  }
  return { data: out, shape: [1, c, pt, ph, pw] };
}

/**
 * The valid text tokens [1, L, dim]: with batch 1 the reference crops the sequence to its valid length and runs
 * without a mask (§5.6), which is exact only when the valid tokens come first. Throws DiTInputError otherwise.
 */
export function validTextTokens(states: Tensor, mask: readonly boolean[] | undefined, dim: number): Tensor {
  if (states.shape.length !== 3 || states.shape[0] !== 1 || states.shape[2] !== dim) {
    throw new DiTInputError(`The text states must be [1, L, ${dim}], got [${states.shape.join(', ')}].`);
  }
  const total = states.shape[1];
  if (!mask) {
    if (total < 1) throw new DiTInputError('The prompt gave no text tokens; the DiT needs at least one.');
    return states;
  }
  if (mask.length !== total) throw new DiTInputError(`The text mask has ${mask.length} entries for ${total} text tokens.`);
  const valid = mask.indexOf(false) === -1 ? total : mask.indexOf(false);
  if (mask.slice(valid).some(Boolean)) throw new DiTInputError('The text mask must mark the valid tokens first and the padding after them (right padding).');
  if (valid < 1) throw new DiTInputError('The text mask marks no valid token; the DiT needs at least one.');
  return valid === total ? states : { data: states.data.slice(0, valid * dim), shape: [1, valid, dim] };
}

interface PreparedInputs {
  embedFeeds: Record<string, OrtTensor>;
  /** Post-patch (T', H', W') of the noisy latents. */
  grid: [number, number, number];
}

/** Validates the inputs against the config and each other, and turns them into the embedders' feeds. */
function prepareInputs(config: DiTConfig, inputs: DiTInputs): PreparedInputs {
  const c = config.inChannels;
  const [t, h, w] = check5d(inputs.latents, 'The noisy latents', c);
  const { patchSize: p, patchSizeT: pt } = config;
  if (t % pt || h % p || w % p) {
    throw new DiTInputError(`The latent grid ${t}×${h}×${w} is not a multiple of the patch (${pt}, ${p}, ${p}); pick a resolution bucket whose sides are multiples of ${8 * p} pixels.`);
  }
  const grid: [number, number, number] = [t / pt, h / p, w / p];
  const contexts = [
    [inputs.cleanLatents, 'The clean latents', CLEAN_EMBEDDERS.proj],
    [inputs.cleanLatents2x, 'The 2x clean latents', CLEAN_EMBEDDERS.proj_2x],
    [inputs.cleanLatents4x, 'The 4x clean latents', CLEAN_EMBEDDERS.proj_4x],
  ] as const;
  let imageTokens = grid[0] * grid[1] * grid[2];
  const padded = contexts.map(([x, what, kernel]) => {
    const [, ch, cw] = check5d(x, what, c);
    if (ch !== h || cw !== w) throw new DiTInputError(`${what} are ${ch}×${cw} but the noisy latents ${h}×${w}; all come from one latent grid.`);
    const out = padEndReplicate(x, kernel);
    imageTokens += (out.shape[2] / kernel[0]) * (out.shape[3] / kernel[1]) * (out.shape[4] / kernel[2]);
    return out;
  });
  const d = config.headDim;
  if (inputs.rope.length !== imageTokens * 2 * d) {
    throw new DiTInputError(`The RoPE table has ${inputs.rope.length / (2 * d)} rows of ${2 * d} for ${imageTokens} image tokens; build it from this call's index lists and latent grid.`);
  }
  const text = validTextTokens(inputs.textStates, inputs.textMask, config.textEmbedDim);
  const { pooledProjections: pooled, imageEmbeddings: image } = inputs;
  if (pooled.data.length !== config.pooledProjectionDim) throw new DiTInputError(`The pooled text vector has ${pooled.data.length} values; this model takes ${config.pooledProjectionDim}.`);
  if (image.shape.length !== 3 || image.shape[0] !== 1 || image.shape[2] !== config.imageProjDim) {
    throw new DiTInputError(`The image embeddings must be [1, M, ${config.imageProjDim}], got [${image.shape.join(', ')}].`);
  }
  const f32 = (x: Tensor) => cpuTensor('float32', x.data, x.shape);
  const embedFeeds: Record<string, OrtTensor> = {
    [DIT_IO.latents]: f32(inputs.latents),
    [DIT_IO.cleanLatents]: f32(padded[0]),
    [DIT_IO.cleanLatents2x]: f32(padded[1]),
    [DIT_IO.cleanLatents4x]: f32(padded[2]),
    [DIT_IO.timestepProj]: cpuTensor('float32', timestepSinusoid(inputs.timestep), [1, TIMESTEP_CHANNELS]),
    [DIT_IO.pooled]: cpuTensor('float32', pooled.data, [1, config.pooledProjectionDim]),
    [DIT_IO.text]: f32(text),
    [DIT_IO.image]: f32(image),
    [DIT_IO.rope]: cpuTensor('float32', inputs.rope, [imageTokens, 2 * d]),
  };
  if (config.guidanceEmbeds) embedFeeds[DIT_IO.guidanceProj] = cpuTensor('float32', timestepSinusoid(inputs.guidance), [1, TIMESTEP_CHANNELS]);
  return { embedFeeds, grid };
}

async function toTensor(t: OrtTensor): Promise<Tensor> {
  return { data: Float32Array.from((await tensorData(t)) as Float32Array), shape: [...t.dims] };
}

/** Frees a tensor left on the GPU for us (ORT outputs of sessions made with outputsOnGpu, block outputs). */
function disposeGpu(...tensors: OrtTensor[]): void {
  for (const t of tensors) if (t.location === 'gpu-buffer') t.dispose();
}

// ───────────────────────────── the runner ─────────────────────────────

/** A weight set's key in the host cache and the residency manager: its name, and the block index for block sets. */
const blockKey = (set: WeightSet, block?: number) => `${set.name}/${block ?? ''}`;

/**
 * Builds the DiT's graphs and block plans for `checkpoint`'s config.json, creates the graphs' sessions on
 * `options.provider` and the blocks' executor. Weights are read (and quantized, for 4-bit) on first use, kept in
 * host memory and fed through the residency manager. Throws DiTConfigError for a config that is not a FramePack
 * packed DiT, and the kernels' config errors when the device cannot run one.
 */
export async function createDiT(checkpoint: Checkpoint, options: DiTRunnerOptions): Promise<DiTRunner> {
  const config = parseDiTConfig(checkpoint.config);
  const dtype = options.dtype ?? 'float32';
  const network = buildDiT(config, { dtype, quantized: options.quantized ?? false });
  const device = options.provider === 'webgpu' ? sharedDevice() : null;
  if (options.provider === 'webgpu' && !device) throw new DiTKernelInputError('The webgpu provider needs ORT set up on a GPU device first (runtime/ort.ts setupOrt).');
  // On WebGPU the embedders' outputs stay on the GPU for the blocks; only the velocity comes back.
  const sessions = {
    embed: await createSession(network.embed, options.provider, { outputsOnGpu: device !== null }),
    head: await createSession(network.head, options.provider),
  };
  const residency = options.residency ?? new WeightResidency(device);

  // A host copy per weight set and block, read from the checkpoint on first use and kept while the block streams
  // (it is uploaded again on every call); once a block is resident its host copy is dropped, so a job with weights
  // resident holds none of them in host memory (at real size, 7.3 GiB less).
  const hostBlocks = new Map<string, Promise<HostBlock>>();
  const hostHeld = new Map<string, HostBlock>();
  const hostBlock = (set: WeightSet, block?: number): Promise<HostBlock> => {
    const key = blockKey(set, block);
    let host = hostBlocks.get(key);
    if (!host) {
      hostBlocks.set(key, (host = hostWeights(set, checkpoint, block, key)));
      host.then((h) => hostBlocks.get(key) === host && hostHeld.set(key, h), () => hostBlocks.delete(key));
    }
    return host;
  };
  const feedsOf = async (key: string, host: () => Promise<HostBlock>): Promise<Record<string, OrtTensor>> => {
    const kept = residency.residentFeeds(key);
    if (kept) return kept;
    const feeds = residency.feeds(await host());
    if (residency.residentFeeds(key)) {
      hostBlocks.delete(key);
      hostHeld.delete(key);
    }
    return feeds;
  };
  const graphWeights = (set: WeightSet): Promise<Record<string, OrtTensor>> => feedsOf(blockKey(set), () => hostBlock(set));
  const stageWeights = stageWeightSource((plan: BlockPlan, block: number) => hostBlock(plan.weights, block));
  const blocks: BlockExecutor = device
    ? await createWebgpuBlockExecutor(device, config, network.blocks, { dtype, path: options.kernelPath, weights: (plan, block) => feedsOf(blockKey(plan.weights, block), () => stageWeights(plan, block)) })
    : createCpuBlockExecutor(config, network.blocks, { dtype, weights: stageWeights });

  /** The embedders: packed image tokens, context tokens, temb and the RoPE halves, on the GPU with WebGPU. */
  const embed = async (prepared: PreparedInputs): Promise<DiTStreams> => {
    const out = await sessions.embed.run({ ...(await graphWeights(network.embed)), ...prepared.embedFeeds });
    return { x: out[DIT_IO.imageTokens], ctx: out[DIT_IO.contextTokens], temb: out[DIT_IO.temb], cos: out[DIT_IO.ropeCos], sin: out[DIT_IO.ropeSin] };
  };

  /** Every dual then every single block; returns the image tokens (the context stream is no longer needed). */
  const runBlocks = async (s: DiTStreams, signal?: AbortSignal): Promise<OrtTensor> => {
    let { x, ctx } = s; // x [1, N_img, D] f32, ctx [1, N_ctx, D] f32
    const step = async (kind: 'dual' | 'single', i: number) => {
      signal?.throwIfAborted();
      const out = await blocks.run(kind, i, { ...s, x, ctx });
      if (x !== s.x) disposeGpu(x, ctx);
      ({ x, ctx } = out);
    };
    try {
      for (let i = 0; i < config.layers; i++) await step('dual', i); // 20 dual-stream blocks (§5.7)
      for (let i = 0; i < config.singleLayers; i++) await step('single', i); // 40 single-stream blocks (§5.8)
    } catch (e) {
      if (x !== s.x) disposeGpu(x, ctx);
      throw e;
    }
    if (ctx !== s.ctx) disposeGpu(ctx);
    return x;
  };

  /**
   * The blocks, or TeaCache's shortcut x_in + stored residual when its rule says skip. The probe, its relative L1
   * and the residual stay where the executor computes: on WebGPU only the L1's two sums come back.
   */
  const blocksWithTeaCache = async (s: DiTStreams, slot: TeaCacheSlot, signal?: AbortSignal): Promise<OrtTensor> => {
    const state = (slot.state ??= blocks.teacacheState());
    const compare = slot.rule.needsRelL1;
    const rel = await state.probe(s, compare); // block 0's modulated image tokens against the previous call's
    if (slot.rule.step(rel)) {
      const xOut = await runBlocks(s, signal); // [1, N_img, D] f32
      state.saveResidual(s.x, xOut);
      return xOut;
    }
    return state.applyResidual(s.x); // x_in + residual, [1, N_img, D] f32
  };

  return {
    config,
    network,
    blocks,
    async embed(inputs) {
      const s = await embed(prepareInputs(config, inputs));
      try {
        return { imageTokens: await toTensor(s.x), contextTokens: await toTensor(s.ctx), temb: await toTensor(s.temb) };
      } finally {
        disposeGpu(s.x, s.ctx, s.temb, s.cos, s.sin);
      }
    },
    async forward(inputs, forwardOptions = {}) {
      const { teacache, signal } = forwardOptions;
      const prepared = prepareInputs(config, inputs);
      signal?.throwIfAborted();
      const s = await embed(prepared); // x [1, N_img, D], ctx [1, N_ctx, D], temb [1, D], cos/sin [N_img, headDim]
      let x: OrtTensor | null = null;
      try {
        x = teacache ? await blocksWithTeaCache(s, teacache, signal) : await runBlocks(s, signal);
        signal?.throwIfAborted();
        const grid = cpuTensor('int64', BigInt64Array.from(prepared.grid, BigInt), [3]);
        const out = await sessions.head.run({ ...(await graphWeights(network.head)), [DIT_IO.imageTokens]: x, [DIT_IO.temb]: s.temb, [DIT_IO.grid]: grid });
        return await toTensor(out[DIT_IO.velocity]); // [1, C_out, T, H, W] f32
      } finally {
        if (x && x !== s.x) disposeGpu(x);
        disposeGpu(s.x, s.ctx, s.temb, s.cos, s.sin);
      }
    },
    hostCacheBytes: () => [...hostHeld.values()].reduce((n, h) => n + hostBlockBytes(h), 0),
    async release() {
      for (const session of Object.values(sessions)) await session.release();
      await blocks.release();
      if (!options.residency) residency.release();
      hostBlocks.clear();
      hostHeld.clear();
    },
  };
}

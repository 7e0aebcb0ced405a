// Runs the packed DiT for a checkpoint on one execution provider: one forward is the embedders graph, the dual-block
// graph once per `transformer_blocks.{i}`, the single-block graph once per `single_transformer_blocks.{i}`, then the
// head graph, each block call bound to that block's weights. This is the one code path the app, the CLI and the
// reference checks use. It also prepares what the graphs take and the reference computes on the side: the
// timestep/guidance sinusoids (float32, as torch computes diffusers' get_timestep_embedding), the replicate padding
// of the 2x/4x context latents (done here, on the CPU where the history lives, so the graph needs no data-dependent
// Pad), and the crop of the text to its valid tokens. On WebGPU the streams between graphs stay on the GPU. TeaCache
// (framepack-reference.md §8) hooks in between the embedders and the blocks.

import {
  buildDiTGraphs, CLEAN_EMBEDDERS, DIT_IO, hiddenSize, parseDiTConfig, TIMESTEP_CHANNELS,
  type DiTConfig, type DiTGraphs,
} from '../models/dit.ts';
import { numel, type Tensor } from '../pipeline/tensor.ts';
import type { BuiltGraph } from '../models/graph.ts';
import { cpuTensor, createSession, gpuTensor, sharedDevice, tensorData, type ExecutionProvider, type GraphSession, type OrtTensor } from '../runtime/ort.ts';
import { createFlashAttention, type FlashAttention } from '../kernels/flashAttention.ts';
import { WeightResidency, type HostBlock } from '../runtime/residency.ts';
import { hostWeights } from '../runtime/weightFeeds.ts';
import type { Checkpoint } from '../weights/checkpoint.ts';

/** What the caller handed the DiT does not fit the model or the other inputs; the message says which. */
export class DiTInputError extends Error {
  override name = 'DiTInputError';
}

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

/** TeaCache's decision, given block 0's modulated image tokens (pipeline/teacache.ts TeaCacheRule fits). */
export interface BlockSkipRule {
  shouldCompute(modulatedInput: Float32Array): boolean | Promise<boolean>;
}

/**
 * The per-branch TeaCache state the engine keeps (one per section and guidance branch): the rule, and the block
 * residual x_out − x_in of the image tokens saved by the last call that ran the blocks.
 */
export interface TeaCacheSlot {
  rule: BlockSkipRule;
  residual: Float32Array | null;
}

export interface DiTForwardOptions {
  /** With TeaCache: the blocks run only when the rule says so; otherwise x_out = x_in + slot.residual. */
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
  graphs: DiTGraphs;
  /** The velocity prediction [1, C_out, T, H, W] in float32. Throws DiTInputError, TeaCacheResidualMissing. */
  forward(inputs: DiTInputs, options?: DiTForwardOptions): Promise<Tensor>;
  /** The embedders alone (debugging and parity checks of the packed tokens). */
  embed(inputs: DiTInputs): Promise<DiTEmbedding>;
  /** The attention kernel's path on WebGPU ('portable' or 'subgroup-matrix'), null when attention runs in ONNX. */
  readonly attentionKernel: string | null;
  /** Attention kernel dispatches so far (one per block per computed forward). */
  readonly attentionDispatches: number;
  release(): Promise<void>;
}

export interface DiTRunnerOptions {
  provider: ExecutionProvider;
  /** Activation dtype; 'float16' needs shader-f16 on WebGPU. */
  dtype?: 'float32' | 'float16';
  /** 4-bit block linears (see DiTGraphOptions.quantized). */
  quantized?: boolean;
  /**
   * Where the weights live on WebGPU (resident within a budget, the rest streamed); the caller owns it. Absent:
   * CPU feeds, which ORT uploads on every call (fine for the wasm EP and the tiny model).
   */
  residency?: WeightResidency;
}

/** TeaCache asked to skip the blocks before any call of this slot ran them. */
export class TeaCacheResidualMissing extends Error {
  override name = 'TeaCacheResidualMissing';
  constructor(got: number | null, want: number) {
    super(got === null
      ? 'TeaCache asked to reuse the block residual before any step computed it; the first step of a section must compute.'
      : `TeaCache's stored block residual has ${got} values but this call has ${want}; keep one TeaCache slot per section and branch.`);
  }
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
  imageTokens: number;
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
  return { embedFeeds, grid, imageTokens };
}

async function toTensor(t: OrtTensor): Promise<Tensor> {
  return { data: Float32Array.from((await tensorData(t)) as Float32Array), shape: [...t.dims] };
}

/** Frees a tensor ORT left on the GPU for us (outputs of sessions made with outputsOnGpu). */
function disposeGpu(...tensors: OrtTensor[]): void {
  for (const t of tensors) if (t.location === 'gpu-buffer') t.dispose();
}

// ───────────────────────────── the runner ─────────────────────────────

/** One forward's streams between graphs; on WebGPU they stay on the GPU. */
interface Streams {
  x: OrtTensor; // [1, N_img, D] f32
  ctx: OrtTensor; // [1, M + L, D] f32
  temb: OrtTensor; // [1, D] f32
  cos: OrtTensor; // [N_img, headDim] f32
  sin: OrtTensor; // [N_img, headDim] f32
}

/**
 * Builds the DiT's graphs for `checkpoint`'s config.json and creates their sessions on `options.provider`.
 * Weights are read (and quantized, for 4-bit) on first use, kept in host memory and fed through the residency
 * manager. Throws DiTConfigError for a config that is not a FramePack packed DiT.
 */
export async function createDiT(checkpoint: Checkpoint, options: DiTRunnerOptions): Promise<DiTRunner> {
  const config = parseDiTConfig(checkpoint.config);
  const dtype = options.dtype ?? 'float32';
  // On WebGPU the attention between the block halves is our flash-attention kernel, on ORT's own device.
  const device = options.provider === 'webgpu' ? sharedDevice() : null;
  const graphs = buildDiTGraphs(config, { dtype, quantized: options.quantized ?? false, attention: device ? 'external' : 'inline' });
  // On WebGPU the streams between graphs stay on the GPU; only the velocity and TeaCache's inputs come back.
  const onGpu = { outputsOnGpu: options.provider === 'webgpu' };
  const split = graphs.split;
  const sessions = {
    embed: await createSession(graphs.embed, options.provider, onGpu),
    dual: split ? await createSession(split.dualPre, options.provider, onGpu) : await createSession(graphs.dual, options.provider, onGpu),
    single: split ? await createSession(split.singlePre, options.provider, onGpu) : await createSession(graphs.single, options.provider, onGpu),
    dualPost: split ? await createSession(split.dualPost, options.provider, onGpu) : null,
    singlePost: split ? await createSession(split.singlePost, options.provider, onGpu) : null,
    head: await createSession(graphs.head, options.provider),
  };
  const attention: FlashAttention | null = device
    ? await createFlashAttention(device, { heads: config.heads, headDim: config.headDim, dtype: dtype === 'float16' ? 'f16' : 'f32' })
    : null;
  let attentionOut: GPUBuffer | null = null;
  let dispatches = 0;
  let modulationSession: GraphSession | null = null;
  const residency = options.residency ?? new WeightResidency(null);

  const hostBlocks = new Map<string, Promise<HostBlock>>();
  const weights = async (graph: BuiltGraph, block?: number): Promise<Record<string, OrtTensor>> => {
    const key = `${graph.name}/${block ?? ''}`;
    let host = hostBlocks.get(key);
    if (!host) hostBlocks.set(key, (host = hostWeights(graph, checkpoint, block, key)));
    return residency.feeds(await host);
  };

  const embed = async (prepared: PreparedInputs): Promise<Streams> => {
    const out = await sessions.embed.run({ ...(await weights(graphs.embed)), ...prepared.embedFeeds });
    return { x: out[DIT_IO.imageTokens], ctx: out[DIT_IO.contextTokens], temb: out[DIT_IO.temb], cos: out[DIT_IO.ropeCos], sin: out[DIT_IO.ropeSin] };
  };

  /** Block 0's modulated image tokens, fed block 0's own weights (the two graphs share input names). */
  const modulated = async (s: Streams): Promise<Float32Array> => {
    modulationSession ??= await createSession(graphs.modulation, options.provider);
    const block0 = await weights(graphs.split?.dualPre ?? graphs.dual, 0);
    const feeds: Record<string, OrtTensor> = { [DIT_IO.imageTokens]: s.x, [DIT_IO.temb]: s.temb };
    for (const w of graphs.modulation.weights) feeds[w.input] = block0[w.input];
    const out = await modulationSession.run(feeds);
    return Float32Array.from((await tensorData(out[DIT_IO.modulated])) as Float32Array);
  };

  /**
   * One block with its attention outside the graphs: pre (q, k, v, …) → flash-attention kernel → post. The kernel's
   * commands are submitted after ORT's (queue order), and its output buffer is reused from block to block.
   */
  const splitBlock = async (pre: GraphSession, post: GraphSession, block: number, streams: Record<string, OrtTensor>): Promise<Record<string, OrtTensor>> => {
    const preGraph = pre.graph;
    const postGraph = post.graph;
    const a = await pre.run({ ...(await weights(preGraph, block)), ...streams });
    try {
      const q = a[DIT_IO.q];
      const tokens = q.dims[1];
      const bytes = tokens * config.heads * config.headDim * (dtype === 'float16' ? 2 : 4);
      if (!attentionOut || attentionOut.size < bytes) {
        attentionOut?.destroy();
        attentionOut = device!.createBuffer({ size: Math.ceil(bytes / 4) * 4, usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST, label: 'dit attention' });
      }
      const encoder = device!.createCommandEncoder({ label: 'dit attention' });
      attention!.encode(encoder, { q: q.gpuBuffer, k: a[DIT_IO.k].gpuBuffer, v: a[DIT_IO.v].gpuBuffer, out: attentionOut, nq: tokens, nk: tokens });
      device!.queue.submit([encoder.finish()]);
      dispatches++;
      const feeds: Record<string, OrtTensor> = {
        ...(await weights(postGraph, block)),
        [DIT_IO.imageTokens]: streams[DIT_IO.imageTokens],
        [DIT_IO.contextTokens]: streams[DIT_IO.contextTokens],
        [DIT_IO.attention]: gpuTensor(attentionOut, dtype, [1, tokens, config.heads * config.headDim]),
      };
      for (const name of postGraph.inputs.map((i) => i.name)) if (name in a) feeds[name] = a[name];
      return await post.run(feeds);
    } finally {
      disposeGpu(...Object.values(a));
    }
  };

  /** Every dual then every single block; returns the image tokens (the context stream is no longer needed). */
  const runBlocks = async (s: Streams, signal?: AbortSignal): Promise<OrtTensor> => {
    let { x, ctx } = s;
    const kinds = [
      { session: sessions.dual, post: sessions.dualPost, count: config.layers },
      { session: sessions.single, post: sessions.singlePost, count: config.singleLayers },
    ];
    try {
      for (const kind of kinds) {
        for (let i = 0; i < kind.count; i++) {
          signal?.throwIfAborted();
          const streams = {
            [DIT_IO.imageTokens]: x,
            [DIT_IO.contextTokens]: ctx,
            [DIT_IO.temb]: s.temb,
            [DIT_IO.ropeCos]: s.cos,
            [DIT_IO.ropeSin]: s.sin,
          };
          const out = kind.post
            ? await splitBlock(kind.session, kind.post, i, streams)
            : await kind.session.run({ ...(await weights(kind.session.graph, i)), ...streams });
          if (x !== s.x) disposeGpu(x, ctx);
          x = out[DIT_IO.imageTokensOut];
          ctx = out[DIT_IO.contextTokensOut];
        }
      }
    } catch (e) {
      if (x !== s.x) disposeGpu(x, ctx);
      throw e;
    }
    if (ctx !== s.ctx) disposeGpu(ctx);
    return x;
  };

  /** The blocks, or TeaCache's shortcut x_in + stored residual when its rule says skip. */
  const blocksWithTeaCache = async (s: Streams, slot: TeaCacheSlot, imageTokens: number, signal?: AbortSignal): Promise<OrtTensor> => {
    const compute = await slot.rule.shouldCompute(await modulated(s));
    const xIn = (await tensorData(s.x)) as Float32Array; // [1, N_img, D] f32
    if (compute) {
      const xOut = await runBlocks(s, signal);
      const done = (await tensorData(xOut)) as Float32Array;
      const residual = new Float32Array(xIn.length);
      for (let i = 0; i < residual.length; i++) residual[i] = done[i] - xIn[i];
      slot.residual = residual;
      return xOut;
    }
    const residual = slot.residual;
    if (!residual || residual.length !== xIn.length) throw new TeaCacheResidualMissing(residual?.length ?? null, xIn.length);
    const skipped = new Float32Array(xIn.length);
    for (let i = 0; i < skipped.length; i++) skipped[i] = xIn[i] + residual[i];
    return cpuTensor('float32', skipped, [1, imageTokens, hiddenSize(config)]);
  };

  return {
    config,
    graphs,
    attentionKernel: attention?.path ?? null,
    get attentionDispatches() {
      return dispatches;
    },
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
      const s = await embed(prepared);
      let x: OrtTensor | null = null;
      try {
        x = teacache ? await blocksWithTeaCache(s, teacache, prepared.imageTokens, signal) : await runBlocks(s, signal);
        signal?.throwIfAborted();
        const grid = cpuTensor('int64', BigInt64Array.from(prepared.grid, BigInt), [3]);
        const out = await sessions.head.run({ ...(await weights(graphs.head)), [DIT_IO.imageTokens]: x, [DIT_IO.temb]: s.temb, [DIT_IO.grid]: grid });
        return await toTensor(out[DIT_IO.velocity]); // [1, C_out, T, H, W] f32
      } finally {
        if (x && x !== s.x) disposeGpu(x);
        disposeGpu(s.x, s.ctx, s.temb, s.cos, s.sin);
      }
    },
    async release() {
      for (const session of [...Object.values(sessions), modulationSession]) await session?.release();
      attentionOut?.destroy();
      attentionOut = null;
      if (!options.residency) residency.release();
      hostBlocks.clear();
    },
  };
}

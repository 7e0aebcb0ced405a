// Runs the packed DiT for a checkpoint on one execution provider: one forward is the embedders graph, the dual-block
// plan once per `transformer_blocks.{i}`, the single-block plan once per `single_transformer_blocks.{i}`, then the
// head graph, each block call bound to that block's weights. A block plan (models/dit.ts) is the whole-block graph on
// the wasm EP; on WebGPU it is two graphs around our flash-attention kernel, and with 4-bit weights only our
// kernels (src/kernels/: 4-bit GEMM and GEMV, heads, AdaLN, attention). This is the one code path the app, the CLI, the bench and the reference
// checks use. It also prepares what the graphs take and the reference computes on the side: the
// timestep/guidance sinusoids (float32, as torch computes diffusers' get_timestep_embedding), the replicate padding
// of the 2x/4x context latents (done here, on the CPU where the history lives, so the graph needs no data-dependent
// Pad), and the crop of the text to its valid tokens. On WebGPU the streams between graphs stay on the GPU. TeaCache
// (framepack-reference.md §8) hooks in between the embedders and the blocks.

import {
  buildDiTGraphs, CLEAN_EMBEDDERS, DIT_IO, DIT_NORM_EPS, hiddenSize, parseDiTConfig, TIMESTEP_CHANNELS,
  type BlockPlan, type BlockStage, type DiTConfig, type DiTGraphs, type KernelLinear, type KernelLinearPart,
} from '../models/dit.ts';
import { numel, type Tensor } from '../pipeline/tensor.ts';
import type { BuiltGraph } from '../models/graph.ts';
import { cpuTensor, createSession, gpuTensor, sharedDevice, tensorData, type ExecutionProvider, type GraphSession, type OrtTensor } from '../runtime/ort.ts';
import { createFlashAttention, type FlashAttention } from '../kernels/flashAttention.ts';
import { createQ4Matmul, Q4_BLOCK_SIZE, type Q4Matmul } from '../kernels/q4Matmul.ts';
import { createQkvHeads, type QkvHeads } from '../kernels/qkvHeads.ts';
import { createAdaNorm, type AdaNorm } from '../kernels/adaNorm.ts';
import { createQ4Gemv, type Q4Gemv } from '../kernels/q4Gemv.ts';
import { WeightResidency, type HostBlock, type HostTensor } from '../runtime/residency.ts';
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
  /** The blocks alone, as forward runs them (parity checks of the block path on given streams, benches). */
  readonly blocks: DiTBlockRunner;
  /** The attention kernel's path on WebGPU ('portable' or 'subgroup-matrix'), null when attention runs in ONNX. */
  readonly attentionKernel: string | null;
  /** Attention kernel dispatches so far (one per block per computed forward). */
  readonly attentionDispatches: number;
  /** The 4-bit matmul kernel's path on WebGPU with 4-bit linears, null when every linear runs in ONNX. */
  readonly linearKernel: string | null;
  /** 4-bit kernel dispatches so far: the token-wise GEMMs and the AdaLN parameters' one-row products (10 per dual block, 5 per single block). */
  readonly linearDispatches: number;
  release(): Promise<void>;
}

export interface DiTRunnerOptions {
  provider: ExecutionProvider;
  /** Activation dtype; 'float16' needs shader-f16 on WebGPU. */
  dtype?: 'float32' | 'float16';
  /** 4-bit block linears (see DiTGraphOptions.quantized). */
  quantized?: boolean;
  /**
   * Where the weights live (resident within a budget, the rest streamed); the caller owns it. Absent: all resident
   * on ORT's device on WebGPU (our kernels read weights from GPU buffers), CPU feeds on the wasm EP.
   */
  residency?: WeightResidency;
  /**
   * Where the 4-bit block linears run on WebGPU: 'kernel' (default) puts the feed-forwards, proj_mlp and proj_out
   * in src/kernels/q4Matmul.ts where the model allows it (DiTGraphOptions.linears); 'onnx' keeps them MatMulNBits
   * nodes (comparisons).
   */
  linears?: 'kernel' | 'onnx';
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

// ───────────────────────────── blocks ─────────────────────────────

/** One forward's streams between graphs; on WebGPU they stay on the GPU. */
export interface DiTStreams {
  x: OrtTensor; // [1, N_img, D] f32
  ctx: OrtTensor; // [1, M + L, D] f32
  temb: OrtTensor; // [1, D] f32
  cos: OrtTensor; // [N_img, headDim] f32
  sin: OrtTensor; // [N_img, headDim] f32
}

export type BlockKind = 'dual' | 'single';

export interface DiTBlockRunnerOptions {
  provider: ExecutionProvider;
  dtype: 'float32' | 'float16';
  /**
   * One block's weights for a graph of the plans (its weight inputs, laid out), in host memory; keep returning the
   * same object for the same graph and block. The runner rewrites the kernel linears' blocks in place, once, into
   * what the kernel reads (proj_out's column halves split out), so host memory holds them once.
   */
  hostBlock(graph: BuiltGraph, block: number): Promise<HostBlock>;
  /** Where the weights live (a WeightResidency); kernel linears need them on the GPU device. */
  residency: Pick<WeightResidency, 'feeds'>;
}

export interface BlockRunOptions {
  /** Waits for the GPU after every stage and reports its time (benches); slows the block down. */
  onStage?: (stage: BlockStage, ms: number) => void;
}

/**
 * Runs the DiT's blocks as graphs.blocks plans them: ONNX graphs, the flash-attention kernel and the 4-bit matmul
 * kernel on ORT's device, in one queue order. The engine's forward and the bench both go through it.
 */
export interface DiTBlockRunner {
  /** Block `block` of `kind` on the streams; returns the updated image and context streams (the caller frees them). */
  run(kind: BlockKind, block: number, streams: DiTStreams, options?: BlockRunOptions): Promise<{ x: OrtTensor; ctx: OrtTensor }>;
  /** Block 0's weights of the dual plan's first graph, or of its kernels when it has none (TeaCache's modulation graph reads them by the same names). */
  firstDualWeights(): Promise<Record<string, OrtTensor>>;
  /** The attention kernel's path, null when attention runs in ONNX. */
  readonly attentionKernel: string | null;
  readonly attentionDispatches: number;
  /** The 4-bit matmul kernel's path, null when every linear runs in ONNX. */
  readonly linearKernel: string | null;
  readonly linearDispatches: number;
  /** Dispatches of the fused element-wise kernels (q/k/v heads, gated residual + AdaLN) so far. */
  readonly fusedDispatches: number;
  release(): Promise<void>;
}

/** A plan needs a GPU buffer where ORT or the residency handed a CPU tensor. */
export class DiTKernelInputError extends Error {
  override name = 'DiTKernelInputError';
}

/** What a product reads of its parts, named by the parts (stacked with '+') and the column range when partial. */
function kernelWeightNames(l: KernelLinear): { blocks: string; scales: string; bias: string | null } {
  const join = (pick: (p: KernelLinearPart) => string) => l.parts.map(pick).join('+');
  const range = l.kOffset === 0 && l.k === l.storedK ? '' : `[${l.kOffset}:${l.kOffset + l.k}]`;
  return { blocks: `${join((p) => p.blocks)}${range}`, scales: `${join((p) => p.scales)}${range}`, bias: l.bias ? join((p) => p.bias) : null };
}

/** Typed arrays of one kind laid end to end. */
function concatenated<T extends HostTensor['data']>(arrays: T[]): T {
  if (arrays.length === 1) return arrays[0];
  const out = new (arrays[0].constructor as new (n: number) => T)(arrays.reduce((n, a) => n + a.length, 0));
  let at = 0;
  for (const a of arrays) {
    out.set(a as never, at);
    at += a.length;
  }
  return out;
}

/**
 * Columns [kOffset, kOffset + k) of MatMulNBits weights: per output row, the 32-wide blocks (16 bytes each) and
 * their scales in that range. Quantization is per block of 32 along K, so this equals quantizing those columns.
 */
function q4Columns(blocks: HostTensor, scales: HostTensor, l: KernelLinear): { blocks: HostTensor; scales: HostTensor } {
  if (l.kOffset % Q4_BLOCK_SIZE !== 0 || l.k % Q4_BLOCK_SIZE !== 0) throw new Error(`${l.parts[0].prefix}: a column range of a 4-bit weight must start and end on blocks of ${Q4_BLOCK_SIZE}.`);
  const stored = Math.ceil(l.storedK / Q4_BLOCK_SIZE);
  const [b0, count] = [l.kOffset / Q4_BLOCK_SIZE, l.k / Q4_BLOCK_SIZE];
  const part = <T extends HostTensor['data']>(data: T, perBlock: number): T => {
    const out = new (data.constructor as new (n: number) => T)(l.n * count * perBlock);
    for (let r = 0; r < l.n; r++) out.set(data.subarray((r * stored + b0) * perBlock, (r * stored + b0 + count) * perBlock) as never, r * count * perBlock);
    return out;
  };
  return {
    blocks: { dtype: blocks.dtype, dims: [l.n, count, 16], data: part(blocks.data, 16) },
    scales: { dtype: scales.dtype, dims: [l.n * count], data: part(scales.data, 1) },
  };
}

/**
 * The kernels' weights of one block as they read them: the linears' stacked parts concatenated (MatMulNBits keeps
 * each output row's blocks and scales together, so stacking rows is concatenation), column parts split out; the
 * heads' norm weights as they are.
 */
function kernelTensors(plan: BlockPlan, host: HostBlock): Record<string, HostTensor> {
  const tensors: Record<string, HostTensor> = {};
  const kBlocks = (l: KernelLinear) => Math.ceil(l.storedK / Q4_BLOCK_SIZE);
  for (const stage of plan.stages) {
    if (stage.op !== 'linear' && stage.op !== 'adaParams') continue;
    const l = stage.linear;
    const names = kernelWeightNames(l);
    const of = (name: string) => host.tensors[name];
    if (l.parts.length > 1 && l.k !== l.storedK) throw new Error(`${names.blocks}: stacked weights are read whole; only a single weight takes a column range.`);
    if (l.k === l.storedK) {
      tensors[names.blocks] = { dtype: 'uint8', dims: [l.n, kBlocks(l), 16], data: concatenated(l.parts.map((p) => of(p.blocks).data as Uint8Array)) };
      const scales = l.parts.map((p) => of(p.scales));
      tensors[names.scales] = { dtype: scales[0].dtype, dims: [l.n * kBlocks(l)], data: concatenated(scales.map((t) => t.data)) };
    } else {
      const part = q4Columns(of(l.parts[0].blocks), of(l.parts[0].scales), l);
      tensors[names.blocks] = part.blocks;
      tensors[names.scales] = part.scales;
    }
    if (names.bias) {
      const biases = l.parts.map((p) => of(p.bias));
      tensors[names.bias] = { dtype: biases[0].dtype, dims: [l.n], data: concatenated(biases.map((t) => t.data)) };
    }
  }
  for (const stage of plan.stages) {
    if (stage.op === 'heads') for (const name of [stage.normQ, stage.normK]) tensors[name] = host.tensors[name];
  }
  return tensors;
}

/** The values a stage reads. */
function stageReads(stage: BlockStage): string[] {
  switch (stage.op) {
    case 'graph': return stage.graph.inputs.map((i) => i.name);
    case 'attention': return [stage.q, stage.k, stage.v];
    case 'linear': return [stage.x];
    case 'heads': return [stage.qkv];
    case 'adaParams': return [stage.x];
    case 'adaNorm': return [stage.x, stage.mod, ...(stage.residual ? [stage.residual.y, ...(stage.residual.y2 ? [stage.residual.y2] : [])] : [])];
  }
}

/** For each value a plan's stages read, the index of the last stage reading it. */
function lastReadStage(plan: BlockPlan): Map<string, number> {
  const last = new Map<string, number>();
  plan.stages.forEach((stage, index) => {
    const reads = stageReads(stage);
    for (const name of reads) last.set(name, index);
  });
  return last;
}

const kernelKey = (l: KernelLinear) => `${l.k}x${l.n}/${l.epilogue}/${l.bias ? 'bias' : 'no-bias'}`;

function gpuBufferOf(t: OrtTensor, what: string): GPUBuffer {
  if (t.location !== 'gpu-buffer') {
    throw new DiTKernelInputError(`${what} is a ${t.location} tensor but a kernel needs it on the GPU: on WebGPU give the DiT a WeightResidency on ORT's device (the default).`);
  }
  return t.gpuBuffer;
}

/**
 * Creates the sessions and kernels the plans need. Throws Q4MatmulConfigError / AttentionConfigError when the
 * device cannot run a kernel the plans ask for.
 */
export async function createDiTBlockRunner(config: DiTConfig, plans: DiTGraphs['blocks'], options: DiTBlockRunnerOptions): Promise<DiTBlockRunner> {
  const { provider, dtype, residency } = options;
  const stagesOf = (kind: BlockKind) => plans[kind].stages;
  const allStages = [...stagesOf('dual'), ...stagesOf('single')];
  const needsDevice = allStages.some((s) => s.op !== 'graph');
  const device = needsDevice ? sharedDevice() : null;
  if (needsDevice && (!device || provider !== 'webgpu')) throw new DiTKernelInputError('The block plans run WebGPU kernels: use the webgpu provider with ORT set up on a GPU device.');
  const kernelDtype = dtype === 'float16' ? 'f16' : 'f32';
  const elementBytes = dtype === 'float16' ? 2 : 4;

  const sessions = new Map<BuiltGraph, GraphSession>();
  for (const stage of allStages) {
    if (stage.op === 'graph' && !sessions.has(stage.graph)) sessions.set(stage.graph, await createSession(stage.graph, provider, { outputsOnGpu: provider === 'webgpu' }));
  }
  const attention: FlashAttention | null = allStages.some((s) => s.op === 'attention')
    ? await createFlashAttention(device!, { heads: config.heads, headDim: config.headDim, dtype: kernelDtype })
    : null;
  const matmuls = new Map<string, Q4Matmul>();
  for (const stage of allStages) {
    if (stage.op !== 'linear' || matmuls.has(kernelKey(stage.linear))) continue;
    const l = stage.linear;
    matmuls.set(kernelKey(l), await createQ4Matmul(device!, { k: l.k, n: l.n, dtype: kernelDtype, epilogue: l.epilogue, bias: l.bias }));
  }
  const gemvs = new Map<string, Q4Gemv>();
  for (const stage of allStages) {
    if (stage.op !== 'adaParams' || gemvs.has(kernelKey(stage.linear))) continue;
    gemvs.set(kernelKey(stage.linear), await createQ4Gemv(device!, { k: stage.linear.k, n: stage.linear.n, dtype: kernelDtype }));
  }
  const heads: QkvHeads | null = allStages.some((s) => s.op === 'heads')
    ? await createQkvHeads(device!, { heads: config.heads, headDim: config.headDim, dtype: kernelDtype, eps: DIT_NORM_EPS })
    : null;
  const adaNorm: AdaNorm | null = allStages.some((s) => s.op === 'adaNorm')
    ? await createAdaNorm(device!, { dim: hiddenSize(config), dtype: kernelDtype, eps: DIT_NORM_EPS })
    : null;
  // Kernel outputs live in pooled buffers: a value's buffer goes back to the pool once the last stage reading it has
  // been recorded; queue order puts every read before any later stage's (or block's) write. The streams a block
  // returns go back when the caller disposes them. After the first block of each kind the pool holds what they need
  // and no buffer is created; new token counts start a new pool.
  const pool: GPUBuffer[] = [];
  let poolTokens = '';
  let released = false;
  const takeBuffer = (bytes: number, label: string): GPUBuffer => {
    const size = Math.ceil(bytes / 4) * 4;
    let best = -1;
    for (let i = 0; i < pool.length; i++) if (pool[i].size >= size && (best < 0 || pool[i].size < pool[best].size)) best = i;
    if (best >= 0) return pool.splice(best, 1)[0];
    return device!.createBuffer({ size, usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST, label: `dit ${label}` });
  };
  /** A block's output stream: an ORT tensor whose disposal returns its buffer to the pool (or frees it once the pool moved on). */
  const streamTensor = (bytes: number, rows: number, label: string): OrtTensor => {
    const buffer = takeBuffer(bytes, label);
    const tokens = poolTokens;
    return gpuTensor(buffer, 'float32', [1, rows, hiddenSize(config)], {
      dispose: () => (released || tokens !== poolTokens ? buffer.destroy() : pool.push(buffer)),
    });
  };
  const lastReads = new Map((['dual', 'single'] as const).map((kind) => [kind, lastReadStage(plans[kind])]));
  const converted = new WeakSet<HostBlock>();
  const kernelWeights = async (plan: BlockPlan, block: number): Promise<Record<string, OrtTensor>> => {
    const host = await options.hostBlock(plan.linearWeights!, block);
    if (!converted.has(host)) {
      host.tensors = kernelTensors(plan, host);
      converted.add(host);
    }
    return residency.feeds(host);
  };
  let attentionDispatches = 0;
  let linearDispatches = 0;
  let fusedDispatches = 0;

  const run = async (kind: BlockKind, block: number, s: DiTStreams, runOptions: BlockRunOptions = {}) => {
    const plan = plans[kind];
    const uploads: GPUBuffer[] = []; // streams handed over on the CPU, copied to the GPU for this block's kernels
    if (device) {
      const onGpu = (t: OrtTensor): OrtTensor => {
        if (t.location !== 'cpu') return t;
        const data = t.data as Float32Array;
        const buffer = device.createBuffer({ size: Math.max(16, Math.ceil(data.byteLength / 4) * 4), usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST, label: 'dit stream upload' });
        device.queue.writeBuffer(buffer, 0, data.buffer, data.byteOffset, data.byteLength);
        uploads.push(buffer);
        return gpuTensor(buffer, t.type as 'float32', [...t.dims]);
      };
      s = { x: onGpu(s.x), ctx: onGpu(s.ctx), temb: onGpu(s.temb), cos: onGpu(s.cos), sin: onGpu(s.sin) };
    }
    const values = new Map<string, OrtTensor>([
      [DIT_IO.imageTokens, s.x],
      [DIT_IO.contextTokens, s.ctx],
      [DIT_IO.temb, s.temb],
      [DIT_IO.ropeCos, s.cos],
      [DIT_IO.ropeSin, s.sin],
    ]);
    const value = (name: string): OrtTensor => {
      const v = values.get(name);
      if (!v) throw new Error(`DiT ${kind} block plan: '${name}' is read before any stage produced it.`);
      return v;
    };
    const produced: OrtTensor[] = []; // ORT outputs and returned streams, freed when the block is done unless returned
    const held = new Map<string, GPUBuffer>(); // kernel outputs by value name, back to the pool after their last read
    const lastRead = lastReads.get(kind)!;
    const tokens = `${s.x.dims[1]}/${s.ctx.dims[1]}`;
    if (tokens !== poolTokens) {
      for (const b of pool.splice(0)) b.destroy();
      poolTokens = tokens;
    }
    const [imageRows, contextRows] = [s.x.dims[1], s.ctx.dims[1]];
    const width = hiddenSize(config);
    const rowsOf = (rows: 'image' | 'context') => (rows === 'image' ? imageRows : contextRows);
    /** Where `rows` start in a value: 0 in a value of their own, N_img for the context rows of a joint one. */
    const firstRow = (name: string, rows: 'image' | 'context'): number => {
      const n = value(name).dims[1];
      if (n === rowsOf(rows)) return 0;
      if (n === imageRows + contextRows) return rows === 'image' ? 0 : imageRows;
      throw new Error(`DiT ${kind} block plan: ${name} has ${n} tokens, neither the ${rowsOf(rows)} ${rows} tokens nor the ${imageRows} + ${contextRows} of the streams.`);
    };
    /** A kernel output: pooled, unless it is a stream the block returns. */
    const output = (name: string, bytes: number, dims: number[], outDtype: 'float32' | 'float16'): GPUBuffer => {
      if (name === DIT_IO.imageTokensOut || name === DIT_IO.contextTokensOut) {
        const t = streamTensor(bytes, dims[1], name);
        values.set(name, t);
        produced.push(t);
        return t.gpuBuffer;
      }
      const buffer = takeBuffer(bytes, name);
      held.set(name, buffer);
      values.set(name, gpuTensor(buffer, outDtype, dims));
      return buffer;
    };
    /** A joint [1, N_img + N_ctx, width] output two stages fill (one per stream): made by the first, reused by the second. */
    const jointOutput = (name: string, columns: number): GPUBuffer => {
      const existing = held.get(name);
      return existing ?? output(name, (imageRows + contextRows) * columns * elementBytes, [1, imageRows + contextRows, columns], dtype);
    };
    // The kernels' weights, fetched once per block (a streamed block is written to the GPU once).
    let kernelFeeds: Record<string, OrtTensor> | null = null;
    const weight = async (name: string) => {
      const w = (kernelFeeds ??= await kernelWeights(plan, block));
      return gpuBufferOf(w[name], name);
    };
    let encoder: GPUCommandEncoder | null = null;
    const recording = () => (encoder ??= device!.createCommandEncoder({ label: `dit ${kind} block kernels` }));
    const submit = () => {
      if (encoder) device!.queue.submit([encoder.finish()]);
      encoder = null;
    };
    let result: { x: OrtTensor; ctx: OrtTensor } | null = null;
    try {
      for (const [index, stage] of plan.stages.entries()) {
        const started = runOptions.onStage ? performance.now() : 0;
        switch (stage.op) {
          case 'graph': {
            submit(); // our kernels before ORT's commands, in queue order
            const feeds = { ...residency.feeds(await options.hostBlock(stage.graph, block)) };
            for (const input of stage.graph.inputs) feeds[input.name] ??= value(input.name);
            const out = await sessions.get(stage.graph)!.run(feeds);
            for (const [name, t] of Object.entries(out)) {
              values.set(name, t);
              produced.push(t);
            }
            break;
          }
          case 'attention': {
            const q = value(stage.q);
            const k = value(stage.k);
            const [nq, nk] = [q.dims[1], k.dims[1]];
            const out = output(stage.out, nq * config.heads * config.headDim * elementBytes, [1, nq, config.heads * config.headDim], dtype);
            attention!.encode(recording(), { q: gpuBufferOf(q, stage.q), k: gpuBufferOf(k, stage.k), v: gpuBufferOf(value(stage.v), stage.v), out, nq, nk });
            attentionDispatches++;
            break;
          }
          case 'linear': {
            const l = stage.linear;
            const x = value(stage.x);
            if (x.dims[x.dims.length - 1] !== l.k) throw new Error(`DiT ${kind} block plan: ${stage.x} has width ${x.dims[x.dims.length - 1]} but ${kernelWeightNames(l).blocks} reads ${l.k}.`);
            const rows = stage.rows ? rowsOf(stage.rows) : x.dims[1];
            if (stage.rows && x.dims[1] !== imageRows + contextRows) throw new Error(`DiT ${kind} block plan: ${stage.x} has ${x.dims[1]} tokens, not the ${imageRows} + ${contextRows} of the streams.`);
            let input = gpuBufferOf(x, stage.x);
            if (stage.rows === 'context') {
              // The kernel reads x from its buffer's start: the context rows (contiguous, after the image's) get a copy.
              const rowBytes = l.k * elementBytes;
              const context = takeBuffer(rows * rowBytes, `${stage.x} context rows`);
              held.set(`${stage.x} context rows`, context); // read by this stage only
              recording().copyBufferToBuffer(input, imageRows * rowBytes, context, 0, rows * rowBytes);
              input = context;
            }
            const names = kernelWeightNames(l);
            const io = { x: input, blocks: await weight(names.blocks), scales: await weight(names.scales), bias: names.bias ? await weight(names.bias) : undefined };
            const out = output(stage.out, rows * l.n * elementBytes, [1, rows, l.n], dtype);
            matmuls.get(kernelKey(l))!.encode(recording(), { ...io, out, m: rows });
            linearDispatches++;
            break;
          }
          case 'adaParams': {
            const l = stage.linear;
            const names = kernelWeightNames(l);
            const io = { x: gpuBufferOf(value(stage.x), stage.x), blocks: await weight(names.blocks), scales: await weight(names.scales), bias: await weight(names.bias!) };
            const out = output(stage.out, l.n * 4, [1, stage.chunks, l.n / stage.chunks], 'float32');
            gemvs.get(kernelKey(l))!.encode(recording(), { ...io, out });
            linearDispatches++;
            break;
          }
          case 'heads': {
            const rows = rowsOf(stage.rows);
            const [normQ, normK] = [await weight(stage.normQ), await weight(stage.normK)];
            const columns = config.heads * config.headDim;
            const [q, k, v] = [DIT_IO.q, DIT_IO.k, DIT_IO.v].map((name) => jointOutput(name, columns));
            heads!.encode(recording(), {
              qkv: gpuBufferOf(value(stage.qkv), stage.qkv), normQ, normK,
              cos: gpuBufferOf(s.cos, DIT_IO.ropeCos), sin: gpuBufferOf(s.sin, DIT_IO.ropeSin), q, k, v,
              rows, inRow0: firstRow(stage.qkv, stage.rows), outRow0: stage.rows === 'image' ? 0 : imageRows, rope: stage.rows === 'image',
            });
            fusedDispatches++;
            break;
          }
          case 'adaNorm': {
            const rows = rowsOf(stage.rows);
            const r = stage.residual;
            const m = stage.modulation;
            adaNorm!.encode(recording(), {
              x: gpuBufferOf(value(stage.x), stage.x),
              mod: gpuBufferOf(value(stage.mod), stage.mod),
              rows,
              residual: r && {
                y: gpuBufferOf(value(r.y), r.y),
                y2: r.y2 ? gpuBufferOf(value(r.y2), r.y2) : undefined,
                yRow0: firstRow(r.y, stage.rows),
                gate: r.gate,
                out: output(r.out, rows * width * 4, [1, rows, width], 'float32'),
              },
              modulation: m && {
                shift: m.shift,
                scale: m.scale,
                out: m.joint ? jointOutput(m.out, width) : output(m.out, rows * width * elementBytes, [1, rows, width], dtype),
                outRow0: m.joint && stage.rows === 'context' ? imageRows : 0,
              },
            });
            fusedDispatches++;
            break;
          }
        }
        for (const [name, buffer] of held) {
          if ((lastRead.get(name) ?? -1) > index) continue;
          pool.push(buffer);
          held.delete(name);
        }
        if (runOptions.onStage) {
          submit();
          if (device) await device.queue.onSubmittedWorkDone();
          runOptions.onStage(stage, performance.now() - started);
        }
      }
      submit();
      result = { x: value(DIT_IO.imageTokensOut), ctx: value(DIT_IO.contextTokensOut) };
      return result;
    } finally {
      disposeGpu(...produced.filter((t) => t !== result?.x && t !== result?.ctx));
      pool.push(...held.values());
      for (const b of uploads) b.destroy(); // after the commands reading them were submitted: WebGPU keeps them alive until done
    }
  };

  const firstGraph = plans.dual.stages.find((s) => s.op === 'graph');
  return {
    run,
    async firstDualWeights() {
      if (firstGraph?.op === 'graph') return residency.feeds(await options.hostBlock(firstGraph.graph, 0));
      return plans.dual.linearWeights ? kernelWeights(plans.dual, 0) : {};
    },
    attentionKernel: attention?.path ?? null,
    get attentionDispatches() {
      return attentionDispatches;
    },
    linearKernel: matmuls.size > 0 ? [...matmuls.values()][0].path : null,
    get linearDispatches() {
      return linearDispatches;
    },
    get fusedDispatches() {
      return fusedDispatches;
    },
    async release() {
      released = true;
      for (const session of sessions.values()) await session.release();
      sessions.clear();
      for (const b of pool.splice(0)) b.destroy();
    },
  };
}

// ───────────────────────────── the runner ─────────────────────────────

/**
 * Builds the DiT's graphs for `checkpoint`'s config.json and creates their sessions on `options.provider`.
 * Weights are read (and quantized, for 4-bit) on first use, kept in host memory and fed through the residency
 * manager. Throws DiTConfigError for a config that is not a FramePack packed DiT.
 */
export async function createDiT(checkpoint: Checkpoint, options: DiTRunnerOptions): Promise<DiTRunner> {
  const config = parseDiTConfig(checkpoint.config);
  const dtype = options.dtype ?? 'float32';
  const quantized = options.quantized ?? false;
  // On WebGPU the attention between the block halves is our flash-attention kernel, on ORT's own device, and the
  // widest 4-bit linears run in our 4-bit matmul kernel where the model allows it.
  const device = options.provider === 'webgpu' ? sharedDevice() : null;
  const kernelLinears = device !== null && quantized && hiddenSize(config) % 32 === 0 && options.linears !== 'onnx';
  const graphs = buildDiTGraphs(config, { dtype, quantized, attention: device ? 'external' : 'inline', linears: kernelLinears ? 'kernel' : 'onnx' });
  // On WebGPU the streams between graphs stay on the GPU; only the velocity and TeaCache's inputs come back.
  const sessions = {
    embed: await createSession(graphs.embed, options.provider, { outputsOnGpu: options.provider === 'webgpu' }),
    head: await createSession(graphs.head, options.provider),
  };
  let modulationSession: GraphSession | null = null;
  const residency = options.residency ?? new WeightResidency(device);

  const hostBlocks = new Map<string, Promise<HostBlock>>();
  const hostBlock = (graph: BuiltGraph, block?: number): Promise<HostBlock> => {
    const key = `${graph.name}/${block ?? ''}`;
    let host = hostBlocks.get(key);
    if (!host) hostBlocks.set(key, (host = hostWeights(graph, checkpoint, block, key)));
    return host;
  };
  const weights = async (graph: BuiltGraph): Promise<Record<string, OrtTensor>> => residency.feeds(await hostBlock(graph));
  const blocks = await createDiTBlockRunner(config, graphs.blocks, { provider: options.provider, dtype, hostBlock, residency });

  const embed = async (prepared: PreparedInputs): Promise<DiTStreams> => {
    const out = await sessions.embed.run({ ...(await weights(graphs.embed)), ...prepared.embedFeeds });
    return { x: out[DIT_IO.imageTokens], ctx: out[DIT_IO.contextTokens], temb: out[DIT_IO.temb], cos: out[DIT_IO.ropeCos], sin: out[DIT_IO.ropeSin] };
  };

  /** Block 0's modulated image tokens, fed block 0's own weights (the two graphs share input names). */
  const modulated = async (s: DiTStreams): Promise<Float32Array> => {
    modulationSession ??= await createSession(graphs.modulation, options.provider);
    const block0 = await blocks.firstDualWeights();
    const feeds: Record<string, OrtTensor> = { [DIT_IO.imageTokens]: s.x, [DIT_IO.temb]: s.temb };
    for (const w of graphs.modulation.weights) feeds[w.input] = block0[w.input];
    const out = await modulationSession.run(feeds);
    return Float32Array.from((await tensorData(out[DIT_IO.modulated])) as Float32Array);
  };

  /** Every dual then every single block; returns the image tokens (the context stream is no longer needed). */
  const runBlocks = async (s: DiTStreams, signal?: AbortSignal): Promise<OrtTensor> => {
    let { x, ctx } = s;
    try {
      for (const [kind, count] of [['dual', config.layers], ['single', config.singleLayers]] as const) {
        for (let i = 0; i < count; i++) {
          signal?.throwIfAborted();
          const out = await blocks.run(kind, i, { ...s, x, ctx });
          if (x !== s.x) disposeGpu(x, ctx);
          ({ x, ctx } = out);
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
  const blocksWithTeaCache = async (s: DiTStreams, slot: TeaCacheSlot, imageTokens: number, signal?: AbortSignal): Promise<OrtTensor> => {
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
    blocks,
    attentionKernel: blocks.attentionKernel,
    get attentionDispatches() {
      return blocks.attentionDispatches;
    },
    linearKernel: blocks.linearKernel,
    get linearDispatches() {
      return blocks.linearDispatches;
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
      await blocks.release();
      if (!options.residency) residency.release();
      hostBlocks.clear();
    },
  };
}

// What the two executors of the DiT's block plans (src/models/ditBlocks.ts) share: the interface the forward pass
// calls, and a block's weights as the stages read them — stacked parts concatenated (MatMulNBits and a float Linear
// both keep an output row's values together, so stacking rows is concatenation), column ranges split out, norm
// weights as they are — prepared once per block in host memory. The WebGPU executor is ditBlocksWebgpu.ts, the
// CPU reference ditBlocksCpu.ts.

import { linearWeightNames, type BlockKind, type BlockPlan, type BlockStage, type DispatchCounts, type PlanLinear } from '../models/ditBlocks.ts';
import type { OrtTensor } from '../runtime/ort.ts';
import type { HostBlock, HostTensor } from '../runtime/residency.ts';
import { Q4_BLOCK } from '../weights/quantize.ts';

/** One forward's values between the embedders, the blocks and the head; on WebGPU they stay on the GPU. */
export interface DiTStreams {
  x: OrtTensor; // [1, N_img, D] f32
  ctx: OrtTensor; // [1, N_ctx, D] f32
  temb: OrtTensor; // [1, D] f32
  cos: OrtTensor; // [N_img, headDim] f32
  sin: OrtTensor; // [N_img, headDim] f32
}


export interface BlockRunOptions {
  /** Waits for the GPU after every stage and reports its time (benches); slows the block down. */
  onStage?: (stage: BlockStage, ms: number) => void;
}

/** Runs the block plans: the forward pass and the bench go through it, whichever executor it is. */
export interface BlockExecutor {
  /** 'webgpu' or 'cpu'. */
  readonly executor: 'webgpu' | 'cpu';
  /** Which kernel serves each kind of stage ('q4/subgroup-matrix', 'float/portable', 'cpu', …). */
  readonly kernels: Readonly<Record<'linear' | 'adaParams' | 'attention', string>>;
  /** Dispatches (GPU) or stage calls (CPU) per kind of kernel so far: models/ditBlocks.ts forwardDispatches predicts them. */
  readonly dispatches: Readonly<DispatchCounts>;
  /** Block `block` of `kind` on the streams; returns the updated image and context streams (the caller frees them). */
  run(kind: BlockKind, block: number, streams: DiTStreams, options?: BlockRunOptions): Promise<{ x: OrtTensor; ctx: OrtTensor }>;
  /** One value of block `block`, computed alone from the streams by the stages it depends on, read back as f32 (tests). */
  probe(kind: BlockKind, block: number, streams: DiTStreams, value: string): Promise<Float32Array>;
  /** TeaCache's state for one slot (one section and guidance branch), kept where this executor computes. */
  teacacheState(): TeaCacheState;
  release(): Promise<void>;
}

/**
 * TeaCache's per-slot values (§8) where the executor keeps them — GPU buffers on WebGPU, so a step reads back only
 * the two sums of the relative L1 — and the arithmetic on them.
 */
export interface TeaCacheState {
  /**
   * Computes block 0's modulated image tokens (the dual plan's TEACACHE_PROBE) for these streams and keeps them for
   * the next call. With `compare`, returns mean|current − previous| / mean|previous| against the kept ones (which
   * must exist), else undefined.
   */
  probe(streams: DiTStreams, compare: boolean): Promise<number | undefined>;
  /** Keeps x_out − x_in of the image tokens [1, N_img, D] f32. */
  saveResidual(xIn: OrtTensor, xOut: OrtTensor): void;
  /** x_in + the kept residual, a new stream. Throws TeaCacheResidualMissing when none is kept or its size differs. */
  applyResidual(xIn: OrtTensor): OrtTensor;
  /** Frees what is kept. */
  release(): void;
}

/** The relative L1 from its two sums over n values, rounded as the reference rounds its float32 means (pipeline/teacache.ts). */
export function relativeL1FromSums(diff: number, base: number, n: number): number {
  return Math.fround(Math.fround(diff / n) / Math.fround(base / n));
}

/** A plan's block weights in host memory, laid out as their bindings say (see runtime/weightFeeds.ts hostWeights). */
export type BlockWeightSource = (plan: BlockPlan, block: number) => Promise<HostBlock>;

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

/** Per output row, the `count` entries from `first` of rows `perRow` long: a column range of a row-major weight. */
function rowSlices<T extends HostTensor['data']>(data: T, rows: number, perRow: number, first: number, count: number): T {
  const out = new (data.constructor as new (n: number) => T)(rows * count);
  for (let r = 0; r < rows; r++) out.set(data.subarray(r * perRow + first, r * perRow + first + count) as never, r * count);
  return out;
}

/**
 * One product's weights as its kernel reads them. A column range of a 4-bit weight must fall on whole blocks of 32
 * (quantization is per block along K, so those blocks are exactly the range quantized).
 */
function linearTensors(l: PlanLinear, host: HostBlock): Record<string, HostTensor> {
  const names = linearWeightNames(l);
  const of = (name: string) => {
    const t = host.tensors[name];
    if (!t) throw new Error(`The block weights lack ${name} (${l.parts[0].prefix}).`);
    return t;
  };
  if (l.parts.length > 1 && l.k !== l.storedK) throw new Error(`${names.weight}: stacked weights are read whole; only a single weight takes a column range.`);
  const whole = l.k === l.storedK;
  const out: Record<string, HostTensor> = {};
  if (l.format === 'q4') {
    if (l.kOffset % Q4_BLOCK !== 0 || l.k % Q4_BLOCK !== 0) throw new Error(`${l.parts[0].prefix}: a column range of a 4-bit weight must start and end on blocks of ${Q4_BLOCK}.`);
    const stored = Math.ceil(l.storedK / Q4_BLOCK);
    const [first, count] = whole ? [0, stored] : [l.kOffset / Q4_BLOCK, l.k / Q4_BLOCK];
    const blocks = concatenated(l.parts.map((p) => of(p.weight).data as Uint8Array));
    const scales = concatenated(l.parts.map((p) => of(p.scales!).data));
    out[names.weight] = { dtype: 'uint8', dims: [l.n, count, 16], data: whole ? blocks : rowSlices(blocks, l.n, stored * 16, first * 16, count * 16) };
    out[names.scales!] = { dtype: of(l.parts[0].scales!).dtype, dims: [l.n * count], data: whole ? scales : rowSlices(scales, l.n, stored, first, count) };
  } else {
    const weight = concatenated(l.parts.map((p) => of(p.weight).data));
    out[names.weight] = { dtype: of(l.parts[0].weight).dtype, dims: [l.n, l.k], data: whole ? weight : rowSlices(weight, l.n, l.storedK, l.kOffset, l.k) };
  }
  if (names.bias) out[names.bias] = { dtype: of(l.parts[0].bias).dtype, dims: [l.n], data: concatenated(l.parts.map((p) => of(p.bias).data)) };
  return out;
}

/** A block's weights as its stages read them, from the block's weights as their bindings lay them out. */
export function stageWeights(plan: BlockPlan, host: HostBlock): Record<string, HostTensor> {
  const tensors: Record<string, HostTensor> = {};
  for (const stage of plan.stages) {
    if (stage.op === 'linear' || stage.op === 'adaParams') Object.assign(tensors, linearTensors(stage.linear, host));
    if (stage.op === 'heads') for (const name of [stage.normQ, stage.normK]) tensors[name] = host.tensors[name];
  }
  return tensors;
}

/**
 * The block weights of `source`, rewritten in place into what the stages read, once per host block (so host memory
 * holds them once, and a streamed block's bytes are rewritten only the first time).
 */
export function stageWeightSource(source: BlockWeightSource): BlockWeightSource {
  const converted = new WeakSet<HostBlock>();
  return async (plan, block) => {
    const host = await source(plan, block);
    if (!converted.has(host)) {
      host.tensors = stageWeights(plan, host);
      converted.add(host);
    }
    return host;
  };
}

// Our own fused attention for the transformer: softmax(Q·Kᵀ/√d)·V in one pass over the keys per block of queries
// (FlashAttention's online softmax: a running row maximum and sum, fp32 accumulation), so the N×N score matrix is
// never written to GPU memory. onnxruntime-web's MultiHeadAttention reaches about 10 TFLOP/s on an H200, and
// attention is ~40% of a FramePack step's arithmetic, hence this file. Two kernels share one interface:
// - `portable`: plain WGSL that runs on any WebGPU device (SwiftShader in CI): 64 queries × 32 keys per iteration,
//   Q/K/V staged through workgroup memory, each invocation owning a register tile of the scores and of the output.
//   f32 or f16 tensors, head size 32/64/128. About 16 TFLOP/s on an H200 at FramePack's size.
// - `subgroup-matrix`: the tensor-core path through `chromium-experimental-subgroup-matrix` (f16 × f16 → f32,
//   16×16×16): S = Q·Kᵀ and O += P·V are subgroup-matrix products, the softmax is scalar code on the score tiles
//   each subgroup keeps in workgroup memory. f16 tensors, head size 128. About 59 TFLOP/s on an H200.
// Layout: q, k, v and out are [tokens, heads, headDim] row-major (what a Linear produces for [1, N, heads·d]).
// No mask: FramePack's attention at batch 1 has none. Timings: bench/attentionKernel.ts.

import { buildComputePipeline, cachedPipeline } from './kernelCache.ts';
import type { AdapterInfoWithSubgroups } from './kernelCache.ts';

export type AttentionDtype = 'f32' | 'f16';
export type AttentionPath = 'portable' | 'subgroup-matrix';
export const SUPPORTED_HEAD_DIMS = [32, 64, 128] as const;
export type AttentionHeadDim = (typeof SUPPORTED_HEAD_DIMS)[number];

export interface FlashAttentionOptions {
  heads: number;
  headDim: number;
  dtype: AttentionDtype;
  /** Default: the fastest path the device supports for these options. */
  path?: AttentionPath;
}

export interface AttentionIO {
  /** [nq, heads, headDim] of dtype. */
  q: GPUBuffer;
  /** [nk, heads, headDim] of dtype. */
  k: GPUBuffer;
  /** [nk, heads, headDim] of dtype. */
  v: GPUBuffer;
  /** [nq, heads, headDim] of dtype; written in full. */
  out: GPUBuffer;
  nq: number;
  nk: number;
}

export interface FlashAttention {
  readonly path: AttentionPath;
  readonly heads: number;
  readonly headDim: number;
  readonly dtype: AttentionDtype;
  /**
   * Records the attention into a command encoder (in a pass of its own) or into a compute pass the caller has begun.
   * Nothing is submitted. Throws AttentionShapeError when a size or a buffer does not fit.
   */
  encode(target: GPUCommandEncoder | GPUComputePassEncoder, io: AttentionIO): void;
  /** Encodes, submits and waits: for tests and one-off use, not for the denoising loop. */
  run(io: AttentionIO): Promise<void>;
}

/** The options cannot run on this device (missing feature, unsupported head size). */
export class AttentionConfigError extends Error {
  override name = 'AttentionConfigError';
}

/** The buffers or sizes passed to encode() do not match the kernel. */
export class AttentionShapeError extends Error {
  override name = 'AttentionShapeError';
}

/** Floating-point operations of one attention call (two matrix products of 2·nq·nk·d each, per head). */
export function attentionFlops(nq: number, nk: number, heads: number, headDim: number): number {
  return 4 * nq * nk * heads * headDim;
}

const SUBGROUP_MATRIX_FEATURE = 'chromium-experimental-subgroup-matrix';
const QUERIES_PER_WORKGROUP = 64; // both kernels
const SUBGROUP_MATRIX_WORKGROUP_BYTES = 8704 * 2 + 4352 * 4 + 4608 * 2 + 2 * 64 * 4 + 16;
/** The subgroup-matrix kernel's smallest problem (16 query rows, one 64-key tile); smaller ones go to the portable kernel. */
const SUBGROUP_MATRIX_MIN_NQ = 16;
const SUBGROUP_MATRIX_MIN_NK = 64;

/** Why the subgroup-matrix kernel cannot run with these options on this device, or null when it can. */
export function subgroupMatrixUnavailableReason(device: GPUDevice, options: Pick<FlashAttentionOptions, 'headDim' | 'dtype'>): string | null {
  const has = (f: string) => device.features.has(f as GPUFeatureName);
  if (!has(SUBGROUP_MATRIX_FEATURE)) return `the device lacks '${SUBGROUP_MATRIX_FEATURE}' (Chrome/Dawn with allow_unsafe_apis on a GPU with matrix units)`;
  if (!has('subgroups')) return "the device lacks 'subgroups'";
  if (!has('shader-f16')) return "the device lacks 'shader-f16'";
  if (options.dtype !== 'f16') return 'it takes f16 tensors only';
  if (options.headDim !== 128) return 'it is written for head size 128 only';
  const info = (device as unknown as { adapterInfo?: AdapterInfoWithSubgroups }).adapterInfo;
  // The kernel numbers its subgroups local_invocation_index / 32.
  if (info?.subgroupMinSize !== undefined && (info.subgroupMinSize !== 32 || info.subgroupMaxSize !== 32)) {
    return `it needs subgroups of exactly 32 invocations (this device: ${info.subgroupMinSize}–${info.subgroupMaxSize})`;
  }
  // Dawn for Node lists the configurations on the adapter's info but an empty list on the device's: only a
  // non-empty list is evidence.
  const configs = info?.subgroupMatrixConfigs;
  if (configs && configs.length > 0 && !configs.some((c) => c.componentType === 'f16' && c.resultComponentType === 'f32' && c.M === 16 && c.N === 16 && c.K === 16)) {
    return 'the device offers no f16 × f16 → f32 16×16×16 subgroup-matrix configuration';
  }
  if (device.limits.maxComputeWorkgroupStorageSize < SUBGROUP_MATRIX_WORKGROUP_BYTES) {
    return `it needs ${SUBGROUP_MATRIX_WORKGROUP_BYTES} bytes of workgroup memory (device limit ${device.limits.maxComputeWorkgroupStorageSize})`;
  }
  return null;
}

/** The path createFlashAttention takes when none is asked for. */
export function chooseAttentionPath(device: GPUDevice, options: Pick<FlashAttentionOptions, 'headDim' | 'dtype'>): AttentionPath {
  return subgroupMatrixUnavailableReason(device, options) === null ? 'subgroup-matrix' : 'portable';
}

/**
 * Builds (or fetches from the cache) the attention pipeline for these options.
 * Throws AttentionConfigError when the head size is unsupported, f16 is asked for without 'shader-f16', or the
 * subgroup-matrix path is asked for on a device that cannot run it; KernelCompileError when the driver rejects it.
 */
export async function createFlashAttention(device: GPUDevice, options: FlashAttentionOptions): Promise<FlashAttention> {
  const { heads, headDim, dtype } = options;
  if (!Number.isInteger(heads) || heads < 1) throw new AttentionConfigError(`heads must be a positive integer, got ${heads}.`);
  if (!(SUPPORTED_HEAD_DIMS as readonly number[]).includes(headDim)) {
    throw new AttentionConfigError(`Head size ${headDim} is not supported by the attention kernel (supported: ${SUPPORTED_HEAD_DIMS.join(', ')}).`);
  }
  if (dtype === 'f16' && !device.features.has('shader-f16')) {
    throw new AttentionConfigError("f16 attention needs the 'shader-f16' device feature; run the model in f32 on this device.");
  }
  const path = options.path ?? chooseAttentionPath(device, options);
  if (path === 'subgroup-matrix') {
    const reason = subgroupMatrixUnavailableReason(device, options);
    if (reason) throw new AttentionConfigError(`The subgroup-matrix attention kernel cannot run here: ${reason}. Use path 'portable'.`);
  }
  const portableKey = `flashAttention/portable/${dtype}/d${headDim}`;
  const portable = () => cachedPipeline(device, portableKey, () => buildComputePipeline(device, portableKey, portableSource(dtype, headDim as AttentionHeadDim)));
  if (path === 'portable') return new FlashAttentionKernel(device, await portable(), null, path, heads, headDim, dtype);
  const fastKey = `flashAttention/subgroup-matrix/${dtype}/d${headDim}`;
  const [fast, small] = await Promise.all([cachedPipeline(device, fastKey, () => buildComputePipeline(device, fastKey, SUBGROUP_MATRIX_SOURCE)), portable()]);
  return new FlashAttentionKernel(device, fast, small, path, heads, headDim, dtype);
}

class FlashAttentionKernel implements FlashAttention {
  /** One small uniform buffer per (nq, nk): the shapes of a run repeat every step. */
  private readonly params = new Map<string, GPUBuffer>();

  constructor(
    private readonly device: GPUDevice,
    private readonly pipeline: GPUComputePipeline,
    /** For the subgroup-matrix path: the portable pipeline that takes problems below its minimum size. */
    private readonly smallPipeline: GPUComputePipeline | null,
    readonly path: AttentionPath,
    readonly heads: number,
    readonly headDim: number,
    readonly dtype: AttentionDtype,
  ) {}

  encode(target: GPUCommandEncoder | GPUComputePassEncoder, io: AttentionIO): void {
    const { nq, nk } = io;
    for (const [name, n] of [['nq', nq], ['nk', nk]] as const) {
      if (!Number.isInteger(n) || n < 1) throw new AttentionShapeError(`${name} must be a positive integer, got ${n}.`);
    }
    const workgroups = Math.ceil(nq / QUERIES_PER_WORKGROUP);
    const maxGroups = this.device.limits.maxComputeWorkgroupsPerDimension;
    if (workgroups > maxGroups || this.heads > maxGroups) {
      throw new AttentionShapeError(`Attention over ${nq} queries × ${this.heads} heads needs a ${workgroups}×${this.heads} grid; this device allows ${maxGroups} per dimension.`);
    }
    const bytesPerToken = this.heads * this.headDim * (this.dtype === 'f16' ? 2 : 4);
    const binding = (name: string, buffer: GPUBuffer, tokens: number): GPUBufferBinding => {
      const size = tokens * bytesPerToken;
      if (buffer.size < size) {
        throw new AttentionShapeError(`Attention input '${name}' holds ${buffer.size} bytes but ${tokens} tokens × ${this.heads} heads × ${this.headDim} ${this.dtype} need ${size}.`);
      }
      if (size > this.device.limits.maxStorageBufferBindingSize) {
        throw new AttentionShapeError(`Attention input '${name}' needs a ${size}-byte binding; this device allows ${this.device.limits.maxStorageBufferBindingSize}. Split the heads over several calls.`);
      }
      return { buffer, size };
    };
    const tooSmall = nq < SUBGROUP_MATRIX_MIN_NQ || nk < SUBGROUP_MATRIX_MIN_NK;
    const pipeline = this.smallPipeline && tooSmall ? this.smallPipeline : this.pipeline;
    const bindGroup = this.device.createBindGroup({
      label: `flashAttention ${nq}×${nk}`,
      layout: pipeline.getBindGroupLayout(0),
      entries: [
        { binding: 0, resource: { buffer: this.paramsBuffer(nq, nk) } },
        { binding: 1, resource: binding('q', io.q, nq) },
        { binding: 2, resource: binding('k', io.k, nk) },
        { binding: 3, resource: binding('v', io.v, nk) },
        { binding: 4, resource: binding('out', io.out, nq) },
      ],
    });
    const ownPass = !isComputePass(target);
    const pass = isComputePass(target) ? target : target.beginComputePass({ label: 'flashAttention' });
    pass.setPipeline(pipeline);
    pass.setBindGroup(0, bindGroup);
    pass.dispatchWorkgroups(workgroups, this.heads);
    if (ownPass) pass.end();
  }

  async run(io: AttentionIO): Promise<void> {
    const encoder = this.device.createCommandEncoder({ label: 'flashAttention.run' });
    this.encode(encoder, io);
    this.device.queue.submit([encoder.finish()]);
    await this.device.queue.onSubmittedWorkDone();
  }

  private paramsBuffer(nq: number, nk: number): GPUBuffer {
    const key = `${nq}x${nk}`;
    let buffer = this.params.get(key);
    if (!buffer) {
      // struct Params { nq: u32, nk: u32, heads: u32, scaleLog2: f32 }: the softmax runs in base 2.
      buffer = this.device.createBuffer({ label: `flashAttention params ${key}`, size: 16, usage: GPUBufferUsage.UNIFORM, mappedAtCreation: true });
      const range = buffer.getMappedRange();
      new Uint32Array(range, 0, 3).set([nq, nk, this.heads]);
      new Float32Array(range, 12, 1)[0] = Math.LOG2E / Math.sqrt(this.headDim);
      buffer.unmap();
      this.params.set(key, buffer);
    }
    return buffer;
  }
}

function isComputePass(target: GPUCommandEncoder | GPUComputePassEncoder): target is GPUComputePassEncoder {
  return typeof (target as GPUComputePassEncoder).dispatchWorkgroups === 'function';
}

/** The portable source with its three placeholders filled: {{ENABLE}}, {{ELEM}}, {{HEAD_DIM}}. */
export function portableSource(dtype: AttentionDtype, headDim: AttentionHeadDim): string {
  const values: Record<string, string> = { ENABLE: dtype === 'f16' ? 'enable f16;' : '', ELEM: dtype, HEAD_DIM: String(headDim) };
  return PORTABLE_SOURCE.replace(/\{\{(\w+)\}\}/g, (_, name: string) => {
    const value = values[name];
    if (value === undefined) throw new Error(`Unknown placeholder {{${name}}} in the attention kernel source.`);
    return value;
  });
}

// Portable kernel. One workgroup = 64 queries of one head, 128 invocations. Per tile of 32 keys:
//   1. S = Q·Kᵀ: Q and K stream through `stage` 16 head dims at a time (transposed, so a thread reads 4 rows or 4
//      keys as one vec4); each invocation accumulates a 4 queries × 4 keys register tile.
//   2. Softmax: invocation r < 64 owns query row r's running max and sum (base 2), turns its 32 scores into
//      probabilities in place and publishes the factor that rescales its row of O.
//   3. O = O·α + P·V: V streams through `stage` 1024/d keys at a time; each invocation owns d/8 rows × 4 columns of O.
// Workgroup memory: 6 KiB stage + 8 KiB scores + 0.5 KiB row factors, under WebGPU's default 16 KiB.
const PORTABLE_SOURCE = /* wgsl */ `
{{ENABLE}}
alias Elem = {{ELEM}};

const D: u32 = {{HEAD_DIM}}u;
const BQ: u32 = 64u;             // queries per workgroup
const BK: u32 = 32u;             // keys per iteration
const DC: u32 = 16u;             // head dims of Q and K staged per step
const THREADS: u32 = 128u;
const COLS4: u32 = D / 4u;       // vec4 columns of a head
const RPT: u32 = BQ * COLS4 / THREADS; // output rows per invocation (one vec4 column each)
const VK: u32 = 1024u / D;       // keys of V staged per step (256 vec4)
const Q_T: u32 = 0u;             // stage offset of the Q chunk, [DC][BQ/4] vec4
const K_T: u32 = DC * BQ / 4u;   // stage offset of the K chunk, [DC][BK/4] vec4
const NEG_BIG: f32 = -1.0e30;    // "minus infinity" that stays finite under subtraction

struct Params { nq: u32, nk: u32, heads: u32, scaleLog2: f32 }

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> q: array<vec4<Elem>>;
@group(0) @binding(2) var<storage, read> k: array<vec4<Elem>>;
@group(0) @binding(3) var<storage, read> v: array<vec4<Elem>>;
@group(0) @binding(4) var<storage, read_write> o: array<vec4<Elem>>;

var<workgroup> stage: array<vec4<f32>, 384>;
var<workgroup> scores: array<f32, 2048>;   // [BQ][BK]: scores, then probabilities
var<workgroup> rowAlpha: array<f32, 64>;
var<workgroup> rowSum: array<f32, 64>;

@compute @workgroup_size(128)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) t: u32) {
  let q0 = wg.x * BQ;
  let head = wg.y * COLS4;
  let tokenStride = params.heads * COLS4;
  let nq = params.nq;
  let nk = params.nk;

  let sRow = (t / 8u) * 4u;        // score tile: 4 queries
  let sCol = (t % 8u) * 4u;        //             × 4 keys
  let oCol = t % COLS4;            // output tile: one vec4 column
  let oRow = (t / COLS4) * RPT;    //              × RPT rows

  var acc: array<vec4<f32>, RPT>;
  var rowMax = NEG_BIG;            // meaningful for t < BQ (row t)
  var rowTotal = 0.0;

  let tiles = (nk + BK - 1u) / BK;
  for (var tile = 0u; tile < tiles; tile++) {
    let k0 = tile * BK;

    var s = array<vec4<f32>, 4>();
    for (var dc = 0u; dc < D / DC; dc++) {
      workgroupBarrier();
      for (var rep = 0u; rep < 2u; rep++) {
        let i = t + rep * THREADS;
        let r = i / 4u;
        let c = i % 4u;
        var x = vec4<f32>(0.0);
        if (q0 + r < nq) { x = vec4<f32>(q[(q0 + r) * tokenStride + head + dc * 4u + c]); }
        for (var e = 0u; e < 4u; e++) { stage[Q_T + (c * 4u + e) * (BQ / 4u) + r / 4u][r % 4u] = x[e]; }
      }
      {
        let r = t / 4u;
        let c = t % 4u;
        var x = vec4<f32>(0.0);
        if (k0 + r < nk) { x = vec4<f32>(k[(k0 + r) * tokenStride + head + dc * 4u + c]); }
        for (var e = 0u; e < 4u; e++) { stage[K_T + (c * 4u + e) * (BK / 4u) + r / 4u][r % 4u] = x[e]; }
      }
      workgroupBarrier();
      for (var kk = 0u; kk < DC; kk++) {
        let a = stage[Q_T + kk * (BQ / 4u) + sRow / 4u];
        let b = stage[K_T + kk * (BK / 4u) + sCol / 4u];
        s[0] += a.x * b;
        s[1] += a.y * b;
        s[2] += a.z * b;
        s[3] += a.w * b;
      }
    }
    for (var i = 0u; i < 4u; i++) {
      for (var j = 0u; j < 4u; j++) { scores[(sRow + i) * BK + sCol + j] = s[i][j] * params.scaleLog2; }
    }
    workgroupBarrier();

    if (t < BQ) {
      let valid = min(BK, nk - k0);
      var m = rowMax;
      for (var j = 0u; j < valid; j++) { m = max(m, scores[t * BK + j]); }
      let alpha = exp2(rowMax - m);
      var sum = 0.0;
      for (var j = 0u; j < BK; j++) {
        var p = 0.0;
        if (j < valid) { p = exp2(scores[t * BK + j] - m); }
        scores[t * BK + j] = p;
        sum += p;
      }
      rowTotal = rowTotal * alpha + sum;
      rowMax = m;
      rowAlpha[t] = alpha;
    }
    workgroupBarrier();

    for (var i = 0u; i < RPT; i++) { acc[i] *= rowAlpha[oRow + i]; }
    for (var vc = 0u; vc < BK; vc += VK) {
      workgroupBarrier();
      for (var rep = 0u; rep < 2u; rep++) {
        let i = t + rep * THREADS;
        let key = k0 + vc + i / COLS4;
        var x = vec4<f32>(0.0);
        if (key < nk) { x = vec4<f32>(v[key * tokenStride + head + i % COLS4]); }
        stage[i] = x;
      }
      workgroupBarrier();
      for (var kk = 0u; kk < VK; kk++) {
        let vv = stage[kk * COLS4 + oCol];
        for (var i = 0u; i < RPT; i++) { acc[i] += scores[(oRow + i) * BK + vc + kk] * vv; }
      }
    }
  }

  if (t < BQ) { rowSum[t] = rowTotal; }
  workgroupBarrier();
  for (var i = 0u; i < RPT; i++) {
    let row = q0 + oRow + i;
    if (row < nq) { o[row * tokenStride + head + oCol] = vec4<Elem>(acc[i] / rowSum[oRow + i]); }
  }
}
`;

// Subgroup-matrix kernel (f16 in and out, head size 128, subgroups of 32). One workgroup = 64 queries of one head,
// 4 subgroups × 16 query rows. Q stays in eight 16×16 left matrices and O in eight 16×16 f32 result matrices per
// subgroup (separate variables: arrays of subgroup matrices crash Dawn). Per tile of 64 keys:
//   1. The K tile is copied to workgroup memory with subgroup-matrix loads and stores (each subgroup copies 16 keys;
//      a 16×16 load from a storage buffer costs several times one from workgroup memory, and scalar f16 copies are
//      slower still); the loads are issued one step early (K of the next tile during the softmax and P·V, V during
//      S) to hide their latency. S = Q·Kᵀ: four 16×16 tiles per subgroup, Kᵀ read as column-major right matrices,
//      scaled to base 2 and stored to this subgroup's 16 × 64 slice of scores.
//   2. The V tile is stored into the same workgroup buffer, then the softmax runs: two invocations per
//      query row (even/odd keys, combined with subgroupShuffleXor). P = 2^(s − reference) against the row's
//      reference maximum; only when the row maximum exceeds the reference by more than RESCALE_AT (base 2) does the
//      reference move and the row's P get recomputed; O is then rescaled (whole workgroup, through the scores
//      slice), which after the first tiles almost never happens. P is stored as f16 (≤ 2^8) to probs.
//   3. O += P·V: P as four left tiles, V as row-major right tiles from workgroup memory.
// A 16×16 load must lie wholly inside its buffer, so the last row block and the last key tile are shifted back to
// end at nq and nk: the rows they recompute are written by their owner only, and keys already seen are masked.
// Hence nq ≥ 16 and nk ≥ BK here; the dispatcher sends smaller problems to the portable kernel.
// Workgroup memory: 17 KiB K/V tile + 17 KiB scores + 9 KiB probabilities + 0.5 KiB row factors. Every workgroup
// variable is a multiple of 16 bytes: measured on an H200 (Vulkan, driver 580), one 4-byte u32 among them shifted
// the subgroup-matrix accesses of the other arrays (misaligned base), giving wrong results.
const SUBGROUP_MATRIX_SOURCE = /* wgsl */ `
enable f16;
enable subgroups;
enable chromium_experimental_subgroup_matrix;
diagnostic(off, chromium.subgroup_matrix_uniformity);
diagnostic(off, subgroup_uniformity);

alias Left = subgroup_matrix_left<f16, 16, 16>;
alias Right = subgroup_matrix_right<f16, 16, 16>;
alias Acc = subgroup_matrix_result<f32, 16, 16>;

const D: u32 = 128u;
const BQ: u32 = 64u;
const BK: u32 = 64u;
const NEG_BIG: f32 = -1.0e30;
const RESCALE_AT: f32 = 8.0;      // probabilities may reach 2^8 before O is rescaled
// Row strides of the workgroup tiles, padded off multiples of 128 bytes so that the rows of a 16×16 access and the
// softmax's 16 rows fall in different memory banks (kept multiples of 16 bytes for the matrix loads).
const KV_STRIDE: u32 = 136u;      // f16
const S_STRIDE: u32 = 68u;        // f32
const P_STRIDE: u32 = 72u;        // f16

struct Params { nq: u32, nk: u32, heads: u32, scaleLog2: f32 }

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> q: array<f16>;
@group(0) @binding(2) var<storage, read> k: array<f16>;
@group(0) @binding(3) var<storage, read> v: array<f16>;
@group(0) @binding(4) var<storage, read_write> o: array<f16>;

var<workgroup> kvTile: array<f16, 8704>;   // [BK][KV_STRIDE]: the K tile, then the V tile
var<workgroup> scores: array<f32, 4352>;   // per subgroup [16][S_STRIDE] scores; also the 16×16 scratch for O
var<workgroup> probs: array<f16, 4608>;    // per subgroup [16][P_STRIDE] probabilities
var<workgroup> rowAlpha: array<f32, 64>;
var<workgroup> rowSum: array<f32, 64>;
var<workgroup> rescaleFlag: array<u32, 4>; // [tile % 2]: does O need rescaling; 16 bytes, see above

// The helpers below work on one 16×16 block of O that the subgroup has just stored to its slice of scores.
// All subgroups call them together (they hold barriers).

// Multiplies the stored block's rows by their rowAlpha.
fn scaleStoredRows(sg: u32, lane: u32) {
  workgroupBarrier();
  for (var e = 0u; e < 8u; e++) {
    let i = lane + e * 32u;
    scores[sg * 16u * S_STRIDE + (i / 16u) * S_STRIDE + i % 16u] *= rowAlpha[sg * 16u + i / 16u];
  }
  workgroupBarrier();
}

// Writes the stored block as output columns col0..col0+15 of rows rowStart.., divided by the softmax sums;
// rows below ownFrom belong to another subgroup (see the shift above) and are left to it.
fn writeStoredBlock(col0: u32, sg: u32, lane: u32, rowStart: u32, ownFrom: u32, headIndex: u32) {
  workgroupBarrier();
  for (var e = 0u; e < 8u; e++) {
    let i = lane + e * 32u;
    let r = i / 16u;
    let row = rowStart + r;
    if (row >= ownFrom) {
      o[(row * params.heads + headIndex) * D + col0 + i % 16u] = f16(scores[sg * 16u * S_STRIDE + r * S_STRIDE + i % 16u] / rowSum[sg * 16u + r]);
    }
  }
  workgroupBarrier();
}

@compute @workgroup_size(128)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) t: u32) {
  let sg = t / 32u;
  let lane = t % 32u;
  let nq = params.nq;
  let nk = params.nk;
  let tokenStride = params.heads * D;
  let headOffset = wg.y * D;
  let ownFrom = wg.x * BQ + sg * 16u;        // first query row this subgroup owns
  let rowStart = min(ownFrom, nq - 16u);     // first row it computes (shifted back at the end)

  let qBase = rowStart * tokenStride + headOffset;
  let q0m = subgroupMatrixLoad<Left, row_major>(&q, qBase + 0u, tokenStride);
  let q1m = subgroupMatrixLoad<Left, row_major>(&q, qBase + 16u, tokenStride);
  let q2m = subgroupMatrixLoad<Left, row_major>(&q, qBase + 32u, tokenStride);
  let q3m = subgroupMatrixLoad<Left, row_major>(&q, qBase + 48u, tokenStride);
  let q4m = subgroupMatrixLoad<Left, row_major>(&q, qBase + 64u, tokenStride);
  let q5m = subgroupMatrixLoad<Left, row_major>(&q, qBase + 80u, tokenStride);
  let q6m = subgroupMatrixLoad<Left, row_major>(&q, qBase + 96u, tokenStride);
  let q7m = subgroupMatrixLoad<Left, row_major>(&q, qBase + 112u, tokenStride);
  var o0 = Acc();
  var o1 = Acc();
  var o2 = Acc();
  var o3 = Acc();
  var o4 = Acc();
  var o5 = Acc();
  var o6 = Acc();
  var o7 = Acc();
  let sBase = sg * 16u * S_STRIDE;
  let pBase = sg * 16u * P_STRIDE;
  let rowInGroup = lane / 2u;                // softmax: two invocations per row,
  let parity = lane % 2u;                    // even and odd keys
  let rowBase = sBase + rowInGroup * S_STRIDE;
  let probRow = pBase + rowInGroup * P_STRIDE;
  let stageTo = sg * 16u * KV_STRIDE;                // each subgroup copies keys 16·sg .. 16·sg + 15 of a tile
  var rowMax = NEG_BIG;
  var rowTotal = 0.0;
  let firstFrom = sg * 16u * tokenStride + headOffset;
  var kf0 = subgroupMatrixLoad<Left, row_major>(&k, firstFrom + 0u, tokenStride);
  var kf1 = subgroupMatrixLoad<Left, row_major>(&k, firstFrom + 16u, tokenStride);
  var kf2 = subgroupMatrixLoad<Left, row_major>(&k, firstFrom + 32u, tokenStride);
  var kf3 = subgroupMatrixLoad<Left, row_major>(&k, firstFrom + 48u, tokenStride);
  var kf4 = subgroupMatrixLoad<Left, row_major>(&k, firstFrom + 64u, tokenStride);
  var kf5 = subgroupMatrixLoad<Left, row_major>(&k, firstFrom + 80u, tokenStride);
  var kf6 = subgroupMatrixLoad<Left, row_major>(&k, firstFrom + 96u, tokenStride);
  var kf7 = subgroupMatrixLoad<Left, row_major>(&k, firstFrom + 112u, tokenStride);

  let tiles = (nk + BK - 1u) / BK;
  for (var tile = 0u; tile < tiles; tile++) {
    let fresh = tile * BK;                   // keys below this were taken by the previous tile
    let kStart = min(fresh, nk - BK);
    let stageFrom = (kStart + sg * 16u) * tokenStride + headOffset;

    workgroupBarrier();                      // the previous tile's V reads are done
    subgroupMatrixStore<row_major>(&kvTile, stageTo + 0u, kf0, KV_STRIDE);
    subgroupMatrixStore<row_major>(&kvTile, stageTo + 16u, kf1, KV_STRIDE);
    subgroupMatrixStore<row_major>(&kvTile, stageTo + 32u, kf2, KV_STRIDE);
    subgroupMatrixStore<row_major>(&kvTile, stageTo + 48u, kf3, KV_STRIDE);
    subgroupMatrixStore<row_major>(&kvTile, stageTo + 64u, kf4, KV_STRIDE);
    subgroupMatrixStore<row_major>(&kvTile, stageTo + 80u, kf5, KV_STRIDE);
    subgroupMatrixStore<row_major>(&kvTile, stageTo + 96u, kf6, KV_STRIDE);
    subgroupMatrixStore<row_major>(&kvTile, stageTo + 112u, kf7, KV_STRIDE);
    workgroupBarrier();
    // This tile's V is fetched while S is computed, and stored once the K tile is no longer read.
    let vf0 = subgroupMatrixLoad<Left, row_major>(&v, stageFrom + 0u, tokenStride);
    let vf1 = subgroupMatrixLoad<Left, row_major>(&v, stageFrom + 16u, tokenStride);
    let vf2 = subgroupMatrixLoad<Left, row_major>(&v, stageFrom + 32u, tokenStride);
    let vf3 = subgroupMatrixLoad<Left, row_major>(&v, stageFrom + 48u, tokenStride);
    let vf4 = subgroupMatrixLoad<Left, row_major>(&v, stageFrom + 64u, tokenStride);
    let vf5 = subgroupMatrixLoad<Left, row_major>(&v, stageFrom + 80u, tokenStride);
    let vf6 = subgroupMatrixLoad<Left, row_major>(&v, stageFrom + 96u, tokenStride);
    let vf7 = subgroupMatrixLoad<Left, row_major>(&v, stageFrom + 112u, tokenStride);
    for (var j = 0u; j < BK / 16u; j++) {
      let kb = j * 16u * KV_STRIDE;
      var s = Acc();
      s = subgroupMatrixMultiplyAccumulate(q0m, subgroupMatrixLoad<Right, col_major>(&kvTile, kb + 0u, KV_STRIDE), s);
      s = subgroupMatrixMultiplyAccumulate(q1m, subgroupMatrixLoad<Right, col_major>(&kvTile, kb + 16u, KV_STRIDE), s);
      s = subgroupMatrixMultiplyAccumulate(q2m, subgroupMatrixLoad<Right, col_major>(&kvTile, kb + 32u, KV_STRIDE), s);
      s = subgroupMatrixMultiplyAccumulate(q3m, subgroupMatrixLoad<Right, col_major>(&kvTile, kb + 48u, KV_STRIDE), s);
      s = subgroupMatrixMultiplyAccumulate(q4m, subgroupMatrixLoad<Right, col_major>(&kvTile, kb + 64u, KV_STRIDE), s);
      s = subgroupMatrixMultiplyAccumulate(q5m, subgroupMatrixLoad<Right, col_major>(&kvTile, kb + 80u, KV_STRIDE), s);
      s = subgroupMatrixMultiplyAccumulate(q6m, subgroupMatrixLoad<Right, col_major>(&kvTile, kb + 96u, KV_STRIDE), s);
      s = subgroupMatrixMultiplyAccumulate(q7m, subgroupMatrixLoad<Right, col_major>(&kvTile, kb + 112u, KV_STRIDE), s);
      subgroupMatrixStore<row_major>(&scores, sBase + j * 16u, subgroupMatrixScalarMultiply(s, params.scaleLog2), S_STRIDE);
    }
    workgroupBarrier();
    // Every invocation has read the previous tile's flag by now: clear it for the next tile.
    if (t == 0u) { rescaleFlag[(tile + 1u) % 2u] = 0u; }
    subgroupMatrixStore<row_major>(&kvTile, stageTo + 0u, vf0, KV_STRIDE);
    subgroupMatrixStore<row_major>(&kvTile, stageTo + 16u, vf1, KV_STRIDE);
    subgroupMatrixStore<row_major>(&kvTile, stageTo + 32u, vf2, KV_STRIDE);
    subgroupMatrixStore<row_major>(&kvTile, stageTo + 48u, vf3, KV_STRIDE);
    subgroupMatrixStore<row_major>(&kvTile, stageTo + 64u, vf4, KV_STRIDE);
    subgroupMatrixStore<row_major>(&kvTile, stageTo + 80u, vf5, KV_STRIDE);
    subgroupMatrixStore<row_major>(&kvTile, stageTo + 96u, vf6, KV_STRIDE);
    subgroupMatrixStore<row_major>(&kvTile, stageTo + 112u, vf7, KV_STRIDE);
    // The next tile's K is fetched while the softmax and P·V run (the last tile fetches itself again, harmlessly).
    let nextFrom = (min(fresh + BK, nk - BK) + sg * 16u) * tokenStride + headOffset;
    kf0 = subgroupMatrixLoad<Left, row_major>(&k, nextFrom + 0u, tokenStride);
    kf1 = subgroupMatrixLoad<Left, row_major>(&k, nextFrom + 16u, tokenStride);
    kf2 = subgroupMatrixLoad<Left, row_major>(&k, nextFrom + 32u, tokenStride);
    kf3 = subgroupMatrixLoad<Left, row_major>(&k, nextFrom + 48u, tokenStride);
    kf4 = subgroupMatrixLoad<Left, row_major>(&k, nextFrom + 64u, tokenStride);
    kf5 = subgroupMatrixLoad<Left, row_major>(&k, nextFrom + 80u, tokenStride);
    kf6 = subgroupMatrixLoad<Left, row_major>(&k, nextFrom + 96u, tokenStride);
    kf7 = subgroupMatrixLoad<Left, row_major>(&k, nextFrom + 112u, tokenStride);

    var m = NEG_BIG;
    var sum = 0.0;
    for (var i = 0u; i < BK / 2u; i++) {
      let j = 2u * i + parity;
      var p = 0.0h;
      if (kStart + j >= fresh) {
        let x = scores[rowBase + j];
        m = max(m, x);
        p = f16(exp2(min(x - rowMax, 15.0)));  // capped: a row that overshoots is recomputed below
      }
      probs[probRow + j] = p;
      sum += f32(p);
    }
    m = max(m, subgroupShuffleXor(m, 1u));
    var alpha = 1.0;
    if (m > rowMax + RESCALE_AT) {
      // The reference moves: recompute this tile's P against it (overflowed values included).
      alpha = exp2(rowMax - m);
      rowMax = m;
      if (tile > 0u) { rescaleFlag[tile % 2u] = 1u; }
      sum = 0.0;
      for (var i = 0u; i < BK / 2u; i++) {
        let j = 2u * i + parity;
        var p = 0.0h;
        if (kStart + j >= fresh) { p = f16(exp2(scores[rowBase + j] - rowMax)); }
        probs[probRow + j] = p;
        sum += f32(p);
      }
    }
    sum += subgroupShuffleXor(sum, 1u);
    rowTotal = rowTotal * alpha + sum;
    if (parity == 0u) { rowAlpha[sg * 16u + rowInGroup] = alpha; }

    if (workgroupUniformLoad(&rescaleFlag[tile % 2u]) != 0u) {
      subgroupMatrixStore<row_major>(&scores, sBase, o0, S_STRIDE);
      scaleStoredRows(sg, lane);
      o0 = subgroupMatrixLoad<Acc, row_major>(&scores, sBase, S_STRIDE);
      subgroupMatrixStore<row_major>(&scores, sBase, o1, S_STRIDE);
      scaleStoredRows(sg, lane);
      o1 = subgroupMatrixLoad<Acc, row_major>(&scores, sBase, S_STRIDE);
      subgroupMatrixStore<row_major>(&scores, sBase, o2, S_STRIDE);
      scaleStoredRows(sg, lane);
      o2 = subgroupMatrixLoad<Acc, row_major>(&scores, sBase, S_STRIDE);
      subgroupMatrixStore<row_major>(&scores, sBase, o3, S_STRIDE);
      scaleStoredRows(sg, lane);
      o3 = subgroupMatrixLoad<Acc, row_major>(&scores, sBase, S_STRIDE);
      subgroupMatrixStore<row_major>(&scores, sBase, o4, S_STRIDE);
      scaleStoredRows(sg, lane);
      o4 = subgroupMatrixLoad<Acc, row_major>(&scores, sBase, S_STRIDE);
      subgroupMatrixStore<row_major>(&scores, sBase, o5, S_STRIDE);
      scaleStoredRows(sg, lane);
      o5 = subgroupMatrixLoad<Acc, row_major>(&scores, sBase, S_STRIDE);
      subgroupMatrixStore<row_major>(&scores, sBase, o6, S_STRIDE);
      scaleStoredRows(sg, lane);
      o6 = subgroupMatrixLoad<Acc, row_major>(&scores, sBase, S_STRIDE);
      subgroupMatrixStore<row_major>(&scores, sBase, o7, S_STRIDE);
      scaleStoredRows(sg, lane);
      o7 = subgroupMatrixLoad<Acc, row_major>(&scores, sBase, S_STRIDE);
    }

    for (var j = 0u; j < BK / 16u; j++) {
      let p = subgroupMatrixLoad<Left, row_major>(&probs, pBase + j * 16u, P_STRIDE);
      let vb = j * 16u * KV_STRIDE;
      o0 = subgroupMatrixMultiplyAccumulate(p, subgroupMatrixLoad<Right, row_major>(&kvTile, vb + 0u, KV_STRIDE), o0);
      o1 = subgroupMatrixMultiplyAccumulate(p, subgroupMatrixLoad<Right, row_major>(&kvTile, vb + 16u, KV_STRIDE), o1);
      o2 = subgroupMatrixMultiplyAccumulate(p, subgroupMatrixLoad<Right, row_major>(&kvTile, vb + 32u, KV_STRIDE), o2);
      o3 = subgroupMatrixMultiplyAccumulate(p, subgroupMatrixLoad<Right, row_major>(&kvTile, vb + 48u, KV_STRIDE), o3);
      o4 = subgroupMatrixMultiplyAccumulate(p, subgroupMatrixLoad<Right, row_major>(&kvTile, vb + 64u, KV_STRIDE), o4);
      o5 = subgroupMatrixMultiplyAccumulate(p, subgroupMatrixLoad<Right, row_major>(&kvTile, vb + 80u, KV_STRIDE), o5);
      o6 = subgroupMatrixMultiplyAccumulate(p, subgroupMatrixLoad<Right, row_major>(&kvTile, vb + 96u, KV_STRIDE), o6);
      o7 = subgroupMatrixMultiplyAccumulate(p, subgroupMatrixLoad<Right, row_major>(&kvTile, vb + 112u, KV_STRIDE), o7);
    }
  }

  if (parity == 0u) { rowSum[sg * 16u + rowInGroup] = rowTotal; }
  subgroupMatrixStore<row_major>(&scores, sBase, o0, S_STRIDE);
  writeStoredBlock(0u, sg, lane, rowStart, ownFrom, wg.y);
  subgroupMatrixStore<row_major>(&scores, sBase, o1, S_STRIDE);
  writeStoredBlock(16u, sg, lane, rowStart, ownFrom, wg.y);
  subgroupMatrixStore<row_major>(&scores, sBase, o2, S_STRIDE);
  writeStoredBlock(32u, sg, lane, rowStart, ownFrom, wg.y);
  subgroupMatrixStore<row_major>(&scores, sBase, o3, S_STRIDE);
  writeStoredBlock(48u, sg, lane, rowStart, ownFrom, wg.y);
  subgroupMatrixStore<row_major>(&scores, sBase, o4, S_STRIDE);
  writeStoredBlock(64u, sg, lane, rowStart, ownFrom, wg.y);
  subgroupMatrixStore<row_major>(&scores, sBase, o5, S_STRIDE);
  writeStoredBlock(80u, sg, lane, rowStart, ownFrom, wg.y);
  subgroupMatrixStore<row_major>(&scores, sBase, o6, S_STRIDE);
  writeStoredBlock(96u, sg, lane, rowStart, ownFrom, wg.y);
  subgroupMatrixStore<row_major>(&scores, sBase, o7, S_STRIDE);
  writeStoredBlock(112u, sg, lane, rowStart, ownFrom, wg.y);
}
`;

// Our own fused attention for the transformer: softmax(Q·Kᵀ/√d)·V in one pass over the keys per block of queries
// (FlashAttention's online softmax: a running row maximum and sum, fp32 accumulation), so the N×N score matrix is
// never written to GPU memory. onnxruntime-web's MultiHeadAttention reaches about 10 TFLOP/s on an H200, and
// attention is ~40% of a FramePack step's arithmetic, hence this file. Two kernels share one interface:
// - `portable`: plain WGSL that runs on any WebGPU device (SwiftShader in CI): 64 queries × 32 keys per iteration,
//   Q/K/V staged through workgroup memory, each invocation owning a register tile of the scores and of the output.
// - `subgroup-matrix`: the tensor-core path through `chromium-experimental-subgroup-matrix` (f16 × f16 → f32,
//   16×16×16): S = Q·Kᵀ and O += P·V are subgroup-matrix products, the softmax update is scalar code on the
//   16 × 32 score tile each subgroup keeps in workgroup memory. O lives in subgroup-matrix registers; it is rescaled
//   only when a row maximum grows by more than 2⁸ (the probabilities are then up to 256, fine in f16), which after
//   the first key tiles almost never happens.
// Layout: q, k, v and out are [tokens, heads, headDim] row-major (what a Linear produces for [1, N, heads·d]).
// No mask: FramePack's attention at batch 1 has none.

import { buildComputePipeline, cachedPipeline } from './kernelCache.ts';

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
const INVOCATIONS = 128; // both kernels
const SUBGROUP_MATRIX_WORKGROUP_BYTES = 8192 * 2 + 2048 * 4 + 2048 * 2 + 2 * 64 * 4 + 4;

interface SubgroupMatrixConfig {
  componentType: string;
  resultComponentType: string;
  M: number;
  N: number;
  K: number;
}

interface AdapterInfoWithSubgroups {
  subgroupMinSize?: number;
  subgroupMaxSize?: number;
  subgroupMatrixConfigs?: readonly SubgroupMatrixConfig[];
}

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
  const key = `flashAttention/${path}/${dtype}/d${headDim}`;
  const pipeline = await cachedPipeline(device, key, () =>
    buildComputePipeline(device, key, path === 'portable' ? portableSource(dtype, headDim as AttentionHeadDim) : SUBGROUP_MATRIX_SOURCE),
  );
  return new FlashAttentionKernel(device, pipeline, path, heads, headDim, dtype);
}

class FlashAttentionKernel implements FlashAttention {
  /** One small uniform buffer per (nq, nk): the shapes of a run repeat every step. */
  private readonly params = new Map<string, GPUBuffer>();

  constructor(
    private readonly device: GPUDevice,
    private readonly pipeline: GPUComputePipeline,
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
    const bindGroup = this.device.createBindGroup({
      label: `flashAttention ${nq}×${nk}`,
      layout: this.pipeline.getBindGroupLayout(0),
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
    pass.setPipeline(this.pipeline);
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
// subgroup (separate variables: arrays of subgroup matrices crash Dawn). Per tile of 32 keys:
//   1. K and V tiles are copied into workgroup memory (zero rows past nk) and shared by the 4 subgroups.
//   2. S = Q·Kᵀ: two 16×16 result tiles per subgroup, Kᵀ read from K as a column-major right matrix; stored to
//      `scores` (this subgroup's 16 × 32 slice).
//   3. Softmax, invocations 0–15 of each subgroup, one query row each: the reference maximum moves only when the
//      row's maximum exceeds it by more than RESCALE_AT (base 2); P = 2^(s − max) is written as f16 to `probs`.
//      When a reference maximum moved (after the first tile), the whole workgroup rescales O through `scores`.
//   4. O += P·V: P as two left tiles, V as row-major right tiles.
// Workgroup memory: 16 KiB K/V (first holding the Q block) + 8 KiB scores + 4 KiB probabilities ≈ 28.5 KiB.
const SUBGROUP_MATRIX_SOURCE = /* wgsl */ `
enable f16;
enable chromium_experimental_subgroup_matrix;
diagnostic(off, chromium.subgroup_matrix_uniformity);

alias Left = subgroup_matrix_left<f16, 16, 16>;
alias Right = subgroup_matrix_right<f16, 16, 16>;
alias Acc = subgroup_matrix_result<f32, 16, 16>;

const D: u32 = 128u;
const BQ: u32 = 64u;
const BK: u32 = 32u;
const THREADS: u32 = 128u;
const COLS4: u32 = D / 4u;
const V_TILE: u32 = BK * D;       // offset of the V tile in kv
const NEG_BIG: f32 = -1.0e30;
const RESCALE_AT: f32 = 8.0;      // probabilities may reach 2^8 before O is rescaled

struct Params { nq: u32, nk: u32, heads: u32, scaleLog2: f32 }

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> q: array<vec4<f16>>;
@group(0) @binding(2) var<storage, read> k: array<vec4<f16>>;
@group(0) @binding(3) var<storage, read> v: array<vec4<f16>>;
@group(0) @binding(4) var<storage, read_write> o: array<f16>;

var<workgroup> kv: array<f16, 8192>;       // [BK][D] K tile, then [BK][D] V tile; at the start the [BQ][D] Q block
var<workgroup> scores: array<f32, 2048>;   // per subgroup [16][BK] scores; also the 16×16 scratch for O
var<workgroup> probs: array<f16, 2048>;    // per subgroup [16][BK] probabilities
var<workgroup> rowAlpha: array<f32, 64>;
var<workgroup> rowSum: array<f32, 64>;
var<workgroup> rescaleFlag: u32;

// O rows of this subgroup times their rowAlpha, through the scratch (all subgroups call it together).
fn rescaled(acc: Acc, sg: u32, lane: u32) -> Acc {
  let base = sg * 16u * BK;
  subgroupMatrixStore<row_major>(&scores, base, acc, BK);
  workgroupBarrier();
  for (var e = 0u; e < 8u; e++) {
    let i = lane + e * 32u;
    scores[base + (i / 16u) * BK + i % 16u] *= rowAlpha[sg * 16u + i / 16u];
  }
  workgroupBarrier();
  let result = subgroupMatrixLoad<Acc, row_major>(&scores, base, BK);
  workgroupBarrier();
  return result;
}

// Writes columns col0..col0+15 of this subgroup's O rows, divided by the softmax sums (all subgroups call it together).
fn writeOut(acc: Acc, col0: u32, sg: u32, lane: u32, q0: u32, headIndex: u32) {
  let base = sg * 16u * BK;
  subgroupMatrixStore<row_major>(&scores, base, acc, BK);
  workgroupBarrier();
  for (var e = 0u; e < 8u; e++) {
    let i = lane + e * 32u;
    let r = i / 16u;
    let row = q0 + sg * 16u + r;
    if (row < params.nq) {
      o[(row * params.heads + headIndex) * D + col0 + i % 16u] = f16(scores[base + r * BK + i % 16u] / rowSum[sg * 16u + r]);
    }
  }
  workgroupBarrier();
}

@compute @workgroup_size(128)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) t: u32) {
  let sg = t / 32u;
  let lane = t % 32u;
  let q0 = wg.x * BQ;
  let head = wg.y * COLS4;
  let tokenStride = params.heads * COLS4;
  let nq = params.nq;
  let nk = params.nk;

  for (var rep = 0u; rep < BQ * COLS4 / THREADS; rep++) {
    let i = t + rep * THREADS;
    let r = i / COLS4;
    let c = i % COLS4;
    var x = vec4<f16>(0.0h);
    if (q0 + r < nq) { x = q[(q0 + r) * tokenStride + head + c]; }
    for (var e = 0u; e < 4u; e++) { kv[r * D + c * 4u + e] = x[e]; }
  }
  workgroupBarrier();
  let qBase = sg * 16u * D;
  let q0m = subgroupMatrixLoad<Left, row_major>(&kv, qBase + 0u, D);
  let q1m = subgroupMatrixLoad<Left, row_major>(&kv, qBase + 16u, D);
  let q2m = subgroupMatrixLoad<Left, row_major>(&kv, qBase + 32u, D);
  let q3m = subgroupMatrixLoad<Left, row_major>(&kv, qBase + 48u, D);
  let q4m = subgroupMatrixLoad<Left, row_major>(&kv, qBase + 64u, D);
  let q5m = subgroupMatrixLoad<Left, row_major>(&kv, qBase + 80u, D);
  let q6m = subgroupMatrixLoad<Left, row_major>(&kv, qBase + 96u, D);
  let q7m = subgroupMatrixLoad<Left, row_major>(&kv, qBase + 112u, D);
  var o0 = Acc();
  var o1 = Acc();
  var o2 = Acc();
  var o3 = Acc();
  var o4 = Acc();
  var o5 = Acc();
  var o6 = Acc();
  var o7 = Acc();

  let sBase = sg * 16u * BK;
  let myRow = sg * 16u + lane;     // the query row invocations 0–15 of a subgroup own
  var rowMax = NEG_BIG;
  var rowTotal = 0.0;

  let tiles = (nk + BK - 1u) / BK;
  for (var tile = 0u; tile < tiles; tile++) {
    let k0 = tile * BK;
    workgroupBarrier();
    if (t == 0u) { rescaleFlag = 0u; }
    for (var rep = 0u; rep < BK * COLS4 / THREADS; rep++) {
      let i = t + rep * THREADS;
      let key = k0 + i / COLS4;
      var kx = vec4<f16>(0.0h);
      var vx = vec4<f16>(0.0h);
      if (key < nk) {
        kx = k[key * tokenStride + head + i % COLS4];
        vx = v[key * tokenStride + head + i % COLS4];
      }
      for (var e = 0u; e < 4u; e++) {
        kv[i * 4u + e] = kx[e];
        kv[V_TILE + i * 4u + e] = vx[e];
      }
    }
    workgroupBarrier();

    for (var j = 0u; j < BK / 16u; j++) {
      let kb = j * 16u * D;
      var s = Acc();
      s = subgroupMatrixMultiplyAccumulate(q0m, subgroupMatrixLoad<Right, col_major>(&kv, kb + 0u, D), s);
      s = subgroupMatrixMultiplyAccumulate(q1m, subgroupMatrixLoad<Right, col_major>(&kv, kb + 16u, D), s);
      s = subgroupMatrixMultiplyAccumulate(q2m, subgroupMatrixLoad<Right, col_major>(&kv, kb + 32u, D), s);
      s = subgroupMatrixMultiplyAccumulate(q3m, subgroupMatrixLoad<Right, col_major>(&kv, kb + 48u, D), s);
      s = subgroupMatrixMultiplyAccumulate(q4m, subgroupMatrixLoad<Right, col_major>(&kv, kb + 64u, D), s);
      s = subgroupMatrixMultiplyAccumulate(q5m, subgroupMatrixLoad<Right, col_major>(&kv, kb + 80u, D), s);
      s = subgroupMatrixMultiplyAccumulate(q6m, subgroupMatrixLoad<Right, col_major>(&kv, kb + 96u, D), s);
      s = subgroupMatrixMultiplyAccumulate(q7m, subgroupMatrixLoad<Right, col_major>(&kv, kb + 112u, D), s);
      subgroupMatrixStore<row_major>(&scores, sBase + j * 16u, s, BK);
    }
    workgroupBarrier();

    if (lane < 16u) {
      let valid = min(BK, nk - k0);
      let rowBase = sBase + lane * BK;
      var m = NEG_BIG;
      for (var j = 0u; j < valid; j++) { m = max(m, scores[rowBase + j] * params.scaleLog2); }
      var alpha = 1.0;
      if (m > rowMax + RESCALE_AT) {
        alpha = exp2(rowMax - m);
        rowMax = m;
        if (tile > 0u) { rescaleFlag = 1u; }
      }
      var sum = 0.0;
      for (var j = 0u; j < BK; j++) {
        var p = 0.0h;
        if (j < valid) { p = f16(exp2(scores[rowBase + j] * params.scaleLog2 - rowMax)); }
        probs[rowBase + j] = p;
        sum += f32(p);
      }
      rowTotal = rowTotal * alpha + sum;
      rowAlpha[myRow] = alpha;
    }
    if (workgroupUniformLoad(&rescaleFlag) != 0u) {
      o0 = rescaled(o0, sg, lane);
      o1 = rescaled(o1, sg, lane);
      o2 = rescaled(o2, sg, lane);
      o3 = rescaled(o3, sg, lane);
      o4 = rescaled(o4, sg, lane);
      o5 = rescaled(o5, sg, lane);
      o6 = rescaled(o6, sg, lane);
      o7 = rescaled(o7, sg, lane);
    }

    for (var j = 0u; j < BK / 16u; j++) {
      let p = subgroupMatrixLoad<Left, row_major>(&probs, sBase + j * 16u, BK);
      let vb = V_TILE + j * 16u * D;
      o0 = subgroupMatrixMultiplyAccumulate(p, subgroupMatrixLoad<Right, row_major>(&kv, vb + 0u, D), o0);
      o1 = subgroupMatrixMultiplyAccumulate(p, subgroupMatrixLoad<Right, row_major>(&kv, vb + 16u, D), o1);
      o2 = subgroupMatrixMultiplyAccumulate(p, subgroupMatrixLoad<Right, row_major>(&kv, vb + 32u, D), o2);
      o3 = subgroupMatrixMultiplyAccumulate(p, subgroupMatrixLoad<Right, row_major>(&kv, vb + 48u, D), o3);
      o4 = subgroupMatrixMultiplyAccumulate(p, subgroupMatrixLoad<Right, row_major>(&kv, vb + 64u, D), o4);
      o5 = subgroupMatrixMultiplyAccumulate(p, subgroupMatrixLoad<Right, row_major>(&kv, vb + 80u, D), o5);
      o6 = subgroupMatrixMultiplyAccumulate(p, subgroupMatrixLoad<Right, row_major>(&kv, vb + 96u, D), o6);
      o7 = subgroupMatrixMultiplyAccumulate(p, subgroupMatrixLoad<Right, row_major>(&kv, vb + 112u, D), o7);
    }
  }

  if (lane < 16u) { rowSum[myRow] = rowTotal; }
  workgroupBarrier();
  writeOut(o0, 0u, sg, lane, q0, wg.y);
  writeOut(o1, 16u, sg, lane, q0, wg.y);
  writeOut(o2, 32u, sg, lane, q0, wg.y);
  writeOut(o3, 48u, sg, lane, q0, wg.y);
  writeOut(o4, 64u, sg, lane, q0, wg.y);
  writeOut(o5, 80u, sg, lane, q0, wg.y);
  writeOut(o6, 96u, sg, lane, q0, wg.y);
  writeOut(o7, 112u, sg, lane, q0, wg.y);
}
`;

/** The subgroup-matrix source, exported for inspection and tests. */
export const subgroupMatrixSource = (): string => SUBGROUP_MATRIX_SOURCE;

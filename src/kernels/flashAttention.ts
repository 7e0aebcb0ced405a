// Our own fused attention for the transformer: softmax(Q·Kᵀ/√d)·V in one pass over the keys per block of queries
// (FlashAttention's online softmax: a running row maximum and sum, fp32 accumulation), so the N×N score matrix is
// never written to GPU memory. onnxruntime-web's MultiHeadAttention reaches about 10 TFLOP/s on an H200, and
// attention is ~40% of a FramePack step's arithmetic, hence this file. Two kernels share one interface:
// - `portable`: plain WGSL that runs on any WebGPU device (SwiftShader in CI): 64 queries × 32 keys per iteration,
//   Q/K/V staged through workgroup memory, each invocation owning a register tile of the scores and of the output.
//   f32 or f16 tensors, head size 32/64/128. About 16 TFLOP/s on an H200 at FramePack's size.
// - `subgroup-matrix`: the tensor-core path through `chromium-experimental-subgroup-matrix` (f16 × f16 → f32,
//   16×16×16): S = Q·Kᵀ and O += P·V are subgroup-matrix products, the softmax is scalar code on the scores staged
//   in workgroup memory. 128 queries per workgroup, 32 keys per tile, two subgroups per 16 query rows, K/V copied
//   with plain vector loads. f16 tensors, head size 128. 169 TFLOP/s on an H200 at FramePack's size (24.8 ms per
//   call, against 71.0 ms = 59 TFLOP/s for the previous 64-query kernel in the same run; PyTorch SDPA: about 570).
//   Devices whose limits refuse 512 invocations or 46 KiB of workgroup memory get 64 queries per workgroup
//   (256 invocations, 32 KiB): 126 TFLOP/s (33.2 ms) there.
// Layout: q, k, v and out are [tokens, heads, headDim] row-major (what a Linear produces for [1, N, heads·d]).
// No mask: FramePack's attention at batch 1 has none. Timings: bench/attentionKernel.ts.

import { AttentionConfigError, AttentionShapeError } from '../errors/kernels.ts';
import { buildComputePipeline, cachedPipeline } from './kernelCache.ts';
import { checkedBinding, recordDispatch, submitAndWait } from './dispatch.ts';
import { dispatchFlops, rowsPerDispatch } from './dispatchBudget.ts';
import { DEFAULT_TILED_SHAPE, TILED_WORKGROUP_BYTES, tiledAttentionSource, tiledQueriesPerWorkgroup, type TiledAttentionShape } from './flashAttentionPortable.ts';
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
  /**
   * Subgroup-matrix path only, for benches: query rows per workgroup (128 needs 512 invocations and 46 KiB of
   * workgroup memory, 64 needs 256 and 32 KiB). Default: 128 where the device's limits allow it.
   */
  subgroupMatrixRows?: SubgroupMatrixRows;
  /** FLOPs one dispatch may take; default the path's share of the dispatch budget (dispatchBudget.ts). */
  dispatchFlops?: number;
  /** Portable path only: false forces the kernel that needs no subgroups (tests, benches). Default: tiled where possible. */
  tiled?: boolean;
  /** Tiled kernel only, for benches: how a query's work is shared (default DEFAULT_TILED_SHAPE). */
  tiledShape?: TiledAttentionShape;
}

export type SubgroupMatrixRows = 64 | 128;

export interface AttentionIO {
  /** [nq, heads, headDim] of dtype. */
  q: GPUBuffer;
  /** [nk, heads, headDim] of dtype. */
  k: GPUBuffer;
  /** [nk, heads, headDim] of dtype. */
  v: GPUBuffer;
  /** [row0 + nq, heads, headDim] of dtype; rows row0 .. row0 + nq written. */
  out: GPUBuffer;
  /** Queries computed: rows row0 .. row0 + nq of q and out (the keys are all of k and v). */
  nq: number;
  nk: number;
  /** First query row; default 0. Its byte offset must meet the device's storage offset alignment. */
  row0?: number;
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

/** Floating-point operations of one attention call (two matrix products of 2·nq·nk·d each, per head). */
export function attentionFlops(nq: number, nk: number, heads: number, headDim: number): number {
  return 4 * nq * nk * heads * headDim;
}

const SUBGROUP_MATRIX_FEATURE = 'chromium-experimental-subgroup-matrix';
const PORTABLE_QUERIES_PER_WORKGROUP = 64;
/** Keys per tile of the subgroup-matrix kernel. */
const SUBGROUP_MATRIX_KEYS = 32;
/** Workgroup memory of the subgroup-matrix kernel: K and V tiles, f32 scores, f16 probabilities, row factors, flags. */
export function subgroupMatrixWorkgroupBytes(rows: SubgroupMatrixRows): number {
  return 2 * SUBGROUP_MATRIX_KEYS * KV_STRIDE * 2 + rows * S_STRIDE * 4 + rows * P_STRIDE * 2 + 2 * rows * 4 + 16;
}
/** Invocations per workgroup: two subgroups of 32 per 16 query rows. */
const subgroupMatrixThreads = (rows: SubgroupMatrixRows) => 4 * rows;
/** The subgroup-matrix kernel's smallest problem (16 query rows, one key tile); smaller ones go to the portable kernel. */
const SUBGROUP_MATRIX_MIN_NQ = 16;
const SUBGROUP_MATRIX_MIN_NK = SUBGROUP_MATRIX_KEYS;
// Row strides (elements) of the workgroup tiles, padded off multiples of 128 bytes against bank conflicts and kept
// multiples of 16 bytes for the subgroup-matrix loads and stores.
const KV_STRIDE = 136; // f16, K and V tiles
const S_STRIDE = SUBGROUP_MATRIX_KEYS + 4; // f32, scores
const P_STRIDE = SUBGROUP_MATRIX_KEYS + 8; // f16, probabilities

/** Whether this device's limits fit the subgroup-matrix kernel with this many query rows per workgroup. */
function fitsSubgroupMatrixRows(device: GPUDevice, rows: SubgroupMatrixRows): boolean {
  const l = device.limits;
  const threads = subgroupMatrixThreads(rows);
  return l.maxComputeWorkgroupStorageSize >= subgroupMatrixWorkgroupBytes(rows) && l.maxComputeInvocationsPerWorkgroup >= threads && l.maxComputeWorkgroupSizeX >= threads;
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
  if (!fitsSubgroupMatrixRows(device, 64)) {
    const l = device.limits;
    return `it needs ${subgroupMatrixWorkgroupBytes(64)} bytes of workgroup memory and ${subgroupMatrixThreads(64)} invocations per workgroup (device limits ${l.maxComputeWorkgroupStorageSize} and ${l.maxComputeInvocationsPerWorkgroup})`;
  }
  return null;
}

/** Whether the tiled portable kernel runs here: subgroups, 256 invocations and its workgroup memory. */
function canRunTiled(device: GPUDevice): boolean {
  const l = device.limits;
  return device.features.has('subgroups') && l.maxComputeInvocationsPerWorkgroup >= 256 && l.maxComputeWorkgroupSizeX >= 256 && l.maxComputeWorkgroupStorageSize >= TILED_WORKGROUP_BYTES;
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
  const budget = options.dispatchFlops ?? dispatchFlops(path === 'subgroup-matrix' ? 'attention/subgroup-matrix' : `attention/portable/${dtype}`);
  const portableKey = `flashAttention/portable/${dtype}/d${headDim}`;
  const portable = () => cachedPipeline(device, portableKey, () => buildComputePipeline(device, portableKey, portableSource(dtype, headDim as AttentionHeadDim)));
  if (path === 'portable') {
    // With subgroups, the tiled kernel (flashAttentionPortable.ts); without, the one below.
    if (options.tiled !== false && canRunTiled(device)) {
      const shape = options.tiledShape ?? DEFAULT_TILED_SHAPE;
      const tiledKey = `flashAttention/tiled/${dtype}/d${headDim}/${shape.parts}x${shape.queries}`;
      const tiled = await cachedPipeline(device, tiledKey, () => buildComputePipeline(device, tiledKey, tiledAttentionSource(dtype, headDim, shape)));
      return new FlashAttentionKernel(device, tiled, null, path, heads, headDim, dtype, tiledQueriesPerWorkgroup(shape), budget);
    }
    return new FlashAttentionKernel(device, await portable(), null, path, heads, headDim, dtype, PORTABLE_QUERIES_PER_WORKGROUP, budget);
  }
  const rows = options.subgroupMatrixRows ?? (fitsSubgroupMatrixRows(device, 128) ? 128 : 64);
  if (!fitsSubgroupMatrixRows(device, rows)) {
    throw new AttentionConfigError(`The subgroup-matrix attention kernel with ${rows} query rows per workgroup does not fit this device's workgroup limits; use 64.`);
  }
  const fastKey = `flashAttention/subgroup-matrix/${dtype}/d${headDim}/rows${rows}`;
  const [fast, small] = await Promise.all([cachedPipeline(device, fastKey, () => buildComputePipeline(device, fastKey, subgroupMatrixSource(rows))), portable()]);
  return new FlashAttentionKernel(device, fast, small, path, heads, headDim, dtype, rows, budget);
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
    /** Query rows per workgroup of `pipeline`. */
    private readonly queriesPerWorkgroup: number,
    /** FLOPs one dispatch may take. */
    private readonly budget: number,
  ) {}

  encode(target: GPUCommandEncoder | GPUComputePassEncoder, io: AttentionIO): void {
    const { nq, nk } = io;
    for (const [name, n] of [['nq', nq], ['nk', nk]] as const) {
      if (!Number.isInteger(n) || n < 1) throw new AttentionShapeError(`${name} must be a positive integer, got ${n}.`);
    }
    const bytesPerToken = this.heads * this.headDim * (this.dtype === 'f16' ? 2 : 4);
    const binding = (name: string, buffer: GPUBuffer, tokens: number, offset = 0) =>
      checkedBinding(this.device, buffer, tokens * bytesPerToken, {
        kernel: 'Attention', name, what: `${tokens} tokens × ${this.heads} heads × ${this.headDim} ${this.dtype}`, tooLargeHint: 'Split the heads over several calls.',
      }, AttentionShapeError, offset);
    const [k, v] = [binding('k', io.k, nk), binding('v', io.v, nk)];
    const row0 = io.row0 ?? 0;
    if (!Number.isInteger(row0) || row0 < 0 || ((row0 * bytesPerToken) % this.device.limits.minStorageBufferOffsetAlignment) !== 0) {
      throw new AttentionShapeError(`row0 ${row0} must be a whole row whose byte offset meets the device's ${this.device.limits.minStorageBufferOffsetAlignment}-byte storage offset alignment.`);
    }
    // Whole query tiles per dispatch within the budget, q and out bound at the chunk's first query.
    const alignment = this.device.limits.minStorageBufferOffsetAlignment;
    const chunk = Math.min(nq, rowsPerDispatch(this.budget, attentionFlops(1, nk, this.heads, this.headDim), this.queriesPerWorkgroup, [bytesPerToken], alignment));
    const step = (chunk * bytesPerToken) % alignment === 0 ? chunk : nq;
    const maxGroups = this.device.limits.maxComputeWorkgroupsPerDimension;
    for (let q0 = 0; q0 < nq; q0 += step) {
      const rows = Math.min(step, nq - q0);
      const small = this.smallPipeline !== null && (rows < SUBGROUP_MATRIX_MIN_NQ || nk < SUBGROUP_MATRIX_MIN_NK);
      const pipeline = small ? this.smallPipeline! : this.pipeline;
      const workgroups = Math.ceil(rows / (small ? PORTABLE_QUERIES_PER_WORKGROUP : this.queriesPerWorkgroup));
      if (workgroups > maxGroups || this.heads > maxGroups) {
        throw new AttentionShapeError(`Attention over ${rows} queries × ${this.heads} heads needs a ${workgroups}×${this.heads} grid; this device allows ${maxGroups} per dimension.`);
      }
      const bindGroup = this.device.createBindGroup({
        label: `flashAttention ${rows}×${nk}`,
        layout: pipeline.getBindGroupLayout(0),
        entries: [
          { binding: 0, resource: { buffer: this.paramsBuffer(rows, nk) } },
          { binding: 1, resource: binding('q', io.q, rows, (row0 + q0) * bytesPerToken) },
          { binding: 2, resource: k },
          { binding: 3, resource: v },
          { binding: 4, resource: binding('out', io.out, rows, (row0 + q0) * bytesPerToken) },
        ],
      });
      recordDispatch(target, 'flashAttention', pipeline, bindGroup, workgroups, this.heads);
    }
  }

  run(io: AttentionIO): Promise<void> {
    return submitAndWait(this.device, 'flashAttention.run', (encoder) => this.encode(encoder, io));
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

// Subgroup-matrix kernel (f16 in and out, head size 128, subgroups of 32). One workgroup = ROWS queries of one head
// (128, or 64 where the device's limits are smaller), two subgroups per 16-row block: both hold the block's Q in
// eight 16×16 left matrices; "side" 0 computes S for keys 0–15 of each tile and O for head dims 0–63, side 1 keys
// 16–31 and dims 64–127, so O is four 16×16 f32 result matrices per subgroup (separate variables: arrays of
// subgroup matrices crash Dawn). Per tile of 32 keys, three workgroup barriers:
//   1. S = Q·Kᵀ from the K tile in workgroup memory (Kᵀ as column-major right matrices), stored unscaled to scores.
//   2. Barrier. The K/V tiles staged a tile ahead: V of this tile and K of the next go from registers to workgroup
//      memory, then the next loads are issued. K and V are read from the storage buffers with plain vec2<u32> loads
//      (coalesced rows of 256 bytes) and written as f16 scalars: subgroup-matrix loads from a storage buffer made
//      the same schedule 1.7× slower (53 against 31 ms). The softmax: four invocations per query row, eight scores
//      each, combined with subgroupShuffleXor. P = 2^(s·scale − reference) against the row's reference maximum,
//      which moves only when the row maximum exceeds it by more than RESCALE_AT (base 2); O is then rescaled
//      (whole workgroup, through a scratch block), which after the first tiles almost never happens. P (≤ 2^8) is
//      stored as f16 to probs.
//   3. Barrier (workgroupUniformLoad of the rescale flag), then O += P·V: P as two left tiles, V as row-major right
//      tiles from workgroup memory.
// Why this shape (H200, 18,485 tokens): MMAs are cheap here; the time goes to staging, the softmax and waiting at
// barriers, so what pays is more queries per staged K/V tile (64 → 128 rows: 53 → 31 ms with the vector copy) and
// more warps per SM to hide latency (one subgroup per 16 rows: 31 ms; two, with half of O each: 24.8 ms).
// A 16×16 load must lie wholly inside its buffer, so the last row block and the last key tile are shifted back to
// end at nq and nk: the rows they recompute are written by their owner only, and keys already seen are masked.
// Hence nq ≥ 16 and nk ≥ 32 here; the dispatcher sends smaller problems to the portable kernel.
// Workgroup memory (128 rows): 2 × 8.5 KiB K/V tiles + 18 KiB scores + 10 KiB probabilities + 1 KiB row factors.
// Every workgroup variable is a multiple of 16 bytes: measured on an H200 (Vulkan, driver 580), one 4-byte u32
// among them shifted the subgroup-matrix accesses of the other arrays (misaligned base), giving wrong results.
export function subgroupMatrixSource(rows: SubgroupMatrixRows): string {
  const threads = subgroupMatrixThreads(rows);
  const keys = SUBGROUP_MATRIX_KEYS;
  const unitsPerKey = 128 / 4; // vec2<u32> (4 halves) per key row of a head
  const copies = (keys * unitsPerKey) / threads; // vec2<u32> of each of K and V per invocation and tile
  const scoresPerLane = keys / 4;
  const n = (count: number, line: (i: number) => string, indent: string) => Array.from({ length: count }, (_, i) => line(i)).join(`\n${indent}`);
  // Balanced reduction: shorter dependency chains than a running fold.
  const reduce = (terms: string[], op: (a: string, b: string) => string): string => {
    let level = terms;
    while (level.length > 1) {
      const next: string[] = [];
      for (let i = 0; i < level.length; i += 2) next.push(i + 1 < level.length ? op(level[i], level[i + 1]) : level[i]);
      level = next;
    }
    return level[0];
  };
  const xs = Array.from({ length: scoresPerLane }, (_, i) => `x${i}`);
  const ps = Array.from({ length: scoresPerLane }, (_, i) => `p${i}`);
  const fetch = (regs: string, buffer: string, tile: string, indent: string) => `{
${indent}  let first = (min((${tile}) * BK, nk - BK) * tokenStride + headOffset) / 4u;
${indent}  ${n(copies, (i) => `${regs}${i} = ${buffer}[first + copyFrom${i}];`, `${indent}  `)}
${indent}}`;
  // Written out rather than through a helper taking a pointer to the tile: the helper cost 15% (H200, 28.3 ms).
  const stage = (regs: string, tile: string, indent: string) =>
    n(copies, (i) => `${tile}[copyTo${i}] = bitcast<vec2<f16>>(${regs}${i}.x).x;
${indent}${tile}[copyTo${i} + 1u] = bitcast<vec2<f16>>(${regs}${i}.x).y;
${indent}${tile}[copyTo${i} + 2u] = bitcast<vec2<f16>>(${regs}${i}.y).x;
${indent}${tile}[copyTo${i} + 3u] = bitcast<vec2<f16>>(${regs}${i}.y).y;`, indent);
  return /* wgsl */ `
enable f16;
enable subgroups;
enable chromium_experimental_subgroup_matrix;
diagnostic(off, chromium.subgroup_matrix_uniformity);
diagnostic(off, subgroup_uniformity);

alias Left = subgroup_matrix_left<f16, 16, 16>;
alias Right = subgroup_matrix_right<f16, 16, 16>;
alias Acc = subgroup_matrix_result<f32, 16, 16>;

const D: u32 = 128u;
const BQ: u32 = ${rows}u;            // queries per workgroup
const BK: u32 = ${keys}u;             // keys per tile
const NEG_BIG: f32 = -1.0e30;     // "minus infinity" that stays finite under subtraction
const RESCALE_AT: f32 = 8.0;      // probabilities may reach 2^8 before O is rescaled
const KV_STRIDE: u32 = ${KV_STRIDE}u;     // f16
const S_STRIDE: u32 = ${S_STRIDE}u;       // f32
const P_STRIDE: u32 = ${P_STRIDE}u;       // f16
const UNITS_PER_KEY: u32 = ${unitsPerKey}u;  // vec2<u32> per key row of a head

struct Params { nq: u32, nk: u32, heads: u32, scaleLog2: f32 }

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> q: array<f16>;
@group(0) @binding(2) var<storage, read> k: array<vec2<u32>>;   // f16 pairs, read 4 halves at a time
@group(0) @binding(3) var<storage, read> v: array<vec2<u32>>;
@group(0) @binding(4) var<storage, read_write> o: array<f16>;

var<workgroup> kTile: array<f16, ${keys * KV_STRIDE}>;      // [BK][KV_STRIDE]
var<workgroup> vTile: array<f16, ${keys * KV_STRIDE}>;      // [BK][KV_STRIDE]
var<workgroup> scores: array<f32, ${rows * S_STRIDE}>;     // [BQ][S_STRIDE] Q·Kᵀ; also a 16×16 scratch per subgroup
var<workgroup> probs: array<f16, ${rows * P_STRIDE}>;      // [BQ][P_STRIDE]
var<workgroup> rowAlpha: array<f32, ${rows}>;
var<workgroup> rowSum: array<f32, ${rows}>;
var<workgroup> rescaleFlag: array<u32, 4>; // [tile % 2]: does O need rescaling; 16 bytes, see above

// The helpers below work on the 16×16 block of O that subgroup sg has just stored to its scratch (scores[sg·256..],
// stride 16). All subgroups call them together (they hold barriers).

// Multiplies the stored block's rows by their rowAlpha.
fn scaleScratch(sg: u32, lane: u32, block: u32) {
  workgroupBarrier();
  for (var e = 0u; e < 8u; e++) {
    let i = lane + e * 32u;
    scores[sg * 256u + i] *= rowAlpha[block * 16u + i / 16u];
  }
  workgroupBarrier();
}

// Writes the stored block as output columns col0..col0+15 of rows rowStart.., divided by the softmax sums;
// rows below ownFrom belong to the block before (see the shift above) and are left to it.
fn writeScratch(col0: u32, sg: u32, lane: u32, block: u32, rowStart: u32, ownFrom: u32, headIndex: u32) {
  workgroupBarrier();
  for (var e = 0u; e < 8u; e++) {
    let i = lane + e * 32u;
    let row = rowStart + i / 16u;
    if (row >= ownFrom) {
      o[(row * params.heads + headIndex) * D + col0 + i % 16u] = f16(scores[sg * 256u + i] / rowSum[block * 16u + i / 16u]);
    }
  }
  workgroupBarrier();
}

@compute @workgroup_size(${threads})
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) t: u32) {
  let sg = t / 32u;
  let lane = t % 32u;
  let block = sg / 2u;                       // the 16-row block this subgroup works on
  let side = sg % 2u;                        // its half of the keys (S) and of the head dims (O)
  let nq = params.nq;
  let nk = params.nk;
  let scale = params.scaleLog2;
  let tokenStride = params.heads * D;
  let headOffset = wg.y * D;
  let ownFrom = wg.x * BQ + block * 16u;     // first query row this block owns
  let rowStart = min(ownFrom, nq - 16u);     // first row it computes (shifted back at the end)

  let qBase = rowStart * tokenStride + headOffset;
  ${n(8, (c) => `let q${c}m = subgroupMatrixLoad<Left, row_major>(&q, qBase + ${16 * c}u, tokenStride);`, '  ')}
  ${n(4, (c) => `var o${c} = Acc();`, '  ')}
  let sOut = block * 16u * S_STRIDE + side * 16u;   // this subgroup's 16×16 block of scores
  let kIn = side * 16u * KV_STRIDE;                  // its 16 keys in kTile
  let pIn = block * 16u * P_STRIDE;                  // its block's rows of probs
  let vIn = side * 64u;                              // its head dims in vTile
  // Softmax: invocations 4r .. 4r + 3 own query row r of the workgroup, keys quarter, quarter + 4, ...
  let smRow = t / 4u;
  let quarter = t % 4u;
  let scoreAt = smRow * S_STRIDE + quarter;
  let probAt = smRow * P_STRIDE + quarter;
  var rowMax = NEG_BIG;                      // the reference, base 2, scaled
  var rowTotal = 0.0;
  // K/V staging: invocation t copies vec2<u32> units t, t + ${threads}, ... of each tile (key = unit / 32).
  ${n(copies, (i) => `let copyFrom${i} = (t + ${threads * i}u) / UNITS_PER_KEY * tokenStride / 4u + (t + ${threads * i}u) % UNITS_PER_KEY;
  let copyTo${i} = (t + ${threads * i}u) / UNITS_PER_KEY * KV_STRIDE + (t + ${threads * i}u) % UNITS_PER_KEY * 4u;
  var kf${i} = vec2<u32>();
  var vf${i} = vec2<u32>();`, '  ')}
  ${fetch('kf', 'k', '0u', '  ')}
  ${stage('kf', 'kTile', '  ')}
  ${fetch('kf', 'k', '1u', '  ')}
  ${fetch('vf', 'v', '0u', '  ')}

  let tiles = (nk + BK - 1u) / BK;
  for (var tile = 0u; tile < tiles; tile++) {
    let fresh = tile * BK;                   // keys below this were taken by the previous tile
    let kStart = min(fresh, nk - BK);
    workgroupBarrier();                      // K of this tile is staged; the previous P·V is done with vTile
    var s = Acc();
    ${n(8, (c) => `s = subgroupMatrixMultiplyAccumulate(q${c}m, subgroupMatrixLoad<Right, col_major>(&kTile, kIn + ${16 * c}u, KV_STRIDE), s);`, '    ')}
    subgroupMatrixStore<row_major>(&scores, sOut, s, S_STRIDE);     // unscaled: the softmax scales
    workgroupBarrier();                      // the scores are visible; kTile is free
    // Every invocation has read the previous tile's flag by now: clear it for the next tile.
    if (t == 0u) { rescaleFlag[(tile + 1u) % 2u] = 0u; }
    ${stage('vf', 'vTile', '    ')}
    ${stage('kf', 'kTile', '    ')}
    // The next loads are issued now and land while the softmax and P·V run (past the end they fetch the last tile
    // again, harmlessly).
    ${fetch('vf', 'v', 'tile + 1u', '    ')}
    ${fetch('kf', 'k', 'tile + 2u', '    ')}

    if (kStart < fresh) {                    // the shifted last tile: hide the keys the previous tile took
      for (var i = 0u; i < BK / 4u; i++) {
        if (4u * i + quarter < fresh - kStart) { scores[scoreAt + 4u * i] = NEG_BIG; }
      }
    }
    ${n(scoresPerLane, (i) => `let x${i} = scores[scoreAt + ${4 * i}u];`, '    ')}
    let mLane = ${reduce(xs, (a, b) => `max(${a}, ${b})`)};
    let mPair = max(mLane, subgroupShuffleXor(mLane, 1u));
    let m = max(mPair, subgroupShuffleXor(mPair, 2u)) * scale;
    var alpha = 1.0;
    if (m > rowMax + RESCALE_AT) {
      // The reference moves; O is rescaled below (on the first tile it is still zero).
      alpha = exp2(rowMax - m);
      rowMax = m;
      if (tile > 0u) { rescaleFlag[tile % 2u] = 1u; }
    }
    ${n(scoresPerLane, (i) => `let p${i} = exp2(x${i} * scale - rowMax);`, '    ')}
    ${n(scoresPerLane, (i) => `probs[probAt + ${4 * i}u] = f16(p${i});`, '    ')}
    let sumLane = ${reduce(ps, (a, b) => `(${a} + ${b})`)};
    let sumPair = sumLane + subgroupShuffleXor(sumLane, 1u);
    rowTotal = rowTotal * alpha + sumPair + subgroupShuffleXor(sumPair, 2u);
    if (quarter == 0u) { rowAlpha[smRow] = alpha; }

    if (workgroupUniformLoad(&rescaleFlag[tile % 2u]) != 0u) {
      ${n(4, (c) => `subgroupMatrixStore<row_major>(&scores, sg * 256u, o${c}, 16u);
      scaleScratch(sg, lane, block);
      o${c} = subgroupMatrixLoad<Acc, row_major>(&scores, sg * 256u, 16u);`, '      ')}
    }
    ${n(keys / 16, (j) => `{
      let p = subgroupMatrixLoad<Left, row_major>(&probs, pIn + ${16 * j}u, P_STRIDE);
      ${n(4, (c) => `o${c} = subgroupMatrixMultiplyAccumulate(p, subgroupMatrixLoad<Right, row_major>(&vTile, vIn + ${16 * j * KV_STRIDE + 16 * c}u, KV_STRIDE), o${c});`, '      ')}
    }`, '    ')}
  }

  if (quarter == 0u) { rowSum[smRow] = rowTotal; }
  ${n(4, (c) => `subgroupMatrixStore<row_major>(&scores, sg * 256u, o${c}, 16u);
  writeScratch(side * 64u + ${16 * c}u, sg, lane, block, rowStart, ownFrom, wg.y);`, '  ')}
}
`;
}

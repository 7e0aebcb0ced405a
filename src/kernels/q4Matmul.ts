// Our own 4-bit × f16 matrix product for the transformer's large linears: y[M, N] = x[M, K]·Wᵀ (+ bias) (+ GELU),
// W read straight from onnxruntime's MatMulNBits layout (src/weights/quantize.ts: B uint8 [N, ⌈K/32⌉, 16], two
// nibbles per byte with the even element in the low nibble, W = (q − 8)·scale, scales [N·⌈K/32⌉] in the activation
// dtype), so the weight buffers src/runtime/residency.ts uploads can feed either ORT or this kernel. Two kernels
// share one interface:
// - `portable`: plain WGSL for any WebGPU device, the path stock Chrome gets (q4MatmulPortable.ts): 128 × 128
//   outputs per workgroup, 8 × 8 per invocation, packed f16 FMAs on the f16 path. f32 or f16 tensors.
// - `subgroup-matrix`: the tensor-core path through `chromium-experimental-subgroup-matrix` (f16 × f16 → f32,
//   16×16×16), generated per tiling: x and W tiles staged in workgroup memory a step ahead, W dequantized with bit
//   tricks; 128 × 128 outputs per workgroup of 4 subgroups, or one subgroup per 64 × 64 where the device has less
//   than 24 KiB of workgroup memory. f16 tensors.
// K is a multiple of 32 (whole quantization blocks). Both accumulate in f32 (the portable f16 path adds each
// block's f16 partial sums to f32) and finish with the epilogue (bias, then optionally GELU with the tanh approximation).
// Bias and epilogue are uniform flags rather than separate pipelines: SwiftShader needs seconds per pipeline.
// Speeds and the tuning diary (what was measured, what was slower): bench/RESULTS.md, "4-bit GEMM tuning notes".
// Timings against ORT's MatMulNBits: bench/q4MatmulKernel.ts. A product is cut into dispatches of whole row tiles
// within the dispatch budget (dispatchBudget.ts), binding x and y at row offsets.

import { Q4MatmulConfigError, Q4MatmulShapeError } from '../errors/kernels.ts';
import { buildComputePipeline, cachedPipeline } from './kernelCache.ts';
import { GELU_EPILOGUE_WGSL } from './epilogue.ts';
import { PORTABLE_TILE_M, PORTABLE_TILE_N, PORTABLE_WORKGROUP_BYTES, portableTiledSource } from './q4MatmulPortable.ts';
import { dispatchFlops, rowsPerDispatch } from './dispatchBudget.ts';
import { checkedBinding, recordDispatch, submitAndWait } from './dispatch.ts';
import type { AdapterInfoWithSubgroups } from './kernelCache.ts';

export type Q4MatmulDtype = 'f32' | 'f16';
export type Q4MatmulPath = 'portable' | 'subgroup-matrix';
/** What happens to x·Wᵀ + bias before it is written: nothing, or GELU with the tanh approximation (PyTorch's approximate='tanh'). */
export type Q4Epilogue = 'none' | 'gelu_tanh';

/**
 * How the subgroup-matrix kernel splits the work: a workgroup has sgM × sgN subgroups of 32 invocations, each
 * computing 16·fragM × 16·fragN outputs (64 × 64 by default, so 64·sgM rows × 64·sgN columns per workgroup), and
 * takes `blocks` quantization blocks (32 of K each) per step. For benches and tuning; the default suits an H100/H200.
 */
export interface SubgroupMatrixTiling {
  sgM: number;
  sgN: number;
  blocks: number;
  /**
   * 16×16 result matrices per subgroup down M and across N, each 1, 2 or 4 (default 4 × 4: 64 × 64 outputs). Fewer
   * means fewer registers but more workgroup-memory reads per product.
   */
  fragM?: number;
  fragN?: number;
}

export interface Q4MatmulOptions {
  /** Input features (x's columns, W's columns). */
  k: number;
  /** Output features (W's rows). */
  n: number;
  dtype: Q4MatmulDtype;
  /** Default 'none'. */
  epilogue?: Q4Epilogue;
  /** Whether a bias [N] is added (then encode() needs io.bias). */
  bias: boolean;
  /** Default: the fastest path the device supports for these options. */
  path?: Q4MatmulPath;
  /** Subgroup-matrix path only; default DEFAULT_TILING where it fits the device's limits. */
  tiling?: SubgroupMatrixTiling;
  /** FLOPs one dispatch may take; default the path's share of the dispatch budget (dispatchBudget.ts). */
  dispatchFlops?: number;
}

export interface Q4MatmulIO {
  /** [m, k] of dtype, row-major. */
  x: GPUBuffer;
  /** MatMulNBits B: uint8 [n, ⌈k/32⌉, 16]. */
  blocks: GPUBuffer;
  /** [n·⌈k/32⌉] of dtype. */
  scales: GPUBuffer;
  /** [n] of dtype; required when the kernel was created with bias, refused otherwise. */
  bias?: GPUBuffer;
  /** [m, n] of dtype; written in full. */
  out: GPUBuffer;
  m: number;
}

export interface Q4Matmul {
  readonly path: Q4MatmulPath;
  readonly k: number;
  readonly n: number;
  readonly dtype: Q4MatmulDtype;
  readonly epilogue: Q4Epilogue;
  readonly bias: boolean;
  /** The subgroup-matrix path's tiling, null on the portable path. */
  readonly tiling: SubgroupMatrixTiling | null;
  /**
   * Records the product into a command encoder (in a pass of its own) or into a compute pass the caller has begun.
   * Nothing is submitted. Throws Q4MatmulShapeError when a size or a buffer does not fit.
   */
  encode(target: GPUCommandEncoder | GPUComputePassEncoder, io: Q4MatmulIO): void;
  /** Encodes, submits and waits: for tests and one-off use, not for the denoising loop. */
  run(io: Q4MatmulIO): Promise<void>;
}

export const Q4_BLOCK_SIZE = 32;

/** Floating-point operations of one product (a multiply and an add per weight and row). */
export function q4MatmulFlops(m: number, k: number, n: number): number {
  return 2 * m * k * n;
}

const SUBGROUP_MATRIX_FEATURE = 'chromium-experimental-subgroup-matrix';
/** The subgroup-matrix kernel's smallest problem: one 16-row matrix. Fewer rows go to the portable kernel. */
const SUBGROUP_MATRIX_MIN_M = 16;
/**
 * 128 rows × 128 columns per workgroup (2 × 2 subgroups of 64 × 64), one quantization block per step: 24 KiB, 128
 * invocations. 184–199 TFLOP/s on an H200 at FramePack's sizes (bench/RESULTS.md, "4-bit GEMM tuning notes").
 */
export const DEFAULT_TILING: SubgroupMatrixTiling = { sgM: 2, sgN: 2, blocks: 1 };
/** Where the default does not fit: one subgroup per 64 × 64 workgroup, 11 KiB, 32 invocations (99–111 TFLOP/s on an H200). */
const SMALL_TILING: SubgroupMatrixTiling = { sgM: 1, sgN: 1, blocks: 1 };
const FLAG_BIAS = 1;
const FLAG_GELU = 2;

/** Rows and columns of the output one workgroup computes. */
function tileShape(t: SubgroupMatrixTiling): [number, number] {
  const l = tilingLayout(t);
  return [l.tileM, l.tileN];
}

/** Names every value baked into the tiling's source: sgM×sgN×blocks-f<fragM>x<fragN>. */
export function tilingKey(t: SubgroupMatrixTiling): string {
  return `${t.sgM}x${t.sgN}x${t.blocks}-f${t.fragM ?? 4}x${t.fragN ?? 4}`;
}

/** Why this tiling cannot serve K (null when it can). */
function tilingProblem(t: SubgroupMatrixTiling, k: number): string | null {
  const ok = (v: number) => [1, 2, 4].includes(v);
  if (!ok(t.sgM) || !ok(t.sgN) || !ok(t.blocks)) return `tiling ${JSON.stringify(t)} needs sgM, sgN and blocks in {1, 2, 4}`;
  if (!ok(t.fragM ?? 4) || !ok(t.fragN ?? 4)) return `tiling ${JSON.stringify(t)} needs fragM and fragN in {1, 2, 4}`;
  const l = tilingLayout(t);
  if (l.xUnits % l.threads !== 0) return `tiling ${JSON.stringify(t)}: ${l.xUnits} vec4 units of x per step do not split evenly over ${l.threads} invocations`;
  if (!l.words) return `tiling ${JSON.stringify(t)}: the W tile's words do not split evenly over ${l.threads} invocations`;
  const kBlocks = Math.ceil(k / Q4_BLOCK_SIZE);
  if (kBlocks % t.blocks !== 0) return `K = ${k} has ${kBlocks} blocks of 32, not a multiple of the tiling's ${t.blocks} blocks per step`;
  return null;
}

/** Why the device's limits refuse this tiling (workgroup memory, invocations), or null when they allow it. */
function limitsProblem(device: GPUDevice, t: SubgroupMatrixTiling): string | null {
  const l = device.limits;
  const bytes = tilingLayout(t).bytes;
  if (l.maxComputeWorkgroupStorageSize < bytes) return `it needs ${bytes} bytes of workgroup memory (device limit ${l.maxComputeWorkgroupStorageSize})`;
  const threads = 32 * t.sgM * t.sgN;
  if (l.maxComputeInvocationsPerWorkgroup < threads || l.maxComputeWorkgroupSizeX < threads) {
    return `it needs ${threads} invocations per workgroup (device limits ${l.maxComputeInvocationsPerWorkgroup}, x size ${l.maxComputeWorkgroupSizeX})`;
  }
  return null;
}

function defaultTiling(device: GPUDevice): SubgroupMatrixTiling {
  return limitsProblem(device, DEFAULT_TILING) === null ? DEFAULT_TILING : SMALL_TILING;
}

/** Why the subgroup-matrix kernel cannot run with these options on this device, or null when it can. */
export function subgroupMatrixUnavailableReason(device: GPUDevice, options: Pick<Q4MatmulOptions, 'k' | 'dtype' | 'tiling'>): string | null {
  const has = (f: string) => device.features.has(f as GPUFeatureName);
  if (!has(SUBGROUP_MATRIX_FEATURE)) return `the device lacks '${SUBGROUP_MATRIX_FEATURE}' (Chrome/Dawn with allow_unsafe_apis on a GPU with matrix units)`;
  if (!has('subgroups')) return "the device lacks 'subgroups'";
  if (!has('shader-f16')) return "the device lacks 'shader-f16'";
  if (options.dtype !== 'f16') return 'it takes f16 tensors only';
  if (options.k % Q4_BLOCK_SIZE !== 0) return `it needs K to be a multiple of ${Q4_BLOCK_SIZE} (got ${options.k})`;
  const tiling = options.tiling ?? defaultTiling(device);
  const problem = tilingProblem(tiling, options.k);
  if (problem) return problem;
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
  return limitsProblem(device, tiling);
}

/** The path createQ4Matmul takes when none is asked for. */
export function chooseQ4MatmulPath(device: GPUDevice, options: Pick<Q4MatmulOptions, 'k' | 'dtype' | 'tiling'>): Q4MatmulPath {
  return subgroupMatrixUnavailableReason(device, options) === null ? 'subgroup-matrix' : 'portable';
}

/**
 * Builds (or fetches from the cache) the pipeline for these options.
 * Throws Q4MatmulConfigError when a size is invalid, f16 is asked for without 'shader-f16', or the subgroup-matrix
 * path is asked for where it cannot run; KernelCompileError when the driver rejects the kernel.
 */
export async function createQ4Matmul(device: GPUDevice, options: Q4MatmulOptions): Promise<Q4Matmul> {
  const { k, n, dtype } = options;
  const epilogue = options.epilogue ?? 'none';
  for (const [name, v] of [['k', k], ['n', n]] as const) {
    if (!Number.isInteger(v) || v < 1) throw new Q4MatmulConfigError(`${name} must be a positive integer, got ${v}.`);
  }
  if (k % Q4_BLOCK_SIZE !== 0) throw new Q4MatmulConfigError(`K must be a multiple of ${Q4_BLOCK_SIZE} (whole quantization blocks), got ${k}; keep such a linear in float weights.`);
  if (epilogue !== 'none' && epilogue !== 'gelu_tanh') throw new Q4MatmulConfigError(`Unknown epilogue '${String(epilogue)}' (expected 'none' or 'gelu_tanh').`);
  if (device.limits.maxComputeWorkgroupStorageSize < PORTABLE_WORKGROUP_BYTES || device.limits.maxComputeInvocationsPerWorkgroup < 256) {
    throw new Q4MatmulConfigError(`The 4-bit matmul needs ${PORTABLE_WORKGROUP_BYTES} bytes of workgroup memory and 256 invocations per workgroup (WebGPU's default limits); this device offers ${device.limits.maxComputeWorkgroupStorageSize} and ${device.limits.maxComputeInvocationsPerWorkgroup}.`);
  }
  if (dtype === 'f16' && !device.features.has('shader-f16')) {
    throw new Q4MatmulConfigError("f16 activations need the 'shader-f16' device feature; run the model in f32 on this device.");
  }
  const path = options.path ?? chooseQ4MatmulPath(device, options);
  const portableKey = `q4Matmul/portable/${dtype}`;
  const portable = () => cachedPipeline(device, portableKey, () => buildComputePipeline(device, portableKey, portableTiledSource(dtype)));
  const flags = (options.bias ? FLAG_BIAS : 0) | (epilogue === 'gelu_tanh' ? FLAG_GELU : 0);
  const budget = options.dispatchFlops ?? dispatchFlops(path === 'subgroup-matrix' ? 'q4Matmul/subgroup-matrix' : `q4Matmul/portable/${dtype}`);
  const shape = { k, n, dtype, epilogue, bias: options.bias, flags, budget };
  if (path === 'portable') return new Q4MatmulKernel(device, await portable(), null, path, null, shape);
  const reason = subgroupMatrixUnavailableReason(device, options);
  if (reason) throw new Q4MatmulConfigError(`The subgroup-matrix 4-bit matmul cannot run here: ${reason}. Use path 'portable'.`);
  const tiling = options.tiling ?? defaultTiling(device);
  const fastKey = `q4Matmul/subgroup-matrix/${tilingKey(tiling)}`;
  const [fast, small] = await Promise.all([
    cachedPipeline(device, fastKey, () => buildComputePipeline(device, fastKey, subgroupMatrixSource(tiling))),
    portable(),
  ]);
  return new Q4MatmulKernel(device, fast, small, path, tiling, shape);
}

interface KernelShape {
  k: number;
  n: number;
  dtype: Q4MatmulDtype;
  epilogue: Q4Epilogue;
  bias: boolean;
  flags: number;
  /** FLOPs one dispatch may take. */
  budget: number;
}

class Q4MatmulKernel implements Q4Matmul {
  readonly k: number;
  readonly n: number;
  readonly dtype: Q4MatmulDtype;
  readonly epilogue: Q4Epilogue;
  readonly bias: boolean;
  private readonly flags: number;
  private readonly budget: number;
  /** One small uniform buffer per m: the shapes of a run repeat every step. */
  private readonly params = new Map<number, GPUBuffer>();
  /** Bound in the bias slot when there is no bias (the kernels read it only when the flag says so). */
  private noBias: GPUBuffer | null = null;

  constructor(
    private readonly device: GPUDevice,
    private readonly pipeline: GPUComputePipeline,
    /** For the subgroup-matrix path: the portable pipeline that takes problems below its minimum size. */
    private readonly smallPipeline: GPUComputePipeline | null,
    readonly path: Q4MatmulPath,
    readonly tiling: SubgroupMatrixTiling | null,
    shape: KernelShape,
  ) {
    ({ k: this.k, n: this.n, dtype: this.dtype, epilogue: this.epilogue, bias: this.bias, flags: this.flags, budget: this.budget } = shape);
  }

  encode(target: GPUCommandEncoder | GPUComputePassEncoder, io: Q4MatmulIO): void {
    const { m } = io;
    if (!Number.isInteger(m) || m < 1) throw new Q4MatmulShapeError(`m must be a positive integer, got ${m}.`);
    if (this.bias && !io.bias) throw new Q4MatmulShapeError('This 4-bit matmul was created with bias: true; pass io.bias ([n] values).');
    if (!this.bias && io.bias) throw new Q4MatmulShapeError('This 4-bit matmul was created with bias: false but io.bias was given; create it with bias: true.');
    const small = this.smallPipeline !== null && m < SUBGROUP_MATRIX_MIN_M;
    const pipeline = small ? this.smallPipeline! : this.pipeline;
    const [rowsPerGroup, colsPerGroup] = small || !this.tiling ? [PORTABLE_TILE_M, PORTABLE_TILE_N] : tileShape(this.tiling);
    const elem = this.dtype === 'f16' ? 2 : 4;
    const kBlocks = Math.ceil(this.k / Q4_BLOCK_SIZE);
    const binding = (name: string, buffer: GPUBuffer, bytes: number, what: string, offset = 0) =>
      checkedBinding(this.device, buffer, bytes, { kernel: '4-bit matmul', name, what, tooLargeHint: 'Split the rows over several calls.' }, Q4MatmulShapeError, offset);
    const weights = {
      blocks: binding('blocks', io.blocks, this.n * kBlocks * 16, `${this.n} rows × ${kBlocks} blocks × 16 bytes`),
      scales: binding('scales', io.scales, this.n * kBlocks * elem, `${this.n} × ${kBlocks} ${this.dtype} scales`),
      bias: io.bias ? binding('bias', io.bias, this.n * elem, `${this.n} ${this.dtype}`) : { buffer: this.noBiasBuffer() },
    };
    // Whole tiles of rows per dispatch within the budget, x and y bound at the chunk's row offset.
    const [xRow, yRow] = [this.k * elem, this.n * elem];
    const alignment = this.device.limits.minStorageBufferOffsetAlignment;
    const chunk = Math.min(m, rowsPerDispatch(this.budget, 2 * this.k * this.n, rowsPerGroup, [xRow, yRow], alignment));
    const aligned = (xRow * chunk) % alignment === 0 && (yRow * chunk) % alignment === 0;
    const step = aligned ? chunk : m;
    const maxGroups = this.device.limits.maxComputeWorkgroupsPerDimension;
    for (let r0 = 0; r0 < m; r0 += step) {
      const rows = Math.min(step, m - r0);
      const grid = [Math.ceil(this.n / colsPerGroup), Math.ceil(rows / rowsPerGroup)];
      if (grid[0] > maxGroups || grid[1] > maxGroups) {
        throw new Q4MatmulShapeError(`A ${rows}×${this.n} product needs a ${grid[0]}×${grid[1]} grid; this device allows ${maxGroups} per dimension. Split the rows over several calls.`);
      }
      const bindGroup = this.device.createBindGroup({
        label: `q4Matmul ${rows}×${this.k}→${this.n}`,
        layout: pipeline.getBindGroupLayout(0),
        entries: [
          { binding: 0, resource: { buffer: this.paramsBuffer(rows) } },
          { binding: 1, resource: binding('x', io.x, rows * xRow, `${m} × ${this.k} ${this.dtype}`, r0 * xRow) },
          { binding: 2, resource: weights.blocks },
          { binding: 3, resource: weights.scales },
          { binding: 4, resource: weights.bias },
          { binding: 5, resource: binding('out', io.out, rows * yRow, `${m} × ${this.n} ${this.dtype}`, r0 * yRow) },
        ],
      });
      recordDispatch(target, 'q4Matmul', pipeline, bindGroup, grid[0], grid[1]);
    }
  }

  run(io: Q4MatmulIO): Promise<void> {
    return submitAndWait(this.device, 'q4Matmul.run', (encoder) => this.encode(encoder, io));
  }

  private paramsBuffer(m: number): GPUBuffer {
    let buffer = this.params.get(m);
    if (!buffer) {
      // struct Params { m, n, k, kBlocks, flags: u32, (3 × padding) }
      buffer = this.device.createBuffer({ label: `q4Matmul params m=${m}`, size: 32, usage: GPUBufferUsage.UNIFORM, mappedAtCreation: true });
      new Uint32Array(buffer.getMappedRange()).set([m, this.n, this.k, Math.ceil(this.k / Q4_BLOCK_SIZE), this.flags]);
      buffer.unmap();
      this.params.set(m, buffer);
    }
    return buffer;
  }

  private noBiasBuffer(): GPUBuffer {
    this.noBias ??= this.device.createBuffer({ label: 'q4Matmul no bias', size: 16, usage: GPUBufferUsage.STORAGE });
    return this.noBias;
  }
}

function fill(template: string, values: Record<string, string>): string {
  return template.replace(/\{\{(\w+)\}\}/g, (_, name: string) => {
    const value = values[name];
    if (value === undefined) throw new Error(`Unknown placeholder {{${name}}} in the 4-bit matmul kernel source.`);
    return value;
  });
}

/** The subgroup-matrix source for a tiling (generated per tiling), its {{EPILOGUE}} filled. */
export function subgroupMatrixSource(tiling: SubgroupMatrixTiling): string {
  return fill(subgroupMatrixTemplate(tiling), { EPILOGUE: GELU_EPILOGUE_WGSL });
}

/** Derived sizes of the subgroup-matrix kernel for a tiling (fragM/fragN default 4). Scratch stride 16 f32 (20 needs more memory). */
function tilingLayout(t: SubgroupMatrixTiling) {
  const fm = t.fragM ?? 4;
  const fn = t.fragN ?? 4;
  const threads = 32 * t.sgM * t.sgN;
  const tileM = 16 * fm * t.sgM;
  const tileN = 16 * fn * t.sgN;
  const bk = 32 * t.blocks;
  const stride = bk + 8;
  const xUnits = (tileM * bk) / 8; // vec4<u32> (8 halves) of x per step
  // W per step: tileN × blocks quantization blocks of 4 u32 words, handed out in groups of `words` words so that
  // every invocation takes the same whole number of groups.
  // (4-byte groups would need tiles with fewer W columns than invocations: none measured, so none offered.)
  const words = [4, 2].find((g) => ((tileN * t.blocks * 4) / g) % threads === 0 && (tileN * t.blocks * 4) / g >= threads) ?? 0;
  const wUnits = words ? (tileN * t.blocks * 4) / words : 0;
  const bytes = (tileM + tileN) * stride * 2 + (threads / 32) * 16 * SCRATCH_STRIDE * 4;
  return { fm, fn, threads, tileM, tileN, bk, stride, xUnits, words, wUnits, bytes };
}
const SCRATCH_STRIDE = 16;

// The subgroup-matrix kernel, generated per tiling. One workgroup = sgM × sgN subgroups of 32 invocations; subgroup
// (i, j) owns 16·fragM rows × 16·fragN columns of the workgroup's tile as fragM·fragN f32 result matrices (separate
// variables: arrays of subgroup matrices crash Dawn). Per step of BK = 32·blocks along K:
//   - x: the tile's rows × BK halves are read from the storage buffer as vec4<u32> (coalesced 16-byte loads, one
//     step ahead into registers; rows past m repeat row m − 1, whose outputs are never written) and written to
//     xTile as f16 scalars. Subgroup-matrix loads from storage cost far more (the tuning notes, flashAttention.ts).
//   - W: the tile's columns × blocks quantization blocks are read as 16- or 8-byte word groups plus their scale (one
//     step ahead), dequantized without integer → float conversions: (w >> 4s) & 0x000F000F | 0x64006400 is the
//     f16 pair (1024 + q_s, 1024 + q_{s+4}), minus 1032 that is q − 8 exactly, times the scale (the one rounding,
//     as in dequantizeQ4). Columns past n read row n − 1 with scale 0.
//   - BK/16 k-steps of fragM left (row-major from xTile) × fragN right (column-major from wTile) products.
// Per step: barrier, stage the registers into the tiles, issue the next step's loads, barrier, products.
// Tiles are [row][BK + 8] halves: rows 16-byte aligned, consecutive rows in different banks. No m ≥ 16 requirement
// here (x rows are clamped one by one), but the dispatcher still sends fewer rows to the portable kernel.
// Epilogue: each result matrix goes through the subgroup's f32 scratch; lanes add the bias, apply GELU and write
// f16 with row and column bounds. Every workgroup variable is a multiple of 16 bytes (see flashAttention.ts).
function subgroupMatrixTemplate(t: SubgroupMatrixTiling): string {
  const L = tilingLayout(t);
  const lines = (count: number, line: (i: number) => string, indent: string) => Array.from({ length: count }, (_, i) => line(i)).join(`\n${indent}`);
  const xPer = L.xUnits / L.threads;
  const wPer = L.wUnits / L.threads;
  const groupsPerBlock = 4 / L.words;
  const wType = L.words === 4 ? 'vec4<u32>' : 'vec2<u32>';
  const word = (i: number, w: number) => `wq${i}[${w}]`;
  const accs: string[] = [];
  for (let i = 0; i < L.fm; i++) for (let j = 0; j < L.fn; j++) accs.push(`acc${i}_${j}`);
  const load = (step: string, indent: string) =>
    [
      ...Array.from({ length: xPer }, (_, i) => `xr${i} = x[xFrom${i} + (${step}) * (BK / 8u)];`),
      ...Array.from({ length: wPer }, (_, i) => `wq${i} = blocks[wFrom${i} + (${step}) * (BLOCKS * ${groupsPerBlock}u)];`),
      ...Array.from({ length: wPer }, (_, i) => `ws${i} = select(0.0h, scales[wBlock${i} + (${step}) * BLOCKS], wLive${i});`),
    ].join(`\n${indent}`);
  const stage = (indent: string) =>
    [
      ...Array.from({ length: xPer }, (_, i) =>
        [0, 1, 2, 3].map((c) => `{ let h = bitcast<vec2<f16>>(xr${i}[${c}]); xTile[xTo${i} + ${2 * c}u] = h.x; xTile[xTo${i} + ${2 * c + 1}u] = h.y; }`).join(`\n${indent}`),
      ),
      ...Array.from({ length: wPer }, (_, i) =>
        Array.from({ length: L.words }, (_, w) => {
          const p = (s: number) => `(bitcast<vec2<f16>>(((${word(i, w)} >> ${4 * s}u) & 0x000F000Fu) | 0x64006400u) - vec2<f16>(1032.0h)) * vec2<f16>(ws${i})`;
          const o = `wTo${i} + ${8 * w}u`;
          return `{
${indent}  let p0 = ${p(0)};
${indent}  let p1 = ${p(1)};
${indent}  let p2 = ${p(2)};
${indent}  let p3 = ${p(3)};
${indent}  wTile[${o}] = p0.x; wTile[${o} + 1u] = p1.x; wTile[${o} + 2u] = p2.x; wTile[${o} + 3u] = p3.x;
${indent}  wTile[${o} + 4u] = p0.y; wTile[${o} + 5u] = p1.y; wTile[${o} + 6u] = p2.y; wTile[${o} + 7u] = p3.y;
${indent}}`;
        }).join(`\n${indent}`),
      ),
    ].join(`\n${indent}`);
  const compute = (indent: string) =>
    Array.from({ length: L.bk / 16 }, (_, s) =>
      [
        '{',
        ...Array.from({ length: L.fm }, (_, i) => `  let a${i} = subgroupMatrixLoad<Left, row_major>(&xTile, xRead + ${16 * i * L.stride + 16 * s}u, X_STRIDE);`),
        ...Array.from({ length: L.fn }, (_, j) => `  let b${j} = subgroupMatrixLoad<Right, col_major>(&wTile, wRead + ${16 * j * L.stride + 16 * s}u, W_STRIDE);`),
        ...accs.map((a) => `  ${a} = subgroupMatrixMultiplyAccumulate(a${a[3]}, b${a[5]}, ${a});`),
        '}',
      ].join(`\n${indent}`),
    ).join(`\n${indent}`);
  // The next step's loads are issued before the second barrier, so that they are in flight while it waits.
  const loop = `  ${load('0u', '  ')}
  for (var kStep = 0u; kStep < steps; kStep++) {
    workgroupBarrier();                                  // the previous step's tile reads are done
    ${stage('    ')}
    let next = min(kStep + 1u, steps - 1u);              // the last step fetches itself again, harmlessly
    ${load('next', '    ')}
    workgroupBarrier();
    ${compute('    ')}
  }`;
  return /* wgsl */ `
enable f16;
enable subgroups;
enable chromium_experimental_subgroup_matrix;
diagnostic(off, chromium.subgroup_matrix_uniformity);
diagnostic(off, subgroup_uniformity);

alias Left = subgroup_matrix_left<f16, 16, 16>;
alias Right = subgroup_matrix_right<f16, 16, 16>;
alias Acc = subgroup_matrix_result<f32, 16, 16>;

const THREADS: u32 = ${L.threads}u;
const SG_M: u32 = ${t.sgM}u;
const TILE_M: u32 = ${L.tileM}u;
const TILE_N: u32 = ${L.tileN}u;
const BLOCKS: u32 = ${t.blocks}u;
const BK: u32 = ${L.bk}u;
const X_STRIDE: u32 = ${L.stride}u;               // f16
const W_STRIDE: u32 = ${L.stride}u;               // f16
const S_STRIDE: u32 = ${SCRATCH_STRIDE}u;                // f32
const FLAG_BIAS: u32 = 1u;
const FLAG_GELU: u32 = 2u;

struct Params { m: u32, n: u32, k: u32, kBlocks: u32, flags: u32, pad0: u32, pad1: u32, pad2: u32 }

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> x: array<vec4<u32>>;
@group(0) @binding(2) var<storage, read> blocks: array<${wType}>;
@group(0) @binding(3) var<storage, read> scales: array<f16>;
@group(0) @binding(4) var<storage, read> bias: array<f16>;
@group(0) @binding(5) var<storage, read_write> y: array<f16>;

var<workgroup> xTile: array<f16, ${L.tileM * L.stride}>;    // [TILE_M][X_STRIDE]
var<workgroup> wTile: array<f16, ${L.tileN * L.stride}>;    // [TILE_N][W_STRIDE]
var<workgroup> scratch: array<f32, ${(L.threads / 32) * 16 * SCRATCH_STRIDE}>;  // per subgroup [16][S_STRIDE]

{{EPILOGUE}}

// Writes the result matrix this subgroup just stored to its scratch as rows row0.., columns col0... All subgroups
// call it together (it holds barriers).
fn writeTile(sBase: u32, lane: u32, row0: u32, col0: u32) {
  workgroupBarrier();
  let m = params.m;
  let n = params.n;
  for (var e = 0u; e < 8u; e++) {
    let i = lane + 32u * e;
    let row = row0 + i / 16u;
    let col = col0 + i % 16u;
    if (row < m && col < n) {
      y[row * n + col] = f16(finish(scratch[sBase + (i / 16u) * S_STRIDE + i % 16u], col));
    }
  }
  workgroupBarrier();
}

@compute @workgroup_size(THREADS)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) t: u32) {
  let sg = t / 32u;
  let lane = t % 32u;
  let m = params.m;
  let n = params.n;
  let kBlocks = params.kBlocks;
  let kVec = params.k / 8u;                              // vec4<u32> per row of x
  let steps = kBlocks / BLOCKS;
  let rowTile = wg.y * TILE_M;
  let colTile = wg.x * TILE_N;
  let rowOwn = (sg % SG_M) * ${16 * L.fm}u;               // this subgroup's rows and columns in the tile
  let colOwn = (sg / SG_M) * ${16 * L.fn}u;
  let xRead = rowOwn * X_STRIDE;
  let wRead = colOwn * W_STRIDE;
  // x staging: vec4<u32> unit u = t + i·THREADS is row u / (BK/8), halves 8·(u % (BK/8)) .. of the tile.
  ${lines(xPer, (i) => `let xFrom${i} = min(rowTile + (t + ${i * L.threads}u) / (BK / 8u), m - 1u) * kVec + (t + ${i * L.threads}u) % (BK / 8u);
  let xTo${i} = (t + ${i * L.threads}u) / (BK / 8u) * X_STRIDE + (t + ${i * L.threads}u) % (BK / 8u) * 8u;
  var xr${i} = vec4<u32>();`, '  ')}
  // W staging: group u = t + i·THREADS is column u / (BLOCKS·${groupsPerBlock}), its block (u / ${groupsPerBlock}) % BLOCKS, words ${L.words}·(u % ${groupsPerBlock}) ...
  ${lines(wPer, (i) => `let wCol${i} = colTile + (t + ${i * L.threads}u) / (BLOCKS * ${groupsPerBlock}u);
  let wLive${i} = wCol${i} < n;
  let wBlock${i} = min(wCol${i}, n - 1u) * kBlocks + (t + ${i * L.threads}u) / ${groupsPerBlock}u % BLOCKS;
  let wFrom${i} = wBlock${i} * ${groupsPerBlock}u + (t + ${i * L.threads}u) % ${groupsPerBlock}u;
  let wTo${i} = (t + ${i * L.threads}u) / (BLOCKS * ${groupsPerBlock}u) * W_STRIDE + (t + ${i * L.threads}u) % (BLOCKS * ${groupsPerBlock}u) * ${8 * L.words}u;
  var wq${i} = ${wType}();
  var ws${i} = 0.0h;`, '  ')}
  ${accs.map((a) => `var ${a} = Acc();`).join('\n  ')}

${loop}

  let sBase = sg * 16u * S_STRIDE;
  ${accs
    .map((a) => `subgroupMatrixStore<row_major>(&scratch, sBase, ${a}, S_STRIDE);
  writeTile(sBase, lane, rowTile + rowOwn + ${16 * Number(a[3])}u, colTile + colOwn + ${16 * Number(a[5])}u);`)
    .join('\n  ')}
}
`;
}

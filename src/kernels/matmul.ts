// Products with float weights, for block plans whose linears are stored in fp32 or fp16 rather than 4-bit: the fp32
// reference fixtures run through the same plan on WebGPU as the 4-bit product does. Two kernels, both portable WGSL
// for any WebGPU device:
// - `createMatmul`: y [m, n] = x [m, k]·Wᵀ (+ bias) (+ GELU), W [n, k] as a checkpoint Linear stores it. 64 × 64
//   outputs per workgroup of 256 invocations, x and W staged through workgroup memory 16 columns of K at a time,
//   each invocation owning a 4 × 4 register tile; accumulation in f32 (the q4 GEMM's portable layout, without its
//   dequantization).
// - `createSiluGemv`: y [n] (f32) = W·SiLU(x) + b for one f32 row x [k] (a block's AdaLN parameters from temb), 32
//   invocations per output row and 8 rows per workgroup, as q4Gemv.ts does for 4-bit weights.
// Tensors and weights are f32, or f16 where the device has shader-f16.

import { buildComputePipeline, cachedPipeline } from './kernelCache.ts';
import { checkedBinding, recordDispatch, submitAndWait } from './dispatch.ts';
import { GELU_EPILOGUE_WGSL } from './epilogue.ts';
import { MatmulConfigError, MatmulShapeError } from '../errors/kernels.ts';

export type MatmulDtype = 'f32' | 'f16';

export interface MatmulOptions {
  k: number;
  n: number;
  dtype: MatmulDtype;
  epilogue?: 'none' | 'gelu_tanh';
  bias: boolean;
}

export interface MatmulIO {
  /** [m, k] of dtype. */
  x: GPUBuffer;
  /** [n, k] of dtype. */
  w: GPUBuffer;
  /** [n] of dtype, when the product was created with bias. */
  bias?: GPUBuffer;
  /** [m, n] of dtype, written in full. */
  out: GPUBuffer;
  m: number;
}

export interface Matmul {
  readonly k: number;
  readonly n: number;
  readonly dtype: MatmulDtype;
  /** Records the product into a command encoder (a pass of its own) or a compute pass the caller has begun. Throws MatmulShapeError. */
  encode(target: GPUCommandEncoder | GPUComputePassEncoder, io: MatmulIO): void;
  /** Encodes, submits and waits: for tests and one-off use. */
  run(io: MatmulIO): Promise<void>;
}

export interface SiluGemvIO {
  /** [k] f32; SiLU is applied to it. */
  x: GPUBuffer;
  /** [n, k] of dtype. */
  w: GPUBuffer;
  /** [n] of dtype. */
  bias: GPUBuffer;
  /** [n] f32, written in full. */
  out: GPUBuffer;
}

export interface SiluGemv {
  readonly k: number;
  readonly n: number;
  readonly dtype: MatmulDtype;
  encode(target: GPUCommandEncoder | GPUComputePassEncoder, io: SiluGemvIO): void;
  run(io: SiluGemvIO): Promise<void>;
}

const TILE = 64;
const FLAG_BIAS = 1;
const FLAG_GELU = 2;

function checkOptions(device: GPUDevice, k: number, n: number, dtype: MatmulDtype): void {
  for (const [name, v] of [['k', k], ['n', n]] as const) {
    if (!Number.isInteger(v) || v < 1) throw new MatmulConfigError(`${name} must be a positive integer, got ${v}.`);
  }
  if (dtype === 'f16' && !device.features.has('shader-f16')) throw new MatmulConfigError("f16 tensors need the 'shader-f16' device feature; run the model in f32 on this device.");
}

/** Creates (or takes from the cache) the float-weight GEMM. Throws MatmulConfigError, KernelCompileError. */
export async function createMatmul(device: GPUDevice, options: MatmulOptions): Promise<Matmul> {
  const { k, n, dtype } = options;
  checkOptions(device, k, n, dtype);
  const key = `matmul/${dtype}`;
  const pipeline = await cachedPipeline(device, key, () => buildComputePipeline(device, key, matmulSource(dtype)));
  const flags = (options.bias ? FLAG_BIAS : 0) | (options.epilogue === 'gelu_tanh' ? FLAG_GELU : 0);
  return new MatmulKernel(device, pipeline, k, n, dtype, options.bias, flags);
}

class MatmulKernel implements Matmul {
  /** One small uniform buffer per m: the shapes of a run repeat every step. */
  private readonly params = new Map<number, GPUBuffer>();
  private noBias: GPUBuffer | null = null;

  constructor(
    private readonly device: GPUDevice,
    private readonly pipeline: GPUComputePipeline,
    readonly k: number,
    readonly n: number,
    readonly dtype: MatmulDtype,
    private readonly bias: boolean,
    private readonly flags: number,
  ) {}

  encode(target: GPUCommandEncoder | GPUComputePassEncoder, io: MatmulIO): void {
    const { m } = io;
    if (!Number.isInteger(m) || m < 1) throw new MatmulShapeError(`m must be a positive integer, got ${m}.`);
    if (this.bias !== !!io.bias) throw new MatmulShapeError(`This product was created with bias: ${this.bias}; ${this.bias ? 'pass io.bias ([n] values)' : 'io.bias was given'}.`);
    const grid = [Math.ceil(this.n / TILE), Math.ceil(m / TILE)];
    const maxGroups = this.device.limits.maxComputeWorkgroupsPerDimension;
    if (grid[0] > maxGroups || grid[1] > maxGroups) {
      throw new MatmulShapeError(`A ${m}×${this.n} product needs a ${grid[0]}×${grid[1]} grid; this device allows ${maxGroups} per dimension. Split the rows over several calls.`);
    }
    const elem = this.dtype === 'f16' ? 2 : 4;
    const binding = (name: string, buffer: GPUBuffer, bytes: number, what: string) =>
      checkedBinding(this.device, buffer, bytes, { kernel: 'matmul', name, what, tooLargeHint: 'Split the rows over several calls.' }, MatmulShapeError);
    const bindGroup = this.device.createBindGroup({
      label: `matmul ${m}×${this.k}→${this.n}`,
      layout: this.pipeline.getBindGroupLayout(0),
      entries: [
        { binding: 0, resource: { buffer: this.paramsBuffer(m) } },
        { binding: 1, resource: binding('x', io.x, m * this.k * elem, `${m} × ${this.k} ${this.dtype}`) },
        { binding: 2, resource: binding('w', io.w, this.n * this.k * elem, `${this.n} × ${this.k} ${this.dtype}`) },
        { binding: 3, resource: io.bias ? binding('bias', io.bias, this.n * elem, `${this.n} ${this.dtype}`) : { buffer: this.noBiasBuffer() } },
        { binding: 4, resource: binding('out', io.out, m * this.n * elem, `${m} × ${this.n} ${this.dtype}`) },
      ],
    });
    recordDispatch(target, 'matmul', this.pipeline, bindGroup, grid[0], grid[1]);
  }

  run(io: MatmulIO): Promise<void> {
    return submitAndWait(this.device, 'matmul.run', (encoder) => this.encode(encoder, io));
  }

  private paramsBuffer(m: number): GPUBuffer {
    let buffer = this.params.get(m);
    if (!buffer) {
      // struct Params { m, n, k, flags: u32 }
      buffer = this.device.createBuffer({ label: `matmul params m=${m}`, size: 16, usage: GPUBufferUsage.UNIFORM, mappedAtCreation: true });
      new Uint32Array(buffer.getMappedRange()).set([m, this.n, this.k, this.flags]);
      buffer.unmap();
      this.params.set(m, buffer);
    }
    return buffer;
  }

  private noBiasBuffer(): GPUBuffer {
    this.noBias ??= this.device.createBuffer({ label: 'matmul no bias', size: 16, usage: GPUBufferUsage.STORAGE });
    return this.noBias;
  }
}

function matmulSource(dtype: MatmulDtype): string {
  return /* wgsl */ `
${dtype === 'f16' ? 'enable f16;' : ''}
alias Elem = ${dtype};

const TILE: u32 = ${TILE}u;
const BK: u32 = 16u;
const THREADS: u32 = 256u;
const FLAG_BIAS: u32 = ${FLAG_BIAS}u;
const FLAG_GELU: u32 = ${FLAG_GELU}u;

struct Params { m: u32, n: u32, k: u32, flags: u32 }

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> x: array<Elem>;
@group(0) @binding(2) var<storage, read> w: array<Elem>;
@group(0) @binding(3) var<storage, read> bias: array<Elem>;
@group(0) @binding(4) var<storage, read_write> y: array<Elem>;

var<workgroup> xTile: array<vec4<f32>, 256>;   // [BK][TILE/4]: x rows of the tile
var<workgroup> wTile: array<vec4<f32>, 256>;   // [BK][TILE/4]: W rows (output columns) of the tile

${GELU_EPILOGUE_WGSL}

fn writeRow(row: u32, col: u32, v: vec4<f32>) {
  if (row >= params.m) { return; }
  for (var j = 0u; j < 4u; j++) {
    if (col + j < params.n) { y[row * params.n + col + j] = Elem(finish(v[j], col + j)); }
  }
}

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) t: u32) {
  let kSize = params.k;
  let row0 = wg.y * TILE;
  let col0 = wg.x * TILE;
  let tr = t / 16u;                // outputs: rows row0 + 4·tr ..
  let tc = t % 16u;                //          columns col0 + 4·tc ..
  var acc0 = vec4<f32>(0.0);
  var acc1 = vec4<f32>(0.0);
  var acc2 = vec4<f32>(0.0);
  var acc3 = vec4<f32>(0.0);
  for (var k0 = 0u; k0 < kSize; k0 += BK) {
    workgroupBarrier();
    for (var e = 0u; e < 4u; e++) {
      let i = t + e * THREADS;     // 0 .. TILE·BK: row i / BK of the tile, column i % BK of this step
      let r = i / BK;
      let kk = i % BK;
      var xv = 0.0;
      if (row0 + r < params.m && k0 + kk < kSize) { xv = f32(x[(row0 + r) * kSize + k0 + kk]); }
      xTile[kk * 16u + r / 4u][r % 4u] = xv;
      var wv = 0.0;
      if (col0 + r < params.n && k0 + kk < kSize) { wv = f32(w[(col0 + r) * kSize + k0 + kk]); }
      wTile[kk * 16u + r / 4u][r % 4u] = wv;
    }
    workgroupBarrier();
    for (var kk = 0u; kk < BK; kk++) {
      let a = xTile[kk * 16u + tr];
      let b = wTile[kk * 16u + tc];
      acc0 += a.x * b;
      acc1 += a.y * b;
      acc2 += a.z * b;
      acc3 += a.w * b;
    }
  }
  writeRow(row0 + 4u * tr + 0u, col0 + 4u * tc, acc0);
  writeRow(row0 + 4u * tr + 1u, col0 + 4u * tc, acc1);
  writeRow(row0 + 4u * tr + 2u, col0 + 4u * tc, acc2);
  writeRow(row0 + 4u * tr + 3u, col0 + 4u * tc, acc3);
}
`;
}

const LANES_PER_ROW = 32;
const ROWS_PER_WORKGROUP = 8;

/** Creates (or takes from the cache) the float-weight one-row product with SiLU. Throws MatmulConfigError, KernelCompileError. */
export async function createSiluGemv(device: GPUDevice, options: { k: number; n: number; dtype: MatmulDtype }): Promise<SiluGemv> {
  const { k, n, dtype } = options;
  checkOptions(device, k, n, dtype);
  const key = `siluGemv/${dtype}`;
  const pipeline = await cachedPipeline(device, key, () => buildComputePipeline(device, key, gemvSource(dtype)));
  return new SiluGemvKernel(device, pipeline, k, n, dtype);
}

class SiluGemvKernel implements SiluGemv {
  private readonly params: GPUBuffer;
  private readonly grid: [number, number];

  constructor(private readonly device: GPUDevice, private readonly pipeline: GPUComputePipeline, readonly k: number, readonly n: number, readonly dtype: MatmulDtype) {
    const groups = Math.ceil(n / ROWS_PER_WORKGROUP);
    const gridX = Math.min(groups, device.limits.maxComputeWorkgroupsPerDimension);
    this.grid = [gridX, Math.ceil(groups / gridX)];
    // struct Params { k, n, gridX, pad: u32 }
    this.params = device.createBuffer({ label: `siluGemv params ${k}→${n}`, size: 16, usage: GPUBufferUsage.UNIFORM, mappedAtCreation: true });
    new Uint32Array(this.params.getMappedRange()).set([k, n, gridX, 0]);
    this.params.unmap();
  }

  encode(target: GPUCommandEncoder | GPUComputePassEncoder, io: SiluGemvIO): void {
    const elem = this.dtype === 'f16' ? 2 : 4;
    const binding = (name: string, buffer: GPUBuffer, bytes: number, what: string) =>
      checkedBinding(this.device, buffer, bytes, { kernel: 'siluGemv', name, what }, MatmulShapeError);
    const bindGroup = this.device.createBindGroup({
      label: `siluGemv ${this.k}→${this.n}`,
      layout: this.pipeline.getBindGroupLayout(0),
      entries: [
        { binding: 0, resource: { buffer: this.params } },
        { binding: 1, resource: binding('x', io.x, this.k * 4, `${this.k} f32`) },
        { binding: 2, resource: binding('w', io.w, this.n * this.k * elem, `${this.n} × ${this.k} ${this.dtype}`) },
        { binding: 3, resource: binding('bias', io.bias, this.n * elem, `${this.n} ${this.dtype}`) },
        { binding: 4, resource: binding('out', io.out, this.n * 4, `${this.n} f32`) },
      ],
    });
    recordDispatch(target, 'siluGemv', this.pipeline, bindGroup, this.grid[0], this.grid[1]);
  }

  run(io: SiluGemvIO): Promise<void> {
    return submitAndWait(this.device, 'siluGemv.run', (encoder) => this.encode(encoder, io));
  }
}

function gemvSource(dtype: MatmulDtype): string {
  return /* wgsl */ `
${dtype === 'f16' ? 'enable f16;' : ''}
alias Elem = ${dtype};

struct Params { k: u32, n: u32, gridX: u32, pad: u32 }

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> w: array<Elem>;
@group(0) @binding(3) var<storage, read> bias: array<Elem>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;

const LANES = ${LANES_PER_ROW}u;
const ROWS = ${ROWS_PER_WORKGROUP}u;
var<workgroup> partial: array<f32, ${LANES_PER_ROW * ROWS_PER_WORKGROUP}>;

@compute @workgroup_size(${LANES_PER_ROW * ROWS_PER_WORKGROUP})
fn main(@builtin(workgroup_id) group: vec3u, @builtin(local_invocation_index) lane: u32) {
  let slot = lane / LANES;             // which of the workgroup's rows
  let part = lane % LANES;             // which share of that row's columns
  let row = (group.y * params.gridX + group.x) * ROWS + slot;
  var acc = 0.0;
  if (row < params.n) {
    for (var i = part; i < params.k; i += LANES) {
      let v = x[i];
      acc += f32(w[row * params.k + i]) * (v / (1.0 + exp(-v)));
    }
  }
  partial[lane] = acc;
  workgroupBarrier();
  for (var stride = LANES / 2u; stride > 0u; stride >>= 1u) {
    if (part < stride) { partial[lane] += partial[lane + stride]; }
    workgroupBarrier();
  }
  if (part == 0u && row < params.n) { out[row] = partial[lane] + f32(bias[row]); }
}
`;
}

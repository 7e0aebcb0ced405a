// The transformer blocks' AdaLN parameters, y = W·SiLU(temb) + b: one row through a 4-bit weight in onnxruntime's
// MatMulNBits layout (the same buffers the 4-bit GEMM reads; see q4Matmul.ts's header for the layout). It is pure
// weight streaming — 28 MB per dual block at FramePack's size — which ORT did in 1.1–1.8 ms per block including its
// session overhead; with it every stage of a block runs in our kernels.
// 32 invocations share one output row, each reading whole 16-byte quantization blocks, so a row's bytes are read
// contiguously; 8 rows per workgroup; the row's sum is a workgroup reduction. Accumulation, SiLU and the output are
// f32 whatever the activation dtype (the reference rounds SiLU(temb) to it before its product: a difference of
// rounding only).

import { Q4GemvConfigError, Q4GemvShapeError } from '../errors/kernels.ts';
import { buildComputePipeline, cachedPipeline } from './kernelCache.ts';
import { checkedBinding, recordDispatch, submitAndWait } from './dispatch.ts';

export type Q4GemvDtype = 'f32' | 'f16';

export interface Q4GemvOptions {
  /** Input features, a multiple of 32. */
  k: number;
  /** Output features. */
  n: number;
  /** The scales' and bias's dtype (the activation dtype). */
  dtype: Q4GemvDtype;
}

export interface Q4GemvIO {
  /** [k] f32; SiLU is applied to it. */
  x: GPUBuffer;
  /** MatMulNBits B: uint8 [n, k/32, 16]. */
  blocks: GPUBuffer;
  /** [n·k/32] of dtype. */
  scales: GPUBuffer;
  /** [n] of dtype. */
  bias: GPUBuffer;
  /** [n] f32; written in full. */
  out: GPUBuffer;
}

export interface Q4Gemv {
  readonly k: number;
  readonly n: number;
  readonly dtype: Q4GemvDtype;
  /** Records the product into a command encoder (a pass of its own) or a compute pass the caller has begun. Throws Q4GemvShapeError. */
  encode(target: GPUCommandEncoder | GPUComputePassEncoder, io: Q4GemvIO): void;
  /** Encodes, submits and waits: for tests and one-off use. */
  run(io: Q4GemvIO): Promise<void>;
}

const LANES_PER_ROW = 32;
const ROWS_PER_WORKGROUP = 8;

/** Creates (or takes from the cache) the pipeline. Throws Q4GemvConfigError, KernelCompileError. */
export async function createQ4Gemv(device: GPUDevice, options: Q4GemvOptions): Promise<Q4Gemv> {
  const { k, n, dtype } = options;
  if (!Number.isInteger(k) || k < 32 || k % 32 !== 0) throw new Q4GemvConfigError(`K must be a positive multiple of 32 (whole quantization blocks), got ${k}.`);
  if (!Number.isInteger(n) || n < 1) throw new Q4GemvConfigError(`N must be a positive integer, got ${n}.`);
  if (dtype === 'f16' && !device.features.has('shader-f16')) throw new Q4GemvConfigError('f16 scales need the shader-f16 feature, which this device lacks; run the f32 path.');
  const pipeline = await cachedPipeline(device, `q4Gemv/${dtype}`, () => buildComputePipeline(device, `q4Gemv ${dtype}`, kernelSource(dtype)));
  return new Q4GemvKernel(device, pipeline, options);
}

class Q4GemvKernel implements Q4Gemv {
  readonly k: number;
  readonly n: number;
  readonly dtype: Q4GemvDtype;
  private readonly params: GPUBuffer;
  private readonly grid: [number, number];

  constructor(private readonly device: GPUDevice, private readonly pipeline: GPUComputePipeline, options: Q4GemvOptions) {
    ({ k: this.k, n: this.n, dtype: this.dtype } = options);
    const groups = Math.ceil(this.n / ROWS_PER_WORKGROUP);
    const gridX = Math.min(groups, device.limits.maxComputeWorkgroupsPerDimension);
    this.grid = [gridX, Math.ceil(groups / gridX)];
    // struct Params { k, n, kBlocks, gridX: u32 }
    this.params = device.createBuffer({ label: `q4Gemv params ${this.k}→${this.n}`, size: 16, usage: GPUBufferUsage.UNIFORM, mappedAtCreation: true });
    new Uint32Array(this.params.getMappedRange()).set([this.k, this.n, this.k / 32, gridX]);
    this.params.unmap();
  }

  encode(target: GPUCommandEncoder | GPUComputePassEncoder, io: Q4GemvIO): void {
    const elem = this.dtype === 'f16' ? 2 : 4;
    const kBlocks = this.k / 32;
    const binding = (name: string, buffer: GPUBuffer, bytes: number, what: string) =>
      checkedBinding(this.device, buffer, bytes, { kernel: 'q4Gemv', name, what }, Q4GemvShapeError);
    const bindGroup = this.device.createBindGroup({
      label: `q4Gemv ${this.k}→${this.n}`,
      layout: this.pipeline.getBindGroupLayout(0),
      entries: [
        { binding: 0, resource: { buffer: this.params } },
        { binding: 1, resource: binding('x', io.x, this.k * 4, `${this.k} f32`) },
        { binding: 2, resource: binding('blocks', io.blocks, this.n * kBlocks * 16, `${this.n} rows × ${kBlocks} blocks × 16 bytes`) },
        { binding: 3, resource: binding('scales', io.scales, this.n * kBlocks * elem, `${this.n} × ${kBlocks} ${this.dtype} scales`) },
        { binding: 4, resource: binding('bias', io.bias, this.n * elem, `${this.n} ${this.dtype}`) },
        { binding: 5, resource: binding('out', io.out, this.n * 4, `${this.n} f32`) },
      ],
    });
    recordDispatch(target, 'q4Gemv', this.pipeline, bindGroup, this.grid[0], this.grid[1]);
  }

  run(io: Q4GemvIO): Promise<void> {
    return submitAndWait(this.device, 'q4Gemv.run', (encoder) => this.encode(encoder, io));
  }
}

function kernelSource(dtype: Q4GemvDtype): string {
  return /* wgsl */ `
${dtype === 'f16' ? 'enable f16;' : ''}
alias T = ${dtype};

struct Params {
  k: u32,
  n: u32,
  kBlocks: u32,
  gridX: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> blocks: array<vec4<u32>>;
@group(0) @binding(3) var<storage, read> scales: array<T>;
@group(0) @binding(4) var<storage, read> bias: array<T>;
@group(0) @binding(5) var<storage, read_write> out: array<f32>;

const LANES = ${LANES_PER_ROW}u;
const ROWS = ${ROWS_PER_WORKGROUP}u;
var<workgroup> partial: array<f32, ${LANES_PER_ROW * ROWS_PER_WORKGROUP}>;

fn silu(v: f32) -> f32 {
  return v / (1.0 + exp(-v));
}

/** Σ (q − 8)·SiLU(x) over the 8 elements packed in one u32 word (element 2i in the low nibble of byte i). */
fn wordDot(word: u32, at: u32) -> f32 {
  var sum = 0.0;
  for (var j = 0u; j < 8u; j++) {
    let q = f32((word >> (4u * j)) & 15u) - 8.0;
    sum += q * silu(x[at + j]);
  }
  return sum;
}

@compute @workgroup_size(${LANES_PER_ROW * ROWS_PER_WORKGROUP})
fn main(@builtin(workgroup_id) group: vec3u, @builtin(local_invocation_index) lane: u32) {
  let slot = lane / LANES;             // which of the workgroup's rows
  let part = lane % LANES;             // which share of that row's blocks
  let row = (group.y * params.gridX + group.x) * ROWS + slot;
  var acc = 0.0;
  if (row < params.n) {
    for (var b = part; b < params.kBlocks; b += LANES) {
      let words = blocks[row * params.kBlocks + b];
      let at = b * 32u;
      let dot = wordDot(words.x, at) + wordDot(words.y, at + 8u) + wordDot(words.z, at + 16u) + wordDot(words.w, at + 24u);
      acc += f32(scales[row * params.kBlocks + b]) * dot;
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

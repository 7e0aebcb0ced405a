// The transformer blocks' element-wise work around their linears, one token row per workgroup, in one pass over
// the stream (framepack-reference.md §5.7–5.8):
//   x' = x + gate ⊙ (y₁ + y₂)                       the gated residual (y₂ optional: proj_out's second half)
//   n  = LayerNorm(x') ⊙ (1 + scale) + shift        AdaLN modulation, the next linear's input
// with x, x' in f32 (the residual stream), y and n in the activation dtype, and gate/shift/scale chunks of a block's
// modulation parameters [chunks, D] (f32). Either half can be off: modulation alone (the block's first norm),
// residual alone (its last). In ONNX these were graphs of LayerNormalization, Mul, Add, Split, Concat and Cast that
// cost 15–33 ms each at FramePack's 640 bucket on an H200; here each is one read of the inputs and one write.
// Numerics: all f32, LayerNorm's variance from centred values (two passes), eps as given, one rounding on write.

import { AdaNormConfigError, AdaNormShapeError } from '../errors/kernels.ts';
import { buildComputePipeline, cachedPipeline } from './kernelCache.ts';
import { checkedBinding, recordDispatch, submitAndWait, workgroupSumWgsl } from './dispatch.ts';

export type AdaNormDtype = 'f32' | 'f16';

export interface AdaNormOptions {
  /** The stream width D. */
  dim: number;
  dtype: AdaNormDtype;
  /** LayerNorm's epsilon. */
  eps: number;
}

export interface AdaNormResidual {
  /** [yRow0 + rows, D] of dtype. */
  y: GPUBuffer;
  /** Added to y before the gate: proj_out's other half, same rows. */
  y2?: GPUBuffer;
  yRow0?: number;
  /** Which chunk of `mod` gates y. */
  gate: number;
  /** Receives x' [rows, D] f32. */
  out: GPUBuffer;
}

export interface AdaNormModulation {
  shift: number;
  scale: number;
  /** Receives n in rows outRow0… of [outRow0 + rows, D] of dtype. */
  out: GPUBuffer;
  outRow0?: number;
}

export interface AdaNormIO {
  /** The stream [rows, D] f32. */
  x: GPUBuffer;
  /** Modulation parameters [chunks, D] f32. */
  mod: GPUBuffer;
  rows: number;
  residual?: AdaNormResidual;
  modulation?: AdaNormModulation;
}

export interface AdaNorm {
  readonly dim: number;
  readonly dtype: AdaNormDtype;
  /** Records the pass into a command encoder (a pass of its own) or a compute pass the caller has begun. Throws AdaNormShapeError. */
  encode(target: GPUCommandEncoder | GPUComputePassEncoder, io: AdaNormIO): void;
  /** Encodes, submits and waits: for tests and one-off use. */
  run(io: AdaNormIO): Promise<void>;
}

/**
 * Invocations per row: up to 256 (FramePack's 3072-wide rows take 12 values each), and no more than the row has
 * values, so a narrow row (the tiny model's 64) does not pay for idle invocations at every barrier: software
 * rasterisers such as SwiftShader run each invocation.
 */
export function adaNormWorkgroup(dim: number): number {
  return Math.min(256, Math.max(32, 2 ** Math.ceil(Math.log2(dim))));
}
const FLAG_RESIDUAL = 1;
const FLAG_SECOND_Y = 2;
const FLAG_MODULATE = 4;

/** Creates (or takes from the cache) the pipeline. Throws AdaNormConfigError, KernelCompileError. */
export async function createAdaNorm(device: GPUDevice, options: AdaNormOptions): Promise<AdaNorm> {
  const { dim, dtype } = options;
  if (!Number.isInteger(dim) || dim < 1) throw new AdaNormConfigError(`The stream width must be a positive integer, got ${dim}.`);
  if (dtype === 'f16' && !device.features.has('shader-f16')) {
    throw new AdaNormConfigError('f16 activations need the shader-f16 feature, which this device lacks; run the f32 path.');
  }
  const workgroup = adaNormWorkgroup(dim);
  const pipeline = await cachedPipeline(device, `adaNorm/${dtype}/${workgroup}`, () => buildComputePipeline(device, `adaNorm ${dtype}`, kernelSource(dtype, workgroup)));
  return new AdaNormKernel(device, pipeline, options);
}

class AdaNormKernel implements AdaNorm {
  readonly dim: number;
  readonly dtype: AdaNormDtype;
  private readonly eps: number;
  private readonly params = new Map<string, GPUBuffer>();

  constructor(private readonly device: GPUDevice, private readonly pipeline: GPUComputePipeline, options: AdaNormOptions) {
    ({ dim: this.dim, dtype: this.dtype, eps: this.eps } = options);
  }

  encode(target: GPUCommandEncoder | GPUComputePassEncoder, io: AdaNormIO): void {
    const { rows, residual, modulation } = io;
    if (!Number.isInteger(rows) || rows < 1) throw new AdaNormShapeError(`rows must be a positive integer, got ${rows}.`);
    if (!residual && !modulation) throw new AdaNormShapeError('Nothing to do: give a residual, a modulation or both.');
    const [yRow0, outRow0] = [residual?.yRow0 ?? 0, modulation?.outRow0 ?? 0];
    const chunks = [residual?.gate, modulation?.shift, modulation?.scale].filter((c): c is number => c !== undefined);
    if (chunks.some((c) => !Number.isInteger(c) || c < 0)) throw new AdaNormShapeError(`Modulation chunks must be non-negative integers, got ${chunks.join(', ')}.`);
    const d = this.dim;
    const elem = this.dtype === 'f16' ? 2 : 4;
    const binding = (name: string, buffer: GPUBuffer, bytes: number, what: string) =>
      checkedBinding(this.device, buffer, bytes, { kernel: 'adaNorm', name, what }, AdaNormShapeError);
    const yBytes = (yRow0 + rows) * d * elem;
    const yWhat = `${yRow0 + rows} rows of ${d} ${this.dtype}`;
    const flags = (residual ? FLAG_RESIDUAL : 0) | (residual?.y2 ? FLAG_SECOND_Y : 0) | (modulation ? FLAG_MODULATE : 0);
    const unused = this.unusedBuffer();
    const maxGroups = this.device.limits.maxComputeWorkgroupsPerDimension;
    const gridX = Math.min(rows, maxGroups);
    const gridY = Math.ceil(rows / gridX);
    if (gridY > maxGroups) throw new AdaNormShapeError(`${rows} rows exceed this device's ${maxGroups}² workgroups per dispatch. Split the rows over several calls.`);
    const params = [rows, d, yRow0, outRow0, residual?.gate ?? 0, modulation?.shift ?? 0, modulation?.scale ?? 0, flags, gridX];
    const bindGroup = this.device.createBindGroup({
      label: `adaNorm ${rows} rows`,
      layout: this.pipeline.getBindGroupLayout(0),
      entries: [
        { binding: 0, resource: { buffer: this.paramsBuffer(params) } },
        { binding: 1, resource: binding('x', io.x, rows * d * 4, `${rows} rows of ${d} f32`) },
        { binding: 2, resource: binding('mod', io.mod, (Math.max(...chunks) + 1) * d * 4, `chunks up to ${Math.max(...chunks)} of ${d} f32`) },
        { binding: 3, resource: residual ? binding('y', residual.y, yBytes, yWhat) : { buffer: unused } },
        { binding: 4, resource: residual?.y2 ? binding('y2', residual.y2, yBytes, yWhat) : { buffer: unused } },
        { binding: 5, resource: residual ? binding('residual out', residual.out, rows * d * 4, `${rows} rows of ${d} f32`) : { buffer: this.unusedBuffer(1) } },
        { binding: 6, resource: modulation ? binding('modulation out', modulation.out, (outRow0 + rows) * d * elem, `${outRow0 + rows} rows of ${d} ${this.dtype}`) : { buffer: this.unusedBuffer(2) } },
      ],
    });
    recordDispatch(target, 'adaNorm', this.pipeline, bindGroup, gridX, gridY);
  }

  run(io: AdaNormIO): Promise<void> {
    return submitAndWait(this.device, 'adaNorm.run', (encoder) => this.encode(encoder, io));
  }

  private paramsBuffer(values: number[]): GPUBuffer {
    const key = values.join('/');
    let buffer = this.params.get(key);
    if (!buffer) {
      // struct Params { rows, dim, yRow0, outRow0, gate, shift, scale, flags, gridX: u32; eps: f32 }
      buffer = this.device.createBuffer({ label: `adaNorm params ${key}`, size: 48, usage: GPUBufferUsage.UNIFORM, mappedAtCreation: true });
      const range = buffer.getMappedRange();
      new Uint32Array(range).set(values);
      new Float32Array(range)[9] = this.eps;
      buffer.unmap();
      this.params.set(key, buffer);
    }
    return buffer;
  }

  /** Placeholders for unused bindings; read-write ones must not alias each other in one dispatch, hence one per slot. */
  private readonly unusedBuffers: GPUBuffer[] = [];
  private unusedBuffer(slot = 0): GPUBuffer {
    this.unusedBuffers[slot] ??= this.device.createBuffer({ label: `adaNorm unused ${slot}`, size: 16, usage: GPUBufferUsage.STORAGE });
    return this.unusedBuffers[slot];
  }
}

function kernelSource(dtype: AdaNormDtype, workgroup: number): string {
  return /* wgsl */ `
${dtype === 'f16' ? 'enable f16;' : ''}
alias T = ${dtype};

struct Params {
  rows: u32,
  dim: u32,
  yRow0: u32,
  outRow0: u32,
  gate: u32,
  shift: u32,
  scale: u32,
  flags: u32,
  gridX: u32,
  eps: f32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> modulation: array<f32>;
@group(0) @binding(3) var<storage, read> y: array<T>;
@group(0) @binding(4) var<storage, read> y2: array<T>;
@group(0) @binding(5) var<storage, read_write> residualOut: array<f32>;
@group(0) @binding(6) var<storage, read_write> normedOut: array<T>;

const WORKGROUP = ${workgroup}u;
${workgroupSumWgsl(workgroup)}
/** x' = x + gate·(y + y2) for column c of this row (x itself without a residual). */
fn streamValue(row: u32, c: u32) -> f32 {
  let d = params.dim;
  var value = x[row * d + c];
  if ((params.flags & ${FLAG_RESIDUAL}u) != 0u) {
    let yAt = (params.yRow0 + row) * d + c;
    var update = f32(y[yAt]);
    if ((params.flags & ${FLAG_SECOND_Y}u) != 0u) { update += f32(y2[yAt]); }
    value += modulation[params.gate * d + c] * update;
  }
  return value;
}

@compute @workgroup_size(${workgroup})
fn main(@builtin(workgroup_id) group: vec3u, @builtin(local_invocation_index) lane: u32) {
  let row = group.y * params.gridX + group.x;
  if (row >= params.rows) { return; }
  let d = params.dim;
  let residual = (params.flags & ${FLAG_RESIDUAL}u) != 0u;
  var sum = 0.0;
  for (var c = lane; c < d; c += WORKGROUP) {
    let value = streamValue(row, c);
    if (residual) { residualOut[row * d + c] = value; }
    sum += value;
  }
  if ((params.flags & ${FLAG_MODULATE}u) == 0u) { return; }
  let mean = workgroupSum(sum, lane) / f32(d);
  var squares = 0.0;
  for (var c = lane; c < d; c += WORKGROUP) {
    let centred = streamValue(row, c) - mean;
    squares += centred * centred;
  }
  let inv = 1.0 / sqrt(workgroupSum(squares, lane) / f32(d) + params.eps);
  let out = (params.outRow0 + row) * d;
  for (var c = lane; c < d; c += WORKGROUP) {
    let normed = (streamValue(row, c) - mean) * inv;
    normedOut[out + c] = T(normed * (1.0 + modulation[params.scale * d + c]) + modulation[params.shift * d + c]);
  }
}
`;
}

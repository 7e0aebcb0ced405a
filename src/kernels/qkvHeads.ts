// The attention's inputs from a stacked q/k/v projection, in one pass: per head, q and k are RMS-normed with their
// learned weights (the transformer's qk_norm) and, for image tokens, rotated by RoPE; v is copied. Rows of
// qkv [rows, 3·H·d] ([q heads | k heads | v heads], what the 4-bit kernel writes for the stacked to_q/to_k/to_v)
// land in rows outRow0… of the joint q, k, v [N_tot, H·d] that the attention kernel reads. In ONNX this was a graph
// of reshapes, reductions, splits, concats and casts that cost ~115 ms per dual block at FramePack's 640 bucket on an
// H200; here it is one read and one write of each value.
//
// Numerics: everything in f32 (the mean square, the norm weight, the rotation), rounded to the activation dtype once
// on write. RoPE pairs (2i, 2i+1): out = x·cos + rotated·sin with rotated = (−x_{2i+1}, x_{2i}), tables [N_img, d]
// (pipeline/ropeTables.ts, split into cos and sin by the embedders' graph).
// One workgroup of 64 invocations owns one (row, q|k|v, head), each invocation a pair of values (neighbours read
// neighbouring pairs, so loads and stores coalesce); the head's sum of squares is a workgroup reduction.

import { QkvHeadsConfigError, QkvHeadsShapeError } from '../errors/kernels.ts';
import { buildComputePipeline, cachedPipeline } from './kernelCache.ts';
import { checkedBinding, recordDispatch, submitAndWait, workgroupSumWgsl } from './dispatch.ts';

export type QkvHeadsDtype = 'f32' | 'f16';

export interface QkvHeadsOptions {
  heads: number;
  /** Even (RoPE rotates pairs). */
  headDim: number;
  dtype: QkvHeadsDtype;
  /** The RMSNorm's epsilon. */
  eps: number;
}

export interface QkvHeadsIO {
  /** [inRow0 + rows, 3·H·d] of dtype. */
  qkv: GPUBuffer;
  /** Learned RMSNorm weights [d] of dtype for q and k. */
  normQ: GPUBuffer;
  normK: GPUBuffer;
  /** With `rope`: f32 tables [ropeRow0 + rows, d]; otherwise not read (any buffer). */
  cos: GPUBuffer;
  sin: GPUBuffer;
  /** [outRow0 + rows, H·d] of dtype each; rows outside [outRow0, outRow0 + rows) are left as they are. */
  q: GPUBuffer;
  k: GPUBuffer;
  v: GPUBuffer;
  rows: number;
  /** First row of qkv read. Default 0. */
  inRow0?: number;
  /** First row of q, k, v written. Default 0. */
  outRow0?: number;
  /** Whether q and k are rotated (image tokens), with table rows ropeRow0…; default row 0. */
  rope: boolean;
  ropeRow0?: number;
}

export interface QkvHeads {
  readonly heads: number;
  readonly headDim: number;
  readonly dtype: QkvHeadsDtype;
  /** Records the pass into a command encoder (a pass of its own) or a compute pass the caller has begun. Throws QkvHeadsShapeError. */
  encode(target: GPUCommandEncoder | GPUComputePassEncoder, io: QkvHeadsIO): void;
  /** Encodes, submits and waits: for tests and one-off use. */
  run(io: QkvHeadsIO): Promise<void>;
}

/** Invocations per head: one per pair of values, up to 64 (FramePack's 128-wide heads), at least 16. */
export function qkvHeadsWorkgroup(headDim: number): number {
  return Math.min(64, Math.max(16, 2 ** Math.ceil(Math.log2(headDim / 2))));
}

/** Creates (or takes from the cache) the pipeline. Throws QkvHeadsConfigError, KernelCompileError. */
export async function createQkvHeads(device: GPUDevice, options: QkvHeadsOptions): Promise<QkvHeads> {
  const { heads, headDim, dtype } = options;
  if (!Number.isInteger(heads) || heads < 1) throw new QkvHeadsConfigError(`heads must be a positive integer, got ${heads}.`);
  if (!Number.isInteger(headDim) || headDim < 2 || headDim % 2 !== 0) throw new QkvHeadsConfigError(`RoPE rotates pairs: the head size must be even, got ${headDim}.`);
  if (dtype === 'f16' && !device.features.has('shader-f16')) {
    throw new QkvHeadsConfigError('f16 heads need the shader-f16 feature, which this device lacks; run the f32 path.');
  }
  const workgroup = qkvHeadsWorkgroup(headDim);
  const key = `qkvHeads/${dtype}/${workgroup}`;
  const pipeline = await cachedPipeline(device, key, () => buildComputePipeline(device, `qkvHeads ${dtype}`, kernelSource(dtype, workgroup)));
  return new QkvHeadsKernel(device, pipeline, options);
}

class QkvHeadsKernel implements QkvHeads {
  readonly heads: number;
  readonly headDim: number;
  readonly dtype: QkvHeadsDtype;
  private readonly eps: number;
  /** One uniform buffer per distinct call shape; the shapes of a run repeat every step. */
  private readonly params = new Map<string, GPUBuffer>();

  constructor(private readonly device: GPUDevice, private readonly pipeline: GPUComputePipeline, options: QkvHeadsOptions) {
    ({ heads: this.heads, headDim: this.headDim, dtype: this.dtype, eps: this.eps } = options);
  }

  encode(target: GPUCommandEncoder | GPUComputePassEncoder, io: QkvHeadsIO): void {
    const { rows, rope } = io;
    const [inRow0, outRow0, ropeRow0] = [io.inRow0 ?? 0, io.outRow0 ?? 0, io.ropeRow0 ?? 0];
    for (const [name, v] of Object.entries({ rows, inRow0, outRow0, ropeRow0 })) {
      if (!Number.isInteger(v) || v < (name === 'rows' ? 1 : 0)) throw new QkvHeadsShapeError(`${name} must be a ${name === 'rows' ? 'positive' : 'non-negative'} integer, got ${v}.`);
    }
    const width = this.heads * this.headDim;
    const elem = this.dtype === 'f16' ? 2 : 4;
    const whole = (name: string, buffer: GPUBuffer, bytes: number, what: string) =>
      checkedBinding(this.device, buffer, bytes, { kernel: 'qkvHeads', name, what }, QkvHeadsShapeError);
    const tableBytes = rope ? (ropeRow0 + rows) * this.headDim * 4 : 4;
    const outBytes = (outRow0 + rows) * width * elem;
    const groups = rows * 3 * this.heads; // one workgroup per (row, part, head)
    const maxGroups = this.device.limits.maxComputeWorkgroupsPerDimension;
    const gridX = Math.min(groups, maxGroups);
    const gridY = Math.ceil(groups / gridX);
    if (gridY > maxGroups) throw new QkvHeadsShapeError(`${rows} rows need ${groups} workgroups; this device allows ${maxGroups}² per dispatch. Split the rows over several calls.`);
    const bindGroup = this.device.createBindGroup({
      label: `qkvHeads ${rows} rows`,
      layout: this.pipeline.getBindGroupLayout(0),
      entries: [
        { binding: 0, resource: { buffer: this.paramsBuffer(rows, inRow0, outRow0, ropeRow0, rope, gridX) } },
        { binding: 1, resource: whole('qkv', io.qkv, (inRow0 + rows) * 3 * width * elem, `${inRow0 + rows} rows of 3 × ${width} ${this.dtype}`) },
        { binding: 2, resource: whole('normQ', io.normQ, this.headDim * elem, `${this.headDim} ${this.dtype}`) },
        { binding: 3, resource: whole('normK', io.normK, this.headDim * elem, `${this.headDim} ${this.dtype}`) },
        { binding: 4, resource: whole('cos', io.cos, tableBytes, `${ropeRow0 + rows} table rows of ${this.headDim} f32`) },
        { binding: 5, resource: whole('sin', io.sin, tableBytes, `${ropeRow0 + rows} table rows of ${this.headDim} f32`) },
        { binding: 6, resource: whole('q', io.q, outBytes, `${outRow0 + rows} rows of ${width} ${this.dtype}`) },
        { binding: 7, resource: whole('k', io.k, outBytes, `${outRow0 + rows} rows of ${width} ${this.dtype}`) },
        { binding: 8, resource: whole('v', io.v, outBytes, `${outRow0 + rows} rows of ${width} ${this.dtype}`) },
      ],
    });
    recordDispatch(target, 'qkvHeads', this.pipeline, bindGroup, gridX, gridY);
  }

  run(io: QkvHeadsIO): Promise<void> {
    return submitAndWait(this.device, 'qkvHeads.run', (encoder) => this.encode(encoder, io));
  }

  private paramsBuffer(rows: number, inRow0: number, outRow0: number, ropeRow0: number, rope: boolean, gridX: number): GPUBuffer {
    const key = [rows, inRow0, outRow0, ropeRow0, rope ? 1 : 0, gridX].join('/');
    let buffer = this.params.get(key);
    if (!buffer) {
      // struct Params { rows, heads, headDim, inRow0, outRow0, ropeRow0, rope, gridX (workgroups per grid row): u32; eps: f32 }
      buffer = this.device.createBuffer({ label: `qkvHeads params ${key}`, size: 48, usage: GPUBufferUsage.UNIFORM, mappedAtCreation: true });
      const range = buffer.getMappedRange();
      new Uint32Array(range).set([rows, this.heads, this.headDim, inRow0, outRow0, ropeRow0, rope ? 1 : 0, gridX]);
      new Float32Array(range)[8] = this.eps;
      buffer.unmap();
      this.params.set(key, buffer);
    }
    return buffer;
  }
}

function kernelSource(dtype: QkvHeadsDtype, workgroup: number): string {
  return /* wgsl */ `
${dtype === 'f16' ? 'enable f16;' : ''}
alias T = ${dtype};

struct Params {
  rows: u32,
  heads: u32,
  headDim: u32,
  inRow0: u32,
  outRow0: u32,
  ropeRow0: u32,
  rope: u32,
  gridX: u32,
  eps: f32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> qkv: array<T>;
@group(0) @binding(2) var<storage, read> normQ: array<T>;
@group(0) @binding(3) var<storage, read> normK: array<T>;
@group(0) @binding(4) var<storage, read> cosTable: array<f32>;
@group(0) @binding(5) var<storage, read> sinTable: array<f32>;
@group(0) @binding(6) var<storage, read_write> q: array<T>;
@group(0) @binding(7) var<storage, read_write> k: array<T>;
@group(0) @binding(8) var<storage, read_write> v: array<T>;

const WORKGROUP = ${workgroup}u;
${workgroupSumWgsl(workgroup)}
/** The RMS-normed value at i of this head (q: part 0, k: part 1), in f32. */
fn normed(part: u32, src: u32, i: u32, inv: f32) -> f32 {
  let w = select(f32(normK[i]), f32(normQ[i]), part == 0u);
  return f32(qkv[src + i]) * inv * w;
}

@compute @workgroup_size(${workgroup})
fn main(@builtin(workgroup_id) group: vec3u, @builtin(local_invocation_index) lane: u32) {
  let unit = group.y * params.gridX + group.x;   // (row, part, head), head fastest
  let heads = params.heads;
  let d = params.headDim;
  if (unit >= params.rows * 3u * heads) { return; }
  let row = unit / (3u * heads);
  let part = (unit / heads) % 3u;                // 0: q, 1: k, 2: v
  let head = unit % heads;
  let width = heads * d;
  let src = (params.inRow0 + row) * 3u * width + part * width + head * d;
  let dst = (params.outRow0 + row) * width + head * d;
  if (part == 2u) {
    for (var i = lane; i < d; i += WORKGROUP) { v[dst + i] = qkv[src + i]; }
    return;
  }
  var squares = 0.0;
  for (var i = lane; i < d; i += WORKGROUP) {
    let x = f32(qkv[src + i]);
    squares += x * x;
  }
  let inv = 1.0 / sqrt(workgroupSum(squares, lane) / f32(d) + params.eps);
  let table = (params.ropeRow0 + row) * d;
  for (var i = 2u * lane; i < d; i += 2u * WORKGROUP) {
    let a = normed(part, src, i, inv);
    let b = normed(part, src, i + 1u, inv);
    var outA = a;
    var outB = b;
    if (params.rope != 0u) {
      outA = a * cosTable[table + i] - b * sinTable[table + i];
      outB = b * cosTable[table + i + 1u] + a * sinTable[table + i + 1u];
    }
    if (part == 0u) {
      q[dst + i] = T(outA);
      q[dst + i + 1u] = T(outB);
    } else {
      k[dst + i] = T(outA);
      k[dst + i + 1u] = T(outB);
    }
  }
}
`;
}

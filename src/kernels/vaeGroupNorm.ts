// GroupNorm statistics of a channels-last activation [P positions, C] (framepack-reference.md §4: 32 groups, eps
// 1e-6, statistics over the group's channels × every frame and pixel of the tile), turned into the per-channel affine
// that the next conv applies on load (vaeConv.ts): scale[c] = γ[c]/√(var_g + eps), shift[c] = β[c] − mean_g·scale[c].
// Two passes over the data, as the reference's own fp32 arithmetic: the mean, then the mean of centred squares, so
// a large common offset does not cancel the variance. Each pass is a partial kernel (one f32 per workgroup and
// group: CT channels × 256/CT positions per step, reduced in workgroup memory) and a finalize kernel (one
// workgroup per group sums the partials). All arithmetic f32; the input f32 or f16.

import { VaeKernelConfigError, VaeKernelShapeError } from '../errors/kernels.ts';
import { buildComputePipeline, cachedPipeline } from './kernelCache.ts';
import { submitAndWait, workgroupSumWgsl } from './dispatch.ts';
import { DEFAULT_DISPATCH_BYTES, dtypeBytes, rangeBinding, recordVaeDispatches, vaeUniforms, wholeBinding, type VaeDispatch, type VaeDtype } from './vaeCommon.ts';

export interface GroupNormShape {
  positions: number;
  channels: number;
  groups: number;
  eps: number;
}

export interface GroupNormIO {
  /** [positions, channels] channels-last in the kernel's dtype. */
  x: GPUBuffer;
  /** γ and β [channels] f32. */
  gamma: GPUBuffer;
  beta: GPUBuffer;
  /** Receives (scale, shift) per channel: [channels] vec2<f32>. */
  affine: GPUBuffer;
  /** Scratch for the partial sums: groupNormPartialBytes(shape) bytes. */
  partials: GPUBuffer;
  /** Scratch for the per-group mean and 1/std: groups × 8 bytes (a buffer apart from the partials). */
  stats: GPUBuffer;
}

export interface VaeGroupNorm {
  readonly dtype: VaeDtype;
  dispatches(shape: GroupNormShape, io: GroupNormIO, maxDispatchBytes?: number): VaeDispatch[];
  encode(target: GPUCommandEncoder | GPUComputePassEncoder, shape: GroupNormShape, io: GroupNormIO, maxDispatchBytes?: number): void;
  run(shape: GroupNormShape, io: GroupNormIO, maxDispatchBytes?: number): Promise<void>;
}

const THREADS = 256;
/** Positions one partial workgroup reduces. */
const CHUNK = 1024;

/** Channels per workgroup lane set: all of them up to 256, else 256 (C must then be a multiple of 256). */
function channelLanes(channels: number): number {
  return Math.min(channels, THREADS);
}

export function groupNormChunks(shape: GroupNormShape): number {
  return Math.ceil(shape.positions / CHUNK);
}

/** Bytes of the partial sums: [chunks, groups] f32. */
export function groupNormPartialBytes(shape: GroupNormShape): number {
  return Math.ceil((groupNormChunks(shape) * shape.groups * 4) / 16) * 16;
}

/** Position ranges of the partial dispatches (whole chunks, ≤ maxDispatchBytes and the binding limit each). */
export function groupNormDispatchRanges(shape: GroupNormShape, dtype: VaeDtype, maxBindingBytes: number, maxDispatchBytes = DEFAULT_DISPATCH_BYTES): [number, number][] {
  const rowBytes = shape.channels * dtypeBytes(dtype);
  const limit = Math.min(maxDispatchBytes, maxBindingBytes - 256);
  const chunks = Math.max(1, Math.floor(limit / (rowBytes * CHUNK)));
  const ranges: [number, number][] = [];
  for (let s = 0; s < shape.positions; s += chunks * CHUNK) ranges.push([s, Math.min(shape.positions, s + chunks * CHUNK)]);
  return ranges;
}

/** Creates (or takes from the cache) the pipelines. Throws VaeKernelConfigError, KernelCompileError. */
export async function createVaeGroupNorm(device: GPUDevice, dtype: VaeDtype): Promise<VaeGroupNorm> {
  if (dtype === 'f16' && !device.features.has('shader-f16')) throw new VaeKernelConfigError('f16 storage needs the shader-f16 feature, which this device lacks; run the f32 path.');
  const [partial, finalize] = await Promise.all([
    cachedPipeline(device, `vaeGroupNorm/partial/${dtype}`, () => buildComputePipeline(device, `vaeGroupNorm partial ${dtype}`, partialSource(dtype))),
    cachedPipeline(device, 'vaeGroupNorm/finalize', () => buildComputePipeline(device, 'vaeGroupNorm finalize', finalizeSource())),
  ]);
  return new GroupNormKernel(device, dtype, partial, finalize);
}

function validate(shape: GroupNormShape): void {
  const { positions, channels, groups } = shape;
  if (![positions, channels, groups].every((v) => Number.isInteger(v) && v >= 1)) throw new VaeKernelShapeError(`GroupNorm sizes must be positive integers, got ${positions} × ${channels} in ${groups} groups.`);
  if (channels % groups) throw new VaeKernelShapeError(`${channels} channels do not split into ${groups} groups.`);
  const lanes = channelLanes(channels);
  if (channels % lanes || lanes % (channels / groups)) {
    throw new VaeKernelShapeError(`GroupNorm over ${channels} channels in ${groups} groups: the kernel needs channels ≤ 256 or a multiple of 256, and groups of channels that divide ${lanes}.`);
  }
}

class GroupNormKernel implements VaeGroupNorm {
  constructor(private readonly device: GPUDevice, readonly dtype: VaeDtype, private readonly partial: GPUComputePipeline, private readonly finalize: GPUComputePipeline) {}

  dispatches(shape: GroupNormShape, io: GroupNormIO, maxDispatchBytes = DEFAULT_DISPATCH_BYTES): VaeDispatch[] {
    validate(shape);
    const d = this.device;
    const { positions, channels: C, groups: G } = shape;
    const eb = dtypeBytes(this.dtype);
    if (io.x.size < positions * C * eb) throw new VaeKernelShapeError(`GroupNorm input holds ${io.x.size} bytes; ${positions} × ${C} ${this.dtype} need ${positions * C * eb}.`);
    const chunks = groupNormChunks(shape);
    const partials = wholeBinding(d, io.partials, groupNormPartialBytes(shape), `GroupNorm partials [${chunks}, ${G}] f32`);
    const stats = wholeBinding(d, io.stats, G * 8, `GroupNorm statistics [${G}] vec2<f32>`);
    const gamma = wholeBinding(d, io.gamma, C * 4, `GroupNorm γ [${C}] f32`);
    const beta = wholeBinding(d, io.beta, C * 4, `GroupNorm β [${C}] f32`);
    const affine = wholeBinding(d, io.affine, C * 8, `GroupNorm affine [${C}] vec2<f32>`);
    const lanes = channelLanes(C);
    const u = vaeUniforms(d);
    const out: VaeDispatch[] = [];
    const ranges = groupNormDispatchRanges(shape, this.dtype, d.limits.maxStorageBufferBindingSize, maxDispatchBytes);
    for (const mode of [0, 1]) {
      for (const [start, end] of ranges) {
        const x = rangeBinding(d, io.x, start * C, end * C, eb, 'GroupNorm input');
        // Params: positions in this dispatch, C, G, lanes, first chunk, mode, xBase.
        const params = u.get([end - start, C, G, lanes, start / CHUNK, mode, x.base, 0]);
        out.push({
          label: `vaeGroupNorm ${mode ? 'variance' : 'mean'} ${C}`,
          kind: 'groupNorm',
          pipeline: this.partial,
          bindGroup: d.createBindGroup({
            label: 'vaeGroupNorm partial',
            layout: this.partial.getBindGroupLayout(0),
            entries: [
              { binding: 0, resource: { buffer: params } },
              { binding: 1, resource: x.binding },
              { binding: 2, resource: stats },
              { binding: 3, resource: partials },
            ],
          }),
          x: Math.ceil((end - start) / CHUNK),
          y: C / lanes,
          flops: 0,
          bytes: (end - start) * C * eb,
        });
      }
      const params = u.get([chunks, C, G, positions * (C / G), mode, 0, 0, shape.eps], new Set([7]));
      out.push({
        label: `vaeGroupNorm finalize ${mode ? 'variance' : 'mean'}`,
        kind: 'groupNorm',
        pipeline: this.finalize,
        bindGroup: d.createBindGroup({
          label: 'vaeGroupNorm finalize',
          layout: this.finalize.getBindGroupLayout(0),
          entries: [
            { binding: 0, resource: { buffer: params } },
            { binding: 1, resource: partials },
            { binding: 2, resource: stats },
            { binding: 3, resource: gamma },
            { binding: 4, resource: beta },
            { binding: 5, resource: affine },
          ],
        }),
        x: G,
        y: 1,
        flops: 0,
        bytes: chunks * G * 4,
      });
    }
    return out;
  }

  encode(target: GPUCommandEncoder | GPUComputePassEncoder, shape: GroupNormShape, io: GroupNormIO, maxDispatchBytes?: number): void {
    recordVaeDispatches(target, this.dispatches(shape, io, maxDispatchBytes));
  }

  run(shape: GroupNormShape, io: GroupNormIO, maxDispatchBytes?: number): Promise<void> {
    return submitAndWait(this.device, 'vaeGroupNorm.run', (encoder) => this.encode(encoder, shape, io, maxDispatchBytes));
  }
}

function partialSource(dtype: VaeDtype): string {
  return /* wgsl */ `
${dtype === 'f16' ? 'enable f16;' : ''}
struct Params { positions: u32, C: u32, G: u32, lanes: u32, chunk0: u32, mode: u32, xBase: u32, pad: u32 }

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<${dtype}>;
@group(0) @binding(2) var<storage, read> stats: array<vec2<f32>>;
@group(0) @binding(3) var<storage, read_write> partials: array<f32>;

var<workgroup> sums: array<f32, ${THREADS}>;

// Workgroup (chunk, channel block): lane c of the block's channels, lane row of the positions; a thread sums one
// channel over CHUNK / rows positions; then one thread per group adds its channels' lanes.
@compute @workgroup_size(${THREADS})
fn main(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let lanes = p.lanes;
  let rowsPerStep = ${THREADS}u / lanes;
  let cl = lid % lanes;
  let rl = lid / lanes;
  let c = wg.y * lanes + cl;
  let cpg = p.C / p.G;
  let g = c / cpg;
  var mean = 0.0;
  if (p.mode == 1u) { mean = stats[g].x; }
  var acc = 0.0;
  let first = wg.x * ${CHUNK}u;
  let last = min(first + ${CHUNK}u, p.positions);
  if (rl < rowsPerStep) {
    for (var pos = first + rl; pos < last; pos += rowsPerStep) {
      let v = f32(x[p.xBase + pos * p.C + c]);
      if (p.mode == 0u) { acc += v; } else { let d = v - mean; acc += d * d; }
    }
  }
  sums[lid] = select(0.0, acc, rl < rowsPerStep);
  workgroupBarrier();
  let groupsHere = lanes / cpg;
  if (lid < groupsHere) {
    var total = 0.0;
    for (var r = 0u; r < rowsPerStep; r++) {
      for (var j = 0u; j < cpg; j++) { total += sums[r * lanes + lid * cpg + j]; }
    }
    let gg = wg.y * groupsHere + lid;
    partials[(p.chunk0 + wg.x) * p.G + gg] = total;
  }
}
`;
}

function finalizeSource(): string {
  return /* wgsl */ `
struct Params { chunks: u32, C: u32, G: u32, count: u32, mode: u32, pad0: u32, pad1: u32, eps: f32 }

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> partials: array<f32>;
@group(0) @binding(2) var<storage, read_write> stats: array<vec2<f32>>;
@group(0) @binding(3) var<storage, read> gamma: array<f32>;
@group(0) @binding(4) var<storage, read> beta: array<f32>;
@group(0) @binding(5) var<storage, read_write> affine: array<vec2<f32>>;

${workgroupSumWgsl(THREADS)}

@compute @workgroup_size(${THREADS})
fn main(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let g = wg.x;
  var acc = 0.0;
  for (var i = lid; i < p.chunks; i += ${THREADS}u) { acc += partials[i * p.G + g]; }
  let total = workgroupSum(acc, lid);
  let n = f32(p.count);
  if (p.mode == 0u) {
    if (lid == 0u) { stats[g] = vec2<f32>(total / n, 0.0); }
    return;
  }
  let mean = stats[g].x;
  let rstd = 1.0 / sqrt(total / n + p.eps);
  let cpg = p.C / p.G;
  for (var j = lid; j < cpg; j += ${THREADS}u) {
    let c = g * cpg + j;
    let scale = gamma[c] * rstd;
    affine[c] = vec2<f32>(scale, beta[c] - mean * scale);
  }
  if (lid == 0u) { stats[g] = vec2<f32>(mean, rstd); }
}
`;
}

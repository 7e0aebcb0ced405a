// TeaCache's GPU side (framepack-reference.md §8), so a step reads back only two numbers: the L1 sums that give the
// relative change of block 0's modulated input between calls, and the residual arithmetic of the image tokens —
// residual = x_out − x_in after a computed call, x = x_in + residual on a skipped one. The skip rule itself
// (pipeline/teacache.ts) stays on the CPU: it is a few scalar operations.
// - `l1Sums`: Σ|a − b| and Σ|b| over n values of the activation dtype, in two passes (workgroup partial sums, then
//   one workgroup over the partials), accumulated in f32.
// - `combine`: out = a + sign·b over n f32 values.

import { TeaCacheKernelError } from '../errors/kernels.ts';
import { buildComputePipeline, cachedPipeline } from './kernelCache.ts';
import { checkedBinding, recordDispatch, workgroupSumWgsl } from './dispatch.ts';

export type TeaCacheDtype = 'f32' | 'f16';

const WORKGROUP = 256;
/** Workgroups of the first pass (each sums a strided share of the values). */
const PARTIALS = 1024;

export interface TeaCacheKernels {
  /**
   * Records Σ|a − b| and Σ|b| (a, b of the dtype, n values) into sums [2] f32; `scratch` holds 2·1024 f32 partials.
   * Throws TeaCacheKernelError when a buffer is too small.
   */
  encodeL1Sums(encoder: GPUCommandEncoder, a: GPUBuffer, b: GPUBuffer, n: number, scratch: GPUBuffer, sums: GPUBuffer): void;
  /** Records out = a + sign·b over n f32 values. */
  encodeCombine(encoder: GPUCommandEncoder, a: GPUBuffer, b: GPUBuffer, sign: 1 | -1, n: number, out: GPUBuffer): void;
  /** Bytes the l1Sums scratch needs. */
  readonly scratchBytes: number;
}

function l1Source(dtype: TeaCacheDtype, final: boolean): string {
  const input = final ? 'f32' : dtype;
  return /* wgsl */ `
${input === 'f16' ? 'enable f16;' : ''}
struct Params { n: u32, groups: u32, pad0: u32, pad1: u32 }
@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> a: array<${input}>;
@group(0) @binding(2) var<storage, read> b: array<${input}>;
@group(0) @binding(3) var<storage, read_write> sums: array<f32>;
${workgroupSumWgsl(WORKGROUP)}
@compute @workgroup_size(${WORKGROUP})
fn main(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_index) lane: u32) {
  var diff = 0.0;
  var base = 0.0;
${final
    ? `  // The second pass: a holds the first pass's Σ|a − b| partials, b its Σ|b| partials.
  for (var i = lane; i < params.n; i += ${WORKGROUP}u) {
    diff += a[i];
    base += b[i];
  }`
    : `  for (var i = wg.x * ${WORKGROUP}u + lane; i < params.n; i += params.groups * ${WORKGROUP}u) {
    let x = f32(a[i]);
    let y = f32(b[i]);
    diff += abs(x - y);
    base += abs(y);
  }`}
  let totalDiff = workgroupSum(diff, lane);
  let totalBase = workgroupSum(base, lane);
  if (lane == 0u) {
    sums[${final ? '0u' : 'wg.x'}] = totalDiff;
    sums[${final ? '1u' : `${PARTIALS}u + wg.x`}] = totalBase;
  }
}
`;
}

const COMBINE_SOURCE = /* wgsl */ `
struct Params { n: u32, sign: f32, gridX: u32, pad: u32 }
@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;
@compute @workgroup_size(${WORKGROUP})
fn main(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_index) lane: u32) {
  let i = (wg.y * params.gridX + wg.x) * ${WORKGROUP}u + lane;
  if (i < params.n) { out[i] = a[i] + params.sign * b[i]; }
}
`;

/** Creates (or takes from the cache) the pipelines. Throws KernelCompileError when the driver rejects one. */
export async function createTeaCacheKernels(device: GPUDevice, dtype: TeaCacheDtype): Promise<TeaCacheKernels> {
  const pipeline = (key: string, code: string) => cachedPipeline(device, key, () => buildComputePipeline(device, key, code));
  const [first, second, combine] = await Promise.all([
    pipeline(`teacache/l1/${dtype}`, l1Source(dtype, false)),
    pipeline('teacache/l1/final', l1Source(dtype, true)),
    pipeline('teacache/combine', COMBINE_SOURCE),
  ]);
  const elem = dtype === 'f16' ? 2 : 4;
  const uniform = (values: (number | [number, 'f32'])[]) => {
    const buffer = device.createBuffer({ size: 16, usage: GPUBufferUsage.UNIFORM, mappedAtCreation: true });
    const range = buffer.getMappedRange();
    values.forEach((v, i) => {
      if (Array.isArray(v)) new Float32Array(range, 4 * i, 1)[0] = v[0];
      else new Uint32Array(range, 4 * i, 1)[0] = v;
    });
    buffer.unmap();
    return buffer;
  };
  const params = new Map<string, GPUBuffer>();
  const paramsFor = (key: string, values: (number | [number, 'f32'])[]) => {
    let b = params.get(key);
    if (!b) params.set(key, (b = uniform(values)));
    return b;
  };
  const bind = (buffer: GPUBuffer, bytes: number, name: string) =>
    checkedBinding(device, buffer, bytes, { kernel: 'TeaCache', name, what: `${bytes} bytes` }, TeaCacheKernelError);
  const group = (p: GPUComputePipeline, entries: GPUBufferBinding[]) =>
    device.createBindGroup({ layout: p.getBindGroupLayout(0), entries: entries.map((resource, binding) => ({ binding, resource })) });
  return {
    scratchBytes: 2 * PARTIALS * 4,
    encodeL1Sums(encoder, a, b, n, scratch, sums) {
      const groups = Math.min(PARTIALS, Math.ceil(n / WORKGROUP));
      recordDispatch(encoder, 'teacache l1', first, group(first, [
        { buffer: paramsFor(`l1/${n}`, [n, groups]) }, bind(a, n * elem, 'a'), bind(b, n * elem, 'b'), bind(scratch, 2 * PARTIALS * 4, 'scratch'),
      ]), groups);
      recordDispatch(encoder, 'teacache l1 final', second, group(second, [
        { buffer: paramsFor(`final/${groups}`, [groups, 1]) },
        { buffer: scratch, offset: 0, size: groups * 4 },
        { buffer: scratch, offset: PARTIALS * 4, size: groups * 4 },
        bind(sums, 8, 'sums'),
      ]), 1);
    },
    encodeCombine(encoder, a, b, sign, n, out) {
      const groups = Math.ceil(n / WORKGROUP);
      const gridX = Math.min(groups, device.limits.maxComputeWorkgroupsPerDimension);
      recordDispatch(encoder, 'teacache combine', combine, group(combine, [
        { buffer: paramsFor(`combine/${n}/${sign}`, [n, [sign, 'f32'], gridX]) }, bind(a, n * 4, 'a'), bind(b, n * 4, 'b'), bind(out, n * 4, 'out'),
      ]), gridX, Math.ceil(groups / gridX));
    },
  };
}

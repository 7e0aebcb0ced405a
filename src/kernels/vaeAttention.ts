// The VAE mid-block's attention (framepack-reference.md §4.3): one head of width D (512) over all T·H·W tokens of a
// tile, softmax(q·kᵀ/√D)·v in f32 with diffusers' frame-causal mask (a token of frame i sees every token of frames
// ≤ i), without the N×N scores: a flash-attention loop in portable WGSL. A workgroup takes 32 queries and walks the
// keys 32 at a time up to the end of its last query's frame (the mask skips the rest), keeping the running max and
// sum per row (online softmax); the scores are staged through workgroup memory 32 of D at a time, and each of the
// 256 invocations keeps 4 rows × ⌈D/32⌉ columns of the output in registers. q, k and v are the three column blocks
// of one [N, 3D] buffer (the stacked q/k/v projection, vaeConv.ts); the output is [N, D]. Storage f32 or f16.
// Calls are split over query blocks so that each dispatch carries at most ATTENTION_RATE × maxDispatchFlops.

import { VaeKernelConfigError, VaeKernelShapeError } from '../errors/kernels.ts';
import { buildComputePipeline, cachedPipeline } from './kernelCache.ts';
import { submitAndWait } from './dispatch.ts';
import { DEFAULT_DISPATCH_FLOPS, dtypeBytes, recordVaeDispatches, vaeUniforms, wholeBinding, type VaeDispatch, type VaeDtype } from './vaeCommon.ts';

export interface VaeAttentionShape {
  tokens: number;
  dim: number;
  /** Tokens per frame (H·W); the mask lets a token see the frames up to its own. ≥ tokens: no mask. */
  tokensPerFrame: number;
}

export interface VaeAttentionIO {
  /** [tokens, 3·dim]: q, k, v. */
  qkv: GPUBuffer;
  /** [tokens, dim]. */
  out: GPUBuffer;
}

export interface VaeAttention {
  readonly dtype: VaeDtype;
  readonly dim: number;
  dispatches(shape: VaeAttentionShape, io: VaeAttentionIO, maxDispatchFlops?: number): VaeDispatch[];
  encode(target: GPUCommandEncoder | GPUComputePassEncoder, shape: VaeAttentionShape, io: VaeAttentionIO, maxDispatchFlops?: number): void;
  run(shape: VaeAttentionShape, io: VaeAttentionIO, maxDispatchFlops?: number): Promise<void>;
}

const BQ = 32;
const BKV = 32;

/** Keys the query block b reads: up to the end of its last query's frame. */
function keyEnd(shape: VaeAttentionShape, block: number): number {
  const last = Math.min(shape.tokens - 1, block * BQ + BQ - 1);
  return Math.min(shape.tokens, (Math.floor(last / shape.tokensPerFrame) + 1) * shape.tokensPerFrame);
}

/** Useful FLOPs of the attention: 4·D per (query, visible key). */
export function vaeAttentionFlops(shape: VaeAttentionShape): number {
  let visible = 0;
  for (let q = 0; q < shape.tokens; q++) visible += Math.min(shape.tokens, (Math.floor(q / shape.tokensPerFrame) + 1) * shape.tokensPerFrame);
  return 4 * shape.dim * visible;
}

/** This kernel's expected speed relative to the large conv tile: its dispatches get this share of the FLOP budget. */
export const ATTENTION_RATE = 0.25;

/** Query-block ranges [first, end) of the dispatches: each ≤ ATTENTION_RATE × maxDispatchFlops of issued work (at least one block). */
export function vaeAttentionDispatchRanges(shape: VaeAttentionShape, maxDispatchFlops = DEFAULT_DISPATCH_FLOPS, maxGroups = 65535): [number, number][] {
  const budget = maxDispatchFlops * ATTENTION_RATE;
  const blocks = Math.ceil(shape.tokens / BQ);
  const ranges: [number, number][] = [];
  let start = 0;
  let work = 0;
  for (let b = 0; b < blocks; b++) {
    const cost = 4 * BQ * Math.ceil(keyEnd(shape, b) / BKV) * BKV * Math.ceil(shape.dim / 32) * 32;
    if (b > start && (work + cost > budget || b - start >= maxGroups)) {
      ranges.push([start, b]);
      start = b;
      work = 0;
    }
    work += cost;
  }
  ranges.push([start, blocks]);
  return ranges;
}

/** Creates (or takes from the cache) the pipeline for width `dim`. Throws VaeKernelConfigError, KernelCompileError. */
export async function createVaeAttention(device: GPUDevice, dtype: VaeDtype, dim: number): Promise<VaeAttention> {
  if (!Number.isInteger(dim) || dim < 1 || dim > 1024) throw new VaeKernelConfigError(`The VAE attention takes widths 1…1024, got ${dim}.`);
  if (dtype === 'f16' && !device.features.has('shader-f16')) throw new VaeKernelConfigError('f16 storage needs the shader-f16 feature, which this device lacks; run the f32 path.');
  const perLane = Math.ceil(dim / 32);
  const pipeline = await cachedPipeline(device, `vaeAttention/${dtype}/${perLane}`, () => buildComputePipeline(device, `vaeAttention ${dtype} ${dim}`, attentionSource(dtype, perLane)));
  return new AttentionKernel(device, pipeline, dtype, dim);
}

class AttentionKernel implements VaeAttention {
  constructor(private readonly device: GPUDevice, private readonly pipeline: GPUComputePipeline, readonly dtype: VaeDtype, readonly dim: number) {}

  dispatches(shape: VaeAttentionShape, io: VaeAttentionIO, maxDispatchFlops = DEFAULT_DISPATCH_FLOPS): VaeDispatch[] {
    const { tokens, dim, tokensPerFrame } = shape;
    if (dim !== this.dim) throw new VaeKernelShapeError(`This attention kernel was built for width ${this.dim}, got ${dim}.`);
    if (!Number.isInteger(tokens) || tokens < 1 || !Number.isInteger(tokensPerFrame) || tokensPerFrame < 1) {
      throw new VaeKernelShapeError(`Attention needs positive token counts, got ${tokens} tokens, ${tokensPerFrame} per frame.`);
    }
    const d = this.device;
    const eb = dtypeBytes(this.dtype);
    const qkv = wholeBinding(d, io.qkv, tokens * 3 * dim * eb, `vaeAttention qkv [${tokens}, ${3 * dim}] ${this.dtype}`);
    const out = wholeBinding(d, io.out, tokens * dim * eb, `vaeAttention out [${tokens}, ${dim}] ${this.dtype}`);
    const scale = 1 / Math.sqrt(dim);
    return vaeAttentionDispatchRanges(shape, maxDispatchFlops, d.limits.maxComputeWorkgroupsPerDimension).map(([first, end]) => {
      let flops = 0;
      for (let q = first * BQ; q < Math.min(tokens, end * BQ); q++) flops += 4 * dim * Math.min(tokens, (Math.floor(q / tokensPerFrame) + 1) * tokensPerFrame);
      const params = vaeUniforms(d).get([tokens, dim, tokensPerFrame, first, scale], new Set([4]));
      return {
        label: `vaeAttention ${tokens}×${dim}`,
        kind: 'attention' as const,
        pipeline: this.pipeline,
        bindGroup: d.createBindGroup({
          label: 'vaeAttention',
          layout: this.pipeline.getBindGroupLayout(0),
          entries: [
            { binding: 0, resource: { buffer: params } },
            { binding: 1, resource: qkv },
            { binding: 2, resource: out },
          ],
        }),
        x: end - first,
        y: 1,
        flops,
        bytes: 0,
      };
    });
  }

  encode(target: GPUCommandEncoder | GPUComputePassEncoder, shape: VaeAttentionShape, io: VaeAttentionIO, maxDispatchFlops?: number): void {
    recordVaeDispatches(target, this.dispatches(shape, io, maxDispatchFlops));
  }

  run(shape: VaeAttentionShape, io: VaeAttentionIO, maxDispatchFlops?: number): Promise<void> {
    return submitAndWait(this.device, 'vaeAttention.run', (encoder) => this.encode(encoder, shape, io, maxDispatchFlops));
  }
}

/** `perLane` = ⌈D/32⌉ output columns per invocation and row; the one placeholder besides the dtype. */
function attentionSource(dtype: VaeDtype, perLane: number): string {
  const lines: string[] = [];
  const e = (s: string) => lines.push(s);
  for (let i = 0; i < 4; i++) for (let j = 0; j < perLane; j++) e(`  var o${i}_${j} = 0.0;`);
  const accumulators = lines.splice(0).join('\n');
  for (let i = 0; i < 4; i++) {
    e(`    { let a = rowA[rg * 4u + ${i}u];`);
    for (let j = 0; j < perLane; j++) e(`      o${i}_${j} *= a;`);
    e('    }');
  }
  e('    for (var j = 0u; j < BKV; j++) {');
  e('      let key = min(kb * BKV + j, p.N - 1u) * ld + 2u * p.D;');
  for (let i = 0; i < 4; i++) e(`      let p${i} = Ps[(rg * 4u + ${i}u) * 33u + j];`);
  for (let jj = 0; jj < perLane; jj++) {
    e(`      { let d = dg + ${32 * jj}u; let v = f32(qkv[key + min(d, p.D - 1u)]);`);
    for (let i = 0; i < 4; i++) e(`        o${i}_${jj} = fma(p${i}, v, o${i}_${jj});`);
    e('      }');
  }
  e('    }');
  const update = lines.splice(0).join('\n');
  for (let i = 0; i < 4; i++) {
    e(`  { let q = qb * BQ + rg * 4u + ${i}u; let inv = 1.0 / rowL[rg * 4u + ${i}u];`);
    e('    if (q < p.N) {');
    for (let jj = 0; jj < perLane; jj++) e(`      { let d = dg + ${32 * jj}u; if (d < p.D) { out[q * p.D + d] = T(o${i}_${jj} * inv); } }`);
    e('    }');
    e('  }');
  }
  const store = lines.splice(0).join('\n');
  return /* wgsl */ `
${dtype === 'f16' ? 'enable f16;' : ''}
alias T = ${dtype};
struct Params { N: u32, D: u32, tpf: u32, block0: u32, scale: f32 }

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> qkv: array<T>;
@group(0) @binding(2) var<storage, read_write> out: array<T>;

const BQ = ${BQ}u;
const BKV = ${BKV}u;
const LOW = -3.0e38;

var<workgroup> Qs: array<f32, ${BQ * 33}>;
var<workgroup> Ks: array<f32, ${BKV * 33}>;
var<workgroup> Ps: array<f32, ${BQ * 33}>;
var<workgroup> rowM: array<f32, ${BQ}>;
var<workgroup> rowL: array<f32, ${BQ}>;
var<workgroup> rowA: array<f32, ${BQ}>;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let qb = p.block0 + wg.x;
  let ld = 3u * p.D;
  // Scores: query sq, keys sk..sk+3 of the block. Output: rows rg·4…+3, columns dg + 32·j.
  let sq = lid / 8u;
  let sk = (lid % 8u) * 4u;
  let rg = lid / 32u;
  let dg = lid % 32u;
  let lastQ = min(qb * BQ + BQ - 1u, p.N - 1u);
  let kEnd = min(p.N, (lastQ / p.tpf + 1u) * p.tpf);
  let qFrame = min(qb * BQ + sq, p.N - 1u) / p.tpf;
  if (lid < BQ) { rowM[lid] = LOW; rowL[lid] = 0.0; }
${accumulators}
  for (var kb = 0u; kb * BKV < kEnd; kb++) {
    var s0 = 0.0; var s1 = 0.0; var s2 = 0.0; var s3 = 0.0;
    for (var d0 = 0u; d0 < p.D; d0 += 32u) {
      for (var r = 0u; r < 4u; r++) {
        let i = lid + r * 256u;
        let row = i / 32u;
        let dd = i % 32u;
        let d = d0 + dd;
        let ok = d < p.D;
        let qi = min(qb * BQ + row, p.N - 1u) * ld + min(d, p.D - 1u);
        let ki = min(kb * BKV + row, p.N - 1u) * ld + p.D + min(d, p.D - 1u);
        Qs[row * 33u + dd] = select(0.0, f32(qkv[qi]), ok);
        Ks[row * 33u + dd] = select(0.0, f32(qkv[ki]), ok);
      }
      workgroupBarrier();
      for (var dd = 0u; dd < 32u; dd++) {
        let qv = Qs[sq * 33u + dd];
        s0 = fma(qv, Ks[sk * 33u + dd], s0);
        s1 = fma(qv, Ks[(sk + 1u) * 33u + dd], s1);
        s2 = fma(qv, Ks[(sk + 2u) * 33u + dd], s2);
        s3 = fma(qv, Ks[(sk + 3u) * 33u + dd], s3);
      }
      workgroupBarrier();
    }
    let s = vec4<f32>(s0, s1, s2, s3) * p.scale;
    for (var j = 0u; j < 4u; j++) {
      let key = kb * BKV + sk + j;
      let visible = key < p.N && key / p.tpf <= qFrame;
      Ps[sq * 33u + sk + j] = select(LOW, s[j], visible);
    }
    workgroupBarrier();
    if (lid < BQ) {
      var mx = rowM[lid];
      for (var j = 0u; j < BKV; j++) { mx = max(mx, Ps[lid * 33u + j]); }
      let alpha = exp(rowM[lid] - mx);
      var sum = 0.0;
      for (var j = 0u; j < BKV; j++) {
        let pj = exp(Ps[lid * 33u + j] - mx);
        Ps[lid * 33u + j] = pj;
        sum += pj;
      }
      rowL[lid] = rowL[lid] * alpha + sum;
      rowM[lid] = mx;
      rowA[lid] = alpha;
    }
    workgroupBarrier();
${update}
    workgroupBarrier();
  }
${store}
}
`;
}

// The HunyuanVideo VAE's convolutions (framepack-reference.md §4.2–4.4) as one implicit GEMM each, in portable WGSL:
// out[m, n] = Σ_k A[m, k] · W[k, n] (+ bias[n]) (+ residual[m, n]), where m runs over the output positions
// (frame, row, column) of a channels-last activation [T, H, W, C], n over the output channels and k over the
// kernel's taps and input channels, k = ((dt·ks + dy)·ks + dx)·C + c, so the three temporal taps and the 3×3 window
// are one reduction of K = kt·ks²·C. A[m, k] is read straight from the input, never materialised:
// - causal padding, as HunyuanVideoCausalConv3d does it (F.pad mode 'replicate': 2 frames in front, 1 pixel each
//   side, for kernel 3; none for kernel 1): coordinates are clamped into the (upsampled) input;
// - nearest-neighbour upsampling of HunyuanVideoUpsampleCausal3D folded into the indexing: upsampled frame u reads
//   input frame ⌊(u + 1)/2⌋ (the first frame once, the others twice), upsampled row y reads ⌊y/2⌋;
// - strides (the encoder's downsamplers) multiply the output coordinate;
// - an optional GroupNorm + SiLU of the input applied on load (v·scale[c] + shift[c], per-channel affine from
//   vaeGroupNorm.ts; SiLU optional): replicate padding commutes with these per-element functions, so clamping first
//   is exact.
// (Replicate, not zero, spatial padding: diffusers' HunyuanVideoCausalConv3d pads all three axes with F.pad mode
// 'replicate'.)
// Storage f32 or f16, accumulation f32. Each workgroup computes BM×BN outputs, each invocation TM×TN of them in
// registers, the A and W tiles (BK of K at a time) staged in workgroup memory as f32 (≤ 17 KiB), the next step's
// values fetched into registers while the current step's products run. Outputs are channels-last in the storage dtype, or planar f32 [N, T, H, W] (the decoder's last conv, ready for the CPU).
// A call is split over output rows so that each dispatch carries at most rate × maxDispatchFlops of issued work
// (vaeCommon.ts; `rate` is the tile's expected speed relative to the large tile) and every binding stays under the
// device's limit (large activations are bound by sub-ranges).

import { VaeKernelConfigError, VaeKernelShapeError } from '../errors/kernels.ts';
import { buildComputePipeline, cachedPipeline } from './kernelCache.ts';
import { submitAndWait } from './dispatch.ts';
import { DEFAULT_DISPATCH_FLOPS, dtypeBytes, rangeBinding, recordVaeDispatches, vaeUniforms, wholeBinding, type VaeDispatch, type VaeDtype } from './vaeCommon.ts';

/** Shape of one convolution. The input is [inFrames, inHeight, inWidth, inChannels] channels-last, before upsampling. */
export interface ConvGeometry {
  inFrames: number;
  inHeight: number;
  inWidth: number;
  inChannels: number;
  outChannels: number;
  /** Temporal and spatial kernel size: 3 (causal, replicate-padded) or 1. */
  kernelTime: 1 | 3;
  kernelSpace: 1 | 3;
  strideTime?: 1 | 2;
  strideSpace?: 1 | 2;
  /** Nearest upsampling of the input before the conv (the decoder's upsamplers). */
  upTime?: 1 | 2;
  upSpace?: 1 | 2;
}

export interface ConvOutputShape {
  frames: number;
  height: number;
  width: number;
}

/** Frames and pixels after upsampling, padding and stride: ⌊(n' − 1)/s⌋ + 1 for every kernel size here. */
export function convOutputShape(g: ConvGeometry): ConvOutputShape {
  const up = upsampledShape(g);
  return {
    frames: Math.floor((up.frames - 1) / (g.strideTime ?? 1)) + 1,
    height: Math.floor((up.height - 1) / (g.strideSpace ?? 1)) + 1,
    width: Math.floor((up.width - 1) / (g.strideSpace ?? 1)) + 1,
  };
}

/** The input's size after nearest upsampling: 2T − 1 frames (the first one single), 2H × 2W. */
export function upsampledShape(g: ConvGeometry): ConvOutputShape {
  return {
    frames: (g.upTime ?? 1) === 2 ? 2 * g.inFrames - 1 : g.inFrames,
    height: g.inHeight * (g.upSpace ?? 1),
    width: g.inWidth * (g.upSpace ?? 1),
  };
}

/** K of the implicit GEMM. */
export function convReduction(g: ConvGeometry): number {
  return g.kernelTime * g.kernelSpace * g.kernelSpace * g.inChannels;
}

/** Useful FLOPs of a conv: 2·M·K·N. */
export function convFlops(g: ConvGeometry): number {
  const o = convOutputShape(g);
  return 2 * o.frames * o.height * o.width * convReduction(g) * g.outChannels;
}

/**
 * A checkpoint conv weight [O, C, kt, kh, kw] as the kernel's [K, N] (k = ((dt·kh + dy)·kw + dx)·C + c, n = o).
 * `sumTime` folds the temporal taps into one (kt = 1): exact for a single input frame, whose replicate padding
 * makes every temporal tap read the same frame (the encoder's case).
 */
export function convWeightToKN(w: ArrayLike<number>, shape: readonly number[], sumTime = false): Float32Array {
  const [O, C, kt, kh, kw] = shape.length === 5 ? shape : [shape[0], shape[1], 1, 1, 1];
  const taps = (sumTime ? 1 : kt) * kh * kw;
  const out = new Float32Array(taps * C * O);
  for (let o = 0; o < O; o++) {
    for (let c = 0; c < C; c++) {
      for (let dt = 0; dt < kt; dt++) {
        for (let dy = 0; dy < kh; dy++) {
          for (let dx = 0; dx < kw; dx++) {
            const src = (((o * C + c) * kt + dt) * kh + dy) * kw + dx;
            const tap = ((sumTime ? 0 : dt) * kh + dy) * kw + dx;
            out[(tap * C + c) * O + o] += w[src];
          }
        }
      }
    }
  }
  return out;
}

/** Register and workgroup tiling of the GEMM. */
export interface ConvTile {
  /** Invocations along M and N. */
  wm: number;
  wn: number;
  /** Outputs per invocation along M and N. */
  tm: number;
  tn: number;
  /** K per staged step. */
  bk: number;
  /**
   * Expected throughput relative to the large tile: a dispatch of this tile gets rate × maxDispatchFlops, so the
   * budget bounds time, not arithmetic (narrow tiles issue padded work slowly).
   */
  rate: number;
}

export const CONV_TILES = {
  /** 128 × 128 outputs per workgroup, 8 × 8 per invocation: the wide layers. */
  large: { wm: 16, wn: 16, tm: 8, tn: 8, bk: 16, rate: 1 },
  /** 64 × 64, 4 × 4: narrow layers and small tiles. */
  medium: { wm: 16, wn: 16, tm: 4, tn: 4, bk: 16, rate: 0.5 },
  /** 128 × 16, 2 × 4: layers of ≤ 16 output channels (the latent convs, small models). */
  narrow: { wm: 64, wn: 4, tm: 2, tn: 4, bk: 8, rate: 0.25 },
  /** 256 × 4: the decoder's last conv (3 output channels). */
  thin: { wm: 128, wn: 1, tm: 2, tn: 4, bk: 8, rate: 0.125 },
  /**
   * 128 × 16 per workgroup of 64, 8 × 4 per invocation, no workgroup memory or barriers: operands straight from
   * storage. For software rasterisers: on SwiftShader 1.4–2× the tiled kernels' speed (0.2 GFLOP/s on 2 cores).
   */
  direct: { wm: 16, wn: 4, tm: 8, tn: 4, bk: 1, rate: 0.25 },
} as const satisfies Record<string, ConvTile>;
export type ConvTileName = keyof typeof CONV_TILES;

/**
 * The tile for a conv: on a software rasteriser always direct; else thin for ≤ 4 output channels, narrow ≤ 16,
 * large for ≥ 128 and enough rows, medium otherwise.
 */
export function chooseConvTile(g: ConvGeometry, software = false): ConvTileName {
  if (software) return 'direct';
  if (g.outChannels <= 4) return 'thin';
  if (g.outChannels <= 16) return 'narrow';
  const o = convOutputShape(g);
  return g.outChannels >= 128 && o.frames * o.height * o.width >= 4096 ? 'large' : 'medium';
}

export interface ConvOptions {
  /** Storage dtype of the input, weights, residual and channels-last output. */
  dtype: VaeDtype;
  tile: ConvTileName;
  /** Write planar f32 [N, T·H·W] instead of channels-last in dtype. */
  planarF32?: boolean;
}

export interface ConvIO {
  x: GPUBuffer;
  /** [K, N] in dtype (convWeightToKN). */
  weight: GPUBuffer;
  /** [N] f32. */
  bias?: GPUBuffer;
  /** GroupNorm on load: per input channel (scale, shift) as vec2<f32> (vaeGroupNorm.ts), then SiLU if asked. */
  norm?: { affine: GPUBuffer; silu: boolean };
  /** Added after the bias: channels-last [M, N] in dtype (not with a planar output). */
  residual?: GPUBuffer;
  out: GPUBuffer;
}

export interface VaeConv {
  readonly options: ConvOptions;
  /** The dispatches of one conv, each within `maxDispatchFlops`. Throws VaeKernelShapeError. */
  dispatches(g: ConvGeometry, io: ConvIO, maxDispatchFlops?: number): VaeDispatch[];
  encode(target: GPUCommandEncoder | GPUComputePassEncoder, g: ConvGeometry, io: ConvIO, maxDispatchFlops?: number): void;
  run(g: ConvGeometry, io: ConvIO, maxDispatchFlops?: number): Promise<void>;
}

const FLAG_NORM = 1;
const FLAG_SILU = 2;
const FLAG_RESIDUAL = 4;
const FLAG_PLANAR = 8;
const FLAG_BIAS = 16;

/** Largest input size the kernel's packed row coordinates take (10 bits of frame, 11 of row and column). */
const MAX_FRAMES = 1024;
const MAX_SIDE = 2048;

/** Creates (or takes from the cache) the pipeline. Throws VaeKernelConfigError, KernelCompileError. */
export async function createVaeConv(device: GPUDevice, options: ConvOptions): Promise<VaeConv> {
  const tile = CONV_TILES[options.tile];
  if (!tile) throw new VaeKernelConfigError(`Unknown conv tile '${options.tile}'; use one of ${Object.keys(CONV_TILES).join(', ')}.`);
  if (options.dtype === 'f16' && !device.features.has('shader-f16')) {
    throw new VaeKernelConfigError('f16 storage needs the shader-f16 feature, which this device lacks; run the f32 path.');
  }
  const threads = tile.wm * tile.wn;
  const shared = (tile.bk * (tile.wm * tile.tm + 4 + tile.wn * tile.tn)) * 4;
  if (threads > device.limits.maxComputeInvocationsPerWorkgroup || shared > device.limits.maxComputeWorkgroupStorageSize) {
    throw new VaeKernelConfigError(`The ${options.tile} conv tile needs ${threads} invocations and ${shared} bytes of workgroup memory; this device allows ${device.limits.maxComputeInvocationsPerWorkgroup} and ${device.limits.maxComputeWorkgroupStorageSize}.`);
  }
  const planar = options.planarF32 === true;
  const key = `vaeConv/${options.dtype}/${options.tile}/${planar ? 'planar' : 'cl'}`;
  const source = options.tile === 'direct' ? directSource(options.dtype, tile, planar) : convSource(options.dtype, tile, planar);
  const pipeline = await cachedPipeline(device, key, () => buildComputePipeline(device, `vaeConv ${options.dtype} ${options.tile}${planar ? ' planar' : ''}`, source));
  return new ConvKernel(device, pipeline, options);
}

/** Output-row ranges [start, end) of the dispatches of one conv (the splitting rule; exported for tests and counts). */
export function convDispatchRanges(g: ConvGeometry, tileName: ConvTileName, dtype: VaeDtype, limits: { maxStorageBufferBindingSize: number; maxComputeWorkgroupsPerDimension: number }, maxDispatchFlops = DEFAULT_DISPATCH_FLOPS, planarF32 = false): [number, number][] {
  const tile = CONV_TILES[tileName];
  const bm = tile.wm * tile.tm;
  const bn = tile.wn * tile.tn;
  const o = convOutputShape(g);
  const rows = o.frames * o.height * o.width;
  const kPad = Math.ceil(convReduction(g) / tile.bk) * tile.bk;
  const nPad = Math.ceil(g.outChannels / bn) * bn;
  const perRow = 2 * kPad * nPad;
  let step = Math.max(bm, Math.floor((maxDispatchFlops * tile.rate) / perRow / bm) * bm);
  step = Math.min(step, limits.maxComputeWorkgroupsPerDimension * bm);
  const eb = dtypeBytes(dtype);
  const fits = (start: number, end: number) => {
    const w = convInputWindow(g, start, end);
    const frameBytes = g.inHeight * g.inWidth * g.inChannels * eb;
    // + alignment slack of the sub-range binding
    if ((w.hi - w.lo + 1) * frameBytes + 256 > limits.maxStorageBufferBindingSize) return false;
    return planarF32 || (end - start) * g.outChannels * eb + 256 <= limits.maxStorageBufferBindingSize;
  };
  const ranges: [number, number][] = [];
  for (let start = 0; start < rows; ) {
    let end = Math.min(rows, start + step);
    while (!fits(start, end) && end - start > bm) end = start + Math.max(bm, Math.floor((end - start) / 2 / bm) * bm);
    ranges.push([start, end]);
    start = end;
  }
  return ranges;
}

/** Input frames [lo, hi] that output rows [start, end) read. */
export function convInputWindow(g: ConvGeometry, start: number, end: number): { lo: number; hi: number } {
  const o = convOutputShape(g);
  const up = upsampledShape(g);
  const plane = o.height * o.width;
  const st = g.strideTime ?? 1;
  const t0 = Math.floor(start / plane);
  const t1 = Math.floor((end - 1) / plane);
  const uLo = Math.max(0, t0 * st - (g.kernelTime - 1));
  const uHi = Math.min(up.frames - 1, t1 * st);
  const map = (u: number) => ((g.upTime ?? 1) === 2 ? (u + 1) >> 1 : u);
  return { lo: map(uLo), hi: map(uHi) };
}

class ConvKernel implements VaeConv {
  private readonly unused: GPUBuffer[] = [];

  constructor(private readonly device: GPUDevice, private readonly pipeline: GPUComputePipeline, readonly options: ConvOptions) {}

  dispatches(g: ConvGeometry, io: ConvIO, maxDispatchFlops = DEFAULT_DISPATCH_FLOPS): VaeDispatch[] {
    validateGeometry(g);
    const { dtype } = this.options;
    const planar = this.options.planarF32 === true;
    if (planar && io.residual) throw new VaeKernelShapeError('A planar f32 output takes no residual.');
    const tile = CONV_TILES[this.options.tile];
    const bm = tile.wm * tile.tm;
    const bn = tile.wn * tile.tn;
    const eb = dtypeBytes(dtype);
    const o = convOutputShape(g);
    const up = upsampledShape(g);
    const rows = o.frames * o.height * o.width;
    const K = convReduction(g);
    const N = g.outChannels;
    const frameElems = g.inHeight * g.inWidth * g.inChannels;
    const d = this.device;
    const weight = wholeBinding(d, io.weight, K * N * eb, `vaeConv weight [${K}, ${N}] ${dtype}`);
    if (io.x.size < g.inFrames * frameElems * eb) throw new VaeKernelShapeError(`vaeConv input holds ${io.x.size} bytes; [${g.inFrames}, ${g.inHeight}, ${g.inWidth}, ${g.inChannels}] ${dtype} need ${g.inFrames * frameElems * eb}.`);
    const outBytes = rows * N * (planar ? 4 : eb);
    if (io.out.size < outBytes) throw new VaeKernelShapeError(`vaeConv output holds ${io.out.size} bytes; [${o.frames}, ${o.height}, ${o.width}, ${N}] need ${outBytes}.`);
    if (io.residual && io.residual.size < rows * N * eb) throw new VaeKernelShapeError(`vaeConv residual holds ${io.residual.size} bytes; ${rows}×${N} ${dtype} need ${rows * N * eb}.`);
    const bias = io.bias ? wholeBinding(d, io.bias, N * 4, `vaeConv bias [${N}] f32`) : { buffer: this.placeholder(0) };
    const affine = io.norm ? wholeBinding(d, io.norm.affine, g.inChannels * 8, `vaeConv norm affine [${g.inChannels}] vec2<f32>`) : { buffer: this.placeholder(1) };
    const flags = (io.norm ? FLAG_NORM : 0) | (io.norm?.silu ? FLAG_SILU : 0) | (io.residual ? FLAG_RESIDUAL : 0) | (planar ? FLAG_PLANAR : 0) | (io.bias ? FLAG_BIAS : 0);
    const out: VaeDispatch[] = [];
    for (const [start, end] of convDispatchRanges(g, this.options.tile, dtype, d.limits, maxDispatchFlops, planar)) {
      const w = convInputWindow(g, start, end);
      const x = rangeBinding(d, io.x, w.lo * frameElems, (w.hi + 1) * frameElems, eb, 'vaeConv input');
      const y = planar ? { binding: wholeBinding(d, io.out, outBytes, 'vaeConv planar output'), base: 0 } : rangeBinding(d, io.out, start * N, end * N, eb, 'vaeConv output');
      const r = io.residual ? rangeBinding(d, io.residual, start * N, end * N, eb, 'vaeConv residual') : { binding: { buffer: this.placeholder(2) }, base: 0 };
      const params = [
        g.inFrames, g.inHeight, g.inWidth, g.inChannels,
        (g.upTime ?? 1) - 1, (g.upSpace ?? 1) - 1, g.kernelTime, g.kernelSpace,
        g.strideTime ?? 1, g.strideSpace ?? 1, o.frames, o.height,
        o.width, N, K, start,
        end, w.lo, x.base, y.base,
        r.base, flags, rows, up.frames,
        up.height, up.width,
      ];
      const bindGroup = d.createBindGroup({
        label: 'vaeConv',
        layout: this.pipeline.getBindGroupLayout(0),
        entries: [
          { binding: 0, resource: { buffer: vaeUniforms(d).get(params) } },
          { binding: 1, resource: x.binding },
          { binding: 2, resource: weight },
          { binding: 3, resource: bias },
          { binding: 4, resource: affine },
          { binding: 5, resource: r.binding },
          { binding: 6, resource: y.binding },
        ],
      });
      out.push({
        label: `vaeConv ${g.kernelTime}x${g.kernelSpace}x${g.kernelSpace} ${g.inChannels}→${N}`,
        kind: 'conv',
        pipeline: this.pipeline,
        bindGroup,
        x: Math.ceil((end - start) / bm),
        y: Math.ceil(N / bn),
        flops: 2 * (end - start) * K * N,
        bytes: (end - start) * N * eb,
      });
    }
    return out;
  }

  encode(target: GPUCommandEncoder | GPUComputePassEncoder, g: ConvGeometry, io: ConvIO, maxDispatchFlops?: number): void {
    recordVaeDispatches(target, this.dispatches(g, io, maxDispatchFlops));
  }

  run(g: ConvGeometry, io: ConvIO, maxDispatchFlops?: number): Promise<void> {
    return submitAndWait(this.device, 'vaeConv.run', (encoder) => this.encode(encoder, g, io, maxDispatchFlops));
  }

  /** Bindings the flags leave unused still need a buffer; one per slot so none aliases the written output. */
  private placeholder(slot: number): GPUBuffer {
    this.unused[slot] ??= this.device.createBuffer({ label: `vaeConv unused ${slot}`, size: 16, usage: GPUBufferUsage.STORAGE });
    return this.unused[slot];
  }
}

function validateGeometry(g: ConvGeometry): void {
  const ints = [g.inFrames, g.inHeight, g.inWidth, g.inChannels, g.outChannels];
  if (ints.some((v) => !Number.isInteger(v) || v < 1)) throw new VaeKernelShapeError(`Conv sizes must be positive integers, got input [${g.inFrames}, ${g.inHeight}, ${g.inWidth}, ${g.inChannels}] → ${g.outChannels}.`);
  if (![1, 3].includes(g.kernelTime) || ![1, 3].includes(g.kernelSpace)) throw new VaeKernelShapeError(`Conv kernels are 1 or 3 wide, got ${g.kernelTime}×${g.kernelSpace}.`);
  for (const v of [g.strideTime, g.strideSpace, g.upTime, g.upSpace]) if (v !== undefined && v !== 1 && v !== 2) throw new VaeKernelShapeError(`Strides and upsampling factors are 1 or 2, got ${v}.`);
  const up = upsampledShape(g);
  if (up.frames > MAX_FRAMES || up.height > MAX_SIDE || up.width > MAX_SIDE) {
    throw new VaeKernelShapeError(`The conv takes at most ${MAX_FRAMES} frames of ${MAX_SIDE}×${MAX_SIDE} (upsampled), got ${up.frames} of ${up.height}×${up.width}. Decode in smaller tiles.`);
  }
}

/** WGSL of one tile configuration; the only placeholders are the dtype, the tile sizes and the output layout. */
function convSource(dtype: VaeDtype, t: ConvTile, planar: boolean): string {
  const threads = t.wm * t.wn;
  const bm = t.wm * t.tm;
  const bn = t.wn * t.tn;
  const ea = (bm * t.bk) / threads; // A elements each invocation stages per step
  const eb = Math.ceil((bn * t.bk) / threads);
  const rowStep = threads / t.bk;
  if (!Number.isInteger(ea) || !Number.isInteger(rowStep)) throw new VaeKernelConfigError(`Conv tile ${JSON.stringify(t)} does not divide its A tile over the invocations.`);
  const aVec = t.tm % 4 === 0; // rows of an invocation contiguous, read as vec4
  const bVec = t.tn % 4 === 0;
  const lines: string[] = [];
  const e = (s: string) => lines.push(s);
  const rowOf = (i: number) => (aVec ? `tmi * ${t.tm}u + ${i}u` : `tmi + ${i * t.wm}u`);
  const colOf = (j: number) => (bVec ? `tni * ${t.tn}u + ${j}u` : `tni + ${j * t.wn}u`);
  // Staging of A: rows mLane + r·rowStep, column kk of the step.
  e('    // A tile: input values at this step\'s tap and channel, GroupNorm/SiLU applied.');
  e('    let k = k0s + kk;');
  e('    let kOk = k < p.K;');
  e('    let kc = min(k, p.K - 1u);');
  e('    let tap = kc / p.C;');
  e('    let c = kc - tap * p.C;');
  e('    let ks2 = p.ks * p.ks;');
  e('    let dt = tap / ks2;');
  e('    let rem = tap - dt * ks2;');
  e('    let dy = rem / p.ks;');
  e('    let dx = rem - dy * p.ks;');
  e('    let padS = i32(p.ks / 2u);');
  e('    let padT = i32(p.kt) - 1;');
  e('    var aff = vec2<f32>(1.0, 0.0);');
  e('    if ((p.flags & FLAG_NORM) != 0u) { aff = affine[c]; }');
  for (let r = 0; r < ea; r++) {
    e(`    {`);
    e(`      let packed = row${r};`);
    e(`      let tu = clamp(i32((packed >> 22u) * p.st + dt) - padT, 0, i32(p.upFrames) - 1);`);
    e(`      let yu = clamp(i32(((packed >> 11u) & 2047u) * p.ss + dy) - padS, 0, i32(p.upHeight) - 1);`);
    e(`      let xu = clamp(i32((packed & 2047u) * p.ss + dx) - padS, 0, i32(p.upWidth) - 1);`);
    e(`      let ti = (u32(tu) + p.upT) >> p.upT;`);
    e(`      let idx = (((ti - p.tiLo) * p.inH + (u32(yu) >> p.upS)) * p.inW + (u32(xu) >> p.upS)) * p.C + c + p.xBase;`);
    e(`      let ok = ok${r} && kOk;`);
    e(`      var v = f32(x[select(0u, idx, ok)]);`);
    e(`      if ((p.flags & FLAG_NORM) != 0u) { v = v * aff.x + aff.y; if ((p.flags & FLAG_SILU) != 0u) { v = v / (1.0 + exp(-v)); } }`);
    e(`      va${r} = select(0.0, v, ok);`);
    e(`    }`);
  }
  e('    // W tile: [BK, BN] of the [K, N] weight, zero past K and N.');
  for (let r = 0; r < eb; r++) {
    e(`    {`);
    e(`      let i = lid + ${r * threads}u;`);
    e(`      if (i < BK * BN) {`);
    e(`        let bk = i / BN;`);
    e(`        let bn = i - bk * BN;`);
    e(`        let kw = k0s + bk;`);
    e(`        let n = n0 + bn;`);
    e(`        let ok = kw < p.K && n < p.N;`);
    e(`        let v = f32(w[select(0u, kw * p.N + n, ok)]);`);
    e(`        vb${r} = select(0.0, v, ok);`);
    e(`      }`);
    e(`    }`);
  }
  const staging = lines.splice(0).join('\n');
  // The staged values, fetched a step ahead into registers, go to workgroup memory at the top of the step.
  for (let r = 0; r < ea; r++) e(`    { let mi = kk * BMP + mLane + ${r * rowStep}u; As[mi / 4u][mi % 4u] = va${r}; }`);
  for (let r = 0; r < eb; r++) e(`    { let i = lid + ${r * threads}u; if (i < BK * BN) { Bs[i / 4u][i % 4u] = vb${r}; } }`);
  const toShared = lines.splice(0).join('\n');
  for (let r = 0; r < ea; r++) e(`  var va${r} = 0.0;`);
  for (let r = 0; r < eb; r++) e(`  var vb${r} = 0.0;`);
  const registers = lines.splice(0).join('\n');
  // Products of one step.
  e('    for (var q = 0u; q < BK; q++) {');
  if (aVec) {
    for (let v = 0; v < t.tm / 4; v++) e(`      let a${v} = As[(q * BMP + tmi * ${t.tm}u) / 4u + ${v}u];`);
  } else {
    for (let i = 0; i < t.tm; i++) e(`      let a${i} = As[(q * BMP + ${rowOf(i)}) / 4u][(${rowOf(i)}) % 4u];`);
  }
  if (bVec) {
    for (let v = 0; v < t.tn / 4; v++) e(`      let b${v} = Bs[(q * BN + tni * ${t.tn}u) / 4u + ${v}u];`);
  } else {
    for (let j = 0; j < t.tn; j++) e(`      let b${j} = Bs[(q * BN + ${colOf(j)}) / 4u][(${colOf(j)}) % 4u];`);
  }
  const aOf = (i: number) => (aVec ? `a${Math.floor(i / 4)}[${i % 4}]` : `a${i}`);
  for (let i = 0; i < t.tm; i++) {
    if (bVec) for (let v = 0; v < t.tn / 4; v++) e(`      acc${i}_${v} = fma(vec4<f32>(${aOf(i)}), b${v}, acc${i}_${v});`);
    else for (let j = 0; j < t.tn; j++) e(`      acc${i}_${j} = fma(${aOf(i)}, b${j}, acc${i}_${j});`);
  }
  e('    }');
  const products = lines.splice(0).join('\n');
  // Accumulators.
  for (let i = 0; i < t.tm; i++) {
    if (bVec) for (let v = 0; v < t.tn / 4; v++) e(`  var acc${i}_${v} = vec4<f32>(0.0);`);
    else for (let j = 0; j < t.tn; j++) e(`  var acc${i}_${j} = 0.0;`);
  }
  const accumulators = lines.splice(0).join('\n');
  // Row coordinates of the staged A rows, decoded once.
  for (let r = 0; r < ea; r++) {
    e(`  let mr${r} = m0 + mLane + ${r * rowStep}u;`);
    e(`  let ok${r} = mr${r} < p.mEnd;`);
    e(`  let row${r} = packRow(min(mr${r}, p.rows - 1u));`);
  }
  const rows = lines.splice(0).join('\n');
  // Epilogue.
  for (let i = 0; i < t.tm; i++) {
    e(`  {`);
    e(`    let m = m0 + ${rowOf(i)};`);
    for (let j = 0; j < t.tn; j++) {
      const acc = bVec ? `acc${i}_${Math.floor(j / 4)}[${j % 4}]` : `acc${i}_${j}`;
      e(`    store(m, n0 + ${colOf(j)}, ${acc});`);
    }
    e(`  }`);
  }
  const epilogue = lines.splice(0).join('\n');
  return /* wgsl */ `${header(dtype, planar, bm, bn, t.bk)}
/** A tile row stride, padded by 4 so the staging stores (one k per invocation) fall in different banks. */
const BMP = ${bm + 4}u;

var<workgroup> As: array<vec4<f32>, ${(t.bk * (bm + 4)) / 4}>;
var<workgroup> Bs: array<vec4<f32>, ${(t.bk * bn) / 4}>;

@compute @workgroup_size(${threads})
fn main(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let m0 = p.mStart + wg.x * BM;
  let n0 = wg.y * BN;
  let kk = lid % BK;
  let mLane = lid / BK;
  let tmi = lid / ${t.wn}u;
  let tni = lid % ${t.wn}u;
${rows}
${accumulators}
${registers}
  {
    let k0s = 0u;
${staging}
  }
  for (var k0 = 0u; k0 < p.K; k0 += BK) {
${toShared}
    workgroupBarrier();
    {
      // The next step's loads, in flight while this step's products run (past K they read nothing: zeros).
      let k0s = k0 + BK;
${staging}
    }
${products}
    workgroupBarrier();
  }
${epilogue}
}
`;
}

/** The common declarations of both sources: dtype aliases, params, bindings, flags, packRow and the epilogue. */
function header(dtype: VaeDtype, planar: boolean, bm: number, bn: number, bk: number): string {
  return /* wgsl */ `
${dtype === 'f16' ? 'enable f16;' : ''}
alias T = ${dtype};
alias O = ${planar ? 'f32' : dtype};

struct Params {
  inT: u32, inH: u32, inW: u32, C: u32,
  upT: u32, upS: u32, kt: u32, ks: u32,
  st: u32, ss: u32, outT: u32, outH: u32,
  outW: u32, N: u32, K: u32, mStart: u32,
  mEnd: u32, tiLo: u32, xBase: u32, outBase: u32,
  resBase: u32, flags: u32, rows: u32, upFrames: u32,
  upHeight: u32, upWidth: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<T>;
@group(0) @binding(2) var<storage, read> w: array<T>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read> affine: array<vec2<f32>>;
@group(0) @binding(5) var<storage, read> res: array<T>;
@group(0) @binding(6) var<storage, read_write> out: array<O>;

const BM = ${bm}u;
const BN = ${bn}u;
const BK = ${bk}u;
const FLAG_NORM = ${FLAG_NORM}u;
const FLAG_SILU = ${FLAG_SILU}u;
const FLAG_RESIDUAL = ${FLAG_RESIDUAL}u;
const FLAG_PLANAR = ${FLAG_PLANAR}u;
const FLAG_BIAS = ${FLAG_BIAS}u;

/** Output row m → frame (10 bits), row (11), column (11). */
fn packRow(m: u32) -> u32 {
  let xo = m % p.outW;
  let r = m / p.outW;
  let yo = r % p.outH;
  let to = r / p.outH;
  return (to << 22u) | (yo << 11u) | xo;
}

fn store(m: u32, n: u32, acc: f32) {
  if (m >= p.mEnd || n >= p.N) { return; }
  var v = acc;
  if ((p.flags & FLAG_BIAS) != 0u) { v += bias[n]; }
  if ((p.flags & FLAG_PLANAR) != 0u) {
    out[n * p.rows + m] = O(v);
    return;
  }
  let local = (m - p.mStart) * p.N + n;
  if ((p.flags & FLAG_RESIDUAL) != 0u) { v += f32(res[p.resBase + local]); }
  out[p.outBase + local] = O(v);
}
`;
}

/** The barrier-free variant: each invocation reads its rows' inputs and its columns' weights from storage. */
function directSource(dtype: VaeDtype, t: ConvTile, planar: boolean): string {
  const bm = t.wm * t.tm;
  const bn = t.wn * t.tn;
  const lines: string[] = [];
  const e = (l: string) => lines.push(l);
  for (let i = 0; i < t.tm; i++) {
    e(`  let mr${i} = mBase + ${i}u;`);
    e(`  let ok${i} = mr${i} < p.mEnd;`);
    e(`  let row${i} = packRow(min(mr${i}, p.rows - 1u));`);
    for (let j = 0; j < t.tn; j++) e(`  var acc${i}_${j} = 0.0;`);
  }
  const init = lines.splice(0).join('\n');
  for (let i = 0; i < t.tm; i++) {
    e(`    let tu${i} = clamp(i32((row${i} >> 22u) * p.st + dt) - padT, 0, i32(p.upFrames) - 1);`);
    e(`    let yu${i} = clamp(i32(((row${i} >> 11u) & 2047u) * p.ss + dy) - padS, 0, i32(p.upHeight) - 1);`);
    e(`    let xu${i} = clamp(i32((row${i} & 2047u) * p.ss + dx) - padS, 0, i32(p.upWidth) - 1);`);
    e(`    let ti${i} = ((u32(tu${i}) + p.upT) >> p.upT) - p.tiLo;`);
    e(`    let base${i} = select(0u, ((ti${i} * p.inH + (u32(yu${i}) >> p.upS)) * p.inW + (u32(xu${i}) >> p.upS)) * p.C + p.xBase, ok${i});`);
  }
  const bases = lines.splice(0).join('\n');
  for (let i = 0; i < t.tm; i++) {
    e(`      var a${i} = f32(x[base${i} + select(0u, c, ok${i})]);`);
    e(`      if (norm) { a${i} = a${i} * aff.x + aff.y; if (silu) { a${i} = a${i} / (1.0 + exp(-a${i})); } }`);
  }
  for (let j = 0; j < t.tn; j++) e(`      let b${j} = select(0.0, f32(w[k * p.N + min(n0 + ${j}u, p.N - 1u)]), n0 + ${j}u < p.N);`);
  for (let i = 0; i < t.tm; i++) for (let j = 0; j < t.tn; j++) e(`      acc${i}_${j} = fma(a${i}, b${j}, acc${i}_${j});`);
  const body = lines.splice(0).join('\n');
  for (let i = 0; i < t.tm; i++) for (let j = 0; j < t.tn; j++) e(`  store(mr${i}, n0 + ${j}u, acc${i}_${j});`);
  const stores = lines.splice(0).join('\n');
  return /* wgsl */ `${header(dtype, planar, bm, bn, t.bk)}
@compute @workgroup_size(${t.wm * t.wn})
fn main(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let mBase = p.mStart + wg.x * BM + (lid / ${t.wn}u) * ${t.tm}u;
  let n0 = wg.y * BN + (lid % ${t.wn}u) * ${t.tn}u;
  let norm = (p.flags & FLAG_NORM) != 0u;
  let silu = (p.flags & FLAG_SILU) != 0u;
  let padS = i32(p.ks / 2u);
  let padT = i32(p.kt) - 1;
  let ks2 = p.ks * p.ks;
${init}
  for (var tap = 0u; tap < p.kt * ks2; tap++) {
    let dt = tap / ks2;
    let rem = tap - dt * ks2;
    let dy = rem / p.ks;
    let dx = rem - dy * p.ks;
${bases}
    for (var c = 0u; c < p.C; c++) {
      let k = tap * p.C + c;
      var aff = vec2<f32>(1.0, 0.0);
      if (norm) { aff = affine[c]; }
${body}
    }
  }
${stores}
}
`;
}

// Runs the causal 3D VAE for the app, the CLI and check-reference: encode one frame to the posterior (FramePack's
// start latent is its mean × scaling factor), and decode latents exactly as diffusers 0.33.1 does by default —
// frame-wise temporal tiles of 5 latents every 3 (GroupNorm statistics per tile, 4-frame linear blend) — plus its
// spatial tiles (`enable_tiling()`: 256 px every 192, 64 px blend; in encode 8 latent px) where chosen.
// On WebGPU both networks run in our kernels (worker/vaeWebgpu.ts), and the spatial tiles are chosen from a memory
// budget (chooseSpatialTiling): none when a whole temporal tile fits it, diffusers' own tiles at FramePack's
// low-VRAM budget (6 GB), smaller ones below it, larger ones above it. On the wasm EP (and with kernels: 'ort')
// the ORT graphs of models/vae.ts run, tiled spatially only when a tile would pass the tensor limit, as before.

import { VaeInputError } from '../errors/engine.ts';
import type { BuiltGraph } from '../models/graph.ts';
import { buildVaeDecoder, buildVaeEncoder, decodedFrames, decoderPeakBytes, encoderPeakBytes, LOGVAR_RANGE, parseVaeConfig, type VaeConfig } from '../models/vae.ts';
import { numel, strides, type Tensor } from '../pipeline/tensor.ts';
import { GpuOutOfMemoryError } from '../errors/gpu.ts';
import { createSession, cpuTensor, sharedDevice, tensorData, type ExecutionProvider, type GraphSession, type OrtTensor } from '../runtime/ort.ts';
import { vaeDecoderLayers, vaeEncoderLayers } from '../models/vae.ts';
import { createVaeGpuRunner, vaeGpuLargestBuffer, vaeGpuPeakBytes, type LayerTiming, type VaeDispatchCounts, type VaeGpuRunner } from './vaeWebgpu.ts';
import { weightFeeds } from '../runtime/weightFeeds.ts';
import type { Checkpoint } from '../weights/checkpoint.ts';

/** diffusers' tile settings, in pixels and pixel frames (attributes of AutoencoderKLHunyuanVideo, not in config.json). */
export interface VaeTiling {
  /** tile_sample_min_num_frames: a temporal tile spans this ÷ temporal compression latents, plus one. */
  sampleFrames: number;
  /** tile_sample_stride_num_frames */
  sampleFrameStride: number;
  /** tile_sample_min_height = tile_sample_min_width */
  sampleSize: number;
  /** tile_sample_stride_height = tile_sample_stride_width */
  sampleStride: number;
}

export const DIFFUSERS_TILING: VaeTiling = { sampleFrames: 16, sampleFrameStride: 12, sampleSize: 256, sampleStride: 192 };

/** SwiftShader's maxStorageBufferBindingSize, the smallest of the devices we know; NVIDIA offers 2 GiB − 4. */
export const DEFAULT_MAX_TENSOR_BYTES = 2 ** 30;

/** FramePack's low-VRAM mode is its 6 GB mode: at this budget the decoder uses diffusers' own spatial tiles. */
export const LOW_VRAM_BUDGET_BYTES = 6e9;

/** Spatial tile sizes (pixels, stride ¾ of the size as diffusers' 256/192) tried above and below diffusers' own. */
export const LARGER_TILE_SIZES = [512, 384] as const;
export const SMALLER_TILE_SIZES = [192, 128, 64] as const;

export interface VaeOptions {
  provider: ExecutionProvider;
  /** Activation dtype (fp16 needs shader-f16 on WebGPU); inputs and outputs stay fp32. */
  dtype?: 'float32' | 'float16';
  /**
   * Largest single tensor one decoder call may create; a temporal tile past it is decoded in spatial tiles.
   * Pass the device's `limits.maxStorageBufferBindingSize` (GpuCapabilities). Default DEFAULT_MAX_TENSOR_BYTES.
   */
  maxTensorBytes?: number;
  /** Override diffusers' tile sizes (tests use small spatial tiles on the tiny model). */
  tiling?: Partial<VaeTiling>;
  /**
   * Spatial tiling on WebGPU: 'auto' (default) chooses the tiles from `memoryBudgetBytes`; 'on' is diffusers'
   * `enable_tiling()` with `tiling`'s sizes (FramePack's low-VRAM mode); 'off' never tiles spatially (its high-VRAM
   * mode). The wasm EP ignores it (spatial tiles only past the tensor limit).
   */
  spatialTiling?: 'auto' | 'on' | 'off';
  /** GPU bytes the VAE may hold (weights, activations, scratch) when choosing tiles; default LOW_VRAM_BUDGET_BYTES. */
  memoryBudgetBytes?: number;
  /** The device our kernels run on; default the one ORT shares (runtime/ort.ts sharedDevice). */
  device?: GPUDevice;
  /** 'ort' runs the ONNX graphs on WebGPU too (for comparison); default our kernels. */
  kernels?: 'ours' | 'ort';
  /** Issued FLOPs per dispatch (kernels/vaeCommon.ts); tests pass small values to split. */
  maxDispatchFlops?: number;
  /** Benches: every layer's dispatches with their GPU times; makes the runner wait after each layer. */
  onLayer?: (t: LayerTiming) => void;
}

export interface VaeEncoding {
  /** Posterior mean [1, L, 1, h, w]. */
  mean: Tensor;
  /** Posterior log-variance, clamped to [−30, 20]. */
  logvar: Tensor;
  /** mean × scaling_factor: the start latent (the reference samples the posterior with an unseeded RNG; its std is tiny). */
  latent: Tensor;
}

export interface DecodeProgress {
  /** Decoder calls finished and planned (temporal × spatial tiles). */
  done: number;
  total: number;
}

export interface Vae {
  config: VaeConfig;
  /** image [1, 3, 1, H, W] in [−1, 1]. Throws GpuOutOfMemoryError when the frame needs a tensor past the limit. */
  encode(image: Tensor): Promise<VaeEncoding>;
  /** Unscaled latents z [1, L, T, h, w] (what diffusers' decode takes) → pixels [1, 3, 4(T−1)+1, 8h, 8w]. */
  decode(z: Tensor, onProgress?: (p: DecodeProgress) => void): Promise<Tensor>;
  /** FramePack's vae_decode: scaled latents (the sampler's) ÷ scaling_factor, then decode. */
  decodeLatents(latents: Tensor, onProgress?: (p: DecodeProgress) => void): Promise<Tensor>;
  /** What runs the networks: our WebGPU kernels (with their dispatch counts) or ORT. */
  readonly backend: 'kernels' | 'ort';
  /** Dispatches of our kernels so far (zeros on ORT). */
  readonly dispatches: VaeDispatchCounts;
  /** The spatial tiling a decode of `shape` [1, L, T, h, w] uses (null: none) and its decoder calls. */
  decodeTiling(shape: readonly number[]): { spatial: VaeTiling | null; calls: number };
  /** The spatial tiling an encode of `shape` [1, 3, 1, H, W] uses (null: none). */
  encodeTiling(shape: readonly number[]): VaeTiling | null;
  release(): Promise<void>;
}

/** One graph with its session and weight feeds, made on first use. */
function lazyPart(build: () => BuiltGraph, checkpoint: Checkpoint, provider: ExecutionProvider) {
  let ready: Promise<{ session: GraphSession; weights: Record<string, OrtTensor> }> | null = null;
  return {
    async run(inputName: string, input: Tensor): Promise<Record<string, OrtTensor>> {
      ready ??= (async () => {
        const graph = build();
        const weights = await weightFeeds(graph, checkpoint);
        return { session: await createSession(graph, provider), weights };
      })();
      const { session, weights } = await ready;
      return session.run({ ...weights, [inputName]: cpuTensor('float32', input.data, input.shape) });
    },
    async release(): Promise<void> {
      if (!ready) return;
      const { session } = await ready;
      ready = null;
      await session.release();
    },
  };
}

async function f32(t: OrtTensor): Promise<Tensor> {
  return { data: Float32Array.from((await tensorData(t)) as Float32Array), shape: [...t.dims] };
}

/**
 * Opens the VAE of a checkpoint (its config.json and diffusion_pytorch_model.safetensors). Sessions and weight
 * feeds are made on first encode / decode and kept until release(). Throws VaeConfigError for an unknown config.
 */
export async function createVae(checkpoint: Checkpoint, options: VaeOptions): Promise<Vae> {
  const config = parseVaeConfig(checkpoint.config);
  const dtype = options.dtype ?? 'float32';
  const limit = options.maxTensorBytes ?? DEFAULT_MAX_TENSOR_BYTES;
  const tiling = { ...DIFFUSERS_TILING, ...options.tiling };
  const device = options.provider === 'webgpu' && options.kernels !== 'ort' ? (options.device ?? sharedDevice()) : null;
  if (device) return createKernelVae(checkpoint, config, device, dtype, tiling, options);
  const encoder = lazyPart(() => buildVaeEncoder(config, { dtype }), checkpoint, options.provider);
  const decoder = lazyPart(() => buildVaeDecoder(config, { dtype }), checkpoint, options.provider);

  const decodeWhole = async (z: Tensor): Promise<Tensor> => {
    const [, , frames, height, width] = z.shape;
    const bytes = decoderPeakBytes(config, { frames, height, width }, dtype);
    if (bytes > limit) throw new GpuOutOfMemoryError(`a VAE decoder tile of ${frames}×${height}×${width} latents`, bytes, limit);
    return f32((await decoder.run('z', z)).sample);
  };
  const tooLarge = (t: { frames: number; height: number; width: number }) => decoderPeakBytes(config, t, dtype) > limit;

  const decode = async (z: Tensor, onProgress?: (p: DecodeProgress) => void): Promise<Tensor> => {
    checkLatents(config, z);
    const plan = decodePlan(config, tiling, z.shape, tooLarge);
    return tiledDecode(z, plan, tiling, config, decodeWhole, onProgress);
  };

  return {
    config,
    backend: 'ort',
    dispatches: { conv: 0, groupNorm: 0, attention: 0 },
    decodeTiling(shape) {
      const plan = decodePlan(config, tiling, shape, tooLarge);
      return { spatial: plan.spatial ? tiling : null, calls: plan.calls };
    },
    encodeTiling: () => null,
    async encode(image) {
      const [, , height, width] = checkImage(config, image);
      const bytes = encoderPeakBytes(config, { height, width }, dtype);
      if (bytes > limit) throw new GpuOutOfMemoryError(`the VAE encoder at ${width}×${height} pixels`, bytes, limit);
      const out = await encoder.run('image', image);
      return { mean: await f32(out.mean), logvar: await f32(out.logvar), latent: await f32(out.latent) };
    },
    decode,
    decodeLatents: (latents, onProgress) => decode(unscale(config, latents), onProgress),
    async release() {
      await encoder.release();
      await decoder.release();
    },
  };
}

function checkLatents(config: VaeConfig, z: Tensor): void {
  if (z.shape.length !== 5 || z.shape[0] !== 1 || z.shape[1] !== config.latentChannels) {
    throw new VaeInputError(`VAE decode takes latents [1, ${config.latentChannels}, T, h, w], got [${z.shape}]; pass one video's latents in the reference layout.`);
  }
}

/** Returns [frames, channels, height, width] of a valid single-frame image. */
function checkImage(config: VaeConfig, image: Tensor): [number, number, number, number] {
  const [b, c, frames, height, width] = image.shape;
  if (image.shape.length !== 5 || b !== 1 || c !== config.inChannels || frames !== 1) {
    throw new VaeInputError(`VAE encode takes one frame [1, ${config.inChannels}, 1, H, W], got [${image.shape}]; encode frames one at a time.`);
  }
  return [frames, c, height, width];
}

/** FramePack's vae_decode input: the sampler's latents ÷ scaling_factor (torch divides float32 by float32). */
function unscale(config: VaeConfig, latents: Tensor): Tensor {
  const s = Math.fround(config.scalingFactor);
  return { data: latents.data.map((v) => v / s), shape: latents.shape };
}

/** diffusers' loops around one tile's decode: temporal tiles, each spatially tiled when the plan says so. */
function tiledDecode(z: Tensor, plan: { temporal: boolean; spatial: boolean; calls: number }, tiling: VaeTiling, config: VaeConfig, decodeTile: (z: Tensor) => Promise<Tensor>, onProgress?: (p: DecodeProgress) => void): Promise<Tensor> {
  let done = 0;
  const tile = async (zt: Tensor) => {
    const out = await decodeTile(zt);
    onProgress?.({ done: ++done, total: plan.calls });
    return out;
  };
  const temporalTile = (zt: Tensor) => (plan.spatial ? spatialTiledDecode(zt, tile, tiling, config.spatialCompression) : tile(zt));
  return plan.temporal ? temporalTiledDecode(z, temporalTile, tiling, config.temporalCompression) : temporalTile(z);
}

/**
 * The spatial tiling a budget affords, by the rule: none when a whole tile (`peak(null)`) fits; else, at or below
 * the low-VRAM budget, diffusers' own size and then smaller ones (192, 128, 64 px); above it, larger ones first
 * (512, 384 px) then diffusers'. Each size strides by ¾ of itself, as diffusers' 256/192. The first that fits wins;
 * when none does, the smallest (the caller's OOM check then reports it).
 */
export function chooseSpatialTiling(base: VaeTiling, budget: number, peak: (t: VaeTiling | null) => number): VaeTiling | null {
  if (peak(null) <= budget) return null;
  const sized = (size: number): VaeTiling => ({ ...base, sampleSize: size, sampleStride: (size * 3) / 4 });
  const sizes = [...(budget > LOW_VRAM_BUDGET_BYTES ? LARGER_TILE_SIZES : []), base.sampleSize, ...SMALLER_TILE_SIZES.filter((s) => s < base.sampleSize)];
  const candidates = sizes.map((s) => (s === base.sampleSize ? base : sized(s)));
  return candidates.find((t) => peak(t) <= budget) ?? candidates[candidates.length - 1];
}

/** The VAE on our WebGPU kernels (worker/vaeWebgpu.ts), tiles chosen from the memory budget. */
function createKernelVae(checkpoint: Checkpoint, config: VaeConfig, device: GPUDevice, dtype: 'float32' | 'float16', tiling: VaeTiling, options: VaeOptions): Vae {
  const kdtype = dtype === 'float16' ? 'f16' : 'f32';
  const runner: VaeGpuRunner = createVaeGpuRunner(device, (name) => checkpoint.f32(name), { dtype: kdtype, maxDispatchFlops: options.maxDispatchFlops, onLayer: options.onLayer });
  const decoderPlan = vaeDecoderLayers(config);
  const encoderPlan = vaeEncoderLayers(config);
  const budget = options.memoryBudgetBytes ?? LOW_VRAM_BUDGET_BYTES;
  const mode = options.spatialTiling ?? 'auto';
  // The largest buffer a tile may need: the device's, or the limit the caller plans against (a smaller GPU).
  const maxBuffer = Math.min(device.limits.maxBufferSize, options.maxTensorBytes ?? Number.MAX_SAFE_INTEGER);
  const s = config.spatialCompression;
  const tileLatents = Math.floor(tiling.sampleFrames / config.temporalCompression);

  /** Peak bytes of decoding a tile of the given latent size; Infinity where a buffer would pass maxBufferSize. */
  const decoderPeak = (frames: number, height: number, width: number) => {
    const input = { frames, height, width, channels: config.latentChannels };
    return vaeGpuLargestBuffer(decoderPlan, input, kdtype) > maxBuffer ? Number.POSITIVE_INFINITY : vaeGpuPeakBytes(decoderPlan, input, kdtype);
  };
  const decodeTiling = (shape: readonly number[]): { spatial: VaeTiling | null; calls: number } => {
    const [, , frames, height, width] = shape;
    const largest = frames > tileLatents ? Math.min(tileLatents + 1, frames) : frames;
    let spatial: VaeTiling | null;
    if (mode === 'off') spatial = null;
    else if (mode === 'on') spatial = tiling;
    else spatial = chooseSpatialTiling(tiling, budget, (t) => (t ? decoderPeak(largest, Math.min(height, t.sampleSize / s), Math.min(width, t.sampleSize / s)) : decoderPeak(largest, height, width)));
    const t = spatial ?? tiling;
    const plan = decodePlan(config, t, shape, () => spatial !== null);
    return { spatial: plan.spatial ? t : null, calls: plan.calls };
  };
  const encodeTiling = (shape: readonly number[]): VaeTiling | null => {
    const [, , , height, width] = shape;
    const peak = (h: number, w: number) => {
      const input = { frames: 1, height: h, width: w, channels: config.inChannels };
      return vaeGpuLargestBuffer(encoderPlan, input, kdtype) > maxBuffer ? Number.POSITIVE_INFINITY : vaeGpuPeakBytes(encoderPlan, input, kdtype);
    };
    let t: VaeTiling | null;
    if (mode === 'off') t = null;
    else if (mode === 'on') t = tiling;
    else t = chooseSpatialTiling(tiling, budget, (c) => (c ? peak(Math.min(height, c.sampleSize), Math.min(width, c.sampleSize)) : peak(height, width)));
    // diffusers' _encode: tiled only when the frame is larger than one tile.
    const chosen = t && (height > t.sampleSize || width > t.sampleSize) ? t : null;
    const tileH = chosen ? Math.min(height, chosen.sampleSize) : height;
    const tileW = chosen ? Math.min(width, chosen.sampleSize) : width;
    if (!Number.isFinite(peak(tileH, tileW))) {
      const bytes = vaeGpuLargestBuffer(encoderPlan, { frames: 1, height, width, channels: config.inChannels }, kdtype);
      throw new GpuOutOfMemoryError(`the VAE encoder at ${width}×${height} pixels`, bytes, maxBuffer);
    }
    return chosen;
  };
  const decodeTile = (z: Tensor) => runner.run(decoderPlan, z);
  const decode = async (z: Tensor, onProgress?: (p: DecodeProgress) => void): Promise<Tensor> => {
    checkLatents(config, z);
    const { spatial } = decodeTiling(z.shape);
    const t = spatial ?? tiling;
    const plan = decodePlan(config, t, z.shape, () => spatial !== null);
    const [, , frames, height, width] = z.shape;
    const largest = plan.temporal ? Math.min(tileLatents + 1, frames) : frames;
    const peak = plan.spatial ? decoderPeak(largest, Math.min(height, t.sampleSize / s), Math.min(width, t.sampleSize / s)) : decoderPeak(largest, height, width);
    if (!Number.isFinite(peak)) throw new GpuOutOfMemoryError(`a VAE decoder tile of ${largest}×${height}×${width} latents`, peak, maxBuffer);
    return tiledDecode(z, plan, t, config, decodeTile, onProgress);
  };
  return {
    config,
    backend: 'kernels',
    dispatches: runner.dispatches,
    decodeTiling,
    encodeTiling,
    async encode(image) {
      checkImage(config, image);
      const t = encodeTiling(image.shape);
      const moments = t ? await spatialTiledEncode(image, (x) => runner.run(encoderPlan, x), t, s) : await runner.run(encoderPlan, image);
      return posterior(config, moments);
    },
    decode,
    decodeLatents: (latents, onProgress) => decode(unscale(config, latents), onProgress),
    async release() {
      runner.release();
    },
  };
}

/** Posterior of the encoder's moments [1, 2L, 1, h, w]: mean, log-variance clamped to [−30, 20], mean × scaling factor (f32). */
function posterior(config: VaeConfig, moments: Tensor): VaeEncoding {
  const L = config.latentChannels;
  const [, , , h, w] = moments.shape;
  const n = L * h * w;
  const shape = [1, L, 1, h, w];
  const mean = moments.data.slice(0, n);
  const logvar = moments.data.slice(n, 2 * n).map((v) => Math.min(LOGVAR_RANGE[1], Math.max(LOGVAR_RANGE[0], v)));
  const sf = Math.fround(config.scalingFactor);
  return { mean: { data: mean, shape }, logvar: { data: logvar, shape }, latent: { data: mean.map((v) => v * sf), shape } };
}

/**
 * diffusers 0.33.1 `tiled_encode`: pixel tiles of sampleSize every sampleStride, each encoded alone to moments;
 * each blended with the (already blended) tile above, then the one to its left, over (sampleSize − sampleStride)/s
 * latent pixels; the top-left sampleStride/s of each kept; crop to H/s × W/s.
 */
export async function spatialTiledEncode(x: Tensor, encodeTile: (x: Tensor) => Promise<Tensor>, tiling: VaeTiling, spatialCompression: number): Promise<Tensor> {
  const [, , , height, width] = x.shape;
  const tileLatent = Math.floor(tiling.sampleSize / spatialCompression);
  const strideLatent = Math.floor(tiling.sampleStride / spatialCompression);
  return blendedTiles(x, encodeTile, {
    size: tiling.sampleSize, step: tiling.sampleStride, blend: tileLatent - strideLatent, keep: strideLatent,
    outHeight: Math.floor(height / spatialCompression), outWidth: Math.floor(width / spatialCompression),
  });
}

/**
 * Which tiling a decode of `shape` uses, and how many decoder calls it makes. Temporal tiling as diffusers' default
 * (more than sampleFrames/4 latents). Spatial tiling is diffusers' `enable_tiling()`, switched on here only when the
 * largest temporal tile would need a tensor past the limit; then, as in diffusers, it applies to every tile larger
 * than one spatial tile.
 */
export function decodePlan(
  config: VaeConfig,
  tiling: VaeTiling,
  shape: readonly number[],
  tooLarge: (tile: { frames: number; height: number; width: number }) => boolean,
): { temporal: boolean; spatial: boolean; calls: number } {
  const [, , frames, height, width] = shape;
  const tileLatents = Math.floor(tiling.sampleFrames / config.temporalCompression);
  const strideLatents = Math.floor(tiling.sampleFrameStride / config.temporalCompression);
  const temporal = frames > tileLatents;
  const largest = temporal ? Math.min(tileLatents + 1, frames) : frames;
  const spatialTile = Math.floor(tiling.sampleSize / config.spatialCompression);
  const spatial = tooLarge({ frames: largest, height, width }) && (height > spatialTile || width > spatialTile);
  const stride = Math.floor(tiling.sampleStride / config.spatialCompression);
  const perTemporalTile = spatial ? Math.ceil(height / stride) * Math.ceil(width / stride) : 1;
  const temporalTiles = temporal ? temporalTileStarts(frames, strideLatents).length : 1;
  return { temporal, spatial, calls: temporalTiles * perTemporalTile };
}

/** Starts of the temporal tiles that contribute frames: every stride; a 1-latent tile after the first adds none. */
function temporalTileStarts(frames: number, stride: number): number[] {
  const starts: number[] = [];
  for (let i = 0; i < frames; i += stride) if (i === 0 || frames - i > 1) starts.push(i);
  return starts;
}

// ---- Tensor plumbing for the tiling: [1, C, T, H, W] float32, axis 2 = frames, 3 = height, 4 = width. ----

/** t[..., start:end, ...] along `axis` (end clipped to the size, as Python slicing does). */
export function sliceAxis(t: Tensor, axis: number, start: number, end: number): Tensor {
  const size = t.shape[axis];
  const e = Math.min(end, size);
  const s = Math.min(start, e);
  const shape = [...t.shape];
  shape[axis] = e - s;
  const outer = numel(t.shape.slice(0, axis));
  const inner = numel(t.shape.slice(axis + 1));
  const out = new Float32Array(numel(shape));
  for (let o = 0; o < outer; o++) {
    out.set(t.data.subarray((o * size + s) * inner, (o * size + e) * inner), o * (e - s) * inner);
  }
  return { data: out, shape };
}

export function concatAxis(parts: Tensor[], axis: number): Tensor {
  const shape = [...parts[0].shape];
  shape[axis] = parts.reduce((n, p) => n + p.shape[axis], 0);
  const outer = numel(shape.slice(0, axis));
  const inner = numel(shape.slice(axis + 1));
  const out = new Float32Array(numel(shape));
  let offset = 0;
  for (let o = 0; o < outer; o++) {
    for (const p of parts) {
      const n = p.shape[axis] * inner;
      out.set(p.data.subarray(o * n, (o + 1) * n), offset);
      offset += n;
    }
  }
  return { data: out, shape };
}

/**
 * diffusers' blend_t / blend_v / blend_h, in place on b: for x < e = min(a's size, b's size, extent),
 * b[x] = a[−e + x]·(1 − x/e) + b[x]·(x/e) along `axis`, in float32 as torch computes it.
 */
export function blendAxis(a: Tensor, b: Tensor, axis: number, extent: number): void {
  const e = Math.min(a.shape[axis], b.shape[axis], extent);
  if (a.shape.some((n, d) => d !== axis && n !== b.shape[d])) throw new Error(`blend: tiles [${a.shape}] and [${b.shape}] differ off axis ${axis}`);
  const sa = strides(a.shape);
  const sb = strides(b.shape);
  const outer = numel(b.shape.slice(0, axis));
  const inner = numel(b.shape.slice(axis + 1));
  const f = Math.fround;
  for (let x = 0; x < e; x++) {
    const wa = f(1 - x / e);
    const wb = f(x / e);
    const ax = a.shape[axis] - e + x;
    for (let o = 0; o < outer; o++) {
      const ao = o * sa[axis] * a.shape[axis] + ax * sa[axis];
      const bo = o * sb[axis] * b.shape[axis] + x * sb[axis];
      for (let i = 0; i < inner; i++) b.data[bo + i] = f(f(a.data[ao + i] * wa) + f(b.data[bo + i] * wb));
    }
  }
}

/**
 * diffusers 0.33.1 `_temporal_tiled_decode`: tiles z[i : i + tileLatents + 1] for i = 0, stride, …; each later tile
 * drops its first decoded frame and is blended in place over `sampleFrames − sampleFrameStride` frames with the
 * (already blended) previous tile; tile 0 keeps stride + 1 frames, later tiles stride; crop to 4(T−1)+1.
 * A 1-latent tile after the first decodes to one frame that is dropped, so it is not decoded at all.
 */
export async function temporalTiledDecode(z: Tensor, decodeTile: (z: Tensor) => Promise<Tensor>, tiling: VaeTiling, temporalCompression: number): Promise<Tensor> {
  const frames = z.shape[2];
  const tileLatents = Math.floor(tiling.sampleFrames / temporalCompression);
  const strideLatents = Math.floor(tiling.sampleFrameStride / temporalCompression);
  const blend = tiling.sampleFrames - tiling.sampleFrameStride;
  const row: Tensor[] = [];
  for (const i of temporalTileStarts(frames, strideLatents)) {
    const decoded = await decodeTile(sliceAxis(z, 2, i, i + tileLatents + 1));
    row.push(i > 0 ? sliceAxis(decoded, 2, 1, decoded.shape[2]) : decoded);
  }
  const kept = row.map((tile, i) => {
    if (i === 0) return sliceAxis(tile, 2, 0, tiling.sampleFrameStride + 1);
    blendAxis(row[i - 1], tile, 2, blend);
    return sliceAxis(tile, 2, 0, tiling.sampleFrameStride);
  });
  return sliceAxis(concatAxis(kept, 2), 2, 0, (frames - 1) * temporalCompression + 1);
}

/**
 * diffusers 0.33.1 `tiled_decode`: latent tiles of sampleSize/s every sampleStride/s in H and W, each decoded
 * alone; each tile is blended in place with the (already blended) tile above, then the one to its left, over
 * sampleSize − sampleStride pixels; the top-left sampleStride² of every tile is kept; crop to 8h × 8w.
 */
export async function spatialTiledDecode(z: Tensor, decodeTile: (z: Tensor) => Promise<Tensor>, tiling: VaeTiling, spatialCompression: number): Promise<Tensor> {
  const [, , , height, width] = z.shape;
  return blendedTiles(z, decodeTile, {
    size: Math.floor(tiling.sampleSize / spatialCompression), step: Math.floor(tiling.sampleStride / spatialCompression),
    blend: tiling.sampleSize - tiling.sampleStride, keep: tiling.sampleStride,
    outHeight: height * spatialCompression, outWidth: width * spatialCompression,
  });
}

/**
 * The spatial tiling both of diffusers' directions share: input tiles of `size` every `step` in H and W, each run
 * alone; each output tile blended in place with the (already blended) tile above, then the one to its left, over
 * `blend` output pixels; the top-left `keep` × `keep` of every tile kept; the whole cropped to outHeight × outWidth.
 */
async function blendedTiles(
  x: Tensor,
  run: (tile: Tensor) => Promise<Tensor>,
  g: { size: number; step: number; blend: number; keep: number; outHeight: number; outWidth: number },
): Promise<Tensor> {
  const [, , , height, width] = x.shape;
  const rows: Tensor[][] = [];
  for (let i = 0; i < height; i += g.step) {
    const row: Tensor[] = [];
    for (let j = 0; j < width; j += g.step) row.push(await run(sliceAxis(sliceAxis(x, 3, i, i + g.size), 4, j, j + g.size)));
    rows.push(row);
  }
  const resultRows = rows.map((row, i) =>
    concatAxis(
      row.map((t, j) => {
        if (i > 0) blendAxis(rows[i - 1][j], t, 3, g.blend);
        if (j > 0) blendAxis(row[j - 1], t, 4, g.blend);
        return sliceAxis(sliceAxis(t, 3, 0, g.keep), 4, 0, g.keep);
      }),
      4,
    ),
  );
  const out = concatAxis(resultRows, 3);
  return sliceAxis(sliceAxis(out, 3, 0, g.outHeight), 4, 0, g.outWidth);
}

export { decodedFrames };

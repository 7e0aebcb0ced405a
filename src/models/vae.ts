// The HunyuanVideo causal 3D VAE (`AutoencoderKLHunyuanVideo`, diffusers 0.33.1; framepack-reference.md §4) as two
// graphs built from its config.json: the encoder (pixels → posterior mean, clamped log-variance and the scaled
// latent) and the decoder (unscaled latents → pixels). Every size comes from the config, so the 8-channel test model
// and the real 128…512-channel one are one description.
//
// Export choices, made for onnxruntime-web's WebGPU EP (its Conv3D is slow and it has no 3-D ConvTranspose):
// - Activations inside the graphs are laid out [T, C, H, W], frames in the batch axis, so every conv is a 2-D Conv.
// - A causal 3×3×3 conv is the sum of three 2-D convs, one per temporal tap k, each over the input frames that tap
//   reads: replicate padding in time means output frame t at tap k reads frame max(0, s·t + k − 2), a Gather along
//   the batch axis. H and W are padded once with Pad mode 'edge' (= replicate). The largest tensor is then the size
//   of the activation itself, not three times it (a channel-stacked single conv would need 3× — at the real decoder
//   that is past WebGPU's 2 GiB binding limit even in 256-pixel tiles).
// - Nearest upsampling: frame duplication is a Gather with indices ⌊(o+1)/2⌋ (the first frame once, the others
//   twice, exactly the reference's split-and-concat), the spatial ×2 is Resize nearest. No ConvTranspose anywhere.
// - GroupNorm is composed (Reshape [T, G, −1] + two-stage ReduceMean in fp32): its statistics span all frames of
//   the [T, C, H, W] layout, so InstanceNormalization does not fit, and ONNX's GroupNormalization (opset 21) has no
//   kernel in ORT's WebGPU EP (its nn/ kernels are batch, instance, layer and RMS norms).
// - The mid-block attention is one head of width C over all T·H·W tokens with a frame-causal additive mask built in
//   the graph from the input's shape.
// - The encoder graph takes one frame (all FramePack encodes): its taps then all read that frame, so each causal
//   conv is a single 2-D conv with the kernel summed over time — a third of the work, and no index tensors.
// The decoder's frames, height and width are symbolic, so one session serves every tile size.
// The same two networks are also described as layer lists (vaeDecoderLayers / vaeEncoderLayers, at the end), one
// kernel call per layer, which our WebGPU kernels run (worker/vaeWebgpu.ts); the graphs serve the wasm EP.

import { VaeConfigError } from '../errors/models.ts';
import { Graph, type BuiltGraph } from './graph.ts';
import type { OnnxDType } from './onnxProto.ts';
import { attention, inputName, linear, silu, toActivation, toFloat32 } from './ops.ts';

export interface VaeConfig {
  inChannels: number;
  outChannels: number;
  latentChannels: number;
  /** Encoder block widths; the decoder uses them reversed. */
  blockOutChannels: number[];
  layersPerBlock: number;
  normGroups: number;
  scalingFactor: number;
  spatialCompression: number;
  temporalCompression: number;
  midBlockAttention: boolean;
}

/** GroupNorm epsilon of every norm in this VAE (fixed in diffusers, not in the config). */
export const VAE_NORM_EPS = 1e-6;
/** The posterior's log-variance is clamped to this range (diffusers' DiagonalGaussianDistribution). */
export const LOGVAR_RANGE = [-30, 20] as const;

function int(json: Record<string, unknown>, key: string, fallback?: number): number {
  const v = json[key] ?? fallback;
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 1) throw new VaeConfigError(`${key} must be a positive integer, got ${JSON.stringify(v)}`);
  return v;
}

function isPowerOfTwo(n: number): boolean {
  return Number.isInteger(Math.log2(n));
}

/**
 * Reads a diffusers AutoencoderKLHunyuanVideo config.json; missing keys take diffusers' defaults.
 * Throws VaeConfigError for anything diffusers itself would refuse or this builder does not implement.
 */
export function parseVaeConfig(json: Record<string, unknown>): VaeConfig {
  const blocks = json.block_out_channels ?? [128, 256, 512, 512];
  if (!Array.isArray(blocks) || blocks.length < 2 || !blocks.every((c) => Number.isInteger(c) && c > 0)) {
    throw new VaeConfigError(`block_out_channels must list at least two positive integers, got ${JSON.stringify(blocks)}`);
  }
  const blockOutChannels = blocks as number[];
  for (const [key, want] of [['down_block_types', 'HunyuanVideoDownBlock3D'], ['up_block_types', 'HunyuanVideoUpBlock3D']] as const) {
    const types = json[key];
    if (types === undefined) continue;
    if (!Array.isArray(types) || types.length !== blockOutChannels.length || types.some((t) => t !== want)) {
      throw new VaeConfigError(`${key} must be ${blockOutChannels.length} × "${want}", got ${JSON.stringify(types)}`);
    }
  }
  const act = json.act_fn ?? 'silu';
  if (act !== 'silu' && act !== 'swish') throw new VaeConfigError(`act_fn must be "silu", got ${JSON.stringify(act)}`);
  const normGroups = int(json, 'norm_num_groups', 32);
  for (const c of blockOutChannels) if (c % normGroups) throw new VaeConfigError(`block width ${c} is not a multiple of norm_num_groups ${normGroups}`);
  const temporalCompression = int(json, 'temporal_compression_ratio', 4);
  // diffusers' decoder only exists for temporal compression 4.
  if (temporalCompression !== 4) throw new VaeConfigError(`temporal_compression_ratio must be 4, got ${temporalCompression}`);
  const spatialCompression = int(json, 'spatial_compression_ratio', 8);
  if (!isPowerOfTwo(spatialCompression) || Math.log2(spatialCompression) > blockOutChannels.length - 1) {
    throw new VaeConfigError(`spatial_compression_ratio ${spatialCompression} needs a power of two ≤ 2^${blockOutChannels.length - 1}`);
  }
  const scalingFactor = json.scaling_factor ?? 0.476986;
  if (typeof scalingFactor !== 'number' || !(scalingFactor > 0)) throw new VaeConfigError(`scaling_factor must be positive, got ${JSON.stringify(scalingFactor)}`);
  const shift = json.shift_factor;
  if (shift !== undefined && shift !== null && shift !== 0) throw new VaeConfigError(`shift_factor is not supported (got ${JSON.stringify(shift)})`);
  return {
    inChannels: int(json, 'in_channels', 3),
    outChannels: int(json, 'out_channels', 3),
    latentChannels: int(json, 'latent_channels', 16),
    blockOutChannels,
    layersPerBlock: int(json, 'layers_per_block', 2),
    normGroups,
    scalingFactor,
    spatialCompression,
    temporalCompression,
    midBlockAttention: json.mid_block_add_attention !== false,
  };
}

/** Time and space factor of one down/up sampler, or null where the block has none. */
export interface Resample {
  time: 1 | 2;
  space: 1 | 2;
}

/** diffusers' rule for temporal compression 4: space in the first log2(s) blocks, time in the ones before the last. */
function resampleOf(config: VaeConfig, i: number): Resample | null {
  const n = config.blockOutChannels.length;
  const space = i < Math.log2(config.spatialCompression);
  const time = i >= n - 1 - Math.log2(config.temporalCompression) && i !== n - 1;
  return space || time ? { time: time ? 2 : 1, space: space ? 2 : 1 } : null;
}

/** Per encoder down block: the downsampler's strides. */
export function downsamplers(config: VaeConfig): (Resample | null)[] {
  return config.blockOutChannels.map((_, i) => resampleOf(config, i));
}

/** Per decoder up block: the upsampler's factors (same rule as the encoder, in the decoder's block order). */
export function upsamplers(config: VaeConfig): (Resample | null)[] {
  return config.blockOutChannels.map((_, i) => resampleOf(config, i));
}

export interface VaeBuildOptions {
  /** Activation dtype; norms and the attention softmax run in fp32 either way. Inputs and outputs are fp32. */
  dtype?: 'float32' | 'float16';
}

/** The builder's view of the [T, C, H, W] activation: the value and a scalar int64 holding its frame count. */
interface Act {
  x: string;
  frames: string;
}

/**
 * Graph plus memo of the small int64 index tensors, shared by all convs at one frame count. `singleFrame` graphs
 * (the encoder) know T = 1 statically: every temporal tap then reads frame 0, so a causal conv is one 2-D conv with
 * the kernel summed over its taps, GroupNorm needs no cross-frame stage and attention no mask.
 */
class VaeGraph {
  private memo = new Map<string, string>();
  constructor(readonly g: Graph, readonly singleFrame: boolean) {}

  once(key: string, make: () => string): string {
    let v = this.memo.get(key);
    if (!v) this.memo.set(key, (v = make()));
    return v;
  }

  /** Input frames read by temporal tap k of a stride-s causal conv: max(0, s·t + k − 2) for each output frame t. */
  tapFrames(frames: string, stride: number, k: number): string {
    return this.once(`tap:${frames}:${stride}:${k}`, () => {
      const g = this.g;
      const outFrames = stride === 1 ? frames : this.outFrames(frames, stride);
      let idx = g.op('Range', [g.constant([0], 'int64', []), outFrames, g.constant([1], 'int64', [])]);
      if (stride !== 1) idx = g.op('Mul', [idx, g.constant([stride], 'int64', [])]);
      return g.op('Max', [g.op('Add', [idx, g.constant([k - 2], 'int64', [])]), g.constant([0], 'int64', [])]);
    });
  }

  /** ⌊(T + 2 − 3)/s⌋ + 1 output frames of a causal conv with time stride s. */
  outFrames(frames: string, stride: number): string {
    return this.once(`out:${frames}:${stride}`, () => {
      const g = this.g;
      const minus1 = g.op('Sub', [frames, g.constant([1], 'int64', [])]);
      return g.op('Add', [g.op('Div', [minus1, g.constant([stride], 'int64', [])]), g.constant([1], 'int64', [])]);
    });
  }
}

/** Conv weight of a 3-D checkpoint conv [O, C, kt, kh, kw] as a graph input. */
function convWeight(vg: VaeGraph, prefix: string, inC: number, outC: number, kernel: number): { w: string; b: string } {
  const g = vg.g;
  const n = inputName(prefix);
  return {
    w: g.weight(`${n}_weight`, `${prefix}.weight`, [outC, inC, kernel, kernel, kernel]),
    b: g.weight(`${n}_bias`, `${prefix}.bias`, [outC]),
  };
}

/**
 * HunyuanVideoCausalConv3d with kernel 3 (replicate pad: 2 frames in front, 1 pixel each side; then stride
 * (st, ss, ss)) or kernel 1 (no padding). `prefix` is the checkpoint prefix of its `.weight`/`.bias`.
 */
function causalConv(vg: VaeGraph, a: Act, prefix: string, inC: number, outC: number, kernel: 1 | 3, stride: Resample = { time: 1, space: 1 }): Act {
  const g = vg.g;
  const { w, b } = convWeight(vg, prefix, inC, outC, kernel);
  if (kernel === 1) {
    const w2 = g.op('Squeeze', [w, g.ints([2])]); // [O, C, 1, 1]
    return { x: g.op('Conv', [a.x, w2, b]), frames: a.frames };
  }
  const padded = g.op('Pad', [a.x, g.ints([0, 0, 1, 1, 0, 0, 1, 1])], { mode: 'edge' }); // [T, C, H+2, W+2]
  const strides = [stride.space, stride.space];
  if (vg.singleFrame) {
    // One frame: the two replicated frames in front are frame 0 too, so the three taps share their input.
    const summed = g.op('ReduceSum', [w, g.ints([2])], { keepdims: 0 }); // [O, C, 3, 3]
    return { x: g.op('Conv', [padded, summed, b], { strides }), frames: a.frames };
  }
  let y = '';
  // Taps 2, 1, 0: tap 2 at time stride 1 reads the input frames as they are.
  for (const k of [2, 1, 0]) {
    const wk = g.op('Gather', [w, g.constant([k], 'int64', [])], { axis: 2 }); // [O, C, 3, 3]
    const xk = stride.time === 1 && k === 2 ? padded : g.op('Gather', [padded, vg.tapFrames(a.frames, stride.time, k)], { axis: 0 });
    const yk = g.op('Conv', k === 2 ? [xk, wk, b] : [xk, wk], { strides });
    y = y ? g.op('Add', [y, yk]) : yk;
  }
  return { x: y, frames: stride.time === 1 ? a.frames : vg.outFrames(a.frames, stride.time) };
}

/** GroupNorm over (C/G channels × all frames × H × W) per group, in fp32, with the checkpoint's affine. */
function groupNorm(vg: VaeGraph, x: string, prefix: string, channels: number, groups: number): string {
  const g = vg.g;
  const xf = toFloat32(g, x);
  const r = g.op('Reshape', [xf, g.ints([0, groups, -1])]); // [T, G, C/G·H·W]
  // Per frame first (T·G parallel reductions), then over frames: every frame holds as many elements, so the mean
  // of the per-frame means is the mean.
  const meanOf = (v: string) => {
    const perFrame = g.op('ReduceMean', [v, g.ints([2])], { keepdims: 1 });
    return vg.singleFrame ? perFrame : g.op('ReduceMean', [perFrame, g.ints([0])], { keepdims: 1 });
  };
  const d = g.op('Sub', [r, meanOf(r)]);
  const std = g.op('Sqrt', [g.op('Add', [meanOf(g.op('Mul', [d, d])), g.scalar(VAE_NORM_EPS)])]);
  const normed = g.op('Reshape', [g.op('Div', [d, std]), g.op('Shape', [x])]);
  const n = inputName(prefix);
  const perChannel = (v: string) => g.op('Unsqueeze', [v, g.ints([1, 2])]); // [C] → [C, 1, 1]
  const gamma = perChannel(g.weight(`${n}_weight`, `${prefix}.weight`, [channels], 'asis', 'float32'));
  const beta = perChannel(g.weight(`${n}_bias`, `${prefix}.bias`, [channels], 'asis', 'float32'));
  return toActivation(g, g.op('Add', [g.op('Mul', [normed, gamma]), beta]));
}

/** HunyuanVideoResnetBlockCausal3D: GN → SiLU → conv → GN → SiLU → conv, plus a 1×1×1 shortcut when widths differ. */
function resnet(vg: VaeGraph, a: Act, prefix: string, inC: number, outC: number, groups: number): Act {
  let h = silu(vg.g, groupNorm(vg, a.x, `${prefix}.norm1`, inC, groups));
  h = causalConv(vg, { x: h, frames: a.frames }, `${prefix}.conv1.conv`, inC, outC, 3).x;
  h = silu(vg.g, groupNorm(vg, h, `${prefix}.norm2`, outC, groups));
  h = causalConv(vg, { x: h, frames: a.frames }, `${prefix}.conv2.conv`, outC, outC, 3).x;
  const residual = inC === outC ? a.x : causalConv(vg, a, `${prefix}.conv_shortcut.conv`, inC, outC, 1).x;
  return { x: vg.g.op('Add', [h, residual]), frames: a.frames };
}

/**
 * The mid-block attention: GroupNorm, then one head of width C over the T·H·W tokens (frame-major order), where a
 * token of frame i sees every token of frames ≤ i; to_out, residual add.
 */
function midAttention(vg: VaeGraph, a: Act, prefix: string, channels: number, groups: number): Act {
  const g = vg.g;
  const h = groupNorm(vg, a.x, `${prefix}.group_norm`, channels, groups);
  const grid = g.op('Transpose', [h], { perm: [0, 2, 3, 1] }); // [T, H, W, C]
  const tokens = g.op('Reshape', [grid, g.ints([1, -1, channels])]); // [1, N, C]
  const head = (name: string) => g.op('Unsqueeze', [linear(g, tokens, `${prefix}.${name}`, channels, channels), g.ints([1])]); // [1, 1, N, C]
  const o = attention(g, head('to_q'), head('to_k'), head('to_v'), channels, vg.singleFrame ? null : frameCausalMask(g, grid));
  const out = linear(g, g.op('Reshape', [o, g.ints([1, -1, channels])]), `${prefix}.to_out.0`, channels, channels);
  const back = g.op('Transpose', [g.op('Reshape', [out, g.op('Shape', [grid])])], { perm: [0, 3, 1, 2] });
  return { x: g.op('Add', [back, a.x]), frames: a.frames };
}

/** Additive fp32 mask [N, N]: 0 where the key's frame ≤ the query's frame, −inf elsewhere (diffusers' causal mask). */
function frameCausalMask(g: Graph, grid: string): string {
  const shape = g.op('Shape', [grid]); // [T, H, W, C]
  const dim = (i: number) => g.op('Gather', [shape, g.constant([i], 'int64', [])], { axis: 0 });
  const perFrame = g.op('Mul', [dim(1), dim(2)]);
  const count = g.op('Mul', [dim(0), perFrame]);
  const token = g.op('Range', [g.constant([0], 'int64', []), count, g.constant([1], 'int64', [])]);
  const frame = g.op('Cast', [g.op('Div', [token, perFrame])], { to: 1 }); // [N] float: small integers, exact
  const later = g.op('Greater', [g.op('Unsqueeze', [frame, g.ints([0])]), g.op('Unsqueeze', [frame, g.ints([1])])]); // key > query
  return g.op('Where', [later, g.constant([-Infinity], 'float32', []), g.constant([0], 'float32', [])]);
}

function midBlock(vg: VaeGraph, a: Act, prefix: string, config: VaeConfig): Act {
  const c = config.blockOutChannels[config.blockOutChannels.length - 1];
  a = resnet(vg, a, `${prefix}.resnets.0`, c, c, config.normGroups);
  if (config.midBlockAttention) a = midAttention(vg, a, `${prefix}.attentions.0`, c, config.normGroups);
  return resnet(vg, a, `${prefix}.resnets.1`, c, c, config.normGroups);
}

/** HunyuanVideoUpsampleCausal3D: nearest ×(t, s, s) keeping the first frame single, then a causal conv. */
function upsample(vg: VaeGraph, a: Act, prefix: string, channels: number, factor: Resample): Act {
  const g = vg.g;
  let { x, frames } = a;
  if (factor.time === 2) {
    // Output frame o reads input frame ⌊(o+1)/2⌋: 0, 1, 1, 2, 2, … — 2T − 1 frames.
    const outFrames = g.op('Sub', [g.op('Mul', [frames, g.constant([2], 'int64', [])]), g.constant([1], 'int64', [])]);
    const idx = g.op('Div', [g.op('Range', [g.constant([1], 'int64', []), g.op('Add', [outFrames, g.constant([1], 'int64', [])]), g.constant([1], 'int64', [])]), g.constant([2], 'int64', [])]);
    x = g.op('Gather', [x, idx], { axis: 0 });
    frames = outFrames;
  }
  if (factor.space === 2) {
    x = g.op('Resize', [x, '', g.constant([1, 1, 2, 2])], { mode: 'nearest', coordinate_transformation_mode: 'asymmetric', nearest_mode: 'floor' });
  }
  return causalConv(vg, { x, frames }, `${prefix}.conv.conv`, channels, channels, 3);
}

/** [1, C, T, H, W] fp32 graph input → [T, C, H, W] activation with its frame count. */
function fromReference(vg: VaeGraph, input: string): Act {
  const g = vg.g;
  const x = toActivation(g, g.op('Transpose', [g.op('Squeeze', [input, g.ints([0])])], { perm: [1, 0, 2, 3] }));
  const frames = g.op('Gather', [g.op('Shape', [x]), g.constant([0], 'int64', [])], { axis: 0 });
  return { x, frames };
}

/** [T, C, H, W] activation → [1, C, T, H, W] fp32. */
function toReference(g: Graph, x: string): string {
  return g.op('Unsqueeze', [g.op('Transpose', [toFloat32(g, x)], { perm: [1, 0, 2, 3] }), g.ints([0])]);
}

/**
 * The encoder graph, for one frame (FramePack encodes single images: the start frame, an end frame). Input `image`
 * [1, in, 1, H, W] fp32 in [−1, 1]; outputs fp32 [1, latent, 1, H/s, W/s]: `mean`, `logvar` (clamped to
 * [−30, 20]) and `latent` = mean × scaling_factor (what FramePack's vae_encode returns when the posterior mean is
 * used instead of a sample).
 */
export function buildVaeEncoder(config: VaeConfig, options: VaeBuildOptions = {}): BuiltGraph {
  const dtype: OnnxDType = options.dtype ?? 'float32';
  const g = new Graph('vae_encoder', dtype);
  const vg = new VaeGraph(g, true);
  const { blockOutChannels: widths, normGroups: groups, layersPerBlock } = config;
  const image = g.input('image', 'float32', [1, config.inChannels, 1, 'height', 'width']);
  let a = causalConv(vg, fromReference(vg, image), 'encoder.conv_in.conv', config.inChannels, widths[0], 3);
  let c = widths[0];
  downsamplers(config).forEach((down, i) => {
    for (let j = 0; j < layersPerBlock; j++) {
      a = resnet(vg, a, `encoder.down_blocks.${i}.resnets.${j}`, c, widths[i], groups);
      c = widths[i];
    }
    if (down) a = causalConv(vg, a, `encoder.down_blocks.${i}.downsamplers.0.conv.conv`, c, c, 3, down);
  });
  a = midBlock(vg, a, 'encoder.mid_block', config);
  let h = silu(g, groupNorm(vg, a.x, 'encoder.conv_norm_out', c, groups));
  const moments = 2 * config.latentChannels;
  h = causalConv(vg, { x: h, frames: a.frames }, 'encoder.conv_out.conv', c, moments, 3).x;
  h = causalConv(vg, { x: h, frames: a.frames }, 'quant_conv', moments, moments, 1).x;
  const params = toReference(g, h); // [1, 2L, T', h, w]
  const L = config.latentChannels;
  const mean = g.op('Slice', [params, g.ints([0]), g.ints([L]), g.ints([1])]);
  const logvar = g.op('Clip', [g.op('Slice', [params, g.ints([L]), g.ints([2 * L]), g.ints([1])]), g.scalar(LOGVAR_RANGE[0]), g.scalar(LOGVAR_RANGE[1])]);
  const latent = g.op('Mul', [mean, g.scalar(config.scalingFactor)]);
  const outShape = [1, L, 1, 'latent_height', 'latent_width'];
  g.output(mean, 'mean', 'float32', outShape);
  g.output(logvar, 'logvar', 'float32', outShape);
  g.output(latent, 'latent', 'float32', outShape);
  return g.build();
}

/**
 * The decoder graph. Input `z` [1, latent, T, h, w] fp32, unscaled (latents ÷ scaling_factor, what diffusers'
 * `decode` takes); output `sample` [1, out, 4(T−1)+1, h·s, w·s] fp32. One call decodes one tile: GroupNorm
 * statistics span exactly the frames and pixels given, as in the reference's per-tile decode.
 */
export function buildVaeDecoder(config: VaeConfig, options: VaeBuildOptions = {}): BuiltGraph {
  const dtype: OnnxDType = options.dtype ?? 'float32';
  const g = new Graph('vae_decoder', dtype);
  const vg = new VaeGraph(g, false);
  const { normGroups: groups, layersPerBlock, latentChannels: L } = config;
  const widths = [...config.blockOutChannels].reverse();
  const z = g.input('z', 'float32', [1, L, 'frames', 'height', 'width']);
  let a = causalConv(vg, fromReference(vg, z), 'post_quant_conv', L, L, 1);
  a = causalConv(vg, a, 'decoder.conv_in.conv', L, widths[0], 3);
  a = midBlock(vg, a, 'decoder.mid_block', config);
  let c = widths[0];
  upsamplers(config).forEach((up, i) => {
    for (let j = 0; j < layersPerBlock + 1; j++) {
      a = resnet(vg, a, `decoder.up_blocks.${i}.resnets.${j}`, c, widths[i], groups);
      c = widths[i];
    }
    if (up) a = upsample(vg, a, `decoder.up_blocks.${i}.upsamplers.0`, c, up);
  });
  const h = silu(g, groupNorm(vg, a.x, 'decoder.conv_norm_out', c, groups));
  const out = causalConv(vg, { x: h, frames: a.frames }, 'decoder.conv_out.conv', c, config.outChannels, 3).x;
  g.output(toReference(g, out), 'sample', 'float32', [1, config.outChannels, 'pixel_frames', 'pixel_height', 'pixel_width']);
  return g.build();
}

/** Frame count after the decoder: 4(T−1)+1 for temporal compression 4. */
export function decodedFrames(config: VaeConfig, latentFrames: number): number {
  return (latentFrames - 1) * config.temporalCompression + 1;
}

/**
 * The largest single tensor (bytes) one decoder call creates for a [1, L, frames, height, width] latent tile: the
 * padded conv inputs and outputs, the fp32 GroupNorm copies, the attention's fp32 N×N scores and mask, the
 * upsampled activations. A WebGPU binding must hold each of them, so the runner tiles spatially when this exceeds
 * the device's maxStorageBufferBindingSize. It walks the same block structure as buildVaeDecoder.
 */
export function decoderPeakBytes(config: VaeConfig, tile: { frames: number; height: number; width: number }, dtype: 'float32' | 'float16' = 'float32'): number {
  const act = dtype === 'float16' ? 2 : 4;
  let { frames: t, height: h, width: w } = tile;
  let peak = 0;
  const see = (elements: number, bytes: number) => (peak = Math.max(peak, elements * bytes));
  const conv = (inC: number, outC: number) => {
    see(t * inC * (h + 2) * (w + 2), act);
    see(t * outC * h * w, act);
  };
  const norm = (c: number) => see(t * c * h * w, 4);
  const res = (inC: number, outC: number) => {
    norm(inC);
    conv(inC, outC);
    norm(outC);
    conv(outC, outC);
  };
  const widths = [...config.blockOutChannels].reverse();
  see(t * config.latentChannels * h * w, 4);
  conv(config.latentChannels, widths[0]);
  res(widths[0], widths[0]);
  if (config.midBlockAttention) {
    norm(widths[0]);
    const n = t * h * w;
    see(n * n, 4);
  }
  res(widths[0], widths[0]);
  let c = widths[0];
  upsamplers(config).forEach((up, i) => {
    for (let j = 0; j < config.layersPerBlock + 1; j++) {
      res(c, widths[i]);
      c = widths[i];
    }
    if (up) {
      t = up.time === 2 ? 2 * t - 1 : t;
      see(t * c * h * w, act);
      h *= up.space;
      w *= up.space;
      conv(c, c);
    }
  });
  norm(c);
  conv(c, config.outChannels);
  see(t * config.outChannels * h * w, 4);
  return peak;
}

/** The largest single tensor (bytes) the single-frame encoder creates for an [1, in, 1, height, width] image. */
export function encoderPeakBytes(config: VaeConfig, image: { height: number; width: number }, dtype: 'float32' | 'float16' = 'float32'): number {
  const act = dtype === 'float16' ? 2 : 4;
  let { height: h, width: w } = image;
  let peak = config.inChannels * h * w * 4;
  const see = (elements: number, bytes: number) => (peak = Math.max(peak, elements * bytes));
  const conv = (inC: number, outC: number, down: Resample | null = null) => {
    see(inC * (h + 2) * (w + 2), act);
    if (down) {
      h = Math.floor((h - 1) / down.space) + 1;
      w = Math.floor((w - 1) / down.space) + 1;
    }
    see(outC * h * w, act);
  };
  const norm = (c: number) => see(c * h * w, 4);
  let c = config.blockOutChannels[0];
  conv(config.inChannels, c);
  downsamplers(config).forEach((down, i) => {
    for (let j = 0; j < config.layersPerBlock; j++) {
      norm(c);
      conv(c, config.blockOutChannels[i]);
      c = config.blockOutChannels[i];
      norm(c);
      conv(c, c);
    }
    if (down) conv(c, c, down);
  });
  norm(c);
  if (config.midBlockAttention) see((h * w) ** 2, 4);
  conv(c, 2 * config.latentChannels);
  return peak;
}

// ---- The same networks as layer lists, for our WebGPU kernels (src/kernels/vaeConv.ts, vaeGroupNorm.ts,
// vaeAttention.ts; run by src/worker/vaeWebgpu.ts). Values are channels-last [T, H, W, C] activations named by
// string; every layer is one kernel call. Same block walk as the graphs above. ----

/** GroupNorm statistics of `input` with the checkpoint's `${prefix}.weight/.bias`, as a per-channel affine. */
export interface VaeNormLayer {
  op: 'norm';
  /** Name of the affine this layer makes (read by a conv's `norm`). */
  name: string;
  input: string;
  prefix: string;
  channels: number;
  groups: number;
}

/** One causal conv (or 1×1×1 conv / stacked linears) as an implicit GEMM. */
export interface VaeConvLayer {
  op: 'conv';
  input: string;
  output: string;
  /** Checkpoint prefixes of `.weight` [O, C, k, k, k] (or Linear [O, C]) and `.bias`; several are stacked along O. */
  weights: string[];
  inChannels: number;
  outChannels: number;
  kernel: 1 | 3;
  stride?: Resample;
  up?: Resample;
  /** The affine of a norm layer applied on load, then SiLU if `silu`. */
  norm?: string;
  silu?: boolean;
  residual?: string;
  /** Planar f32 [C, T, H, W] output (the network's last layer, read back as the reference's layout). */
  planar?: boolean;
}

/** Frame-causal single-head attention over the stacked q/k/v [N, 3C] of `input`. */
export interface VaeAttentionLayer {
  op: 'attention';
  input: string;
  output: string;
  channels: number;
}

export type VaeLayer = VaeNormLayer | VaeConvLayer | VaeAttentionLayer;

export interface VaeLayerPlan {
  name: 'encoder' | 'decoder';
  input: string;
  inChannels: number;
  output: string;
  outChannels: number;
  /** The encoder takes one frame: its 3-tap convs fold their temporal taps (kernel time 1). */
  singleFrame: boolean;
  layers: VaeLayer[];
}

class LayerBuilder {
  readonly layers: VaeLayer[] = [];
  private count = 0;
  constructor(readonly groups: number) {}

  value(): string {
    return `v${this.count++}`;
  }

  norm(input: string, prefix: string, channels: number): string {
    const name = `${prefix}@${input}`;
    this.layers.push({ op: 'norm', name, input, prefix, channels, groups: this.groups });
    return name;
  }

  conv(input: string, c: Omit<VaeConvLayer, 'op' | 'input' | 'output'>): string {
    const output = this.value();
    this.layers.push({ op: 'conv', input, output, ...c });
    return output;
  }

  resnet(x: string, prefix: string, inC: number, outC: number): string {
    const n1 = this.norm(x, `${prefix}.norm1`, inC);
    const h = this.conv(x, { weights: [`${prefix}.conv1.conv`], inChannels: inC, outChannels: outC, kernel: 3, norm: n1, silu: true });
    // The shortcut before conv2, so x is free once it is read.
    const residual = inC === outC ? x : this.conv(x, { weights: [`${prefix}.conv_shortcut.conv`], inChannels: inC, outChannels: outC, kernel: 1 });
    const n2 = this.norm(h, `${prefix}.norm2`, outC);
    return this.conv(h, { weights: [`${prefix}.conv2.conv`], inChannels: outC, outChannels: outC, kernel: 3, norm: n2, silu: true, residual });
  }

  attention(x: string, prefix: string, c: number): string {
    const n = this.norm(x, `${prefix}.group_norm`, c);
    const qkv = this.conv(x, { weights: ['to_q', 'to_k', 'to_v'].map((p) => `${prefix}.${p}`), inChannels: c, outChannels: 3 * c, kernel: 1, norm: n, silu: false });
    const o = this.value();
    this.layers.push({ op: 'attention', input: qkv, output: o, channels: c });
    return this.conv(o, { weights: [`${prefix}.to_out.0`], inChannels: c, outChannels: c, kernel: 1, residual: x });
  }

  mid(x: string, prefix: string, config: VaeConfig): string {
    const c = config.blockOutChannels[config.blockOutChannels.length - 1];
    let a = this.resnet(x, `${prefix}.resnets.0`, c, c);
    if (config.midBlockAttention) a = this.attention(a, `${prefix}.attentions.0`, c);
    return this.resnet(a, `${prefix}.resnets.1`, c, c);
  }
}

/** The decoder as layers: z [T, h, w, latent] (unscaled) → planar f32 pixels [out, 4(T−1)+1, 8h, 8w]. */
export function vaeDecoderLayers(config: VaeConfig): VaeLayerPlan {
  const b = new LayerBuilder(config.normGroups);
  const L = config.latentChannels;
  const widths = [...config.blockOutChannels].reverse();
  let a = b.conv('z', { weights: ['post_quant_conv'], inChannels: L, outChannels: L, kernel: 1 });
  a = b.conv(a, { weights: ['decoder.conv_in.conv'], inChannels: L, outChannels: widths[0], kernel: 3 });
  a = b.mid(a, 'decoder.mid_block', config);
  let c = widths[0];
  upsamplers(config).forEach((up, i) => {
    for (let j = 0; j < config.layersPerBlock + 1; j++) {
      a = b.resnet(a, `decoder.up_blocks.${i}.resnets.${j}`, c, widths[i]);
      c = widths[i];
    }
    if (up) a = b.conv(a, { weights: [`decoder.up_blocks.${i}.upsamplers.0.conv.conv`], inChannels: c, outChannels: c, kernel: 3, up });
  });
  const n = b.norm(a, 'decoder.conv_norm_out', c);
  const out = b.conv(a, { weights: ['decoder.conv_out.conv'], inChannels: c, outChannels: config.outChannels, kernel: 3, norm: n, silu: true, planar: true });
  return { name: 'decoder', input: 'z', inChannels: L, output: out, outChannels: config.outChannels, singleFrame: false, layers: b.layers };
}

/** The single-frame encoder as layers: image [1, H, W, in] → planar f32 moments [2·latent, 1, H/8, W/8]. */
export function vaeEncoderLayers(config: VaeConfig): VaeLayerPlan {
  const b = new LayerBuilder(config.normGroups);
  const widths = config.blockOutChannels;
  let a = b.conv('image', { weights: ['encoder.conv_in.conv'], inChannels: config.inChannels, outChannels: widths[0], kernel: 3 });
  let c = widths[0];
  downsamplers(config).forEach((down, i) => {
    for (let j = 0; j < config.layersPerBlock; j++) {
      a = b.resnet(a, `encoder.down_blocks.${i}.resnets.${j}`, c, widths[i]);
      c = widths[i];
    }
    if (down) a = b.conv(a, { weights: [`encoder.down_blocks.${i}.downsamplers.0.conv.conv`], inChannels: c, outChannels: c, kernel: 3, stride: down });
  });
  a = b.mid(a, 'encoder.mid_block', config);
  const n = b.norm(a, 'encoder.conv_norm_out', c);
  const moments = 2 * config.latentChannels;
  a = b.conv(a, { weights: ['encoder.conv_out.conv'], inChannels: c, outChannels: moments, kernel: 3, norm: n, silu: true });
  const out = b.conv(a, { weights: ['quant_conv'], inChannels: moments, outChannels: moments, kernel: 1, planar: true });
  return { name: 'encoder', input: 'image', inChannels: config.inChannels, output: out, outChannels: moments, singleFrame: true, layers: b.layers };
}

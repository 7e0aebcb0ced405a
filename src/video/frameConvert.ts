// Turns the pipeline's decoded pixels into what a video encoder takes. The reference writes its MP4 from
// clamp(x, −1, 1)·127.5 + 127.5 in float32, cast to uint8 by TRUNCATION (framepack-reference.md §11,
// diffusers_helper/utils.save_bcthw_as_mp4), so a value of 0.0 becomes 127, not 128; we copy that rule to the bit.
// The encoder then wants YUV 4:2:0: we convert ourselves with BT.601 limited-range coefficients (what libswscale
// uses for the reference's rgb24 → yuv420p step) instead of leaving the matrix to each browser's RGBA path.

import { FrameConvertError } from '../errors/video.ts';
import type { Tensor } from '../pipeline/tensor.ts';

/**
 * One pixel value in [−1, 1] (anything outside is clamped) to uint8 as torch computes
 * `(clamp(x.float(), -1, 1) * 127.5 + 127.5).to(torch.uint8)`: two float32 roundings, then truncation.
 * NaN gives 0 (torch's cast leaves it undefined; 0 is what x86 produces).
 */
export function pixelToUint8(x: number): number {
  if (Number.isNaN(x)) return 0;
  const clamped = x < -1 ? -1 : x > 1 ? 1 : x;
  return Math.trunc(Math.fround(Math.fround(clamped * 127.5) + 127.5));
}

/** [1, 3, T, H, W] → {frames T, height H, width W}; throws FrameConvertError on any other layout. */
export function videoDims(pixels: Tensor): { frames: number; height: number; width: number } {
  const s = pixels.shape;
  if (s.length !== 5 || s[0] !== 1 || s[1] !== 3) {
    throw new FrameConvertError(`Decoded video must be [1, 3, T, H, W] (batch 1, RGB), got [${s}].`);
  }
  return { frames: s[2], height: s[3], width: s[4] };
}

/** Frame t of [1, 3, T, H, W] pixels in [−1, 1] as packed RGBA bytes (alpha 255), row-major, width·height·4. */
export function frameToRgba(pixels: Tensor, t: number, out?: Uint8Array): Uint8Array {
  const { frames, height, width } = videoDims(pixels);
  if (!Number.isInteger(t) || t < 0 || t >= frames) throw new FrameConvertError(`Frame ${t} is outside 0..${frames - 1}.`);
  const plane = height * width;
  const rgba = out ?? new Uint8Array(plane * 4);
  if (rgba.length !== plane * 4) throw new FrameConvertError(`The RGBA buffer holds ${rgba.length} bytes, a frame needs ${plane * 4}.`);
  const r = pixels.data.subarray((0 * frames + t) * plane, (0 * frames + t + 1) * plane);
  const g = pixels.data.subarray((1 * frames + t) * plane, (1 * frames + t + 1) * plane);
  const b = pixels.data.subarray((2 * frames + t) * plane, (2 * frames + t + 1) * plane);
  for (let i = 0; i < plane; i++) {
    rgba[4 * i] = pixelToUint8(r[i]);
    rgba[4 * i + 1] = pixelToUint8(g[i]);
    rgba[4 * i + 2] = pixelToUint8(b[i]);
    rgba[4 * i + 3] = 255;
  }
  return rgba;
}

/** Every frame of [1, 3, T, H, W] pixels as RGBA, one at a time, so a long video is never held as bytes whole. */
export function* framesToRgba(pixels: Tensor): Generator<Uint8Array> {
  const { frames } = videoDims(pixels);
  for (let t = 0; t < frames; t++) yield frameToRgba(pixels, t);
}

/** Bytes of an I420 frame: full-size Y, then U and V at half size in both directions. */
export function i420Size(width: number, height: number): number {
  checkEvenSize(width, height);
  return width * height * 3 / 2;
}

/** 4:2:0 needs whole 2×2 chroma blocks; FramePack's buckets are multiples of 16, so odd sizes are a caller bug. */
export function checkEvenSize(width: number, height: number): void {
  if (!Number.isInteger(width) || !Number.isInteger(height) || width < 2 || height < 2 || width % 2 || height % 2) {
    throw new FrameConvertError(`Video frames must have even width and height (YUV 4:2:0), got ${width}×${height}.`);
  }
}

const clampByte = (v: number) => (v < 0 ? 0 : v > 255 ? 255 : Math.round(v));

/**
 * RGBA → I420 with BT.601 limited range (Y 16–235, chroma 16–240): Y per pixel, chroma from the mean of each 2×2
 * block. Tag the resulting VideoFrame with matrix 'smpte170m' and fullRange false so players invert the same matrix.
 */
export function rgbaToI420(rgba: Uint8Array, width: number, height: number, out?: Uint8Array): Uint8Array {
  const size = i420Size(width, height);
  if (rgba.length !== width * height * 4) throw new FrameConvertError(`RGBA data holds ${rgba.length} bytes, ${width}×${height} needs ${width * height * 4}.`);
  const yuv = out ?? new Uint8Array(size);
  if (yuv.length !== size) throw new FrameConvertError(`The I420 buffer holds ${yuv.length} bytes, ${width}×${height} needs ${size}.`);
  const cw = width / 2;
  const uBase = width * height;
  const vBase = uBase + cw * (height / 2);
  for (let i = 0, n = width * height; i < n; i++) {
    const r = rgba[4 * i], g = rgba[4 * i + 1], b = rgba[4 * i + 2];
    yuv[i] = clampByte(16 + (65.481 * r + 128.553 * g + 24.966 * b) / 255);
  }
  for (let cy = 0; cy < height / 2; cy++) {
    for (let cx = 0; cx < cw; cx++) {
      const p = 4 * (2 * cy * width + 2 * cx);
      const q = p + 4 * width;
      const r = (rgba[p] + rgba[p + 4] + rgba[q] + rgba[q + 4]) / 4;
      const g = (rgba[p + 1] + rgba[p + 5] + rgba[q + 1] + rgba[q + 5]) / 4;
      const b = (rgba[p + 2] + rgba[p + 6] + rgba[q + 2] + rgba[q + 6]) / 4;
      yuv[uBase + cy * cw + cx] = clampByte(128 + (-37.797 * r - 74.203 * g + 112 * b) / 255);
      yuv[vBase + cy * cw + cx] = clampByte(128 + (112 * r - 93.786 * g - 18.214 * b) / 255);
    }
  }
  return yuv;
}

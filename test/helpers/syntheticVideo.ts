// Synthetic "decoded sections" with known content, and the video the reference would build from them. Shared by
// the browser harness (test/e2e/harness/videoHarness.ts feeds the sections to the video assembler), the e2e spec
// and the Node unit test (which rebuild the expected video with a hand-written soft_append and uint8 rule).
// Every frame of the final video gets its own flat colour plus a moving gradient, so a decoded frame's mean colour
// says which frame it is; each section adds its own brightness offset, so the cross-faded overlaps differ from
// both neighbours and a wrong blend or a wrong order shows.

import type { LoopVariant } from '../../src/pipeline/sectionPlan.ts';

/** lws 9, as in the reference: 33-frame overlap, 33/37-frame first decode, 69/73-frame later decodes. */
export const LATENT_WINDOW = 9;
export const OVERLAP = LATENT_WINDOW * 4 - 3;

export interface SectionWindow {
  /** First frame of this decode in the FINAL video's time order. */
  start: number;
  frames: number;
  /** Brightness offset of this decode, in 0–255 levels. */
  offset: number;
}

/** Frames of the finished video: 36S + 1 (framepack-reference.md §7.4). */
export function totalFrames(sections: number): number {
  return 36 * sections + 1;
}

/** Where each section's decode lies in the final video, in generation order (original: the end first). */
export function sectionWindows(variant: LoopVariant, sections: number): SectionWindow[] {
  const total = totalFrames(sections);
  const offsets = [12, -12, 6, -6, 9, -9];
  const out: SectionWindow[] = [];
  for (let s = 0; s < sections; s++) {
    const offset = offsets[s % offsets.length];
    const last = s === sections - 1;
    if (variant === 'f1') {
      out.push(s === 0 ? { start: 0, frames: 37, offset } : { start: 37 + 36 * (s - 1) - OVERLAP, frames: 69, offset });
    } else {
      // The video after section s is 33 + 36s frames long (the last section brings the start frame: the full total).
      const lengthAfter = last ? total : 33 + 36 * s;
      const frames = s === 0 ? lengthAfter : last ? 73 : 69;
      out.push({ start: total - lengthAfter, frames, offset });
    }
  }
  return out;
}

/** The clean content of final-video frame i, channel c, pixel (x, y), in 0–255 levels (before a section's offset). */
export function contentLevel(i: number, c: number, x: number, y: number, width: number, height: number): number {
  const base = 60 + ((i * [53, 97, 29][c]) % 140);
  const gradient = 18 * Math.cos((2 * Math.PI * (x - 3 * i)) / width) * (c === 1 ? -1 : 1) + 8 * Math.sin((2 * Math.PI * (y + 2 * i)) / height);
  return base + gradient;
}

/** Section `s`'s decode as [1, 3, T, H, W] in [−1, 1], as the VAE would hand it over. */
export function sectionDecode(variant: LoopVariant, sections: number, s: number, width: number, height: number): { data: Float32Array; shape: number[] } {
  const w = sectionWindows(variant, sections)[s];
  const data = new Float32Array(3 * w.frames * height * width);
  for (let c = 0; c < 3; c++) {
    for (let t = 0; t < w.frames; t++) {
      const base = (c * w.frames + t) * height * width;
      for (let y = 0; y < height; y++) {
        for (let x = 0; x < width; x++) {
          data[base + y * width + x] = (contentLevel(w.start + t, c, x, y, width, height) + w.offset) / 127.5 - 1;
        }
      }
    }
  }
  return { data, shape: [1, 3, w.frames, height, width] };
}

/**
 * What the reference writes after `upTo` of `sections` sections, as rgb24 frames: its loop replayed by hand —
 * soft_append(a, b, K) = a[:−K], w·a[−K+k] + (1−w)·b[k] with w = 1 − k/(K−1) (exact in float32 for K = 33), b[K:];
 * F1 appends each decode, the original loop prepends it — then (clamp(x)·127.5 + 127.5).to(uint8) in float32.
 */
export function referenceVideo(variant: LoopVariant, sections: number, upTo: number, width: number, height: number): Uint8Array[] {
  type Frame = Float32Array; // planar RGB of one frame in [−1, 1]
  const plane = width * height;
  const toFrames = (s: number): Frame[] => {
    const { data, shape } = sectionDecode(variant, sections, s, width, height);
    const t = shape[2];
    return Array.from({ length: t }, (_, i) => {
      const f = new Float32Array(3 * plane);
      for (let c = 0; c < 3; c++) f.set(data.subarray((c * t + i) * plane, (c * t + i + 1) * plane), c * plane);
      return f;
    });
  };
  const softAppend = (a: Frame[], b: Frame[]): Frame[] => {
    const blend = Array.from({ length: OVERLAP }, (_, k) => {
      const w = Math.fround(1 - k / (OVERLAP - 1)), v = Math.fround(1 - w);
      const x = a[a.length - OVERLAP + k], y = b[k];
      return x.map((xi, i) => Math.fround(Math.fround(w * xi) + Math.fround(v * y[i])));
    });
    return [...a.slice(0, a.length - OVERLAP), ...blend, ...b.slice(OVERLAP)];
  };
  let video = toFrames(0);
  for (let s = 1; s < upTo; s++) video = variant === 'f1' ? softAppend(video, toFrames(s)) : softAppend(toFrames(s), video);
  const toByte = (x: number) => Math.trunc(Math.fround(Math.fround(Math.min(Math.max(x, -1), 1) * 127.5) + 127.5));
  return video.map((f) => {
    const rgb = new Uint8Array(3 * plane);
    for (let i = 0; i < plane; i++) for (let c = 0; c < 3; c++) rgb[3 * i + c] = toByte(f[c * plane + i]);
    return rgb;
  });
}

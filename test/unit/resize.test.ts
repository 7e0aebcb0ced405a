import { ImageSizeError } from '../../src/errors/index.ts';
import { describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { cropPil, resizeAndCenterCrop, resizePil, siglipPixelValues, vaeInputPixels, type ResampleFilter, type RgbImage } from '../../src/pipeline/resize.ts';
import { tensorError } from '../../src/pipeline/tensorError.ts';

// Pillow's own outputs, written by scripts/make_pil_reference.py (see its manifest for the Pillow version).
const dir = resolve(import.meta.dirname, '..', 'fixtures', 'pil');

interface ImageEntry { width: number; height: number; file: string }
interface TensorEntry { shape: number[]; file: string }
interface Manifest {
  pillow: string;
  images: Record<string, ImageEntry>;
  center_crop: { input: string; target_width: number; target_height: number; why: string; output: ImageEntry }[];
  resize: { input: string; width: number; height: number; filter: ResampleFilter; why: string; output: ImageEntry }[];
  siglip: { input: ImageEntry; size: number; why: string; resized: ImageEntry; pixel_values: TensorEntry }[];
  vae_input: { input: ImageEntry; pixels: TensorEntry }[];
}

const manifest = JSON.parse(readFileSync(join(dir, 'manifest.json'), 'utf8')) as Manifest;

function bytes(file: string): Uint8Array {
  return new Uint8Array(gunzipSync(readFileSync(join(dir, file))));
}

function image(entry: ImageEntry): RgbImage {
  const data = bytes(entry.file);
  expect(data.length).toBe(entry.width * entry.height * 3);
  return { width: entry.width, height: entry.height, data };
}

function floats(entry: TensorEntry): Float32Array {
  const b = bytes(entry.file);
  return new Float32Array(b.buffer, b.byteOffset, b.byteLength / 4);
}

/** Largest per-channel level difference and how many pixels differ in any channel. */
function levelDiff(got: RgbImage, want: RgbImage): { size: string; maxLevel: number; pixels: number } {
  const size = `${got.width}x${got.height}`;
  if (got.width !== want.width || got.height !== want.height) return { size, maxLevel: Infinity, pixels: Infinity };
  let maxLevel = 0;
  let pixels = 0;
  for (let p = 0; p < got.data.length; p += 3) {
    let d = 0;
    for (let c = 0; c < 3; c++) d = Math.max(d, Math.abs(got.data[p + c] - want.data[p + c]));
    if (d > 0) pixels++;
    maxLevel = Math.max(maxLevel, d);
  }
  return { size, maxLevel, pixels };
}

const exact = (want: RgbImage) => ({ size: `${want.width}x${want.height}`, maxLevel: 0, pixels: 0 });

describe(`PIL-exact resampling against Pillow ${manifest.pillow}`, () => {
  it('has every kind of case', () => {
    expect(manifest.center_crop.length).toBeGreaterThan(0);
    expect(manifest.resize.length).toBeGreaterThan(0);
    expect(manifest.siglip.length).toBeGreaterThan(0);
    expect(manifest.vae_input.length).toBeGreaterThan(0);
  });

  for (const c of manifest.resize) {
    it(`resize ${c.input} → ${c.width}x${c.height} ${c.filter} (${c.why}): bit-exact`, () => {
      const want = image(c.output);
      expect(levelDiff(resizePil(image(manifest.images[c.input]), c.width, c.height, c.filter), want)).toEqual(exact(want));
    });
  }

  for (const c of manifest.center_crop) {
    it(`resize_and_center_crop ${c.input} → ${c.target_width}x${c.target_height} (${c.why}): bit-exact`, () => {
      const want = image(c.output);
      expect(levelDiff(resizeAndCenterCrop(image(manifest.images[c.input]), c.target_width, c.target_height), want)).toEqual(exact(want));
    });
  }

  it('returns an image already at the target size unchanged', () => {
    const entry = manifest.center_crop.find((c) => {
      const input = manifest.images[c.input];
      return input.width === c.target_width && input.height === c.target_height;
    });
    expect(entry).toBeDefined();
    const input = image(manifest.images[entry!.input]);
    expect(resizeAndCenterCrop(input, input.width, input.height).data).toEqual(input.data);
  });

  for (const [i, c] of manifest.siglip.entries()) {
    it(`SigLIP preprocessing #${i} to ${c.size}x${c.size} (${c.why}): same bytes, same float32 values`, () => {
      const input = image(c.input);
      const want = image(c.resized);
      expect(levelDiff(resizePil(input, c.size, c.size, 'bicubic'), want)).toEqual(exact(want));
      const got = siglipPixelValues(input, c.size);
      expect(got.shape).toEqual(c.pixel_values.shape);
      const expected = floats(c.pixel_values);
      const err = tensorError(got.data, expected);
      expect(err.rel).toBeLessThanOrEqual(1e-4);
      expect(err.abs).toBe(0);
    });
  }

  for (const [i, c] of manifest.vae_input.entries()) {
    it(`VAE input #${i}: float32 x/127.5 − 1 as [1, 3, 1, H, W]`, () => {
      const got = vaeInputPixels(image(c.input));
      expect(got.shape).toEqual(c.pixels.shape);
      const err = tensorError(got.data, floats(c.pixels));
      expect(err.rel).toBeLessThanOrEqual(1e-4);
      expect(err.abs).toBe(0);
    });
  }
});

describe('crop box rounding and input checks', () => {
  const img: RgbImage = { width: 4, height: 2, data: Uint8Array.from({ length: 24 }, (_, i) => i + 1) };

  it('rounds a float box with Python round, halves to even, and fills outside with black', () => {
    // left 0.5 → 0, right 2.5 → 2, top −0.5 → 0, bottom 1.5 → 2: a 2×2 crop from the top-left corner.
    const c = cropPil(img, 0.5, -0.5, 2.5, 1.5);
    expect([c.width, c.height]).toEqual([2, 2]);
    expect(Array.from(c.data)).toEqual([1, 2, 3, 4, 5, 6, 13, 14, 15, 16, 17, 18]);
    const outside = cropPil(img, 3, 1, 5, 2);
    expect(Array.from(outside.data)).toEqual([22, 23, 24, 0, 0, 0]);
  });

  it('throws ImageSizeError for a buffer that is not RGB of the stated size, or a bad target', () => {
    expect(() => resizePil({ width: 2, height: 2, data: new Uint8Array(16) }, 3, 3, 'lanczos')).toThrow(ImageSizeError);
    expect(() => resizePil(img, 0, 3, 'bicubic')).toThrow(ImageSizeError);
    expect(() => resizeAndCenterCrop(img, 2.5, 3)).toThrow(ImageSizeError);
  });
});

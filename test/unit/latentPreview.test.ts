import { LatentPreviewError } from '../../src/errors/index.ts';
import { describe, expect, it } from 'vitest';
import { latentPreview } from '../../src/pipeline/latentPreview.ts';
import type { Tensor } from '../../src/pipeline/tensor.ts';

/** A [b, 16, t, h, w] latent with `set(c, bi, ti, y, x)` giving each value. */
function latent(b: number, t: number, h: number, w: number, set: (c: number, bi: number, ti: number, y: number, x: number) => number): Tensor {
  const data = new Float32Array(b * 16 * t * h * w);
  let i = 0;
  for (let bi = 0; bi < b; bi++) for (let c = 0; c < 16; c++) for (let ti = 0; ti < t; ti++) for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) data[i++] = set(c, bi, ti, y, x);
  return { data, shape: [b, 16, t, h, w] };
}

const pixel = (img: ReturnType<typeof latentPreview>, row: number, col: number) =>
  Array.from(img.data.subarray((row * img.width + col) * img.channels, (row * img.width + col + 1) * img.channels));

describe('latent preview (§4.6)', () => {
  it('zero latents show the bias: R = ⌊0.0259·255⌋ = 6, G and B clamp to 0', () => {
    const img = latentPreview(latent(1, 1, 1, 1, () => 0), 'rgb');
    expect(pixel(img, 0, 0)).toEqual([6, 0, 0]);
  });

  it('one channel: values from row 10 of the matrix, truncated like numpy astype(uint8)', () => {
    // R = 2·0.1166 + 0.0259 = 0.2591 → 66.07; G = 2·0.1627 − 0.0192 = 0.3062 → 78.08; B = 2·0.0962 − 0.0761 = 0.1163 → 29.66
    const img = latentPreview(latent(1, 1, 1, 1, (c) => (c === 10 ? 2 : 0)), 'rgb');
    expect(pixel(img, 0, 0)).toEqual([66, 78, 29]);
  });

  it('clamps to [0, 1] before scaling', () => {
    expect(pixel(latentPreview(latent(1, 1, 1, 1, (c) => (c === 10 ? 20 : 0)), 'rgb'), 0, 0)).toEqual([255, 255, 255]);
    expect(pixel(latentPreview(latent(1, 1, 1, 1, (c) => (c === 12 ? 10 : 0)), 'rgb'), 0, 0)).toEqual([0, 0, 0]);
  });

  it('mixes all 16 channels: hand-expanded sum for one latent pixel', () => {
    const v = [0.3, -0.8, 1.1, 0.25, -0.4, 0.9, -1.2, 0.05, 0.6, -0.35, 0.7, 0.45, -0.15, 0.2, -0.55, 0.1];
    const r = 0.0259 + 0.3 * -0.0395 + -0.8 * 0.0696 + 1.1 * 0.0135 + 0.25 * 0.0108 + -0.4 * -0.0209 + 0.9 * -0.0804 + -1.2 * -0.0991
      + 0.05 * -0.0646 + 0.6 * -0.0696 + -0.35 * -0.0799 + 0.7 * 0.1166 + 0.45 * 0.1165 + -0.15 * -0.2315 + 0.2 * -0.027 + -0.55 * -0.0616 + 0.1 * 0.0249;
    const g = -0.0192 + 0.3 * -0.0331 + -0.8 * 0.0795 + 1.1 * -0.0945 + 0.25 * -0.025 + -0.4 * 0.0032 + 0.9 * -0.0254 + -1.2 * 0.0271
      + 0.05 * -0.0422 + 0.6 * -0.0595 + -0.35 * -0.0208 + 0.7 * 0.1627 + 0.45 * 0.0432 + -0.15 * -0.192 + 0.2 * 0.0401 + -0.55 * -0.0997 + 0.1 * -0.0469;
    const b = -0.0761 + 0.3 * 0.0445 + -0.8 * 0.0518 + 1.1 * -0.0282 + 0.25 * -0.0765 + -0.4 * 0.0224 + 0.9 * -0.0639 + -1.2 * -0.0669
      + 0.05 * -0.04 + 0.6 * -0.0894 + -0.35 * -0.0375 + 0.7 * 0.0962 + 0.45 * 0.0407 + -0.15 * -0.1355 + 0.2 * -0.0821 + -0.55 * -0.0727 + 0.1 * -0.1703;
    const want = [r, g, b].map((x) => Math.floor(Math.min(Math.max(x, 0), 1) * 255));
    // Keep the check meaningful: no value sits within float32 noise of an integer boundary.
    for (const x of [r, g, b]) expect(Math.abs(x * 255 - Math.round(x * 255))).toBeGreaterThan(1e-3);
    const img = latentPreview(latent(1, 1, 1, 1, (c) => v[c]), 'rgb');
    expect(pixel(img, 0, 0)).toEqual(want);
  });

  it('lays out b c t h w → (b h) (t w) c, RGBA with opaque alpha', () => {
    // Channel 10 encodes (b, t, y, x) so every latent pixel has its own red value.
    const code = (bi: number, ti: number, y: number, x: number) => 0.1 * (1 + bi * 12 + ti * 6 + y * 3 + x);
    const img = latentPreview(latent(2, 2, 2, 3, (c, bi, ti, y, x) => (c === 10 ? code(bi, ti, y, x) : 0)));
    expect([img.width, img.height, img.channels]).toEqual([6, 4, 4]);
    expect(img.data.length).toBe(6 * 4 * 4);
    for (let bi = 0; bi < 2; bi++) for (let ti = 0; ti < 2; ti++) for (let y = 0; y < 2; y++) for (let x = 0; x < 3; x++) {
      const red = Math.floor(Math.min(Math.max(code(bi, ti, y, x) * 0.1166 + 0.0259, 0), 1) * 255);
      const p = pixel(img, bi * 2 + y, ti * 3 + x);
      expect(p[0]).toBe(red);
      expect(p[3]).toBe(255);
    }
  });

  it('refuses latents without 16 channels', () => {
    expect(() => latentPreview({ data: new Float32Array(8), shape: [1, 8, 1, 1, 1] })).toThrow(LatentPreviewError);
  });
});

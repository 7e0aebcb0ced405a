import { FrameConvertError } from '../../src/errors/index.ts';
import { describe, expect, it } from 'vitest';
import { frameToRgba, i420Size, pixelToUint8, rgbaToI420, videoDims } from '../../src/video/frameConvert.ts';

describe('pixelToUint8: the reference MP4 rule (clamp(−1,1)·127.5 + 127.5 in float32, then truncation)', () => {
  it('matches values worked by hand', () => {
    // x → x·127.5 + 127.5 → truncated
    const cases: [number, number][] = [
      [-1, 0], [1, 255], [0, 127], // 127.5 truncates to 127, not 128
      [0.5, 191], [-0.5, 63], // 191.25, 63.75
      [0.003, 127], [0.004, 128], [-0.0039, 127], [-0.004, 126], // 127.8825, 128.01, 127.00275, 126.99
      [2, 255], [-3, 0], [Infinity, 255], [-Infinity, 0], // clamped first
    ];
    for (const [x, want] of cases) expect(pixelToUint8(x), `x = ${x}`).toBe(want);
  });

  it('rounds to float32 after each operation, as torch does', () => {
    // x = 1 − 2^−24 (largest float32 below 1). 127.5·x = 127.5 − 7.6e−6 rounds to 127.5 − 2^−17 in float32;
    // adding 127.5 gives 255 − 2^−17, exactly halfway between 255 − 2^−16 and 255: ties-to-even picks 255.
    // In float64 the sum stays below 255 and would truncate to 254.
    const x = 1 - 2 ** -24;
    expect(Math.trunc(x * 127.5 + 127.5)).toBe(254);
    expect(pixelToUint8(x)).toBe(255);
    // The mirror case: 127.5 − (127.5 − 2^−17) = 2^−17 exactly, which truncates to 0.
    expect(pixelToUint8(-x)).toBe(0);
  });

  it('maps NaN to 0 instead of passing it to the encoder', () => {
    expect(pixelToUint8(NaN)).toBe(0);
  });
});

describe('frameToRgba', () => {
  it('reads frame t of [1, 3, T, H, W] into packed RGBA with alpha 255', () => {
    const [T, H, W] = [2, 2, 3];
    const data = Float32Array.from({ length: 3 * T * H * W }, (_, i) => (i % 17) / 8 - 1);
    const pixels = { data, shape: [1, 3, T, H, W] };
    for (let t = 0; t < T; t++) {
      const rgba = frameToRgba(pixels, t);
      for (let y = 0; y < H; y++) {
        for (let x = 0; x < W; x++) {
          const at = (c: number) => data[((c * T + t) * H + y) * W + x];
          const px = Array.from(rgba.subarray(4 * (y * W + x), 4 * (y * W + x) + 4));
          expect(px).toEqual([pixelToUint8(at(0)), pixelToUint8(at(1)), pixelToUint8(at(2)), 255]);
        }
      }
    }
  });

  it('refuses batches, non-RGB tensors and frames out of range', () => {
    const pixels = { data: new Float32Array(2 * 3 * 4), shape: [2, 3, 1, 2, 2] };
    expect(() => videoDims(pixels)).toThrow(FrameConvertError);
    expect(() => frameToRgba({ data: new Float32Array(12), shape: [1, 3, 1, 2, 2] }, 1)).toThrow(FrameConvertError);
  });
});

describe('rgbaToI420 (BT.601 limited range)', () => {
  /** A width×height RGBA image filled with one colour. */
  const flat = (w: number, h: number, rgb: number[]) => Uint8Array.from({ length: w * h * 4 }, (_, i) => (i % 4 === 3 ? 255 : rgb[i % 4]));

  it('gives the textbook studio-swing values for black, white and the primaries', () => {
    const want: [number[], number[]][] = [
      [[0, 0, 0], [16, 128, 128]], [[255, 255, 255], [235, 128, 128]],
      [[255, 0, 0], [81, 90, 240]], [[0, 255, 0], [145, 54, 34]], [[0, 0, 255], [41, 240, 110]],
    ];
    for (const [rgb, yuv] of want) {
      const out = rgbaToI420(flat(2, 2, rgb), 2, 2);
      expect(Array.from(out), `RGB ${rgb}`).toEqual([yuv[0], yuv[0], yuv[0], yuv[0], yuv[1], yuv[2]]);
    }
  });

  it('lays out Y, then U and V at half size, chroma from each 2×2 block mean', () => {
    // 4×2: left block two red + two blue pixels, right block white.
    const red = [255, 0, 0, 255], blue = [0, 0, 255, 255], white = [255, 255, 255, 255];
    const rgba = Uint8Array.from([...red, ...blue, ...white, ...white, ...blue, ...red, ...white, ...white]);
    const out = rgbaToI420(rgba, 4, 2);
    expect(out.length).toBe(i420Size(4, 2));
    expect(Array.from(out.subarray(0, 8))).toEqual([81, 41, 235, 235, 41, 81, 235, 235]);
    // Mean of the left block is (127.5, 0, 127.5): U = 128 + (−37.797 + 112)·0.5 = 165.1, V = 128 + (112 − 18.214)·0.5 = 174.9.
    expect(Array.from(out.subarray(8))).toEqual([165, 128, 175, 128]);
  });

  it('refuses odd sizes, which 4:2:0 cannot hold', () => {
    expect(() => rgbaToI420(new Uint8Array(3 * 2 * 4), 3, 2)).toThrow(FrameConvertError);
    expect(() => i420Size(96, 81)).toThrow(/even width and height/);
  });
});

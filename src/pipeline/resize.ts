// Pillow-exact image resampling and FramePack's input preprocessing. The reference resizes the input with PIL
// (LANCZOS to the bucket, then BICUBIC to SigLIP's square), and both encoders see those exact uint8 pixels, so a
// browser resize (canvas drawImage, or any other filter) would feed the networks different images. This file
// reproduces Pillow's ImagingResample (src/libImaging/Resample.c) for 8-bit RGB: the antialiased coefficient
// tables, their 22-bit fixed-point form, the horizontal-then-vertical passes with uint8 rounding in between,
// and the float32 arithmetic of the normalisations that follow (reference §3.2, §3.3).

import { ImageSizeError } from '../errors/pipeline.ts';
import type { Tensor } from './tensor.ts';
import { pythonRound } from './pythonRound.ts';

/** An RGB uint8 image, rows top to bottom, pixels interleaved (HWC): data[(y·width + x)·3 + c]. */
export interface RgbImage {
  width: number;
  height: number;
  data: Uint8Array;
}

/** The Pillow filters FramePack uses: LANCZOS (a = 3) for the bucket resize, BICUBIC (a = −0.5) for SigLIP. */
export type ResampleFilter = 'lanczos' | 'bicubic';

const CHANNELS = 3;

/** Resample.c: 32 bits minus 8 for the pixel minus 2 for overshoot of negative-lobed filters. */
const PRECISION_BITS = 32 - 8 - 2;
const PRECISION_ONE = 1 << PRECISION_BITS;
/** Added before the shift so that the shift rounds to nearest (Resample.c starts every sum at this). */
const PRECISION_HALF = 1 << (PRECISION_BITS - 1);

interface Filter {
  weight(x: number): number;
  support: number;
}

function sinc(x: number): number {
  if (x === 0) return 1;
  const px = x * Math.PI;
  return Math.sin(px) / px;
}

const FILTERS: Record<ResampleFilter, Filter> = {
  lanczos: {
    // Truncated sinc with the interval closed on the left, as Resample.c's lanczos_filter.
    weight: (x) => (-3 <= x && x < 3 ? sinc(x) * sinc(x / 3) : 0),
    support: 3,
  },
  bicubic: {
    // Keys cubic with a = −0.5, written as Resample.c's bicubic_filter evaluates it.
    weight: (x) => {
      const a = -0.5;
      const t = Math.abs(x);
      if (t < 1) return ((a + 2) * t - (a + 3)) * t * t + 1;
      if (t < 2) return (((t - 5) * t + 8) * t - 4) * a;
      return 0;
    },
    support: 2,
  },
};

/** Per output pixel along one axis: the first input index, the tap count and fixed-point weights (ksize apart). */
interface Coefficients {
  first: Int32Array;
  count: Int32Array;
  weights: Int32Array;
  ksize: number;
}

/**
 * Resample.c's precompute_coeffs for the box [0, inSize) followed by normalize_coeffs_8bpc: the filter widened by
 * the downscale factor (the antialiasing), each row normalised to sum 1 in double, then rounded half away from
 * zero to PRECISION_BITS fixed point. C's (int) casts truncate, hence Math.trunc.
 */
function precomputeCoefficients(inSize: number, outSize: number, filter: Filter): Coefficients {
  const scale = inSize / outSize;
  const filterScale = Math.max(scale, 1);
  const support = filter.support * filterScale;
  const ksize = Math.ceil(support) * 2 + 1;
  const invFilterScale = 1 / filterScale;
  const first = new Int32Array(outSize);
  const count = new Int32Array(outSize);
  const weights = new Int32Array(outSize * ksize);
  const row = new Float64Array(ksize);
  for (let xx = 0; xx < outSize; xx++) {
    const center = (xx + 0.5) * scale;
    const xmin = Math.max(Math.trunc(center - support + 0.5), 0);
    const xmax = Math.min(Math.trunc(center + support + 0.5), inSize) - xmin;
    let sum = 0;
    for (let x = 0; x < xmax; x++) {
      const w = filter.weight((x + xmin - center + 0.5) * invFilterScale);
      row[x] = w;
      sum += w;
    }
    for (let x = 0; x < xmax; x++) {
      const k = sum !== 0 ? row[x] / sum : row[x];
      weights[xx * ksize + x] = k < 0 ? Math.trunc(-0.5 + k * PRECISION_ONE) : Math.trunc(0.5 + k * PRECISION_ONE);
    }
    first[xx] = xmin;
    count[xx] = xmax;
  }
  return { first, count, weights, ksize };
}

/** clip8: the fixed-point sum back to a byte (arithmetic shift, then Resample.c's clamping lookup table). */
function clip8(sum: number): number {
  const v = sum >> PRECISION_BITS;
  return v < 0 ? 0 : v > 255 ? 255 : v;
}

/** Horizontal pass over input rows [rowOffset, rowOffset + rows), as ImagingResampleHorizontal_8bpc. */
function resampleHorizontal(src: RgbImage, outWidth: number, rowOffset: number, rows: number, c: Coefficients): RgbImage {
  const out = new Uint8Array(outWidth * rows * CHANNELS);
  const { first, count, weights, ksize } = c;
  const inData = src.data;
  for (let yy = 0; yy < rows; yy++) {
    const inRow = (yy + rowOffset) * src.width * CHANNELS;
    const outRow = yy * outWidth * CHANNELS;
    for (let xx = 0; xx < outWidth; xx++) {
      const k0 = xx * ksize;
      const n = count[xx];
      let p = inRow + first[xx] * CHANNELS;
      let r = PRECISION_HALF, g = PRECISION_HALF, b = PRECISION_HALF;
      for (let x = 0; x < n; x++, p += CHANNELS) {
        const k = weights[k0 + x];
        r += inData[p] * k;
        g += inData[p + 1] * k;
        b += inData[p + 2] * k;
      }
      const o = outRow + xx * CHANNELS;
      out[o] = clip8(r);
      out[o + 1] = clip8(g);
      out[o + 2] = clip8(b);
    }
  }
  return { width: outWidth, height: rows, data: out };
}

/** Vertical pass, as ImagingResampleVertical_8bpc; `rowShift` is subtracted from every first row. */
function resampleVertical(src: RgbImage, outHeight: number, rowShift: number, c: Coefficients): RgbImage {
  const width = src.width;
  const stride = width * CHANNELS;
  const out = new Uint8Array(outHeight * stride);
  const { first, count, weights, ksize } = c;
  const inData = src.data;
  for (let yy = 0; yy < outHeight; yy++) {
    const k0 = yy * ksize;
    const n = count[yy];
    const top = (first[yy] - rowShift) * stride;
    for (let i = 0; i < stride; i += CHANNELS) {
      let p = top + i;
      let r = PRECISION_HALF, g = PRECISION_HALF, b = PRECISION_HALF;
      for (let y = 0; y < n; y++, p += stride) {
        const k = weights[k0 + y];
        r += inData[p] * k;
        g += inData[p + 1] * k;
        b += inData[p + 2] * k;
      }
      const o = yy * stride + i;
      out[o] = clip8(r);
      out[o + 1] = clip8(g);
      out[o + 2] = clip8(b);
    }
  }
  return { width, height: outHeight, data: out };
}

function checkImage(image: RgbImage, what: string): void {
  const { width, height, data } = image;
  if (!(Number.isInteger(width) && Number.isInteger(height) && width > 0 && height > 0)) {
    throw new ImageSizeError(`${what}: size ${width}×${height} is not a positive whole number of pixels.`);
  }
  if (data.length !== width * height * CHANNELS) {
    throw new ImageSizeError(`${what}: ${data.length} bytes for a ${width}×${height} RGB image (expected ${width * height * CHANNELS}); decode the image to RGB first.`);
  }
}

function checkSize(width: number, height: number, what: string): void {
  if (!(Number.isInteger(width) && Number.isInteger(height) && width > 0 && height > 0)) {
    throw new ImageSizeError(`${what}: target size ${width}×${height} is not a positive whole number of pixels.`);
  }
}

/**
 * PIL's `image.resize((width, height), filter)` for an RGB image, bit for bit. As Image.resize, the same size
 * gives a copy; otherwise, as ImagingResampleInner, the horizontal pass runs first (only over the input rows the
 * vertical pass will read) and each pass runs only when its axis changes. Throws ImageSizeError.
 */
export function resizePil(image: RgbImage, width: number, height: number, filter: ResampleFilter): RgbImage {
  checkImage(image, 'resizePil');
  checkSize(width, height, 'resizePil');
  if (width === image.width && height === image.height) return { width, height, data: image.data.slice() };
  const f = FILTERS[filter];
  const vertical = precomputeCoefficients(image.height, height, f);
  let current = image;
  let rowShift = 0;
  if (width !== image.width) {
    const firstRow = vertical.first[0];
    const lastRow = vertical.first[height - 1] + vertical.count[height - 1];
    current = resampleHorizontal(image, width, firstRow, lastRow - firstRow, precomputeCoefficients(image.width, width, f));
    rowShift = firstRow;
  }
  if (height !== image.height) current = resampleVertical(current, height, rowShift, vertical);
  return current;
}

/**
 * PIL's `image.crop(box)` with a float box: Image._crop rounds each edge with Python's round (halves to even),
 * and area outside the image comes out black. Note the width is round(right) − round(left), which for a box
 * that starts on a half can differ by one from right − left.
 */
export function cropPil(image: RgbImage, left: number, top: number, right: number, bottom: number): RgbImage {
  checkImage(image, 'cropPil');
  const x0 = pythonRound(left), y0 = pythonRound(top), x1 = pythonRound(right), y1 = pythonRound(bottom);
  const width = Math.max(x1 - x0, 0), height = Math.max(y1 - y0, 0);
  const out = new Uint8Array(width * height * CHANNELS);
  for (let y = 0; y < height; y++) {
    const sy = y + y0;
    if (sy < 0 || sy >= image.height) continue;
    for (let x = 0; x < width; x++) {
      const sx = x + x0;
      if (sx < 0 || sx >= image.width) continue;
      const s = (sy * image.width + sx) * CHANNELS, o = (y * width + x) * CHANNELS;
      out[o] = image.data[s];
      out[o + 1] = image.data[s + 1];
      out[o + 2] = image.data[s + 2];
    }
  }
  return { width, height, data: out };
}

/**
 * FramePack's resize_and_center_crop (diffusers_helper/utils.py): scale to cover the target
 * (scale = max(W_t/W, H_t/H), sides rounded half to even), LANCZOS, then the centred float crop box that PIL
 * rounds. An image already at the target size comes back unchanged (as a copy). For even target sides (every
 * real bucket) the result is exactly the target; for an odd side PIL's rounding can make it one pixel off, and
 * that is reproduced rather than hidden. Throws ImageSizeError.
 */
export function resizeAndCenterCrop(image: RgbImage, targetWidth: number, targetHeight: number): RgbImage {
  checkImage(image, 'resizeAndCenterCrop');
  checkSize(targetWidth, targetHeight, 'resizeAndCenterCrop');
  const scale = Math.max(targetWidth / image.width, targetHeight / image.height);
  const resizedWidth = pythonRound(image.width * scale);
  const resizedHeight = pythonRound(image.height * scale);
  const resized = resizePil(image, resizedWidth, resizedHeight, 'lanczos');
  return cropPil(
    resized,
    (resizedWidth - targetWidth) / 2,
    (resizedHeight - targetHeight) / 2,
    (resizedWidth + targetWidth) / 2,
    (resizedHeight + targetHeight) / 2,
  );
}

/** transformers' rescale factor 1/255 (the processor config's 0.00392156862745098 is this same double). */
const SIGLIP_RESCALE = 1 / 255;

/**
 * SiglipImageProcessor as FramePack calls it: squash (no crop, aspect not kept) to size×size with PIL BICUBIC,
 * then pixel·(1/255) in double narrowed to float32, then (x − 0.5)/0.5 in float32, as planes [1, 3, size, size].
 * `size` is the vision config's image_size (384 for the real SigLIP). Throws ImageSizeError.
 */
export function siglipPixelValues(image: RgbImage, size: number): Tensor {
  checkImage(image, 'siglipPixelValues');
  checkSize(size, size, 'siglipPixelValues');
  const squashed = resizePil(image, size, size, 'bicubic');
  const plane = size * size;
  const out = new Float32Array(CHANNELS * plane);
  for (let i = 0; i < plane; i++) {
    for (let c = 0; c < CHANNELS; c++) {
      const rescaled = Math.fround(squashed.data[i * CHANNELS + c] * SIGLIP_RESCALE);
      out[c * plane + i] = Math.fround(rescaled - 0.5) / 0.5;
    }
  }
  return { data: out, shape: [1, CHANNELS, size, size] };
}

/**
 * The VAE's input: torch's `from_numpy(img).float() / 127.5 - 1` (two float32 roundings) permuted to
 * [1, 3, 1, H, W] (batch, channels, one frame). Throws ImageSizeError.
 */
export function vaeInputPixels(image: RgbImage): Tensor {
  checkImage(image, 'vaeInputPixels');
  const plane = image.width * image.height;
  const out = new Float32Array(CHANNELS * plane);
  for (let i = 0; i < plane; i++) {
    for (let c = 0; c < CHANNELS; c++) {
      out[c * plane + i] = Math.fround(image.data[i * CHANNELS + c] / 127.5) - 1;
    }
  }
  return { data: out, shape: [1, CHANNELS, 1, image.height, image.width] };
}

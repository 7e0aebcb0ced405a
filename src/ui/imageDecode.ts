// Turns a file the user dropped, pasted or picked into the RGB bytes the engine takes. The browser only decodes
// here (createImageBitmap, then the pixels off an OffscreenCanvas); resizing to the generation size is the engine's
// PIL-exact code, so the page and the CLI feed identical pixels to the model. Sizes are checked before the pixels
// are copied, so a wrong file costs nothing and the message says what would work.

import { ImageInputError } from '../errors/ui.ts';

/** Smaller than this on a side and there is nothing left to animate (the tiny model's smallest bucket is 64 px). */
export const MIN_SIDE = 64;
/** Past these, decoding alone would take hundreds of megabytes; FramePack works at ≈ 0.4 MP anyway. */
export const MAX_SIDE = 8192;
export const MAX_PIXELS = 40e6;

export interface DecodedImage {
  width: number;
  height: number;
  /** RGB, row-major, alpha dropped (as PIL's convert('RGB') does). */
  rgb: Uint8Array;
  /** The original file, kept for the gallery's re-run. */
  file: Blob;
  name: string;
  /** A small JPEG for thumbnails. */
  thumbnail: Blob;
}

async function thumbnailOf(bitmap: ImageBitmap, side = 160): Promise<Blob> {
  const scale = Math.min(1, side / Math.max(bitmap.width, bitmap.height));
  const w = Math.max(1, Math.round(bitmap.width * scale)), h = Math.max(1, Math.round(bitmap.height * scale));
  const canvas = new OffscreenCanvas(w, h);
  canvas.getContext('2d')!.drawImage(bitmap, 0, 0, w, h);
  return canvas.convertToBlob({ type: 'image/jpeg', quality: 0.85 });
}

/**
 * Decodes an image file to RGB. Throws ImageInputError when the file is not an image the browser can read, or when
 * a side is under MIN_SIDE, over MAX_SIDE, or the image has more than MAX_PIXELS pixels.
 */
export async function decodeImage(file: Blob, name = file instanceof File ? file.name : 'the image'): Promise<DecodedImage> {
  if (file.type && !file.type.startsWith('image/')) {
    throw new ImageInputError(`${name} is not an image (it is ${file.type}). Choose a PNG, JPEG, WebP, GIF, AVIF or BMP file.`);
  }
  let bitmap: ImageBitmap;
  try {
    // No colour-space conversion: the pixels as stored, as ffmpeg and PIL read them in the CLI and the reference.
    bitmap = await createImageBitmap(file, { colorSpaceConversion: 'none', premultiplyAlpha: 'none', imageOrientation: 'from-image' });
  } catch {
    throw new ImageInputError(`${name} could not be read as an image: the file is damaged or in a format this browser does not decode. Choose a PNG, JPEG or WebP file.`);
  }
  try {
    const { width, height } = bitmap;
    if (Math.min(width, height) < MIN_SIDE) {
      throw new ImageInputError(`${name} is ${width}×${height} pixels; it needs at least ${MIN_SIDE} pixels on each side. Choose a larger image.`);
    }
    if (Math.max(width, height) > MAX_SIDE || width * height > MAX_PIXELS) {
      throw new ImageInputError(`${name} is ${width}×${height} pixels (${(width * height / 1e6).toFixed(1)} MP); the largest accepted is ${MAX_SIDE} pixels on a side and ${MAX_PIXELS / 1e6} MP. ` +
        'Scale it down first: FramePack generates at about 0.4 MP anyway.');
    }
    const canvas = new OffscreenCanvas(width, height);
    const ctx = canvas.getContext('2d', { willReadFrequently: true })!;
    ctx.drawImage(bitmap, 0, 0);
    const rgba = ctx.getImageData(0, 0, width, height).data;
    const rgb = new Uint8Array(width * height * 3);
    for (let i = 0, j = 0; i < rgba.length; i += 4, j += 3) {
      rgb[j] = rgba[i];
      rgb[j + 1] = rgba[i + 1];
      rgb[j + 2] = rgba[i + 2];
    }
    return { width, height, rgb, file, name, thumbnail: await thumbnailOf(bitmap) };
  } finally {
    bitmap.close();
  }
}

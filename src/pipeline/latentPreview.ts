// The cheap preview shown while a section samples: the x0 prediction's 16 latent channels mapped to RGB by a
// fixed linear map (a 1×1×1 conv, factors "from ComfyUI"), at latent resolution, the frames side by side. It
// costs nothing next to a VAE decode, so the UI can refresh it every step (framepack-reference.md §4.6;
// hunyuan.vae_decode_fake and the demos' callback).

import { LatentPreviewError } from '../errors/pipeline.ts';
import type { Tensor } from './tensor.ts';

/** F[c] = [R, G, B] weight of latent channel c. */
export const LATENT_RGB_FACTORS: readonly (readonly [number, number, number])[] = [
  [-0.0395, -0.0331, 0.0445],
  [0.0696, 0.0795, 0.0518],
  [0.0135, -0.0945, -0.0282],
  [0.0108, -0.025, -0.0765],
  [-0.0209, 0.0032, 0.0224],
  [-0.0804, -0.0254, -0.0639],
  [-0.0991, 0.0271, -0.0669],
  [-0.0646, -0.0422, -0.04],
  [-0.0696, -0.0595, -0.0894],
  [-0.0799, -0.0208, -0.0375],
  [0.1166, 0.1627, 0.0962],
  [0.1165, 0.0432, 0.0407],
  [-0.2315, -0.192, -0.1355],
  [-0.027, 0.0401, -0.0821],
  [-0.0616, -0.0997, -0.0727],
  [0.0249, -0.0469, -0.1703],
];

export const LATENT_RGB_BIAS: readonly [number, number, number] = [0.0259, -0.0192, -0.0761];

export interface PreviewImage {
  /** T·w: the latent frames side by side. */
  width: number;
  /** B·h */
  height: number;
  /** 3 (RGB) or 4 (RGBA, alpha 255, ready for ImageData). */
  channels: 3 | 4;
  /** Row-major pixels, `channels` bytes each. */
  data: Uint8ClampedArray;
}

/**
 * Preview of scaled latents [B, 16, T, h, w]: RGB = clamp(Σ_c x[c]·F[c] + bias, 0, 1), then ×255 and cast to
 * uint8 by TRUNCATION as the demos' numpy .astype(np.uint8) does, laid out `b c t h w → (b h) (t w) c`.
 * The factors and the products are float32 as in the reference's conv3d. Throws LatentPreviewError unless
 * the tensor has 16 channels.
 */
export function latentPreview(x0: Tensor, format: 'rgb' | 'rgba' = 'rgba'): PreviewImage {
  if (x0.shape.length !== 5 || x0.shape[1] !== LATENT_RGB_FACTORS.length) {
    throw new LatentPreviewError(`The latent preview needs [B, ${LATENT_RGB_FACTORS.length}, T, h, w] latents, got [${x0.shape}].`);
  }
  const [b, c, t, h, w] = x0.shape;
  const channels = format === 'rgba' ? 4 : 3;
  const width = t * w;
  const height = b * h;
  const data = new Uint8ClampedArray(width * height * channels);
  const factors = LATENT_RGB_FACTORS.map((row) => row.map(Math.fround));
  const bias = LATENT_RGB_BIAS.map(Math.fround);
  const plane = t * h * w;
  for (let bi = 0; bi < b; bi++) {
    for (let ti = 0; ti < t; ti++) {
      for (let y = 0; y < h; y++) {
        for (let x = 0; x < w; x++) {
          const src = bi * c * plane + (ti * h + y) * w + x;
          const dst = ((bi * h + y) * width + ti * w + x) * channels;
          for (let rgb = 0; rgb < 3; rgb++) {
            // float64 accumulation of float32 products, rounded once: within an ulp of any float32 conv order.
            let acc = bias[rgb];
            for (let ci = 0; ci < c; ci++) acc += Math.fround(x0.data[src + ci * plane] * factors[ci][rgb]);
            const v = Math.min(Math.max(Math.fround(acc), 0), 1);
            data[dst + rgb] = Math.trunc(Math.fround(v * 255));
          }
          if (channels === 4) data[dst + 3] = 255;
        }
      }
    }
  }
  return { width, height, channels, data };
}

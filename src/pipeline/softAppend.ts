// Joins decoded sections into one video. Consecutive decodes share lws·4 − 3 frames (the same latents decoded
// twice); soft_append cross-fades them with weights linspace(1, 0, K), so no seam shows. The streaming forms
// need only the K frames still being blended, so the video encoder can take every other frame as final instead
// of the reference's whole-video re-encode after each section (framepack-reference.md §7.3,
// utils.soft_append_bcthw).

import { SoftAppendError } from '../errors/pipeline.ts';
import { concatFrames, sliceFrames } from './history.ts';
import type { Tensor } from './tensor.ts';

/**
 * torch.linspace(1, 0, K) in float32 as torch's CPU kernel computes it: step = (0 − 1)/(K − 1) in float32, the
 * first half counted up from 1 and the second half down from 0. (Exact whenever K − 1 is a power of two,
 * e.g. K = 33 for lws 9 and K = 9 for lws 3.)
 */
export function softAppendWeights(overlap: number): Float32Array {
  if (!Number.isInteger(overlap) || overlap < 1) throw new SoftAppendError(`The overlap must be a whole number ≥ 1, got ${overlap}.`);
  const w = new Float32Array(overlap);
  if (overlap === 1) {
    w[0] = 1;
    return w;
  }
  const step = Math.fround(-1 / (overlap - 1));
  const halfway = Math.floor(overlap / 2);
  for (let i = 0; i < overlap; i++) {
    w[i] = i < halfway ? Math.fround(1 + Math.fround(step * i)) : Math.fround(0 - Math.fround(step * (overlap - i - 1)));
  }
  return w;
}

/**
 * The K blended frames: w_k·aTail[k] + (1 − w_k)·bHead[k], each operation rounded to float32 as in torch.
 * aTail and bHead are [B, C, K, H, W].
 */
export function blendOverlap(aTail: Tensor, bHead: Tensor): Tensor {
  const [b, c, k, h, w] = aTail.shape;
  if (bHead.shape.length !== 5 || bHead.shape.some((d, i) => d !== aTail.shape[i])) {
    throw new SoftAppendError(`Overlapping frames must have equal shapes, got [${aTail.shape}] and [${bHead.shape}].`);
  }
  const weights = softAppendWeights(k);
  const frame = h * w;
  const out = new Float32Array(aTail.data.length);
  for (let plane = 0; plane < b * c; plane++) {
    for (let t = 0; t < k; t++) {
      const wa = weights[t];
      const wb = Math.fround(1 - wa);
      const base = (plane * k + t) * frame;
      for (let i = base; i < base + frame; i++) {
        out[i] = Math.fround(Math.fround(wa * aTail.data[i]) + Math.fround(wb * bHead.data[i]));
      }
    }
  }
  return { data: out, shape: [b, c, k, h, w] };
}

function checkLengths(a: Tensor, b: Tensor, overlap: number): void {
  if (a.shape.length !== 5 || b.shape.length !== 5) throw new SoftAppendError('soft_append joins [B, C, T, H, W] videos.');
  if (!Number.isInteger(overlap) || overlap > a.shape[2] || overlap > b.shape[2]) {
    throw new SoftAppendError(`An overlap of ${overlap} frames needs both videos at least that long (got ${a.shape[2]} and ${b.shape[2]}).`);
  }
}

/** soft_append_bcthw(a, b, K): a's frames, then b's, the K shared ones cross-faded; K ≤ 0 just concatenates. */
export function softAppend(a: Tensor, b: Tensor, overlap: number): Tensor {
  if (overlap <= 0) return concatFrames([a, b]);
  checkLengths(a, b, overlap);
  const ta = a.shape[2];
  return concatFrames([
    sliceFrames(a, 0, ta - overlap),
    blendOverlap(sliceFrames(a, ta - overlap), sliceFrames(b, 0, overlap)),
    sliceFrames(b, overlap),
  ]);
}

/** A streaming join's result: frames no later section can change, and the K frames still held for blending. */
export interface StreamingJoin {
  final: Tensor;
  held: Tensor;
}

/**
 * F1's join (new frames AFTER the video): given only the video's last K frames (`heldTail`), returns the
 * frames of soft_append(video, next, K) that are now final, in time order, and the new last K frames.
 * Concatenating every `final` and the last `held` gives the reference's whole video.
 */
export function appendStreaming(heldTail: Tensor, next: Tensor, overlap: number): StreamingJoin {
  checkLengths(heldTail, next, overlap);
  if (heldTail.shape[2] !== overlap) throw new SoftAppendError(`Hold exactly the last ${overlap} frames (got ${heldTail.shape[2]}).`);
  const joined = softAppend(heldTail, next, overlap); // heldTail is all overlap, so this is blend + next[K:]
  const t = joined.shape[2];
  return { final: sliceFrames(joined, 0, t - overlap), held: sliceFrames(joined, t - overlap) };
}

/**
 * The original loop's join (new frames BEFORE the video): given only the video's first K frames (`heldHead`),
 * returns the frames of soft_append(next, video, K) now final — they precede, in time, everything finalised
 * earlier — and the new first K frames. The video in order is the last `held`, then every `final` from the
 * newest to the oldest.
 */
export function prependStreaming(next: Tensor, heldHead: Tensor, overlap: number): StreamingJoin {
  checkLengths(next, heldHead, overlap);
  if (heldHead.shape[2] !== overlap) throw new SoftAppendError(`Hold exactly the first ${overlap} frames (got ${heldHead.shape[2]}).`);
  const joined = softAppend(next, heldHead, overlap); // next[:−K] + blend
  return { final: sliceFrames(joined, overlap), held: sliceFrames(joined, 0, overlap) };
}

/**
 * Splits the first decode into held and final parts for the streaming joins: F1 holds the last K frames,
 * the original loop the first K.
 */
export function startStreaming(first: Tensor, overlap: number, placement: 'before' | 'after'): StreamingJoin {
  const t = first.shape[2];
  if (overlap > t) throw new SoftAppendError(`The first decode has ${t} frames, fewer than the overlap ${overlap}.`);
  return placement === 'after'
    ? { final: sliceFrames(first, 0, t - overlap), held: sliceFrames(first, t - overlap) }
    : { final: sliceFrames(first, overlap), held: sliceFrames(first, 0, overlap) };
}

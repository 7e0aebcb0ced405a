// The latent history both loops keep between sections, and what each section reads from it and decodes.
// The original loop PREPENDS each section (it generates the end of the video first) and reads its context from
// the front; F1 APPENDS and reads from the back. These pure functions on [1, C, T, H, W] tensors replay the
// demos' tensor bookkeeping exactly, so the worker only moves data (framepack-reference.md §7.1, §7.2, §12).

import { HistoryError } from '../errors/pipeline.ts';
import { decodedLatentsAfterSection, overlapFrames } from './frameCount.ts';
import { CONTEXT_1X_FRAMES, CONTEXT_2X_FRAMES, CONTEXT_4X_FRAMES, CONTEXT_FRAMES, type LoopVariant } from './sectionPlan.ts';
import { tensor, type Tensor } from './tensor.ts';

/** Frames [start, end) of a [B, C, T, H, W] tensor along T, bounds clamped to [0, T] like a Python slice. */
export function sliceFrames(x: Tensor, start: number, end: number = x.shape[2]): Tensor {
  checkVideo(x, 'sliceFrames');
  const [b, c, t, h, w] = x.shape;
  const clampIndex = (i: number) => Math.min(Math.max(i, 0), t);
  const from = clampIndex(start);
  const to = Math.max(clampIndex(end), from);
  const frame = h * w;
  const n = to - from;
  const out = new Float32Array(b * c * n * frame);
  for (let plane = 0; plane < b * c; plane++) {
    out.set(x.data.subarray((plane * t + from) * frame, (plane * t + to) * frame), plane * n * frame);
  }
  return tensor([b, c, n, h, w], out);
}

/** Concatenation along T of [B, C, T_i, H, W] tensors that agree on B, C, H, W. */
export function concatFrames(parts: readonly Tensor[]): Tensor {
  if (parts.length === 0) throw new HistoryError('concatFrames needs at least one tensor.');
  for (const p of parts) checkVideo(p, 'concatFrames');
  const [b, c, , h, w] = parts[0].shape;
  for (const p of parts) {
    if (p.shape[0] !== b || p.shape[1] !== c || p.shape[3] !== h || p.shape[4] !== w) {
      throw new HistoryError(`concatFrames: shape [${p.shape}] does not match [${b}, ${c}, *, ${h}, ${w}].`);
    }
  }
  const frame = h * w;
  const total = parts.reduce((n, p) => n + p.shape[2], 0);
  const out = new Float32Array(b * c * total * frame);
  for (let plane = 0; plane < b * c; plane++) {
    let at = plane * total * frame;
    for (const p of parts) {
      const n = p.shape[2] * frame;
      out.set(p.data.subarray(plane * n, (plane + 1) * n), at);
      at += n;
    }
  }
  return tensor([b, c, total, h, w], out);
}

function checkVideo(x: Tensor, where: string): void {
  if (x.shape.length !== 5) throw new HistoryError(`${where}: expected a [B, C, T, H, W] tensor, got shape [${x.shape}].`);
}

/** The demos' history_latents plus their counter total_generated_latent_frames. */
export interface LatentHistory {
  readonly variant: LoopVariant;
  /** [1, C, T, H, W] float32: generated latents and the zero "unknown" context, in the demo's order. */
  readonly latents: Tensor;
  /** total_generated_latent_frames: real (non-zero-padding) latents produced so far. */
  readonly generatedFrames: number;
  /** Sections appended so far. */
  readonly sectionsDone: number;
}

/** What the DiT reads for the next section besides the noise. */
export interface SectionContext {
  /** [1, C, 2, H, W]: the user's frame, then the nearest history frame (or the end frame, see below). */
  cleanLatents: Tensor;
  /** [1, C, 2, H, W] */
  cleanLatents2x: Tensor;
  /** [1, C, 16, H, W] */
  cleanLatents4x: Tensor;
}

function checkStartLatent(start: Tensor): void {
  checkVideo(start, 'start latent');
  if (start.shape[2] !== 1) throw new HistoryError(`The start latent must hold one frame, got ${start.shape[2]}.`);
}

/**
 * The history before the first section. Original: zeros [1, C, 19, H, W] and 0 generated; F1: those zeros
 * followed by the start latent, 1 generated (the user's frame counts as part of the F1 video).
 */
export function createHistory(variant: LoopVariant, startLatent: Tensor): LatentHistory {
  checkStartLatent(startLatent);
  const [b, c, , h, w] = startLatent.shape;
  const zeros = tensor([b, c, CONTEXT_FRAMES, h, w]);
  if (variant === 'original') return { variant, latents: zeros, generatedFrames: 0, sectionsDone: 0 };
  return { variant, latents: concatFrames([zeros, startLatent]), generatedFrames: 1, sectionsDone: 0 };
}

/**
 * The clean context of the next section. Original: [start, history[0]], history[1:3], history[3:19];
 * F1: split(history[−19:], [16, 2, 1]) with [start, that 1x frame]. With `endLatent` (original loop only,
 * the end-frame variant of PR #167) the FIRST generated section — the end of the video — sees the end image
 * instead of history[0] (zeros). Throws HistoryError for an end frame on F1 or mismatched shapes.
 */
export function sectionContext(history: LatentHistory, startLatent: Tensor, endLatent?: Tensor): SectionContext {
  checkStartLatent(startLatent);
  const window = history.variant === 'original'
    ? sliceFrames(history.latents, 0, CONTEXT_FRAMES)
    : sliceFrames(history.latents, history.latents.shape[2] - CONTEXT_FRAMES);
  if (window.shape[2] !== CONTEXT_FRAMES) throw new HistoryError(`The history holds ${window.shape[2]} frames, fewer than the ${CONTEXT_FRAMES} the context needs.`);
  if (history.variant === 'original') {
    let post = sliceFrames(window, 0, CONTEXT_1X_FRAMES);
    if (endLatent) {
      checkStartLatent(endLatent);
      if (history.sectionsDone === 0) post = endLatent;
    }
    return {
      cleanLatents: concatFrames([startLatent, post]),
      cleanLatents2x: sliceFrames(window, CONTEXT_1X_FRAMES, CONTEXT_1X_FRAMES + CONTEXT_2X_FRAMES),
      cleanLatents4x: sliceFrames(window, CONTEXT_1X_FRAMES + CONTEXT_2X_FRAMES),
    };
  }
  if (endLatent) throw new HistoryError('An end frame is only supported with the original (inverted) model, not F1.');
  return {
    cleanLatents: concatFrames([startLatent, sliceFrames(window, CONTEXT_4X_FRAMES + CONTEXT_2X_FRAMES)]),
    cleanLatents2x: sliceFrames(window, CONTEXT_4X_FRAMES, CONTEXT_4X_FRAMES + CONTEXT_2X_FRAMES),
    cleanLatents4x: sliceFrames(window, 0, CONTEXT_4X_FRAMES),
  };
}

/**
 * The history after a section produced `generated` [1, C, lws, H, W]. Original: prepends it, and on its last
 * section (padding 0) prepends the start latent in front of it as well; F1: appends it.
 */
export function appendSection(history: LatentHistory, generated: Tensor, startLatent: Tensor, isLast: boolean): LatentHistory {
  checkStartLatent(startLatent);
  const next = { variant: history.variant, sectionsDone: history.sectionsDone + 1 };
  if (history.variant === 'f1') {
    return { ...next, latents: concatFrames([history.latents, generated]), generatedFrames: history.generatedFrames + generated.shape[2] };
  }
  const section = isLast ? concatFrames([startLatent, generated]) : generated;
  return { ...next, latents: concatFrames([section, history.latents]), generatedFrames: history.generatedFrames + section.shape[2] };
}

/**
 * The real latents still held, in video order: original history[:, :, :total], F1 history[:, :, −total:]
 * (after dropUnreadLatents, only the part still held).
 */
export function realHistory(history: LatentHistory): Tensor {
  const held = history.latents.shape[2];
  const n = Math.min(history.generatedFrames, held);
  return history.variant === 'original' ? sliceFrames(history.latents, 0, n) : sliceFrames(history.latents, held - n);
}

/** What to VAE-decode after a section, and how its frames join the video so far. */
export interface DecodeStep {
  /** [1, C, n, H, W] latents to decode (4n − 3 frames). */
  latents: Tensor;
  /** Frames shared with the video so far (soft-append overlap); 0 on the first section, which starts the video. */
  overlap: number;
  /** Original: the new frames come BEFORE the old ones (soft_append(new, old)); F1: after (soft_append(old, new)). */
  placement: 'before' | 'after';
}

/** Where a section's frames go in the video: the original loop makes the end first (before), F1 appends (after). */
export function framePlacement(variant: LoopVariant): 'before' | 'after' {
  return variant === 'original' ? 'before' : 'after';
}

/**
 * The demos' decode after the section just appended: all real latents after the first section; then the
 * 2·lws newest (original: first 2·lws, + 1 on the last section; F1: last 2·lws) with overlap lws·4 − 3.
 */
export function latentsToDecode(history: LatentHistory, latentWindow: number, isLast: boolean): DecodeStep {
  if (history.sectionsDone < 1) throw new HistoryError('Nothing to decode before the first section is appended.');
  const order = history.sectionsDone - 1;
  const placement = framePlacement(history.variant);
  const real = realHistory(history);
  if (order === 0) return { latents: real, overlap: 0, placement };
  const n = decodedLatentsAfterSection(history.variant, order, isLast, latentWindow);
  if (n > real.shape[2]) throw new HistoryError(`The decode needs ${n} latents but only ${real.shape[2]} are held; keep more with dropUnreadLatents.`);
  const latents = history.variant === 'original' ? sliceFrames(real, 0, n) : sliceFrames(real, real.shape[2] - n);
  return { latents, overlap: overlapFrames(latentWindow), placement };
}

/**
 * Frees the latents no later section reads (the reference keeps them all: ~350 MB of fp32 for a 120 s video).
 * Keeps the max(19, 2·lws + 1) frames at the reading end — the context window and the largest later decode.
 * Contexts and decodes are unchanged; realHistory then returns only the frames still held.
 */
export function dropUnreadLatents(history: LatentHistory, latentWindow: number): LatentHistory {
  const keep = Math.max(CONTEXT_FRAMES, 2 * latentWindow + 1);
  if (history.latents.shape[2] <= keep) return history;
  const held = history.latents.shape[2];
  const latents = history.variant === 'original' ? sliceFrames(history.latents, 0, keep) : sliceFrames(history.latents, held - keep);
  return { ...history, latents };
}

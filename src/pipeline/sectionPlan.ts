// How a FramePack job is cut into sections and where each section sits on the RoPE time axis. The packed DiT
// never sees frame numbers, only these index lists: the original model generates back to front with a "padding"
// gap between the user's frame (index 0) and the section, F1 generates front to back with one fixed layout.
// Everything is a pure function of (seconds, latent window size), so the worker, the CLI and the UI's estimates
// share one plan (framepack-reference.md §7.1, §7.2, §7.5).

import { SectionPlanError } from '../errors/pipeline.ts';
import { pythonRound } from './pythonRound.ts';

export type LoopVariant = 'original' | 'f1';

/** History frames the packed DiT reads per section at full, 2x and 4x compression (fixed by the model). */
export const CONTEXT_1X_FRAMES = 1;
export const CONTEXT_2X_FRAMES = 2;
export const CONTEXT_4X_FRAMES = 16;
/** 1 + 2 + 16: the history window the context is cut from. */
export const CONTEXT_FRAMES = CONTEXT_1X_FRAMES + CONTEXT_2X_FRAMES + CONTEXT_4X_FRAMES;

/** The reference's video frame rate; the section count is defined in frames of it. */
export const REFERENCE_FPS = 30;

/** One section's place on the RoPE time axis, exactly the index tensors the reference passes to the DiT. */
export interface SectionLayout {
  variant: LoopVariant;
  /** 0-based position in generation order (original: 0 is the END of the video). */
  order: number;
  /** Original loop: latent padding p (p·lws blank slots after index 0). F1 has no padding and reports 0. */
  padding: number;
  /** RoPE times of the lws noisy frames being generated. */
  latentIndices: number[];
  /** RoPE times of the two clean 1x frames: [start frame, nearest history frame]. */
  cleanLatentIndices: number[];
  /** RoPE times of the 2 history frames seen at 2x compression. */
  clean2xIndices: number[];
  /** RoPE times of the 16 history frames seen at 4x compression. */
  clean4xIndices: number[];
  /** Original: the section that ends at the user's frame (padding 0); F1: the final section. */
  isLast: boolean;
}

function checkCount(what: string, n: number): void {
  if (!Number.isInteger(n) || n < 1) throw new SectionPlanError(`${what} must be a whole number of at least 1, got ${n}.`);
}

function range(start: number, count: number): number[] {
  return Array.from({ length: count }, (_, i) => start + i);
}

/**
 * Sections for a video of `totalSeconds`: max(round(seconds·fps / (lws·4)), 1) with Python's half-to-even
 * rounding, computed in the same double arithmetic and order as the demos (3.0 s, lws 9 → 2.5 → 2 sections).
 * Throws SectionPlanError for a non-positive or non-finite length or a bad window size.
 */
export function sectionCount(totalSeconds: number, latentWindow: number, fps: number = REFERENCE_FPS): number {
  checkCount('The latent window size', latentWindow);
  if (!Number.isFinite(totalSeconds) || totalSeconds <= 0) {
    throw new SectionPlanError(`The video length must be a positive number of seconds, got ${totalSeconds}.`);
  }
  return Math.max(pythonRound((totalSeconds * fps) / (latentWindow * 4)), 1);
}

/**
 * The original loop's paddings in generation order: [S−1, …, 0], or for S > 4 the demo's
 * [3, 2, …, 2, 1, 0] ("duplicating some items looks better than expanding it").
 */
export function originalPaddings(sections: number): number[] {
  checkCount('The section count', sections);
  if (sections > 4) return [3, ...new Array<number>(sections - 3).fill(2), 1, 0];
  return range(0, sections).reverse();
}

/**
 * The original loop's layout for one padding: arange(1 + p·lws + lws + 1 + 2 + 16) split as
 * [start | blank(p·lws) | latents(lws) | post | 2x(2) | 4x(16)], clean indices = [start, post].
 */
export function originalSectionLayout(padding: number, latentWindow: number, order = 0): SectionLayout {
  checkCount('The latent window size', latentWindow);
  if (!Number.isInteger(padding) || padding < 0) throw new SectionPlanError(`A latent padding must be a whole number ≥ 0, got ${padding}.`);
  const first = 1 + padding * latentWindow; // after the start frame and the blank slots
  const post = first + latentWindow;
  return {
    variant: 'original',
    order,
    padding,
    latentIndices: range(first, latentWindow),
    cleanLatentIndices: [0, post],
    clean2xIndices: range(post + CONTEXT_1X_FRAMES, CONTEXT_2X_FRAMES),
    clean4xIndices: range(post + CONTEXT_1X_FRAMES + CONTEXT_2X_FRAMES, CONTEXT_4X_FRAMES),
    isLast: padding === 0,
  };
}

/**
 * F1's layout, the same for every section: arange(1 + 16 + 2 + 1 + lws) split as
 * [start | 4x(16) | 2x(2) | 1x | latents(lws)], clean indices = [start, 1x].
 */
export function f1SectionLayout(latentWindow: number, order = 0, sections = order + 1): SectionLayout {
  checkCount('The latent window size', latentWindow);
  const oneX = 1 + CONTEXT_4X_FRAMES + CONTEXT_2X_FRAMES;
  return {
    variant: 'f1',
    order,
    padding: 0,
    latentIndices: range(oneX + CONTEXT_1X_FRAMES, latentWindow),
    cleanLatentIndices: [0, oneX],
    clean2xIndices: range(1 + CONTEXT_4X_FRAMES, CONTEXT_2X_FRAMES),
    clean4xIndices: range(1, CONTEXT_4X_FRAMES),
    isLast: order === sections - 1,
  };
}

/** Every section of a job in generation order. Throws SectionPlanError for bad counts. */
export function sectionPlan(variant: LoopVariant, sections: number, latentWindow: number): SectionLayout[] {
  checkCount('The section count', sections);
  if (variant === 'original') {
    return originalPaddings(sections).map((p, order) => originalSectionLayout(p, latentWindow, order));
  }
  return range(0, sections).map((order) => f1SectionLayout(latentWindow, order, sections));
}

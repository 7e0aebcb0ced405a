// Frame accounting for both loops: how many latent and pixel frames exist after each section, how many latents
// each section re-decodes, how many frames the soft-append overlaps, and the progress line the demos print.
// The causal VAE turns L latents into 4L − 3 frames (the first latent is one frame, each later one four), and
// every count below follows from that (framepack-reference.md §7.4, §7.5).

import { FrameCountError } from '../errors/pipeline.ts';
import { pythonFormatFixed } from './pythonRound.ts';
import { REFERENCE_FPS, type LoopVariant } from './sectionPlan.ts';

function checkWhole(what: string, n: number, min: number): void {
  if (!Number.isInteger(n) || n < min) throw new FrameCountError(`${what} must be a whole number ≥ ${min}, got ${n}.`);
}

/** Pixel frames from decoding L latent frames: 4L − 3, and 0 for no latents (the demos' max(0, 4L − 3)). */
export function pixelFramesForLatents(latentFrames: number): number {
  checkWhole('A latent frame count', latentFrames, 0);
  return Math.max(0, 4 * latentFrames - 3);
}

/** Pixel frames one section window covers, which is also the soft-append overlap: lws·4 − 3. */
export function overlapFrames(latentWindow: number): number {
  checkWhole('The latent window size', latentWindow, 1);
  return pixelFramesForLatents(latentWindow);
}

/** Latent frames of a finished job (both loops): lws per section plus the user's frame. */
export function totalLatentFrames(sections: number, latentWindow: number): number {
  checkWhole('The section count', sections, 1);
  checkWhole('The latent window size', latentWindow, 1);
  return sections * latentWindow + 1;
}

/** Seconds of video for a frame count at the given rate. */
export function durationSeconds(pixelFrames: number, fps: number = REFERENCE_FPS): number {
  return pixelFrames / fps;
}

/**
 * The demos' total_generated_latent_frames after `done` of `sections` sections. The original loop starts at 0
 * and adds the user's frame with the last section; F1 starts at 1 (the user's frame is already in its history).
 */
export function latentFramesAfter(variant: LoopVariant, done: number, sections: number, latentWindow: number): number {
  checkWhole('The section count', sections, 1);
  checkWhole('The latent window size', latentWindow, 1);
  if (!Number.isInteger(done) || done < 0 || done > sections) {
    throw new FrameCountError(`Sections done must be a whole number from 0 to ${sections}, got ${done}.`);
  }
  if (variant === 'f1') return 1 + done * latentWindow;
  return done * latentWindow + (done === sections ? 1 : 0);
}

/** Frames of the video emitted after `done` ≥ 1 sections (the length of the MP4 the demos write then). */
export function videoFramesAfter(variant: LoopVariant, done: number, sections: number, latentWindow: number): number {
  if (done < 1) throw new FrameCountError(`No video exists before the first section is done (asked after ${done}).`);
  return pixelFramesForLatents(latentFramesAfter(variant, done, sections, latentWindow));
}

/** Frames the section at generation position `order` (0-based) adds to the video. */
export function framesAddedBySection(variant: LoopVariant, order: number, sections: number, latentWindow: number): number {
  const before = order === 0 ? 0 : videoFramesAfter(variant, order, sections, latentWindow);
  return videoFramesAfter(variant, order + 1, sections, latentWindow) - before;
}

/**
 * Latent frames VAE-decoded after the section at generation position `order`: the whole real history after
 * the first section, then the 2·lws newest latents (original: + 1 on its last section, which adds the user's
 * frame). The decode of n latents yields 4n − 3 frames, of which overlapFrames(lws) blend with the old video.
 */
export function decodedLatentsAfterSection(variant: LoopVariant, order: number, isLast: boolean, latentWindow: number): number {
  checkWhole('The latent window size', latentWindow, 1);
  checkWhole('A section position', order, 0);
  const withStart = variant === 'original' && isLast ? 1 : 0;
  if (order === 0) return variant === 'f1' ? 1 + latentWindow : latentWindow + withStart;
  return 2 * latentWindow + withStart;
}

/** The progress figures the demos show while sampling, from the latents generated so far. */
export interface ProgressFigures {
  frames: number;
  seconds: number;
}

export function progressFigures(latentFramesSoFar: number, fps: number = REFERENCE_FPS): ProgressFigures {
  const frames = pixelFramesForLatents(latentFramesSoFar);
  return { frames, seconds: durationSeconds(frames, fps) };
}

/** The demos' description line: "Total generated frames: N, Video length: S.SS seconds (FPS-30). …". */
export function progressDescription(latentFramesSoFar: number, fps: number = REFERENCE_FPS): string {
  const { frames, seconds } = progressFigures(latentFramesSoFar, fps);
  return `Total generated frames: ${frames}, Video length: ${pythonFormatFixed(seconds, 2)} seconds (FPS-${fps}). The video is being extended now ...`;
}

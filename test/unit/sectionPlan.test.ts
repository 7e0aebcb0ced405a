import { NotRoundableError, SectionPlanError } from '../../src/errors/index.ts';
import { describe, expect, it } from 'vitest';
import { pythonFormatFixed, pythonRound } from '../../src/pipeline/pythonRound.ts';
import { f1SectionLayout, originalPaddings, originalSectionLayout, sectionCount, sectionPlan, type LoopVariant } from '../../src/pipeline/sectionPlan.ts';
import {
  decodedLatentsAfterSection, durationSeconds, framesAddedBySection, latentFramesAfter, overlapFrames, pixelFramesForLatents,
  progressDescription, totalLatentFrames, videoFramesAfter,
} from '../../src/pipeline/frameCount.ts';
import { loadFixture } from '../helpers/fixtures.ts';

const span = (a: number, b: number) => Array.from({ length: b - a + 1 }, (_, i) => a + i);

describe("Python's round and :.2f", () => {
  it('rounds halves to even and everything else to nearest', () => {
    expect([0.5, 1.5, 2.5, 3.5, -0.5, -1.5, -2.5].map(pythonRound)).toEqual([0, 2, 2, 4, 0, -2, -2]);
    expect([2.4999999999999996, 2.5000000000000004, 4.1666, 0.49999999999999994].map(pythonRound)).toEqual([2, 3, 4, 0]);
    expect(() => pythonRound(Number.NaN)).toThrow(NotRoundableError);
  });

  it('formats exact ties to even like Python, everything else like toFixed', () => {
    expect(pythonFormatFixed(0.125, 2)).toBe('0.12'); // f"{0.125:.2f}" == '0.12'
    expect(pythonFormatFixed(0.375, 2)).toBe('0.38');
    expect(pythonFormatFixed(2.5, 0)).toBe('2');
    expect(pythonFormatFixed(1.005, 2)).toBe('1.00'); // 1.005 is stored below the tie
    expect(pythonFormatFixed(145 / 30, 2)).toBe('4.83');
  });
});

describe('section count (§7, §7.4)', () => {
  it('uses half-to-even on seconds·30 / (lws·4)', () => {
    expect(sectionCount(3.0, 9)).toBe(2); // 90/36 = 2.5 → 2, where Math.round would give 3
    expect(sectionCount(1, 9)).toBe(1);
    expect(sectionCount(5, 9)).toBe(4);
    expect(sectionCount(60, 9)).toBe(50);
    expect(sectionCount(120, 9)).toBe(100);
    expect(sectionCount(0.1, 9)).toBe(1); // never fewer than one section
    expect(() => sectionCount(0, 9)).toThrow(SectionPlanError);
    expect(() => sectionCount(5, 0)).toThrow(SectionPlanError);
  });
});

describe('original loop paddings and layouts (§7.1, §7.5)', () => {
  it('paddings: reversed(range(S)), and [3] + [2]·(S−3) + [1, 0] past 4 sections', () => {
    expect(originalPaddings(1)).toEqual([0]);
    expect(originalPaddings(2)).toEqual([1, 0]);
    expect(originalPaddings(4)).toEqual([3, 2, 1, 0]);
    expect(originalPaddings(5)).toEqual([3, 2, 2, 1, 0]);
    expect(originalPaddings(50)).toEqual([3, ...new Array(47).fill(2), 1, 0]);
  });

  it("reproduces §7.1's index examples (lws 9)", () => {
    const p3 = originalSectionLayout(3, 9);
    expect(p3.latentIndices).toEqual(span(28, 36));
    expect(p3.cleanLatentIndices).toEqual([0, 37]);
    expect(p3.clean2xIndices).toEqual([38, 39]);
    expect(p3.clean4xIndices).toEqual(span(40, 55));
    const p2 = originalSectionLayout(2, 9);
    expect(p2.latentIndices).toEqual(span(19, 27));
    expect(p2.cleanLatentIndices).toEqual([0, 28]);
    const p0 = originalSectionLayout(0, 9);
    expect(p0.latentIndices).toEqual(span(1, 9));
    expect(p0.cleanLatentIndices).toEqual([0, 10]);
    expect(p0.clean2xIndices).toEqual([11, 12]);
    expect(p0.clean4xIndices).toEqual(span(13, 28));
    expect([p3.isLast, p2.isLast, p0.isLast]).toEqual([false, false, true]);
  });

  it("reproduces §7.5's original table (5 s, lws 9)", () => {
    const S = sectionCount(5, 9);
    const rows = [
      // p, latent_indices, clean idx, 2x idx, 4x idx, L after, decoded chunk, video frames
      [3, span(28, 36), [0, 37], [38, 39], span(40, 55), 9, 9, 33],
      [2, span(19, 27), [0, 28], [29, 30], span(31, 46), 18, 18, 69],
      [1, span(10, 18), [0, 19], [20, 21], span(22, 37), 27, 18, 105],
      [0, span(1, 9), [0, 10], [11, 12], span(13, 28), 37, 19, 145],
    ] as const;
    const plan = sectionPlan('original', S, 9);
    expect(plan.length).toBe(rows.length);
    plan.forEach((s, k) => {
      const [p, latent, clean, twoX, fourX, lAfter, chunk, frames] = rows[k];
      expect(s.padding).toBe(p);
      expect(s.latentIndices).toEqual(latent);
      expect(s.cleanLatentIndices).toEqual(clean);
      expect(s.clean2xIndices).toEqual(twoX);
      expect(s.clean4xIndices).toEqual(fourX);
      expect(latentFramesAfter('original', k + 1, S, 9)).toBe(lAfter);
      expect(decodedLatentsAfterSection('original', k, s.isLast, 9)).toBe(chunk);
      expect(pixelFramesForLatents(chunk)).toBe([33, 69, 69, 73][k]);
      expect(videoFramesAfter('original', k + 1, S, 9)).toBe(frames);
    });
  });
});

describe('F1 layout (§7.2, §7.5)', () => {
  it('is fixed: start 0, 4x 1–16, 2x 17–18, 1x 19, noisy 20–28', () => {
    const plan = sectionPlan('f1', 4, 9);
    for (const s of plan) {
      expect(s.latentIndices).toEqual(span(20, 28));
      expect(s.cleanLatentIndices).toEqual([0, 19]);
      expect(s.clean2xIndices).toEqual([17, 18]);
      expect(s.clean4xIndices).toEqual(span(1, 16));
    }
    expect(plan.map((s) => s.isLast)).toEqual([false, false, false, true]);
    expect(f1SectionLayout(3).latentIndices).toEqual([20, 21, 22]);
  });

  it("reproduces §7.5's F1 table (L after, decoded chunk, video frames)", () => {
    const rows = [[10, 10, 37, 37], [19, 18, 69, 73], [28, 18, 69, 109], [37, 18, 69, 145]];
    rows.forEach(([lAfter, chunk, chunkFrames, frames], k) => {
      expect(latentFramesAfter('f1', k + 1, 4, 9)).toBe(lAfter);
      expect(decodedLatentsAfterSection('f1', k, k === 3, 9)).toBe(chunk);
      expect(pixelFramesForLatents(chunk)).toBe(chunkFrames);
      expect(videoFramesAfter('f1', k + 1, 4, 9)).toBe(frames);
    });
  });
});

describe('frame accounting (§7.4)', () => {
  it('matches the examples: L = 9S + 1, F = 4L − 3, duration F/30', () => {
    const cases: [number, number, number, string][] = [[1, 1, 37, '1.23'], [5, 4, 145, '4.83'], [3, 2, 73, '2.43'], [60, 50, 1801, '60.03'], [120, 100, 3601, '120.03']];
    for (const [seconds, S, frames, duration] of cases) {
      expect(sectionCount(seconds, 9)).toBe(S);
      const L = totalLatentFrames(S, 9);
      expect(L).toBe(9 * S + 1);
      expect(pixelFramesForLatents(L)).toBe(frames);
      expect(pythonFormatFixed(durationSeconds(frames), 2)).toBe(duration);
      for (const v of ['original', 'f1'] as LoopVariant[]) expect(videoFramesAfter(v, S, S, 9)).toBe(frames);
    }
  });

  it('first video 33 frames (original, 37 if S = 1) / 37 (F1); later sections add 36, the last original one 40', () => {
    expect(framesAddedBySection('original', 0, 4, 9)).toBe(33);
    expect(framesAddedBySection('original', 0, 1, 9)).toBe(37);
    expect(framesAddedBySection('f1', 0, 4, 9)).toBe(37);
    expect([1, 2].map((k) => framesAddedBySection('original', k, 4, 9))).toEqual([36, 36]);
    expect(framesAddedBySection('original', 3, 4, 9)).toBe(40);
    expect([1, 2, 3].map((k) => framesAddedBySection('f1', k, 4, 9))).toEqual([36, 36, 36]);
    expect(overlapFrames(9)).toBe(33);
  });

  it('progress text uses max(0, 4L − 3) and (4L − 3)/30 with two decimals', () => {
    expect(progressDescription(0)).toBe('Total generated frames: 0, Video length: 0.00 seconds (FPS-30). The video is being extended now ...');
    expect(progressDescription(1)).toBe('Total generated frames: 1, Video length: 0.03 seconds (FPS-30). The video is being extended now ...');
    expect(progressDescription(37)).toBe('Total generated frames: 145, Video length: 4.83 seconds (FPS-30). The video is being extended now ...');
  });

  for (const name of ['pipeline_original', 'pipeline_f1']) {
    it(`${name}: video frames after each section equal section{k}_pixel_frames`, async () => {
      const f = await loadFixture(`${name}.safetensors`);
      const variant = f.meta.variant as LoopVariant;
      const S = f.meta.sections as number;
      const lws = f.meta.latent_window as number;
      if (variant === 'original') expect(sectionPlan('original', S, lws).map((s) => s.padding)).toEqual(f.meta.paddings);
      for (let k = 0; k < S; k++) {
        expect(videoFramesAfter(variant, k + 1, S, lws)).toBe(f.ints(`section${k}_pixel_frames`)[0]);
      }
      expect(f.shape('pixels')[2]).toBe(videoFramesAfter(variant, S, S, lws));
    });
  }
});

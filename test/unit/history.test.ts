import { HistoryError } from '../../src/errors/index.ts';
import { describe, expect, it } from 'vitest';
import { appendSection, concatFrames, createHistory, dropUnreadLatents, latentsToDecode, realHistory, sectionContext, sliceFrames, type LatentHistory } from '../../src/pipeline/history.ts';
import { sectionPlan, type LoopVariant } from '../../src/pipeline/sectionPlan.ts';
import { formatError, tensorError } from '../../src/pipeline/tensorError.ts';
import type { Tensor } from '../../src/pipeline/tensor.ts';
import { loadFixture } from '../helpers/fixtures.ts';

/** Frame t of a [1, C, T, H, W] tensor as C·H·W values, read with the test's own indexing. */
function frameOf(x: Tensor, t: number): Float32Array {
  const [, c, T, h, w] = x.shape;
  const out = new Float32Array(c * h * w);
  for (let ci = 0; ci < c; ci++) out.set(x.data.subarray((ci * T + t) * h * w, (ci * T + t + 1) * h * w), ci * h * w);
  return out;
}

function framesOf(x: Tensor): Float32Array[] {
  return Array.from({ length: x.shape[2] }, (_, t) => frameOf(x, t));
}

function expectFrames(got: Tensor, want: Float32Array[]): void {
  expect(got.shape[2]).toBe(want.length);
  framesOf(got).forEach((f, t) => {
    expect(f).toEqual(want[t]);
  });
}

async function replay(name: string, options: { drop?: boolean } = {}) {
  const f = await loadFixture(`${name}.safetensors`);
  const variant = f.meta.variant as LoopVariant;
  const S = f.meta.sections as number;
  const lws = f.meta.latent_window as number;
  const start = f.f32('start_latent');
  const generated = Array.from({ length: S }, (_, k) => f.f32(`section${k}_generated`));
  const zero = new Float32Array(frameOf(start, 0).length);
  const plan = sectionPlan(variant, S, lws);
  let history: LatentHistory = createHistory(variant, start);
  // The timeline the test keeps itself: every latent frame in history order, zeros included.
  let timeline: Float32Array[] = variant === 'original' ? new Array(19).fill(zero) : [...new Array(19).fill(zero), frameOf(start, 0)];
  let total = variant === 'original' ? 0 : 1;
  for (let k = 0; k < S; k++) {
    const ctx = sectionContext(history, start);
    if (variant === 'original') {
      expectFrames(ctx.cleanLatents, [frameOf(start, 0), timeline[0]]);
      expectFrames(ctx.cleanLatents2x, timeline.slice(1, 3));
      expectFrames(ctx.cleanLatents4x, timeline.slice(3, 19));
    } else {
      const last = timeline.slice(-19);
      expectFrames(ctx.cleanLatents, [frameOf(start, 0), last[18]]);
      expectFrames(ctx.cleanLatents2x, last.slice(16, 18));
      expectFrames(ctx.cleanLatents4x, last.slice(0, 16));
    }
    if (k === 0) {
      // The first section sees only the user's frame: zeros (original) or the start latent (F1) elsewhere.
      expect(frameOf(ctx.cleanLatents, 1)).toEqual(variant === 'original' ? zero : frameOf(start, 0));
      expect(ctx.cleanLatents4x.data.every((v) => v === 0)).toBe(true);
    }
    history = appendSection(history, generated[k], start, plan[k].isLast);
    const section = framesOf(generated[k]);
    if (variant === 'original') {
      const added = plan[k].isLast ? [frameOf(start, 0), ...section] : section;
      timeline = [...added, ...timeline];
      total += added.length;
    } else {
      timeline = [...timeline, ...section];
      total += section.length;
    }
    const decode = latentsToDecode(history, lws, plan[k].isLast);
    const real = variant === 'original' ? timeline.slice(0, total) : timeline.slice(-total);
    const n = k === 0 ? total : 2 * lws + (variant === 'original' && plan[k].isLast ? 1 : 0);
    expectFrames(decode.latents, variant === 'original' ? real.slice(0, n) : real.slice(-n));
    expect(decode.overlap).toBe(k === 0 ? 0 : 4 * lws - 3);
    expect(decode.placement).toBe(variant === 'original' ? 'before' : 'after');
    if (!options.drop) expectFrames(realHistory(history), real);
    if (options.drop) history = dropUnreadLatents(history, lws);
  }
  return { f, history };
}

describe('latent history against the pipeline fixtures', () => {
  for (const name of ['pipeline_original', 'pipeline_f1']) {
    it(`${name}: contexts and decodes follow the demo; the final history equals history_latents exactly`, async () => {
      const { f, history } = await replay(name);
      const want = f.f32('history_latents');
      expect(history.latents.shape).toEqual(want.shape);
      const err = tensorError(history.latents.data, want.data);
      console.log(`${name} history_latents ${formatError(err)}`);
      expect(err.abs).toBe(0);
      expect(history.generatedFrames).toBe(want.shape[2] - 19);
    });

    it(`${name}: dropping unread latents changes no context or decode`, async () => {
      const { history } = await replay(name, { drop: true });
      expect(history.latents.shape[2]).toBeLessThanOrEqual(19);
    });
  }
});

describe('end frame (original loop, §12)', () => {
  const shape = [1, 16, 1, 2, 2];
  const filled = (v: number): Tensor => ({ data: new Float32Array(64).fill(v), shape: [...shape] });

  it('replaces clean_latents_post of the first generated section only', () => {
    const start = filled(1);
    const end = filled(2);
    let h = createHistory('original', start);
    const first = sectionContext(h, start, end);
    expect(frameOf(first.cleanLatents, 0)).toEqual(frameOf(start, 0));
    expect(frameOf(first.cleanLatents, 1)).toEqual(frameOf(end, 0));
    h = appendSection(h, { data: new Float32Array(3 * 64).fill(3), shape: [1, 16, 3, 2, 2] }, start, false);
    const second = sectionContext(h, start, end);
    expect(frameOf(second.cleanLatents, 1).every((v) => v === 3)).toBe(true);
  });

  it('is refused for F1', () => {
    const start = filled(1);
    expect(() => sectionContext(createHistory('f1', start), start, filled(2))).toThrow(HistoryError);
  });
});

describe('frame slicing helpers', () => {
  it('slice and concat along T keep each channel plane contiguous', () => {
    const x: Tensor = { data: Float32Array.from({ length: 2 * 3 * 2 }, (_, i) => i), shape: [1, 2, 3, 2, 1] };
    const tail = sliceFrames(x, 1);
    expect(Array.from(tail.data)).toEqual([2, 3, 4, 5, 8, 9, 10, 11]);
    expect(Array.from(concatFrames([sliceFrames(x, 0, 1), tail]).data)).toEqual(Array.from(x.data));
  });
});

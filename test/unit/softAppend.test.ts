import { SoftAppendError } from '../../src/errors/index.ts';
import { describe, expect, it } from 'vitest';
import { appendStreaming, prependStreaming, softAppend, softAppendWeights, startStreaming } from '../../src/pipeline/softAppend.ts';
import { appendSection, concatFrames, createHistory, latentsToDecode } from '../../src/pipeline/history.ts';
import { sectionPlan, type LoopVariant } from '../../src/pipeline/sectionPlan.ts';
import type { Tensor } from '../../src/pipeline/tensor.ts';
import { loadFixture } from '../helpers/fixtures.ts';

/** A [1, 3, T, H, W] video of pseudo-random values from a small LCG (independent of the code under test). */
function video(t: number, h: number, w: number, seed: number): Tensor {
  const data = new Float32Array(3 * t * h * w);
  let s = seed;
  for (let i = 0; i < data.length; i++) {
    s = (s * 1103515245 + 12345) % 2147483648;
    data[i] = (s / 2147483648) * 2 - 1;
  }
  return { data, shape: [1, 3, t, h, w] };
}

/** soft_append_bcthw written out from §7.3 with this test's own indexing and float32 rounding. */
function referenceSoftAppend(a: Tensor, b: Tensor, k: number): Float32Array {
  const [, c, ta, h, w] = a.shape;
  const tb = b.shape[2];
  const t = ta + tb - k;
  const hw = h * w;
  const out = new Float32Array(c * t * hw);
  const at = (x: Tensor, ci: number, ti: number, i: number) => x.data[(ci * x.shape[2] + ti) * hw + i];
  for (let ci = 0; ci < c; ci++) {
    for (let ti = 0; ti < t; ti++) {
      for (let i = 0; i < hw; i++) {
        let v: number;
        if (ti < ta - k) v = at(a, ci, ti, i);
        else if (ti >= ta) v = at(b, ci, ti - ta + k, i);
        else {
          const j = ti - (ta - k);
          const wk = 1 - j / (k - 1); // exact for the K used here (K − 1 a power of two)
          v = Math.fround(Math.fround(wk * at(a, ci, ti, i)) + Math.fround(Math.fround(1 - wk) * at(b, ci, j, i)));
        }
        out[(ci * t + ti) * hw + i] = v;
      }
    }
  }
  return out;
}

describe('soft_append weights', () => {
  it('are linspace(1, 0, K): 1 − k/(K − 1)', () => {
    for (const k of [9, 33]) {
      expect(Array.from(softAppendWeights(k))).toEqual(Array.from({ length: k }, (_, i) => 1 - i / (k - 1)));
    }
    expect(Array.from(softAppendWeights(1))).toEqual([1]);
    const w = softAppendWeights(21);
    expect([w[0], w[20]]).toEqual([1, 0]);
    for (let i = 0; i < 21; i++) expect(Math.abs(w[i] - (1 - i / 20))).toBeLessThan(1e-7);
  });
});

describe('soft_append', () => {
  it('equals the reference formula on hand-made videos (K = 9 and 33)', () => {
    for (const [ta, tb, k] of [[9, 21, 9], [21, 25, 9], [33, 69, 33], [69, 33, 33]]) {
      const a = video(ta, 2, 3, ta);
      const b = video(tb, 2, 3, tb + 100);
      const got = softAppend(a, b, k);
      expect(got.shape).toEqual([1, 3, ta + tb - k, 2, 3]);
      expect(Array.from(got.data)).toEqual(Array.from(referenceSoftAppend(a, b, k)));
    }
  });

  it('concatenates when the overlap is 0 and refuses overlaps longer than a video', () => {
    const a = video(2, 1, 1, 1);
    const b = video(3, 1, 1, 2);
    expect(softAppend(a, b, 0).shape[2]).toBe(5);
    expect(() => softAppend(a, b, 3)).toThrow(SoftAppendError);
  });

  it('streaming joins rebuild the whole video from the held frames only', () => {
    const k = 9;
    const chunks = [video(9, 2, 2, 1), video(21, 2, 2, 2), video(21, 2, 2, 3), video(25, 2, 2, 4)];
    // F1: new frames after.
    let whole = chunks[0];
    for (const c of chunks.slice(1)) whole = softAppend(whole, c, k);
    let state = startStreaming(chunks[0], k, 'after');
    const finals = [state.final];
    for (const c of chunks.slice(1)) {
      state = appendStreaming(state.held, c, k);
      finals.push(state.final);
    }
    expect(Array.from(concatFrames([...finals, state.held]).data)).toEqual(Array.from(whole.data));
    // Original: new frames before.
    whole = chunks[0];
    for (const c of chunks.slice(1)) whole = softAppend(c, whole, k);
    state = startStreaming(chunks[0], k, 'before');
    const backwards = [state.final];
    for (const c of chunks.slice(1)) {
      state = prependStreaming(c, state.held, k);
      backwards.push(state.final);
    }
    expect(Array.from(concatFrames([state.held, ...backwards.reverse()]).data)).toEqual(Array.from(whole.data));
  });
});

describe('video length through the loop against the pipeline fixtures', () => {
  for (const name of ['pipeline_original', 'pipeline_f1']) {
    it(`${name}: decoded chunks soft-appended give section{k}_pixel_frames`, async () => {
      const f = await loadFixture(`${name}.safetensors`);
      const variant = f.meta.variant as LoopVariant;
      const S = f.meta.sections as number;
      const lws = f.meta.latent_window as number;
      const start = f.f32('start_latent');
      const plan = sectionPlan(variant, S, lws);
      let history = createHistory(variant, start);
      let pixels: Tensor | null = null;
      for (let k = 0; k < S; k++) {
        history = appendSection(history, f.f32(`section${k}_generated`), start, plan[k].isLast);
        const step = latentsToDecode(history, lws, plan[k].isLast);
        // Stand-in for the VAE: a causal decode of n latents yields 4n − 3 frames.
        const decoded = video(4 * step.latents.shape[2] - 3, 1, 1, k + 1);
        pixels = pixels === null ? decoded
          : step.placement === 'before' ? softAppend(decoded, pixels, step.overlap) : softAppend(pixels, decoded, step.overlap);
        expect(pixels.shape[2]).toBe(f.ints(`section${k}_pixel_frames`)[0]);
      }
      expect(pixels!.shape[2]).toBe(f.shape('pixels')[2]);
    });
  }
});

import { relativeL1FromSums } from '../../src/worker/ditBlocks.ts';
import { describe, expect, it } from 'vitest';
import { relativeL1, TeaCacheRule, teacachePlan, teacachePolynomial, TEACACHE_COEFFICIENTS } from '../../src/pipeline/teacache.ts';
import { tensorError } from '../../src/pipeline/tensorError.ts';
import { loadFixture } from '../helpers/fixtures.ts';

/** P(r) as framepack-reference.md §8 prints it. */
const specP = (r: number) => 733.226126 * r ** 4 - 401.131952 * r ** 3 + 67.5869174 * r ** 2 - 3.149878 * r + 0.0961237896;

/** r in [lo, hi] with P(r) = target, by bisection, for P monotone on the interval. */
function invertP(target: number, lo: number, hi: number): number {
  const rising = teacachePolynomial(hi) > teacachePolynomial(lo);
  for (let i = 0; i < 200; i++) {
    const mid = (lo + hi) / 2;
    if ((teacachePolynomial(mid) < target) === rising) lo = mid;
    else hi = mid;
  }
  return (lo + hi) / 2;
}

/** Zeros of P′ in [0, 1], found on a grid and refined by bisection (P′ is a cubic: at most three). */
function criticalPoints(): number[] {
  const dp = (r: number) => (teacachePolynomial(r + 1e-7) - teacachePolynomial(r - 1e-7)) / 2e-7;
  const out: number[] = [];
  for (let i = 0; i < 1000; i++) {
    let lo = i / 1000;
    let hi = (i + 1) / 1000;
    if (Math.sign(dp(lo)) === Math.sign(dp(hi))) continue;
    for (let k = 0; k < 100; k++) {
      const mid = (lo + hi) / 2;
      if (Math.sign(dp(mid)) === Math.sign(dp(lo))) lo = mid;
      else hi = mid;
    }
    out.push((lo + hi) / 2);
  }
  return out;
}

describe('TeaCache polynomial', () => {
  it('is the quartic of §8', () => {
    expect(TEACACHE_COEFFICIENTS).toEqual([733.226126, -401.131952, 67.5869174, -3.149878, 0.0961237896]);
    for (const r of [0, 0.01, 0.05, 0.1, 0.15, 0.2, 0.3, 0.5, 1]) {
      expect(Math.abs(teacachePolynomial(r) - specP(r)), `P(${r})`).toBeLessThanOrEqual(1e-12 * Math.max(1, Math.abs(specP(r))));
    }
  });

  it('is positive on [0, 1], so an accumulator of 0 always means the call computed', () => {
    let min = Infinity;
    for (let i = 0; i <= 100000; i++) min = Math.min(min, teacachePolynomial(i / 100000));
    expect(min).toBeGreaterThan(0.05);
  });
});

describe('TeaCache rule', () => {
  it('always computes the first and last call of a section and resets the accumulator there', () => {
    const steps = 6;
    // P(0.05) ≈ 0.062: two calls accumulate 0.124 < 0.15, the third crosses.
    const small = 0.05;
    const p = teacachePolynomial(small);
    const plan = teacachePlan(Array(steps).fill(small), steps, 0.15);
    expect(plan.compute).toEqual([true, false, false, true, false, true]);
    expect(plan.accumulated).toEqual([0, p, p + p, 0, p, 0]);
    // Huge changes compute every call; a NaN at the first or last call is never looked at.
    expect(teacachePlan([NaN, 1, 1, 1, NaN], 5, 0.15).compute).toEqual([true, true, true, true, true]);
  });

  it('wraps its counter at steps, so the next section starts by computing', () => {
    const plan = teacachePlan(Array(8).fill(0.05), 4, 0.15);
    expect(plan.compute).toEqual([true, false, false, true, true, false, false, true]);
    const rule = new TeaCacheRule(4);
    expect(rule.needsRelL1).toBe(false);
    rule.step();
    expect(rule.needsRelL1).toBe(true);
    expect(() => rule.step()).toThrow(RangeError);
  });

  it('measures mean|mod − prev| / mean|prev|, and its sums give the same value (the GPU form)', () => {
    const a = new Float32Array([1, -2, 3, -4]);
    const b = new Float32Array([1.5, -2, 2, -4]);
    // (0.5 + 0 + 1 + 0) / (1 + 2 + 3 + 4)
    expect(relativeL1(b, a)).toBe(Math.fround(0.15));
    expect(relativeL1FromSums(1.5, 10, 4)).toBe(relativeL1(b, a));
    // Threshold 0.3 > P(0.15) + P(0) ≈ 0.162 + 0.096: the next two calls skip and accumulate.
    const rule = new TeaCacheRule(5, 0.3);
    expect(rule.step()).toBe(true);
    expect(rule.step(relativeL1(b, a))).toBe(false);
    expect(rule.accumulated).toBe(teacachePolynomial(Math.fround(0.15)));
    expect(rule.step(relativeL1(b, b))).toBe(false); // unchanged input: rel 0, P(0) ≈ 0.096 more
    expect(rule.accumulated).toBe(teacachePolynomial(Math.fround(0.15)) + teacachePolynomial(0));
    expect(() => relativeL1(a, new Float32Array(3))).toThrow(RangeError);
  });

  it('reproduces the compute pattern and every accumulator of sampler_teacache.safetensors', async () => {
    const f = await loadFixture('sampler_teacache.safetensors');
    const steps = f.meta.steps as number;
    const threshold = f.meta.rel_l1_thresh as number;
    const acc = Array.from(f.f32('accumulated_rel_l1').data);
    expect(acc).toHaveLength(steps);
    const computed = acc.map((a) => a === 0);

    // (a) What the fixture shows must follow the rule whatever the relative L1 values were: the first and last call
    // compute, a skipped call's accumulator grew by at least min P and stays below the threshold.
    expect(computed[0]).toBe(true);
    expect(computed[steps - 1]).toBe(true);
    for (let i = 1; i < steps - 1; i++) {
      if (!computed[i]) {
        expect(acc[i]).toBeLessThan(threshold);
        expect(acc[i] - acc[i - 1]).toBeGreaterThan(0.05);
      }
    }

    // (b) The fixture keeps only the accumulators, not the relative L1 values. A skipped call's accumulator gives
    // P(rel) = acc_i − acc_{i−1}; P is not monotone (falls to a minimum near r = 0.031, rises to a maximum near
    // 0.148, dips again near 0.231), so up to three rel values fit. We take the root on the rising branch between
    // the first two critical points, where every recorded increment lies; any root reproduces the accumulator. A
    // computed call only tells acc_{i−1} + P(rel) ≥ threshold: rel = 1 (P ≈ 400) stands for it.
    const [rMin, rMax] = criticalPoints();
    expect(rMin).toBeCloseTo(0.0314, 3);
    expect(rMax).toBeCloseTo(0.1482, 3);
    const rel = acc.map((a, i) => {
      if (i === 0 || computed[i]) return 1;
      const increment = a - acc[i - 1];
      expect(increment).toBeGreaterThan(teacachePolynomial(rMin));
      expect(increment).toBeLessThan(teacachePolynomial(rMax));
      return invertP(increment, rMin, rMax);
    });
    const plan = teacachePlan(rel, steps, threshold);
    expect(plan.compute).toEqual(computed);
    // The reference accumulates in float64 and the fixture stores float32: compare after the same rounding.
    expect(plan.accumulated.map(Math.fround)).toEqual(acc);
    expect(tensorError(plan.accumulated, acc).rel).toBeLessThanOrEqual(1e-6);
  });
});

// TeaCache's skip rule (reference §8, `HunyuanVideoTransformer3DModelPacked.forward`): before each DiT call it
// compares the first block's AdaLN-modulated input with the previous call's, maps the relative L1 change through a
// calibrated quartic and accumulates it; the transformer blocks run only when the accumulator reaches the threshold
// (otherwise the engine reuses the stored block residual). Kept as pure state over numbers so the engine can feed it
// a relative L1 reduced on the GPU, and the tests can replay a recorded schedule.

/** The reference's calibration, highest power first (`np.poly1d([7.33226126e+02, …, 9.61237896e-02])`). */
export const TEACACHE_COEFFICIENTS: readonly number[] = [7.33226126e2, -4.01131952e2, 6.75869174e1, -3.149878, 9.61237896e-2];

/** The reference's default threshold (0.1 ≈ 1.6× faster, 0.15 ≈ 2.1× per its comment). */
export const DEFAULT_TEACACHE_THRESHOLD = 0.15;

/** P(r) evaluated as numpy's polyval does (Horner in float64, starting from 0). */
export function teacachePolynomial(r: number, coefficients: readonly number[] = TEACACHE_COEFFICIENTS): number {
  let y = 0;
  for (const c of coefficients) y = y * r + c;
  return y;
}

/**
 * mean|current − previous| / mean|previous| as the reference computes it on float32 tensors (each mean and the
 * quotient rounded to float32; the sums are accumulated in float64 here).
 * @throws RangeError when the two inputs differ in length.
 */
export function relativeL1(current: Float32Array, previous: Float32Array): number {
  if (current.length !== previous.length) {
    throw new RangeError(`relativeL1: ${current.length} values against ${previous.length}; the packed token count changed between calls`);
  }
  let diff = 0;
  let base = 0;
  for (let i = 0; i < current.length; i++) {
    diff += Math.abs(Math.fround(current[i] - previous[i]));
    base += Math.abs(previous[i]);
  }
  const n = current.length;
  return Math.fround(Math.fround(diff / n) / Math.fround(base / n));
}

/**
 * The per-section skip state: a call counter that wraps at `steps` and the accumulator (the DiT keeps the previous
 * modulated input where it computes, and hands this rule the relative L1). The first and last call of each section always compute and reset the accumulator.
 * Assumes one DiT call per step, like the reference (with real CFG, keep one rule per branch).
 */
export class TeaCacheRule {
  /** Accumulated P(rel L1) since the last computed call; 0 right after one. */
  accumulated = 0;
  /** Index of the next call within the section, 0..steps−1. */
  count = 0;

  /** @throws RangeError when steps is not a positive integer or the threshold is not finite. */
  constructor(
    readonly steps: number,
    readonly threshold: number = DEFAULT_TEACACHE_THRESHOLD,
    readonly coefficients: readonly number[] = TEACACHE_COEFFICIENTS,
  ) {
    if (!Number.isInteger(steps) || steps < 1) throw new RangeError(`TeaCacheRule: steps must be a positive integer, got ${steps}`);
    if (!Number.isFinite(threshold)) throw new RangeError(`TeaCacheRule: threshold must be a finite number, got ${threshold}`);
  }

  /** Whether the next call compares with the previous one (so a relative L1 is worth computing). */
  get needsRelL1(): boolean {
    return this.count !== 0 && this.count !== this.steps - 1;
  }

  /**
   * Advances one call given its relative L1 to the previous call's modulated input (ignored on the first and
   * last call of a section) and says whether the blocks must run.
   * @throws RangeError when a comparing call gets no finite relative L1.
   */
  step(relL1?: number): boolean {
    let compute: boolean;
    if (!this.needsRelL1) {
      compute = true;
      this.accumulated = 0;
    } else {
      if (relL1 === undefined || !Number.isFinite(relL1)) {
        throw new RangeError(`TeaCacheRule: call ${this.count} of ${this.steps} needs the relative L1 to the previous call, got ${relL1}`);
      }
      this.accumulated += teacachePolynomial(relL1, this.coefficients);
      compute = this.accumulated >= this.threshold;
      if (compute) this.accumulated = 0;
    }
    this.count = (this.count + 1) % this.steps;
    return compute;
  }

}

export interface TeaCachePlan {
  /** Per call: whether the blocks run. */
  compute: boolean[];
  /** Per call: the accumulator after it (0 when the call computed). */
  accumulated: number[];
}

/**
 * The rule as a pure function of each call's relative L1 (entries for a section's first and last call are
 * ignored; calls past `steps` start the next section, as the reference's counter wraps).
 */
export function teacachePlan(relL1: readonly number[], steps: number, threshold: number = DEFAULT_TEACACHE_THRESHOLD, coefficients: readonly number[] = TEACACHE_COEFFICIENTS): TeaCachePlan {
  const rule = new TeaCacheRule(steps, threshold, coefficients);
  const compute: boolean[] = [];
  const accumulated: number[] = [];
  for (const rel of relL1) {
    compute.push(rule.step(rule.needsRelL1 ? rel : undefined));
    accumulated.push(rule.accumulated);
  }
  return { compute, accumulated };
}

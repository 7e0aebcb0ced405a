// FramePack's sampler, "Better Flow Matching UniPC" (reference §6.4, `k_diffusion/uni_pc_fm.py`, L. Zhang,
// CC BY-SA 4.0): a multistep predictor–corrector on x0 predictions with λ(σ) = −ln σ, one denoiser call per step,
// returning the last x0 prediction. The reference runs it on float32 tensors, scalars included (σ, h, r_k, the
// coefficient vectors and their small linear solves are 1-element float32 tensors), so every operation here is
// rounded to float32 in the reference's order; driven by the recorded x0 predictions it reproduces the recorded
// model inputs bit for bit.

import { DenoiserShapeError } from '../errors/pipeline.ts';
import type { Denoiser } from './fmWrapper.ts';
import { fmaF32 } from './float32.ts';

export type UniPCVariant = 'bh1' | 'bh2';

export interface UniPCOptions {
  /** B(h) = h (bh1, FramePack's choice) or e^h − 1 (bh2). */
  variant: UniPCVariant;
  /** Checked before every denoiser call; an aborted job throws the signal's reason there. */
  signal?: AbortSignal;
  /** After each step i (0-based): that step's x0 prediction and the current x (the reference's callback). */
  onStep?: (i: number, denoised: Float32Array, x: Float32Array) => void | Promise<void>;
}

const f = Math.fround;

/**
 * Samples from `x` (the initial noise, not modified) along `sigmas` (σ_0..σ_N, σ_N = 0 never evaluated) and
 * returns the x0 prediction at σ_{N−1}. Order min(3, N−1), warming up with orders 1 and 2.
 * @throws RangeError when fewer than two sigmas are given; DenoiserShapeError when the denoiser's output length
 *   differs from x's; the signal's reason when it is aborted before a denoiser call.
 */
export async function sampleUniPC(denoiser: Denoiser, x: Float32Array, sigmas: Float32Array, opts: UniPCOptions): Promise<Float32Array> {
  if (sigmas.length < 2) throw new RangeError(`sampleUniPC: need at least two sigmas (one step), got ${sigmas.length}`);
  const steps = sigmas.length - 1;
  const order = Math.min(3, steps - 1);
  const call = async (xIn: Float32Array, sigma: number, step: number) => {
    opts.signal?.throwIfAborted();
    const m = await denoiser(xIn, sigma);
    if (m.length !== xIn.length) throw new DenoiserShapeError(step, m.length, xIn.length);
    return m;
  };

  let models: Float32Array[] = [];
  let times: number[] = [];
  for (let i = 0; i < steps; i++) {
    const t = sigmas[i];
    if (i === 0) {
      models = [await call(x, t, i)];
      times = [t];
    } else {
      const { xNext, modelT } = await update(x, models, times, t, i < order ? i : order, opts.variant, (xp) => call(xp, t, i));
      x = xNext;
      models.push(modelT);
      times.push(t);
    }
    // The reference keeps the last `order` entries (all of them when order is 0, i.e. a single step).
    if (order > 0) {
      models = models.slice(-order);
      times = times.slice(-order);
    }
    await opts.onStep?.(i, models[models.length - 1], x);
  }
  return models[models.length - 1];
}

/** −ln σ of a float32 σ, as `- torch.log(t)` on a float32 tensor. */
function lambdaOf(sigma: number): number {
  return -f(Math.log(sigma));
}

/** One UniPC step of the given order from the last model outputs `models` at `times` to σ = t. */
async function update(
  x: Float32Array,
  models: readonly Float32Array[],
  times: readonly number[],
  t: number,
  order: number,
  variant: UniPCVariant,
  model: (xPred: Float32Array) => Promise<Float32Array>,
): Promise<{ xNext: Float32Array; modelT: Float32Array }> {
  const n = x.length;
  const t0 = times[times.length - 1];
  const m0 = models[models.length - 1];
  const lambda0 = lambdaOf(t0);
  const h = f(lambdaOf(t) - lambda0);

  const rks: number[] = [];
  const ds: Float32Array[] = [];
  for (let j = 1; j < order; j++) {
    const rk = f(f(lambdaOf(times[times.length - 1 - j]) - lambda0) / h);
    const mj = models[models.length - 1 - j];
    const d = new Float32Array(n);
    for (let e = 0; e < n; e++) d[e] = f(mj[e] - m0[e]) / rk;
    rks.push(rk);
    ds.push(d);
  }
  rks.push(1);

  const hh = -h;
  const hPhi1 = f(Math.expm1(hh));
  const bH = variant === 'bh1' ? hh : hPhi1;
  const rows: number[][] = [];
  const rhs: number[] = [];
  let hPhiK = f(f(hPhi1 / hh) - 1);
  let factorial = 1;
  for (let i = 1; i <= order; i++) {
    rows.push(rks.map((r) => powF32(r, i - 1)));
    rhs.push(f(f(hPhiK * factorial) / bH));
    factorial *= i + 1;
    hPhiK = f(f(hPhiK / hh) - f(1 / factorial));
  }

  const rhosP = ds.length === 0 ? [] : order === 2 ? [0.5] : solveF32(rows.slice(0, -1).map((r) => r.slice(0, -1)), rhs.slice(0, -1));
  const rhosC = order === 1 ? [0.5] : solveF32(rows, rhs);

  // x_lin = (t/t0)·x − φ1·m0: the exact first-order step.
  const ratio = f(t / t0);
  const xLin = new Float32Array(n);
  for (let e = 0; e < n; e++) xLin[e] = f(ratio * x[e]) - f(hPhi1 * m0[e]);

  let xPred = xLin;
  if (ds.length > 0) {
    const pred = weightedSum(ds, rhosP);
    xPred = new Float32Array(n);
    for (let e = 0; e < n; e++) xPred[e] = xLin[e] - f(bH * pred[e]);
  }
  const modelT = await model(xPred);

  const corr = ds.length > 0 ? weightedSum(ds, rhosC.slice(0, -1)) : null;
  const rhoLast = rhosC[rhosC.length - 1];
  const xNext = new Float32Array(n);
  for (let e = 0; e < n; e++) {
    const dT = f(modelT[e] - m0[e]);
    const scaled = f(rhoLast * dT);
    const res = corr ? f(corr[e] + scaled) : scaled;
    xNext[e] = xLin[e] - f(bH * res);
  }
  return { xNext, modelT };
}

/** torch.pow(r, k) for the small integer k UniPC uses (0: ones, 1: r, 2: r·r rounded). */
function powF32(r: number, k: number): number {
  if (k === 0) return 1;
  if (k === 1) return r;
  if (k === 2) return f(r * r);
  return f(r ** k);
}

/**
 * `torch.tensordot(D1s, rhos, dims=([1],[0]))`: Σ_j D_j·ρ_j as the BLAS matrix–vector product computes it in
 * float32, the first product rounded and each further term fused into it (FMA).
 */
function weightedSum(ds: readonly Float32Array[], rhos: readonly number[]): Float32Array {
  const out = new Float32Array(ds[0].length);
  for (let e = 0; e < out.length; e++) {
    let acc = f(ds[0][e] * rhos[0]);
    for (let j = 1; j < ds.length; j++) acc = fmaF32(ds[j][e], rhos[j], acc);
    out[e] = acc;
  }
  return out;
}

/**
 * `torch.linalg.solve` of a k×k float32 system (k ≤ 3 here): LU with partial pivoting, multipliers scaled by the
 * pivot's reciprocal, fused updates and substitutions, the back substitution multiplying by reciprocals of the
 * diagonal — the LAPACK/BLAS float32 order that reproduces the recorded 2×2 solves bit for bit. (The 3×3 solve
 * of order 3 first shapes x after the last recorded call, so the fixtures do not pin its rounding.)
 */
export function solveF32(matrix: readonly (readonly number[])[], rhs: readonly number[]): number[] {
  const k = rhs.length;
  const a = matrix.map((row) => row.map(f));
  const b = rhs.map(f);
  for (let c = 0; c < k; c++) {
    let p = c;
    for (let r = c + 1; r < k; r++) if (Math.abs(a[r][c]) > Math.abs(a[p][c])) p = r;
    if (p !== c) {
      [a[p], a[c]] = [a[c], a[p]];
      [b[p], b[c]] = [b[c], b[p]];
    }
    const inv = f(1 / a[c][c]);
    for (let r = c + 1; r < k; r++) {
      a[r][c] = f(a[r][c] * inv);
      for (let q = c + 1; q < k; q++) a[r][q] = fmaF32(-a[r][c], a[c][q], a[r][q]);
    }
  }
  // Forward substitution with the unit lower factor, then backward with the upper one, column by column.
  for (let c = 0; c < k; c++) for (let r = c + 1; r < k; r++) b[r] = fmaF32(-a[r][c], b[c], b[r]);
  for (let c = k - 1; c >= 0; c--) {
    b[c] = f(b[c] * f(1 / a[c][c]));
    for (let r = 0; r < c; r++) b[r] = fmaF32(-a[r][c], b[c], b[r]);
  }
  return b;
}

// Turns the DiT's velocity prediction into the x0 prediction the UniPC sampler works with (reference §6.3,
// `k_diffusion/wrapper.fm_wrapper`): the casts the reference makes before the model sees x and the timestep, real
// CFG with its optional rescale, and x0 = x − v·σ. It is a pure function over a small model interface, so the engine
// can plug in the DiT (one call per branch) and the tests can plug in recorded numbers. The arithmetic is float32,
// operation by operation, as torch does it on float32 tensors.

import { VelocityShapeError } from '../errors/pipeline.ts';
import { roundToBf16 } from '../weights/dtypes.ts';

/** Which conditioning a DiT pass uses: the prompt (`positive`) or the negative prompt (real CFG only). */
export type GuidanceBranch = 'positive' | 'negative';

/**
 * The DiT as the sampler sees it: the velocity v ≈ ε − x0 for latents `x` at `timestep` (σ·1000 after the
 * reference's cast) under one conditioning branch. It must not modify `x` and must return a new array of the
 * same length.
 */
export type VelocityModel = (x: Float32Array, timestep: number, branch: GuidanceBranch) => Promise<Float32Array>;

/** The x0 prediction for latents `x` at noise level `sigma`: what the sampler calls once per step. */
export type Denoiser = (x: Float32Array, sigma: number) => Promise<Float32Array>;

/**
 * The compute dtype of the reference run being reproduced. 'bfloat16' is the real model's (x, the timestep and
 * the distilled guidance are rounded to bf16 before the DiT sees them, and a 16-bit port should feed it those same
 * values); 'float32' rounds nothing, as in the fixtures.
 */
export type ReferenceDtype = 'float32' | 'bfloat16';

export interface FmWrapperOptions {
  dtype: ReferenceDtype;
  /** Real classifier-free guidance scale; exactly 1 means one positive pass per step (the negative is never run). */
  cfg: number;
  /** guidance_rescale in [0, 1]; 0 leaves the guided velocity as it is. */
  cfgRescale: number;
  /** Timestep = σ · tScale (the reference's t_scale, 1000). */
  tScale?: number;
}

const f = Math.fround;

/** The timestep the DiT sees at σ: float32 σ·tScale, then the reference's cast to the compute dtype. */
export function modelTimestep(sigma: number, dtype: ReferenceDtype, tScale = 1000): number {
  const t = f(f(sigma) * f(tScale));
  return dtype === 'bfloat16' ? roundToBf16(t) : t;
}

/** The distilled-guidance input of the DiT: `tensor([scale·1000]).to(dtype)` (10 → 10000, or 9984 in bf16). */
export function distilledGuidanceValue(scale: number, dtype: ReferenceDtype): number {
  const g = f(scale * 1000);
  return dtype === 'bfloat16' ? roundToBf16(g) : g;
}

/**
 * A denoiser over `model`: x0 = float(xb) − v·σ with xb = x cast to the compute dtype and v the (optionally
 * guided and rescaled) velocity. Latents are one batch item; the rescale's std runs over all of them.
 * The returned denoiser throws VelocityShapeError when the model's output length differs from the latents'.
 * @throws RangeError when cfg or cfgRescale is not a finite number.
 */
export function fmDenoiser(model: VelocityModel, opts: FmWrapperOptions): Denoiser {
  const { dtype, cfg, cfgRescale } = opts;
  const tScale = opts.tScale ?? 1000;
  if (!Number.isFinite(cfg)) throw new RangeError(`fmDenoiser: cfg must be a finite number, got ${cfg}`);
  if (!Number.isFinite(cfgRescale)) throw new RangeError(`fmDenoiser: cfgRescale must be a finite number, got ${cfgRescale}`);
  return async (x, sigma) => {
    const s = f(sigma);
    const xb = dtype === 'bfloat16' ? x.map(roundToBf16) : x;
    const timestep = modelTimestep(s, dtype, tScale);
    const positive = checked(await model(xb, timestep, 'positive'), 'positive', x.length);
    // cfg == 1: the reference's negative is zeros and v- + 1·(v+ − v-) is exactly v+.
    let v = cfg === 1 ? positive : guide(positive, checked(await model(xb, timestep, 'negative'), 'negative', x.length), cfg);
    if (cfgRescale !== 0) v = rescaleGuidance(v, positive, cfgRescale);
    const x0 = new Float32Array(x.length);
    for (let i = 0; i < x0.length; i++) x0[i] = xb[i] - f(v[i] * s);
    return x0;
  };
}

function checked(v: Float32Array, branch: GuidanceBranch, n: number): Float32Array {
  if (v.length !== n) throw new VelocityShapeError(branch, v.length, n);
  return v;
}

/** v = v- + cfg·(v+ − v-), each operation rounded to float32. */
export function guide(positive: Float32Array, negative: Float32Array, cfg: number): Float32Array {
  const c = f(cfg);
  const out = new Float32Array(positive.length);
  for (let i = 0; i < out.length; i++) out[i] = negative[i] + f(c * f(positive[i] - negative[i]));
  return out;
}

/**
 * `rescale_noise_cfg`: r·(v·std(v+)/std(v)) + (1 − r)·v with torch's unbiased std over the whole latent (computed
 * in float64 and rounded, as torch accumulates it in double on the CPU).
 */
export function rescaleGuidance(guided: Float32Array, positive: Float32Array, rescale: number): Float32Array {
  const ratio = f(f(unbiasedStd(positive)) / f(unbiasedStd(guided)));
  const r = f(rescale);
  const keep = f(1 - rescale);
  const out = new Float32Array(guided.length);
  for (let i = 0; i < out.length; i++) out[i] = f(r * f(guided[i] * ratio)) + f(keep * guided[i]);
  return out;
}

function unbiasedStd(v: Float32Array): number {
  let mean = 0;
  for (let i = 0; i < v.length; i++) mean += v[i];
  mean /= v.length;
  let ss = 0;
  for (let i = 0; i < v.length; i++) ss += (v[i] - mean) ** 2;
  return Math.sqrt(ss / (v.length - 1));
}

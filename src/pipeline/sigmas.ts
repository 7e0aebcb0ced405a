// The flow-matching noise schedule of FramePack (reference §6.2, `pipelines/k_diffusion_hunyuan.py`): the Flux
// time shift μ from the number of noisy tokens, and the σ table the sampler walks. The reference builds the table
// from float32 torch tensors, so it is reproduced here with float32 arithmetic step by step; the result matches the
// recorded tables (fixtures/reference/sigmas.safetensors) bit for bit, which keeps every later sampler step
// comparable with the reference.

import { fmaF32 } from './float32.ts';

/** Largest shift e^μ the reference allows (`calculate_flux_mu(..., exp_max=7.0)`). */
export const DEFAULT_EXP_MAX = 7;

/**
 * The Flux shift μ for a sequence of `seqLength` noisy tokens, as `calculate_flux_mu` computes it in float64:
 * a line through (256, 0.5) and (4096, 1.15), clamped at ln(expMax).
 */
export function fluxMu(seqLength: number, expMax: number = DEFAULT_EXP_MAX): number {
  const k = (1.15 - 0.5) / (4096 - 256);
  const b = 0.5 - k * 256;
  return Math.min(k * seqLength + b, Math.log(expMax));
}

/**
 * Noisy tokens the DiT sees for a latent window: T·h·w/4 (2×2 patches), floored as the reference's
 * `T * H * W // 4`. `h` and `w` are latent sizes (pixels / 8).
 * @throws RangeError when a size is not a non-negative integer.
 */
export function noisyTokenCount(latentFrames: number, h: number, w: number): number {
  for (const [name, v] of [['latentFrames', latentFrames], ['h', h], ['w', w]] as const) {
    if (!Number.isInteger(v) || v < 0) throw new RangeError(`noisyTokenCount: ${name} must be a non-negative integer, got ${v}`);
  }
  return Math.floor((latentFrames * h * w) / 4);
}

/**
 * σ_0..σ_steps (steps + 1 values, σ_0 = 1, σ_steps = 0) of `get_flux_sigmas_from_mu(steps, mu)`:
 * t = torch.linspace(1, 0, steps + 1) in float32, then σ = e^μ / (e^μ + (1/t − 1)) evaluated the way torch does on
 * a float32 tensor (`1/t` and `e^μ/…` are reciprocals, the latter multiplied by e^μ rounded to float32).
 * @throws RangeError when steps is not a positive integer.
 */
export function fluxSigmas(steps: number, mu: number): Float32Array {
  if (!Number.isInteger(steps) || steps < 1) throw new RangeError(`fluxSigmas: steps must be a positive integer, got ${steps}`);
  const t = torchLinspaceF32(1, 0, steps + 1);
  const shift = Math.fround(Math.exp(mu));
  const out = new Float32Array(t.length);
  for (let i = 0; i < t.length; i++) {
    // Each line is one float32 tensor op of flux_time_shift; t = 0 gives 1/0 = ∞ and so σ = 0, as in torch.
    const oneOverTMinusOne = Math.fround(Math.fround(1 / t[i]) - 1);
    const denominator = Math.fround(shift + oneOverTMinusOne);
    out[i] = Math.fround(Math.fround(1 / denominator) * shift);
  }
  return out;
}

/**
 * torch.linspace(start, end, n) for float32 on the CPU (recent torch: a scalar loop, no vectorized path): a float32
 * step, values from the start up to the halfway index and from the end after it, each `start + step·i` rounded
 * once. The recorded tables need that single rounding (consistent with the compiler fusing it into an FMA in torch's
 * AVX2 build of the kernel); rounding product and sum separately moves 6 σ values of the 50-step tables by 1–2 ulp.
 */
export function torchLinspaceF32(start: number, end: number, n: number): Float32Array {
  const out = new Float32Array(n);
  if (n === 1) {
    out[0] = start;
    return out;
  }
  const s = Math.fround(start);
  const e = Math.fround(end);
  const step = Math.fround(Math.fround(e - s) / (n - 1));
  const halfway = Math.floor(n / 2);
  for (let i = 0; i < n; i++) out[i] = i < halfway ? fmaF32(step, i, s) : fmaF32(-step, n - i - 1, e);
  return out;
}


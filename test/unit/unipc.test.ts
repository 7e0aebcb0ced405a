import { DenoiserShapeError, VelocityShapeError } from '../../src/errors/index.ts';
import { describe, expect, it } from 'vitest';
import { sampleUniPC, solveF32, type UniPCVariant } from '../../src/pipeline/unipc.ts';
import { distilledGuidanceValue, fmDenoiser, modelTimestep, type Denoiser, type GuidanceBranch } from '../../src/pipeline/fmWrapper.ts';
import { fluxMu, fluxSigmas, noisyTokenCount } from '../../src/pipeline/sigmas.ts';
import { tensorError } from '../../src/pipeline/tensorError.ts';
import { roundToBf16 } from '../../src/weights/dtypes.ts';
import { loadFixture, type FixtureFile } from '../helpers/fixtures.ts';

// Pass lines of test/fixtures/reference/README.md: single functions 1e-4, multi-step cases 1e-3.
const SINGLE_BAR = 1e-4;
const MULTI_STEP_BAR = 1e-3;

/** Item `i` of a [calls, ...] tensor stacked along the first axis. */
function item(f: FixtureFile, name: string, i: number): Float32Array {
  const t = f.f32(name);
  const n = t.data.length / t.shape[0];
  return t.data.subarray(i * n, (i + 1) * n);
}

/** A denoiser that returns the recorded x0 of call i and remembers what it was given. */
function replay(denoised: (i: number) => Float32Array) {
  const inputs: Float32Array[] = [];
  const sigmas: number[] = [];
  const denoiser: Denoiser = async (x, sigma) => {
    inputs.push(x.slice());
    sigmas.push(sigma);
    return denoised(inputs.length - 1).slice();
  };
  return { denoiser, inputs, sigmas };
}

/**
 * UniPC written from the pseudo-code of framepack-reference.md §6.4 in plain float64 (no float32 emulation, a
 * generic Gaussian elimination): the independent computation the float32 sampler is checked against.
 */
async function uniPCFloat64(denoiser: (x: Float64Array, sigma: number) => Promise<ArrayLike<number>>, noise: ArrayLike<number>, sigmas: ArrayLike<number>, variant: UniPCVariant) {
  const steps = sigmas.length - 1;
  const order = Math.min(3, steps - 1);
  const inputs: Float64Array[] = [];
  const model = async (x: Float64Array, s: number) => {
    inputs.push(x.slice());
    return Float64Array.from(await denoiser(x, s));
  };
  let x = Float64Array.from(noise);
  let ms = [await model(x, sigmas[0])];
  let ts = [sigmas[0]];
  for (let i = 1; i < steps; i++) {
    const k = Math.min(i, order);
    const t = sigmas[i];
    const t0 = ts[ts.length - 1];
    const m0 = ms[ms.length - 1];
    const h = Math.log(t0) - Math.log(t);
    const hh = -h;
    const r: number[] = [];
    const d: Float64Array[] = [];
    for (let j = 1; j < k; j++) {
      const rj = Math.log(t0 / ts[ts.length - 1 - j]) / h;
      r.push(rj);
      d.push(ms[ms.length - 1 - j].map((v, e) => (v - m0[e]) / rj));
    }
    const rks = [...r, 1];
    const phi1 = Math.expm1(hh);
    const bH = variant === 'bh1' ? hh : phi1;
    const R: number[][] = [];
    const b: number[] = [];
    let hPhi = phi1 / hh - 1;
    let fact = 1;
    for (let q = 1; q <= k; q++) {
      R.push(rks.map((v) => v ** (q - 1)));
      b.push((hPhi * fact) / bH);
      fact *= q + 1;
      hPhi = hPhi / hh - 1 / fact;
    }
    const rhoP = k === 1 ? [] : k === 2 ? [0.5] : gaussSolve(R.slice(0, -1).map((row) => row.slice(0, -1)), b.slice(0, -1));
    const rhoC = k === 1 ? [0.5] : gaussSolve(R, b);
    const xLin = x.map((v, e) => (t / t0) * v - phi1 * m0[e]);
    const xPred = xLin.map((v, e) => v - bH * d.reduce((s, dj, j) => s + rhoP[j] * dj[e], 0));
    const mT = await model(xPred, t);
    x = xLin.map((v, e) => v - bH * (d.reduce((s, dj, j) => s + rhoC[j] * dj[e], 0) + rhoC[k - 1] * (mT[e] - m0[e])));
    ms = [...ms, mT].slice(-order);
    ts = [...ts, t].slice(-order);
  }
  return { inputs, result: ms[ms.length - 1] };
}

function gaussSolve(a: number[][], b: number[]): number[] {
  const m = a.map((row, i) => [...row, b[i]]);
  const k = b.length;
  for (let c = 0; c < k; c++) {
    let p = c;
    for (let r = c + 1; r < k; r++) if (Math.abs(m[r][c]) > Math.abs(m[p][c])) p = r;
    [m[c], m[p]] = [m[p], m[c]];
    for (let r = 0; r < k; r++) {
      if (r === c) continue;
      const l = m[r][c] / m[c][c];
      for (let q = c; q <= k; q++) m[r][q] -= l * m[c][q];
    }
  }
  return m.map((row, i) => row[k] / row[i]);
}

describe('UniPC sampler on sampler_unipc.safetensors', () => {
  it('feeds the recorded model inputs at every call and returns the recorded result', async () => {
    const f = await loadFixture('sampler_unipc.safetensors');
    const steps = f.shape('denoised')[0];
    const { denoiser, inputs, sigmas } = replay((i) => item(f, 'denoised', i));
    const result = await sampleUniPC(denoiser, f.f32('noise').data, f.f32('sigmas').data, { variant: 'bh1' });
    expect(inputs).toHaveLength(steps);
    expect(sigmas).toEqual(Array.from(f.f32('sigmas').data.subarray(0, steps)));
    for (let i = 0; i < steps; i++) {
      const e = tensorError(inputs[i], item(f, 'model_inputs', i));
      expect(e.rel, `model_inputs[${i}]`).toBeLessThanOrEqual(MULTI_STEP_BAR);
      // The float32 emulation reproduces the reference's arithmetic exactly.
      expect(e.abs, `model_inputs[${i}]`).toBe(0);
    }
    const e = tensorError(result, f.f32('result').data);
    expect(e.rel).toBeLessThanOrEqual(MULTI_STEP_BAR);
    expect(e.abs).toBe(0);
  });

  it('agrees with an independent float64 UniPC (bh1) on the recorded inputs', async () => {
    const f = await loadFixture('sampler_unipc.safetensors');
    let call = 0;
    const ref = await uniPCFloat64(async () => item(f, 'denoised', call++), f.f32('noise').data, f.f32('sigmas').data, 'bh1');
    for (let i = 0; i < ref.inputs.length; i++) {
      expect(tensorError(ref.inputs[i], item(f, 'model_inputs', i)).rel, `float64 model_inputs[${i}]`).toBeLessThanOrEqual(1e-6);
    }
  });

  it('reports each step with its x0 and x, and checks the signal before every model call', async () => {
    const f = await loadFixture('sampler_unipc.safetensors');
    const steps = f.shape('denoised')[0];
    const noise = f.f32('noise').data;
    const seen: number[] = [];
    const { denoiser } = replay((i) => item(f, 'denoised', i));
    await sampleUniPC(denoiser, noise, f.f32('sigmas').data, {
      variant: 'bh1',
      onStep: (i, denoised, x) => {
        seen.push(i);
        expect(Array.from(denoised)).toEqual(Array.from(item(f, 'denoised', i)));
        if (i === 0) expect(x).toBe(noise);
      },
    });
    expect(seen).toEqual([...Array(steps).keys()]);

    for (let k = 0; k < steps - 1; k++) {
      const controller = new AbortController();
      const reason = new Error(`stopped at ${k}`);
      const run = replay((i) => item(f, 'denoised', i));
      const job = sampleUniPC(run.denoiser, noise, f.f32('sigmas').data, {
        variant: 'bh1',
        signal: controller.signal,
        onStep: (i) => {
          if (i === k) controller.abort(reason);
        },
      });
      await expect(job).rejects.toBe(reason);
      expect(run.inputs, `abort in step ${k}`).toHaveLength(k + 1);
    }
    const controller = new AbortController();
    controller.abort(new Error('before start'));
    const run = replay((i) => item(f, 'denoised', i));
    await expect(sampleUniPC(run.denoiser, noise, f.f32('sigmas').data, { variant: 'bh1', signal: controller.signal })).rejects.toThrow('before start');
    expect(run.inputs).toHaveLength(0);
  });
});

describe('UniPC sampler on sampler_teacache.safetensors', () => {
  it('returns the recorded result and feeds inputs consistent with the float64 sampler', async () => {
    const f = await loadFixture('sampler_teacache.safetensors');
    const base = await loadFixture(`${f.meta.inputs_from as string}.safetensors`);
    const steps = f.meta.steps as number;
    expect(f.shape('denoised')[0]).toBe(steps);
    const noise = base.f32('noise').data;
    const [, , t, h, w] = base.shape('noise');
    const sigmas = fluxSigmas(steps, fluxMu(noisyTokenCount(t, h, w)));
    const { denoiser, inputs } = replay((i) => item(f, 'denoised', i));
    const result = await sampleUniPC(denoiser, noise, sigmas, { variant: 'bh1' });
    expect(inputs).toHaveLength(steps);
    expect(Array.from(inputs[0])).toEqual(Array.from(noise));
    const e = tensorError(result, f.f32('result').data);
    expect(e.rel).toBeLessThanOrEqual(MULTI_STEP_BAR);
    expect(e.abs).toBe(0);
    let call = 0;
    const ref = await uniPCFloat64(async () => item(f, 'denoised', call++), noise, sigmas, 'bh1');
    // The recorded x0s are replayed unchanged, so only float32 rounding separates the two (measured ≤ 4.3e-6,
    // growing over the 10 steps with the order-3 coefficients); well inside the multi-step bar.
    for (let i = 0; i < steps; i++) {
      expect(tensorError(inputs[i], ref.inputs[i]).rel, `input ${i} against float64`).toBeLessThanOrEqual(1e-5);
    }
  });
});

describe('UniPC sampler, other cases', () => {
  it('bh2 and a 25-step schedule agree with the float64 sampler on a smooth synthetic denoiser', async () => {
    const f = await loadFixture('sampler_unipc.safetensors');
    const noise = f.f32('noise').data;
    const sigmas = fluxSigmas(25, Math.log(7));
    // x0 = 0.6·x + 0.1·sin(x): a fixed, input-dependent prediction, enough to exercise every order.
    const synth = (x: ArrayLike<number>) => Float64Array.from(x, (v) => 0.6 * v + 0.1 * Math.sin(v));
    for (const variant of ['bh1', 'bh2'] as const) {
      const got = await sampleUniPC(async (x) => Float32Array.from(synth(x)), noise, sigmas, { variant });
      const ref = await uniPCFloat64(async (x) => synth(x), noise, sigmas, variant);
      expect(tensorError(got, ref.result).rel, variant).toBeLessThanOrEqual(MULTI_STEP_BAR);
    }
  });

  it('takes one evaluation for one step and returns it', async () => {
    const x = new Float32Array([1, 2, 3]);
    const out = new Float32Array([0.5, 0.25, 0.125]);
    let calls = 0;
    const result = await sampleUniPC(async () => (calls++, out), x, new Float32Array([1, 0]), { variant: 'bh1' });
    expect(calls).toBe(1);
    expect(result).toBe(out);
  });

  it('rejects denoisers that change the latent size, and too few sigmas', async () => {
    const x = new Float32Array(4);
    await expect(sampleUniPC(async () => new Float32Array(3), x, new Float32Array([1, 0.5, 0]), { variant: 'bh1' })).rejects.toThrow(DenoiserShapeError);
    await expect(sampleUniPC(async () => x, x, new Float32Array([1]), { variant: 'bh1' })).rejects.toThrow(RangeError);
  });

  it('solves the small systems like float64 elimination to float32 precision', () => {
    const a = [[1, 1, 1], [-0.51902443, -0.8504329, 1], [0.26938635, 0.7232361, 1]];
    const b = [0.41712496, 0.29077062, 0.2239997];
    const want = gaussSolve(a.map((r) => r.map(Math.fround)), b.map(Math.fround));
    expect(tensorError(solveF32(a, b), want).rel).toBeLessThanOrEqual(1e-6);
  });
});

describe('fm wrapper', () => {
  it('reproduces the recorded x0 from velocities v = (x − x0)/σ in float32', async () => {
    const f = await loadFixture('sampler_unipc.safetensors');
    const sigmas = f.f32('sigmas').data;
    for (let i = 0; i < f.shape('denoised')[0]; i++) {
      const xIn = item(f, 'model_inputs', i);
      const x0 = item(f, 'denoised', i);
      const sigma = sigmas[i];
      const v = Float32Array.from(xIn, (xv, e) => (xv - x0[e]) / sigma);
      const seen: { timestep: number; branch: GuidanceBranch }[] = [];
      const denoiser = fmDenoiser(async (x, timestep, branch) => {
        seen.push({ timestep, branch });
        expect(x).toBe(xIn);
        return v.slice();
      }, { dtype: 'float32', cfg: f.meta.cfg as number, cfgRescale: f.meta.cfg_rescale as number });
      const e = tensorError(await denoiser(xIn, sigma), x0);
      expect(e.rel, `denoised[${i}]`).toBeLessThanOrEqual(1e-6);
      // cfg 1: one positive pass, at the unrounded float32 σ·1000.
      expect(seen).toEqual([{ timestep: Math.fround(sigma * 1000), branch: 'positive' }]);
    }
  });

  it('in bf16 feeds bf16 latents and the §6.2 bf16 timesteps, and subtracts from the rounded latents', async () => {
    const f = await loadFixture('sampler_unipc.safetensors');
    const x = f.f32('noise').data;
    const v = item(f, 'denoised', 0);
    const sigmas = fluxSigmas(25, Math.log(7));
    const timesteps: number[] = [];
    const denoiser = fmDenoiser(async (xb, timestep) => {
      timesteps.push(timestep);
      expect(Array.from(xb)).toEqual(Array.from(x, roundToBf16));
      return v.slice();
    }, { dtype: 'bfloat16', cfg: 1, cfgRescale: 0 });
    for (const s of sigmas.subarray(0, 25)) {
      const x0 = await denoiser(x, s);
      const want = Float64Array.from(x, (xv, e) => roundToBf16(xv) - v[e] * s);
      expect(tensorError(x0, want).rel).toBeLessThanOrEqual(1e-6);
    }
    expect(timesteps).toEqual([1000, 996, 988, 980, 972, 964, 956, 948, 936, 924, 912, 900, 884, 864, 848, 824, 796, 768, 732, 688, 636, 572, 488, 378, 226]);
    expect(modelTimestep(sigmas[1], 'float32')).toBe(Math.fround(sigmas[1] * 1000));
    expect(distilledGuidanceValue(10, 'bfloat16')).toBe(9984);
    expect(distilledGuidanceValue(10, 'float32')).toBe(10000);
  });

  it('applies real CFG and its rescale as a float64 computation of the reference formula does', async () => {
    const f = await loadFixture('sampler_unipc.safetensors');
    const x = item(f, 'model_inputs', 1);
    const pos = item(f, 'denoised', 2);
    const neg = item(f, 'denoised', 3);
    const sigma = 0.7;
    for (const [cfg, rescale] of [[3, 0], [3, 0.7], [1, 0.5], [6.5, 1]] as const) {
      const calls: GuidanceBranch[] = [];
      const denoiser = fmDenoiser(async (_x, _t, branch) => {
        calls.push(branch);
        return (branch === 'positive' ? pos : neg).slice();
      }, { dtype: 'float32', cfg, cfgRescale: rescale });
      const got = await denoiser(x, sigma);
      expect(calls).toEqual(cfg === 1 ? ['positive'] : ['positive', 'negative']);

      // Reference formula in float64: v = v- + cfg(v+ − v-) (v- = 0 when cfg = 1), rescale with unbiased std.
      const n = x.length;
      const vNeg = cfg === 1 ? new Float64Array(n) : Float64Array.from(neg);
      let v = Float64Array.from(pos, (p, e) => vNeg[e] + cfg * (p - vNeg[e]));
      if (rescale > 0) {
        const std = (a: ArrayLike<number>) => {
          let m = 0;
          for (let e = 0; e < n; e++) m += a[e];
          m /= n;
          let s = 0;
          for (let e = 0; e < n; e++) s += (a[e] - m) ** 2;
          return Math.sqrt(s / (n - 1));
        };
        const ratio = std(pos) / std(v);
        v = v.map((ve) => rescale * ve * ratio + (1 - rescale) * ve);
      }
      const want = Float64Array.from(x, (xv, e) => xv - v[e] * Math.fround(sigma));
      const e = tensorError(got, want);
      expect(e.rel, `cfg ${cfg} rescale ${rescale}`).toBeLessThanOrEqual(SINGLE_BAR);
      expect(e.rel, `cfg ${cfg} rescale ${rescale}`).toBeLessThanOrEqual(1e-6);
    }
  });

  it('refuses a velocity of the wrong size with an actionable error', async () => {
    const denoiser = fmDenoiser(async () => new Float32Array(2), { dtype: 'float32', cfg: 1, cfgRescale: 0 });
    await expect(denoiser(new Float32Array(3), 0.5)).rejects.toThrow(VelocityShapeError);
  });
});

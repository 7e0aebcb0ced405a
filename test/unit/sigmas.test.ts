import { describe, expect, it } from 'vitest';
import { fluxMu, fluxSigmas, noisyTokenCount, torchLinspaceF32 } from '../../src/pipeline/sigmas.ts';
import { fmaF32 } from '../../src/pipeline/float32.ts';
import { tensorError } from '../../src/pipeline/tensorError.ts';
import { roundToBf16 } from '../../src/weights/dtypes.ts';
import { loadFixture } from '../helpers/fixtures.ts';

// framepack-reference.md §6.2: the default 25-step table at shift 7, printed to 6 decimals, and the bf16 timesteps.
const SPEC_SIGMAS_25 = [
  1.0, 0.994083, 0.98773, 0.980892, 0.97351, 0.965517, 0.956835, 0.947368, 0.937008, 0.92562, 0.913043, 0.899083, 0.883495,
  0.865979, 0.846154, 0.823529, 0.797468, 0.767123, 0.731343, 0.688525, 0.636364, 0.571429, 0.488372, 0.378378, 0.225806, 0.0,
];
const SPEC_TIMESTEPS_BF16 = [
  1000, 996, 988, 980, 972, 964, 956, 948, 936, 924, 912, 900, 884, 864, 848, 824, 796, 768, 732, 688, 636, 572, 488, 378, 226,
];

describe('flux sigma schedule', () => {
  it('reproduces every table of sigmas.safetensors bit for bit', async () => {
    const f = await loadFixture('sigmas.safetensors');
    let tables = 0;
    for (const name of f.names) {
      const m = /^s(\d+)_t(\d+)$/.exec(name);
      if (!m) continue;
      const steps = Number(m[1]);
      const seq = Number(m[2]);
      const want = f.f32(name).data;
      const got = fluxSigmas(steps, fluxMu(seq));
      expect(got.length, name).toBe(steps + 1);
      expect(tensorError(got, want).abs, name).toBe(0);
      expect(Array.from(got), name).toEqual(Array.from(want));
      tables++;
    }
    expect(tables).toBe(f.names.length);
    expect(tables).toBeGreaterThan(0);
  });

  it('matches the 25-step table printed in §6.2 (6 decimals) and its bf16 timesteps', () => {
    // 640×640 at latent window 9: 9 × 80 × 80 / 4 noisy tokens, far above the clamp, so μ = ln 7.
    const mu = fluxMu(noisyTokenCount(9, 80, 80));
    expect(mu).toBe(Math.log(7));
    const sigmas = fluxSigmas(25, mu);
    for (let i = 0; i < sigmas.length; i++) {
      // Half a unit in the 6th decimal is the table's own rounding; 1e-9 covers the decimal's binary representation.
      expect(Math.abs(sigmas[i] - SPEC_SIGMAS_25[i]), `σ${i}`).toBeLessThanOrEqual(0.5e-6 + 1e-9);
    }
    const timesteps = Array.from(sigmas.subarray(0, 25), (s) => roundToBf16(Math.fround(s * 1000)));
    expect(timesteps).toEqual(SPEC_TIMESTEPS_BF16);
  });

  it('gives the shifts §6.2 lists for small windows of the 640×608 bucket and clamps from 8798 tokens on', () => {
    const shifts = [1, 2, 3, 4, 5].map((lws) => Math.exp(fluxMu(noisyTokenCount(lws, 80, 76))));
    expect(shifts.map((s) => s.toFixed(2))).toEqual(['2.04', '2.64', '3.42', '4.42', '5.72']);
    // (ln 7 − b)/k = 8797.8: 8797 tokens is still on the line, 8798 already clamped.
    expect(fluxMu(8797)).toBeLessThan(Math.log(7));
    expect(fluxMu(8798)).toBe(Math.log(7));
    expect(fluxMu(100000, 3)).toBe(Math.log(3));
  });

  it('derives the μ and σ recorded in sampler_unipc from its latent size', async () => {
    const f = await loadFixture('sampler_unipc.safetensors');
    const [, , t, h, w] = f.shape('noise');
    expect(h).toBe((f.meta.height as number) / 8);
    expect(w).toBe((f.meta.width as number) / 8);
    const mu = fluxMu(noisyTokenCount(t, h, w));
    expect(mu).toBe(f.meta.mu);
    expect(Array.from(fluxSigmas(f.meta.steps as number, mu))).toEqual(Array.from(f.f32('sigmas').data));
  });

  it('counts noisy tokens as T·h·w // 4', () => {
    expect(noisyTokenCount(9, 80, 80)).toBe(14400);
    expect(noisyTokenCount(3, 12, 10)).toBe(90);
    expect(noisyTokenCount(1, 3, 5)).toBe(3);
    expect(() => noisyTokenCount(1.5, 2, 2)).toThrow(RangeError);
  });

  it('rejects a step count that is not a positive integer', () => {
    expect(() => fluxSigmas(0, 1)).toThrow(RangeError);
    expect(() => fluxSigmas(2.5, 1)).toThrow(RangeError);
  });

  it('builds linspace(1, 0, n) from both ends like torch (exact at the ends and the middle)', () => {
    const t = torchLinspaceF32(1, 0, 11);
    expect(t[0]).toBe(1);
    expect(t[10]).toBe(0);
    expect(t[5]).toBe(Math.fround(0.5));
    expect(Array.from(torchLinspaceF32(1, 0, 1))).toEqual([1]);
  });
});

/** a·b + c rounded once to float32, exactly, with rational arithmetic on BigInt (independent of fmaF32). */
function exactFmaF32(a: number, b: number, c: number): number {
  // Every float32 is an integer multiple of 2^-149, so a·b + c is an integer multiple of 2^-298.
  const scaled = (x: number, shift: number) => BigInt(x * 2 ** 149) << BigInt(shift);
  const exact = scaled(a, 0) * scaled(b, 0) + scaled(c, 149);
  const approx = Math.fround(a * b + c);
  const toScaled = (x: number) => scaled(x, 149);
  const candidates = [approx, nextF32(approx, 1), nextF32(approx, -1)];
  let best = candidates[0];
  let bestDist = -1n;
  for (const cand of candidates) {
    let d = toScaled(cand) - exact;
    if (d < 0n) d = -d;
    const even = (new Uint32Array(new Float32Array([cand]).buffer)[0] & 1) === 0;
    if (bestDist < 0n || d < bestDist || (d === bestDist && even)) {
      best = cand;
      bestDist = d;
    }
  }
  return best;
}

function nextF32(x: number, dir: 1 | -1): number {
  const f = new Float32Array([x]);
  const u = new Int32Array(f.buffer);
  if (x === 0) return dir * 2 ** -149;
  u[0] += (x > 0) === (dir > 0) ? 1 : -1;
  return f[0];
}

describe('fmaF32', () => {
  it('rounds once where rounding through float64 would round twice', () => {
    // Exact a·b + c lies just below the midpoint between 1 + 2^-23 and 1 + 2^-22: the answer is 1 + 2^-23,
    // while fround(a·b + c) lands on the midpoint first and then ties to the even 1 + 2^-22.
    const a = 2 ** -12 * (1 + 2 ** -23);
    const b = 2 ** -12 * (1 - 2 ** -23);
    const c = 1 + 2 ** -23;
    expect(Math.fround(a * b + c)).toBe(1 + 2 ** -22);
    expect(fmaF32(a, b, c)).toBe(1 + 2 ** -23);
    expect(exactFmaF32(a, b, c)).toBe(1 + 2 ** -23);
  });

  it('agrees with exact rational rounding on random float32 triples', () => {
    let seed = 12345;
    const rand = () => {
      seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
      return seed / 2 ** 32;
    };
    for (let i = 0; i < 2000; i++) {
      const a = Math.fround((rand() - 0.5) * 4);
      const b = Math.fround((rand() - 0.5) * 4);
      const c = Math.fround(-a * b * (1 + (rand() - 0.5) * 2 ** -20));
      expect(fmaF32(a, b, c)).toBe(exactFmaF32(a, b, c));
    }
  });
});

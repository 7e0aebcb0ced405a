import { RopeTableError } from '../../src/errors/index.ts';
import { describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { axisFrequencies, packedRopeTable, packedTokenCounts, ropeChannels, ropeConfigFromDit, ropeFreqs1x, ropeFreqsPooled, type RopeConfig } from '../../src/pipeline/ropeTables.ts';
import { f1SectionLayout, originalSectionLayout } from '../../src/pipeline/sectionPlan.ts';
import { formatError, tensorError } from '../../src/pipeline/tensorError.ts';
import { fixturesDir, loadFixture } from '../helpers/fixtures.ts';

const ditConfig = JSON.parse(readFileSync(join(fixturesDir(), 'dit_tiny', 'config.json'), 'utf8'));
const config = ropeConfigFromDit(ditConfig);

const CASES = ['dit_forward_original_p1', 'dit_forward_original_p0', 'dit_forward_f1'];

describe('packed RoPE table against the dit_forward fixtures', () => {
  for (const name of CASES) {
    it(`${name}: rope_freqs within 1e-6 and the index tensors match the section layout`, async () => {
      const f = await loadFixture(`${name}.safetensors`);
      const indices = {
        latentIndices: f.ints('latent_indices'),
        cleanLatentIndices: f.ints('clean_latent_indices'),
        clean2xIndices: f.ints('clean_latent_2x_indices'),
        clean4xIndices: f.ints('clean_latent_4x_indices'),
      };
      const [, , , h, w] = f.shape('hidden_states');
      const patch = ditConfig.patch_size as number;
      const want = f.f32('rope_freqs');
      const got = packedRopeTable(indices, h, w, patch, config);
      const counts = packedTokenCounts(indices, h, w, patch);
      expect([1, counts.total, ropeChannels(config)]).toEqual(want.shape);
      const err = tensorError(got, want.data);
      console.log(`${name} rope_freqs ${formatError(err)}`);
      expect(err.rel).toBeLessThan(1e-6);

      // The layout this project computes for the same window reproduces the stored index tensors. The original
      // loop puts its 1x history frame after the noisy frames, F1 before them; p follows from the first index.
      const lws = indices.latentIndices.length;
      const isOriginal = indices.cleanLatentIndices[1] > indices.latentIndices[lws - 1];
      const layout = isOriginal ? originalSectionLayout((indices.latentIndices[0] - 1) / lws, lws) : f1SectionLayout(lws);
      console.log(`${name}: ${isOriginal ? `original loop, padding ${layout.padding}` : 'F1'}, lws ${lws}`);
      expect(layout.latentIndices).toEqual(indices.latentIndices);
      expect(layout.cleanLatentIndices).toEqual(indices.cleanLatentIndices);
      expect(layout.clean2xIndices).toEqual(indices.clean2xIndices);
      expect(layout.clean4xIndices).toEqual(indices.clean4xIndices);
    });
  }
});

/** An independent float64 evaluation of one channel of the table at one (t, y, x), per §5.4. */
function reference64(cfg: RopeConfig, channel: number, t: number, y: number, x: number): number {
  const [dt, dy, dx] = cfg.axesDim;
  const half = dt + dy + dx;
  const fn = channel < half ? Math.cos : Math.sin;
  let c = channel % half;
  let dim = dt;
  let pos = t;
  if (c >= dt + dy) { c -= dt + dy; dim = dx; pos = x; } else if (c >= dt) { c -= dt; dim = dy; pos = y; }
  const k = Math.floor(c / 2);
  return fn(pos / cfg.theta ** ((2 * k) / dim));
}

describe('RoPE table layout (independent float64 formula)', () => {
  const real: RopeConfig = { axesDim: [16, 56, 56], theta: 256 };

  it('frequencies are 1/θ^(2k/D)', () => {
    const f = axisFrequencies(56, 256);
    expect(f.length).toBe(28);
    for (let k = 0; k < 28; k++) expect(f[k]).toBeCloseTo(1 / 256 ** ((2 * k) / 56), 7);
  });

  it('1x rows are [cos T | cos Y | cos X | sin T | sin Y | sin X], t-major then row then column', () => {
    const indices = [0, 37];
    const [h2, w2] = [3, 4];
    const table = ropeFreqs1x(indices, h2, w2, real);
    const C = ropeChannels(real);
    expect(C).toBe(256);
    expect(table.length).toBe(indices.length * h2 * w2 * C);
    let worst = 0;
    for (let ti = 0; ti < indices.length; ti++) {
      for (let y = 0; y < h2; y++) {
        for (let x = 0; x < w2; x++) {
          const row = (ti * h2 + y) * w2 + x;
          for (let c = 0; c < C; c++) worst = Math.max(worst, Math.abs(table[row * C + c] - reference64(real, c, indices[ti], y, x)));
        }
      }
    }
    // float32 angles at |t| ≤ 37 differ from exact ones by up to ~37·2⁻²⁴.
    expect(worst).toBeLessThan(4e-6);
  });

  it('pooled rows average the cos/sin values over replicate-padded blocks', () => {
    const indices = [11, 12, 13]; // T = 3 pads to 4 with a copy of 13
    const [h2, w2] = [3, 1];
    const table = ropeFreqsPooled(indices, h2, w2, real, 2);
    const C = ropeChannels(real);
    expect(table.length).toBe(2 * 2 * 1 * C);
    let worst = 0;
    for (let ot = 0; ot < 2; ot++) {
      for (let oy = 0; oy < 2; oy++) {
        for (let c = 0; c < C; c++) {
          let sum = 0;
          for (let kt = 0; kt < 2; kt++) for (let ky = 0; ky < 2; ky++) for (let kx = 0; kx < 2; kx++) {
            const t = indices[Math.min(ot * 2 + kt, 2)];
            sum += reference64(real, c, t, Math.min(oy * 2 + ky, h2 - 1), Math.min(kx, w2 - 1));
          }
          worst = Math.max(worst, Math.abs(table[(ot * 2 + oy) * C + c] - sum / 8));
        }
      }
    }
    expect(worst).toBeLessThan(4e-6);
  });

  it('counts tokens per §5.5 for the real buckets (lws 9)', () => {
    const layout = originalSectionLayout(3, 9);
    const rows: [number, number, number, number, number, number][] = [
      [52, 120, 14040, 3120, 390, 420], [56, 108, 13608, 3024, 378, 392], [60, 104, 14040, 3120, 390, 416],
      [64, 96, 13824, 3072, 384, 384], [68, 88, 13464, 2992, 374, 396], [72, 84, 13608, 3024, 378, 396],
      [76, 80, 13680, 3040, 380, 400], [80, 76, 13680, 3040, 380, 400],
    ];
    for (const [h, w, noisy, clean, twoX, fourX] of rows) {
      expect(packedTokenCounts(layout, h, w, 2)).toEqual({ fourX, twoX, clean, noisy, total: noisy + clean + twoX + fourX });
    }
  });

  it('rejects grids the patch does not tile and malformed configs', () => {
    expect(() => packedRopeTable(f1SectionLayout(3), 13, 10, 2, real)).toThrow(RopeTableError);
    expect(() => ropeConfigFromDit({ rope_axes_dim: [8, 12], rope_theta: 256 })).toThrow(RopeTableError);
  });
});

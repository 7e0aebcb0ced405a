// The packed DiT's 3-axis RoPE tables, computed on the CPU once per section: they depend only on the index
// lists and the latent grid, never on the latents. Each table row holds, for one image token,
// [cos T | cos Y | cos X | sin T | sin Y | sin X] with every angle repeated twice (the reference's
// repeat_interleave). The 2x/4x context tokens get the AVERAGE of the cos and sin values over the block they
// compress (replicate-padded at the end), not the rotation of an average angle, so this reproduces that exactly,
// float32 rounding included (framepack-reference.md §5.4, §5.5; HunyuanVideoRotaryPosEmbed,
// pad_for_3d_conv and center_down_sample_3d in diffusers_helper/models/hunyuan_video_packed.py).

import { RopeTableError } from '../errors/pipeline.ts';
import type { SectionLayout } from './sectionPlan.ts';

export interface RopeConfig {
  /** rope_axes_dim: channels of the head dimension per axis (T, Y, X); each even. Real (16,56,56), tiny (8,12,12). */
  axesDim: readonly [number, number, number];
  /** rope_theta (256 for both FramePack checkpoints). */
  theta: number;
}

/** The index lists one packed forward call takes (a SectionLayout has them). */
export type PackedRopeIndices = Pick<SectionLayout, 'latentIndices' | 'cleanLatentIndices' | 'clean2xIndices' | 'clean4xIndices'>;

/** The RoPE pooling of the 2x and 4x context tokens, on the post-patch grid (T, H, W), as in the reference. */
export const POOL_2X = 2;
export const POOL_4X = 4;

/** Reads the RoPE settings out of a DiT config.json (rope_axes_dim, rope_theta). Throws RopeTableError. */
export function ropeConfigFromDit(config: { rope_axes_dim?: unknown; rope_theta?: unknown }): RopeConfig {
  const axes = config.rope_axes_dim;
  const theta = config.rope_theta;
  if (!Array.isArray(axes) || axes.length !== 3 || !axes.every((d) => Number.isInteger(d) && d > 0 && d % 2 === 0)) {
    throw new RopeTableError(`The DiT config's rope_axes_dim must be three positive even integers, got ${JSON.stringify(axes)}.`);
  }
  if (typeof theta !== 'number' || !(theta > 0)) {
    throw new RopeTableError(`The DiT config's rope_theta must be a positive number, got ${JSON.stringify(theta)}.`);
  }
  return { axesDim: [axes[0], axes[1], axes[2]], theta };
}

/** Channels per token in a table: 2·sum(axes) (cos and sin). The attention head dim is sum(axes). */
export function ropeChannels(config: RopeConfig): number {
  return 2 * (config.axesDim[0] + config.axesDim[1] + config.axesDim[2]);
}

/** 1 / θ^(2k/D) for k < D/2, rounded to float32 at each step as torch computes it in float32. */
export function axisFrequencies(dim: number, theta: number): Float32Array {
  const out = new Float32Array(dim / 2);
  const base = Math.fround(theta);
  for (let k = 0; k < out.length; k++) {
    const exponent = Math.fround((2 * k) / dim);
    out[k] = Math.fround(1 / Math.fround(base ** exponent));
  }
  return out;
}

/**
 * Per axis, the table's value for every channel of that axis at every integer position: cos/sin of the
 * float32 angle freq·pos (rounded to float32 before the cos, as torch.outer does). Indexed [channel][pos].
 */
interface AxisTable {
  /** For each of the 2·D channels the axis owns (D cos then D sin), its column in the table. */
  columns: number[];
  /** values[j][p]: channel j of this axis at coordinate positions[p]. */
  values: Float32Array[];
}

function axisTable(dim: number, theta: number, positions: readonly number[], cosOffset: number, sinOffset: number): AxisTable {
  const freqs = axisFrequencies(dim, theta);
  const columns: number[] = [];
  const values: Float32Array[] = [];
  for (const [offset, fn] of [[cosOffset, Math.cos], [sinOffset, Math.sin]] as const) {
    for (let j = 0; j < dim; j++) {
      const f = freqs[j >> 1]; // repeat_interleave(2)
      const v = new Float32Array(positions.length);
      for (let p = 0; p < positions.length; p++) v[p] = fn(Math.fround(f * positions[p]));
      columns.push(offset + j);
      values.push(v);
    }
  }
  return { columns, values };
}

/** The three axis tables for time positions `indices` on an h×w post-patch grid. */
function axisTables(indices: readonly number[], h: number, w: number, config: RopeConfig): [AxisTable, AxisTable, AxisTable] {
  const [dt, dy, dx] = config.axesDim;
  const half = dt + dy + dx;
  const rows = Array.from({ length: h }, (_, i) => i);
  const cols = Array.from({ length: w }, (_, i) => i);
  return [
    axisTable(dt, config.theta, indices, 0, half),
    axisTable(dy, config.theta, rows, dt, half + dt),
    axisTable(dx, config.theta, cols, dt + dy, half + dt + dy),
  ];
}

function checkGrid(indices: readonly number[], h: number, w: number): void {
  if (indices.length === 0) throw new RopeTableError('A RoPE table needs at least one time index.');
  if (!Number.isInteger(h) || !Number.isInteger(w) || h < 1 || w < 1) {
    throw new RopeTableError(`The post-patch grid must be whole and non-empty, got ${h}×${w}.`);
  }
}

/**
 * Full-resolution table: one row per token (t-major, then row, then column) for the time positions `indices`
 * on the post-patch grid h2×w2. Returns Float32Array [indices.length·h2·w2, 2·sum(axes)].
 */
export function ropeFreqs1x(indices: readonly number[], h2: number, w2: number, config: RopeConfig): Float32Array {
  checkGrid(indices, h2, w2);
  const channels = ropeChannels(config);
  const [tAxis, yAxis, xAxis] = axisTables(indices, h2, w2, config);
  const out = new Float32Array(indices.length * h2 * w2 * channels);
  let row = 0;
  for (let t = 0; t < indices.length; t++) {
    for (let y = 0; y < h2; y++) {
      for (let x = 0; x < w2; x++, row += channels) {
        for (let j = 0; j < tAxis.columns.length; j++) out[row + tAxis.columns[j]] = tAxis.values[j][t];
        for (let j = 0; j < yAxis.columns.length; j++) out[row + yAxis.columns[j]] = yAxis.values[j][y];
        for (let j = 0; j < xAxis.columns.length; j++) out[row + xAxis.columns[j]] = xAxis.values[j][x];
      }
    }
  }
  return out;
}

/** Tokens along one axis after replicate-padding n to a multiple of k and pooling by k. */
function pooledLength(n: number, k: number): number {
  return Math.ceil(n / k);
}

/**
 * Compressed-context table: the full-resolution cos/sin grid for `indices` on h2×w2, replicate-padded at the
 * end of T, H and W to multiples of `factor`, then average-pooled with kernel = stride = (factor, factor,
 * factor), summing in float32 in (t, y, x) order like torch's CPU avg_pool3d. Returns Float32Array
 * [⌈T/f⌉·⌈h2/f⌉·⌈w2/f⌉, 2·sum(axes)], tokens t-major.
 */
export function ropeFreqsPooled(indices: readonly number[], h2: number, w2: number, config: RopeConfig, factor: number): Float32Array {
  checkGrid(indices, h2, w2);
  if (!Number.isInteger(factor) || factor < 1) throw new RopeTableError(`A pooling factor must be a whole number ≥ 1, got ${factor}.`);
  const channels = ropeChannels(config);
  const axes = axisTables(indices, h2, w2, config);
  const sizes = [indices.length, h2, w2];
  const [nt, ny, nx] = sizes.map((n) => pooledLength(n, factor));
  const out = new Float32Array(nt * ny * nx * channels);
  // Replicate padding = clamping the coordinate to the last real position.
  const clamp = (i: number, n: number) => Math.min(i, n - 1);
  const divisor = factor * factor * factor;
  // kernelTaps[a][i]: the offset along axis a of the i-th tap when looping t, then y, then x.
  const kernelTaps: number[][] = [[], [], []];
  for (let kt = 0; kt < factor; kt++) {
    for (let ky = 0; ky < factor; ky++) {
      for (let kx = 0; kx < factor; kx++) {
        kernelTaps[0].push(kt);
        kernelTaps[1].push(ky);
        kernelTaps[2].push(kx);
      }
    }
  }
  let row = 0;
  for (let ot = 0; ot < nt; ot++) {
    for (let oy = 0; oy < ny; oy++) {
      for (let ox = 0; ox < nx; ox++, row += channels) {
        const origin = [ot * factor, oy * factor, ox * factor];
        for (let a = 0; a < 3; a++) {
          // The coordinate of axis a at each of the f³ kernel taps, in avg_pool3d's (t, y, x) summation order.
          const taps = kernelTaps[a].map((k) => clamp(origin[a] + k, sizes[a]));
          const { columns, values } = axes[a];
          for (let j = 0; j < columns.length; j++) {
            const v = values[j];
            let sum = 0;
            for (const p of taps) sum = Math.fround(sum + v[p]);
            out[row + columns[j]] = Math.fround(sum / divisor);
          }
        }
      }
    }
  }
  return out;
}

/** Image tokens per group of one packed forward call, in packed order. */
export interface PackedTokenCounts {
  fourX: number;
  twoX: number;
  clean: number;
  noisy: number;
  total: number;
}

/** The post-patch grid of a latent h×w. Throws RopeTableError when the patch does not tile it. */
export function postPatchGrid(latentH: number, latentW: number, patchSize: number): [number, number] {
  if (!Number.isInteger(patchSize) || patchSize < 1) throw new RopeTableError(`The patch size must be a whole number ≥ 1, got ${patchSize}.`);
  // Odd grids would make the 2x/4x embedders (padded on latents) and their RoPE (padded post-patch) disagree in
  // token count, which the reference does not support either.
  if (latentH % patchSize !== 0 || latentW % patchSize !== 0) {
    throw new RopeTableError(`The latent grid ${latentH}×${latentW} is not a multiple of the patch size ${patchSize}; pick a resolution bucket whose sides are multiples of ${8 * patchSize} pixels.`);
  }
  return [latentH / patchSize, latentW / patchSize];
}

/** Token counts of one packed forward call (§5.5's table); the noisy tokens are the last `noisy` rows. */
export function packedTokenCounts(indices: PackedRopeIndices, latentH: number, latentW: number, patchSize: number): PackedTokenCounts {
  const [h2, w2] = postPatchGrid(latentH, latentW, patchSize);
  const pooled = (n: number, f: number) => pooledLength(n, f) * pooledLength(h2, f) * pooledLength(w2, f);
  const fourX = pooled(indices.clean4xIndices.length, POOL_4X);
  const twoX = pooled(indices.clean2xIndices.length, POOL_2X);
  const clean = indices.cleanLatentIndices.length * h2 * w2;
  const noisy = indices.latentIndices.length * h2 * w2;
  return { fourX, twoX, clean, noisy, total: fourX + twoX + clean + noisy };
}

/**
 * The whole packed RoPE table of one forward call, rows in the packed token order [4x, 2x, clean 1x, noisy]:
 * Float32Array [total tokens, 2·sum(axes)]. Throws RopeTableError for grids the patch does not tile.
 */
export function packedRopeTable(indices: PackedRopeIndices, latentH: number, latentW: number, patchSize: number, config: RopeConfig): Float32Array {
  const [h2, w2] = postPatchGrid(latentH, latentW, patchSize);
  const parts = [
    ropeFreqsPooled(indices.clean4xIndices, h2, w2, config, POOL_4X),
    ropeFreqsPooled(indices.clean2xIndices, h2, w2, config, POOL_2X),
    ropeFreqs1x(indices.cleanLatentIndices, h2, w2, config),
    ropeFreqs1x(indices.latentIndices, h2, w2, config),
  ];
  const out = new Float32Array(parts.reduce((n, p) => n + p.length, 0));
  let offset = 0;
  for (const p of parts) {
    out.set(p, offset);
    offset += p.length;
  }
  return out;
}

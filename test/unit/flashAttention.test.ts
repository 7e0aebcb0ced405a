// The attention kernels (tiled portable with subgroups, portable without, subgroup-matrix) against their CPU twin (src/kernels/cpuReference.ts: float64 softmax attention, the function
// the block plans' CPU executor runs, which the reference fixtures prove). The portable
// kernel runs on every device (SwiftShader in CI); the subgroup-matrix kernel needs a GPU with matrix units and is
// skipped, saying so, elsewhere (FRAMEPACK_GPU=hardware picks the machine's GPU).

import { AttentionConfigError, AttentionShapeError } from '../../src/errors/index.ts';
import { afterAll, describe, expect, it } from 'vitest';
import { attentionFlops, chooseAttentionPath, createFlashAttention, subgroupMatrixUnavailableReason, subgroupMatrixWorkgroupBytes, type AttentionDtype, type SubgroupMatrixRows } from '../../src/kernels/flashAttention.ts';
import { f16ToF32, f32ToF16 } from '../../src/weights/dtypes.ts';
import { formatError, tensorError } from '../../src/pipeline/tensorError.ts';
import { testGpu } from '../helpers/webgpu.ts';
import { allRows, attention as referenceAttention } from '../../src/kernels/cpuReference.ts';
import { poisonedBuffer, randomValues, readBuffer, uploadBuffer } from '../helpers/kernelData.ts';
import type { GpuContext } from '../../src/runtime/device.ts';
import type { TiledAttentionShape } from '../../src/kernels/flashAttentionPortable.ts';

interface Case {
  nq: number;
  nk: number;
  heads: number;
  headDim: number;
  /** Spread of the inputs: scores reach about ±amplitude²·√d. */
  amplitude: number;
  /** Key j is scaled by 1 + keyRamp·j/nk, so later keys score higher and the running maximum must move. */
  keyRamp?: number;
  /** FLOPs per dispatch, to force the queries into several dispatches at row offsets. */
  dispatchFlops?: number;
  /** false: the portable kernel for devices without subgroups (the tiled one is the default where they exist). */
  tiled?: boolean;
  tiledShape?: TiledAttentionShape;
}

const PORTABLE_CASES: Case[] = [
  { nq: 1, nk: 1, heads: 2, headDim: 32, amplitude: 1 },
  { nq: 64, nk: 64, heads: 2, headDim: 32, amplitude: 1 },
  { nq: 100, nk: 100, heads: 2, headDim: 32, amplitude: 2 },
  { nq: 37, nk: 70, heads: 2, headDim: 32, amplitude: 1.5 },
  { nq: 70, nk: 33, heads: 2, headDim: 128, amplitude: 1 },
  { nq: 100, nk: 100, heads: 2, headDim: 128, amplitude: 0.7 },
  { nq: 5, nk: 97, heads: 3, headDim: 64, amplitude: 1 },
  { nq: 40, nk: 150, heads: 2, headDim: 32, amplitude: 2, keyRamp: 4 },
  { nq: 200, nk: 70, heads: 2, headDim: 32, amplitude: 1, dispatchFlops: attentionFlops(64, 70, 2, 32) }, // 64 queries per dispatch: 4 dispatches
  { nq: 100, nk: 100, heads: 2, headDim: 128, amplitude: 0.7, tiled: false },
  { nq: 150, nk: 77, heads: 2, headDim: 64, amplitude: 1.5, tiledShape: { parts: 4, queries: 2 } },
  { nq: 40, nk: 150, heads: 2, headDim: 32, amplitude: 2, keyRamp: 4, tiled: false },
];

/** Uploads data (converted to dtype), runs the kernel, reads the output back as f32. */
async function runOnGpu(ctx: GpuContext, c: Case, dtype: AttentionDtype, path: 'portable' | 'subgroup-matrix', q: Float32Array, k: Float32Array, v: Float32Array, rows?: SubgroupMatrixRows) {
  const { device } = ctx;
  const [qb, kb, vb] = [q, k, v].map((x) => uploadBuffer(device, x, dtype));
  const out = poisonedBuffer(device, c.nq * c.heads * c.headDim, dtype); // an element the kernel forgets stays NaN
  const attention = await createFlashAttention(device, { heads: c.heads, headDim: c.headDim, dtype, path, dispatchFlops: c.dispatchFlops, tiled: c.tiled, tiledShape: c.tiledShape, ...(rows ? { subgroupMatrixRows: rows } : {}) });
  await attention.run({ q: qb, k: kb, v: vb, out, nq: c.nq, nk: c.nk });
  const got = await readBuffer(device, out, c.nq * c.heads * c.headDim, dtype);
  for (const b of [qb, kb, vb, out]) b.destroy();
  return got;
}

function inputsFor(c: Case, seed: number) {
  const q = randomValues(c.nq * c.heads * c.headDim, seed, c.amplitude);
  const k = randomValues(c.nk * c.heads * c.headDim, seed + 1, c.amplitude);
  const perKey = c.heads * c.headDim;
  if (c.keyRamp) for (let i = 0; i < k.length; i++) k[i] *= 1 + (c.keyRamp * Math.floor(i / perKey)) / c.nk;
  const v = randomValues(c.nk * c.heads * c.headDim, seed + 2, 1);
  return { q, k, v };
}

const roundTripF16 = (x: Float32Array) => f16ToF32(f32ToF16(x));

const ctx: GpuContext = await testGpu();
const f16Missing = ctx.device.features.has('shader-f16') ? null : 'this device has no shader-f16 (SwiftShader has none)';
const subgroupMatrixMissing = subgroupMatrixUnavailableReason(ctx.device, { headDim: 128, dtype: 'f16' });
/** Appended to a test's name when it is skipped, so the report says why. */
const skipNote = (reason: string | null) => (reason ? ` [skipped: ${reason}; run with FRAMEPACK_GPU=hardware on a GPU that has it]` : '');

describe('flash attention, portable kernel, f32', () => {
  const measured: string[] = [];
  afterAll(() => console.log(`portable f32 against float64 reference:\n${measured.join('\n')}`));

  for (const [index, c] of PORTABLE_CASES.entries()) {
    it(`nq=${c.nq} nk=${c.nk} heads=${c.heads} d=${c.headDim}${c.keyRamp ? ' rising keys' : ''}${c.dispatchFlops ? ', split over dispatches' : ''}${c.tiled === false ? ', kernel without subgroups' : ''}${c.tiledShape ? `, tiled ${c.tiledShape.parts}×${c.tiledShape.queries}` : ''}: relative error ≤ 1e-5`, async () => {
      const { q, k, v } = inputsFor(c, 1000 + 17 * index);
      const got = await runOnGpu(ctx, c, 'f32', 'portable', q, k, v);
      const want = referenceAttention(q, k, v, c.nk, c.heads, c.headDim, allRows(c.nq));
      const err = tensorError(got, want);
      measured.push(`  nq=${c.nq} nk=${c.nk} H=${c.heads} d=${c.headDim}: ${formatError(err)}`);
      expect(err.rel).toBeLessThanOrEqual(1e-5);
    });
  }
});

describe('flash attention, portable kernel, f16 (needs shader-f16)', () => {
  it.skipIf(f16Missing !== null)(`nq=77 nk=90 heads=2 d=128 against the reference on f16-rounded inputs: relative error ≤ 2e-3${skipNote(f16Missing)}`, async () => {
    const c: Case = { nq: 77, nk: 90, heads: 2, headDim: 128, amplitude: 1 };
    const { q, k, v } = inputsFor(c, 77);
    const got = await runOnGpu(ctx, c, 'f16', 'portable', q, k, v);
    const want = referenceAttention(roundTripF16(q), roundTripF16(k), roundTripF16(v), c.nk, c.heads, c.headDim, allRows(c.nq));
    const err = tensorError(got, want);
    console.log(`portable f16: ${formatError(err)}`);
    // Output rounding to f16 alone is up to 2^-11 ≈ 4.9e-4 of the scale.
    expect(err.rel).toBeLessThanOrEqual(2e-3);
  });
});

describe('flash attention, subgroup-matrix kernel (needs chromium-experimental-subgroup-matrix)', () => {
  const cases: Case[] = [
    { nq: 64, nk: 32, heads: 1, headDim: 128, amplitude: 1 },
    { nq: 100, nk: 77, heads: 3, headDim: 128, amplitude: 1 },
    { nq: 300, nk: 517, heads: 2, headDim: 128, amplitude: 2 },
    { nq: 130, nk: 300, heads: 2, headDim: 128, amplitude: 2, keyRamp: 4 },
    { nq: 10, nk: 40, heads: 2, headDim: 128, amplitude: 1 },
  ];
  // Both workgroup sizes: 128 query rows is the default, 64 the fallback for devices with smaller limits.
  for (const rows of [128, 64] as const) {
    for (const [index, c] of cases.entries()) {
      it.skipIf(subgroupMatrixMissing !== null)(`${rows} rows per workgroup, nq=${c.nq} nk=${c.nk} heads=${c.heads} d=128${c.keyRamp ? ' rising keys' : ''} f16 against the reference on f16-rounded inputs: relative error ≤ 2e-3${skipNote(subgroupMatrixMissing)}`, async () => {
        const { q, k, v } = inputsFor(c, 5000 + 31 * index);
        const got = await runOnGpu(ctx, c, 'f16', 'subgroup-matrix', q, k, v, rows);
        const want = referenceAttention(roundTripF16(q), roundTripF16(k), roundTripF16(v), c.nk, c.heads, c.headDim, allRows(c.nq));
        const err = tensorError(got, want);
        console.log(`subgroup-matrix f16 rows=${rows} nq=${c.nq} nk=${c.nk}: ${formatError(err)}`);
        // P is rounded to f16 before P·V (as in FlashAttention on tensor cores), the output to f16.
        expect(err.rel).toBeLessThanOrEqual(2e-3);
      });
    }
  }
});

describe('flash attention, validation', () => {
  it('picks the portable path where subgroup matrices are absent and refuses the fast path with the reason', async () => {
    expect(chooseAttentionPath(ctx.device, { headDim: 32, dtype: 'f32' })).toBe('portable');
    if (subgroupMatrixMissing) {
      await expect(createFlashAttention(ctx.device, { heads: 2, headDim: 128, dtype: 'f16', path: 'subgroup-matrix' })).rejects.toThrow(AttentionConfigError);
    }
  });

  it('sizes the subgroup-matrix kernel for 48 KiB of workgroup memory (128 rows) and 32 KiB (64 rows)', () => {
    expect(subgroupMatrixWorkgroupBytes(128)).toBeLessThanOrEqual(48 * 1024);
    expect(subgroupMatrixWorkgroupBytes(64)).toBeLessThanOrEqual(32 * 1024);
  });

  it('rejects unsupported head sizes and buffers that are too small', async () => {
    await expect(createFlashAttention(ctx.device, { heads: 2, headDim: 48, dtype: 'f32' })).rejects.toThrow(/Head size 48/);
    const attention = await createFlashAttention(ctx.device, { heads: 2, headDim: 32, dtype: 'f32', path: 'portable' });
    const small = ctx.device.createBuffer({ size: 256, usage: GPUBufferUsage.STORAGE });
    const encoder = ctx.device.createCommandEncoder();
    expect(() => attention.encode(encoder, { q: small, k: small, v: small, out: small, nq: 10, nk: 10 })).toThrow(AttentionShapeError);
    expect(() => attention.encode(encoder, { q: small, k: small, v: small, out: small, nq: 0, nk: 1 })).toThrow(/nq must be a positive integer/);
    small.destroy();
  });
});

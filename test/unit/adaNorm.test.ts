// The gated-residual + AdaLN kernel against its CPU twin (src/kernels/cpuReference.ts adaNorm: float64, the reference's
// formulas of framepack-reference.md §5.7–5.8 — x + gate·y, LayerNorm without affine then ·(1 + scale) + shift — as
// the block plans' CPU executor runs them, which the fixtures prove). f32
// on every device (SwiftShader in CI); f16 where the device has shader-f16.

import { AdaNormShapeError } from '../../src/errors/index.ts';
import { describe, expect, it } from 'vitest';
import { createAdaNorm, type AdaNormDtype } from '../../src/kernels/adaNorm.ts';
import { formatError, tensorError } from '../../src/pipeline/tensorError.ts';
import { testGpu } from '../helpers/webgpu.ts';
import { adaNorm } from '../../src/kernels/cpuReference.ts';
import { asDtype, poisonedBuffer, randomValues, readBuffer, uploadBuffer } from '../helpers/kernelData.ts';

const EPS = 1e-6;
const ctx = await testGpu();
const f16Missing = ctx.device.features.has('shader-f16') ? null : 'this device has no shader-f16 (SwiftShader has none)';

interface Case { rows: number; dim: number; chunks: number; residual: boolean; secondY: boolean; modulate: boolean; yRow0: number; outRow0: number }

async function runCase(c: Case, dtype: AdaNormDtype) {
  const { device } = ctx;
  const d = c.dim;
  // A residual stream with a large common offset per row (as the transformer's has): the variance must come from
  // centred values to survive it.
  const x = randomValues(c.rows * d, 11, 4).map((v, i) => v + 50 * Math.sin(Math.floor(i / d)));
  const mod = randomValues(c.chunks * d, 12, 0.8);
  const y = asDtype(randomValues((c.yRow0 + c.rows) * d, 13, 2), dtype);
  const y2 = asDtype(randomValues((c.yRow0 + c.rows) * d, 14, 2), dtype);
  const chunks = [c.chunks - 1, 0, 1]; // gate, shift, scale
  const kernel = await createAdaNorm(device, { dim: d, dtype, eps: EPS });
  const streamOut = poisonedBuffer(device, c.rows * d);
  const normedOut = poisonedBuffer(device, (c.outRow0 + c.rows) * d, dtype);
  await kernel.run({
    x: uploadBuffer(device, x), mod: uploadBuffer(device, mod), rows: c.rows,
    residual: c.residual ? { y: uploadBuffer(device, y, dtype), y2: c.secondY ? uploadBuffer(device, y2, dtype) : undefined, yRow0: c.yRow0, gate: chunks[0], out: streamOut } : undefined,
    modulation: c.modulate ? { shift: chunks[1], scale: chunks[2], out: normedOut, outRow0: c.outRow0 } : undefined,
  });
  const want = adaNorm({
    x, mod, rows: c.rows, dim: d, eps: EPS,
    residual: c.residual ? { y, y2: c.secondY ? y2 : undefined, yRow0: c.yRow0, gate: chunks[0] } : undefined,
    modulation: { shift: chunks[1], scale: chunks[2] },
  });
  const normedAll = await readBuffer(device, normedOut, (c.outRow0 + c.rows) * d, dtype);
  return {
    stream: c.residual ? tensorError(await readBuffer(device, streamOut, c.rows * d), want.stream) : null,
    normed: c.modulate ? tensorError(normedAll.subarray(c.outRow0 * d), want.normed!) : null,
    untouched: normedAll.subarray(0, c.outRow0 * d).every(Number.isNaN),
  };
}

const cases: [string, Case][] = [
  ['modulation alone (a block\'s first norm), into rows 5… of a joint buffer', { rows: 9, dim: 96, chunks: 3, residual: false, secondY: false, modulate: true, yRow0: 0, outRow0: 5 }],
  ['residual then modulation (a dual block after its attention)', { rows: 7, dim: 3072, chunks: 6, residual: true, secondY: false, modulate: true, yRow0: 0, outRow0: 0 }],
  ['residual alone with two halves of y from row 4 (a single block\'s end, context rows)', { rows: 6, dim: 64, chunks: 3, residual: true, secondY: true, modulate: false, yRow0: 4, outRow0: 0 }],
];

describe('adaNorm kernel: gated residual and AdaLN modulation per token row', () => {
  for (const [label, c] of cases) {
    it(`f32, ${label}, width ${c.dim}: within 2e-6 of the float64 reference`, async () => {
      const e = await runCase(c, 'f32');
      console.log(`adaNorm f32 ${label}: stream ${e.stream ? formatError(e.stream) : '—'}, normed ${e.normed ? formatError(e.normed) : '—'}`);
      if (e.stream) expect(e.stream.rel).toBeLessThan(2e-6);
      if (e.normed) expect(e.normed.rel).toBeLessThan(2e-6);
      expect(e.untouched).toBe(true);
    });
  }

  it.skipIf(f16Missing !== null)(`f16, residual then modulation at width 3072: within f16 rounding (2e-3)${f16Missing ? ` — skipped: ${f16Missing}` : ''}`, async () => {
    const e = await runCase(cases[1][1], 'f16');
    console.log(`adaNorm f16: stream ${formatError(e.stream!)}, normed ${formatError(e.normed!)}`);
    expect(e.stream!.rel).toBeLessThan(1e-5);
    expect(e.normed!.rel).toBeLessThan(2e-3);
  });

  it('refuses a call with nothing to do and buffers too small, saying what is needed', async () => {
    const { device } = ctx;
    const kernel = await createAdaNorm(device, { dim: 64, dtype: 'f32', eps: EPS });
    const buffer = poisonedBuffer(device, 64 * 4);
    expect(() => kernel.encode(device.createCommandEncoder(), { x: buffer, mod: buffer, rows: 4 })).toThrow(AdaNormShapeError);
    expect(() => kernel.encode(device.createCommandEncoder(), { x: buffer, mod: buffer, rows: 5, modulation: { shift: 0, scale: 1, out: poisonedBuffer(device, 64 * 5) } }))
      .toThrow("adaNorm input 'x' holds 1024 bytes but 5 rows of 64 f32 need 1280.");
  });
});

// The q/k/v heads kernel (RMSNorm per head, RoPE on image rows, v copied) against its CPU twin
// (src/kernels/cpuReference.ts qkvHeads: float64, the reference's formulas of framepack-reference.md §5.5 — qk_norm,
// then apply_rotary_emb_transposed on the image tokens — as the block plans' CPU executor runs them). f32 on every device (SwiftShader in CI); f16 where the device
// has shader-f16.

import { QkvHeadsConfigError, QkvHeadsShapeError } from '../../src/errors/index.ts';
import { describe, expect, it } from 'vitest';
import { createQkvHeads, type QkvHeadsDtype } from '../../src/kernels/qkvHeads.ts';
import { formatError, tensorError } from '../../src/pipeline/tensorError.ts';
import { testGpu } from '../helpers/webgpu.ts';
import { qkvHeads } from '../../src/kernels/cpuReference.ts';
import { asDtype, poisonedBuffer, randomValues, readBuffer, uploadBuffer } from '../helpers/kernelData.ts';

const EPS = 1e-6;

const ctx = await testGpu();
const f16Missing = ctx.device.features.has('shader-f16') ? null : 'this device has no shader-f16 (SwiftShader has none)';

/**
 * A dual block's layout: image rows (RoPE, norm_q/norm_k) and context rows (no RoPE, other norm weights) from two
 * qkv buffers into one joint q, k, v; the context rows read from row `contextIn0` of theirs (a single block's joint
 * qkv). Returns the error of each output against the reference.
 */
async function dualCase(dtype: QkvHeadsDtype, heads: number, d: number, image: number, context: number, contextIn0: number) {
  const { device } = ctx;
  const width = heads * d;
  const qkvImage = asDtype(randomValues(image * 3 * width, 1, 3), dtype);
  const qkvContext = asDtype(randomValues((contextIn0 + context) * 3 * width, 2, 2), dtype);
  const angles = randomValues(image * d, 3, Math.PI);
  const cos = angles.map(Math.cos), sin = angles.map(Math.sin);
  const norms = [4, 5, 6, 7].map((s) => asDtype(randomValues(d, s, 1).map((v) => 1 + 0.5 * v), dtype));
  const kernel = await createQkvHeads(device, { heads, headDim: d, dtype, eps: EPS });
  const total = image + context;
  const [q, k, v] = [0, 1, 2].map(() => poisonedBuffer(device, total * width, dtype));
  const [cosBuffer, sinBuffer] = [uploadBuffer(device, cos), uploadBuffer(device, sin)];
  const encoder = device.createCommandEncoder();
  kernel.encode(encoder, { qkv: uploadBuffer(device, qkvImage, dtype), normQ: uploadBuffer(device, norms[0], dtype), normK: uploadBuffer(device, norms[1], dtype), cos: cosBuffer, sin: sinBuffer, q, k, v, rows: image, rope: true });
  kernel.encode(encoder, {
    qkv: uploadBuffer(device, qkvContext, dtype), normQ: uploadBuffer(device, norms[2], dtype), normK: uploadBuffer(device, norms[3], dtype), cos: cosBuffer, sin: sinBuffer,
    q, k, v, rows: context, inRow0: contextIn0, outRow0: image, rope: false,
  });
  device.queue.submit([encoder.finish()]);
  const wantImage = qkvHeads({ qkv: qkvImage, inRow0: 0, rows: image, heads, headDim: d, normQ: norms[0], normK: norms[1], rope: { cos, sin }, eps: EPS });
  const wantContext = qkvHeads({ qkv: qkvContext, inRow0: contextIn0, rows: context, heads, headDim: d, normQ: norms[2], normK: norms[3], rope: null, eps: EPS });
  const errors: Record<string, ReturnType<typeof tensorError>> = {};
  for (const [name, buffer] of [['q', q], ['k', k], ['v', v]] as const) {
    const got = await readBuffer(device, buffer, total * width, dtype);
    const want = new Float64Array(total * width);
    want.set(wantImage[name]);
    want.set(wantContext[name], image * width);
    errors[name] = tensorError(got, want);
  }
  return errors;
}

describe('q/k/v heads kernel: RMSNorm per head, RoPE on image rows, v copied', () => {
  for (const [heads, d, image, context, contextIn0] of [[2, 32, 37, 11, 0], [3, 128, 20, 9, 6]]) {
    it(`f32, ${heads} heads × ${d}, ${image} image rows + ${context} context rows${contextIn0 ? ` read from row ${contextIn0}` : ''}: every value within 2e-6 of the float64 reference`, async () => {
      const errors = await dualCase('f32', heads, d, image, context, contextIn0);
      console.log(`qkvHeads f32 ${heads}×${d}: ${Object.entries(errors).map(([n, e]) => `${n} ${formatError(e)}`).join(', ')}`);
      for (const e of Object.values(errors)) expect(e.rel).toBeLessThan(2e-6);
      expect(errors.v.abs).toBe(0);
    });
  }

  it.skipIf(f16Missing !== null)(`f16, 24 heads × 128: within f16 output rounding (2e-3)${f16Missing ? ` — skipped: ${f16Missing}` : ''}`, async () => {
    const errors = await dualCase('f16', 24, 128, 40, 12, 0);
    console.log(`qkvHeads f16 24×128: ${Object.entries(errors).map(([n, e]) => `${n} ${formatError(e)}`).join(', ')}`);
    for (const e of Object.values(errors)) expect(e.rel).toBeLessThan(2e-3);
  });

  it('refuses an odd head size, f16 without shader-f16, and buffers too small, saying what is needed', async () => {
    const { device } = ctx;
    await expect(createQkvHeads(device, { heads: 2, headDim: 31, dtype: 'f32', eps: EPS })).rejects.toThrow(QkvHeadsConfigError);
    if (f16Missing) await expect(createQkvHeads(device, { heads: 2, headDim: 32, dtype: 'f16', eps: EPS })).rejects.toThrow(/shader-f16/);
    const kernel = await createQkvHeads(device, { heads: 2, headDim: 32, dtype: 'f32', eps: EPS });
    const small = poisonedBuffer(device, 8);
    const big = poisonedBuffer(device, 4 * 3 * 64);
    expect(() => kernel.encode(device.createCommandEncoder(), { qkv: small, normQ: big, normK: big, cos: big, sin: big, q: big, k: big, v: big, rows: 4, rope: false }))
      .toThrow(new QkvHeadsShapeError("qkvHeads input 'qkv' holds 32 bytes but 4 rows of 3 × 64 f32 need 3072."));
  });
});

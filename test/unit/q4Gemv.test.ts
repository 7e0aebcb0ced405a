// The one-row 4-bit product for the AdaLN parameters, y = W·SiLU(x) + b, against its CPU twin
// (src/kernels/cpuReference.ts siluGemv, float64) on the weight as src/weights/quantize.ts dequantizes it (the MatMulNBits layout ORT and the kernels read).
// f32 on every device (SwiftShader in CI); f16 scales where the device has shader-f16.

import { Q4GemvConfigError, Q4GemvShapeError } from '../../src/errors/index.ts';
import { describe, expect, it } from 'vitest';
import { createQ4Gemv, type Q4GemvDtype } from '../../src/kernels/q4Gemv.ts';
import { dequantizeQ4, quantizeQ4 } from '../../src/weights/quantize.ts';
import { formatError, tensorError } from '../../src/pipeline/tensorError.ts';
import { testGpu } from '../helpers/webgpu.ts';
import { siluGemv } from '../../src/kernels/cpuReference.ts';
import { asDtype, poisonedBuffer, randomValues, readBuffer, uploadBuffer } from '../helpers/kernelData.ts';

const ctx = await testGpu();
const f16Missing = ctx.device.features.has('shader-f16') ? null : 'this device has no shader-f16 (SwiftShader has none)';

async function runCase(k: number, n: number, dtype: Q4GemvDtype) {
  const { device } = ctx;
  const x = randomValues(k, 1, 3);
  const q = quantizeQ4(randomValues(n * k, 2, 1 / Math.sqrt(k)), n, k);
  const scales = asDtype(q.scales, dtype);
  const bias = asDtype(randomValues(n, 3, 0.5), dtype);
  const w = dequantizeQ4({ ...q, scales });
  const want = siluGemv(x, k, w, n, bias);
  const gemv = await createQ4Gemv(device, { k, n, dtype });
  const out = poisonedBuffer(device, n);
  const blocks = device.createBuffer({ size: q.blocks.byteLength, usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST });
  device.queue.writeBuffer(blocks, 0, q.blocks);
  await gemv.run({ x: uploadBuffer(device, x), blocks, scales: uploadBuffer(device, scales, dtype), bias: uploadBuffer(device, bias, dtype), out });
  return tensorError(await readBuffer(device, out, n), want);
}

describe('4-bit one-row product with SiLU (AdaLN parameters)', () => {
  for (const [k, n] of [[32, 1], [96, 37], [3072 / 16, 6 * 48 + 5], [2048, 24]]) {
    it(`f32, K=${k}, N=${n}: within 1e-5 of the float64 reference`, async () => {
      const err = await runCase(k, n, 'f32');
      console.log(`q4Gemv f32 K=${k} N=${n}: ${formatError(err)}`);
      expect(err.rel).toBeLessThan(1e-5);
    });
  }

  it.skipIf(f16Missing !== null)(`f16 scales, K=3072, N=18432: within 1e-5 (accumulation is f32)${f16Missing ? ` — skipped: ${f16Missing}` : ''}`, async () => {
    const err = await runCase(3072, 18432, 'f16');
    console.log(`q4Gemv f16 K=3072 N=18432: ${formatError(err)}`);
    expect(err.rel).toBeLessThan(1e-5);
  });

  it('refuses a K that is not whole blocks and buffers too small, saying what is needed', async () => {
    const { device } = ctx;
    await expect(createQ4Gemv(device, { k: 40, n: 4, dtype: 'f32' })).rejects.toThrow(Q4GemvConfigError);
    const gemv = await createQ4Gemv(device, { k: 64, n: 4, dtype: 'f32' });
    const small = poisonedBuffer(device, 4);
    const big = poisonedBuffer(device, 1024);
    expect(() => gemv.encode(device.createCommandEncoder(), { x: small, blocks: big, scales: big, bias: big, out: big }))
      .toThrow(new Q4GemvShapeError("q4Gemv input 'x' holds 16 bytes but 64 f32 need 256."));
  });
});

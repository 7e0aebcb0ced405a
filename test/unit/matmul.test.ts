// The float-weight products (src/kernels/matmul.ts) against their CPU twins (src/kernels/cpuReference.ts linear and
// siluGemv, float64, the functions the block plans' CPU executor runs). f32 on every device (SwiftShader in CI); f16
// where the device has shader-f16.

import { describe, expect, it } from 'vitest';
import { MatmulConfigError, MatmulShapeError } from '../../src/errors/index.ts';
import { createMatmul, createSiluGemv, type MatmulDtype } from '../../src/kernels/matmul.ts';
import { linear, siluGemv } from '../../src/kernels/cpuReference.ts';
import { formatError, tensorError } from '../../src/pipeline/tensorError.ts';
import { testGpu } from '../helpers/webgpu.ts';
import { asDtype, poisonedBuffer, randomValues, readBuffer, uploadBuffer } from '../helpers/kernelData.ts';

const ctx = await testGpu();
const f16Missing = ctx.device.features.has('shader-f16') ? null : 'this device has no shader-f16 (SwiftShader has none)';

async function gemmCase(m: number, k: number, n: number, bias: boolean, epilogue: 'none' | 'gelu_tanh', dtype: MatmulDtype) {
  const { device } = ctx;
  const x = asDtype(randomValues(m * k, 1, 1), dtype);
  const w = asDtype(randomValues(n * k, 2, 1 / Math.sqrt(k)), dtype);
  const b = bias ? asDtype(randomValues(n, 3, 0.5), dtype) : null;
  const product = await createMatmul(device, { k, n, dtype, bias, epilogue });
  const out = poisonedBuffer(device, m * n, dtype);
  await product.run({ x: uploadBuffer(device, x, dtype), w: uploadBuffer(device, w, dtype), bias: b ? uploadBuffer(device, b, dtype) : undefined, out, m });
  return tensorError(await readBuffer(device, out, m * n, dtype), linear(x, m, k, w, n, b, epilogue));
}

describe('float-weight GEMM y = x·Wᵀ (+ bias) (+ GELU)', () => {
  // Tile edges on both sides (64 × 64 per workgroup, 16 of K per step), a K that is not a multiple of 16, one row.
  for (const [m, k, n, bias, epilogue] of [[1, 64, 64, true, 'none'], [70, 33, 100, true, 'gelu_tanh'], [130, 256, 65, false, 'none'], [17, 320, 64, true, 'none']] as const) {
    it(`f32, m=${m} k=${k} n=${n}${bias ? ' +bias' : ''}${epilogue === 'gelu_tanh' ? ' +gelu' : ''}: within 1e-6 of the float64 twin`, async () => {
      const err = await gemmCase(m, k, n, bias, epilogue, 'f32');
      console.log(`matmul f32 ${m}×${k}→${n}: ${formatError(err)}`);
      expect(err.rel).toBeLessThan(1e-6);
    });
  }

  it.skipIf(f16Missing !== null)(`f16, m=300 k=3072 n=256: within f16 output rounding (2e-3)${f16Missing ? ` — skipped: ${f16Missing}` : ''}`, async () => {
    const err = await gemmCase(300, 3072, 256, true, 'gelu_tanh', 'f16');
    console.log(`matmul f16 300×3072→256: ${formatError(err)}`);
    expect(err.rel).toBeLessThan(2e-3);
  });

  it('refuses bad sizes, a missing bias and buffers too small, saying what is needed', async () => {
    const { device } = ctx;
    await expect(createMatmul(device, { k: 0, n: 4, dtype: 'f32', bias: true })).rejects.toThrow(MatmulConfigError);
    if (f16Missing) await expect(createMatmul(device, { k: 8, n: 4, dtype: 'f16', bias: true })).rejects.toThrow(/shader-f16/);
    const product = await createMatmul(device, { k: 8, n: 4, dtype: 'f32', bias: true });
    const big = poisonedBuffer(device, 1024);
    expect(() => product.encode(device.createCommandEncoder(), { x: big, w: big, out: big, m: 2 })).toThrow(MatmulShapeError);
    expect(() => product.encode(device.createCommandEncoder(), { x: poisonedBuffer(device, 4), w: big, bias: big, out: big, m: 2 }))
      .toThrow(new MatmulShapeError("matmul input 'x' holds 16 bytes but 2 × 8 f32 need 64."));
  });
});

describe('float-weight one-row product with SiLU (AdaLN parameters)', () => {
  for (const [k, n] of [[64, 384], [96, 37], [3072 / 16, 6 * 48 + 5]]) {
    it(`f32, K=${k}, N=${n}: within 1e-6 of the float64 twin`, async () => {
      const { device } = ctx;
      const x = randomValues(k, 4, 3);
      const w = randomValues(n * k, 5, 1 / Math.sqrt(k));
      const bias = randomValues(n, 6, 0.5);
      const gemv = await createSiluGemv(device, { k, n, dtype: 'f32' });
      const out = poisonedBuffer(device, n);
      await gemv.run({ x: uploadBuffer(device, x), w: uploadBuffer(device, w), bias: uploadBuffer(device, bias), out });
      const err = tensorError(await readBuffer(device, out, n), siluGemv(x, k, w, n, bias));
      console.log(`siluGemv f32 K=${k} N=${n}: ${formatError(err)}`);
      expect(err.rel).toBeLessThan(1e-6);
    });
  }
});

// The 4-bit matmul kernels against their CPU twin (src/kernels/cpuReference.ts linear, float64, the function the
// block plans' CPU executor runs) on the weight as src/weights/quantize.ts dequantizes it (the MatMulNBits layout both ORT and the kernel read). The portable kernel
// runs on every device (SwiftShader in CI); the f16 and subgroup-matrix tests need a GPU that has those features
// and are skipped, saying so, elsewhere (FRAMEPACK_GPU=hardware picks the machine's GPU).

import { Q4MatmulConfigError, Q4MatmulShapeError } from '../../src/errors/index.ts';
import { afterAll, describe, expect, it } from 'vitest';
import { chooseQ4MatmulPath, createQ4Matmul, subgroupMatrixUnavailableReason, tilingKey, type Q4Epilogue, type Q4MatmulDtype, type Q4MatmulPath, type SubgroupMatrixTiling } from '../../src/kernels/q4Matmul.ts';
import { dequantizeQ4, quantizeQ4, type Q4Weight } from '../../src/weights/quantize.ts';
import { f16ToF32, f32ToF16 } from '../../src/weights/dtypes.ts';
import { formatError, tensorError } from '../../src/pipeline/tensorError.ts';
import { testGpu } from '../helpers/webgpu.ts';
import { linear } from '../../src/kernels/cpuReference.ts';
import { randomValues } from '../helpers/kernelData.ts';
import type { GpuContext } from '../../src/runtime/device.ts';

interface Case {
  m: number;
  k: number;
  n: number;
  bias: boolean;
  epilogue: Q4Epilogue;
  tiling?: SubgroupMatrixTiling;
  /** FLOPs per dispatch, to force the product into several dispatches at row offsets. */
  dispatchFlops?: number;
}

const roundTripF16 = (x: Float32Array) => f16ToF32(f32ToF16(x));
const describeCase = (c: Case) =>
  `m=${c.m} k=${c.k} n=${c.n}${c.bias ? ' +bias' : ''}${c.epilogue === 'gelu_tanh' ? ' +gelu' : ''}${c.tiling ? ` tiling ${tilingKey(c.tiling)}` : ''}` +
  `${c.dispatchFlops ? `, ${Math.ceil(c.m / Math.max(128, Math.floor(c.dispatchFlops / (2 * c.k * c.n) / 128) * 128))} dispatches` : ''}`;

/** Inputs of a case as the GPU will see them (f16-rounded for f16) and the float64 reference output. */
function caseData(c: Case, dtype: Q4MatmulDtype, seed: number) {
  const narrow = (v: Float32Array) => (dtype === 'f16' ? roundTripF16(v) : v);
  const x = narrow(randomValues(c.m * c.k, seed, 1));
  const quantized = quantizeQ4(randomValues(c.n * c.k, seed + 1, 1 / Math.sqrt(c.k)), c.n, c.k);
  // Scales are fed in the activation dtype, so the f16 reference uses f16 scales.
  const weight: Q4Weight = { ...quantized, scales: narrow(quantized.scales) };
  const bias = c.bias ? narrow(randomValues(c.n, seed + 2, 0.5)) : null;
  const want = linear(x, c.m, c.k, dequantizeQ4(weight), c.n, bias, c.epilogue);
  return { x, weight, bias, want };
}

/** Uploads a case (converted to dtype), runs the kernel, reads the output back as f32. */
async function runOnGpu(ctx: GpuContext, c: Case, dtype: Q4MatmulDtype, path: Q4MatmulPath, seed: number) {
  const { device } = ctx;
  const { x, weight, bias, want } = caseData(c, dtype, seed);
  const upload = (data: Float32Array | Uint8Array) => {
    const bytes = data instanceof Uint8Array ? data : dtype === 'f16' ? f32ToF16(data) : data;
    const padded = new Uint8Array(Math.ceil(bytes.byteLength / 4) * 4);
    padded.set(new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength));
    const buffer = device.createBuffer({ size: padded.byteLength, usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST });
    device.queue.writeBuffer(buffer, 0, padded);
    return buffer;
  };
  const outBytes = c.m * c.n * (dtype === 'f16' ? 2 : 4);
  const out = device.createBuffer({ size: Math.ceil(outBytes / 4) * 4, usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST });
  // Poison the output (0xff bytes are NaN in f32 and f16) so an element the kernel forgets to write cannot pass.
  device.queue.writeBuffer(out, 0, new Uint8Array(out.size).fill(0xff));
  const readback = device.createBuffer({ size: out.size, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
  const inputs = { x: upload(x), blocks: upload(weight.blocks), scales: upload(weight.scales), bias: bias ? upload(bias) : undefined };
  const matmul = await createQ4Matmul(device, { k: c.k, n: c.n, dtype, epilogue: c.epilogue, bias: c.bias, path, tiling: c.tiling, dispatchFlops: c.dispatchFlops });
  expect(matmul.path).toBe(path);
  const encoder = device.createCommandEncoder();
  matmul.encode(encoder, { ...inputs, out, m: c.m });
  encoder.copyBufferToBuffer(out, 0, readback, 0, out.size);
  device.queue.submit([encoder.finish()]);
  await readback.mapAsync(GPUMapMode.READ);
  const raw = readback.getMappedRange().slice(0, outBytes);
  readback.unmap();
  for (const b of [inputs.x, inputs.blocks, inputs.scales, inputs.bias, out, readback]) b?.destroy();
  const got = dtype === 'f16' ? f16ToF32(new Uint16Array(raw)) : new Float32Array(raw);
  return tensorError(got, want);
}

const ctx: GpuContext = await testGpu();
const f16Missing = ctx.device.features.has('shader-f16') ? null : 'this device has no shader-f16 (SwiftShader has none)';
const subgroupMatrixMissing = subgroupMatrixUnavailableReason(ctx.device, { k: 256, dtype: 'f16' });
/** Appended to a test's name when it is skipped, so the report says why. */
const skipNote = (reason: string | null) => (reason ? ` [skipped: ${reason}; run with FRAMEPACK_GPU=hardware on a GPU that has it]` : '');

// One pipeline serves every case of a dtype (bias and epilogue are uniforms): SwiftShader compiles it once.
const PORTABLE_CASES: Case[] = [
  { m: 1, k: 32, n: 1, bias: false, epilogue: 'none' },
  { m: 70, k: 96, n: 72, bias: true, epilogue: 'gelu_tanh' }, // m and n not multiples of the 128 tile, 3 blocks
  { m: 128, k: 64, n: 128, bias: true, epilogue: 'none' }, // exactly one tile
  { m: 300, k: 128, n: 136, bias: false, epilogue: 'gelu_tanh' }, // rows past two tiles, columns past one
  { m: 5, k: 320, n: 130, bias: true, epilogue: 'gelu_tanh' },
  { m: 400, k: 96, n: 72, bias: true, epilogue: 'none', dispatchFlops: 2 * 96 * 72 * 128 }, // one row tile per dispatch, at row offsets
];

describe('4-bit matmul, portable kernel, f32', () => {
  const measured: string[] = [];
  afterAll(() => console.log(`portable f32 against float64 reference:\n${measured.join('\n')}`));

  for (const [index, c] of PORTABLE_CASES.entries()) {
    it(`${describeCase(c)}: relative error ≤ 1e-5`, async () => {
      const err = await runOnGpu(ctx, c, 'f32', 'portable', 100 + 7 * index);
      measured.push(`  ${describeCase(c)}: ${formatError(err)}`);
      expect(err.rel).toBeLessThanOrEqual(1e-5);
    });
  }
});

describe('4-bit matmul, portable kernel, f16 (needs shader-f16)', () => {
  const cases: Case[] = [
    { m: 77, k: 96, n: 72, bias: true, epilogue: 'gelu_tanh' },
    { m: 40, k: 256, n: 130, bias: false, epilogue: 'none' },
  ];
  for (const [index, c] of cases.entries()) {
    it.skipIf(f16Missing !== null)(`${describeCase(c)} against the reference on f16-rounded inputs: relative error ≤ 2e-3${skipNote(f16Missing)}`, async () => {
      const err = await runOnGpu(ctx, c, 'f16', 'portable', 300 + 7 * index);
      console.log(`portable f16 ${describeCase(c)}: ${formatError(err)}`);
      // Output rounding to f16 alone is up to 2^-11 ≈ 4.9e-4 of the scale.
      expect(err.rel).toBeLessThanOrEqual(2e-3);
    });
  }
});

describe('4-bit matmul, subgroup-matrix kernel (needs chromium-experimental-subgroup-matrix)', () => {
  const cases: Case[] = [
    // The default tiling (128 × 128 outputs per workgroup).
    { m: 37, k: 96, n: 72, bias: true, epilogue: 'gelu_tanh' }, // 3 blocks; m and n far from the tile
    { m: 300, k: 256, n: 200, bias: true, epilogue: 'none' },
    { m: 300, k: 96, n: 264, bias: true, epilogue: 'gelu_tanh' }, // n just past two workgroups' 256 columns
    { m: 17, k: 64, n: 40, bias: false, epilogue: 'none' }, // one row past a 16-row matrix
    { m: 50, k: 32, n: 130, bias: true, epilogue: 'none' }, // a single step along K
    { m: 10, k: 64, n: 40, bias: false, epilogue: 'gelu_tanh' }, // fewer than 16 rows: the portable kernel takes it
    // Other tilings: 128 × 256 per workgroup; 2 × 4 result matrices per subgroup with 64 of K per step;
    // 4 × 2 and 16 subgroups (W read in 8-byte word groups); the one-subgroup fallback for small limits.
    { m: 150, k: 96, n: 300, bias: true, epilogue: 'gelu_tanh', tiling: { sgM: 2, sgN: 4, blocks: 1 } },
    { m: 140, k: 256, n: 136, bias: true, epilogue: 'none', tiling: { sgM: 4, sgN: 2, blocks: 2, fragM: 2, fragN: 4 } },
    { m: 70, k: 128, n: 72, bias: false, epilogue: 'gelu_tanh', tiling: { sgM: 2, sgN: 2, blocks: 1, fragM: 4, fragN: 2 } },
    { m: 130, k: 64, n: 260, bias: true, epilogue: 'none', tiling: { sgM: 4, sgN: 4, blocks: 1, fragM: 2, fragN: 4 } },
    { m: 100, k: 160, n: 90, bias: true, epilogue: 'gelu_tanh', tiling: { sgM: 1, sgN: 1, blocks: 1 } },
  ];
  for (const [index, c] of cases.entries()) {
    it.skipIf(subgroupMatrixMissing !== null)(`${describeCase(c)} f16 against the reference on f16-rounded inputs: relative error ≤ 2e-3${skipNote(subgroupMatrixMissing)}`, async () => {
      const err = await runOnGpu(ctx, c, 'f16', 'subgroup-matrix', 500 + 7 * index);
      console.log(`subgroup-matrix f16 ${describeCase(c)}: ${formatError(err)}`);
      // W is dequantized to f16 (one rounding of (q − 8)·scale), the output rounded to f16.
      expect(err.rel).toBeLessThanOrEqual(2e-3);
    });
  }
});

describe('4-bit matmul, validation', () => {
  it('picks the portable path for f32 and says why the fast path cannot take it', () => {
    expect(chooseQ4MatmulPath(ctx.device, { k: 96, dtype: 'f32' })).toBe('portable');
    expect(subgroupMatrixUnavailableReason(ctx.device, { k: 96, dtype: 'f32' })).not.toBeNull();
  });

  it.runIf(subgroupMatrixMissing !== null)(`refuses the subgroup-matrix path where it cannot run${subgroupMatrixMissing ? '' : ' [skipped: this device has subgroup matrices]'}`, async () => {
    await expect(createQ4Matmul(ctx.device, { k: 256, n: 64, dtype: 'f16', bias: false, path: 'subgroup-matrix' })).rejects.toThrow(Q4MatmulConfigError);
  });

  it.runIf(f16Missing !== null)(`refuses f16 without shader-f16${f16Missing ? '' : ' [skipped: this device has shader-f16]'}`, async () => {
    await expect(createQ4Matmul(ctx.device, { k: 64, n: 64, dtype: 'f16', bias: false })).rejects.toThrow(/shader-f16/);
  });

  it('rejects invalid sizes, missing or unexpected bias and buffers that are too small', async () => {
    await expect(createQ4Matmul(ctx.device, { k: 0, n: 64, dtype: 'f32', bias: false })).rejects.toThrow(Q4MatmulConfigError);
    await expect(createQ4Matmul(ctx.device, { k: 100, n: 64, dtype: 'f32', bias: false })).rejects.toThrow(/multiple of 32/);
    const matmul = await createQ4Matmul(ctx.device, { k: 64, n: 64, dtype: 'f32', bias: true, path: 'portable' });
    const small = ctx.device.createBuffer({ size: 256, usage: GPUBufferUsage.STORAGE });
    const encoder = ctx.device.createCommandEncoder();
    const io = { x: small, blocks: small, scales: small, bias: small, out: small };
    expect(() => matmul.encode(encoder, { ...io, m: 10 })).toThrow(Q4MatmulShapeError);
    expect(() => matmul.encode(encoder, { ...io, m: 0 })).toThrow(/m must be a positive integer/);
    expect(() => matmul.encode(encoder, { ...io, bias: undefined, m: 1 })).toThrow(/created with bias: true/);
    small.destroy();
  });
});

// The VAE's causal 3-D conv kernel (src/kernels/vaeConv.ts) against its CPU twin (src/kernels/cpuReferenceVae.ts:
// upsample, replicate-pad, convolve with the checkpoint's weight layout, float64) on tiny shapes: kernel 3 with
// replicate padding in time and space, the folded nearest upsampling, strides, GroupNorm + SiLU on load (affine from
// the GroupNorm kernel), the residual, the planar f32 output, kernel 1, and dispatches split by a small FLOP budget.
// f32 on every device (SwiftShader in CI); f16 where the device has shader-f16.

import { describe, expect, it } from 'vitest';
import { VaeKernelShapeError } from '../../src/errors/index.ts';
import { causalConv3d } from '../../src/kernels/cpuReferenceVae.ts';
import { convDispatchRanges, convOutputShape, convWeightToKN, createVaeConv, type ConvGeometry, type ConvTileName } from '../../src/kernels/vaeConv.ts';
import { createVaeGroupNorm, groupNormPartialBytes } from '../../src/kernels/vaeGroupNorm.ts';
import { formatError, tensorError } from '../../src/pipeline/tensorError.ts';
import { asDtype, poisonedBuffer, randomValues, readBuffer, uploadBuffer, type KernelDtype } from '../helpers/kernelData.ts';
import { testGpu } from '../helpers/webgpu.ts';

const ctx = await testGpu();
const f16Missing = ctx.device.features.has('shader-f16') ? null : 'this device has no shader-f16 (SwiftShader has none)';

interface Case {
  g: ConvGeometry;
  tile: ConvTileName;
  norm?: { groups: number; silu: boolean };
  residual?: boolean;
  planar?: boolean;
  budget?: number;
}

async function runCase(c: Case, dtype: KernelDtype) {
  const { device } = ctx;
  const { g } = c;
  const o = convOutputShape(g);
  const rows = o.frames * o.height * o.width;
  const inCount = g.inFrames * g.inHeight * g.inWidth * g.inChannels;
  const wShape = [g.outChannels, g.inChannels, g.kernelTime, g.kernelSpace, g.kernelSpace];
  // A common offset per channel: GroupNorm must remove it.
  const x = asDtype(randomValues(inCount, 1, 2).map((v, i) => v + 3 * Math.sin(i % g.inChannels)), dtype);
  const weight = asDtype(randomValues(wShape.reduce((a, b) => a * b, 1), 2, 1 / Math.sqrt(g.inChannels * 27)), dtype);
  const bias = randomValues(g.outChannels, 3, 0.1);
  const residual = asDtype(randomValues(rows * g.outChannels, 4), dtype);
  const gamma = randomValues(g.inChannels, 5, 0.3).map((v) => 1 + v);
  const beta = randomValues(g.inChannels, 6, 0.3);
  const conv = await createVaeConv(device, { dtype, tile: c.tile, planarF32: c.planar });
  const out = poisonedBuffer(device, rows * g.outChannels, c.planar ? 'f32' : dtype);
  let affine: GPUBuffer | undefined;
  if (c.norm) {
    const gn = await createVaeGroupNorm(device, dtype);
    const shape = { positions: g.inFrames * g.inHeight * g.inWidth, channels: g.inChannels, groups: c.norm.groups, eps: 1e-6 };
    affine = poisonedBuffer(device, 2 * g.inChannels);
    await gn.run(shape, {
      x: uploadBuffer(device, x, dtype), gamma: uploadBuffer(device, gamma), beta: uploadBuffer(device, beta), affine,
      partials: poisonedBuffer(device, groupNormPartialBytes(shape) / 4), stats: poisonedBuffer(device, 2 * c.norm.groups),
    });
  }
  await conv.run(g, {
    x: uploadBuffer(device, x, dtype), weight: uploadBuffer(device, convWeightToKN(weight, wShape), dtype), bias: uploadBuffer(device, bias),
    norm: affine ? { affine, silu: c.norm!.silu } : undefined, residual: c.residual ? uploadBuffer(device, residual, dtype) : undefined, out,
  }, c.budget);
  const want = causalConv3d({ x, g, weight, bias, residual: c.residual ? residual : undefined, norm: c.norm ? { ...c.norm, gamma, beta, eps: 1e-6 } : undefined });
  let got = await readBuffer(device, out, rows * g.outChannels, c.planar ? 'f32' : dtype);
  if (c.planar) {
    const cl = new Float32Array(got.length);
    for (let m = 0; m < rows; m++) for (let n = 0; n < g.outChannels; n++) cl[m * g.outChannels + n] = got[n * rows + m];
    got = cl;
  }
  return tensorError(got, want);
}

const base = { inFrames: 3, inHeight: 5, inWidth: 6, inChannels: 8, outChannels: 16, kernelTime: 3, kernelSpace: 3 } as const;
const cases: [string, Case][] = [
  ['3×3×3, replicate padding, bias', { g: base, tile: 'medium' }],
  ['GroupNorm + SiLU on load, residual, dispatches split by a small FLOP budget', { g: { ...base, inChannels: 16 }, tile: 'medium', norm: { groups: 4, silu: true }, residual: true, budget: 1 }],
  ['upsampled ×2 in time and space (the decoder\'s upsamplers), large tile, 4 input channels (K not a multiple of the step)', { g: { ...base, inChannels: 4, upTime: 2, upSpace: 2 }, tile: 'large' }],
  ['stride 2 in time and space (the encoder\'s downsamplers), GroupNorm without SiLU', { g: { ...base, strideTime: 2, strideSpace: 2 }, tile: 'medium', norm: { groups: 2, silu: false } }],
  ['planar f32 output with 3 channels (the decoder\'s conv_out), thin tile', { g: { ...base, outChannels: 3 }, tile: 'thin', planar: true, norm: { groups: 4, silu: true } }],
  ['kernel 1×1×1 (shortcuts and the quant convs), narrow tile', { g: { ...base, kernelTime: 1, kernelSpace: 1 }, tile: 'narrow' }],
  ['the barrier-free direct tile (software GPUs): upsampled, GroupNorm + SiLU, residual, split', { g: { ...base, upTime: 2, upSpace: 2 }, tile: 'direct', norm: { groups: 4, silu: true }, residual: true, budget: 1 }],
  ['the direct tile, stride 2, planar f32 output', { g: { ...base, outChannels: 3, strideTime: 2, strideSpace: 2 }, tile: 'direct', planar: true }],
];

describe('VAE causal conv kernel against its CPU twin', () => {
  for (const [label, c] of cases) {
    it(`f32, ${label}: within 1e-5 of the float64 reference`, async () => {
      const e = await runCase(c, 'f32');
      console.log(`vaeConv f32 ${label}: ${formatError(e)}`);
      expect(e.rel).toBeLessThan(1e-5);
    });
  }

  it.skipIf(f16Missing !== null)(`f16 storage, f32 accumulation: within f16 rounding${f16Missing ? ` — skipped: ${f16Missing}` : ''}`, async () => {
    for (const [label, c] of cases) {
      const e = await runCase(c, 'f16');
      console.log(`vaeConv f16 ${label}: ${formatError(e)}`);
      expect(e.rel).toBeLessThan(3e-3);
    }
  });

  it('splits by the FLOP budget and by the binding limit; every output row is in exactly one dispatch', () => {
    const g: ConvGeometry = { inFrames: 9, inHeight: 320, inWidth: 304, inChannels: 256, outChannels: 256, kernelTime: 3, kernelSpace: 3, upTime: 2, upSpace: 2 };
    const limits = { maxStorageBufferBindingSize: 2 ** 31 - 4, maxComputeWorkgroupsPerDimension: 65535 };
    const ranges = convDispatchRanges(g, 'large', 'f16', limits);
    const o = convOutputShape(g);
    expect(o).toEqual({ frames: 17, height: 640, width: 608 });
    expect(ranges[0][0]).toBe(0);
    expect(ranges.at(-1)![1]).toBe(17 * 640 * 608);
    for (let i = 1; i < ranges.length; i++) expect(ranges[i][0]).toBe(ranges[i - 1][1]);
    // Each dispatch ≤ the default 7e10 issued FLOPs (the large tile's rate is 1): 2 · rows · K · N.
    for (const [s, e] of ranges) expect(2 * (e - s) * 27 * 256 * 256).toBeLessThanOrEqual(7e10);
    // A binding limit smaller than the output: more dispatches, each binding under it.
    const small = convDispatchRanges(g, 'large', 'f16', { ...limits, maxStorageBufferBindingSize: 64 * 2 ** 20 });
    expect(small.length).toBeGreaterThan(ranges.length);
    for (const [s, e] of small) expect((e - s) * 256 * 2).toBeLessThanOrEqual(64 * 2 ** 20);
  });

  it('refuses buffers too small for the shapes, saying what is needed', async () => {
    const { device } = ctx;
    const conv = await createVaeConv(device, { dtype: 'f32', tile: 'medium' });
    const tiny = poisonedBuffer(device, 4);
    expect(() => conv.dispatches(base, { x: tiny, weight: tiny, out: tiny })).toThrow(VaeKernelShapeError);
  });
});

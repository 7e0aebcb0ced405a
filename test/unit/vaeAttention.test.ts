// The VAE's GroupNorm-statistics kernel (src/kernels/vaeGroupNorm.ts) and its frame-causal attention kernel
// (src/kernels/vaeAttention.ts) against their CPU twins (src/kernels/cpuReferenceVae.ts, float64: mean and variance
// per group; the full score matrix with diffusers' −∞ mask). Tiny shapes on SwiftShader; f16 where available.

import { describe, expect, it } from 'vitest';
import { frameCausalAttention, groupNormAffine } from '../../src/kernels/cpuReferenceVae.ts';
import { createVaeAttention, vaeAttentionDispatchRanges } from '../../src/kernels/vaeAttention.ts';
import { createVaeGroupNorm, groupNormDispatchRanges, groupNormPartialBytes } from '../../src/kernels/vaeGroupNorm.ts';
import { formatError, tensorError } from '../../src/pipeline/tensorError.ts';
import { asDtype, poisonedBuffer, randomValues, readBuffer, uploadBuffer, type KernelDtype } from '../helpers/kernelData.ts';
import { testGpu } from '../helpers/webgpu.ts';

const ctx = await testGpu();
const f16Missing = ctx.device.features.has('shader-f16') ? null : 'this device has no shader-f16 (SwiftShader has none)';

async function groupNormCase(positions: number, channels: number, groups: number, dtype: KernelDtype, maxDispatchBytes?: number) {
  const { device } = ctx;
  // A large offset per channel (10) against a spread of 1: the variance must come from centred values.
  const x = asDtype(randomValues(positions * channels, 21).map((v, i) => v + 10 + (i % channels)), dtype);
  const gamma = randomValues(channels, 22, 0.5).map((v) => 1 + v);
  const beta = randomValues(channels, 23, 0.5);
  const shape = { positions, channels, groups, eps: 1e-6 };
  const gn = await createVaeGroupNorm(device, dtype);
  const affine = poisonedBuffer(device, 2 * channels);
  await gn.run(shape, {
    x: uploadBuffer(device, x, dtype), gamma: uploadBuffer(device, gamma), beta: uploadBuffer(device, beta), affine,
    partials: poisonedBuffer(device, groupNormPartialBytes(shape) / 4), stats: poisonedBuffer(device, 2 * groups),
  }, maxDispatchBytes);
  const got = await readBuffer(device, affine, 2 * channels);
  const want = groupNormAffine(x, positions, channels, groups, gamma, beta, 1e-6);
  // The shift is β − mean·scale: compare it after subtracting what the offset contributes, scale by scale.
  return { scale: tensorError(got.filter((_, i) => i % 2 === 0), want.filter((_, i) => i % 2 === 0)), shift: tensorError(got.filter((_, i) => i % 2 === 1), want.filter((_, i) => i % 2 === 1)) };
}

async function attentionCase(tokens: number, dim: number, tokensPerFrame: number, dtype: KernelDtype, maxDispatchFlops?: number) {
  const { device } = ctx;
  const qkv = asDtype(randomValues(tokens * 3 * dim, 31, 2), dtype);
  const attention = await createVaeAttention(device, dtype, dim);
  const out = poisonedBuffer(device, tokens * dim, dtype);
  await attention.run({ tokens, dim, tokensPerFrame }, { qkv: uploadBuffer(device, qkv, dtype), out }, maxDispatchFlops);
  return tensorError(await readBuffer(device, out, tokens * dim, dtype), frameCausalAttention(qkv, tokens, dim, tokensPerFrame));
}

describe('VAE GroupNorm statistics kernel', () => {
  it('f32, 8 channels in 4 groups (the tiny model), 2500 positions over several dispatches: within 1e-5', async () => {
    expect(groupNormDispatchRanges({ positions: 2500, channels: 8, groups: 4, eps: 1e-6 }, 'f32', 2 ** 30, 8 * 4 * 1024).length).toBe(3);
    const e = await groupNormCase(2500, 8, 4, 'f32', 8 * 4 * 1024);
    console.log(`vaeGroupNorm f32 8/4: scale ${formatError(e.scale)}, shift ${formatError(e.shift)}`);
    expect(e.scale.rel).toBeLessThan(1e-5);
    expect(e.shift.rel).toBeLessThan(1e-5);
  });

  it('f32, 512 channels in 32 groups (the real width: two channel blocks per position): within 1e-5', async () => {
    const e = await groupNormCase(300, 512, 32, 'f32');
    console.log(`vaeGroupNorm f32 512/32: scale ${formatError(e.scale)}, shift ${formatError(e.shift)}`);
    expect(e.scale.rel).toBeLessThan(1e-5);
    expect(e.shift.rel).toBeLessThan(1e-5);
  });
});

describe('VAE frame-causal attention kernel', () => {
  it('f32, width 16, 3 frames of 30 tokens (not a multiple of the 32-token blocks), split over dispatches: within 1e-5', async () => {
    const shape = { tokens: 90, dim: 16, tokensPerFrame: 30 };
    expect(vaeAttentionDispatchRanges(shape, 1).length).toBe(3);
    const e = await attentionCase(90, 16, 30, 'f32', 1);
    console.log(`vaeAttention f32 90×16, 30 per frame: ${formatError(e)}`);
    expect(e.rel).toBeLessThan(1e-5);
  });

  it('f32, width 80 (3 columns per lane, the last partial), one frame (no mask, the encoder): within 1e-5', async () => {
    const e = await attentionCase(40, 80, 40, 'f32');
    console.log(`vaeAttention f32 40×80, one frame: ${formatError(e)}`);
    expect(e.rel).toBeLessThan(1e-5);
  });

  it.skipIf(f16Missing !== null)(`f16 storage: within f16 rounding${f16Missing ? ` — skipped: ${f16Missing}` : ''}`, async () => {
    const e = await attentionCase(90, 16, 30, 'f16');
    expect(e.rel).toBeLessThan(3e-3);
    const g = await groupNormCase(300, 512, 32, 'f16');
    expect(g.scale.rel).toBeLessThan(1e-3);
  });
});

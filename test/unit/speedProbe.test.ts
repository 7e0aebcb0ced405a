// The first-use speed probe (src/runtime/speedProbe.ts) on the test device (SwiftShader unless
// FRAMEPACK_GPU=hardware): it times our 4-bit GEMM on the path a job takes here, stops at the first size that takes
// ≥ 20 ms (on SwiftShader the smallest), reports TFLOP/s consistent with its own timing, and runs once per device.

import { describe, expect, it } from 'vitest';
import { deviceSpeedProbe, PROBE_SIZES, PROBE_TARGET_MS } from '../../src/runtime/speedProbe.ts';
import { chooseQ4MatmulPath } from '../../src/kernels/q4Matmul.ts';
import { testGpu } from '../helpers/webgpu.ts';

const ctx = await testGpu();

describe('the GEMM speed probe', () => {
  it('measures the path a job takes, stopping at the first size that takes ≥ 20 ms', async () => {
    const dtype = ctx.capabilities.shaderF16 ? 'f16' : 'f32';
    const r = await deviceSpeedProbe(ctx.device, dtype);
    expect(r.kernel).toBe(chooseQ4MatmulPath(ctx.device, { k: r.k, dtype }));
    expect(r.dtype).toBe(dtype);
    expect(r.tflops).toBeCloseTo((2 * r.m * r.k * r.n) / (r.ms * 1e-3) / 1e12, 9);
    const index = PROBE_SIZES.findIndex(([m, k, n]) => m === r.m && k === r.k && n === r.n);
    expect(index).toBe(r.sizesTried - 1);
    if (index < PROBE_SIZES.length - 1) expect(r.ms * r.repeats).toBeGreaterThanOrEqual(PROBE_TARGET_MS);
    if (ctx.capabilities.isSoftware) expect(r.sizesTried).toBe(1);
    console.info(`speed probe: ${JSON.stringify(r)}`);
    // Memoized per device and dtype: the worker's later calls get the same result without running it again.
    expect(await deviceSpeedProbe(ctx.device, dtype)).toBe(r);
  }, 120_000);
});

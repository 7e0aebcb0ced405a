// The browser side of the test WebGPU device: the real page, served from localhost, sees a SwiftShader adapter,
// and a compute pass in the page gives the CPU's answer.
import { expect, test } from '@playwright/test';

test('the page reports the SwiftShader WebGPU adapter', async ({ page }) => {
  await page.goto('/');
  // The report waits for the first-use GEMM speed probe, seconds on SwiftShader (its kernel compiles).
  await expect(page.getByTestId('capabilities')).toContainText('Largest single GPU buffer binding', { timeout: 60_000 });
  await expect(page.getByTestId('adapter')).toHaveText('swiftshader');
});

test('a WGSL compute pass in the page equals the CPU', async ({ page }) => {
  await page.goto('/');
  const got = await page.evaluate(async () => {
    const adapter = await navigator.gpu.requestAdapter();
    const device = await adapter!.requestDevice();
    const n = 256;
    const x = Float32Array.from({ length: n }, (_, i) => i * 0.25);
    const buf = device.createBuffer({ size: x.byteLength, usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST | GPUBufferUsage.COPY_SRC });
    device.queue.writeBuffer(buf, 0, x);
    const module = device.createShaderModule({ code: `@group(0) @binding(0) var<storage, read_write> x: array<f32>;
      @compute @workgroup_size(64) fn main(@builtin(global_invocation_id) id: vec3u) { x[id.x] = x[id.x] * x[id.x] - 1.0; }` });
    const pipeline = device.createComputePipeline({ layout: 'auto', compute: { module, entryPoint: 'main' } });
    const read = device.createBuffer({ size: x.byteLength, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
    const enc = device.createCommandEncoder();
    const pass = enc.beginComputePass();
    pass.setPipeline(pipeline);
    pass.setBindGroup(0, device.createBindGroup({ layout: pipeline.getBindGroupLayout(0), entries: [{ binding: 0, resource: { buffer: buf } }] }));
    pass.dispatchWorkgroups(n / 64);
    pass.end();
    enc.copyBufferToBuffer(buf, 0, read, 0, x.byteLength);
    device.queue.submit([enc.finish()]);
    await read.mapAsync(GPUMapMode.READ);
    return Array.from(new Float32Array(read.getMappedRange()));
  });
  // i*0.25 squared is exact in float32 for these i, so the answer is exact whether or not the GPU fuses.
  expect(got).toEqual(Array.from({ length: 256 }, (_, i) => (i * 0.25) ** 2 - 1));
});

import { describe, expect, it } from 'vitest';
import { testGpu } from '../helpers/webgpu.ts';
import { explainCapabilities } from '../../src/runtime/device.ts';

describe('WebGPU device for tests (Node, SwiftShader)', () => {
  it('offers an adapter with the limits the notes describe', async () => {
    const { capabilities } = await testGpu();
    expect(capabilities.maxStorageBufferBindingSize).toBeGreaterThanOrEqual(128 * 2 ** 20);
    expect(explainCapabilities(capabilities).join(' ')).toMatch(/binding/);
  });

  it('computes on the device: a WGSL saxpy equals the CPU', async () => {
    const { device } = await testGpu();
    const n = 1000;
    const x = Float32Array.from({ length: n }, (_, i) => Math.sin(i));
    const y = Float32Array.from({ length: n }, (_, i) => i / 7);
    const module = device.createShaderModule({
      code: `@group(0) @binding(0) var<storage, read> x: array<f32>;
             @group(0) @binding(1) var<storage, read_write> y: array<f32>;
             @compute @workgroup_size(64) fn main(@builtin(global_invocation_id) id: vec3u) {
               if (id.x < arrayLength(&x)) { y[id.x] = 2.5 * x[id.x] + y[id.x]; }
             }`,
    });
    const buf = (data: Float32Array, usage: number) => {
      const b = device.createBuffer({ size: data.byteLength, usage });
      device.queue.writeBuffer(b, 0, data);
      return b;
    };
    const xb = buf(x, GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST);
    const yb = buf(y, GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST | GPUBufferUsage.COPY_SRC);
    const read = device.createBuffer({ size: y.byteLength, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
    const pipeline = device.createComputePipeline({ layout: 'auto', compute: { module, entryPoint: 'main' } });
    const bind = device.createBindGroup({ layout: pipeline.getBindGroupLayout(0), entries: [{ binding: 0, resource: { buffer: xb } }, { binding: 1, resource: { buffer: yb } }] });
    const enc = device.createCommandEncoder();
    const pass = enc.beginComputePass();
    pass.setPipeline(pipeline);
    pass.setBindGroup(0, bind);
    pass.dispatchWorkgroups(Math.ceil(n / 64));
    pass.end();
    enc.copyBufferToBuffer(yb, 0, read, 0, y.byteLength);
    device.queue.submit([enc.finish()]);
    await read.mapAsync(GPUMapMode.READ);
    const got = new Float32Array(read.getMappedRange().slice(0));
    // A GPU may fuse the multiply-add (one rounding instead of two): allow that one rounding step.
    for (let i = 0; i < n; i++) expect(Math.abs(got[i] - (2.5 * x[i] + y[i]))).toBeLessThanOrEqual(2 ** -23 * Math.max(1, Math.abs(got[i])));
  });
});

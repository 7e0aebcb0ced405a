// One WebGPU device per test file, on SwiftShader unless FRAMEPACK_GPU=hardware. A test that needs WebGPU
// fails loudly when there is none: a silent skip would hide a broken CI machine.

import { nodeGpu } from '../../src/runtime/nodeWebgpu.ts';
import { requestGpu, type GpuContext } from '../../src/runtime/device.ts';

let context: Promise<GpuContext> | null = null;

export function testGpu(): Promise<GpuContext> {
  context ??= (async () => {
    const hardware = process.env.FRAMEPACK_GPU === 'hardware';
    const gpu = nodeGpu({ software: !hardware, dawnFlags: hardware ? ['enable-dawn-features=allow_unsafe_apis,vulkan_enable_f16_on_nvidia'] : [] });
    try {
      return await requestGpu(gpu);
    } catch (e) {
      throw new Error(`No WebGPU device for the tests: ${(e as Error).message}. Install Debian's chromium (SwiftShader) — .ci/run does.`);
    }
  })();
  return context;
}

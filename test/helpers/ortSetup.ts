// ORT for tests: one setup per test file, sharing the test WebGPU device (SwiftShader in CI) so the wasm and the
// WebGPU execution providers are both available whatever order the tests run in.
import { setupOrt } from '../../src/runtime/ort.ts';
import { nodeGpu } from '../../src/runtime/nodeWebgpu.ts';
import { testGpu } from './webgpu.ts';

let ready: Promise<void> | null = null;

export function ortReady(): Promise<void> {
  ready ??= (async () => {
    const { device } = await testGpu();
    // ORT's WebGPU EP looks for navigator.gpu even when handed a device.
    const nav = ((globalThis as { navigator?: { gpu?: GPU } }).navigator ??= {});
    nav.gpu ??= nodeGpu();
    setupOrt({ device });
  })();
  return ready;
}

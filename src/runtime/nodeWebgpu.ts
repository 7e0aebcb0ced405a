// WebGPU for Node (CLI, benchmarks, tests) from the `webgpu` package (Dawn). Node-only: the browser build never
// imports this file. Without a GPU it uses SwiftShader's Vulkan driver shipped in Debian's chromium package.

import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';

const SWIFTSHADER_ICD = '/usr/lib/chromium/vk_swiftshader_icd.json';

export interface NodeGpuOptions {
  /** Use SwiftShader (CPU) instead of the machine's Vulkan driver. */
  software?: boolean;
  /** Dawn toggles, e.g. 'enable-dawn-features=allow_unsafe_apis,vulkan_enable_f16_on_nvidia'. */
  dawnFlags?: string[];
}

let installed: GPU | null = null;

/**
 * Returns a GPU object for Node and installs WebGPU's globals (GPUBufferUsage, …) once.
 * Throws with a fix-it message when software rendering is asked for but Debian's chromium is not installed.
 */
export function nodeGpu(options: NodeGpuOptions = {}): GPU {
  if (installed) return installed;
  if (options.software) {
    if (!existsSync(SWIFTSHADER_ICD)) {
      throw new Error(`SwiftShader's Vulkan driver was not found at ${SWIFTSHADER_ICD}. Install Debian's chromium package (apt-get install chromium).`);
    }
    process.env.VK_ICD_FILENAMES = SWIFTSHADER_ICD;
  }
  const require = createRequire(import.meta.url);
  const { create, globals } = require('webgpu') as { create: (flags: string[]) => GPU; globals: Record<string, unknown> };
  Object.assign(globalThis, globals);
  installed = create(options.dawnFlags ?? []);
  patchSharedArrayBufferWrites();
  return installed;
}

/**
 * Dawn for Node refuses writeBuffer from a view on a SharedArrayBuffer (onnxruntime's wasm heap is shared):
 * copy such views into a plain ArrayBuffer first. The browser accepts them, so this is Node-only.
 */
function patchSharedArrayBufferWrites(): void {
  const proto = (globalThis as unknown as { GPUQueue?: { prototype: GPUQueue } }).GPUQueue?.prototype;
  if (!proto || (proto as unknown as { __sabPatched?: boolean }).__sabPatched) return;
  const original = proto.writeBuffer;
  proto.writeBuffer = function (this: GPUQueue, buffer: GPUBuffer, offset: number, data: BufferSource | SharedArrayBuffer, dataOffset?: number, size?: number) {
    const isShared = (b: unknown) => typeof SharedArrayBuffer !== 'undefined' && b instanceof SharedArrayBuffer;
    if (isShared(data) || (ArrayBuffer.isView(data) && isShared(data.buffer))) {
      const view = ArrayBuffer.isView(data) ? new Uint8Array(data.buffer, data.byteOffset, data.byteLength) : new Uint8Array(data as SharedArrayBuffer);
      const elem = ArrayBuffer.isView(data) ? ((data as unknown as { BYTES_PER_ELEMENT?: number }).BYTES_PER_ELEMENT ?? 1) : 1;
      const start = (dataOffset ?? 0) * elem;
      const len = size !== undefined ? size * elem : view.byteLength - start;
      return original.call(this, buffer, offset, view.slice(start, start + len));
    }
    return original.call(this, buffer, offset, data as BufferSource, dataOffset, size);
  } as GPUQueue['writeBuffer'];
  (proto as unknown as { __sabPatched?: boolean }).__sabPatched = true;
}

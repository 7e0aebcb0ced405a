// The Node side of choosing a runtime: WebGPU from the `webgpu` package (a real GPU when a Vulkan driver is
// configured, else SwiftShader), ORT set up on that device, and the engine's RuntimeChoice from what was found.

import { existsSync } from 'node:fs';
import { nodeGpu } from '../runtime/nodeWebgpu.ts';
import { requestGpu, type GpuContext } from '../runtime/device.ts';
import { setupOrt, type ExecutionProvider } from '../runtime/ort.ts';
import type { RuntimeChoice } from '../worker/engine.ts';
import { defaultTransformerBudget } from '../runtime/gpuOutOfMemory.ts';

export type GpuKind = 'auto' | 'hardware' | 'software';

/**
 * Dawn toggles for an NVIDIA GPU under Vulkan that stand for a browser: the portable path gets no unsafe APIs (stock
 * Chrome's, so no subgroup matrices) and f16 only through vulkan_enable_f16_on_nvidia (Chrome's
 * --enable-dawn-features flag); the tensor-core path adds allow_unsafe_apis (--enable-unsafe-webgpu).
 */
export function hardwareDawnFlags(path: 'auto' | 'portable' | 'subgroup-matrix', noF16: boolean): string[] {
  const enable = [...(path === 'portable' ? [] : ['allow_unsafe_apis']), ...(noF16 ? [] : ['vulkan_enable_f16_on_nvidia'])];
  return [...(enable.length ? [`enable-dawn-features=${enable.join(',')}`] : []), ...(noF16 ? ['disable-dawn-features=vulkan_enable_f16_on_nvidia'] : [])];
}

const NVIDIA_ICD = '/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json';

/** Opens WebGPU (unless the wasm EP is asked for) and configures ORT; returns the runtime for the engine. */
export async function nodeRuntime(options: {
  provider: ExecutionProvider;
  gpu: GpuKind;
  dtype?: 'float32' | 'float16';
  quantized?: boolean;
  /** Transformer weights kept on the GPU; absent: from the device's memory (runtime/gpuOutOfMemory.ts). */
  budgetBytes?: number;
  /** 'portable' opens the GPU as stock Chrome does (no unsafe APIs, so no subgroup matrices); 'auto' the best path. */
  kernelPath?: 'auto' | 'portable' | 'subgroup-matrix';
  /** Leaves shader-f16 off on NVIDIA + Vulkan (as Chrome without its flag): the fp32 path. */
  noF16?: boolean;
  /** Called once the WebGPU globals exist, before the device is made (benchmarks install their memory counter here). */
  beforeDevice?: () => void;
}): Promise<{ runtime: RuntimeChoice; gpu: GpuContext | null }> {
  let ctx: GpuContext | null = null;
  if (options.provider === 'webgpu') {
    const hardware = options.gpu === 'hardware' || (options.gpu === 'auto' && (!!process.env.VK_DRIVER_FILES || existsSync(NVIDIA_ICD)));
    const gpu = nodeGpu({ software: !hardware, dawnFlags: hardware ? hardwareDawnFlags(options.kernelPath ?? 'auto', options.noF16 ?? false) : [] });
    options.beforeDevice?.();
    ctx = await requestGpu(gpu);
    (globalThis as { navigator?: { gpu?: GPU } }).navigator ??= {};
    (globalThis as unknown as { navigator: { gpu?: GPU } }).navigator.gpu ??= gpu;
    setupOrt({ device: ctx.device });
  } else {
    setupOrt({});
  }
  const f16 = ctx?.capabilities.shaderF16 ?? false;
  const budgetBytes = options.budgetBytes ?? (ctx ? (await defaultTransformerBudget(ctx.device, ctx.capabilities.isSoftware)).budgetBytes : Infinity);
  return {
    gpu: ctx,
    runtime: {
      provider: options.provider,
      dtype: options.dtype ?? (f16 ? 'float16' : 'float32'),
      quantized: options.quantized ?? false,
      transformerBudgetBytes: budgetBytes,
      kernelPath: options.kernelPath ?? 'auto',
      device: ctx?.device ?? null,
      maxStorageBufferBindingSize: ctx?.capabilities.maxStorageBufferBindingSize ?? 2 ** 30,
      deviceLost: ctx?.lost,
    },
  };
}

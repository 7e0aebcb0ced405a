// Pipelines are built once per device and kernel variant, then reused for every dispatch: compiling a WGSL module
// costs milliseconds on a GPU driver and tens of seconds on SwiftShader, so a step must never rebuild one. The cache
// is keyed by the device (a WeakMap, so a lost or dropped device takes its pipelines with it) and by a string that
// names every placeholder value baked into the source. Compilation errors come back as one readable exception.

import { KernelCompileError } from '../errors/kernels.ts';

const pipelines = new WeakMap<GPUDevice, Map<string, Promise<GPUComputePipeline>>>();

/** Returns the pipeline for `key` on `device`, building it with `build` the first time. A failed build is not cached. */
export function cachedPipeline(device: GPUDevice, key: string, build: () => Promise<GPUComputePipeline>): Promise<GPUComputePipeline> {
  let perDevice = pipelines.get(device);
  if (!perDevice) {
    perDevice = new Map();
    pipelines.set(device, perDevice);
  }
  const hit = perDevice.get(key);
  if (hit) return hit;
  const built = build();
  perDevice.set(key, built);
  built.catch(() => perDevice.delete(key));
  return built;
}

/**
 * Compiles one WGSL compute entry point into a pipeline with an automatic layout.
 * Throws KernelCompileError with the compiler's messages (line:column) when the source or the pipeline is rejected.
 */
export async function buildComputePipeline(device: GPUDevice, label: string, code: string, entryPoint = 'main'): Promise<GPUComputePipeline> {
  const module = device.createShaderModule({ label, code });
  const info = await module.getCompilationInfo();
  const errors = info.messages.filter((m) => m.type === 'error');
  if (errors.length > 0) throw new KernelCompileError(label, errors.map((m) => `${m.lineNum}:${m.linePos} ${m.message}`));
  try {
    return await device.createComputePipelineAsync({ label, layout: 'auto', compute: { module, entryPoint } });
  } catch (e) {
    throw new KernelCompileError(label, [(e as Error).message]);
  }
}

/** One subgroup-matrix configuration as Dawn lists it on the adapter's info. */
export interface SubgroupMatrixConfig {
  componentType: string;
  resultComponentType: string;
  M: number;
  N: number;
  K: number;
}

/** The adapter info fields the tensor-core kernels check (Dawn's; absent from @webgpu/types). */
export interface AdapterInfoWithSubgroups {
  subgroupMinSize?: number;
  subgroupMaxSize?: number;
  subgroupMatrixConfigs?: readonly SubgroupMatrixConfig[];
}

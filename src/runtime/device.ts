// The one place that asks for a GPU: it probes the adapter once, requests a device with the features and limits
// this app can use, and describes what it found in words a person understands. The browser passes
// navigator.gpu; Node passes the `webgpu` package's GPU object (see nodeWebgpu.ts).

import { DeviceLostError, NoAdapterError, NoWebGPUError } from '../errors/gpu.ts';

export interface GpuCapabilities {
  vendor: string;
  architecture: string;
  description: string;
  shaderF16: boolean;
  subgroups: boolean;
  subgroupMatrix: boolean;
  timestampQuery: boolean;
  maxBufferSize: number;
  maxStorageBufferBindingSize: number;
  maxComputeWorkgroupStorageSize: number;
  /** Software rasteriser (SwiftShader): correct but orders of magnitude slower than a GPU. */
  isSoftware: boolean;
}

export interface GpuContext {
  adapter: GPUAdapter;
  device: GPUDevice;
  capabilities: GpuCapabilities;
  /** Settles when the device is lost; rejects never. */
  lost: Promise<DeviceLostError>;
}

const WANTED_FEATURES = ['shader-f16', 'subgroups', 'timestamp-query', 'chromium-experimental-subgroup-matrix'];

export function describeAdapter(adapter: GPUAdapter): GpuCapabilities {
  const info = adapter.info ?? ({} as GPUAdapterInfo);
  const has = (f: string) => adapter.features.has(f as GPUFeatureName);
  const arch = info.architecture ?? '';
  return {
    vendor: info.vendor ?? '',
    architecture: arch,
    description: info.description ?? '',
    shaderF16: has('shader-f16'),
    subgroups: has('subgroups'),
    subgroupMatrix: has('chromium-experimental-subgroup-matrix'),
    timestampQuery: has('timestamp-query'),
    maxBufferSize: adapter.limits.maxBufferSize,
    maxStorageBufferBindingSize: adapter.limits.maxStorageBufferBindingSize,
    maxComputeWorkgroupStorageSize: adapter.limits.maxComputeWorkgroupStorageSize,
    isSoftware: arch === 'swiftshader' || /swiftshader|llvmpipe|lavapipe/i.test(info.description ?? ''),
  };
}

/**
 * Requests a device with every wanted feature the adapter has and its largest buffer limits.
 * Throws NoWebGPUError when `gpu` is undefined and NoAdapterError when no adapter is offered.
 */
export async function requestGpu(gpu: GPU | undefined, options: { powerPreference?: GPUPowerPreference } = {}): Promise<GpuContext> {
  if (!gpu) throw new NoWebGPUError();
  const adapter = await gpu.requestAdapter({ powerPreference: options.powerPreference ?? 'high-performance' });
  if (!adapter) throw new NoAdapterError();
  const requiredFeatures = WANTED_FEATURES.filter((f) => adapter.features.has(f as GPUFeatureName)) as GPUFeatureName[];
  const l = adapter.limits;
  const device = await adapter.requestDevice({
    requiredFeatures,
    requiredLimits: {
      maxBufferSize: l.maxBufferSize,
      maxStorageBufferBindingSize: l.maxStorageBufferBindingSize,
      maxComputeWorkgroupStorageSize: l.maxComputeWorkgroupStorageSize,
      maxComputeInvocationsPerWorkgroup: l.maxComputeInvocationsPerWorkgroup,
      maxComputeWorkgroupSizeX: l.maxComputeWorkgroupSizeX,
      maxStorageBuffersPerShaderStage: l.maxStorageBuffersPerShaderStage,
    },
  });
  const lost = device.lost.then((i) => new DeviceLostError(i.reason, i.message));
  return { adapter, device, capabilities: describeAdapter(adapter), lost };
}

/** The adapter as benchmark reports name the GPU a figure came from: vendor, architecture, description. */
export function gpuName(c: GpuCapabilities): string {
  return `${c.vendor} ${c.architecture} ${c.description}`.trim();
}

/** Plain-words summary for the capability panel and the CLI banner. */
export function explainCapabilities(c: GpuCapabilities): string[] {
  const gib = (n: number) => `${(n / 2 ** 30).toFixed(n >= 2 ** 30 ? 0 : 2)} GiB`;
  const lines = [
    `GPU: ${[c.vendor, c.architecture, c.description].filter(Boolean).join(' ') || 'unnamed adapter'}.`,
    c.shaderF16
      ? 'Half precision (shader-f16) is available: activations run in fp16.'
      : 'No half precision (shader-f16): activations run in fp32, using about twice the GPU memory and time.',
    `Largest single GPU buffer binding: ${gib(c.maxStorageBufferBindingSize)}; large tensors are tiled to fit.`,
  ];
  if (c.isSoftware) lines.push('This is a software GPU (SwiftShader): only the tiny demo model is practical here.');
  if (c.subgroupMatrix) lines.push('Tensor-core matrix instructions (subgroup matrix) are available for the fast kernels.');
  return lines;
}

/** The first `bytes` of a GPU buffer (which needs COPY_SRC), copied to the CPU once the queue's work before it is done. */
export async function readGpuBuffer(device: GPUDevice, buffer: GPUBuffer, bytes: number): Promise<ArrayBuffer> {
  const readback = device.createBuffer({ label: 'readback', size: Math.ceil(bytes / 4) * 4, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
  const encoder = device.createCommandEncoder({ label: 'readback' });
  encoder.copyBufferToBuffer(buffer, 0, readback, 0, readback.size);
  device.queue.submit([encoder.finish()]);
  await readback.mapAsync(GPUMapMode.READ);
  const raw = readback.getMappedRange().slice(0, bytes);
  readback.unmap();
  readback.destroy();
  return raw;
}

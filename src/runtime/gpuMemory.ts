// WebGPU has no memory query, so GPU memory is counted: every buffer created on any device (ours and the ones
// onnxruntime's WebGPU EP creates through the same JS API) adds its size, destroy() subtracts it. Installed once,
// before the device is used; the peak is what the benchmarks report next to nvidia-smi's own figure.

export interface GpuMemoryTracker {
  live(): number;
  peak(): number;
  resetPeak(): void;
  /** Bytes of every buffer ever asked for (failed allocations included): the out-of-memory guard reports its growth. */
  requested(): number;
}

let tracker: GpuMemoryTracker | null = null;

/** Starts counting (idempotent). Needs the WebGPU globals (GPUDevice, GPUBuffer) to be installed. */
export function trackGpuMemory(): GpuMemoryTracker {
  if (tracker) return tracker;
  let live = 0;
  let peak = 0;
  let requested = 0;
  const sizes = new WeakMap<GPUBuffer, number>();
  const g = globalThis as unknown as { GPUDevice: { prototype: GPUDevice }; GPUBuffer: { prototype: GPUBuffer } };
  const create = g.GPUDevice.prototype.createBuffer;
  g.GPUDevice.prototype.createBuffer = function (this: GPUDevice, descriptor: GPUBufferDescriptor) {
    requested += descriptor.size;
    const buffer = create.call(this, descriptor);
    sizes.set(buffer, descriptor.size);
    live += descriptor.size;
    peak = Math.max(peak, live);
    return buffer;
  };
  const destroy = g.GPUBuffer.prototype.destroy;
  g.GPUBuffer.prototype.destroy = function (this: GPUBuffer) {
    const size = sizes.get(this);
    if (size !== undefined) {
      live -= size;
      sizes.delete(this);
    }
    return destroy.call(this);
  };
  tracker = { live: () => live, peak: () => peak, resetPeak: () => void (peak = live), requested: () => requested };
  return tracker;
}

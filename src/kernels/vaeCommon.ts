// What the VAE kernels (vaeConv.ts, vaeGroupNorm.ts, vaeAttention.ts) share: a kernel call becomes a list of
// dispatches (so a caller can count them, time each one, or record them into its own pass), each bounded in work so
// that no single dispatch keeps a GPU busy for long (Windows resets a GPU that is busy for 2 s); sub-range storage
// bindings of large activations (a 640×608 decode holds tensors past the 2 GiB binding limit, which WebGPU allows
// in one buffer up to maxBufferSize as long as each binding stays under the limit); and uniform buffers cached by
// their contents, since the same tile sizes repeat every section.
//
// Dispatch-splitting rule: a dispatch is given at most rate × `maxDispatchFlops` of issued arithmetic (multiply-adds
// × 2 over the whole tiles its workgroups compute, padding included; `rate` is the kernel's expected speed relative
// to the large conv tile: 1 for it, 1/2 medium, 1/4 narrow, direct and attention, 1/8 thin) and at most
// `maxDispatchBytes` of streamed memory for the memory-bound passes. At 2e11 FLOPs the longest dispatch of a decode
// took 56.8 ms on an H200 (a whole-tile 3×3×3 512→512 conv, fp16), so the default is 7e10: about 20 ms there.

import { VaeKernelShapeError } from '../errors/kernels.ts';

/** Issued FLOPs one dispatch may carry (see the header). */
export const DEFAULT_DISPATCH_FLOPS = 7e10;
/** Bytes a memory-bound dispatch may stream. */
export const DEFAULT_DISPATCH_BYTES = 2 ** 31;

/** One recorded unit of work: what a pass needs to run it, plus what it costs. */
export interface VaeDispatch {
  /** The kernel's name (conv, groupNorm, attention) and what it does, for timings and counts. */
  label: string;
  kind: 'conv' | 'groupNorm' | 'attention';
  pipeline: GPUComputePipeline;
  bindGroup: GPUBindGroup;
  x: number;
  y: number;
  /** Useful FLOPs of this dispatch (the arithmetic the layer needs, no padding): what TFLOP/s figures are of. */
  flops: number;
  /** Bytes read or written (memory-bound passes). */
  bytes: number;
}

/** Records dispatches into a command encoder (one compute pass for all) or into a pass the caller has begun. */
export function recordVaeDispatches(target: GPUCommandEncoder | GPUComputePassEncoder, dispatches: readonly VaeDispatch[]): void {
  if (dispatches.length === 0) return;
  const own = typeof (target as GPUComputePassEncoder).dispatchWorkgroups !== 'function';
  const pass = own ? (target as GPUCommandEncoder).beginComputePass({ label: dispatches[0].label }) : (target as GPUComputePassEncoder);
  for (const d of dispatches) {
    pass.setPipeline(d.pipeline);
    pass.setBindGroup(0, d.bindGroup);
    pass.dispatchWorkgroups(d.x, d.y);
  }
  if (own) pass.end();
}

/** A binding of elements [start, end) of `elementBytes` each, and the element offset of `start` inside it. */
export interface RangeBinding {
  binding: GPUBufferBinding;
  /** Elements between the binding's first byte and element `start` (the offset is rounded down to the alignment). */
  base: number;
}

/**
 * Binds elements [start, end) of a buffer: the offset rounded down to minStorageBufferOffsetAlignment, the size to
 * a multiple of 4. Throws VaeKernelShapeError when the buffer is too small or the binding passes the device's
 * maxStorageBufferBindingSize (then the caller splits its dispatch further).
 */
export function rangeBinding(device: GPUDevice, buffer: GPUBuffer, start: number, end: number, elementBytes: number, what: string): RangeBinding {
  const align = device.limits.minStorageBufferOffsetAlignment;
  const first = start * elementBytes;
  const offset = Math.floor(first / align) * align;
  const size = Math.max(4, Math.ceil((end * elementBytes - offset) / 4) * 4);
  if (offset + size > buffer.size) throw new VaeKernelShapeError(`${what}: elements ${start}…${end} need ${offset + size} bytes; the buffer holds ${buffer.size}.`);
  if (size > device.limits.maxStorageBufferBindingSize) {
    throw new VaeKernelShapeError(`${what}: a ${size}-byte binding; this device allows ${device.limits.maxStorageBufferBindingSize}. Split the work over more dispatches.`);
  }
  return { binding: { buffer, offset, size }, base: (first - offset) / elementBytes };
}

/** The whole of a small buffer (weights, statistics) as a binding, checked against the bytes the shapes need. */
export function wholeBinding(device: GPUDevice, buffer: GPUBuffer, bytes: number, what: string): GPUBufferBinding {
  return rangeBinding(device, buffer, 0, Math.ceil(bytes / 4), 4, what).binding;
}

/** Uniform buffers by contents, kept per device: the same tile sizes come back every section. */
export class UniformCache {
  private readonly buffers = new Map<string, GPUBuffer>();
  constructor(private readonly device: GPUDevice, private readonly label: string) {}

  /** A uniform buffer holding `words` (u32, or f32 where `floats` marks the index). */
  get(words: readonly number[], floats: ReadonlySet<number> = new Set()): GPUBuffer {
    const key = words.map((w, i) => (floats.has(i) ? `f${w}` : w)).join('/');
    let buffer = this.buffers.get(key);
    if (!buffer) {
      if (this.buffers.size >= 4096) {
        // Many sizes seen (tiles of many videos): start over rather than grow without bound. Buffers of earlier
        // dispatches may still be in flight, so they are left to the garbage collector instead of destroyed.
        this.buffers.clear();
      }
      const size = Math.max(16, Math.ceil((words.length * 4) / 16) * 16);
      buffer = this.device.createBuffer({ label: `${this.label} params`, size, usage: GPUBufferUsage.UNIFORM, mappedAtCreation: true });
      const range = buffer.getMappedRange();
      const u = new Uint32Array(range);
      const f = new Float32Array(range);
      words.forEach((w, i) => {
        if (floats.has(i)) f[i] = w;
        else u[i] = w;
      });
      buffer.unmap();
      this.buffers.set(key, buffer);
    }
    return buffer;
  }
}

const uniformCaches = new WeakMap<GPUDevice, UniformCache>();

/** The device's shared uniform cache for the VAE kernels. */
export function vaeUniforms(device: GPUDevice): UniformCache {
  let cache = uniformCaches.get(device);
  if (!cache) uniformCaches.set(device, (cache = new UniformCache(device, 'vae')));
  return cache;
}

export type VaeDtype = 'f32' | 'f16';

export const dtypeBytes = (dtype: VaeDtype): number => (dtype === 'f16' ? 2 : 4);

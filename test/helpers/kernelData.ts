// What the kernel tests share: deterministic random inputs, and GPU buffers filled from / read back to f32 arrays in
// the kernel's dtype. Outputs start poisoned with NaN so an element a kernel forgets to write cannot pass.

import { f16ToF32, f32ToF16 } from '../../src/weights/dtypes.ts';
import { readGpuBuffer } from '../../src/runtime/device.ts';

export type KernelDtype = 'f32' | 'f16';

/** Deterministic uniform(−1, 1) × amplitude values (mulberry32). */
export function randomValues(count: number, seed: number, amplitude = 1): Float32Array {
  let a = seed >>> 0;
  const out = new Float32Array(count);
  for (let i = 0; i < count; i++) {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    out[i] = ((((t ^ (t >>> 14)) >>> 0) / 4294967296) * 2 - 1) * amplitude;
  }
  return out;
}

/** The values as the GPU will see them in `dtype` (f16 rounds). */
export function asDtype(values: Float32Array, dtype: KernelDtype): Float32Array {
  return dtype === 'f16' ? f16ToF32(f32ToF16(values)) : values;
}

/** A storage buffer holding `values` in `dtype`. */
export function uploadBuffer(device: GPUDevice, values: Float32Array, dtype: KernelDtype = 'f32'): GPUBuffer {
  const bytes = dtype === 'f16' ? f32ToF16(values) : values;
  const buffer = device.createBuffer({ size: Math.max(16, Math.ceil(bytes.byteLength / 4) * 4), usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST | GPUBufferUsage.COPY_SRC });
  device.queue.writeBuffer(buffer, 0, bytes.buffer, bytes.byteOffset, bytes.byteLength);
  return buffer;
}

/** An output buffer of `count` elements of `dtype`, filled with NaN. */
export function poisonedBuffer(device: GPUDevice, count: number, dtype: KernelDtype = 'f32'): GPUBuffer {
  return uploadBuffer(device, new Float32Array(count).fill(Number.NaN), dtype);
}

/** The first `count` elements of `buffer` as f32. */
export async function readBuffer(device: GPUDevice, buffer: GPUBuffer, count: number, dtype: KernelDtype = 'f32'): Promise<Float32Array> {
  const raw = await readGpuBuffer(device, buffer, count * (dtype === 'f16' ? 2 : 4));
  return dtype === 'f16' ? f16ToF32(new Uint16Array(raw)) : new Float32Array(raw);
}

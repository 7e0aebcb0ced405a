// Where the transformer's block weights live while a job runs. FramePack's own low-memory mode keeps as many
// blocks on the GPU as a budget allows and streams the rest in for every call ("6 GB" mode); this manager does the
// same for ORT sessions whose weights are graph inputs: blocks that fit the budget (in first-use order) are uploaded
// once and stay; every other block is written into one reused set of scratch buffers right before its call.
// On the wasm EP there is no GPU memory to manage and the CPU tensors are fed as they are.

import { cpuTensor, gpuTensor, type OrtTensor } from './ort.ts';
import type { OnnxDType } from '../models/onnxProto.ts';
import { GpuOutOfMemoryError } from '../errors/gpu.ts';

export interface HostTensor {
  dtype: OnnxDType;
  dims: number[];
  data: Float32Array | Uint16Array | Uint8Array | Int32Array | BigInt64Array;
}

/** One block's weights, keyed by graph input name, in host memory. */
export interface HostBlock {
  key: string;
  tensors: Record<string, HostTensor>;
}

export interface ResidencyStats {
  /** Bytes uploaded once and kept. */
  residentBytes: number;
  /** Bytes written into scratch buffers, summed over every call so far. */
  streamedBytes: number;
  /** Bytes of the scratch buffers (the largest streamed block). */
  scratchBytes: number;
  residentBlocks: number;
  streamedBlocks: number;
}

export function hostBlockBytes(block: HostBlock): number {
  let n = 0;
  for (const t of Object.values(block.tensors)) n += t.data.byteLength;
  return n;
}

const align4 = (n: number) => Math.ceil(n / 4) * 4;

export class WeightResidency {
  private resident = new Map<string, Record<string, OrtTensor>>();
  private residentBuffers: GPUBuffer[] = [];
  private streamedKeys = new Set<string>();
  /** Scratch buffers by graph input name, grown to the largest size seen. */
  private scratch = new Map<string, GPUBuffer>();
  readonly stats: ResidencyStats = { residentBytes: 0, streamedBytes: 0, scratchBytes: 0, residentBlocks: 0, streamedBlocks: 0 };

  /**
   * `device` null means CPU feeds (the wasm EP). `budgetBytes` bounds the resident blocks; Infinity keeps all.
   */
  constructor(private readonly device: GPUDevice | null, private readonly budgetBytes: number = Infinity) {}

  /** The GPU feeds of a block already resident (its host copy is then no longer needed), else undefined. */
  residentFeeds(key: string): Record<string, OrtTensor> | undefined {
    return this.resident.get(key);
  }

  /** Feeds for one block's call. Throws GpuOutOfMemoryError when a buffer cannot be created. */
  feeds(block: HostBlock): Record<string, OrtTensor> {
    if (!this.device) {
      const out: Record<string, OrtTensor> = {};
      for (const [name, t] of Object.entries(block.tensors)) out[name] = cpuTensor(t.dtype, t.data, t.dims);
      return out;
    }
    const kept = this.resident.get(block.key);
    if (kept) return kept;
    const bytes = hostBlockBytes(block);
    if (!this.streamedKeys.has(block.key) && this.stats.residentBytes + bytes <= this.budgetBytes) {
      const feeds: Record<string, OrtTensor> = {};
      for (const [name, t] of Object.entries(block.tensors)) {
        const buffer = this.createBuffer(align4(t.data.byteLength), `${block.key}/${name}`);
        this.device.queue.writeBuffer(buffer, 0, t.data.buffer, t.data.byteOffset, t.data.byteLength);
        this.residentBuffers.push(buffer);
        feeds[name] = gpuTensor(buffer, t.dtype, t.dims);
      }
      this.resident.set(block.key, feeds);
      this.stats.residentBytes += bytes;
      this.stats.residentBlocks++;
      return feeds;
    }
    if (!this.streamedKeys.has(block.key)) {
      this.streamedKeys.add(block.key);
      this.stats.streamedBlocks++;
    }
    // Queue writes are ordered after every command buffer already submitted, so the previous block's use of the
    // scratch buffers has been recorded before these bytes replace them.
    const feeds: Record<string, OrtTensor> = {};
    for (const [name, t] of Object.entries(block.tensors)) {
      const size = align4(t.data.byteLength);
      let buffer = this.scratch.get(name);
      if (!buffer || buffer.size < size) {
        if (buffer) {
          this.stats.scratchBytes -= buffer.size;
          buffer.destroy();
        }
        buffer = this.createBuffer(size, `scratch/${name}`);
        this.scratch.set(name, buffer);
        this.stats.scratchBytes += size;
      }
      this.device.queue.writeBuffer(buffer, 0, t.data.buffer, t.data.byteOffset, t.data.byteLength);
      this.stats.streamedBytes += t.data.byteLength;
      feeds[name] = gpuTensor(buffer, t.dtype, t.dims);
    }
    return feeds;
  }

  private createBuffer(size: number, label: string): GPUBuffer {
    const device = this.device!;
    if (size > device.limits.maxStorageBufferBindingSize) throw new GpuOutOfMemoryError(label, size, device.limits.maxStorageBufferBindingSize);
    return device.createBuffer({ size, usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST | GPUBufferUsage.COPY_SRC, label });
  }

  /** Frees every buffer this manager made. */
  release(): void {
    for (const b of this.residentBuffers) b.destroy();
    for (const b of this.scratch.values()) b.destroy();
    this.resident.clear();
    this.residentBuffers = [];
    this.scratch.clear();
    this.streamedKeys.clear();
  }
}

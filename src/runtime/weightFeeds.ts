// Turns a graph's weight bindings into ORT feeds from a checkpoint: picks the block's tensor (`{i}`), applies the
// layout the graph wants (transpose for MatMul, 4-bit blocks for MatMulNBits) and the dtype (fp16 on the f16
// path). One function serves every network, the tiny fixtures and the real checkpoints alike.

import type { WeightBinding, WeightSet } from '../models/graph.ts';
import type { Checkpoint } from '../weights/checkpoint.ts';
import { f32ToF16 } from '../weights/dtypes.ts';
import { quantizeQ4, type Q4Weight } from '../weights/quantize.ts';
import { cpuTensor, type OrtTensor } from './ort.ts';
import type { HostBlock, HostTensor } from './residency.ts';

export function bindingTensorName(binding: WeightBinding, block?: number): string {
  if (binding.tensor.includes('{i}')) {
    if (block === undefined) throw new Error(`weight ${binding.tensor} needs a block index`);
    return binding.tensor.replace('{i}', String(block));
  }
  return binding.tensor;
}

function transpose2d(w: Float32Array, rows: number, cols: number): Float32Array {
  const t = new Float32Array(rows * cols);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) t[c * rows + r] = w[r * cols + c];
  return t;
}

/**
 * The values one binding takes, as float32 (or uint8 blocks for 4-bit), in the graph's layout. Pass the same
 * `quantized` map for the blocks and the scales of one weight so it is quantized once.
 */
export function layoutWeight(
  binding: WeightBinding,
  stored: Float32Array,
  quantized: Map<Float32Array, Q4Weight> = new Map(),
): { data: Float32Array | Uint8Array; dims: number[] } {
  switch (binding.layout) {
    case 'asis':
      return { data: stored, dims: binding.shape };
    case 'transpose': {
      const [o, i] = binding.shape;
      return { data: transpose2d(stored, o, i), dims: [i, o] };
    }
    case 'q4': {
      const [n, k] = binding.shape;
      let q = quantized.get(stored);
      if (!q) quantized.set(stored, (q = quantizeQ4(stored, n, k)));
      return binding.part === 'scales'
        ? { data: q.scales, dims: [q.scales.length] }
        : { data: q.blocks, dims: [n, Math.ceil(k / 32), 16] };
    }
  }
}

/** A laid-out weight in the binding's dtype (fp16 as Uint16Array bits, 4-bit blocks as bytes). */
export function toHostTensor(binding: WeightBinding, data: Float32Array | Uint8Array, dims: number[]): HostTensor {
  if (data instanceof Uint8Array) return { dtype: 'uint8', dims, data };
  if (binding.dtype === 'float16') return { dtype: 'float16', dims, data: f32ToF16(data) };
  return { dtype: 'float32', dims, data };
}

/**
 * Every weight of `set` (a graph's weight inputs, or a block plan's weights), read from `checkpoint` (block `block`
 * for `{i}` names) and laid out as its bindings say. Quantizes a 4-bit weight once even though it has two entries
 * (blocks and scales). Throws TensorMissing (from the checkpoint) when a tensor is absent.
 */
export async function hostWeights(set: WeightSet, checkpoint: Checkpoint, block?: number, key = `${set.name}/${block ?? ''}`): Promise<HostBlock> {
  const tensors: Record<string, HostTensor> = {};
  const cache = new Map<string, Float32Array>();
  const quantized = new Map<Float32Array, Q4Weight>();
  for (const binding of set.weights) {
    const name = bindingTensorName(binding, block);
    let stored = cache.get(name);
    if (!stored) {
      stored = await checkpoint.f32(name);
      cache.set(name, stored);
    }
    const { data, dims } = layoutWeight(binding, stored, quantized);
    tensors[binding.input] = toHostTensor(binding, data, dims);
  }
  return { key, tensors };
}

/** CPU feeds for every weight of `set` (see hostWeights). */
export async function weightFeeds(set: WeightSet, checkpoint: Checkpoint, block?: number): Promise<Record<string, OrtTensor>> {
  const host = await hostWeights(set, checkpoint, block);
  const feeds: Record<string, OrtTensor> = {};
  for (const [name, t] of Object.entries(host.tensors)) feeds[name] = cpuTensor(t.dtype, t.data, t.dims);
  return feeds;
}

// Turns a graph's weight bindings into ORT feeds from a checkpoint: picks the block's tensor (`{i}`), applies the
// layout the graph wants (transpose for MatMul, 4-bit blocks for MatMulNBits) and the dtype (fp16 on the f16
// path). One function serves every network, the tiny fixtures and the real checkpoints alike.
// Converted weights (the browser's store, a pack: weights/pack.ts) already hold each tensor in the stored format
// its binding takes, and the checkpoint says so (Checkpoint.q4, F16 tensors): those are only laid out, never
// quantized again. Raw checkpoints (the fixtures, a local Hugging Face folder) are quantized here, at first use.

import type { WeightBinding, WeightSet } from '../models/graph.ts';
import type { Checkpoint, StoredQ4 } from '../weights/checkpoint.ts';
import { f16ToF32, f32ToF16 } from '../weights/dtypes.ts';
import { dequantizeQ4, quantizeQ4, type Q4Weight } from '../weights/quantize.ts';
import { cpuTensor, type OrtTensor } from './ort.ts';
import type { HostBlock, HostTensor } from './residency.ts';

export function bindingTensorName(binding: WeightBinding, block?: number): string {
  if (binding.tensor.includes('{i}')) {
    if (block === undefined) throw new Error(`weight ${binding.tensor} needs a block index`);
    return binding.tensor.replace('{i}', String(block));
  }
  return binding.tensor;
}

function transpose2d<T extends Float32Array | Uint16Array>(w: T, rows: number, cols: number): T {
  const t = new (w.constructor as new (n: number) => T)(rows * cols);
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

/** A stored 4-bit weight as a 'q4' binding takes it: the blocks as they are, the fp16 scales in the binding's dtype. */
function storedQ4Tensor(binding: WeightBinding, q: StoredQ4, name: string): HostTensor {
  const [n, k] = binding.shape;
  if (q.n !== n || q.blocksPerRow !== Math.ceil(k / 32)) {
    throw new Error(`The stored 4-bit ${name} is [${q.n}, ${q.blocksPerRow} blocks]; its binding ${binding.input} takes [${n}, ${k}].`);
  }
  if (binding.part === 'scales') {
    return binding.dtype === 'float16' ? { dtype: 'float16', dims: [q.scales.length], data: q.scales } : { dtype: 'float32', dims: [q.scales.length], data: f16ToF32(q.scales) };
  }
  return { dtype: 'uint8', dims: [n, q.blocksPerRow, 16], data: q.blocks };
}

/** An F16 tensor for a float binding in fp16: laid out on the stored bits, no float32 round trip. */
function f16Tensor(binding: WeightBinding, bits: Uint16Array): HostTensor {
  if (binding.layout === 'transpose') {
    const [o, i] = binding.shape;
    return { dtype: 'float16', dims: [i, o], data: transpose2d(bits, o, i) };
  }
  return { dtype: 'float16', dims: binding.shape, data: bits };
}

/**
 * Every weight of `set` (a graph's weight inputs, or a block plan's weights), read from `checkpoint` (block `block`
 * for `{i}` names) and laid out as its bindings say. A weight the checkpoint holds in 4-bit is read as stored; a
 * raw one is quantized once even though it has two entries (blocks and scales). Throws TensorMissing (from the
 * checkpoint) when a tensor is absent.
 */
export async function hostWeights(set: WeightSet, checkpoint: Checkpoint, block?: number, key = `${set.name}/${block ?? ''}`): Promise<HostBlock> {
  const tensors: Record<string, HostTensor> = {};
  const cache = new Map<string, Float32Array>();
  const storedQ4 = new Map<string, Promise<StoredQ4 | null>>();
  const q4Of = (name: string) => {
    let q = storedQ4.get(name);
    if (!q) storedQ4.set(name, (q = checkpoint.q4(name)));
    return q;
  };
  const quantized = new Map<Float32Array, Q4Weight>();
  for (const binding of set.weights) {
    const name = bindingTensorName(binding, block);
    const q4 = await q4Of(name);
    if (binding.layout === 'q4' && q4) {
      tensors[binding.input] = storedQ4Tensor(binding, q4, name);
      continue;
    }
    const info = checkpoint.tensors.get(name);
    if (!q4 && info?.dtype === 'F16' && binding.dtype === 'float16' && binding.layout !== 'q4') {
      tensors[binding.input] = f16Tensor(binding, (await checkpoint.raw(name)).data as Uint16Array);
      continue;
    }
    let stored = cache.get(name);
    if (!stored) {
      // A float binding of a weight stored only in 4-bit (e.g. a run without 4-bit over converted weights): dequantized.
      stored = q4 ? dequantizeQ4({ blocks: q4.blocks, scales: f16ToF32(q4.scales), n: binding.shape[0], k: binding.shape[1] }) : await checkpoint.f32(name);
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

// The layers every network here is made of, written once as graph fragments: linear (full precision or 4-bit),
// norms, activations, attention. Token tensors are [1, N, D]. Norms, softmax and RoPE run in fp32 whatever the
// activation dtype, as the reference's numerics require (framepack-reference.md §5.10).

import type { Graph } from './graph.ts';

export interface LinearOptions {
  bias?: boolean;
  /** 4-bit MatMulNBits weights (block 32) instead of a MatMul on full-precision weights. */
  quantized?: boolean;
  /** Graph input prefix when it differs from the checkpoint prefix (e.g. `{i}` blocks). */
  inputPrefix?: string;
}

/** Graph input names may not contain the `{i}` placeholder or dots that ORT dislikes in some places. */
export function inputName(tensor: string): string {
  return tensor.replace(/\{i\}\./g, '').replace(/\./g, '_');
}

/** y = x·Wᵀ + b for a checkpoint Linear `${prefix}.weight` of shape [outF, inF]. */
export function linear(g: Graph, x: string, prefix: string, inF: number, outF: number, options: LinearOptions = {}): string {
  const bias = options.bias ?? true;
  const name = inputName(options.inputPrefix ?? prefix);
  let y: string;
  if (options.quantized) {
    const b = g.weight(`${name}_q4`, `${prefix}.weight`, [outF, inF], 'q4');
    const s = g.weightScales(`${name}_scales`, `${prefix}.weight`, [outF, inF]);
    // accuracy_level 0: multiply in the activation dtype. At 4, ORT's WebGPU EP rounds fp32 activations to int8
    // (its DP4A path) on devices with subgroups, which moved the DiT's context tokens by 5e-3.
    y = g.op('MatMulNBits', [x, b, s], { K: inF, N: outF, bits: 4, block_size: 32, accuracy_level: 0 }, { domain: 'com.microsoft' });
  } else {
    const w = g.weight(`${name}_weight`, `${prefix}.weight`, [outF, inF], 'transpose');
    y = g.op('MatMul', [x, w]);
  }
  if (bias) y = g.op('Add', [y, g.weight(`${name}_bias`, `${prefix}.bias`, [outF])]);
  return y;
}

export function toFloat32(g: Graph, x: string): string {
  return g.dtype === 'float32' ? x : g.op('Cast', [x], { to: 1 });
}

export function toActivation(g: Graph, x: string): string {
  return g.dtype === 'float32' ? x : g.op('Cast', [x], { to: 10 });
}

/**
 * LayerNorm over the last axis in fp32. `affine` names the checkpoint prefix of weight/bias, or null for the
 * parameter-free LN of the DiT's AdaLN (scale 1, shift 0).
 */
export function layerNorm(g: Graph, x: string, dim: number, eps: number, affine: string | null, options: { bias?: boolean } = {}): string {
  const xf = toFloat32(g, x);
  let scale: string;
  let shift: string;
  if (affine) {
    const n = inputName(affine);
    scale = g.weight(`${n}_weight`, `${affine}.weight`, [dim], 'asis', 'float32');
    shift = options.bias === false ? g.constant(new Float32Array(dim)) : g.weight(`${n}_bias`, `${affine}.bias`, [dim], 'asis', 'float32');
  } else {
    scale = g.constant(new Float32Array(dim).fill(1));
    shift = g.constant(new Float32Array(dim));
  }
  return toActivation(g, g.op('LayerNormalization', [xf, scale, shift], { axis: -1, epsilon: eps, stash_type: 1 }));
}

/** RMSNorm over the last axis: x·rsqrt(mean(x²)+eps) in fp32, cast back, then × weight (reference order). */
export function rmsNorm(g: Graph, x: string, eps: number, weight: { tensor: string; dim: number } | null): string {
  const xf = toFloat32(g, x);
  const meanSq = g.op('ReduceMean', [g.op('Mul', [xf, xf]), g.ints([-1])], { keepdims: 1 });
  const inv = g.op('Reciprocal', [g.op('Sqrt', [g.op('Add', [meanSq, g.scalar(eps)])])]);
  let y = toActivation(g, g.op('Mul', [xf, inv]));
  if (weight) y = g.op('Mul', [y, g.weight(inputName(weight.tensor), weight.tensor, [weight.dim])]);
  return y;
}

export function silu(g: Graph, x: string): string {
  return g.op('Mul', [x, g.op('Sigmoid', [x])]);
}

/** GELU with the tanh approximation (PyTorch's approximate='tanh', gelu_pytorch_tanh). */
export function geluTanh(g: Graph, x: string): string {
  return g.op('Gelu', [x], { approximate: 'tanh' });
}

/** CLIP's quick_gelu: x·sigmoid(1.702x). */
export function quickGelu(g: Graph, x: string): string {
  return g.op('Mul', [x, g.op('Sigmoid', [g.op('Mul', [x, g.scalar(1.702, g.dtype)])])]);
}

/** [1, N, H·d] → [1, H, N, d] */
export function splitHeads(g: Graph, x: string, heads: number, headDim: number): string {
  const r = g.op('Reshape', [x, g.ints([1, -1, heads, headDim])]);
  return g.op('Transpose', [r], { perm: [0, 2, 1, 3] });
}

/** [1, H, N, d] → [1, N, H·d] */
export function mergeHeads(g: Graph, x: string, heads: number, headDim: number): string {
  const t = g.op('Transpose', [x], { perm: [0, 2, 1, 3] });
  return g.op('Reshape', [t, g.ints([1, -1, heads * headDim])]);
}

/**
 * Scaled dot-product attention on [1, H, N, d] heads, softmax in fp32. `mask` is an additive fp32 tensor
 * broadcastable to [1, H, Nq, Nk] (0 keep, −inf drop) or null.
 */
export function attention(g: Graph, q: string, k: string, v: string, headDim: number, mask: string | null = null): string {
  const kt = g.op('Transpose', [k], { perm: [0, 1, 3, 2] });
  let scores = toFloat32(g, g.op('MatMul', [g.op('Mul', [q, g.scalar(1 / Math.sqrt(headDim), g.dtype)]), kt]));
  if (mask) scores = g.op('Add', [scores, mask]);
  const p = toActivation(g, g.op('Softmax', [scores], { axis: -1 }));
  return g.op('MatMul', [p, v]);
}

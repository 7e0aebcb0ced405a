// The CPU twins of the VAE kernels (vaeConv.ts, vaeGroupNorm.ts, vaeAttention.ts), written as the reference does
// the work (framepack-reference.md §4.2–4.4), not as the kernels do: the input is nearest-upsampled into a tensor of
// its own, padded by replication, then convolved with the checkpoint's [O, C, kt, kh, kw] weight; GroupNorm is
// mean and variance over each group; attention builds the full score matrix with its −∞ mask. Float64
// accumulation. Activations are channels-last [T, H, W, C] Float32Arrays, like the kernels'.

import type { ConvGeometry } from './vaeConv.ts';

export interface CpuConvArgs {
  /** [inFrames, inHeight, inWidth, inChannels]. */
  x: ArrayLike<number>;
  g: ConvGeometry;
  /** The checkpoint's weight [O, C, kt, kh, kw]. */
  weight: ArrayLike<number>;
  bias?: ArrayLike<number>;
  /** GroupNorm before the conv: per-channel γ, β over `groups` groups; then SiLU when asked. */
  norm?: { gamma: ArrayLike<number>; beta: ArrayLike<number>; groups: number; eps: number; silu: boolean };
  /** Added to the output, channels-last. */
  residual?: ArrayLike<number>;
}

export function siluF64(v: number): number {
  return v / (1 + Math.exp(-v));
}

/** GroupNorm (+ SiLU) of a channels-last [P, C] tensor, as torch.nn.GroupNorm with its affine. */
export function groupNorm(x: ArrayLike<number>, positions: number, channels: number, groups: number, gamma: ArrayLike<number>, beta: ArrayLike<number>, eps: number, silu = false): Float64Array {
  const affine = groupNormAffine(x, positions, channels, groups, gamma, beta, eps);
  const out = new Float64Array(positions * channels);
  for (let p = 0; p < positions; p++) {
    for (let c = 0; c < channels; c++) {
      const v = x[p * channels + c] * affine[2 * c] + affine[2 * c + 1];
      out[p * channels + c] = silu ? siluF64(v) : v;
    }
  }
  return out;
}

/** The per-channel (scale, shift) the GroupNorm kernel writes: interleaved [C, 2]. */
export function groupNormAffine(x: ArrayLike<number>, positions: number, channels: number, groups: number, gamma: ArrayLike<number>, beta: ArrayLike<number>, eps: number): Float64Array {
  const cpg = channels / groups;
  const out = new Float64Array(2 * channels);
  for (let g = 0; g < groups; g++) {
    let mean = 0;
    for (let p = 0; p < positions; p++) for (let j = 0; j < cpg; j++) mean += x[p * channels + g * cpg + j];
    mean /= positions * cpg;
    let variance = 0;
    for (let p = 0; p < positions; p++) for (let j = 0; j < cpg; j++) variance += (x[p * channels + g * cpg + j] - mean) ** 2;
    variance /= positions * cpg;
    const inv = 1 / Math.sqrt(variance + eps);
    for (let j = 0; j < cpg; j++) {
      const c = g * cpg + j;
      out[2 * c] = gamma[c] * inv;
      out[2 * c + 1] = beta[c] - mean * gamma[c] * inv;
    }
  }
  return out;
}

/**
 * HunyuanVideoUpsampleCausal3D's interpolation (first frame spatially only, the rest by the full factor) when the
 * geometry upsamples, then HunyuanVideoCausalConv3d: replicate padding (2 frames in front and 1 pixel each side for
 * kernel 3), a plain conv with the strides. Returns channels-last [T', H', W', O].
 */
export function causalConv3d(a: CpuConvArgs): Float64Array {
  const { g } = a;
  const C = g.inChannels;
  const O = g.outChannels;
  let src: ArrayLike<number> = a.x;
  if (a.norm) src = groupNorm(a.x, g.inFrames * g.inHeight * g.inWidth, C, a.norm.groups, a.norm.gamma, a.norm.beta, a.norm.eps, a.norm.silu);
  // Nearest upsampling into its own tensor.
  const ut = g.upTime ?? 1;
  const us = g.upSpace ?? 1;
  const T = ut === 2 ? 2 * g.inFrames - 1 : g.inFrames;
  const H = g.inHeight * us;
  const W = g.inWidth * us;
  const up = new Float64Array(T * H * W * C);
  for (let t = 0; t < T; t++) {
    const ti = t === 0 ? 0 : ut === 2 ? 1 + Math.floor((t - 1) / 2) : t;
    for (let y = 0; y < H; y++) for (let x = 0; x < W; x++) {
      const from = ((ti * g.inHeight + Math.floor(y / us)) * g.inWidth + Math.floor(x / us)) * C;
      up.set(Array.from({ length: C }, (_, c) => src[from + c]), ((t * H + y) * W + x) * C);
    }
  }
  // Replicate padding: time kt − 1 in front, space ks // 2 each side.
  const kt = g.kernelTime;
  const ks = g.kernelSpace;
  const pt = kt - 1;
  const ps = ks >> 1;
  const Tp = T + pt;
  const Hp = H + 2 * ps;
  const Wp = W + 2 * ps;
  const padded = new Float64Array(Tp * Hp * Wp * C);
  const clamp = (v: number, n: number) => Math.min(n - 1, Math.max(0, v));
  for (let t = 0; t < Tp; t++) for (let y = 0; y < Hp; y++) for (let x = 0; x < Wp; x++) {
    const from = ((clamp(t - pt, T) * H + clamp(y - ps, H)) * W + clamp(x - ps, W)) * C;
    for (let c = 0; c < C; c++) padded[((t * Hp + y) * Wp + x) * C + c] = up[from + c];
  }
  // Plain convolution, no padding.
  const st = g.strideTime ?? 1;
  const ss = g.strideSpace ?? 1;
  const To = Math.floor((Tp - kt) / st) + 1;
  const Ho = Math.floor((Hp - ks) / ss) + 1;
  const Wo = Math.floor((Wp - ks) / ss) + 1;
  const out = new Float64Array(To * Ho * Wo * O);
  for (let t = 0; t < To; t++) for (let y = 0; y < Ho; y++) for (let x = 0; x < Wo; x++) {
    const m = (t * Ho + y) * Wo + x;
    for (let o = 0; o < O; o++) {
      let acc = a.bias ? a.bias[o] : 0;
      for (let c = 0; c < C; c++) for (let dt = 0; dt < kt; dt++) for (let dy = 0; dy < ks; dy++) for (let dx = 0; dx < ks; dx++) {
        acc += a.weight[(((o * C + c) * kt + dt) * ks + dy) * ks + dx] * padded[(((t * st + dt) * Hp + y * ss + dy) * Wp + x * ss + dx) * C + c];
      }
      out[m * O + o] = acc + (a.residual ? a.residual[m * O + o] : 0);
    }
  }
  return out;
}

/**
 * softmax(q·kᵀ/√D + mask)·v with the frame-causal mask of diffusers' prepare_causal_attention_mask (0 where the
 * key's frame ≤ the query's, −∞ elsewhere); q, k, v the column blocks of qkv [N, 3D]. Returns [N, D].
 */
export function frameCausalAttention(qkv: ArrayLike<number>, tokens: number, dim: number, tokensPerFrame: number): Float64Array {
  const out = new Float64Array(tokens * dim);
  const scores = new Float64Array(tokens);
  const ld = 3 * dim;
  for (let q = 0; q < tokens; q++) {
    let max = -Infinity;
    for (let k = 0; k < tokens; k++) {
      let s = 0;
      for (let d = 0; d < dim; d++) s += qkv[q * ld + d] * qkv[k * ld + dim + d];
      s = Math.floor(k / tokensPerFrame) > Math.floor(q / tokensPerFrame) ? -Infinity : s / Math.sqrt(dim);
      scores[k] = s;
      max = Math.max(max, s);
    }
    let sum = 0;
    for (let k = 0; k < tokens; k++) sum += scores[k] = Math.exp(scores[k] - max);
    for (let k = 0; k < tokens; k++) {
      const w = scores[k] / sum;
      if (w === 0) continue;
      for (let d = 0; d < dim; d++) out[q * dim + d] += w * qkv[k * ld + 2 * dim + d];
    }
  }
  return out;
}

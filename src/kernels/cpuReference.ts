// The CPU twin of every kernel a block plan dispatches, written as plainly as the reference's formulas
// (framepack-reference.md §5.5, §5.7, §5.8): same inputs and layouts as the WGSL kernels, float64 accumulation.
// The CPU executor of the block plans (src/worker/ditBlocksCpu.ts) is built from these, so the fixtures prove them;
// the kernel tests compare each WGSL kernel against its twin here. Tensors are row-major Float32Arrays of
// [rows, width]; weights are [n, k] as a checkpoint Linear stores them.

/** GELU with the tanh approximation (PyTorch's approximate='tanh'). */
export function geluTanh(v: number): number {
  return 0.5 * v * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (v + 0.044715 * v * v * v)));
}

export function silu(v: number): number {
  return v / (1 + Math.exp(-v));
}

/** y [rows, n] = x [rows, k]·Wᵀ (+ bias) (+ GELU), W [n, k]. */
export function linear(x: ArrayLike<number>, rows: number, k: number, w: ArrayLike<number>, n: number, bias: ArrayLike<number> | null, epilogue: 'none' | 'gelu_tanh' = 'none'): Float64Array {
  const out = new Float64Array(rows * n);
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < n; c++) {
      let acc = 0;
      for (let i = 0; i < k; i++) acc += x[r * k + i] * w[c * k + i];
      if (bias) acc += bias[c];
      out[r * n + c] = epilogue === 'gelu_tanh' ? geluTanh(acc) : acc;
    }
  }
  return out;
}

/** y [n] = W·SiLU(x) + b, x [k]: a block's AdaLN parameters from temb. */
export function siluGemv(x: ArrayLike<number>, k: number, w: ArrayLike<number>, n: number, bias: ArrayLike<number>): Float64Array {
  const activated = Float64Array.from({ length: k }, (_, i) => silu(x[i]));
  return linear(activated, 1, k, w, n, bias);
}

export interface AdaNormArgs {
  /** The residual stream [rows, dim]. */
  x: ArrayLike<number>;
  /** AdaLN parameters [chunks, dim]. */
  mod: ArrayLike<number>;
  rows: number;
  dim: number;
  eps: number;
  /** stream = x + mod[gate]·(y + y2), y and y2 read from row yRow0 of theirs. */
  residual?: { y: ArrayLike<number>; y2?: ArrayLike<number>; yRow0: number; gate: number };
  /** normed = LN(stream)·(1 + mod[scale]) + mod[shift] (LayerNorm without affine). */
  modulation?: { shift: number; scale: number };
}

/** The gated residual and/or the AdaLN modulation of `rows` rows (src/kernels/adaNorm.ts). */
export function adaNorm(a: AdaNormArgs): { stream: Float64Array; normed: Float64Array | null } {
  const d = a.dim;
  const stream = new Float64Array(a.rows * d);
  const normed = a.modulation ? new Float64Array(a.rows * d) : null;
  for (let r = 0; r < a.rows; r++) {
    for (let i = 0; i < d; i++) {
      const res = a.residual;
      const update = res ? res.y[(res.yRow0 + r) * d + i] + (res.y2 ? res.y2[(res.yRow0 + r) * d + i] : 0) : 0;
      stream[r * d + i] = a.x[r * d + i] + (res ? a.mod[res.gate * d + i] * update : 0);
    }
    if (!a.modulation || !normed) continue;
    const row = stream.subarray(r * d, (r + 1) * d);
    let mean = 0;
    for (let i = 0; i < d; i++) mean += row[i];
    mean /= d;
    let variance = 0;
    for (let i = 0; i < d; i++) variance += (row[i] - mean) ** 2;
    variance /= d;
    const inv = 1 / Math.sqrt(variance + a.eps);
    const { shift, scale } = a.modulation;
    for (let i = 0; i < d; i++) normed[r * d + i] = (row[i] - mean) * inv * (1 + a.mod[scale * d + i]) + a.mod[shift * d + i];
  }
  return { stream, normed };
}

export interface QkvHeadsArgs {
  /** Stacked projections [·, 3·heads·headDim], read from row inRow0. */
  qkv: ArrayLike<number>;
  inRow0: number;
  rows: number;
  heads: number;
  headDim: number;
  /** RMSNorm weights [headDim] of q and k. */
  normQ: ArrayLike<number>;
  normK: ArrayLike<number>;
  /** RoPE tables [rows, headDim] (the rows' own), or null for rows without RoPE. */
  rope: { cos: ArrayLike<number>; sin: ArrayLike<number> } | null;
  eps: number;
}

/**
 * q and k RMS-normed per head (x·rsqrt(mean(x²) + eps)·w), then RoPE on pairs (2i, 2i+1) — rotated = (−x_{2i+1},
 * x_{2i}), out = x·cos + rotated·sin (apply_rotary_emb_transposed) — and v as it is: [rows, heads·headDim] each
 * (src/kernels/qkvHeads.ts).
 */
export function qkvHeads(a: QkvHeadsArgs): { q: Float64Array; k: Float64Array; v: Float64Array } {
  const { heads, headDim: d } = a;
  const width = heads * d;
  const out = { q: new Float64Array(a.rows * width), k: new Float64Array(a.rows * width), v: new Float64Array(a.rows * width) };
  const y = new Float64Array(d);
  for (let r = 0; r < a.rows; r++) {
    for (const [part, name] of [[0, 'q'], [1, 'k'], [2, 'v']] as const) {
      for (let h = 0; h < heads; h++) {
        const src = (a.inRow0 + r) * 3 * width + part * width + h * d;
        const dst = r * width + h * d;
        if (name === 'v') {
          for (let i = 0; i < d; i++) out.v[dst + i] = a.qkv[src + i];
          continue;
        }
        let squares = 0;
        for (let i = 0; i < d; i++) squares += a.qkv[src + i] ** 2;
        const inv = 1 / Math.sqrt(squares / d + a.eps);
        const w = name === 'q' ? a.normQ : a.normK;
        for (let i = 0; i < d; i++) y[i] = a.qkv[src + i] * inv * w[i];
        for (let i = 0; i < d; i++) {
          const rotated = i % 2 === 0 ? -y[i + 1] : y[i - 1];
          out[name][dst + i] = a.rope ? y[i] * a.rope.cos[r * d + i] + rotated * a.rope.sin[r * d + i] : y[i];
        }
      }
    }
  }
  return out;
}

/**
 * softmax(q·kᵀ/√d)·v per head; q [nq, heads·d], k and v [nk, heads·d] (token-major, heads side by side). `rows`
 * picks query rows (all by default); the output has one row per picked query (src/kernels/flashAttention.ts).
 */
export function attention(q: ArrayLike<number>, k: ArrayLike<number>, v: ArrayLike<number>, nk: number, heads: number, d: number, rows: readonly number[]): Float64Array {
  const width = heads * d;
  const out = new Float64Array(rows.length * width);
  const scale = 1 / Math.sqrt(d);
  const scores = new Float64Array(nk);
  const [kh, vh, qh, acc] = [new Float64Array(nk * d), new Float64Array(nk * d), new Float64Array(d), new Float64Array(d)];
  for (let h = 0; h < heads; h++) {
    // This head's keys and values, contiguous [nk, d].
    for (let j = 0; j < nk; j++) {
      for (let i = 0; i < d; i++) {
        kh[j * d + i] = k[j * width + h * d + i];
        vh[j * d + i] = v[j * width + h * d + i];
      }
    }
    for (let ri = 0; ri < rows.length; ri++) {
      for (let i = 0; i < d; i++) qh[i] = q[rows[ri] * width + h * d + i];
      let max = -Infinity;
      for (let j = 0; j < nk; j++) {
        let dot = 0;
        for (let i = 0; i < d; i++) dot += qh[i] * kh[j * d + i];
        scores[j] = dot * scale;
        if (scores[j] > max) max = scores[j];
      }
      let sum = 0;
      acc.fill(0);
      for (let j = 0; j < nk; j++) {
        const p = Math.exp(scores[j] - max);
        sum += p;
        for (let i = 0; i < d; i++) acc[i] += p * vh[j * d + i];
      }
      for (let i = 0; i < d; i++) out[ri * width + h * d + i] = acc[i] / sum;
    }
  }
  return out;
}

/** 0 … n − 1, for `attention`'s rows. */
export function allRows(n: number): number[] {
  return Array.from({ length: n }, (_, i) => i);
}

// 4-bit block quantization in onnxruntime's MatMulNBits layout, and the inverse for checking it.
// A Linear weight W [N, K] (out, in) becomes, per row n and block b of 32 input features, one scale s and 32
// unsigned nibbles q with W ≈ (q − 8)·s (the operator's default zero point 8, so no zero-point tensor is stored).
// Two nibbles per byte, the even element in the low nibble. K is padded with zeros to a multiple of 32.
// One row loop (quantizeRowsInto) serves both callers: quantizeQ4 on a whole float32 weight (raw checkpoints, at
// job time) and the download's converter (weights/pack.ts), which feeds it a few rows at a time widened from
// bf16/fp16, so both give the same nibbles and scales for the same weight.

export const Q4_BLOCK = 32;

export interface Q4Weight {
  /** [N, ceil(K/32), 16] bytes */
  blocks: Uint8Array;
  /** [N · ceil(K/32)] scales, float32 here; narrowed to the activation dtype when fed. */
  scales: Float32Array;
  n: number;
  k: number;
}

/**
 * Quantizes `rows` rows of K values starting at `w[0]` into `blocks` / `scales` from row `firstRow` on.
 * Symmetric: the element of largest magnitude in a block maps to −8 exactly (s = that value / −8), which uses the
 * full signed range [−8, 7] as onnxruntime's own quantizer does.
 */
export function quantizeRowsInto(w: Float32Array, rows: number, k: number, blocks: Uint8Array, scales: Float32Array, firstRow: number): void {
  const kb = Math.ceil(k / Q4_BLOCK);
  for (let r = 0; r < rows; r++) {
    const row = firstRow + r;
    for (let b = 0; b < kb; b++) {
      const start = r * k + b * Q4_BLOCK;
      const len = Math.min(Q4_BLOCK, k - b * Q4_BLOCK);
      let extreme = 0;
      for (let i = 0; i < len; i++) if (Math.abs(w[start + i]) > Math.abs(extreme)) extreme = w[start + i];
      const scale = Math.fround(extreme / -8);
      const inv = scale !== 0 ? 1 / scale : 0;
      scales[row * kb + b] = scale;
      const out = (row * kb + b) * (Q4_BLOCK / 2);
      for (let i = 0; i < Q4_BLOCK; i += 2) {
        const q0 = i < len ? Math.min(15, Math.max(0, Math.round(w[start + i] * inv) + 8)) : 8;
        const q1 = i + 1 < len ? Math.min(15, Math.max(0, Math.round(w[start + i + 1] * inv) + 8)) : 8;
        blocks[out + i / 2] = q0 | (q1 << 4);
      }
    }
  }
}

/** A whole [N, K] float32 weight, quantized (see quantizeRowsInto). */
export function quantizeQ4(w: Float32Array, n: number, k: number): Q4Weight {
  const kb = Math.ceil(k / Q4_BLOCK);
  const blocks = new Uint8Array(n * kb * (Q4_BLOCK / 2));
  const scales = new Float32Array(n * kb);
  quantizeRowsInto(w, n, k, blocks, scales, 0);
  return { blocks, scales, n, k };
}

/** The weight a Q4Weight stands for, [N, K] float32. */
export function dequantizeQ4(q: Q4Weight): Float32Array {
  const kb = Math.ceil(q.k / Q4_BLOCK);
  const out = new Float32Array(q.n * q.k);
  for (let row = 0; row < q.n; row++) {
    for (let i = 0; i < q.k; i++) {
      const b = Math.floor(i / Q4_BLOCK);
      const j = i % Q4_BLOCK;
      const byte = q.blocks[(row * kb + b) * (Q4_BLOCK / 2) + (j >> 1)];
      const nib = j & 1 ? byte >> 4 : byte & 15;
      out[row * q.k + i] = (nib - 8) * q.scales[row * kb + b];
    }
  }
  return out;
}

/** Bytes of a [N, K] weight at 4-bit with scales of `scaleBytes` each: N·⌈K/32⌉·(16 + scaleBytes). */
export function q4Bytes(n: number, k: number, scaleBytes: number): number {
  return n * Math.ceil(k / Q4_BLOCK) * (Q4_BLOCK / 2 + scaleBytes);
}

// The one tensor type the pure pipeline uses: contiguous float32 data in row-major order with its shape.
// Latents are [1, C, T, H, W] as in the reference; nothing here knows about GPUs.

export interface Tensor {
  data: Float32Array;
  shape: number[];
}

export function numel(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

export function tensor(shape: number[], data?: Float32Array): Tensor {
  const n = numel(shape);
  if (data && data.length !== n) throw new Error(`tensor: ${data.length} values for shape [${shape}]`);
  return { data: data ?? new Float32Array(n), shape };
}

/** Row-major strides of a shape. */
export function strides(shape: readonly number[]): number[] {
  const s = new Array<number>(shape.length);
  let acc = 1;
  for (let i = shape.length - 1; i >= 0; i--) {
    s[i] = acc;
    acc *= shape[i];
  }
  return s;
}

// The error metric every parity check reports, as test/fixtures/reference/README.md defines it:
// err = max|got − want| / max|want|, stated together with max|got − want|.

export interface TensorError {
  /** max|got − want| / max|want| (max|got − want| itself when want is all zeros). */
  rel: number;
  /** max|got − want| */
  abs: number;
  /** Largest |want|, the tensor's own scale. */
  scale: number;
}

export function tensorError(got: ArrayLike<number>, want: ArrayLike<number>): TensorError {
  if (got.length !== want.length) throw new Error(`tensorError: ${got.length} values against ${want.length}`);
  let abs = 0;
  let scale = 0;
  for (let i = 0; i < want.length; i++) {
    const d = Math.abs(got[i] - want[i]);
    // NaN must never pass as "small": treat it as infinitely wrong.
    abs = Number.isNaN(d) ? Infinity : Math.max(abs, d);
    scale = Math.max(scale, Math.abs(want[i]));
  }
  return { rel: scale > 0 ? abs / scale : abs, abs, scale };
}

export function formatError(e: TensorError): string {
  return `err ${e.rel.toExponential(2)} (max abs ${e.abs.toExponential(2)}, scale ${e.scale.toPrecision(3)})`;
}

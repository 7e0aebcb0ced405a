// The epilogue every GEMM here ends with, bias then GELU(tanh), as WGSL: one copy for the 4-bit and the float
// products. 0.5·(1 + tanh(u)) = 1 / (1 + e^(−2u)), which avoids tanh (some drivers compile it to a fast
// approximation good to ~1e-3) and the cancellation of 1 − tanh; u is clamped where the factor is 0 or 1 in f32
// anyway, so e^(−2u) stays finite. The including kernel declares `params.flags`, FLAG_BIAS, FLAG_GELU and `bias`.

export const GELU_EPILOGUE_WGSL = /* wgsl */ `
fn finish(v: f32, col: u32) -> f32 {
  var r = v;
  if ((params.flags & FLAG_BIAS) != 0u) { r += f32(bias[col]); }
  if ((params.flags & FLAG_GELU) != 0u) {
    let u = clamp(0.7978845608028654 * (r + 0.044715 * r * r * r), -20.0, 20.0);
    r = r / (1.0 + exp(-2.0 * u));
  }
  return r;
}
`;

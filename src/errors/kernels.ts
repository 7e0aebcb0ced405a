// Failures of our WGSL kernels (src/kernels/). Apart from a driver that rejects a shader, these are programming
// errors — options a device cannot run, buffers that do not match the kernel — that no person can act on; the page
// keeps their stack when they cross from the worker. They live here, apart from the kernels, so the page can
// rebuild them by name without loading any GPU code: this module imports nothing and does nothing when imported.

/** The GPU driver rejected one of our kernels: a kernel bug or a driver without a feature it needs; report it with the GPU's name. */
export class KernelCompileError extends Error {
  override name = 'KernelCompileError';
  constructor(label: string, messages: string[]) {
    super(
      `The GPU driver rejected the ${label} kernel:\n${messages.join('\n')}\n` +
        'This is a bug in the kernel or a driver that lacks a feature it needs; report it with the GPU named in the capability panel.',
    );
  }
}

/** The 4-bit matmul options cannot run on this device (missing feature, unsupported size or tiling). */
export class Q4MatmulConfigError extends Error {
  override name = 'Q4MatmulConfigError';
}

/** The buffers or sizes passed to the 4-bit matmul's encode() do not match the kernel. */
export class Q4MatmulShapeError extends Error {
  override name = 'Q4MatmulShapeError';
}

/** The float-weight GEMM/GEMV options cannot run on this device or shape. */
export class MatmulConfigError extends Error {
  override name = 'MatmulConfigError';
}

/** The buffers passed to the float-weight GEMM/GEMV's encode() do not match the product. */
export class MatmulShapeError extends Error {
  override name = 'MatmulShapeError';
}

/** The 4-bit GEMV options cannot run on this device or shape. */
export class Q4GemvConfigError extends Error {
  override name = 'Q4GemvConfigError';
}

/** The buffers passed to the 4-bit GEMV's encode() do not match the kernel. */
export class Q4GemvShapeError extends Error {
  override name = 'Q4GemvShapeError';
}

/** The flash-attention options cannot run on this device (missing feature, unsupported head size). */
export class AttentionConfigError extends Error {
  override name = 'AttentionConfigError';
}

/** The buffers or sizes passed to flash attention's encode() do not match the kernel. */
export class AttentionShapeError extends Error {
  override name = 'AttentionShapeError';
}

/** The QKV-heads options cannot run on this device (f16 without shader-f16, an odd head size). */
export class QkvHeadsConfigError extends Error {
  override name = 'QkvHeadsConfigError';
}

/** The buffers or sizes passed to the QKV-heads kernel's encode() do not match the kernel. */
export class QkvHeadsShapeError extends Error {
  override name = 'QkvHeadsShapeError';
}

/** The AdaNorm options cannot run on this device (f16 without shader-f16, a bad width). */
export class AdaNormConfigError extends Error {
  override name = 'AdaNormConfigError';
}

/** The buffers or sizes passed to the AdaNorm kernel's encode() do not match the kernel. */
export class AdaNormShapeError extends Error {
  override name = 'AdaNormShapeError';
}

/** The VAE kernels' options cannot run on this device (f16 without shader-f16, a width the kernel does not take). */
export class VaeKernelConfigError extends Error {
  override name = 'VaeKernelConfigError';
}

/** The buffers or sizes passed to a VAE kernel (causal conv, GroupNorm statistics, frame-causal attention) do not match it. */
export class VaeKernelShapeError extends Error {
  override name = 'VaeKernelShapeError';
}

/** The buffers passed to TeaCache's GPU kernels (L1 sums, residual arithmetic) do not match the sizes asked for. */
export class TeaCacheKernelError extends Error {
  override name = 'TeaCacheKernelError';
}

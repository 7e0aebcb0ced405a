// What every kernel's dispatch code shares: binding a storage buffer only after checking that it holds what the
// shapes need and fits the device's binding limit (with one message format), recording a dispatch into the caller's
// compute pass or a pass of its own, submitting once for tests, and the WGSL of a workgroup-wide sum.

/** Whether an encode() target is a compute pass the caller has begun (else a command encoder to begin one on). */
export function isComputePass(target: GPUCommandEncoder | GPUComputePassEncoder): target is GPUComputePassEncoder {
  return typeof (target as GPUComputePassEncoder).dispatchWorkgroups === 'function';
}

/** What a binding is, for the message when it does not fit: the kernel, the input's name and what the shapes need. */
export interface BindingCheck {
  kernel: string;
  name: string;
  /** The shapes behind the bytes, e.g. "4 rows of 3 × 64 f32". */
  what: string;
  /** Appended when the binding exceeds the device's limit, e.g. "Split the rows over several calls." */
  tooLargeHint?: string;
}

/**
 * The first `bytes` of `buffer` (rounded up to 4) as a storage binding. Throws `fail(message)` when the buffer is
 * smaller or the binding exceeds the device's maxStorageBufferBindingSize.
 */
export function checkedBinding(device: GPUDevice, buffer: GPUBuffer, bytes: number, check: BindingCheck, fail: new (message: string) => Error): GPUBufferBinding {
  const size = Math.ceil(bytes / 4) * 4;
  if (buffer.size < size) throw new fail(`${check.kernel} input '${check.name}' holds ${buffer.size} bytes but ${check.what} need ${size}.`);
  const limit = device.limits.maxStorageBufferBindingSize;
  if (size > limit) throw new fail(`${check.kernel} input '${check.name}' needs a ${size}-byte binding; this device allows ${limit}.${check.tooLargeHint ? ` ${check.tooLargeHint}` : ''}`);
  return { buffer, size };
}

/** Records one dispatch into `target` when it is a compute pass the caller has begun, else in a pass of its own. */
export function recordDispatch(target: GPUCommandEncoder | GPUComputePassEncoder, label: string, pipeline: GPUComputePipeline, bindGroup: GPUBindGroup, x: number, y = 1): void {
  const pass = isComputePass(target) ? target : target.beginComputePass({ label });
  pass.setPipeline(pipeline);
  pass.setBindGroup(0, bindGroup);
  pass.dispatchWorkgroups(x, y);
  if (pass !== target) pass.end();
}

/** Encodes with `encode`, submits and waits: for tests and one-off use, not for the denoising loop. */
export async function submitAndWait(device: GPUDevice, label: string, encode: (encoder: GPUCommandEncoder) => void): Promise<void> {
  const encoder = device.createCommandEncoder({ label });
  encode(encoder);
  device.queue.submit([encoder.finish()]);
  await device.queue.onSubmittedWorkDone();
}

/**
 * WGSL for `workgroupSum(value, lane)`: the sum of `value` over a workgroup of `size` invocations (a power of two),
 * returned to every invocation; it ends on a barrier, so it can be called again. Call it in uniform control flow.
 */
export function workgroupSumWgsl(size: number): string {
  return /* wgsl */ `
var<workgroup> partial: array<f32, ${size}>;

fn workgroupSum(value: f32, lane: u32) -> f32 {
  partial[lane] = value;
  workgroupBarrier();
  for (var stride = ${size / 2}u; stride > 0u; stride >>= 1u) {
    if (lane < stride) { partial[lane] += partial[lane + stride]; }
    workgroupBarrier();
  }
  let total = partial[0];
  workgroupBarrier();
  return total;
}
`;
}

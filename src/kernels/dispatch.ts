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
 * `bytes` of `buffer` from `offset` (rounded up to 4) as a storage binding. Throws `fail(message)` when the buffer is
 * smaller or the binding exceeds the device's maxStorageBufferBindingSize.
 */
export function checkedBinding(device: GPUDevice, buffer: GPUBuffer, bytes: number, check: BindingCheck, fail: new (message: string) => Error, offset = 0): GPUBufferBinding {
  const size = Math.ceil(bytes / 4) * 4;
  if (buffer.size < offset + size) throw new fail(`${check.kernel} input '${check.name}' holds ${buffer.size} bytes but ${check.what} need ${offset + size}.`);
  const limit = device.limits.maxStorageBufferBindingSize;
  if (size > limit) throw new fail(`${check.kernel} input '${check.name}' needs a ${size}-byte binding; this device allows ${limit}.${check.tooLargeHint ? ` ${check.tooLargeHint}` : ''}`);
  return offset ? { buffer, offset, size } : { buffer, size };
}

/**
 * Times dispatches with timestamp queries (benches): while one is installed, every dispatch recorded into a pass of
 * its own gets the pass's begin and end timestamps. Needs the device's 'timestamp-query' feature.
 */
export class DispatchProfiler {
  private readonly querySet: GPUQuerySet;
  private readonly resolveBuffer: GPUBuffer;
  private labels: string[] = [];
  /** The dispatches read back so far: label, duration and GPU timestamps (ns). */
  readonly timings: { label: string; ms: number; begin: bigint; end: bigint }[] = [];
  /** Dispatch counts at each submit (markSubmit), to time submits from their first to their last dispatch. */
  private readonly submitMarks: number[] = [];

  constructor(private readonly device: GPUDevice, private readonly capacity = 2048) {
    this.querySet = device.createQuerySet({ type: 'timestamp', count: 2 * capacity });
    this.resolveBuffer = device.createBuffer({ size: 16 * capacity, usage: GPUBufferUsage.QUERY_RESOLVE | GPUBufferUsage.COPY_SRC });
  }

  /** The pass descriptor for the next dispatch, or a plain one when the query set is full (flush first). */
  pass(label: string): GPUComputePassDescriptor {
    if (this.labels.length >= this.capacity) return { label };
    const i = this.labels.length;
    this.labels.push(label);
    return { label, timestampWrites: { querySet: this.querySet, beginningOfPassWriteIndex: 2 * i, endOfPassWriteIndex: 2 * i + 1 } };
  }

  /** Reads back the timestamps of what was recorded since the last flush, after the queue's work is done. */
  async flush(): Promise<void> {
    const n = this.labels.length;
    if (n === 0) return;
    const readback = this.device.createBuffer({ size: 16 * n, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
    const encoder = this.device.createCommandEncoder({ label: 'dispatch profiler' });
    encoder.resolveQuerySet(this.querySet, 0, 2 * n, this.resolveBuffer, 0);
    encoder.copyBufferToBuffer(this.resolveBuffer, 0, readback, 0, 16 * n);
    this.device.queue.submit([encoder.finish()]);
    await readback.mapAsync(GPUMapMode.READ);
    const stamps = new BigUint64Array(readback.getMappedRange().slice(0));
    readback.unmap();
    readback.destroy();
    for (let i = 0; i < n; i++) this.timings.push({ label: this.labels[i], ms: Number(stamps[2 * i + 1] - stamps[2 * i]) / 1e6, begin: stamps[2 * i], end: stamps[2 * i + 1] });
    this.labels = [];
  }

  /** Call after each queue submit: the dispatches recorded since the previous mark belong to that submit. */
  markSubmit(): void {
    this.submitMarks.push(this.timings.length + this.labels.length);
  }

  /** Each submit's GPU span (ms), from its first dispatch's start to its last one's end (after flush). */
  submitSpans(): number[] {
    const spans: number[] = [];
    let from = 0;
    for (const to of this.submitMarks) {
      if (to > from) spans.push(Number(this.timings[to - 1].end - this.timings[from].begin) / 1e6);
      from = to;
    }
    return spans;
  }
}

let profiler: DispatchProfiler | null = null;

/** Installs (or removes, with null) the profiler every dispatch of every kernel reports to. */
export function setDispatchProfiler(p: DispatchProfiler | null): void {
  profiler = p;
}

/** Records one dispatch into `target` when it is a compute pass the caller has begun, else in a pass of its own. */
export function recordDispatch(target: GPUCommandEncoder | GPUComputePassEncoder, label: string, pipeline: GPUComputePipeline, bindGroup: GPUBindGroup, x: number, y = 1): void {
  const pass = isComputePass(target) ? target : target.beginComputePass(profiler ? profiler.pass(label) : { label });
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

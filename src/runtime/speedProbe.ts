// A short speed probe at first use: how fast this device runs our 4-bit GEMM (src/kernels/q4Matmul.ts, the
// transformer's linears) on the path a job will take here, in TFLOP/s. The page's time estimates are the H200 table
// of src/pipeline/speedEstimate.ts (bench/RESULTS.md) scaled by H200 TFLOP/s ÷ this figure, so this is the one
// number measured on the user's GPU.
//
// The rule: random 4-bit weights and activations at growing sizes (PROBE_SIZES, up to m = 8192, k = n = 3072), one
// warm-up run per size (which also compiles the kernel, cached for the job), then 3 timed runs from an idle GPU
// (queue.onSubmittedWorkDone before and after, wall clock), their median; stop at the first size whose run takes
// ≥ PROBE_TARGET_MS, or at the largest, where a run under the target is repeated inside one submit until the
// submit takes about the target (at most 16 times), so a fast GPU is not timed on submit overhead. A software GPU
// (SwiftShader) stops after the first, smallest size. Memoized per device and dtype: the worker asks once.

import { createQ4Matmul, q4MatmulFlops, Q4_BLOCK_SIZE, type Q4MatmulDtype, type Q4MatmulPath } from '../kernels/q4Matmul.ts';
import { f32ToF16Bits } from '../weights/dtypes.ts';

/**
 * [m, k, n] of each size tried, smallest first: about 4× the work each, so the size that first reaches the target
 * takes under ~90 ms (no device spends long on the probe), up to the transformer's width at 8192 rows.
 */
export const PROBE_SIZES: readonly (readonly [number, number, number])[] = [
  [256, 512, 512],
  [512, 1024, 512],
  [1024, 1024, 1024],
  [2048, 2048, 1024],
  [4096, 2048, 2048],
  [8192, 3072, 3072],
];
/** A run at least this long (ms) is long enough to time with the wall clock. */
export const PROBE_TARGET_MS = 20;
const TIMED_RUNS = 3;
const MAX_REPEATS = 16;

export interface SpeedProbeResult {
  /** The 4-bit GEMM kernel that ran (the one a job gets here) and its activation dtype. */
  kernel: Q4MatmulPath;
  dtype: Q4MatmulDtype;
  /** Measured throughput, TFLOP/s (2·m·k·n per run). */
  tflops: number;
  /** The size it was measured at. */
  m: number;
  k: number;
  n: number;
  /** Median milliseconds of one run at that size, and the products per timed submit. */
  ms: number;
  repeats: number;
  /** Sizes tried, and the whole probe's wall time (compiling included), ms. */
  sizesTried: number;
  totalMs: number;
}

const probes = new WeakMap<GPUDevice, Map<Q4MatmulDtype, Promise<SpeedProbeResult>>>();

/** The probe of this device in this dtype, run once (a failed probe is forgotten, so a later call tries again). */
export function deviceSpeedProbe(device: GPUDevice, dtype: Q4MatmulDtype): Promise<SpeedProbeResult> {
  let byDtype = probes.get(device);
  if (!byDtype) probes.set(device, (byDtype = new Map()));
  let probe = byDtype.get(dtype);
  if (!probe) {
    probe = probeGemmSpeed(device, dtype);
    byDtype.set(dtype, probe);
    probe.catch(() => byDtype.delete(dtype));
  }
  return probe;
}

/** Runs the probe (see the file's comment). Throws what createQ4Matmul throws (e.g. f16 without shader-f16). */
export async function probeGemmSpeed(device: GPUDevice, dtype: Q4MatmulDtype, sizes: readonly (readonly [number, number, number])[] = PROBE_SIZES): Promise<SpeedProbeResult> {
  const started = performance.now();
  let tried = 0;
  for (const [i, [m, k, n]] of sizes.entries()) {
    tried++;
    const last = i === sizes.length - 1;
    const size = await timeSize(device, dtype, m, k, n, last);
    if (size.ms * size.repeats >= PROBE_TARGET_MS || last) {
      return {
        kernel: size.kernel, dtype, tflops: q4MatmulFlops(m, k, n) / (size.ms * 1e-3) / 1e12, m, k, n, ms: size.ms,
        repeats: size.repeats, sizesTried: tried, totalMs: performance.now() - started,
      };
    }
  }
  throw new RangeError('probeGemmSpeed needs at least one size.');
}

async function timeSize(device: GPUDevice, dtype: Q4MatmulDtype, m: number, k: number, n: number, last: boolean): Promise<{ kernel: Q4MatmulPath; ms: number; repeats: number }> {
  const elem = dtype === 'f16' ? 2 : 4;
  const kBlocks = k / Q4_BLOCK_SIZE;
  const buffers: GPUBuffer[] = [];
  const buffer = (label: string, bytes: number, fill: Uint8Array | null) => {
    const b = device.createBuffer({ label: `speed probe ${label}`, size: Math.ceil(bytes / 4) * 4, usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST });
    buffers.push(b);
    // A random tile written over and over: the values only have to be ordinary numbers.
    if (fill) for (let at = 0; at < b.size; at += fill.byteLength) device.queue.writeBuffer(b, at, fill, 0, Math.min(fill.byteLength, b.size - at));
    return b;
  };
  try {
    const io = {
      x: buffer('x', m * k * elem, randomValues(dtype, 1 << 14, -1, 1)),
      blocks: buffer('blocks', n * kBlocks * 16, randomBytes(1 << 16)),
      scales: buffer('scales', n * kBlocks * elem, randomValues(dtype, 1 << 12, 0.005, 0.02)),
      out: buffer('out', m * n * elem, null),
      m,
    };
    const matmul = await createQ4Matmul(device, { k, n, dtype, bias: false });
    const time = async (repeats: number) => {
      await device.queue.onSubmittedWorkDone();
      const t0 = performance.now();
      const encoder = device.createCommandEncoder({ label: 'speed probe' });
      for (let r = 0; r < repeats; r++) matmul.encode(encoder, io);
      device.queue.submit([encoder.finish()]);
      await device.queue.onSubmittedWorkDone();
      return (performance.now() - t0) / repeats;
    };
    await time(1); // warm-up: first use of the pipeline and the buffers
    let runs: number[] = [];
    for (let r = 0; r < TIMED_RUNS; r++) runs.push(await time(1));
    let ms = median(runs);
    let repeats = 1;
    if (last && ms < PROBE_TARGET_MS) {
      repeats = Math.min(MAX_REPEATS, Math.ceil(PROBE_TARGET_MS / Math.max(ms, 1e-3)));
      runs = [];
      for (let r = 0; r < TIMED_RUNS; r++) runs.push(await time(repeats));
      ms = median(runs);
    }
    return { kernel: matmul.path, ms, repeats };
  } finally {
    for (const b of buffers) b.destroy();
  }
}

function median(values: number[]): number {
  const s = [...values].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

function randomBytes(n: number): Uint8Array {
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i++) out[i] = (Math.random() * 256) | 0;
  return out;
}

/** `n` uniform values in [lo, hi] as the bytes of `dtype`. */
function randomValues(dtype: Q4MatmulDtype, n: number, lo: number, hi: number): Uint8Array {
  const value = () => lo + Math.random() * (hi - lo);
  if (dtype === 'f32') return new Uint8Array(Float32Array.from({ length: n }, value).buffer);
  const v = Uint16Array.from({ length: n }, () => f32ToF16Bits(value()));
  return new Uint8Array(v.buffer);
}

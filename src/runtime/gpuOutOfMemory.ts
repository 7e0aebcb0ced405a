// A real out-of-memory on the GPU, caught. WebGPU reports a refused allocation through error scopes only (a
// buffer that could not be made is silently invalid, and every later use of it fails validation), so each stage
// of a job runs its allocations and first dispatches inside an 'out-of-memory' scope, which turns a refusal into
// GpuOutOfMemoryError naming the stage and the bytes it asked for. WebGPU has no memory query either, so the
// transformer's default budget comes from a probe: allocate in steps inside such scopes up to a cap, then free.

import { GpuOutOfMemoryError } from '../errors/gpu.ts';
import { trackGpuMemory } from './gpuMemory.ts';

/**
 * Runs `work` inside an out-of-memory error scope on `device` (null: the wasm EP, run as is). Throws
 * GpuOutOfMemoryError when the device refused an allocation meanwhile, even when `work` failed in another way
 * first (onnxruntime fails on with the invalid buffer), since the refusal is the cause a person can act on.
 * `oversize` first asks for one buffer of the device's largest size (diagnostics: SwiftShader's driver refuses
 * one allocation of 1 GiB, its maxBufferSize, while 512 MiB pass, so a refusal can be rehearsed without a GPU).
 */
export async function guardGpuMemory<T>(device: GPUDevice | null, stage: string, work: () => Promise<T>, oversize = false): Promise<T> {
  if (!device) return work();
  const memory = trackGpuMemory();
  const asked = memory.requested();
  device.pushErrorScope('out-of-memory');
  let result: T | undefined;
  let failure: unknown = null;
  try {
    if (oversize) device.createBuffer({ label: 'oversize (diagnostics)', size: device.limits.maxBufferSize, usage: GPUBufferUsage.STORAGE }).destroy();
    result = await work();
  } catch (e) {
    failure = e;
  }
  // A lost device settles open scopes with null (older Dawn rejects): the loss is reported by its own path.
  const refused = await device.popErrorScope().catch(() => null);
  if (refused) throw new GpuOutOfMemoryError(stage, memory.requested() - asked, undefined, memory.live());
  if (failure) throw failure;
  return result as T;
}

export interface MemoryProbe {
  /** Bytes the device gave before it refused or the cap was reached. */
  bytes: number;
  /** Whether the cap was reached without a refusal (the device may hold more). */
  reachedCap: boolean;
}

/**
 * Allocates `stepBytes` buffers one at a time, each inside an out-of-memory scope, until the device refuses one or
 * `capBytes` are held, then frees them all. The buffers are never written: Vulkan and D3D12 commit memory when a
 * buffer is made (the SwiftShader driver zero-fills it, so on a software GPU this costs host RAM and time).
 */
export async function probeGpuMemory(device: GPUDevice, capBytes: number, stepBytes = PROBE_STEP_BYTES): Promise<MemoryProbe> {
  const step = Math.min(stepBytes, device.limits.maxBufferSize);
  const held: GPUBuffer[] = [];
  let refused = false;
  // The SwiftShader driver starts its queue's threads at the first submit, which needs memory of its own: do it
  // before the probe takes everything, so the submit that frees the probe's buffers can run.
  device.queue.submit([device.createCommandEncoder({ label: 'memory probe' }).finish()]);
  await device.queue.onSubmittedWorkDone();
  try {
    while ((held.length + 1) * step <= capBytes) {
      device.pushErrorScope('out-of-memory');
      const buffer = device.createBuffer({ label: 'memory probe', size: step, usage: GPUBufferUsage.STORAGE });
      if (await device.popErrorScope().catch(() => null)) {
        buffer.destroy();
        refused = true;
        break;
      }
      held.push(buffer);
    }
  } finally {
    for (const b of held) b.destroy();
    // Dawn frees a destroyed buffer's memory in a device tick after a submit has passed it (with none, never). The
    // first wait can settle before that tick (its completion is polled after the tick), so a second submit's wait
    // makes sure one ran: without it a loaded machine sometimes kept all the probe's memory (measured 2 in 12).
    for (let round = 0; round < 2; round++) {
      device.queue.submit([device.createCommandEncoder({ label: 'memory probe' }).finish()]);
      await device.queue.onSubmittedWorkDone();
    }
  }
  return { bytes: held.length * step, reachedCap: !refused };
}

/** The probe's step: fine enough to land within 3% of a 16 GiB cap, few enough allocations to take milliseconds. */
export const PROBE_STEP_BYTES = 512 * 2 ** 20;

/**
 * How far the probe goes: the real model's 4-bit transformer (7.8 GB) all resident, plus FramePack's 6 GB VAE
 * budget and the sampling activations (≈ 2 GB at the 640 bucket). A GPU that gives this much keeps every block.
 */
export const PROBE_CAP_BYTES = 16 * 2 ** 30;

/** What the rest of a job holds beside the transformer's weights while sampling: the VAE budget and the activations. */
export const JOB_RESERVE_BYTES = 8 * 2 ** 30;

/**
 * The transformer's default memory budget on `device`: all resident (Infinity) when the probe reaches its cap;
 * otherwise what it found less the rest of the job's share (JOB_RESERVE_BYTES), at least 0 (every block streamed,
 * FramePack's own low-memory mode). A software GPU is not probed (its memory is the machine's RAM, zero-filled on
 * allocation): it keeps everything, which only the tiny model can use anyway.
 */
export async function defaultTransformerBudget(device: GPUDevice, software: boolean): Promise<{ budgetBytes: number; probe: MemoryProbe | null }> {
  if (software) return { budgetBytes: Infinity, probe: null };
  const probe = await probeGpuMemory(device, PROBE_CAP_BYTES);
  return { budgetBytes: probe.reachedCap ? Infinity : Math.max(0, probe.bytes - JOB_RESERVE_BYTES), probe };
}

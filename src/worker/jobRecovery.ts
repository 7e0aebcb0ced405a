// A job that survives a lost GPU device: when runJob ends with DeviceLostError, a new device is opened and the job
// goes on from its last checkpoint (the encoders' results, or the loop after its last finished section), so no
// finished section runs twice and the noise stream continues where it was. ORT's native WebGPU EP takes its device
// per session, so the same process (the page's worker, or Node) carries on; what it needs lives in the checkpoint,
// which the caller may also store (worker/jobStore.ts in the page, worker/jobState.ts as bytes) to continue after a
// closed tab.

import { DeviceLostError, RepeatedDeviceLossError } from '../errors/gpu.ts';
import { runJob, type JobCheckpoint, type JobEvent, type JobInput, type JobOptions, type JobResult, type RuntimeChoice } from './engine.ts';
import type { FrameSink } from './framepackLoop.ts';
import type { ModelSource } from './modelPackage.ts';

/** New devices a job may take after losses; one more loss ends it (a GPU that keeps resetting will not finish). */
export const MAX_RECOVERIES = 2;

export interface RecoveryOptions extends JobOptions {
  /** The runtime for the first try, and after each loss a new one on a new device (the old one is gone). */
  openRuntime(attempt: number): Promise<RuntimeChoice>;
  maxRecoveries?: number;
}

/**
 * runJob with recovery from lost devices: at most `maxRecoveries` (2) new devices, then RepeatedDeviceLossError.
 * The sink sees each finished section once; `onEvent` gets a 'recovery' event before each new try.
 */
export async function runJobWithRecovery(
  model: ModelSource,
  input: JobInput,
  sink: FrameSink,
  onEvent: (e: JobEvent) => void,
  options: RecoveryOptions,
): Promise<JobResult> {
  const maxRecoveries = options.maxRecoveries ?? MAX_RECOVERIES;
  let checkpoint: JobCheckpoint | undefined = options.resume;
  const keep = async (c: JobCheckpoint) => {
    checkpoint = c;
    await options.onCheckpoint?.(c);
  };
  for (let attempt = 0; ; attempt++) {
    const runtime = await options.openRuntime(attempt);
    try {
      return await runJob(model, input, runtime, sink, onEvent, { signal: options.signal, resume: checkpoint, onCheckpoint: keep });
    } catch (e) {
      if (!(e instanceof DeviceLostError) || options.signal?.aborted) throw e;
      const done = checkpoint?.loop?.sectionsDone ?? 0;
      if (attempt >= maxRecoveries) throw new RepeatedDeviceLossError(attempt + 1, done);
      onEvent({
        type: 'recovery', attempt: attempt + 1, attempts: maxRecoveries, fromSection: done,
        message: `The GPU device was lost; going on from section ${done + 1} on a new one (try ${attempt + 1} of ${maxRecoveries}) …`,
      });
    }
  }
}

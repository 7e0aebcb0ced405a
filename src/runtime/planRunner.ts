// Runs a plan of GPU stages, whatever the network: the caller says what each stage reads and writes and records its
// dispatches; this module owns the buffers between stages and the command encoder. Values live in pooled buffers:
// a value's buffer goes back to the pool once the last stage reading it has been recorded (queue order puts every
// read before any later stage's write), and the plan's outputs leave the pool until the caller gives them back.
// Stages are recorded into one command encoder and submitted together (record, then submit), but a submit holds at
// most about `submitBudgetMs` of estimated GPU work: a stage reserves its estimate before it records, and what is
// recorded is submitted first when the reservation would pass the budget, so no submit approaches a watchdog's limit
// on a slow card. After the first run of each plan the pool holds what a run needs
// and no buffer is created; other sizes start a new pool.

export interface PlanShape<S> {
  stages: readonly S[];
  reads(stage: S): readonly string[];
  writes(stage: S): readonly string[];
}

/** What a stage's recording sees. */
export interface StageContext {
  /** A value's buffer: a plan input, or one an earlier stage wrote. Throws when none did. */
  read(name: string): GPUBuffer;
  /** The buffer for a value this stage writes, `bytes` long: from the pool, or the one an earlier stage of a joint value made. */
  write(name: string, bytes: number): GPUBuffer;
  /** A scratch buffer this stage alone uses; back to the pool after it. */
  scratch(bytes: number, label: string): GPUBuffer;
  /** The command encoder the plan records into (read it after reserve: a reservation may submit and start a new one). */
  readonly encoder: GPUCommandEncoder;
  /** Announces `ms` of estimated GPU work about to be recorded; submits what is recorded first if it would pass the budget. */
  reserve(ms: number): void;
}

/** Buffers of one size regime, reused from run to run. */
export class GpuBufferPool {
  private free: GPUBuffer[] = [];
  /** Buffers made since the last resize: only these return to the pool. */
  private current = new Set<GPUBuffer>();
  private sizes = '';
  private released = false;

  constructor(private readonly device: GPUDevice, private readonly label: string) {}

  /** Drops the pooled buffers when the work's sizes change (`key`: e.g. the token counts). */
  resize(key: string): void {
    if (key === this.sizes) return;
    for (const b of this.free.splice(0)) b.destroy();
    this.current.clear();
    this.sizes = key;
  }

  /** The smallest free buffer of at least `bytes`, or a new one. */
  take(bytes: number, label: string): GPUBuffer {
    const size = Math.max(16, Math.ceil(bytes / 4) * 4);
    let best = -1;
    for (let i = 0; i < this.free.length; i++) if (this.free[i].size >= size && (best < 0 || this.free[i].size < this.free[best].size)) best = i;
    if (best >= 0) return this.free.splice(best, 1)[0];
    const buffer = this.device.createBuffer({ size, usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST, label: `${this.label} ${label}` });
    this.current.add(buffer);
    return buffer;
  }

  /** Back to the pool; a buffer of an earlier size regime (or after release) is destroyed. */
  give(buffer: GPUBuffer): void {
    if (!this.released && this.current.has(buffer)) this.free.push(buffer);
    else buffer.destroy();
  }

  release(): void {
    this.released = true;
    for (const b of this.free.splice(0)) b.destroy();
    this.current.clear();
  }
}

/** For each value a plan's stages read, the index of the last stage reading it. */
function lastReads<S>(plan: PlanShape<S>): Map<string, number> {
  const last = new Map<string, number>();
  plan.stages.forEach((stage, index) => {
    for (const name of plan.reads(stage)) last.set(name, index);
  });
  return last;
}

export interface PlanRunOptions<S> {
  /** Waits for the GPU after every stage and reports its time (benches); slows the run down. */
  onStage?: (stage: S, ms: number) => void;
  /** Submit once the recorded stages' estimates reach this many ms (default: only at the end). */
  submitBudgetMs?: number;
}

/**
 * Records every stage of `plan` with `record` and submits. `inputs` stay the caller's; the buffers of `keep`
 * (values some stage writes) are returned and leave the pool until given back to it. On a failure every buffer
 * the run took goes back to the pool before the error is rethrown.
 */
export async function runGpuPlan<S>(
  device: GPUDevice,
  pool: GpuBufferPool,
  plan: PlanShape<S>,
  inputs: ReadonlyMap<string, GPUBuffer>,
  keep: readonly string[],
  record: (stage: S, context: StageContext) => void,
  options: PlanRunOptions<S> = {},
): Promise<Record<string, GPUBuffer>> {
  const last = lastReads(plan);
  const held = new Map<string, GPUBuffer>(); // written values, by name, until their last read
  const kept = new Map<string, GPUBuffer>();
  let encoder: GPUCommandEncoder | null = null;
  let recordedMs = 0;
  const submit = () => {
    if (encoder) device.queue.submit([encoder.finish()]);
    encoder = null;
    recordedMs = 0;
  };
  const value = (name: string) => inputs.get(name) ?? held.get(name) ?? kept.get(name);
  try {
    for (const [index, stage] of plan.stages.entries()) {
      const started = options.onStage ? performance.now() : 0;
      const scratch: GPUBuffer[] = [];
      const context: StageContext = {
        read(name) {
          const b = value(name);
          if (!b) throw new Error(`Plan stage ${index} reads '${name}' before any stage wrote it.`);
          return b;
        },
        write(name, bytes) {
          const existing = value(name);
          if (existing) {
            if (existing.size < bytes) throw new Error(`Plan stage ${index} writes ${bytes} bytes into '${name}', which an earlier stage made ${existing.size} bytes long.`);
            return existing;
          }
          const b = pool.take(bytes, name);
          (keep.includes(name) ? kept : held).set(name, b);
          return b;
        },
        scratch(bytes, label) {
          const b = pool.take(bytes, label);
          scratch.push(b);
          return b;
        },
        get encoder() {
          return (encoder ??= device.createCommandEncoder({ label: 'plan' }));
        },
        reserve(ms) {
          if (options.submitBudgetMs !== undefined && recordedMs > 0 && recordedMs + ms > options.submitBudgetMs) submit();
          recordedMs += ms;
        },
      };
      record(stage, context);
      for (const b of scratch) pool.give(b);
      for (const [name, buffer] of held) {
        if ((last.get(name) ?? -1) > index) continue;
        pool.give(buffer);
        held.delete(name);
      }
      if (options.onStage) {
        submit();
        await device.queue.onSubmittedWorkDone();
        options.onStage(stage, performance.now() - started);
      }
    }
    submit();
    const out: Record<string, GPUBuffer> = {};
    for (const name of keep) {
      const b = kept.get(name);
      if (!b) throw new Error(`No stage of the plan writes '${name}'.`);
      out[name] = b;
    }
    kept.clear();
    return out;
  } finally {
    // After a failure the unsubmitted commands are dropped, so nothing recorded can touch a buffer reused later.
    for (const b of [...held.values(), ...kept.values()]) pool.give(b);
  }
}

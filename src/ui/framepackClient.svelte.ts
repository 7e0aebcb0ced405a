// The page's one handle on the worker: it owns the Web Worker, talks to it through the typed comlink API, and turns
// the worker's events into reactive state the components read (stage, load bytes, section and step, ETA, the latest
// preview, the video so far, the result, the error). Each generate() gets a request id and only the latest one may
// change the state, so a late event from an earlier job can never overwrite the current one.

import { WorkerCrashedError } from '../errors/ui.ts';
import { DeviceLostError } from '../errors/index.ts';
import { proxy, wrap, type Remote } from 'comlink';
import type { FramePackWorkerApi, WorkerOptions } from '../worker/framepackWorker.ts';
import type { CapabilityReport, GenerateRequest, GenerateResult, LoadEvent, ModelId, ModelStatus, PreviewImage, WorkerEvent } from '../worker/protocol.ts';
import type { JobStage, TransformerReport } from '../worker/engine.ts';
import { rebuildError } from './errors.ts';
import { latentFramesAfter, progressDescription } from '../pipeline/frameCount.ts';

export type Phase = 'idle' | 'running' | 'stopping';

export interface StepState {
  section: number;
  sections: number;
  step: number;
  steps: number;
  etaMs: number | null;
}

export interface PlanState {
  sections: number;
  frames: number;
  width: number;
  height: number;
  fps: number;
}

export interface VideoSoFar {
  url: string;
  blob: Blob;
  frames: number;
  /** Sections finished when it was made. */
  sections: number;
}

export class FramePackClient {
  #worker!: Worker;
  #api!: Remote<FramePackWorkerApi>;
  readonly #options: WorkerOptions;
  #request = 0;

  #capabilities = $state<CapabilityReport | null>(null);
  #models = $state<ModelStatus[]>([]);
  #phase = $state<Phase>('idle');
  #stage = $state<JobStage | 'download' | null>(null);
  #stageText = $state('');
  #load = $state<LoadEvent | null>(null);
  #plan = $state<PlanState | null>(null);
  #step = $state<StepState | null>(null);
  #preview = $state<PreviewImage | null>(null);
  #previews = $state(0);
  #video = $state<VideoSoFar | null>(null);
  #result = $state<GenerateResult | null>(null);
  /** How the transformer ran in the current (or last) job: executor, kernels, dispatches. */
  #transformer = $state<TransformerReport | null>(null);
  #error = $state<Error | null>(null);
  /** "section:step" of every step event of the current job, in arrival order (the tests read it). */
  #stepLog = $state<string[]>([]);
  #startedAt = 0;
  /** The page's callback for each section's video (it keeps the job's gallery entry up to date). */
  #onVideo: ((video: VideoSoFar) => void) | null = null;
  /** When sampling started and when each section's video arrived (performance.now()), for the time left. */
  #sectionTimes: number[] = [];
  #now = $state(0);
  /** The running job's loop order and window, for the frame figures. */
  #shape: { variant: 'original' | 'f1'; latentWindow: number } | null = null;

  constructor(options: WorkerOptions) {
    this.#options = options;
    this.#startWorker();
  }

  /** A new generation worker (at start, and after a lost GPU device: ORT's WebGPU EP cannot move to a new one). */
  #startWorker(): void {
    this.#worker = new Worker(new URL('../worker/framepackWorker.ts', import.meta.url), { type: 'module', name: 'framepack' });
    this.#worker.addEventListener('error', (e) => {
      this.#error = new WorkerCrashedError(`The generation worker failed to start or crashed (${e.message || 'no details'}). Reload the page; if it keeps happening, the tab may be out of memory.`);
      this.#phase = 'idle';
    });
    this.#api = wrap<FramePackWorkerApi>(this.#worker);
    void this.#api.configure(this.#options);
  }

  get capabilities() { return this.#capabilities; }
  get models() { return this.#models; }
  get phase() { return this.#phase; }
  get running() { return this.#phase !== 'idle'; }
  get stage() { return this.#stage; }
  get stageText() { return this.#stageText; }
  get load() { return this.#load; }
  get plan() { return this.#plan; }
  get step() { return this.#step; }
  get preview() { return this.#preview; }
  /** Previews received in this job. */
  get previews() { return this.#previews; }
  get video() { return this.#video; }
  get result() { return this.#result; }
  get transformer() { return this.#transformer; }
  get error() { return this.#error; }
  get stepLog() { return this.#stepLog; }
  /** The reference's line under the bar: "Total generated frames: …, Video length: … seconds (FPS-30). …". */
  get framesDescription(): string {
    const plan = this.#plan, video = this.#video, shape = this.#shape;
    if (!plan || !video || !shape) return '';
    return progressDescription(latentFramesAfter(shape.variant, video.sections, plan.sections, shape.latentWindow), plan.fps);
  }

  /**
   * Time left in ms. Until a section is finished: the engine's figure from the step times, which leaves out the
   * VAE decode; after that: the average whole section (sampling and decode) times the sections still to do.
   */
  get etaMs(): number | null {
    const step = this.#step, times = this.#sectionTimes;
    if (!step || this.#phase === 'idle') return null;
    if (times.length < 2) return step.etaMs;
    const perSection = (times[times.length - 1] - times[0]) / (times.length - 1);
    const left = step.sections - (times.length - 1);
    return Math.max(0, perSection * left - (this.#now - times[times.length - 1]));
  }

  /** Whether etaMs counts decoding too (it does once a section has been timed whole). */
  get etaIsWhole(): boolean {
    return this.#sectionTimes.length >= 2;
  }

  /** ms since this job started. */
  get elapsedMs() { return this.#startedAt ? performance.now() - this.#startedAt : 0; }

  /** Fraction done: download bytes while loading, then sampling steps over the whole job. */
  get progress(): number {
    if (this.#stage === 'download' && this.#load) return this.#load.total ? this.#load.loaded / this.#load.total : 0;
    if (this.#step) {
      const { section, sections, step, steps } = this.#step;
      return (section * steps + step) / (sections * steps);
    }
    return this.#stage === 'done' ? 1 : 0;
  }

  /**
   * Asks the worker what this browser can do, and what is stored, each shown as it arrives (the capabilities wait for
   * the GPU's first-use speed probe, seconds on a software GPU). Never throws: problems land in `error`.
   */
  async refresh(): Promise<void> {
    const capabilities = (async () => {
      try {
        this.#capabilities = await this.#api.capabilities();
      } catch (raw) {
        this.#error = rebuildError(raw);
      }
    })();
    await Promise.all([capabilities, this.refreshModels()]);
  }

  async refreshModels(): Promise<void> {
    try {
      this.#models = await this.#api.models();
    } catch (raw) {
      this.#error = rebuildError(raw);
    }
  }

  async deleteModel(id: ModelId): Promise<void> {
    try {
      await this.#api.deleteModel(id);
    } catch (raw) {
      this.#error = rebuildError(raw);
    }
    await this.refreshModels();
  }

  /** Forgets a stored job's state (its gallery entry is being deleted). */
  async deleteJob(jobId: string): Promise<void> {
    try {
      await this.#api.deleteJob(jobId);
    } catch (raw) {
      this.#error = rebuildError(raw);
    }
  }

  clearError(): void {
    this.#error = null;
  }

  /** Shows an error made on the page (a bad image file) the same way as the worker's. */
  showError(e: Error): void {
    this.#error = e;
  }

  /**
   * Runs one job. Resolves with the result (also when stopped), or null when it failed (the error is in `error`,
   * and the video of the sections finished before the failure stays in `video`).
   */
  async generate(request: GenerateRequest, onVideo?: (video: VideoSoFar) => void): Promise<GenerateResult | null> {
    const id = ++this.#request;
    this.#onVideo = onVideo ?? null;
    this.#reset();
    this.#shape = { variant: request.settings.variant, latentWindow: request.settings.latentWindow ?? 9 };
    this.#phase = 'running';
    this.#startedAt = performance.now();
    const onEvent = (e: WorkerEvent) => {
      if (id === this.#request) this.#handle(e);
    };
    try {
      const result = await this.#api.generate(request, proxy(onEvent));
      if (id !== this.#request) return result;
      this.#result = result;
      // The final MP4 is the last section's; keep the one already shown unless the worker's is newer.
      if (result.mp4 && result.frames !== this.#video?.frames) this.#setVideo(result.mp4, result.frames, this.#plan?.sections ?? 0);
      this.#stageText = result.stopped
        ? `Stopped. ${result.frames ? `The video keeps the ${result.frames} frames finished before the stop.` : 'No section had finished, so there is no video.'}`
        : `Done: ${result.frames} frames at ${result.width}×${result.height} in ${(this.elapsedMs / 1000).toFixed(0)} s.`;
      return result;
    } catch (raw) {
      const error = rebuildError(raw);
      if (error instanceof DeviceLostError) {
        this.#worker.terminate();
        this.#startWorker();
      }
      if (id === this.#request) {
        this.#error = error;
        this.#stageText = this.#video
          ? `Stopped by an error (see the message at the top); the ${this.#video.frames} frames finished before it are kept below.`
          : 'Stopped by an error (see the message at the top).';
      }
      return null;
    } finally {
      if (id === this.#request) {
        this.#phase = 'idle';
        this.#preview = null; // the reference hides the latent preview at the end
      }
      void this.refreshModels();
    }
  }

  /** Ends the running job within one sampling step; the finished sections are kept. */
  async stop(): Promise<void> {
    if (this.#phase !== 'running') return;
    this.#phase = 'stopping';
    this.#stageText = 'Stopping after the current step …';
    await this.#api.stop();
  }

  #reset(): void {
    this.#error = null;
    this.#result = null;
    this.#stage = null;
    this.#stageText = 'Starting …';
    this.#load = null;
    this.#plan = null;
    this.#step = null;
    this.#preview = null;
    this.#previews = 0;
    this.#stepLog = [];
    this.#transformer = null;
    this.#sectionTimes = [];
    if (this.#video) URL.revokeObjectURL(this.#video.url);
    this.#video = null;
  }

  #setVideo(blob: Blob, frames: number, sections: number): void {
    const old = this.#video;
    this.#video = { url: URL.createObjectURL(blob), blob, frames, sections };
    if (old) URL.revokeObjectURL(old.url);
  }

  #handle(e: WorkerEvent): void {
    switch (e.type) {
      case 'load': {
        this.#stage = 'download';
        this.#load = e;
        const mb = (n: number) => (n / 1e6).toFixed(1);
        this.#stageText = `Downloading the model (part ${e.part} of ${e.parts}: ${e.component}) — ${mb(e.loaded)} of ${mb(e.total)} MB`;
        break;
      }
      case 'plan':
        this.#plan = { sections: e.sections, frames: e.frames, width: e.width, height: e.height, fps: e.fps };
        break;
      case 'stage':
        if (e.stage === 'sampling') this.#sectionTimes = [performance.now()];
        this.#stage = e.stage;
        if (this.#phase !== 'stopping') this.#stageText = e.message;
        break;
      case 'step':
        this.#now = performance.now();
        this.#step = { section: e.section, sections: e.sections, step: e.step, steps: e.steps, etaMs: e.etaMs };
        this.#preview = e.preview;
        this.#previews++;
        this.#stepLog.push(`${e.section}:${e.step}`);
        if (this.#phase !== 'stopping') this.#stageText = `Sampling ${e.step}/${e.steps}`;
        break;
      case 'section':
        if (this.#phase !== 'stopping') {
          this.#stageText = `Section ${e.section + 1} of ${e.sections} done: ${e.frames} frames (${e.seconds.toFixed(2)} s) so far.`;
        }
        break;
      case 'transformer':
        this.#transformer = e.report;
        break;
      case 'timing':
        // Stage times go to the console, where a speed report can be copied from.
        console.info(`FramePack ${e.what}: ${(e.ms / 1000).toFixed(2)} s`);
        break;
      case 'recovery':
        // The worker opened a new GPU device and goes on from the last finished section.
        this.#stageText = e.message;
        this.#sectionTimes = [];
        break;
      case 'video':
        this.#now = performance.now();
        this.#sectionTimes.push(this.#now);
        this.#setVideo(e.mp4, e.frames, e.section + 1);
        if (this.#video) this.#onVideo?.(this.#video);
        break;
      default: {
        const unhandled: never = e;
        throw new Error(`Unknown worker event ${(unhandled as { type: string }).type}`);
      }
    }
  }

  dispose(): void {
    this.#worker.terminate();
    if (this.#video) URL.revokeObjectURL(this.#video.url);
  }
}

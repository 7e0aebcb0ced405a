// FramePackApi for the browser: models fetched once into IndexedDB (the bundled tiny model from the app's own
// origin, the real ones from the official Hugging Face repositories or from a pack of converted weights at
// `packUrl`), converted to the stored format (weights/pack.ts: 4-bit and fp16, 14.1 GB for FramePack instead of the
// 42.4 GB download) as their bytes arrive, and read back from there by every job without converting anything again;
// one GPU device shared by ORT and our kernels, the job engine, and a WebCodecs video assembler that hands the UI a
// playable MP4 after every section. It runs inside the Web Worker (framepackWorker.ts exposes it over comlink) but
// needs nothing from the worker itself, so tests can also use it in a page (or in Node, for the model methods).

import { defaultTransformerBudget } from '../runtime/gpuOutOfMemory.ts';
import { JobBusyError, JobResumeError, JobStopped } from '../errors/engine.ts';
import { deleteJob, loadJob, saveJob } from './jobStore.ts';
import type { JobCheckpoint, JobEvent, JobSettings, RuntimeChoice } from './engine.ts';
import { runJobWithRecovery } from './jobRecovery.ts';
import type { Component, ModelSource } from './modelPackage.ts';
import type { FrameSink } from './framepackLoop.ts';
import type { CapabilityReport, FramePackApi, GenerateRequest, GenerateResult, ModelId, ModelStatus, WorkerEvent } from './protocol.ts';
import { requestGpu, explainCapabilities, type GpuContext } from '../runtime/device.ts';
import { deviceSpeedProbe } from '../runtime/speedProbe.ts';
import { subgroupMatrixUnavailableReason as q4TensorCoreProblem } from '../kernels/q4Matmul.ts';
import { subgroupMatrixUnavailableReason as attentionTensorCoreProblem } from '../kernels/flashAttention.ts';
import { setupOrt } from '../runtime/ort.ts';
import { downloadCheckpoint } from '../weights/download.ts';
import { httpFolderSource } from '../weights/httpSource.ts';
import { hubComponent } from '../weights/huggingFace.ts';
import { PACK_MANIFEST, PACK_VERSION, packFingerprint, parsePackManifest, passThrough, type PackManifest } from '../weights/pack.ts';
import { storedFolderSource } from '../weights/storeSource.ts';
import { indexedDbWeightStore, type WeightStore } from '../weights/weightCache.ts';
import { VideoAssembler } from '../video/videoAssembler.ts';
import { serializeError } from './serializeError.ts';
import { chooseEncoder } from '../video/videoCodec.ts';
import {
  HUB_NAMES, hubModelPlan, outdatedVersion, packModelPlan, PARTS, partReady, prepareStoredModel, storedModelSource,
  type HubModelId, type ModelPlan, type PartSpec,
} from './modelStore.ts';

export interface BrowserApiOptions {
  /** Folder URL of the bundled tiny model (its framepack.json and network folders). */
  tinyModelUrl: string;
  /** Where ORT's .wasm is served from (the build emits it); undefined lets ORT resolve it next to its own code. */
  wasmPaths?: string | { wasm: string };
  /** Hugging Face endpoint (a mirror, or the tests' local server) and token for gated repositories. */
  hubEndpoint?: string;
  hubToken?: string;
  /**
   * Folder URL of a pack of converted weights (`npm run convert`: manifest.json and its parts): the models its
   * manifest lists come from there, stored as they are, instead of from Hugging Face (or the bundled tiny model).
   */
  packUrl?: string;
  store?: WeightStore;
  /** Plan as if the GPU allowed at most this many bytes in one buffer (emulates a smaller GPU; diagnostics and tests). */
  maxGpuBufferBytes?: number;
  /** Activation dtype instead of the adapter's best (fp16 with shader-f16, else fp32). */
  dtype?: 'float32' | 'float16';
  /**
   * When the GPU device is destroyed, as a GPU reset would lose it: after a step (`section:step`, the step log's
   * form) or as a stage begins (its name: `text`, `vae-encode`, …), each used once, in order, across the jobs of
   * this worker (rehearses recovery; diagnostics and tests).
   */
  loseDeviceAt?: string[];
  /** The stage, as GpuOutOfMemoryError names it, that first asks for a buffer of the device's largest size (diagnostics). */
  oversizeBufferIn?: string;
}

interface ModelInfo {
  label: string;
  /** Approximate bytes the model takes once stored, shown before anything is stored. */
  approxBytes: number;
}

// Stored sizes (weights/pack.ts format, computed from the real shapes by test/unit/realSizes.test.ts): the
// transformer 7.84 GB, Llama 4.73 GB, SigLIP 0.83 GB, the VAE 0.49 GB, CLIP 0.25 GB. F1 shares all but its transformer.
const MODELS: Record<ModelId, ModelInfo> = {
  tiny: { label: 'Tiny demo model (random weights, 3 MB; its videos are noise)', approxBytes: 2.6e6 },
  framepack: { label: 'FramePack (HunyuanVideo I2V, back-to-front sampling; ≈ 42 GB download, ≈ 14.1 GB stored)', approxBytes: 14.1e9 },
  'framepack-f1': { label: 'FramePack-F1 (front-to-back sampling; ≈ 42 GB download, ≈ 14.1 GB stored)', approxBytes: 14.1e9 },
};

/** Store id of the tiny model's framepack.json and of a pack's manifest.json. */
const TINY_PACKAGE = 'tiny/framepack.json';
const PACK_MANIFEST_ID = `pack/${PACK_MANIFEST}`;

export class BrowserFramePack implements FramePackApi {
  private readonly store: WeightStore;
  private gpu: Promise<GpuContext> | null = null;
  private controller: AbortController | null = null;
  /** The transformer's default budget, probed once per device (runtime/gpuOutOfMemory.ts). */
  private budgets = new WeakMap<GPUDevice, Promise<number>>();
  /** What is left of options.loseDeviceAt. */
  private losses: string[];

  constructor(private readonly options: BrowserApiOptions) {
    this.store = options.store ?? indexedDbWeightStore();
    this.losses = [...(options.loseDeviceAt ?? [])];
  }

  /** The one GPU device of this worker; ORT is configured on it once. Throws NoWebGPUError / NoAdapterError. */
  private gpuContext(): Promise<GpuContext> {
    this.gpu ??= (async () => {
      const ctx = await requestGpu(typeof navigator === 'undefined' ? undefined : navigator.gpu);
      setupOrt({ device: ctx.device, wasmPaths: this.options.wasmPaths as string | undefined, threads: 1 });
      // A lost device is replaced on the next call (ORT takes the new one for its next sessions).
      void ctx.lost.then(() => { if (this.gpu === context) this.gpu = null; });
      return ctx;
    })();
    const context = this.gpu;
    this.gpu.catch(() => { this.gpu = null; }); // a later call may try again (e.g. after a driver update)
    return this.gpu;
  }

  private probedBudget(ctx: GpuContext): Promise<number> {
    let budget = this.budgets.get(ctx.device);
    if (!budget) this.budgets.set(ctx.device, (budget = defaultTransformerBudget(ctx.device, ctx.capabilities.isSoftware).then((b) => b.budgetBytes)));
    return budget;
  }

  async capabilities(): Promise<CapabilityReport> {
    const storage = await this.storageReport();
    let videoCodec: string | null = null;
    try {
      const choice = await chooseEncoder(256, 256, 16);
      videoCodec = `${choice.label} (${choice.config.codec}, ${choice.quantizer !== undefined ? 'per-frame quantizer' : 'bitrate'})`;
    } catch {
      videoCodec = null;
    }
    const dtypeOverride = this.options.dtype ?? null;
    let ctx: GpuContext;
    try {
      ctx = await this.gpuContext();
    } catch (e) {
      const hasApi = typeof navigator !== 'undefined' && !!navigator.gpu;
      return {
        webgpu: hasApi, gpu: null, explanation: [(e as Error).message], storage, videoCodec, problem: serializeError(e),
        dtypeOverride, tensorCoreProblem: null, speedProbe: null,
      };
    }
    const caps = ctx.capabilities;
    // The kernels' own checks at the real transformer's sizes (3072 wide, heads of 128), in f16.
    const tensorCoreProblem = q4TensorCoreProblem(ctx.device, { k: 3072, dtype: 'f16' }) ?? attentionTensorCoreProblem(ctx.device, { headDim: 128, dtype: 'f16' });
    // Once per device (memoized): the 4-bit GEMM on the path and dtype a job takes here, for the page's estimates.
    let speedProbe: CapabilityReport['speedProbe'] = null;
    let speedProbeProblem: string | undefined;
    try {
      speedProbe = await deviceSpeedProbe(ctx.device, caps.shaderF16 && dtypeOverride !== 'float32' ? 'f16' : 'f32');
    } catch (e) {
      speedProbeProblem = (e as Error).message;
    }
    return { webgpu: true, gpu: caps, explanation: explainCapabilities(caps), storage, videoCodec, dtypeOverride, tensorCoreProblem, speedProbe, speedProbeProblem };
  }

  private async storageReport(): Promise<CapabilityReport['storage']> {
    const s = typeof navigator === 'undefined' ? undefined : (navigator.storage as StorageManager | undefined);
    if (!s?.estimate) return { quota: null, usage: null, persisted: null };
    const e = await s.estimate();
    return { quota: e.quota ?? null, usage: e.usage ?? null, persisted: s.persisted ? await s.persisted() : null };
  }

  async models(): Promise<ModelStatus[]> {
    const stored = new Map((await this.store.listModels()).map((m) => [m.id, m]));
    const out: ModelStatus[] = [];
    for (const id of Object.keys(MODELS) as ModelId[]) {
      const ids = await this.storeIds(id);
      const parts = ids.map((i) => stored.get(i));
      const storedBytes = parts.reduce((n, p) => n + (p?.storedBytes ?? 0), 0);
      let outdated = false;
      for (const [k, p] of parts.entries()) if (p && outdatedVersion(await this.store.getModel(ids[k])) !== null) outdated = true;
      const cached = !outdated && parts.length > 0 && parts.every((p) => p?.complete);
      // A copy in an older stored format (e.g. the raw download of an earlier build) is never read: say so.
      const label = outdated ? `${MODELS[id].label} — stored in an older format; Generate converts it again` : MODELS[id].label;
      out.push({ id, label, cached, storedBytes, totalBytes: cached ? storedBytes : Math.max(MODELS[id].approxBytes, storedBytes) });
    }
    return out;
  }

  /** Store entries a model uses (without touching the network). */
  private async storeIds(id: ModelId): Promise<string[]> {
    const pack = await this.storedPackManifest();
    if (pack?.models[id]) {
      const components = pack.models[id].components as Record<Component, string>;
      return [PACK_MANIFEST_ID, ...PARTS.map((c) => `pack/${components[c]}`)];
    }
    if (id === 'tiny') return [TINY_PACKAGE, ...PARTS.map((c) => `tiny/${c}`)];
    return hubModelPlan(id).parts.map((p) => p.storeId);
  }

  async deleteModel(id: ModelId): Promise<void> {
    let ids = await this.storeIds(id);
    if (id !== 'tiny') {
      // FramePack and FramePack-F1 share every part but the transformer: keep what the other one still uses.
      const other = await this.storeIds(id === 'framepack' ? 'framepack-f1' : 'framepack');
      const stored = new Set((await this.store.listModels()).map((m) => m.id));
      const otherOwn = other.filter((i) => !ids.includes(i));
      if (otherOwn.some((i) => stored.has(i))) ids = ids.filter((i) => !other.includes(i));
    }
    for (const i of ids) await this.store.deleteModel(i);
  }

  async stop(): Promise<void> {
    this.controller?.abort(new JobStopped('Stopped; the finished sections are kept.'));
  }

  async deleteJob(jobId: string): Promise<void> {
    await deleteJob(jobId);
  }

  async generate(request: GenerateRequest, onEvent: (e: WorkerEvent) => void): Promise<GenerateResult> {
    if (this.controller) throw new JobBusyError();
    const controller = new AbortController();
    this.controller = controller;
    const signal = controller.signal;
    // Events go out without waiting for the page; a page that went away must not fail the job.
    const emit = (e: WorkerEvent) => {
      try {
        void Promise.resolve(onEvent(e)).catch(() => undefined);
      } catch {
        // the receiving side is gone
      }
    };
    let assembler: VideoAssembler | null = null;
    let last: { blob: Blob; frames: number } | null = null;
    let size = { width: 0, height: 0 };
    try {
      await this.gpuContext(); // first: no download for a browser that could not run the job
      const model = await this.prepareModel(request.model, emit, signal);
      signal.throwIfAborted();
      const stored = request.resume && request.jobId ? await loadJob(request.jobId) : undefined;
      if (request.resume && !stored) throw new JobResumeError('its saved state is no longer in this browser, or is of an older version');
      // A continued job runs with the settings it was started with, whatever the form says now.
      const settings: JobSettings = stored?.checkpoint.settings ??
        { ...request.settings, variant: request.model === 'framepack-f1' ? 'f1' : request.model === 'framepack' ? 'original' : request.settings.variant };
      const openRuntime = async (): Promise<RuntimeChoice> => {
        const ctx = await this.gpuContext();
        const limit = Math.min(ctx.capabilities.maxStorageBufferBindingSize, this.options.maxGpuBufferBytes ?? Infinity);
        return {
          provider: 'webgpu',
          dtype: this.options.dtype ?? (ctx.capabilities.shaderF16 ? 'float16' : 'float32'),
          // The tiny model runs the users' path too: 4-bit weights through the block plans on our kernels.
          quantized: true,
          transformerBudgetBytes: request.transformerBudgetBytes ?? await this.probedBudget(ctx),
          device: ctx.device,
          maxStorageBufferBindingSize: limit,
          deviceLost: ctx.lost,
          oversizeBufferIn: this.options.oversizeBufferIn,
        };
      };
      const latentWindow = settings.latentWindow ?? model.package.latentWindow;
      const video = VideoAssembler.withWebCodecs(settings.variant, latentWindow, { crf: request.crf });
      assembler = video;
      if (stored?.checkpoint.loop) await video.restore(stored.video, stored.checkpoint.loop.held);
      const jobId = request.jobId;
      // With a job id, a section's video goes out once its state is stored: an entry the page keeps for it can
      // always be continued.
      let pending: WorkerEvent | null = null;
      const sink: FrameSink = {
        async frames(final, held, placement, section) {
          await video.addFrames(final, held, placement);
          const v = await video.video();
          last = v;
          pending = { type: 'video', section, frames: v.frames, mp4: v.blob };
          if (!jobId) emit(pending);
        },
      };
      const checkpointed = async (c: JobCheckpoint) => {
        await saveJob(jobId!, c, await video.stored());
        if (pending) emit(pending);
        pending = null;
      };
      const onJobEvent = (e: JobEvent) => {
        if (e.type === 'plan') size = { width: e.width, height: e.height };
        emit(e);
        const at = e.type === 'step' ? `${e.section}:${e.step}` : e.type === 'stage' ? e.stage : null;
        if (at !== null && this.losses[0] === at) {
          this.losses.shift();
          void this.gpu?.then((ctx) => ctx.device.destroy());
        }
      };
      const result = await runJobWithRecovery(model, { image: request.image, endImage: request.endImage, settings }, sink, onJobEvent, {
        signal, openRuntime, resume: stored?.checkpoint, onCheckpoint: jobId ? checkpointed : undefined,
      });
      // A job continued after its last section was stored (the tab closed before it was marked done) has no new video.
      const done = (last as { blob: Blob; frames: number } | null) ?? (video.frames ? await video.video() : null);
      if (jobId) await deleteJob(jobId);
      return { mp4: done?.blob ?? null, frames: done?.frames ?? 0, width: result.width, height: result.height, stopped: false };
    } catch (e) {
      if (!signal.aborted) throw e;
      const kept = last as { blob: Blob; frames: number } | null;
      return { mp4: kept?.blob ?? null, frames: kept?.frames ?? 0, ...size, stopped: true };
    } finally {
      assembler?.close();
      this.controller = null;
    }
  }

  /**
   * The model read from the store, downloading (or resuming) and converting whatever part is not there yet. A part
   * stored in an older format is converted again (and says so in a load event). Public for tests in Node.
   */
  async prepareModel(id: ModelId, emit: (e: WorkerEvent) => void, signal: AbortSignal): Promise<ModelSource> {
    const plan = await this.modelPlan(id, signal);
    await prepareStoredModel(this.store, plan, {
      signal,
      onOutdated: (part, version) => {
        const note = `${part.component}: stored in an older format (version ${version}; this app reads ${PACK_VERSION}), converting it again`;
        console.info(`${part.where}: ${note}`);
        emit({ type: 'load', phase: 'convert', file: note, loaded: 0, total: 0, component: note, part: 0, parts: plan.parts.length });
      },
      onProgress: (part, i, n, p) => emit({ type: 'load', phase: 'download', file: p.file, loaded: p.loaded, total: p.total, component: part.component, part: i, parts: n }),
    });
    return storedModelSource(this.store, plan);
  }

  /** Which parts a model has and where each comes from. Touches the network only for an uncached framepack.json or pack manifest. */
  private async modelPlan(id: ModelId, signal: AbortSignal): Promise<ModelPlan> {
    if (this.options.packUrl) {
      const manifest = await this.packManifest(signal);
      if (manifest.models[id]) {
        const base = this.packBase();
        return packModelPlan(manifest, id, base, (folder) => httpFolderSource(new URL(`${folder.replace(/\/$/, '')}/`, base).href, { signal }));
      }
    }
    if (id === 'tiny') return this.tinyPlan(signal);
    return hubModelPlan(id as HubModelId, { endpoint: this.options.hubEndpoint, token: this.options.hubToken, signal });
  }

  private packBase(): string {
    const url = this.options.packUrl!;
    return new URL(url.endsWith('/') ? url : `${url}/`, pageUrl()).href;
  }

  /** The pack's manifest as stored (read without the network), or undefined. */
  private async storedPackManifest(): Promise<PackManifest | undefined> {
    if (!this.options.packUrl) return undefined;
    const record = await this.store.getModel(PACK_MANIFEST_ID);
    if (!(record?.complete && record.fingerprint === packFingerprint(this.packBase()) && record.pack === PACK_VERSION)) return undefined;
    const folder = await storedFolderSource(this.store, PACK_MANIFEST_ID, { weightsFile: null, config: false, where: this.packBase(), requirePack: true });
    const src = await folder(PACK_MANIFEST);
    return parsePackManifest(JSON.parse(new TextDecoder().decode(await src.read(0, await src.size()))), this.packBase());
  }

  /** The pack's manifest, fetched and stored on first use (so the page works offline once the pack is stored). */
  private async packManifest(signal: AbortSignal): Promise<PackManifest> {
    const stored = await this.storedPackManifest();
    if (stored) return stored;
    const base = this.packBase();
    const folder = httpFolderSource(base, { signal });
    // Checked before anything is stored: a pack of another version is refused with PackVersionError.
    const src = await folder(PACK_MANIFEST);
    parsePackManifest(JSON.parse(new TextDecoder().decode(await src.read(0, await src.size()))), base);
    await downloadCheckpoint({
      folder, where: base, weightsFile: null, configFile: null, extraFiles: [PACK_MANIFEST],
      store: this.store, model: PACK_MANIFEST_ID, fingerprint: packFingerprint(base), convert: passThrough, pack: PACK_VERSION, signal,
    });
    return (await this.storedPackManifest())!;
  }

  private async tinyPlan(signal: AbortSignal): Promise<ModelPlan> {
    const base = new URL(this.options.tinyModelUrl.endsWith('/') ? this.options.tinyModelUrl : `${this.options.tinyModelUrl}/`, pageUrl()).href;
    // The store is keyed by where the model came from, by which model this build ships (so a regenerated tiny model
    // replaces the stored copy even at the same URL) and by the stored format's version.
    const version = typeof __TINY_MODEL_HASH__ === 'string' ? __TINY_MODEL_HASH__ : 'unversioned';
    const fingerprintOf = (url: string) => packFingerprint(`${url}#${version}`);
    const record = await this.store.getModel(TINY_PACKAGE);
    const packagePart: PartSpec = {
      component: 'feature_extractor', folder: '', storeId: TINY_PACKAGE, fingerprint: fingerprintOf(base), where: base,
      weightsFile: null, configFile: null, extraFiles: ['framepack.json'], source: () => httpFolderSource(base, { signal }),
    };
    if (!partReady(record, packagePart)) {
      await downloadCheckpoint({
        folder: packagePart.source(), where: base, weightsFile: null, configFile: null, extraFiles: ['framepack.json'],
        store: this.store, model: TINY_PACKAGE, fingerprint: packagePart.fingerprint, convert: passThrough, pack: PACK_VERSION, signal,
      });
    }
    const folder = await storedFolderSource(this.store, TINY_PACKAGE, { weightsFile: null, config: false, where: base, requirePack: true });
    const src = await folder('framepack.json');
    const packageJson = JSON.parse(new TextDecoder().decode(await src.read(0, await src.size()))) as Record<string, unknown>;
    const components = packageJson.components as Record<Component, string>;
    const parts: PartSpec[] = PARTS.map((component) => {
      const spec = hubComponent(HUB_NAMES[component]);
      const url = new URL(`${components[component].replace(/\/$/, '')}/`, base).href;
      return {
        component, folder: components[component], storeId: `tiny/${component}`, fingerprint: fingerprintOf(url), where: url,
        weightsFile: spec.weights, configFile: spec.config, extraFiles: spec.files,
        source: () => httpFolderSource(url, { signal }),
      };
    });
    return { packageJson, parts };
  }
}

/** The page's (or worker's) address, the base of relative model URLs; none in Node, where the URLs are absolute. */
function pageUrl(): string | undefined {
  return typeof self !== 'undefined' && self.location ? self.location.href : undefined;
}

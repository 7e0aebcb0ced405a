// FramePackApi for the browser: models fetched once into IndexedDB (the bundled tiny model from the app's own
// origin, the real ones from the official Hugging Face repositories) and read back from there, one GPU device
// shared by ORT and our kernels, the job engine, and a WebCodecs video assembler that hands the UI a playable MP4
// after every section. It runs inside the Web Worker (framepackWorker.ts exposes it over comlink) but needs
// nothing from the worker itself, so tests can also use it in a page.

import { JobBusyError, JobStopped } from '../errors/engine.ts';
import { runJob, type JobEvent, type JobSettings, type RuntimeChoice } from './engine.ts';
import { openModelSource, type Component, type ModelSource } from './modelPackage.ts';
import type { FrameSink } from './framepackLoop.ts';
import type { CapabilityReport, FramePackApi, GenerateRequest, GenerateResult, ModelId, ModelStatus, WorkerEvent } from './protocol.ts';
import { requestGpu, explainCapabilities, type GpuContext } from '../runtime/device.ts';
import { setupOrt } from '../runtime/ort.ts';
import { downloadCheckpoint } from '../weights/download.ts';
import { httpFolderSource } from '../weights/httpSource.ts';
import { hubComponent, hubDownload, type ComponentName } from '../weights/huggingFace.ts';
import { storedFolderSource } from '../weights/storeSource.ts';
import { indexedDbWeightStore, type ConvertedTensor, type WeightStore } from '../weights/weightCache.ts';
import type { CheckpointTensor, FolderSource } from '../weights/checkpoint.ts';
import { VideoAssembler } from '../video/videoAssembler.ts';
import { serializeError } from './serializeError.ts';
import { chooseEncoder } from '../video/videoCodec.ts';

export interface BrowserApiOptions {
  /** Folder URL of the bundled tiny model (its framepack.json and network folders). */
  tinyModelUrl: string;
  /** Where ORT's .wasm is served from (the build emits it); undefined lets ORT resolve it next to its own code. */
  wasmPaths?: string | { wasm: string };
  /** Hugging Face endpoint (a mirror, or the tests' local server) and token for gated repositories. */
  hubEndpoint?: string;
  hubToken?: string;
  store?: WeightStore;
  /** Plan as if the GPU allowed at most this many bytes in one buffer (emulates a smaller GPU; diagnostics and tests). */
  maxGpuBufferBytes?: number;
  /** Activation dtype instead of the adapter's best (fp16 with shader-f16, else fp32). */
  dtype?: 'float32' | 'float16';
}

/** The parts of a model in the order a job needs them, so an interrupted download has the early stages ready. */
const PARTS: Component[] = ['text_encoder', 'tokenizer', 'text_encoder_2', 'tokenizer_2', 'image_encoder', 'feature_extractor', 'vae', 'transformer'];

/** The Hugging Face manifest entry that names each part's files (the tiny model copies that layout). */
const HUB_NAMES: Record<Component, ComponentName> = {
  transformer: 'transformer-original', text_encoder: 'text_encoder', tokenizer: 'tokenizer', text_encoder_2: 'text_encoder_2',
  tokenizer_2: 'tokenizer_2', vae: 'vae', image_encoder: 'image_encoder', feature_extractor: 'feature_extractor',
};

interface ModelInfo {
  label: string;
  /** Approximate bytes of the whole download, shown before anything is stored. */
  approxBytes: number;
}

const MODELS: Record<ModelId, ModelInfo> = {
  tiny: { label: 'Tiny demo model (random weights, 3 MB; its videos are noise)', approxBytes: 3.3e6 },
  framepack: { label: 'FramePack (HunyuanVideo I2V, back-to-front sampling; ≈ 43 GB download)', approxBytes: 43e9 },
  'framepack-f1': { label: 'FramePack-F1 (front-to-back sampling; ≈ 43 GB download)', approxBytes: 43e9 },
};

/** One stored part: which cache entry holds it and how the runners open it. */
interface Part {
  component: Component;
  /** Its folder as framepack.json names it. */
  folder: string;
  storeId: string;
  fingerprint: string;
  weightsFile: string | null;
  configFile: string | null;
  extraFiles: string[];
  /** Opens the source folder (network) for a download. */
  source: () => FolderSource;
  where: string;
}

interface ModelPlan {
  /** framepack.json's content (downloaded for the tiny model, written here for the hub models). */
  packageJson: Record<string, unknown> | null;
  packagePart: { storeId: string; fingerprint: string; url: string } | null;
  parts: Part[];
}

const identity = (info: CheckpointTensor, bytes: Uint8Array): ConvertedTensor[] => [{ name: info.name, dtype: info.dtype, shape: info.shape, data: bytes }];

export class BrowserFramePack implements FramePackApi {
  private readonly store: WeightStore;
  private gpu: Promise<GpuContext> | null = null;
  private controller: AbortController | null = null;

  constructor(private readonly options: BrowserApiOptions) {
    this.store = options.store ?? indexedDbWeightStore();
  }

  /** The one GPU device of this worker; ORT is configured on it once. Throws NoWebGPUError / NoAdapterError. */
  private gpuContext(): Promise<GpuContext> {
    this.gpu ??= (async () => {
      const ctx = await requestGpu(typeof navigator === 'undefined' ? undefined : navigator.gpu);
      setupOrt({ device: ctx.device, wasmPaths: this.options.wasmPaths as string | undefined, threads: 1 });
      return ctx;
    })();
    this.gpu.catch(() => { this.gpu = null; }); // a later call may try again (e.g. after a driver update)
    return this.gpu;
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
    try {
      const ctx = await this.gpuContext();
      return { webgpu: true, gpu: ctx.capabilities, explanation: explainCapabilities(ctx.capabilities), storage, videoCodec };
    } catch (e) {
      const hasApi = typeof navigator !== 'undefined' && !!navigator.gpu;
      return { webgpu: hasApi, gpu: null, explanation: [(e as Error).message], storage, videoCodec, problem: serializeError(e) };
    }
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
      const cached = parts.length > 0 && parts.every((p) => p?.complete);
      out.push({ id, label: MODELS[id].label, cached, storedBytes, totalBytes: cached ? storedBytes : Math.max(MODELS[id].approxBytes, storedBytes) });
    }
    return out;
  }

  /** Cache entries a model uses. */
  private async storeIds(id: ModelId): Promise<string[]> {
    if (id === 'tiny') return ['tiny/framepack.json', ...PARTS.map((c) => `tiny/${c}`)];
    return PARTS.map((c) => `hf/${c === 'transformer' ? (id === 'framepack' ? 'transformer-original' : 'transformer-f1') : HUB_NAMES[c]}`);
  }

  async deleteModel(id: ModelId): Promise<void> {
    let ids = await this.storeIds(id);
    if (id !== 'tiny') {
      // FramePack and FramePack-F1 share every part but the transformer: keep what the other one still uses.
      const other = id === 'framepack' ? 'framepack-f1' : 'framepack';
      const stored = new Set((await this.store.listModels()).map((m) => m.id));
      const otherTransformer = `hf/${other === 'framepack' ? 'transformer-original' : 'transformer-f1'}`;
      if (stored.has(otherTransformer)) ids = ids.filter((i) => i.includes('transformer'));
    }
    for (const i of ids) await this.store.deleteModel(i);
  }

  async stop(): Promise<void> {
    this.controller?.abort(new JobStopped('Stopped; the finished sections are kept.'));
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
      const ctx = await this.gpuContext(); // first: no download for a browser that could not run the job
      const model = await this.prepareModel(request.model, emit, signal);
      signal.throwIfAborted();
      const settings: JobSettings = { ...request.settings, variant: request.model === 'framepack-f1' ? 'f1' : request.model === 'framepack' ? 'original' : request.settings.variant };
      const limit = Math.min(ctx.capabilities.maxStorageBufferBindingSize, this.options.maxGpuBufferBytes ?? Infinity);
      const runtime: RuntimeChoice = {
        provider: 'webgpu',
        dtype: this.options.dtype ?? (ctx.capabilities.shaderF16 ? 'float16' : 'float32'),
        // The tiny model runs the users' path too: 4-bit weights through the block plans on our kernels.
        quantized: true,
        transformerBudgetBytes: request.transformerBudgetBytes,
        device: ctx.device,
        maxStorageBufferBindingSize: limit,
      };
      const latentWindow = settings.latentWindow ?? model.package.latentWindow;
      const video = VideoAssembler.withWebCodecs(settings.variant, latentWindow, { crf: request.crf });
      assembler = video;
      const sink: FrameSink = {
        async frames(final, held, placement, section) {
          await video.addFrames(final, held, placement);
          const v = await video.video();
          last = v;
          emit({ type: 'video', section, frames: v.frames, mp4: v.blob });
        },
      };
      const onJobEvent = (e: JobEvent) => {
        if (e.type === 'plan') size = { width: e.width, height: e.height };
        emit(e);
      };
      const result = await runJob(model, { image: request.image, endImage: request.endImage, settings }, runtime, sink, onJobEvent, signal);
      const done = last as { blob: Blob; frames: number } | null;
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

  /** The model read from the cache, downloading (or resuming) whatever part is not there yet. */
  private async prepareModel(id: ModelId, emit: (e: WorkerEvent) => void, signal: AbortSignal): Promise<ModelSource> {
    const plan = await this.modelPlan(id, signal);
    const pending: Part[] = [];
    for (const part of plan.parts) {
      const record = await this.store.getModel(part.storeId);
      if (!(record?.complete && record.fingerprint === part.fingerprint)) pending.push(part);
    }
    for (const [i, part] of pending.entries()) {
      await downloadCheckpoint({
        folder: part.source(),
        where: part.where,
        weightsFile: part.weightsFile,
        configFile: part.configFile,
        extraFiles: part.extraFiles,
        store: this.store,
        model: part.storeId,
        fingerprint: part.fingerprint,
        convert: identity,
        signal,
        onProgress: (p) => emit({ type: 'load', phase: 'download', file: p.file, loaded: p.loaded, total: p.total, component: part.component, part: i + 1, parts: pending.length }),
      });
    }
    const folders = new Map<string, FolderSource>();
    for (const part of plan.parts) {
      folders.set(part.folder, await storedFolderSource(this.store, part.storeId, { weightsFile: part.weightsFile, config: part.configFile !== null, where: part.where }));
    }
    const packageText = JSON.stringify(plan.packageJson);
    return openModelSource(async (path) => {
      if (path === 'framepack.json') {
        const bytes = new TextEncoder().encode(packageText);
        return { name: 'framepack.json', size: async () => bytes.length, read: async (o, n) => bytes.slice(o, o + n) };
      }
      // The longest folder that prefixes the path owns it (folders may nest: HunyuanVideo/text_encoder).
      const folder = [...folders.keys()].filter((f) => path.startsWith(`${f.replace(/\/$/, '')}/`)).sort((a, b) => b.length - a.length)[0];
      if (folder === undefined) throw new Error(`No part of the model holds ${path}.`);
      return folders.get(folder)!(path.slice(folder.replace(/\/$/, '').length + 1));
    });
  }

  /** Which parts a model has and where each comes from. Touches the network only for an uncached tiny framepack.json. */
  private async modelPlan(id: ModelId, signal: AbortSignal): Promise<ModelPlan> {
    if (id === 'tiny') return this.tinyPlan(signal);
    const hub = { endpoint: this.options.hubEndpoint, token: this.options.hubToken, signal };
    const components: Record<string, string> = {};
    const parts: Part[] = PARTS.map((component) => {
      const name: ComponentName = component === 'transformer' ? (id === 'framepack' ? 'transformer-original' : 'transformer-f1') : HUB_NAMES[component];
      components[component] = name;
      const spec = hubComponent(name);
      const download = () => hubDownload(name, hub);
      const where = download().where;
      return {
        component, folder: name, storeId: `hf/${name}`, fingerprint: where, where,
        weightsFile: spec.weights, configFile: spec.config, extraFiles: spec.files,
        source: () => download().folder,
      };
    });
    const packageJson = { name: id === 'framepack' ? 'FramePack' : 'FramePack-F1', description: 'lllyasviel/FramePack on HunyuanVideo', components };
    return { packageJson, packagePart: null, parts };
  }

  private async tinyPlan(signal: AbortSignal): Promise<ModelPlan> {
    const base = new URL(this.options.tinyModelUrl.endsWith('/') ? this.options.tinyModelUrl : `${this.options.tinyModelUrl}/`, self.location.href).href;
    // The cache is keyed by where the model came from and by which model this build ships, so a regenerated tiny
    // model replaces the stored copy even at the same URL.
    const version = typeof __TINY_MODEL_HASH__ === 'string' ? __TINY_MODEL_HASH__ : 'unversioned';
    const fingerprintOf = (url: string) => `${url}#${version}`;
    const packageId = 'tiny/framepack.json';
    let record = await this.store.getModel(packageId);
    if (!(record?.complete && record.fingerprint === fingerprintOf(base))) {
      await downloadCheckpoint({
        folder: httpFolderSource(base, { signal }), where: base, weightsFile: null, configFile: null, extraFiles: ['framepack.json'],
        store: this.store, model: packageId, fingerprint: fingerprintOf(base), convert: identity, signal,
      });
      record = await this.store.getModel(packageId);
    }
    const folder = await storedFolderSource(this.store, packageId, { weightsFile: null, config: false, where: base });
    const src = await folder('framepack.json');
    const packageJson = JSON.parse(new TextDecoder().decode(await src.read(0, await src.size()))) as Record<string, unknown>;
    const components = packageJson.components as Record<Component, string>;
    const parts: Part[] = PARTS.map((component) => {
      const spec = hubComponent(HUB_NAMES[component]);
      const url = new URL(`${components[component].replace(/\/$/, '')}/`, base).href;
      return {
        component, folder: components[component], storeId: `tiny/${component}`, fingerprint: fingerprintOf(url), where: url,
        weightsFile: spec.weights, configFile: spec.config, extraFiles: spec.files,
        source: () => httpFolderSource(url, { signal }),
      };
    });
    return { packageJson, packagePart: { storeId: packageId, fingerprint: fingerprintOf(base), url: base }, parts };
  }
}

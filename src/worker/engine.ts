// The job engine: one FramePack job from an image and a prompt to frames, with typed progress events and
// cancellation. Memory is staged as the architecture says — text encoders, then SigLIP and the VAE encoder, each
// released after use; then the transformer and the VAE decoder for the sections. It is environment-neutral: the
// Web Worker and the Node CLI both call runJob with their own model source and frame sink.

import type { Tensor } from '../pipeline/tensor.ts';
import type { RgbImage } from '../pipeline/resize.ts';
import { resizeAndCenterCrop, siglipPixelValues, vaeInputPixels } from '../pipeline/resize.ts';
import { findNearestBucket } from '../pipeline/buckets.ts';
import type { JobSettings } from '../pipeline/jobSettings.ts';
import { LlamaTokenizer } from '../pipeline/llamaTokenizer.ts';
import { ClipTokenizer } from '../pipeline/clipTokenizer.ts';
import { encodeLlamaPrompt } from '../pipeline/promptTemplate.ts';
import { sectionCount } from '../pipeline/sectionPlan.ts';
import { latentPreview, type PreviewImage } from '../pipeline/latentPreview.ts';
import { distilledGuidanceValue, type GuidanceBranch, type ReferenceDtype } from '../pipeline/fmWrapper.ts';
import { videoFramesAfter } from '../pipeline/frameCount.ts';
import type { ExecutionProvider } from '../runtime/ort.ts';
import { WeightResidency } from '../runtime/residency.ts';
import { guardGpuMemory } from '../runtime/gpuOutOfMemory.ts';
import type { DeviceLostError } from '../errors/gpu.ts';
import { JobResumeError } from '../errors/engine.ts';
import { createLlamaTextEncoder, createClipTextEncoder } from './textEncoders.ts';
import { createSiglipImageEncoder } from './imageEncoder.ts';
import { createVae } from './vae.ts';
import { createDiT } from './dit.ts';
import { sectionVelocityModel, type Conditioning } from './ditSection.ts';
import { runFramePackLoop, type FrameSink, type LoopState } from './framepackLoop.ts';
import { componentFolder, openComponent, readText, type ModelSource } from './modelPackage.ts';

// The settings and their defaults live in pipeline/ so the page can use them without importing this engine.
export { DEFAULT_SETTINGS, type JobSettings, type ModelVariant } from '../pipeline/jobSettings.ts';

export interface RuntimeChoice {
  provider: ExecutionProvider;
  dtype: 'float32' | 'float16';
  /** 4-bit large linears in the transformer and the Llama encoder. */
  quantized: boolean;
  /** Bytes of transformer weights kept on the GPU; the rest stream (Infinity: all resident). */
  transformerBudgetBytes: number;
  /** The transformer's kernel path on WebGPU: 'auto' (the device's best), or forced for benches and comparisons. */
  kernelPath?: 'auto' | 'portable' | 'subgroup-matrix';
  /** The device ORT shares (for residency and the VAE's kernels); null on the wasm EP. */
  device: GPUDevice | null;
  /** GPU bytes the VAE may use, which picks its spatial tiles (worker/vae.ts); default 6 GB (diffusers' tiles at 640). */
  vaeBudgetBytes?: number;
  maxStorageBufferBindingSize: number;
  /** Settles when `device` is lost (runtime/device.ts GpuContext.lost): a job failing after that reports the loss. */
  deviceLost?: Promise<DeviceLostError>;
  /** Diagnostics: the stage (as GpuOutOfMemoryError names it) that first asks for a buffer of the device's largest size. */
  oversizeBufferIn?: string;
}

/** Runs a stage's GPU work in an out-of-memory scope (runtime/gpuOutOfMemory.ts), named as the error will name it. */
function guardStage<T>(runtime: RuntimeChoice, stage: string, work: () => Promise<T>): Promise<T> {
  return guardGpuMemory(runtime.device, stage, work, runtime.oversizeBufferIn === stage);
}

export type JobStage = 'text' | 'image' | 'vae-encode' | 'sampling' | 'decode' | 'done';

export type JobEvent =
  | { type: 'stage'; stage: JobStage; message: string }
  | { type: 'plan'; sections: number; frames: number; width: number; height: number; fps: number }
  | { type: 'step'; section: number; sections: number; step: number; steps: number; etaMs: number | null; preview: PreviewImage }
  | { type: 'section'; section: number; sections: number; frames: number; seconds: number }
  /** How the transformer ran so far (after every section): its blocks' executor and kernels, and what it dispatched. */
  | { type: 'transformer'; report: TransformerReport }
  /** A stage's wall time, sent as it ends (benchmarks and the console; the page's progress comes from the others). */
  | { type: 'timing'; what: TimedStage; ms: number }
  /** The GPU device was lost and the job goes on from its last finished section on a new one (worker/jobRecovery.ts). */
  | { type: 'recovery'; attempt: number; attempts: number; fromSection: number; message: string };

/** The stages runJob times: each text encoder per prompt, SigLIP, loading the VAE and the transformer, the encode, each decode. */
export type TimedStage = 'llama' | 'clip' | 'siglip' | 'load' | 'vae-encode' | 'decode';

/** Runs `work` and reports its wall time as a timing event. */
async function timed<T>(what: TimedStage, onEvent: (e: JobEvent) => void, work: () => Promise<T>): Promise<T> {
  const t0 = performance.now();
  const out = await work();
  onEvent({ type: 'timing', what, ms: performance.now() - t0 });
  return out;
}

export interface TransformerReport {
  executor: 'webgpu' | 'cpu';
  /** The kernel serving each kind of block stage, e.g. linear 'q4/subgroup-matrix'. */
  kernels: Record<'linear' | 'adaParams' | 'attention', string>;
  /** Dispatches per kind of kernel (models/ditBlocks.ts planDispatches names them). */
  dispatches: { linear: number; adaParams: number; attention: number; fused: number };
  /** DiT calls, and those that ran the blocks (the rest TeaCache skipped). */
  calls: number;
  blockCalls: number;
}

export interface JobInput {
  image: RgbImage;
  /** The original model's end frame (anchors the first generated section). */
  endImage?: RgbImage;
  settings: JobSettings;
}

export interface JobResult {
  sections: number;
  frames: number;
  width: number;
  height: number;
}

/** What the stages before sampling produce: all a job's sections need besides the networks and the loop's state. */
export interface JobConditioning {
  width: number;
  height: number;
  positive: Omit<Conditioning, 'imageEmbeddings'>;
  negative?: Omit<Conditioning, 'imageEmbeddings'>;
  imageEmbeddings: Tensor;
  startLatent: Tensor;
  endLatent?: Tensor;
}

/**
 * A job between two of its stages: the settings it runs with, the encoders' results, and the loop's state after
 * its last finished section (null before the first). runJob hands one out after the encoders and after every
 * section; a job started from one skips what it holds (worker/jobStore.ts keeps them in the page, worker/jobState.ts
 * writes them as bytes).
 */
export interface JobCheckpoint {
  settings: JobSettings;
  conditioning: JobConditioning;
  loop: LoopState | null;
}

export interface JobOptions {
  signal?: AbortSignal;
  /** Go on from this checkpoint (its settings must be the input's): no encoder runs, no finished section again. */
  resume?: JobCheckpoint;
  /** Called with each new checkpoint; the job waits for it (a store that must not fall behind). */
  onCheckpoint?(checkpoint: JobCheckpoint): void | Promise<void>;
}

/** Text encodings the DiT needs, for one prompt. */
async function encodePrompt(model: ModelSource, prompt: string, runtime: RuntimeChoice, onEvent: (e: JobEvent) => void): Promise<Omit<Conditioning, 'imageEmbeddings'>> {
  const pkg = model.package;
  const tokenizer = LlamaTokenizer.fromTokenizerJson(JSON.parse(await readText(await componentFolder(model, 'tokenizer')('tokenizer.json'))));
  const tokens = encodeLlamaPrompt(tokenizer, prompt, 256, pkg.llamaCropStart);
  const textStates = await timed('llama', onEvent, () => guardStage(runtime, 'the Llama text encoder', async (): Promise<Tensor> => {
    const llama = await createLlamaTextEncoder(await openComponent(model, 'text_encoder'), { provider: runtime.provider, dtype: runtime.dtype, quantized: runtime.quantized });
    try {
      const out = await llama.run(tokens.ids);
      const [, n, d] = out.hiddenStatesM3.shape;
      // Keep the states after the crop: the prompt's tokens (and its closing <|eot_id|>).
      return { data: out.hiddenStatesM3.data.slice(tokens.cropStart * d, n * d), shape: [1, n - tokens.cropStart, d] };
    } finally {
      await llama.release();
    }
  }));
  const clipFolder = componentFolder(model, 'tokenizer_2');
  const clipTokenizer = ClipTokenizer.fromFiles(await readText(await clipFolder('vocab.json')), await readText(await clipFolder('merges.txt')));
  const pooled = await timed('clip', onEvent, () => guardStage(runtime, 'the CLIP text encoder', async () => {
    const clip = await createClipTextEncoder(await openComponent(model, 'text_encoder_2'), { provider: runtime.provider, dtype: runtime.dtype, quantized: false });
    try {
      return (await clip.run(clipTokenizer.encode(prompt))).pooled;
    } finally {
      await clip.release();
    }
  }));
  return { textStates, pooled };
}

/**
 * Runs one job. Events report progress; frames go to `sink` as they become final, so a stopped job keeps every
 * finished section. Throws the signal's reason when aborted, DeviceLostError when the GPU device was lost during it
 * (whatever the failing GPU call said), JobResumeError for a checkpoint of other settings, and the runners' typed
 * errors otherwise.
 */
export async function runJob(
  model: ModelSource,
  input: JobInput,
  runtime: RuntimeChoice,
  sink: FrameSink,
  onEvent: (e: JobEvent) => void,
  options: JobOptions = {},
): Promise<JobResult> {
  const { signal } = options;
  if (options.resume && !sameSettings(options.resume.settings, input.settings)) throw new JobResumeError('its settings differ from this job\'s');
  try {
    return await runStages(model, input, runtime, sink, onEvent, options);
  } catch (e) {
    if (signal?.aborted || !runtime.deviceLost) throw e;
    // A lost device fails the next GPU call with its own message; lost settles around the same time.
    const lost = await Promise.race([runtime.deviceLost, new Promise<null>((done) => setTimeout(() => done(null), LOSS_GRACE_MS))]);
    throw lost ?? e;
  }
}

/** How long a failed job waits for the device's lost promise before reporting the failure as it is. */
const LOSS_GRACE_MS = 250;

/** Settings compared as stored (JSON), so a checkpoint read back from disk or IndexedDB compares equal. */
function sameSettings(a: JobSettings, b: JobSettings): boolean {
  const canonical = (x: JobSettings) => JSON.stringify(Object.entries(x).sort(([p], [q]) => (p < q ? -1 : 1)));
  return canonical(a) === canonical(b);
}

async function runStages(
  model: ModelSource,
  input: JobInput,
  runtime: RuntimeChoice,
  sink: FrameSink,
  onEvent: (e: JobEvent) => void,
  options: JobOptions,
): Promise<JobResult> {
  const { signal, resume } = options;
  const pkg = model.package;
  const s = input.settings;
  const latentWindow = s.latentWindow ?? pkg.latentWindow;
  const sections = sectionCount(s.seconds, latentWindow, pkg.fps);
  const { width, height } = resume?.conditioning ?? s.bucket ?? findNearestBucket(input.image.height, input.image.width, pkg.buckets);
  onEvent({ type: 'plan', sections, frames: videoFramesAfter(s.variant, sections, sections, latentWindow), width, height, fps: pkg.fps });
  const referenceDtype: ReferenceDtype = runtime.dtype === 'float16' ? 'bfloat16' : 'float32';

  // 1–2. Text and image encoders, each released before the next network loads (skipped when resuming).
  const encoded = resume ? null : await encodeTextAndImage(model, input, width, height, runtime, onEvent, signal);

  // 3. The VAE and the transformer stay loaded for the sections; the VAE first encodes the start (and end) frame.
  if (!resume) onEvent({ type: 'stage', stage: 'vae-encode', message: 'VAE encoding …' });
  const loadStart = performance.now();
  // Each stage's allocations and first dispatches run in an out-of-memory scope (runtime/gpuOutOfMemory.ts).
  const guard = <T>(stage: string, work: () => Promise<T>) => guardStage(runtime, stage, work);
  const vae = await createVae(await openComponent(model, 'vae'), {
    provider: runtime.provider, dtype: runtime.dtype, maxTensorBytes: runtime.maxStorageBufferBindingSize,
    device: runtime.device ?? undefined, memoryBudgetBytes: runtime.vaeBudgetBytes,
  });
  const dit = await guard('loading the transformer', async () => createDiT(await openComponent(model, 'transformer'), {
    provider: runtime.provider,
    dtype: runtime.dtype,
    quantized: runtime.quantized,
    residency: runtime.device ? new WeightResidency(runtime.device, runtime.transformerBudgetBytes) : undefined,
    kernelPath: runtime.kernelPath,
  }));
  onEvent({ type: 'timing', what: 'load', ms: performance.now() - loadStart });
  try {
    let conditioning: JobConditioning;
    if (resume) {
      conditioning = resume.conditioning;
    } else {
      const { start, end, ...rest } = encoded!;
      // The posterior mean × scaling factor (§4.3).
      const latents = await timed('vae-encode', onEvent, () => guard('the VAE encoder', async () => ({
        startLatent: (await vae.encode(vaeInputPixels(start))).latent,
        endLatent: end ? (await vae.encode(vaeInputPixels(end))).latent : undefined,
      })));
      conditioning = { width, height, ...rest, ...latents };
      signal?.throwIfAborted();
      await options.onCheckpoint?.({ settings: s, conditioning, loop: null });
    }
    const { positive, negative, imageEmbeddings, startLatent, endLatent } = conditioning;

    // 4. Sections: the transformer and the decoder alternate; frames reach the sink as they become final.
    onEvent({ type: 'stage', stage: 'sampling', message: resume?.loop ? `Going on from section ${resume.loop.sectionsDone + 1} …` : 'Start sampling …' });
    const guidance = distilledGuidanceValue(s.distilledGuidance, referenceDtype);
    const stepTimes: number[] = [];
    let last = performance.now();
    const totalSteps = sections * s.steps;
    const calls = { all: 0, blocks: 0 };
    const report = (): TransformerReport => ({
      executor: dit.blocks.executor, kernels: { ...dit.blocks.kernels }, dispatches: { ...dit.blocks.dispatches }, calls: calls.all, blockCalls: calls.blocks,
    });
    await runFramePackLoop(
      { variant: s.variant, sections, latentWindow, steps: s.steps, seed: s.seed, cfg: s.cfg, cfgRescale: s.cfgRescale, referenceDtype },
      startLatent,
      {
        sectionModel: async ({ layout, context, latentShape }) => {
          const model = sectionVelocityModel(dit, layout, context, latentShape, {
            positive: { ...positive, imageEmbeddings },
            negative: negative ? { ...negative, imageEmbeddings } : undefined,
          }, {
            guidance, steps: s.steps, teacacheThreshold: s.teacache ? s.teacacheThreshold : null, signal,
            onCall(_branch, computed) {
              calls.all++;
              if (computed) calls.blocks++;
            },
          });
          // Every call, not only the first: streamed blocks and TeaCache's buffers are made as the section goes.
          return Object.assign((x: Float32Array, t: number, branch: GuidanceBranch) => guard('the transformer, sampling', () => model(x, t, branch)), { release: model.release });
        },
        decode: async (latents) => {
          onEvent({ type: 'stage', stage: 'decode', message: 'VAE decoding …' });
          return timed('decode', onEvent, () => guard('the VAE decoder', () => vae.decodeLatents(latents)));
        },
      },
      {
        async frames(final, held, placement, k) {
          await sink.frames(final, held, placement, k);
          const frames = videoFramesAfter(s.variant, k + 1, sections, latentWindow);
          onEvent({ type: 'section', section: k, sections, frames, seconds: frames / pkg.fps });
          onEvent({ type: 'transformer', report: report() });
        },
      },
      {
        onStep(section, step, steps, denoised) {
          const now = performance.now();
          stepTimes.push(now - last);
          last = now;
          const done = section * steps + step + 1;
          const recent = stepTimes.slice(-5);
          const perStep = recent.reduce((a, b) => a + b, 0) / recent.length;
          const [, c, t, h, w] = startLatentShape(startLatent, latentWindow);
          onEvent({
            type: 'step',
            section,
            sections,
            step: step + 1,
            steps,
            etaMs: stepTimes.length >= 2 ? perStep * (totalSteps - done) : null,
            preview: latentPreview({ data: denoised, shape: [1, c, t, h, w] }),
          });
        },
        onCheckpoint: (loop) => options.onCheckpoint?.({ settings: s, conditioning, loop }),
      },
      { signal, endLatent, resume: resume?.loop ?? undefined },
    );
    onEvent({ type: 'stage', stage: 'done', message: 'Done.' });
    return { sections, frames: videoFramesAfter(s.variant, sections, sections, latentWindow), width, height };
  } finally {
    await dit.release();
    await vae.release();
  }
}

/** Stages 1–2: the prompt (and the negative one) and SigLIP's image embedding; the resized images for the VAE. */
async function encodeTextAndImage(
  model: ModelSource,
  input: JobInput,
  width: number,
  height: number,
  runtime: RuntimeChoice,
  onEvent: (e: JobEvent) => void,
  signal?: AbortSignal,
): Promise<Omit<JobConditioning, 'width' | 'height' | 'startLatent' | 'endLatent'> & { start: RgbImage; end?: RgbImage }> {
  const pkg = model.package;
  const s = input.settings;

  // 1. Text: Llama and CLIP, released before the image networks load.
  onEvent({ type: 'stage', stage: 'text', message: 'Text encoding …' });
  const positive = await encodePrompt(model, s.prompt, runtime, onEvent);
  const negative = s.cfg !== 1 ? await encodePrompt(model, s.negativePrompt, runtime, onEvent) : undefined;
  signal?.throwIfAborted();

  // 2. Image: bucket, PIL-exact resize, SigLIP (start and end averaged, as diffusers' FramePack does).
  onEvent({ type: 'stage', stage: 'image', message: 'CLIP Vision encoding …' });
  const start = resizeAndCenterCrop(input.image, width, height);
  const end = input.endImage ? resizeAndCenterCrop(input.endImage, width, height) : undefined;
  const imageEmbeddings = await timed('siglip', onEvent, () => guardStage(runtime, 'the SigLIP image encoder', async (): Promise<Tensor> => {
    const siglip = await createSiglipImageEncoder(await openComponent(model, 'image_encoder'), { provider: runtime.provider, dtype: runtime.dtype, quantized: false });
    try {
      const first = await siglip.run(siglipPixelValues(start, pkg.siglipImageSize));
      if (!end) return first;
      const e = await siglip.run(siglipPixelValues(end, pkg.siglipImageSize));
      return { data: first.data.map((v, i) => Math.fround(Math.fround(v + e.data[i]) / 2)), shape: first.shape };
    } finally {
      await siglip.release();
    }
  }));
  signal?.throwIfAborted();
  return { positive, negative, imageEmbeddings, start, end };
}

/** The noisy window's shape [1, C, lws, h, w] for a start latent [1, C, 1, h, w]. */
function startLatentShape(startLatent: Tensor, latentWindow: number): number[] {
  const [b, c, , h, w] = startLatent.shape;
  return [b, c, latentWindow, h, w];
}

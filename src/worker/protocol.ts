// The typed boundary between the page and the worker. The UI knows the worker only through these types; the
// worker implements FramePackApi (in-process for tests and the CLI, behind comlink in the app), so callers cannot
// tell which one they hold. Errors cross as {name, message, details} and are rebuilt as the same classes.

import type { PreviewImage } from '../pipeline/latentPreview.ts';
import type { GpuCapabilities } from '../runtime/device.ts';
import type { SpeedProbeResult } from '../runtime/speedProbe.ts';
import type { JobEvent, JobSettings } from './engine.ts';

/** Which model a job uses: the bundled tiny demo, or the real FramePack checkpoints. */
export type ModelId = 'tiny' | 'framepack' | 'framepack-f1';

export interface CapabilityReport {
  webgpu: boolean;
  /** Null when there is no adapter. */
  gpu: GpuCapabilities | null;
  /** Plain-words lines for the capability panel. */
  explanation: string[];
  /** Storage quota and usage in bytes (navigator.storage.estimate), null where unknown. */
  storage: { quota: number | null; usage: number | null; persisted: boolean | null };
  /** Whether this browser can encode H.264 (else VP9) into MP4. */
  videoCodec: string | null;
  /** Why there is no usable GPU (NoWebGPUError, NoAdapterError…), when there is none. */
  problem?: SerializedError;
  /** The page's `?dtype=` override as the worker was configured with it; null: the adapter's best. */
  dtypeOverride: 'float32' | 'float16' | null;
  /**
   * Why the tensor-core kernels (4-bit GEMM, attention) cannot run on this device (kernels' own checks: e.g. no
   * 16×16×16 f16→f32 configuration), null when they can or when there is no GPU.
   */
  tensorCoreProblem: string | null;
  /** The first-use 4-bit GEMM speed probe on the path a job takes here (runtime/speedProbe.ts); null without a GPU or when it failed. */
  speedProbe: SpeedProbeResult | null;
  /** Why the speed probe failed, when it did. */
  speedProbeProblem?: string;
}

export interface ModelStatus {
  id: ModelId;
  /** What the model selector shows. */
  label: string;
  /** Converted weights are in the browser's storage. */
  cached: boolean;
  /** Bytes stored, and bytes the full model needs. */
  storedBytes: number;
  totalBytes: number;
}

export interface ImageInput {
  width: number;
  height: number;
  /** RGB bytes, row-major. */
  data: Uint8Array;
}

export interface GenerateRequest {
  model: ModelId;
  image: ImageInput;
  endImage?: ImageInput;
  settings: JobSettings;
  /** Reference MP4 compression slider (libx264 CRF 0–100, default 16). */
  crf: number;
  /** Bytes of transformer weights to keep on the GPU (the rest stream); null: from the GPU's memory, probed once. */
  transformerBudgetBytes: number | null;
  /** The job's state is stored under this id after every section (worker/jobStore.ts), until it finishes. */
  jobId?: string;
  /** Continue the stored job `jobId` from its last finished section instead of starting. */
  resume?: boolean;
}

/** Progress of getting a model ready: bytes for downloads, then conversion. */
export interface LoadEvent {
  type: 'load';
  phase: 'download' | 'convert' | 'cache';
  file: string;
  loaded: number;
  total: number;
  /** The network or tokenizer being fetched ('transformer', 'vae', …), and its place among the model's parts. */
  component: string;
  part: number;
  parts: number;
}

/** A playable MP4 of everything final so far; sent after every section. */
export interface VideoEvent {
  type: 'video';
  section: number;
  frames: number;
  mp4: Blob;
}

export type WorkerEvent = JobEvent | LoadEvent | VideoEvent;

export interface GenerateResult {
  /** Null only when the job was stopped (or failed) before its first section was finished. */
  mp4: Blob | null;
  frames: number;
  width: number;
  height: number;
  /** True when the job was stopped: the MP4 holds the sections finished before the stop. */
  stopped: boolean;
}

/** Errors as they cross the boundary. */
export interface SerializedError {
  name: string;
  message: string;
  details?: Record<string, unknown>;
  /** The worker's stack, sent only for programming errors (src/errors/index.ts, PROGRAMMING_ERRORS). */
  stack?: string;
}

export interface FramePackApi {
  capabilities(): Promise<CapabilityReport>;
  models(): Promise<ModelStatus[]>;
  deleteModel(id: ModelId): Promise<void>;
  /** Runs one job; events arrive through `onEvent`. Resolves with the MP4 (also after stop()). */
  generate(request: GenerateRequest, onEvent: (e: WorkerEvent) => void): Promise<GenerateResult>;
  /** Ends the running job within one step; what is finished is kept. */
  stop(): Promise<void>;
  /** Forgets a stored job's state (its gallery entry was deleted). */
  deleteJob(jobId: string): Promise<void>;
}

export type { PreviewImage };

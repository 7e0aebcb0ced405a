// What this browser gets, before anything runs: which of the transformer's three kernel paths the adapter allows
// (tensor cores, portable with half precision, portable without), what that path costs per sampling step at a
// resolution bucket, and what the whole video's transformer time comes to. Pure (no GPU, no DOM), so the page can
// run it: the page's estimate is the H200 table below (bench/RESULTS.md, seventh run) scaled by this device's
// first-use speed probe (src/runtime/speedProbe.ts: our 4-bit GEMM on random weights, TFLOP/s), nothing else.
//
// The step model: one step at the 640 bucket took T_ref seconds on the H200 over N_ref = 18,485 tokens (17,500 image
// + 729 SigLIP + 256 text), of which a share `a` was attention; attention grows with tokens², everything else (the
// linears, the fused norm/RoPE/gate kernels) with tokens. At N tokens:
//   step_H200(N) = T_ref · ((1 − a)·(N/N_ref) + a·(N/N_ref)²)
//   step(N)      = step_H200(N) · H200_GEMM_TFLOPS / measured_GEMM_TFLOPS
// The video: Σ over its sections of steps × step(N of that section) (× 2 forwards when CFG > 1); TeaCache's skipped
// steps, the text and image encoders, the VAE and the first use's download and conversion are left out.

import { BUCKETS_640, findNearestBucket, scaleBucket, type Bucket } from './buckets.ts';
import { packedTokenCounts } from './ropeTables.ts';
import { sectionCount, sectionPlan, type LoopVariant, type SectionLayout } from './sectionPlan.ts';

/** The transformer's three kernel paths. */
export type KernelPathId = 'tensor-cores' | 'portable-f16' | 'portable-f32';

/** What the path choice reads of an adapter (src/runtime/device.ts GpuCapabilities has these fields). */
export interface PathFeatures {
  shaderF16: boolean;
  subgroups: boolean;
  subgroupMatrix: boolean;
}

/** The page's `?dtype=` override, or null for the adapter's best. */
export type DtypeOverride = 'float32' | 'float16' | null;

export interface PathChoice {
  path: KernelPathId;
  /** 'tensor cores', 'portable with half precision', 'portable without half precision'. */
  name: string;
  /** What the path is, in plain words. */
  description: string;
  /** The activation dtype a job runs in on this path. */
  dtype: 'float16' | 'float32';
  /** Set when `?dtype=float32` chose a slower path than the adapter allows. */
  forcedSlower: boolean;
  /** Set when the override asks for something this GPU cannot do (`?dtype=float16` without shader-f16): why. */
  overrideProblem: string | null;
}

/** One step of each path on the H200 at the 640 bucket (bench/RESULTS.md, seventh run). */
export interface H200PathFigures {
  /** One transformer step (20 dual + 40 single blocks), seconds, 18,485 tokens. */
  stepSeconds: number;
  /** The share of a block that is attention (grows with tokens²); the rest grows with tokens. */
  attentionShare: number;
  /** The path's 4-bit GEMM throughput at FramePack's shapes, TFLOP/s: what the speed probe is compared with. */
  gemmTflops: number;
}

export const H200_PATHS: Readonly<Record<KernelPathId, H200PathFigures>> = {
  'tensor-cores': { stepSeconds: 3.07, attentionShare: 0.48, gemmTflops: 192 },
  'portable-f16': { stepSeconds: 20.3, attentionShare: 0.6, gemmTflops: 40 },
  'portable-f32': { stepSeconds: 34.4, attentionShare: 0.65, gemmTflops: 30 },
};
/** PyTorch (bf16, SDPA flash) on the same H200 and bucket, for comparison. */
export const PYTORCH_H200_STEP_SECONDS = 1.1;
/** Tokens of the H200 table's step: 17,500 image tokens at 640×608 (window 9) + CONTEXT_TOKENS. */
export const H200_REFERENCE_TOKENS = 18_485;
/** The reference's context tokens: 729 SigLIP tokens and up to 256 text tokens (counted at 256). */
export const CONTEXT_TOKENS = 729 + 256;
/** FramePack's transformer: 2×2 patches on latents of pixels / 8. */
export const PATCH_SIZE = 2;
export const LATENT_SCALE = 8;
/** The bucket of the H200 table (a square image's 640 bucket: 640 tall, 608 wide). */
export const REFERENCE_BUCKET: Bucket = Object.freeze({ height: 640, width: 608 });

const NAMES: Record<KernelPathId, string> = {
  'tensor-cores': 'tensor cores',
  'portable-f16': 'portable with half precision',
  'portable-f32': 'portable without half precision',
};

const DESCRIPTIONS: Record<KernelPathId, string> = {
  'tensor-cores': "The transformer's matrix products and attention run on the GPU's matrix units (tensor cores), in half precision: the fastest path, about 7× the portable one.",
  'portable-f16': "The transformer runs in half precision on kernels that work on any WebGPU GPU, without its matrix units (tensor cores): what Chrome gives by default where it has half precision.",
  'portable-f32': "The transformer runs in full (32-bit) precision on kernels that work on any WebGPU GPU, without half precision or matrix units: the slowest path, and it needs about twice the GPU memory for activations.",
};

/**
 * The path a job takes on an adapter with these features (src/kernels/q4Matmul.ts chooseQ4MatmulPath and
 * flashAttention.ts chooseAttentionPath on the device): tensor cores need subgroup matrices, subgroups and
 * shader-f16 and an f16 job; `tensorCoreProblem` is the device's own reason they cannot run (e.g. an Apple GPU's
 * 8×8×8-only configurations), null when they can or when the adapter was not asked. `?dtype=float32` forces the fp32
 * path; `?dtype=float16` without shader-f16 is impossible and reported (the path stays fp32, what the GPU can run).
 */
export function choosePath(features: PathFeatures, options: { dtype?: DtypeOverride; tensorCoreProblem?: string | null } = {}): PathChoice {
  const override = options.dtype ?? null;
  const f16 = features.shaderF16 && override !== 'float32';
  const tensorCoresPossible = features.shaderF16 && features.subgroups && features.subgroupMatrix && !options.tensorCoreProblem;
  const path: KernelPathId = !f16 ? 'portable-f32' : tensorCoresPossible ? 'tensor-cores' : 'portable-f16';
  const overrideProblem = override === 'float16' && !features.shaderF16
    ? 'This address asks for half precision (?dtype=float16), but this GPU offers no shader-f16, so a job cannot run that way; remove ?dtype=float16 from the address to run without half precision.'
    : null;
  return {
    path,
    name: NAMES[path],
    description: DESCRIPTIONS[path],
    dtype: f16 ? 'float16' : 'float32',
    forcedSlower: override === 'float32' && features.shaderF16,
    overrideProblem,
  };
}

/** The path that one probed 4-bit GEMM kernel stands for. */
export function pathOfKernel(kernel: 'portable' | 'subgroup-matrix', dtype: 'f16' | 'f32'): KernelPathId {
  return kernel === 'subgroup-matrix' ? 'tensor-cores' : dtype === 'f16' ? 'portable-f16' : 'portable-f32';
}

/** Tokens of one forward call of a section at a bucket: its packed image tokens (§5.5) plus CONTEXT_TOKENS. */
export function sectionTokens(bucket: Bucket, variant: LoopVariant = 'original', latentWindow = 9, order = 0, sections = order + 1): number {
  return layoutTokens(bucket, sectionPlan(variant, sections, latentWindow)[order]);
}

function layoutTokens(bucket: Bucket, layout: SectionLayout): number {
  return packedTokenCounts(layout, bucket.height / LATENT_SCALE, bucket.width / LATENT_SCALE, PATCH_SIZE).total + CONTEXT_TOKENS;
}

/** One step of `path` over `tokens` on the H200: the table's step, linears ∝ tokens, attention ∝ tokens². */
export function h200StepSeconds(path: KernelPathId, tokens: number): number {
  const { stepSeconds, attentionShare } = H200_PATHS[path];
  const r = tokens / H200_REFERENCE_TOKENS;
  return stepSeconds * ((1 - attentionShare) * r + attentionShare * r * r);
}

/**
 * How much slower than the H200 this device is on this path: the H200's 4-bit GEMM TFLOP/s for the path over the
 * probe's measured TFLOP/s (1 on the H200 itself, up to the probe's smaller shape). Null when nothing was measured.
 */
export function speedFactor(path: KernelPathId, measuredTflops: number | null | undefined): number | null {
  if (!measuredTflops || !(measuredTflops > 0) || !Number.isFinite(measuredTflops)) return null;
  return H200_PATHS[path].gemmTflops / measuredTflops;
}

/** Estimated seconds of one step over `tokens` on this device (`factor` from speedFactor; null gives the H200's). */
export function estimateStepSeconds(path: KernelPathId, tokens: number, factor: number | null): number {
  return h200StepSeconds(path, tokens) * (factor ?? 1);
}

/** What the estimate leaves out, said wherever a whole-video figure is shown. */
export const ESTIMATE_LEAVES_OUT = "transformer time only: it leaves out TeaCache's savings (skipped steps), the text and image encoders, the VAE and a first use's download";

export interface VideoEstimateInput {
  path: KernelPathId;
  /** speedFactor(); null: the H200's figures. */
  factor: number | null;
  bucket: Bucket;
  seconds: number;
  steps: number;
  latentWindow: number;
  variant: LoopVariant;
  /** Real CFG scale; above 1 each step runs the transformer twice (cond and uncond). Default 1 (the reference's). */
  cfg?: number;
}

export interface VideoEstimate {
  sections: number;
  steps: number;
  /** Transformer calls per step (2 with CFG > 1). */
  forwardsPerStep: number;
  /** Tokens of one call (every section of both loops has the same count). */
  tokens: number;
  /** Seconds of one transformer call on this device. */
  stepSeconds: number;
  /** Seconds of the whole video's transformer work: Σ sections × steps × calls × their step. */
  transformerSeconds: number;
}

/** The whole video's transformer time. Throws SectionPlanError / RopeTableError for settings the job would refuse. */
export function estimateVideo(input: VideoEstimateInput): VideoEstimate {
  if (!Number.isInteger(input.steps) || input.steps < 1) throw new RangeError(`Steps must be a whole number ≥ 1, got ${input.steps}.`);
  const sections = sectionCount(input.seconds, input.latentWindow);
  const forwardsPerStep = (input.cfg ?? 1) > 1 ? 2 : 1;
  let transformerSeconds = 0;
  let tokens = 0;
  let stepSeconds = 0;
  for (const layout of sectionPlan(input.variant, sections, input.latentWindow)) {
    tokens = layoutTokens(input.bucket, layout);
    stepSeconds = estimateStepSeconds(input.path, tokens, input.factor);
    transformerSeconds += input.steps * forwardsPerStep * stepSeconds;
  }
  return { sections, steps: input.steps, forwardsPerStep, tokens, stepSeconds, transformerSeconds };
}

/**
 * The bucket an estimate is made for: the image's bucket at the chosen resolution ('model': the reference's 640
 * list, which is what the real models use), or without an image the square image's (640×608, scaled).
 */
export function bucketForEstimate(resolution: 'model' | number, image: { width: number; height: number } | null): Bucket {
  const base = image ? findNearestBucket(image.height, image.width, BUCKETS_640) : REFERENCE_BUCKET;
  return resolution === 'model' ? base : scaleBucket(base, resolution);
}

/** "0.8 s", "49 s", "12 min", "3 h 20 min", "4.5 days", "3.4 years". */
export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds) || seconds < 0) return '—';
  if (seconds < 10) return `${seconds.toFixed(1)} s`;
  if (seconds < 90) return `${Math.round(seconds)} s`;
  const minutes = seconds / 60;
  if (minutes < 90) return `${Math.round(minutes)} min`;
  const hours = minutes / 60;
  if (hours < 48) {
    const h = Math.floor(hours), m = Math.round(minutes - h * 60);
    return m === 60 ? `${h + 1} h` : m ? `${h} h ${m} min` : `${h} h`;
  }
  const days = hours / 24;
  if (days < 365) return `${days < 10 ? days.toFixed(1) : Math.round(days)} days`;
  const years = days / 365;
  return `${years < 10 ? years.toFixed(1) : Math.round(years).toLocaleString('en-US')} years`;
}

export type Platform = 'windows' | 'macos' | 'linux' | 'chromeos' | 'android' | 'other';

/** The operating system a user agent string (or navigator.userAgentData.platform) names. */
export function platformFromUserAgent(userAgent: string, uaPlatform?: string): Platform {
  const s = `${uaPlatform ?? ''} ${userAgent}`;
  if (/windows/i.test(s)) return 'windows';
  if (/android/i.test(s)) return 'android';
  if (/cros|chrome ?os/i.test(s)) return 'chromeos';
  if (/mac ?os|macintosh/i.test(s)) return 'macos';
  if (/linux|x11/i.test(s)) return 'linux';
  return 'other';
}

export const UNSAFE_WEBGPU_FLAG = '--enable-unsafe-webgpu';
export const NVIDIA_F16_FLAG = '--enable-dawn-features=vulkan_enable_f16_on_nvidia';

export interface PlatformAdvice {
  platform: 'linux' | 'macos' | 'windows';
  label: string;
  /** How to get the faster path in Chrome there, or the honest answer that there is none. */
  text: string;
}

/** How Chrome gets the faster paths on each desktop system (docs/webgpu-notes.md, "What stock browsers give a page"). */
export const PLATFORM_ADVICE: readonly PlatformAdvice[] = [
  {
    platform: 'linux',
    label: 'Linux',
    text: `start Chrome with ${UNSAFE_WEBGPU_FLAG} for the tensor-core path; on an NVIDIA GPU also with ${NVIDIA_F16_FLAG} for half precision, which both faster paths need (google-chrome ${UNSAFE_WEBGPU_FLAG} ${NVIDIA_F16_FLAG}). Other GPUs have half precision without a flag.`,
  },
  {
    platform: 'macos',
    label: 'macOS',
    text: `Chrome has half precision without a flag. ${UNSAFE_WEBGPU_FLAG} (open -a "Google Chrome" --args ${UNSAFE_WEBGPU_FLAG}) turns on the matrix units, but Apple GPUs offer only 8×8×8 shapes, not the 16×16×16 ones the tensor-core kernels take, so a Mac runs the portable path with half precision.`,
  },
  {
    platform: 'windows',
    label: 'Windows',
    text: 'no faster path in Chrome today: Chrome on Windows (D3D12) offers no matrix units with any flag. It already runs the portable path with half precision (on GPUs with Shader Model 6.2 or later); if it runs without, update the GPU driver.',
  },
];

/** One sentence for this browser: what would make it faster here, or that nothing would (choice.overrideProblem is said apart). */
export function adviceHere(choice: PathChoice, where: { platform: Platform; vendor?: string; isSoftware?: boolean }): string {
  if (where.isSoftware) return 'This is a software GPU (SwiftShader), which no flag makes fast: for the real models use a computer with a graphics card. There, Chrome gets the faster paths as follows.';
  if (choice.forcedSlower) return 'This address forces full precision (?dtype=float32); remove ?dtype=float32 from it for the faster half-precision path.';
  if (choice.path === 'tensor-cores') return 'This is the fastest path; nothing to change.';
  const nvidia = /nvidia/i.test(where.vendor ?? '');
  switch (where.platform) {
    case 'linux':
      if (choice.path === 'portable-f32') {
        return nvidia
          ? `Start Chrome with ${NVIDIA_F16_FLAG} for half precision, and also with ${UNSAFE_WEBGPU_FLAG} for tensor cores.`
          : `This GPU offers no half precision (shader-f16) here; a newer driver may add it, and then ${UNSAFE_WEBGPU_FLAG} may give tensor cores.`;
      }
      return `Start Chrome with ${UNSAFE_WEBGPU_FLAG} for the tensor-core path, where the GPU has matrix units (NVIDIA does).`;
    case 'macos':
      return choice.path === 'portable-f16'
        ? 'This is the fastest path Chrome gives on a Mac today: Apple GPUs offer only 8×8×8 matrix shapes, which the tensor-core kernels cannot use.'
        : 'This Mac offers no half precision; Chrome on Apple GPUs normally has it, so update Chrome and macOS.';
    case 'windows':
      return choice.path === 'portable-f16'
        ? 'No faster path in Chrome on Windows today: it offers no matrix units with any flag, and this is already the portable path with half precision.'
        : 'No flag helps on Windows: update the GPU driver for half precision (Shader Model 6.2 or later); Chrome on Windows offers no tensor-core path.';
    default:
      return 'Faster paths need Chrome on Linux or a Mac with the flags below; this system has no known way to them.';
  }
}

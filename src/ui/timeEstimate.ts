// The page's reading of the worker's capability report for its time estimates: which kernel path this browser runs
// (pipeline/speedEstimate.ts choosePath), how much slower than the H200 this GPU's probed 4-bit GEMM is, and the
// estimated seconds per step and for the whole video at the form's settings. The capability panel and the settings'
// video estimate share it, so they always say the same thing.

import type { CapabilityReport } from '../worker/protocol.ts';
import {
  bucketForEstimate, choosePath, estimateVideo, formatDuration, H200_PATHS, pathOfKernel, platformFromUserAgent, speedFactor,
  type PathChoice, type Platform, type VideoEstimate,
} from '../pipeline/speedEstimate.ts';
import type { Bucket } from '../pipeline/buckets.ts';
import type { LoopVariant } from '../pipeline/sectionPlan.ts';

export interface DeviceSpeed {
  choice: PathChoice;
  /** speedFactor of the probe (H200 GEMM TFLOP/s ÷ measured), null when the probe did not run. */
  factor: number | null;
  /** The probe's TFLOP/s, and the H200's for the same path. */
  measuredTflops: number | null;
  h200Tflops: number;
}

/** The path and speed factor of the report's GPU, or null when there is no GPU (or no report yet). */
export function deviceSpeed(caps: CapabilityReport | null): DeviceSpeed | null {
  if (!caps?.gpu) return null;
  const choice = choosePath(caps.gpu, { dtype: caps.dtypeOverride, tensorCoreProblem: caps.tensorCoreProblem });
  const probe = caps.speedProbe;
  // The probe ran the kernel and dtype a job gets here; should they ever differ from the choice, the probe's path is the
  // one its TFLOP/s compare with.
  const probed = probe ? pathOfKernel(probe.kernel, probe.dtype) : choice.path;
  const factor = probe ? speedFactor(probed, probe.tflops) : null;
  return { choice, factor, measuredTflops: probe?.tflops ?? null, h200Tflops: H200_PATHS[probed].gemmTflops };
}

export interface FormEstimateInput {
  resolution: 'model' | number;
  image: { width: number; height: number } | null;
  seconds: number;
  steps: number;
  latentWindow: number;
  variant: LoopVariant;
}

export interface FormEstimate extends VideoEstimate {
  bucket: Bucket;
}

/** The estimate at the form's settings, or null while a value is out of range. */
export function formEstimate(speed: DeviceSpeed, form: FormEstimateInput): FormEstimate | null {
  try {
    const bucket = bucketForEstimate(form.resolution, form.image);
    const steps = Math.round(form.steps);
    return { bucket, ...estimateVideo({ path: speed.choice.path, factor: speed.factor, bucket, seconds: form.seconds, steps, latentWindow: Math.round(form.latentWindow), variant: form.variant }) };
  } catch {
    return null;
  }
}

/** "≈ 49 s per step at 608×640" (width × height). */
export function perStepText(e: FormEstimate): string {
  return `≈ ${formatDuration(e.stepSeconds)} per step at ${e.bucket.width}×${e.bucket.height}`;
}

/** "≈ 41 min (2 sections × 25 steps × ≈ 49 s)". */
export function videoText(e: FormEstimate): string {
  const calls = e.forwardsPerStep > 1 ? ` × ${e.forwardsPerStep} calls` : '';
  return `≈ ${formatDuration(e.transformerSeconds)} (${e.sections} section${e.sections > 1 ? 's' : ''} × ${e.steps} step${e.steps > 1 ? 's' : ''}${calls} × ≈ ${formatDuration(e.stepSeconds)})`;
}

/** Where the figures come from, in one line. */
export function basisText(speed: DeviceSpeed): string {
  if (speed.factor === null) return 'Measured on an NVIDIA H200 (bench/RESULTS.md); this GPU\'s speed could not be measured, so the figure is the H200\'s.';
  const tf = (x: number) => (x >= 1 ? x.toFixed(1) : x >= 0.01 ? x.toFixed(3) : x.toPrecision(2));
  return `The H200's measured step (bench/RESULTS.md) scaled by a short test on this GPU: its 4-bit matrix product ran at ${tf(speed.measuredTflops!)} TFLOP/s against the H200's ${speed.h200Tflops} on this path (${speed.factor >= 1 ? `${formatFactor(speed.factor)} slower` : `${formatFactor(1 / speed.factor)} faster`}).`;
}

function formatFactor(f: number): string {
  return f >= 100 ? `${Math.round(f).toLocaleString('en-US')}×` : `${f.toFixed(f >= 10 ? 0 : 1)}×`;
}

/** The operating system this page runs on, from the browser's user agent. */
export function thisPlatform(): Platform {
  if (typeof navigator === 'undefined') return 'other';
  const data = (navigator as Navigator & { userAgentData?: { platform?: string } }).userAgentData;
  return platformFromUserAgent(navigator.userAgent, data?.platform);
}

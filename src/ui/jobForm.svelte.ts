// Everything the user sets for one job, as reactive state with the reference UI's defaults and ranges
// (framepack-reference.md §11), and its translation into the worker's GenerateRequest. The gallery stores a
// snapshot of it, so a past result can be run again exactly.

import { DEFAULT_SETTINGS, type JobSettings, type ModelVariant } from '../pipeline/jobSettings.ts';
import type { GenerateRequest, ModelId } from '../worker/protocol.ts';
import { findNearestScaledBucket, type Bucket } from '../pipeline/buckets.ts';
import { sectionCount } from '../pipeline/sectionPlan.ts';
import { videoFramesAfter } from '../pipeline/frameCount.ts';
import type { DecodedImage } from './imageDecode.ts';

/** The reference's two example prompts (demo_gradio.py's Quick List). */
export const EXAMPLE_PROMPTS = [
  'The girl dances gracefully, with clear movements, full of charm.',
  'A character doing some simple body movements.',
] as const;

/** 'model': the model's own buckets (640-pixel class for FramePack); a number: the 640 list scaled to it. */
export type Resolution = 'model' | number;
export const SMALLER_RESOLUTIONS = [512, 448, 384, 320, 256, 192, 128] as const;

export const LIMITS = {
  seed: { min: 0, max: 2 ** 31 - 1 },
  seconds: { min: 1, max: 120, step: 0.1 },
  steps: { min: 1, max: 100, step: 1 },
  distilledGuidance: { min: 1, max: 32, step: 0.01 },
  latentWindow: { min: 1, max: 33, step: 1 },
  crf: { min: 0, max: 100, step: 1 },
  budgetGb: { min: 0, max: 80, step: 0.5 },
} as const;

/** The plain-data part of the form, as stored with gallery entries. */
export interface FormSnapshot {
  model: ModelId;
  prompt: string;
  seed: number;
  seconds: number;
  steps: number;
  distilledGuidance: number;
  teacache: boolean;
  latentWindow: number;
  resolution: Resolution;
  crf: number;
  budgetGb: number;
  /** The budget comes from the GPU's memory (a probe in the worker, runtime/gpuOutOfMemory.ts), not budgetGb. */
  budgetAuto: boolean;
  /** The tiny model runs either loop; the real models have their own. */
  variant: ModelVariant;
}

export const DEFAULT_FORM: FormSnapshot = {
  model: 'tiny',
  prompt: '',
  seed: DEFAULT_SETTINGS.seed,
  seconds: DEFAULT_SETTINGS.seconds,
  steps: DEFAULT_SETTINGS.steps,
  distilledGuidance: DEFAULT_SETTINGS.distilledGuidance,
  teacache: DEFAULT_SETTINGS.teacache,
  latentWindow: 9,
  resolution: 'model',
  crf: 16,
  budgetGb: 8,
  budgetAuto: true,
  variant: 'original',
};

const clamp = (v: number, { min, max }: { min: number; max: number }) => (Number.isFinite(v) ? Math.min(max, Math.max(min, v)) : min);

export class JobForm {
  model = $state<ModelId>(DEFAULT_FORM.model);
  prompt = $state(DEFAULT_FORM.prompt);
  seed = $state(DEFAULT_FORM.seed);
  seconds = $state(DEFAULT_FORM.seconds);
  steps = $state(DEFAULT_FORM.steps);
  distilledGuidance = $state(DEFAULT_FORM.distilledGuidance);
  teacache = $state(DEFAULT_FORM.teacache);
  latentWindow = $state(DEFAULT_FORM.latentWindow);
  resolution = $state<Resolution>(DEFAULT_FORM.resolution);
  crf = $state(DEFAULT_FORM.crf);
  budgetGb = $state(DEFAULT_FORM.budgetGb);
  budgetAuto = $state(DEFAULT_FORM.budgetAuto);
  variant = $state<ModelVariant>(DEFAULT_FORM.variant);
  image = $state<DecodedImage | null>(null);
  endImage = $state<DecodedImage | null>(null);

  randomizeSeed(): void {
    this.seed = Math.floor(Math.random() * (LIMITS.seed.max + 1));
  }

  /** The loop this job will run: the real models have a fixed one. */
  get effectiveVariant(): ModelVariant {
    return this.model === 'framepack-f1' ? 'f1' : this.model === 'framepack' ? 'original' : this.variant;
  }

  /** The generation size for the current image, or null when the model's own list decides (in the worker). */
  get bucket(): Bucket | null {
    if (this.resolution === 'model' || !this.image) return null;
    return findNearestScaledBucket(this.image.height, this.image.width, this.resolution);
  }

  /** Sections and frames the reference formulas give for these settings (null while a value is out of range). */
  get plan(): { sections: number; frames: number } | null {
    try {
      const sections = sectionCount(this.seconds, this.latentWindow);
      return { sections, frames: videoFramesAfter(this.effectiveVariant, sections, sections, this.latentWindow) };
    } catch {
      return null;
    }
  }

  snapshot(): FormSnapshot {
    return {
      model: this.model, prompt: this.prompt, seed: this.seed, seconds: this.seconds, steps: this.steps,
      distilledGuidance: this.distilledGuidance, teacache: this.teacache, latentWindow: this.latentWindow,
      resolution: this.resolution, crf: this.crf, budgetGb: this.budgetGb, budgetAuto: this.budgetAuto, variant: this.variant,
    };
  }

  restore(s: FormSnapshot): void {
    Object.assign(this, { ...DEFAULT_FORM, ...s });
  }

  /** The worker request, values clamped to the reference's ranges. Throws when there is no start image. */
  request(): GenerateRequest {
    if (!this.image) throw new Error('Choose a start image first.');
    const settings: JobSettings = {
      ...DEFAULT_SETTINGS,
      prompt: this.prompt,
      variant: this.effectiveVariant,
      seed: Math.round(clamp(this.seed, LIMITS.seed)),
      seconds: clamp(this.seconds, LIMITS.seconds),
      steps: Math.round(clamp(this.steps, LIMITS.steps)),
      distilledGuidance: clamp(this.distilledGuidance, LIMITS.distilledGuidance),
      teacache: this.teacache,
      latentWindow: this.latentWindow === 9 ? null : Math.round(clamp(this.latentWindow, LIMITS.latentWindow)),
      bucket: this.bucket,
    };
    const rgb = (img: DecodedImage) => ({ width: img.width, height: img.height, data: img.rgb });
    return {
      model: this.model,
      image: rgb(this.image),
      endImage: this.endImage && this.effectiveVariant === 'original' ? rgb(this.endImage) : undefined,
      settings,
      crf: clamp(this.crf, LIMITS.crf),
      transformerBudgetBytes: this.budgetAuto ? null : clamp(this.budgetGb, LIMITS.budgetGb) * 2 ** 30,
    };
  }
}

// What a person chooses for one job and the reference UI's defaults for it (framepack-reference.md §11). It lives
// in pipeline/, apart from the job engine that runs it (src/worker/engine.ts), because the page needs the same
// defaults at run time and must not import the engine, which would pull onnxruntime-web into the page bundle.

import type { Bucket } from './buckets.ts';

export type ModelVariant = 'original' | 'f1';

/** Everything a person chooses for one job (the reference UI's controls, §11). */
export interface JobSettings {
  prompt: string;
  /** Used only when cfg > 1, as in the reference. */
  negativePrompt: string;
  variant: ModelVariant;
  seed: number;
  seconds: number;
  steps: number;
  distilledGuidance: number;
  cfg: number;
  cfgRescale: number;
  teacache: boolean;
  teacacheThreshold: number;
  /** null: the model's own window (9 for the reference). */
  latentWindow: number | null;
  /** A generation size from the model's buckets, or null for the one nearest the image's aspect. */
  bucket: Bucket | null;
}

export const DEFAULT_SETTINGS: JobSettings = {
  prompt: '',
  negativePrompt: '',
  variant: 'original',
  seed: 31337,
  seconds: 5,
  steps: 25,
  distilledGuidance: 10,
  cfg: 1,
  cfgRescale: 0,
  teacache: true,
  teacacheThreshold: 0.15,
  latentWindow: null,
  bucket: null,
};

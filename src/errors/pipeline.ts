// Failures of the FramePack arithmetic in src/pipeline/ (buckets, resize, tokenizers, section plans, UniPC, RoPE,
// history, soft-append, seeded noise). Most are programming errors — a plan, shape or count that the caller got
// wrong, which the page reports with its stack; a few are about a person's input (the seed, the video length) or a
// model's files (a tokenizer that is not the expected one). They live here so that the page can rebuild each of
// them by name from what the worker sends: this module imports nothing and does nothing when imported.

/** No bucket to choose from, or an image or resolution that is not a size: a bad model config or a caller's bug. */
export class BucketError extends RangeError {
  override name = 'BucketError';
}

/** An image whose buffer does not match its size, or a size that is not a positive integer: a caller's bug. */
export class ImageSizeError extends RangeError {
  override name = 'ImageSizeError';
}

/** A tokenizer file is not in a shape this code can read; the message says what was found. */
export class TokenizerFormatError extends Error {
  override name = 'TokenizerFormatError';
}

/** The tokenizer does not cut the prompt template where the hard-coded crop expects: not HunyuanVideo's Llama-3 tokenizer. */
export class PromptTemplateError extends Error {
  override name = 'PromptTemplateError';
}

/** Where Python's round() would raise: NaN or an infinity has no integer to round to (check the video length). */
export class NotRoundableError extends RangeError {
  override name = 'NotRoundableError';
  constructor(x: number) {
    super(`Cannot round ${x} to an integer; pass a finite number (check the video length setting).`);
  }
}

/** A section plan's input (section count, video length, latent padding) is out of range: a caller's bug. */
export class SectionPlanError extends RangeError {
  override name = 'SectionPlanError';
}

/** A frame or section count asked of the video-length arithmetic is out of range: a caller's bug. */
export class FrameCountError extends RangeError {
  override name = 'FrameCountError';
}

/** The latent history was used out of order or with tensors of the wrong shape: a caller's bug. */
export class HistoryError extends Error {
  override name = 'HistoryError';
}

/** The videos or held frames handed to soft-append do not overlap the way the blend needs: a caller's bug. */
export class SoftAppendError extends RangeError {
  override name = 'SoftAppendError';
}

/** The latents handed to the preview are not in the layout its RGB factors expect: a caller's bug. */
export class LatentPreviewError extends RangeError {
  override name = 'LatentPreviewError';
}

/** The RoPE config, index lists or latent grid cannot make a table: a bad DiT config or a caller's bug. */
export class RopeTableError extends RangeError {
  override name = 'RopeTableError';
}

/** The denoiser returned something that is not one value per latent. */
export class DenoiserShapeError extends Error {
  constructor(step: number, got: number, want: number) {
    super(`The denoiser returned ${got} values for ${want} latent values at step ${step}; the model and the latents disagree on the window size.`);
    this.name = 'DenoiserShapeError';
  }
}

/** The velocity model returned something that is not one value per latent. */
export class VelocityShapeError extends Error {
  /** `branch` is fmWrapper's GuidanceBranch, spelled out because this module imports nothing. */
  constructor(branch: 'positive' | 'negative', got: number, want: number) {
    super(`The ${branch} DiT pass returned ${got} values for ${want} latent values; the model and the latents disagree on the window size.`);
    this.name = 'VelocityShapeError';
  }
}

/** The seed is not a whole number torch accepts: the person enters another (e.g. 31337). */
export class InvalidSeedError extends Error {
  override name = 'InvalidSeedError';
  constructor(seed: number | bigint) {
    super(`Seed ${String(seed)} is not usable: torch seeds are whole numbers from -2^63 to 2^64 - 1. Enter a whole number such as 31337.`);
  }
}

/** A noise shape that is not whole and non-negative, or too large to hold: a caller's bug. */
export class InvalidNoiseShapeError extends Error {
  override name = 'InvalidNoiseShapeError';
  constructor(shape: readonly number[]) {
    super(`Cannot draw noise of shape [${shape.join(', ')}]: every dimension must be a whole number ≥ 0 and the total must fit in memory.`);
  }
}

// Failures of the job engine in src/worker/: the network runners (DiT, VAE, text and image encoders), the model
// package, and the job itself (one at a time; stopped on request). The runners' input errors are programming
// errors and keep their stack across the worker boundary; the others say what a person can do. They live here so
// the page can rebuild each by name without loading the engine (and with it onnxruntime-web): this module imports
// nothing and does nothing when imported.

/** What the caller handed the DiT does not fit the model or the other inputs; the message says which. */
export class DiTInputError extends Error {
  override name = 'DiTInputError';
}

/** TeaCache asked to skip the blocks before any call of this slot ran them. */
export class TeaCacheResidualMissing extends Error {
  override name = 'TeaCacheResidualMissing';
  constructor(got: number | null, want: number) {
    super(got === null
      ? 'TeaCache asked to reuse the block residual before any step computed it; the first step of a section must compute.'
      : `TeaCache's stored block residual has ${got} values but this call has ${want}; keep one TeaCache slot per section and branch.`);
  }
}

/** A plan needs a GPU buffer where ORT or the residency handed a CPU tensor. */
export class DiTKernelInputError extends Error {
  override name = 'DiTKernelInputError';
}

/** A tensor of the wrong shape handed to the VAE's encode/decode: a caller's bug, never the user's. */
export class VaeInputError extends Error {
  override name = 'VaeInputError';
}

/** SigLIP was handed pixel values of the wrong shape: a caller's bug (resize the image first). */
export class PixelValuesShapeError extends RangeError {
  override name = 'PixelValuesShapeError';
}

/** The prompt gave no tokens or too many (shorten it), or ids outside the vocabulary (tokenizer and checkpoint disagree). */
export class TokenIdsError extends RangeError {
  override name = 'TokenIdsError';
}

/** framepack.json lacks a part or names something that is not a network: the model package is broken. */
export class ModelPackageError extends Error {
  override name = 'ModelPackageError';
}

/** A second generate() while one runs: stop it or wait, then start again. */
export class JobBusyError extends Error {
  override name = 'JobBusyError';
  constructor() {
    super('A video is already being generated. Stop it, or wait until it is done, then start again.');
  }
}

/** Why a job ended early at the user's request (the abort reason); never shown as a failure. */
export class JobStopped extends Error {
  override name = 'JobStopped';
}

/** A saved job cannot be continued: its state is unreadable, of another format, or from other settings. */
export class JobResumeError extends Error {
  override name = 'JobResumeError';
  constructor(readonly why: string) {
    super(`This interrupted job cannot be continued (${why}). Its finished part stays in the gallery; start the job again with Generate.`);
  }
}

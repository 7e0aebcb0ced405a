// Failures of fetching, reading and storing checkpoints (src/weights/): HTTP and network failures, missing files
// and tensors, damaged or unreadable files, a full disk. Each says what a person can do, and carries as plain
// fields the figures the page shows (URL, status, bytes needed). They live here so the page can rebuild each by
// name without loading the download and cache code: this module imports nothing and does nothing when imported.
// `formatBytes` lives here too because QuotaError's message needs it; the page uses it for the same figures.

/** Sizes as people read them: "14.2 GB", "3.9 MB" (decimal units, like the browser's storage settings). */
export function formatBytes(bytes: number): string {
  if (bytes >= 1e9) return `${(bytes / 1e9).toFixed(1)} GB`;
  if (bytes >= 1e6) return `${(bytes / 1e6).toFixed(1)} MB`;
  return `${Math.ceil(bytes / 1e3)} kB`;
}

/** A file of the model is not where the source looks: check the model folder or download the model again. */
export class CheckpointFileMissing extends Error {
  override name = 'CheckpointFileMissing';
  constructor(readonly file: string, where: string) {
    super(`The model file ${file} was not found in ${where}. Check the model folder or download the model again.`);
  }
}

/** The checkpoint lacks a tensor the network needs: it is not the model this app expects. */
export class TensorMissing extends Error {
  override name = 'TensorMissing';
  constructor(readonly tensor: string, where: string) {
    super(`The checkpoint at ${where} has no tensor named ${tensor}; it is not the model this app expects.`);
  }
}

/** The server answered with a status that retrying will not fix (or a 5xx that persisted through every retry). */
export class HttpError extends Error {
  override name = 'HttpError';
  constructor(readonly url: string, readonly status: number, message: string) {
    super(message);
  }
}

/** 404: a CheckpointFileMissing (so openCheckpoint can probe for an index file) that also carries the URL. */
export class HttpFileNotFound extends CheckpointFileMissing {
  override name = 'HttpFileNotFound';
  readonly status = 404;
  constructor(file: string, readonly url: string) {
    super(file, url);
    this.message = `The file ${file} was not found at ${url} (HTTP 404): check the repository name, subfolder and revision.`;
  }
}

/** The network failed (no connection, connection reset, transfer cut) on every attempt. */
export class NetworkError extends Error {
  override name = 'NetworkError';
  constructor(readonly url: string, detail: string, options?: { cause?: unknown }) {
    super(`Could not download ${url} (${detail}): check your connection and start again; the download resumes where it stopped.`, options);
  }
}

/** A file is not valid safetensors (bad header, offsets or dtype): delete it and download it again. */
export class SafetensorsFormatError extends Error {
  override name = 'SafetensorsFormatError';
  constructor(file: string, detail: string) {
    super(`${file} is not a valid safetensors file: ${detail}. Delete it and download it again.`);
  }
}

/** A cached chunk's bytes no longer match the checksum written with them. */
export class IntegrityError extends Error {
  override name = 'IntegrityError';
  constructor(readonly model: string, readonly tensor: string, detail: string) {
    super(`The cached model ${model} is damaged (${tensor}: ${detail}); delete it and download it again.`);
  }
}

/** The stored model is missing, unfinished, or holds something a safetensors file cannot describe. */
export class StoredModelError extends Error {
  override name = 'StoredModelError';
}

/** Storage is full, or would be: says how much is needed and what the user can do. */
export class QuotaError extends Error {
  override name = 'QuotaError';
  constructor(readonly neededBytes: number, readonly availableBytes: number | null, what = 'This model') {
    super(`${what} needs ${formatBytes(neededBytes)} of browser storage, but ${availableBytes === null ? 'the browser refused to store more' : `only ${formatBytes(availableBytes)} is available`}. Free disk space or delete other cached models, then start again (private windows allow much less storage).`);
  }
}

/**
 * Converted weights (a stored model or a pack of files) in another version of the stored format than this app
 * reads: never read as if they were the current one. An older version (the raw downloads of earlier builds count as
 * version 0) is converted again; a newer one needs a newer app.
 */
export class PackVersionError extends Error {
  override name = 'PackVersionError';
  constructor(readonly where: string, readonly found: number, readonly expected: number) {
    super(found < expected
      ? `The converted weights at ${where} are in an older stored format (version ${found}; this app reads version ${expected}). Convert them again: in the app, Generate does it (or delete the model first); from the command line, npm run convert.`
      : `The converted weights at ${where} are in stored format version ${found}, newer than this app reads (version ${expected}). Update the app, or convert the weights again with this version.`);
  }
}

/** A pack folder (npm run convert's output) that is not one: its manifest.json is missing or does not describe a pack. */
export class PackFormatError extends Error {
  override name = 'PackFormatError';
  constructor(where: string, detail: string) {
    super(`${where} is not a FramePack Web weight pack: ${detail}. Point at a folder written by npm run convert (it holds manifest.json).`);
  }
}

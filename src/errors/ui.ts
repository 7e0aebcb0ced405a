// Errors made on the page itself or at the edges of the app rather than in the worker: an image the browser
// cannot decode, a worker that crashed, an image file the command line cannot read. They are registered with the
// rest (src/errors/index.ts) so one table names every error the app can show. This module imports nothing and
// does nothing when imported.

/** The chosen file is not an image this browser decodes, or its size is outside what the app accepts. */
export class ImageInputError extends Error {
  override name = 'ImageInputError';
}

/** The worker script failed to load or crashed (out of memory in the tab, a blocked script). */
export class WorkerCrashedError extends Error {
  override name = 'WorkerCrashedError';
}

/** The CLI could not read its input image (missing file, not a PPM, no ffmpeg); the message says which. */
export class ImageFileError extends Error {
  override name = 'ImageFileError';
}

// The page's side of typed errors: the worker sends {name, message, details} (src/worker/serializeError.ts) and
// this module rebuilds the same classes, so components can tell a full disk from a lost GPU with `instanceof`, and
// adds the one line of advice that depends on where the user is (which button to press next). Errors made on the
// page itself (an unreadable image) are defined here too.

import { DeviceLostError, GpuOutOfMemoryError, NoAdapterError, NoWebGPUError } from '../runtime/gpuErrors.ts';
import { QuotaError } from '../weights/weightCache.ts';
import { IntegrityError } from '../weights/integrity.ts';
import { HttpError, HttpFileNotFound, NetworkError } from '../weights/httpSource.ts';
import { CheckpointFileMissing } from '../weights/checkpoint.ts';
import { NoVideoEncoderError, UnsupportedVideoCodecError, VideoEncodeError, VideoError, VideoInputError } from '../video/videoErrors.ts';
import type { SerializedError } from '../worker/protocol.ts';

/** The chosen file is not an image this browser decodes, or its size is outside what the app accepts. */
export class ImageInputError extends Error {
  override name = 'ImageInputError';
}

/** The worker script failed to load or crashed (out of memory in the tab, a blocked script). */
export class WorkerCrashedError extends Error {
  override name = 'WorkerCrashedError';
}

/** Errors defined in worker-only modules, rebuilt as plain Errors that keep their name. */
const CLASSES: Record<string, { prototype: Error }> = {
  NoWebGPUError, NoAdapterError, DeviceLostError, GpuOutOfMemoryError,
  QuotaError, IntegrityError, HttpError, HttpFileNotFound, NetworkError, CheckpointFileMissing,
  VideoError, NoVideoEncoderError, UnsupportedVideoCodecError, VideoEncodeError, VideoInputError,
  ImageInputError, WorkerCrashedError,
};

/** A serialized error as an instance of its original class (when the page knows it), with its details as fields. */
export function rebuildError(raw: unknown): Error & { details?: Record<string, unknown> } {
  if (raw instanceof Error) return raw;
  const s: SerializedError = raw && typeof raw === 'object' && 'message' in raw
    ? (raw as SerializedError)
    : { name: 'Error', message: String(raw) };
  const proto = (CLASSES[s.name] ?? Error).prototype;
  // Object.create skips the constructors, which would rebuild the message from arguments we no longer have.
  const e = Object.create(proto) as Error & { details?: Record<string, unknown> };
  Object.defineProperty(e, 'name', { value: s.name, writable: true, configurable: true });
  Object.defineProperty(e, 'message', { value: s.message, writable: true, configurable: true });
  if (s.details) {
    e.details = s.details;
    for (const [k, v] of Object.entries(s.details)) if (!(k in e)) (e as unknown as Record<string, unknown>)[k] = v;
  }
  return e;
}

/** What to do next, in terms of this page's controls; empty when the message already says it all. */
export function advice(e: Error): string {
  if (e instanceof QuotaError) return 'The "Models in this browser" panel below lists what is stored and can delete it.';
  if (e instanceof NetworkError || (e instanceof HttpError && e.status >= 500)) return 'Press Generate again when the connection is back: the download continues from where it stopped.';
  if (e instanceof IntegrityError) return 'Delete the model in the "Models in this browser" panel, then press Generate to download it again.';
  if (e instanceof GpuOutOfMemoryError) return 'Pick a smaller size under Settings → Resolution, or a lower transformer memory budget, then press Generate.';
  if (e instanceof DeviceLostError) return 'Reload the page to get a new GPU device; finished videos are in the gallery.';
  if (e instanceof NoWebGPUError || e instanceof NoAdapterError) return 'You can still look at past results in the gallery.';
  return '';
}

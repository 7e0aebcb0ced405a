// The page's side of typed errors: the worker sends {name, message, details} (src/worker/serializeError.ts), plus
// the stack for programming errors, and this module rebuilds the same class from the registry in src/errors/, so
// components can tell a full disk from a lost GPU with `instanceof`; it also adds the one line of advice that
// depends on where the user is (which button to press next). The error classes themselves, including those made
// on the page (an unreadable image, a crashed worker), live in src/errors/, which imports nothing.

import {
  DeviceLostError, ERROR_CLASSES, GpuOutOfMemoryError, HttpError, IntegrityError, isProgrammingError, NetworkError,
  NoAdapterError, NoWebGPUError, QuotaError,
} from '../errors/index.ts';
import type { SerializedError } from '../worker/protocol.ts';

/** A serialized error as an instance of its original class (when the page knows it), with its details as fields. */
export function rebuildError(raw: unknown): Error & { details?: Record<string, unknown> } {
  if (raw instanceof Error) return raw;
  const s: SerializedError = raw && typeof raw === 'object' && 'message' in raw
    ? (raw as SerializedError)
    : { name: 'Error', message: String(raw) };
  const proto = (ERROR_CLASSES[s.name] ?? Error).prototype;
  // Object.create skips the constructors, which would rebuild the message from arguments we no longer have.
  const e = Object.create(proto) as Error & { details?: Record<string, unknown> };
  Object.defineProperty(e, 'name', { value: s.name, writable: true, configurable: true });
  Object.defineProperty(e, 'message', { value: s.message, writable: true, configurable: true });
  // The worker's stack, for the errors only a developer can act on (the worker sends no other).
  if (typeof s.stack === 'string' && isProgrammingError(s.name)) {
    Object.defineProperty(e, 'stack', { value: s.stack, writable: true, configurable: true });
  }
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
  if (e instanceof DeviceLostError) return 'The page has started over on a new GPU device: press Generate to try again. If it happens again, pick a smaller size under Settings → Resolution or close other GPU-heavy tabs.';
  if (e instanceof NoWebGPUError || e instanceof NoAdapterError) return 'You can still look at past results in the gallery.';
  return '';
}

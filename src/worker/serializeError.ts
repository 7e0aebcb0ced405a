// Errors leave the worker as plain data, {name, message, details}: postMessage would keep only the message of an
// Error (and comlink only its name, message and stack), losing the figures a person needs — how many bytes the
// quota lacks, which URL failed, which tensor is damaged. The UI rebuilds the same classes from `name`
// (src/ui/errors.ts, from the registry in src/errors/), so `instanceof QuotaError` works on both sides. Programming
// errors (a shape or plan the code got wrong) also carry their stack, which is what a bug report needs; the others
// do not, as their message says all a person can act on.

import { isProgrammingError } from '../errors/index.ts';
import type { SerializedError } from './protocol.ts';

type Plain = string | number | boolean | null;

const isPlain = (v: unknown): v is Plain => v === null || ['string', 'number', 'boolean'].includes(typeof v);

/**
 * Any thrown value as {name, message, details}: the error's own plain-data fields (and a `details` object) become
 * details; a programming error also keeps its stack.
 */
export function serializeError(e: unknown): SerializedError {
  if (!(e instanceof Error)) {
    if (e && typeof e === 'object' && 'name' in e && 'message' in e) return e as SerializedError; // already serialized
    return { name: 'Error', message: String(e) };
  }
  const details: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(e)) {
    if (key === 'name' || key === 'message' || key === 'stack' || key === 'cause') continue;
    if (isPlain(value)) details[key] = value;
    else if (key === 'details' && value && typeof value === 'object') {
      for (const [k, v] of Object.entries(value)) if (isPlain(v)) details[k] = v;
    }
  }
  // Infinity and NaN do not survive JSON-minded consumers; structured clone keeps them, so they stay.
  if (e.cause instanceof Error) details.cause = `${e.cause.name}: ${e.cause.message}`;
  return {
    name: e.name,
    message: e.message,
    ...(Object.keys(details).length ? { details } : {}),
    ...(isProgrammingError(e.name) && typeof e.stack === 'string' ? { stack: e.stack } : {}),
  };
}

// A job checkpoint (engine.ts JobCheckpoint) as bytes, for the CLI's cache directory and any store without
// structured clone: a small header, JSON with every typed array replaced by a reference, then the arrays' bytes
// (4-byte aligned, little-endian as the platform is). IndexedDB stores the object itself. The format carries a
// version: a state of another version, or one cut short, is refused with JobResumeError, never misread.

import { JobResumeError } from '../errors/engine.ts';
import type { JobCheckpoint } from './engine.ts';

const MAGIC = 'FPJOB';
/** Bump when JobCheckpoint's shape changes. */
export const JOB_STATE_VERSION = 1;

type ArrayKind = 'f32' | 'u32' | 'u8';
const ARRAYS = { f32: Float32Array, u32: Uint32Array, u8: Uint8Array } as const;

/** The checkpoint as one byte array. */
export function encodeJobState(checkpoint: JobCheckpoint): Uint8Array {
  const blobs: { kind: ArrayKind; bytes: Uint8Array }[] = [];
  const json = JSON.stringify(checkpoint, function (this: unknown, _key, value: unknown) {
    if (typeof value === 'bigint') return { $bigint: value.toString() };
    for (const kind of Object.keys(ARRAYS) as ArrayKind[]) {
      if (value instanceof ARRAYS[kind]) {
        blobs.push({ kind, bytes: new Uint8Array(value.buffer, value.byteOffset, value.byteLength) });
        return { $array: kind, index: blobs.length - 1 };
      }
    }
    return value;
  });
  const header = new TextEncoder().encode(`${MAGIC} ${JOB_STATE_VERSION}\n${json}`);
  const lengths = blobs.map((b) => b.bytes.byteLength);
  const table = new Uint32Array([header.byteLength, blobs.length, ...lengths]);
  let size = align(table.byteLength + header.byteLength);
  for (const n of lengths) size += align(n);
  const out = new Uint8Array(size);
  out.set(new Uint8Array(table.buffer), 0);
  out.set(header, table.byteLength);
  let at = align(table.byteLength + header.byteLength);
  for (const b of blobs) {
    out.set(b.bytes, at);
    at += align(b.bytes.byteLength);
  }
  return out;
}

/** Reads what encodeJobState wrote. Throws JobResumeError for another version or damaged bytes. */
export function decodeJobState(bytes: Uint8Array): JobCheckpoint {
  const fail = (why: string): never => { throw new JobResumeError(why); };
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (bytes.byteLength < 8) fail('its saved state is cut short');
  const headerLength = view.getUint32(0, true);
  const count = view.getUint32(4, true);
  const tableBytes = 8 + 4 * count;
  if (tableBytes + headerLength > bytes.byteLength) fail('its saved state is cut short');
  const text = new TextDecoder().decode(bytes.subarray(tableBytes, tableBytes + headerLength));
  const newline = text.indexOf('\n');
  const [magic, version] = text.slice(0, newline).split(' ');
  if (magic !== MAGIC) fail('the file is not a FramePack job state');
  if (Number(version) !== JOB_STATE_VERSION) fail(`it was saved in format ${version}; this version reads format ${JOB_STATE_VERSION}`);
  // Where each array's bytes start, from the length table; the JSON names each array's kind where it is used.
  const spans: { at: number; length: number }[] = [];
  let at = align(tableBytes + headerLength);
  for (let i = 0; i < count; i++) {
    const length = view.getUint32(8 + 4 * i, true);
    if (at + length > bytes.byteLength) fail('its saved state is cut short');
    spans.push({ at, length });
    at += align(length);
  }
  let seen = 0;
  const checkpoint = JSON.parse(text.slice(newline + 1), (_key, value: { $array?: ArrayKind; index?: number; $bigint?: string }) => {
    if (value && typeof value === 'object') {
      if (value.$array) {
        const span = spans[value.index!];
        if (!span || !(value.$array in ARRAYS)) fail('its saved state is damaged');
        seen++;
        const type = ARRAYS[value.$array];
        const copy = bytes.slice(span.at, span.at + span.length); // aligned, and independent of the file's buffer
        return new type(copy.buffer, 0, span.length / type.BYTES_PER_ELEMENT);
      }
      if (typeof value.$bigint === 'string') return BigInt(value.$bigint);
    }
    return value;
  }) as JobCheckpoint;
  if (seen !== count) fail('its saved state is damaged');
  return checkpoint;
}

function align(n: number): number {
  return Math.ceil(n / 4) * 4;
}

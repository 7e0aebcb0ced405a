// The weight store in a directory, for Node only (the CLI's --cache-dir, `npm run convert`, tests): the same
// ChunkedWeightStore as the browser's IndexedDB one — chunks with CRC-32s, per-tensor "done" marks, resumable —
// over a key-value backend of one file per key. Byte values (chunks) are written as `.bin` files, everything else
// (records, tensor entries, done marks) as `.json`; each file is written to a temporary name and renamed, and a
// transaction's entries are written in order, so the done mark and the record, which come last, only exist once
// what they vouch for is on disk. A full disk (ENOSPC) surfaces as the store's QuotaError.

import { mkdirSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { ChunkedWeightStore, DEFAULT_CHUNK_BYTES, type KeyValueBackend } from './weightCache.ts';

const encode = (key: string) => encodeURIComponent(key).replace(/\*/g, '%2A');
const decode = (file: string) => decodeURIComponent(file);

/** A KeyValueBackend over the files of `dir` (created when missing). */
export function directoryBackend(dir: string): KeyValueBackend {
  mkdirSync(dir, { recursive: true });
  const path = (key: string, ext: 'bin' | 'json') => join(dir, `${encode(key)}.${ext}`);
  /** Every stored key with its file, in key order. */
  const listing = (prefix: string): [string, string][] => {
    const out: [string, string][] = [];
    for (const f of readdirSync(dir)) {
      const m = /^(.*)\.(bin|json)$/.exec(f);
      if (!m) continue;
      const key = decode(m[1]);
      if (key.startsWith(prefix)) out.push([key, join(dir, f)]);
    }
    return out.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
  };
  const read = <T>(file: string): T => {
    const bytes = readFileSync(file);
    return (file.endsWith('.bin') ? new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength) : JSON.parse(bytes.toString('utf8'))) as T;
  };
  const remove = (key: string) => {
    for (const ext of ['bin', 'json'] as const) rmSync(path(key, ext), { force: true });
  };
  return {
    async get<T>(key: string) {
      for (const ext of ['bin', 'json'] as const) {
        const file = path(key, ext);
        if (existsSync(file)) return read<T>(file);
      }
      return undefined;
    },
    async entries<T>(prefix: string) {
      return listing(prefix).map(([k, f]) => [k, read<T>(f)] as [string, T]);
    },
    async keys(prefix) {
      return listing(prefix).map(([k]) => k);
    },
    async setMany(entries) {
      for (const [key, value] of entries) {
        const bytes = value instanceof Uint8Array;
        const file = path(key, bytes ? 'bin' : 'json');
        const tmp = `${file}.tmp`;
        try {
          writeFileSync(tmp, bytes ? value : JSON.stringify(value));
        } catch (e) {
          rmSync(tmp, { force: true });
          if ((e as NodeJS.ErrnoException).code === 'ENOSPC') throw Object.assign(new Error(`The disk holding ${dir} is full.`), { name: 'QuotaExceededError' });
          throw e;
        }
        rmSync(path(key, bytes ? 'json' : 'bin'), { force: true });
        renameSync(tmp, file);
      }
    },
    async deletePrefix(prefix) {
      for (const [, f] of listing(prefix)) rmSync(f, { force: true });
    },
    async deleteKey(key) {
      remove(key);
    },
  };
}

/** The CLI's weight store in `dir`. */
export function directoryWeightStore(dir: string, chunkBytes = DEFAULT_CHUNK_BYTES): ChunkedWeightStore {
  return new ChunkedWeightStore(directoryBackend(dir), chunkBytes);
}

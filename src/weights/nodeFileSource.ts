// Byte sources over the local file system, for Node only (CLI, tests, benchmarks). The browser build never
// imports this file; it reads Blobs and HTTP ranges instead.

import { CheckpointFileMissing } from '../errors/weights.ts';
import { open, stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { ByteSource } from './safetensors.ts';
import type { FolderSource } from './checkpoint.ts';

export function nodeFileSource(path: string): ByteSource {
  let sizeCache: number | null = null;
  return {
    name: path,
    async size() {
      sizeCache ??= (await stat(path)).size;
      return sizeCache;
    },
    async read(offset, length) {
      const fh = await open(path, 'r');
      try {
        const out = new Uint8Array(length);
        let done = 0;
        while (done < length) {
          const { bytesRead } = await fh.read(out, done, length - done, offset + done);
          if (bytesRead === 0) throw new Error(`${path}: unexpected end of file at ${offset + done}`);
          done += bytesRead;
        }
        return out;
      } finally {
        await fh.close();
      }
    },
  };
}

/** A checkpoint folder on disk. */
export function nodeFolderSource(dir: string): FolderSource {
  return async (file) => {
    const path = join(dir, file);
    try {
      await stat(path);
    } catch {
      throw new CheckpointFileMissing(file, dir);
    }
    return nodeFileSource(path);
  };
}

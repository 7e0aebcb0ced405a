// Checkpoint files the user picked from disk (a File from an <input>, a dropped folder) read as byte sources.
// Blob.slice is lazy, so a 10 GB local shard is converted tensor by tensor exactly like one fetched over HTTP,
// and the same conversion and cache code serves both. Works in Node 20+ too, which has Blob and File.

import { CheckpointFileMissing } from '../errors/weights.ts';
import type { FolderSource } from './checkpoint.ts';
import type { ByteSource } from './safetensors.ts';

export function blobSource(blob: Blob, name = blob instanceof File ? blob.name : 'blob'): ByteSource {
  return {
    name,
    size: async () => blob.size,
    async read(offset, length) {
      if (offset < 0 || offset + length > blob.size) throw new RangeError(`${name}: read of [${offset}, ${offset + length}) is outside the ${blob.size}-byte file`);
      return new Uint8Array(await blob.slice(offset, offset + length).arrayBuffer());
    },
  };
}

/** The path of a picked file inside the folder the user chose (`webkitRelativePath` minus the folder itself). */
function relativePath(file: File): string {
  const rel = file.webkitRelativePath;
  return rel ? rel.split('/').slice(1).join('/') : file.name;
}

/**
 * A checkpoint folder from picked files (a directory input gives every file with its relative path) or from an
 * explicit map of relative path → Blob. Throws CheckpointFileMissing for a file that was not picked.
 */
export function blobFolderSource(files: Iterable<File> | Map<string, Blob>, where = 'the chosen folder'): FolderSource {
  const byPath = files instanceof Map ? files : new Map([...files].map((f) => [relativePath(f), f as Blob]));
  return async (file) => {
    const blob = byPath.get(file);
    if (!blob) throw new CheckpointFileMissing(file, where);
    return blobSource(blob, file);
  };
}

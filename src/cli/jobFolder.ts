// The CLI's job state on disk, so a job stopped by Ctrl-C, a crash or a lost terminal goes on where it was when the
// same command runs again. One folder per job under the cache directory, named by a hash of what makes the job (the
// model's source, the settings and seed, the images, the output path), holds:
//   - state.bin: the last checkpoint (worker/jobState.ts: the encoders' results, the history latents, the overlap
//     frames still to be blended, the noise generator's position, the settings), replaced whole after each section;
//   - section-K.frames: each finished section's frames, as the Y4M sink wrote them (cli/y4mSink.ts).
// A finished job's folder is deleted.

import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { JobCheckpoint } from '../worker/engine.ts';
import { decodeJobState, encodeJobState } from '../worker/jobState.ts';

export interface JobFolder {
  dir: string;
  /** The saved checkpoint, or undefined when there is none. Throws JobResumeError for an unreadable one. */
  saved(): JobCheckpoint | undefined;
  /** Replaces the saved checkpoint (written whole, then renamed: a crash leaves the old one or the new one). */
  save(checkpoint: JobCheckpoint): void;
  /** Deletes the folder: the job is done, or is started over. */
  clear(): void;
}

/** What names a job: equal for the same command on the same inputs, different when anything that shapes it differs. */
export function jobKey(parts: { model: string; settings: unknown; images: Uint8Array[]; out: string }): string {
  const hash = createHash('sha256');
  hash.update(JSON.stringify({ model: parts.model, settings: parts.settings, out: parts.out }));
  for (const image of parts.images) hash.update(createHash('sha256').update(image).digest());
  return hash.digest('hex').slice(0, 24);
}

export function jobFolder(cacheDir: string, key: string): JobFolder {
  const dir = join(cacheDir, 'jobs', key);
  const state = join(dir, 'state.bin');
  return {
    dir,
    saved() {
      return existsSync(state) ? decodeJobState(new Uint8Array(readFileSync(state))) : undefined;
    },
    save(checkpoint) {
      mkdirSync(dir, { recursive: true });
      writeFileSync(`${state}.partial`, encodeJobState(checkpoint));
      renameSync(`${state}.partial`, state);
    },
    clear() {
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

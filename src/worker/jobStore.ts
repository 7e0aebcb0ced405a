// Where the page's jobs keep their state between sections (IndexedDB through idb-keyval, a database of its own):
// the checkpoint (worker/engine.ts JobCheckpoint: encoder results, history latents, overlap frames, the noise
// generator's position, the settings and seed) and the encoded video so far. A closed tab or a crash loses at most
// the section in progress; "Continue" in the gallery reads it back. Structured clone keeps typed arrays and bigints
// as they are. A finished job's state is deleted.

import { createStore, del, get, set, type UseStore } from 'idb-keyval';
import type { JobCheckpoint } from './engine.ts';
import type { StoredVideo } from '../video/videoAssembler.ts';
import { JOB_STATE_VERSION } from './jobState.ts';

export interface StoredJob {
  version: number;
  checkpoint: JobCheckpoint;
  video: StoredVideo;
  savedAt: number;
}

let store: UseStore | null = null;
const jobs = () => (store ??= createStore('framepack-jobs', 'state'));

export async function saveJob(id: string, checkpoint: JobCheckpoint, video: StoredVideo): Promise<void> {
  await set(id, { version: JOB_STATE_VERSION, checkpoint, video, savedAt: Date.now() } satisfies StoredJob, jobs());
}

/** The stored state, or undefined when there is none (or it is of another format version: it is never misread). */
export async function loadJob(id: string): Promise<StoredJob | undefined> {
  const job = await get<StoredJob>(id, jobs());
  return job?.version === JOB_STATE_VERSION ? job : undefined;
}

export async function deleteJob(id: string): Promise<void> {
  await del(id, jobs());
}

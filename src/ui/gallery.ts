// Past results, kept in the browser (IndexedDB through idb-keyval, in a database of their own so deleting a model
// never touches them and vice versa): the MP4, the settings and seed that made it, and the input image itself, so
// "run again" reproduces the job exactly. A running job's entry is kept up to date after every section.

import { createStore, del, entries, set, type UseStore } from 'idb-keyval';
import type { FormSnapshot } from './jobForm.svelte.ts';

export interface GalleryEntry {
  id: string;
  createdAt: number;
  form: FormSnapshot;
  mp4: Blob;
  frames: number;
  width: number;
  height: number;
  /** The job was stopped: the video holds the sections finished before. */
  stopped: boolean;
  /**
   * The job has not finished: saved after each section while it runs, so a closed tab, a crash or an error leaves
   * the finished part here, playable; Continue goes on from it (the worker keeps the job's state under `jobId`).
   */
  interrupted?: boolean;
  jobId?: string;
  image: Blob;
  imageName: string;
  endImage: Blob | null;
  endImageName: string | null;
  thumbnail: Blob;
}

let store: UseStore | null = null;
const gallery = () => (store ??= createStore('framepack-gallery', 'results'));

/** Newest first. */
export async function listGallery(): Promise<GalleryEntry[]> {
  const all = (await entries<string, GalleryEntry>(gallery())).map(([, v]) => v);
  return all.sort((a, b) => b.createdAt - a.createdAt);
}

export async function saveToGallery(entry: Omit<GalleryEntry, 'id' | 'createdAt'>): Promise<GalleryEntry> {
  const full: GalleryEntry = { ...entry, id: `${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 8)}`, createdAt: Date.now() };
  await set(full.id, full, gallery());
  return full;
}

/** Replaces an entry (same id), e.g. with the video after one more section. */
export async function updateGalleryEntry(entry: GalleryEntry): Promise<GalleryEntry> {
  await set(entry.id, entry, gallery());
  return entry;
}

export async function deleteFromGallery(id: string): Promise<void> {
  await del(id, gallery());
}

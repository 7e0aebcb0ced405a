// The page side of test/e2e/weightCache.spec.ts: bundled by esbuild at test time and served, with the model files,
// by the test's real HTTP server, so src/weights runs in the real browser against real IndexedDB, a real
// StorageManager and real Range requests. It exposes `window.weightHarness`; results and errors cross back to
// Node as plain data ({name, message} for errors, SHA-256 digests for tensor bytes).

import { QuotaError } from '../../../src/errors/index.ts';
import { downloadCheckpoint } from '../../../src/weights/download.ts';
import { httpFolderSource } from '../../../src/weights/httpSource.ts';
import { indexedDbWeightStore } from '../../../src/weights/weightCache.ts';

const store = indexedDbWeightStore();

export interface PlainError {
  error: { name: string; message: string; neededBytes?: number };
}

function plain(e: unknown): PlainError {
  const err = e instanceof Error ? e : new Error(String(e));
  return { error: { name: err.name, message: err.message, ...(err instanceof QuotaError ? { neededBytes: err.neededBytes } : {}) } };
}

async function sha256(bytes: Uint8Array): Promise<string> {
  const digest = new Uint8Array(await crypto.subtle.digest('SHA-256', bytes as Uint8Array<ArrayBuffer>));
  return Array.from(digest, (b) => b.toString(16).padStart(2, '0')).join('');
}

const harness = {
  /** Downloads a checkpoint folder into the IndexedDB cache unchanged (identity conversion), 64 kB per request. */
  async download(folderUrl: string, weightsFile: string, model: string, retries = 4) {
    try {
      const events: number[] = [];
      const result = await downloadCheckpoint({
        folder: httpFolderSource(folderUrl, { retries, retryDelayMs: 10 }),
        where: folderUrl,
        weightsFile,
        store,
        model,
        convert: (info, bytes) => [{ name: info.name, dtype: info.dtype, shape: info.shape, data: bytes }],
        onProgress: (e) => events.push(e.loaded),
        readBytes: 64 * 1024,
      });
      return { ...result, events };
    } catch (e) {
      return plain(e);
    }
  },

  /** Every stored tensor, read back through the integrity check, as a digest. */
  async read(model: string) {
    try {
      const out: { name: string; dtype: string; shape: number[]; sha256: string }[] = [];
      for (const t of await store.tensors(model)) out.push({ name: t.name, dtype: t.dtype, shape: t.shape, sha256: await sha256(await store.readTensor(model, t.name)) });
      return { tensors: out, record: await store.getModel(model) };
    } catch (e) {
      return plain(e);
    }
  },

  list: () => store.listModels(),
  remove: (model: string) => store.deleteModel(model),
  estimate: () => navigator.storage.estimate(),
};

export type WeightHarness = typeof harness;
(globalThis as unknown as { weightHarness: WeightHarness }).weightHarness = harness;

// The Web Worker entry: everything heavy (downloads, IndexedDB, ORT on WebGPU, video encoding) runs here, off the
// page's main thread, behind the typed FramePackApi exposed with comlink. Thrown errors cross as plain
// {name, message, details} (serializeError) because comlink would keep only an Error's name and message; the page
// rebuilds the same classes (src/ui/errors.ts).

import { expose } from 'comlink';
// The build copies ORT's wasm next to the app's assets; ORT is told where, so a static host needs no special path.
import ortWasmUrl from '../../node_modules/onnxruntime-web/dist/ort-wasm-simd-threaded.asyncify.wasm?url';
import { BrowserFramePack, type BrowserApiOptions } from './browserApi.ts';
import type { FramePackApi, GenerateRequest, WorkerEvent } from './protocol.ts';
import { serializeError } from './serializeError.ts';

/** What the page sets before the first call: where the tiny model is, plus test and diagnostic knobs. */
export type WorkerOptions = Omit<BrowserApiOptions, 'store' | 'wasmPaths'>;

export interface FramePackWorkerApi extends FramePackApi {
  /** Must come first; a second call is ignored. */
  configure(options: WorkerOptions): Promise<void>;
}

let api: BrowserFramePack | null = null;

function ready(): BrowserFramePack {
  if (!api) throw new Error('The FramePack worker was used before configure(); this is a bug in the page.');
  return api;
}

/** Runs `work` and turns whatever it throws into plain data comlink can carry intact. */
async function guarded<T>(work: () => Promise<T>): Promise<T> {
  try {
    return await work();
  } catch (e) {
    throw serializeError(e);
  }
}

const worker: FramePackWorkerApi = {
  async configure(options) {
    api ??= new BrowserFramePack({ ...options, wasmPaths: { wasm: ortWasmUrl } });
  },
  capabilities: () => guarded(() => ready().capabilities()),
  models: () => guarded(() => ready().models()),
  deleteModel: (id) => guarded(() => ready().deleteModel(id)),
  generate: (request: GenerateRequest, onEvent: (e: WorkerEvent) => void) => guarded(() => ready().generate(request, onEvent)),
  stop: () => guarded(() => ready().stop()),
  deleteJob: (jobId: string) => guarded(() => ready().deleteJob(jobId)),
};

expose(worker);

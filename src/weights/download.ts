// Download-and-convert, resumable: a checkpoint folder (Hugging Face over HTTP, local files, any FolderSource) is
// read shard by shard in storage order, each tensor is handed to the caller's converter as soon as its bytes have
// arrived, and the converted result is stored with a "done" mark in the same transaction. Nothing is kept but one
// tensor and one read chunk, so a 25 GB checkpoint converts in bounded memory, and after a cut connection, a
// stopped job or a reloaded page, calling it again starts at the first unfinished tensor (finished ones are not
// fetched again). Before any transfer it checks the storage quota where the browser reveals it (Chromium reports a
// fixed figure instead, so there the first refused write says what is missing) and asks for persistent storage.
// What is stored is the converted tensor (weights/pack.ts: 4-bit, fp16), so the quota is asked for the converted
// size, and tensors no network reads are neither fetched nor stored.

import { QuotaError } from '../errors/weights.ts';
import { CHROMIUM_STATIC_HEADROOM } from '../pipeline/storageQuota.ts';
import { openCheckpoint, type Checkpoint, type CheckpointTensor, type FolderSource } from './checkpoint.ts';
import { streamTensors, type ByteSource, type SafetensorsHeader } from './safetensors.ts';
import type { ConvertedTensor, WeightStore } from './weightCache.ts';

/** Turns one source tensor into what the app stores (identity, fp16, 4-bit packed + scales…). */
export type Converter = (info: CheckpointTensor, bytes: Uint8Array) => ConvertedTensor[] | Promise<ConvertedTensor[]>;

/** How a checkpoint is converted, decided once its config and tensor list are known (the headers are read first). */
export interface Conversion {
  convert: Converter;
  /** Stored size of a tensor after conversion, for the quota check. */
  convertedBytes(info: CheckpointTensor): number;
  /** Source tensors to leave out: neither fetched nor stored. */
  omit?(info: CheckpointTensor): boolean;
}

export interface DownloadProgress {
  phase: 'download';
  /** The shard being read (the last one once done). */
  file: string;
  /** Tensor bytes of the whole checkpoint read or already stored; only grows, ends equal to `total`. */
  loaded: number;
  total: number;
}

/** The part of `navigator.storage` used here (injectable: Node has none). */
export interface StorageLike {
  estimate(): Promise<{ quota?: number; usage?: number }>;
  persist?(): Promise<boolean>;
  persisted?(): Promise<boolean>;
}

export interface DownloadOptions {
  /** The checkpoint folder to read (httpFolderSource, blobFolderSource, nodeFolderSource…). */
  folder: FolderSource;
  /** Where the folder is, for messages. */
  where: string;
  /** The single-file name (`model.safetensors`); shards are found through its `.index.json`. Null: files only. */
  weightsFile: string | null;
  /** The config to keep with the model; null when the folder has none (tokenizers). Default `config.json`. */
  configFile?: string | null;
  /** Other files to store as they are (tokenizer.json, preprocessor_config.json…), dtype 'FILE'. */
  extraFiles?: string[];
  store: WeightStore;
  /** The cache's name for this model. */
  model: string;
  /** What was converted and how; a stored model with another fingerprint is replaced. Default: `where`. */
  fingerprint?: string;
  /** The conversion, given the opened checkpoint (null for a folder of files only); overrides `convert` and `convertedBytes`. */
  conversion?: (checkpoint: Checkpoint | null) => Conversion;
  convert?: Converter;
  /** Stored size of a tensor after conversion, for the quota check; default its source size. */
  convertedBytes?: (info: CheckpointTensor) => number;
  /** The stored format's version the conversion writes, kept in the model's record (weights/pack.ts). */
  pack?: number;
  onProgress?: (event: DownloadProgress) => void;
  signal?: AbortSignal;
  /** Bytes per read (one HTTP Range request); default 16 MiB. */
  readBytes?: number;
  /** Default `navigator.storage` where it exists; null skips the quota check and the persistence request. */
  storage?: StorageLike | null;
}

export interface DownloadResult {
  model: string;
  /** Source tensors converted in this call and skipped because an earlier call had stored them. */
  converted: number;
  skipped: number;
  /** Source tensors left out by the conversion (not fetched, not stored). */
  omitted: string[];
  /** Whether the browser granted persistent storage (null: not asked). */
  persisted: boolean | null;
}

/** A byte source that reports how far into the file reads have got. */
function watched(src: ByteSource, onRead: (end: number) => void): ByteSource {
  return {
    name: src.name,
    size: () => src.size(),
    async read(offset, length) {
      const bytes = await src.read(offset, length);
      onRead(offset + length);
      return bytes;
    },
  };
}

/** Bytes the origin may still store, or null when the browser does not say (see CHROMIUM_STATIC_HEADROOM). */
export async function availableBytes(storage: StorageLike): Promise<number | null> {
  const { quota, usage = 0 } = await storage.estimate();
  if (quota === undefined || quota - usage === CHROMIUM_STATIC_HEADROOM) return null;
  return Math.max(0, quota - usage);
}

function defaultStorage(): StorageLike | null {
  // Node and old browsers have no StorageManager; the DOM types claim it always exists.
  const storage = typeof navigator === 'undefined' ? undefined : (navigator.storage as StorageManager | undefined);
  return storage && typeof storage.estimate === 'function' ? storage : null;
}

/**
 * Downloads, converts and stores a checkpoint, resuming where an earlier call stopped.
 * Throws QuotaError (not enough storage, before any transfer or when a write is refused), the source's errors
 * (HttpError, HttpFileNotFound, NetworkError…), the signal's AbortError; what was stored before stays stored.
 */
export async function downloadCheckpoint(options: DownloadOptions): Promise<DownloadResult> {
  const { folder, where, store, model, signal } = options;
  const storage = options.storage === undefined ? defaultStorage() : options.storage;
  const readBytes = options.readBytes ?? 16 * 1024 * 1024;
  signal?.throwIfAborted();

  const checkpoint = options.weightsFile === null ? null : await openCheckpoint(folder, where, options.weightsFile, { configFile: options.configFile });
  const conversion: Conversion = options.conversion?.(checkpoint) ?? {
    convert: options.convert ?? (() => { throw new Error('downloadCheckpoint needs a convert or a conversion'); }),
    convertedBytes: options.convertedBytes ?? ((t: CheckpointTensor) => t.end - t.begin),
  };
  const { convert } = conversion;
  const sizeOf = (t: CheckpointTensor) => conversion.convertedBytes(t);
  let config = checkpoint?.config ?? {};
  if (!checkpoint && options.configFile) config = JSON.parse(new TextDecoder().decode(await readWhole(await folder(options.configFile)))) as Record<string, unknown>;
  const extraFiles = options.extraFiles ?? [];
  const extraSources = await Promise.all(extraFiles.map((f) => folder(f)));
  const headers = new Map<string, SafetensorsHeader>();
  const omitted: string[] = [];
  for (const file of checkpoint?.files ?? []) {
    const header = await checkpoint!.header(file);
    const kept = header.tensors.filter((t) => !conversion.omit?.({ ...t, file }));
    for (const t of header.tensors) if (!kept.includes(t)) omitted.push(t.name);
    headers.set(file, kept.length === header.tensors.length ? header : { ...header, tensors: kept, byName: new Map(kept.map((t) => [t.name, t])) });
  }
  const tensorCount = [...headers.values()].reduce((n, h) => n + h.tensors.length, 0);
  signal?.throwIfAborted();

  // What an earlier call stored counts only if it came from the same source and conversion.
  const fingerprint = options.fingerprint ?? where;
  const existing = await store.getModel(model);
  const same = existing?.fingerprint === fingerprint && existing.pack === options.pack;
  const finished = !same ? new Set<string>() : existing!.complete ? null : await store.finishedSources(model);
  const isDone = (name: string) => finished === null || finished.has(name);

  // Quota: what is still to be stored against what the browser will still give this origin.
  let needed = 0;
  for (const [file, header] of headers) for (const t of header.tensors) if (!isDone(t.name)) needed += sizeOf({ ...t, file });
  for (const [i, f] of extraFiles.entries()) if (!isDone(fileSourceName(f))) needed += await extraSources[i].size();
  let persisted: boolean | null = null;
  if (storage && needed > 0) {
    const available = await availableBytes(storage);
    const freed = existing && !same ? existing.storedBytes : 0; // beginModel drops it
    if (available !== null && needed > available + freed) throw new QuotaError(needed, available + freed, `The model ${model}`);
    if (storage.persist) persisted = (await storage.persisted?.()) || (await storage.persist());
  }
  let stored = 0;
  // Where the quota could not be known in advance, the refused write is where it shows: say what is still needed
  // (at least a kilobyte: even the records that only mark progress need room).
  const refused = (e: unknown, bytes = 0) =>
    e instanceof QuotaError ? new QuotaError(Math.max(needed - stored, bytes, 1024), null, `The model ${model}`) : e;
  try {
    await store.beginModel(model, fingerprint, config, tensorCount + extraFiles.length, options.pack);
  } catch (e) {
    throw refused(e);
  }
  const put = async (source: string, outputs: ConvertedTensor[]) => {
    try {
      await store.putConverted(model, source, outputs);
    } catch (e) {
      throw refused(e, (e as QuotaError).neededBytes);
    }
    stored += outputs.reduce((n, o) => n + o.data.length, 0);
  };

  // Progress counts tensor-data bytes over all shards (up to the last tensor kept); finished tensors count as loaded
  // from the start.
  const dataBytes = (h: SafetensorsHeader) => (h.tensors.length ? h.tensors[h.tensors.length - 1].end - h.dataOffset : 0);
  const total = [...headers.values()].reduce((n, h) => n + dataBytes(h), 0);
  let before = 0; // data bytes of the shards already passed
  let loaded = 0;
  const report = (file: string, at: number) => {
    if (at <= loaded) return;
    loaded = at;
    options.onProgress?.({ phase: 'download', file, loaded, total });
  };

  let converted = 0;
  let skipped = 0;
  for (const [i, f] of extraFiles.entries()) {
    const source = fileSourceName(f);
    if (isDone(source)) { skipped++; continue; }
    const data = await readWhole(extraSources[i]);
    await put(source, [{ name: source, dtype: 'FILE', shape: [data.length], data }]);
    converted++;
    signal?.throwIfAborted();
  }
  for (const [file, header] of headers) {
    const remaining = header.tensors.filter((t) => !isDone(t.name));
    skipped += header.tensors.length - remaining.length;
    const base = before;
    before += dataBytes(header);
    if (remaining.length === 0) { report(file, before); continue; }
    report(file, base + remaining[0].begin - header.dataOffset);
    const src = watched(await checkpoint!.source(file), (end) => report(file, base + Math.min(end, header.dataOffset + dataBytes(header)) - header.dataOffset));
    // streamTensors starts at the first remaining tensor, so finished tensors are never fetched again.
    for await (const { info, bytes } of streamTensors(src, { ...header, tensors: remaining }, readBytes, signal)) {
      const outputs = await convert({ ...info, file }, bytes);
      signal?.throwIfAborted();
      await put(info.name, outputs);
      converted++;
    }
    report(file, before);
  }
  try {
    await store.finishModel(model, omitted);
  } catch (e) {
    throw refused(e);
  }
  if (total === 0 || loaded < total) options.onProgress?.({ phase: 'download', file: [...headers.keys()].pop() ?? '', loaded: total, total });
  return { model, converted, skipped, omitted, persisted };
}

/** Extra files are stored under their file name, marked so they cannot clash with a tensor name. */
export const fileSourceName = (file: string) => `file:${file}`;

async function readWhole(src: ByteSource): Promise<Uint8Array> {
  return src.read(0, await src.size());
}

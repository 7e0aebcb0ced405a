// Where converted weights live between visits. The browser keeps them in IndexedDB (through idb-keyval, in a
// database of their own so clearing the gallery or the app shell never touches gigabytes of weights); tests use
// the same code over a Map. Tensors are cut into chunks of at most 16 MB because IndexedDB handles many
// medium values far better than a few gigantic ones, and each chunk carries a CRC-32 checked on every read.
// A source tensor's outputs and its "done" mark are written in one transaction, so an interrupted download
// never leaves a half-stored tensor that looks finished: that is what makes resuming safe.
//
// Callers see the `WeightStore` interface only, so the CLI can keep the same records in a directory.

import { createStore, promisifyRequest, type UseStore } from 'idb-keyval';
import { IntegrityError, QuotaError } from '../errors/weights.ts';
import { crc32 } from './integrity.ts';

/** One converted tensor as the converter hands it over (4-bit weights may yield several: packed, scales…). */
export interface ConvertedTensor {
  name: string;
  /** Whatever the consumer needs to interpret the bytes: 'F16', 'F32', 'Q4', 'U8', 'FILE'… */
  dtype: string;
  shape: number[];
  data: Uint8Array;
}

export interface StoredChunk {
  key: string;
  byteLength: number;
  crc32: number;
}

export interface StoredTensor {
  name: string;
  dtype: string;
  shape: number[];
  byteLength: number;
  /** The source tensor (or file) it was converted from. */
  source: string;
  chunks: StoredChunk[];
}

export interface ModelRecord {
  id: string;
  /** Identifies what was converted and how (source URL, converter version…); a mismatch means start over. */
  fingerprint: string;
  /** The checkpoint's config.json, needed to build the graphs without the source. */
  config: Record<string, unknown>;
  /** Number of source tensors and files the finished model has. */
  sources: number;
  storedBytes: number;
  complete: boolean;
  updatedAt: number;
  /** The stored format's version (weights/pack.ts PACK_VERSION) the tensors were converted to; absent: stored as downloaded (earlier builds). */
  pack?: number;
  /** Source tensors no network reads, left out (set when the model is finished). */
  omitted?: string[];
}

export interface ModelSummary {
  id: string;
  storedBytes: number;
  complete: boolean;
  updatedAt: number;
}

export interface WeightStore {
  /**
   * The model's record, creating it empty; an existing record with another fingerprint is deleted first. `pack` is
   * the stored format's version the tensors are converted to.
   */
  beginModel(id: string, fingerprint: string, config: Record<string, unknown>, sources: number, pack?: number): Promise<ModelRecord>;
  getModel(id: string): Promise<ModelRecord | undefined>;
  /** Stores the outputs of one source tensor and marks the source done, atomically. Throws QuotaError when full. */
  putConverted(id: string, source: string, outputs: ConvertedTensor[]): Promise<void>;
  /** Source tensors already stored: the point a download resumes from. */
  finishedSources(id: string): Promise<Set<string>>;
  /** Marks the model complete, noting the source tensors that were left out. */
  finishModel(id: string, omitted?: string[]): Promise<void>;
  tensors(id: string): Promise<StoredTensor[]>;
  /** One stored tensor's bytes, every chunk verified. Throws IntegrityError on a mismatch or a missing chunk. */
  readTensor(id: string, name: string): Promise<Uint8Array>;
  listModels(): Promise<ModelSummary[]>;
  deleteModel(id: string): Promise<void>;
}

/** The few key-value operations the store needs; IndexedDB and a Map provide them, a directory could too. */
export interface KeyValueBackend {
  get<T>(key: string): Promise<T | undefined>;
  /** Every [key, value] whose key starts with `prefix`, in key order. */
  entries<T>(prefix: string): Promise<[string, T][]>;
  keys(prefix: string): Promise<string[]>;
  /** All or nothing. */
  setMany(entries: [string, unknown][]): Promise<void>;
  deletePrefix(prefix: string): Promise<void>;
  deleteKey(key: string): Promise<void>;
}

export const DEFAULT_CHUNK_BYTES = 16 * 1024 * 1024;

// Key layout; \u0000 separates parts so no model id or tensor name can spill into another's range.
const SEP = '\u0000';
const modelKey = (id: string) => `model${SEP}${id}`;
const tensorPrefix = (id: string) => `tensor${SEP}${id}${SEP}`;
const donePrefix = (id: string) => `done${SEP}${id}${SEP}`;
const chunkPrefix = (id: string) => `chunk${SEP}${id}${SEP}`;

/** A WeightStore over any key-value backend: chunking, checksums, atomic per-tensor progress. */
export class ChunkedWeightStore implements WeightStore {
  constructor(readonly backend: KeyValueBackend, readonly chunkBytes = DEFAULT_CHUNK_BYTES) {}

  async beginModel(id: string, fingerprint: string, config: Record<string, unknown>, sources: number, pack?: number): Promise<ModelRecord> {
    const existing = await this.getModel(id);
    if (existing?.fingerprint === fingerprint && existing.pack === pack) return existing;
    if (existing) await this.deleteModel(id);
    const record: ModelRecord = { id, fingerprint, config, sources, storedBytes: 0, complete: false, updatedAt: Date.now(), ...(pack !== undefined ? { pack } : {}) };
    await this.write([[modelKey(id), record]]);
    return record;
  }

  getModel(id: string): Promise<ModelRecord | undefined> {
    return this.backend.get<ModelRecord>(modelKey(id));
  }

  async putConverted(id: string, source: string, outputs: ConvertedTensor[]): Promise<void> {
    const record = await this.requireModel(id);
    const writes: [string, unknown][] = [];
    let bytes = 0;
    for (const out of outputs) {
      const chunks: StoredChunk[] = [];
      for (let at = 0, i = 0; at < out.data.length || i === 0; at += this.chunkBytes, i++) {
        // slice(): a stored view must own its buffer, or IndexedDB would clone the whole parent buffer.
        const part = out.data.slice(at, Math.min(at + this.chunkBytes, out.data.length));
        const key = `${chunkPrefix(id)}${out.name}${SEP}${i}`;
        chunks.push({ key, byteLength: part.length, crc32: crc32(part) });
        writes.push([key, part]);
      }
      const entry: StoredTensor = { name: out.name, dtype: out.dtype, shape: out.shape, byteLength: out.data.length, source, chunks };
      writes.push([`${tensorPrefix(id)}${out.name}`, entry]);
      bytes += out.data.length;
    }
    writes.push([`${donePrefix(id)}${source}`, outputs.map((o) => o.name)]);
    writes.push([modelKey(id), { ...record, storedBytes: record.storedBytes + bytes, updatedAt: Date.now() }]);
    await this.write(writes, bytes);
  }

  async finishedSources(id: string): Promise<Set<string>> {
    const prefix = donePrefix(id);
    return new Set((await this.backend.keys(prefix)).map((k) => k.slice(prefix.length)));
  }

  async finishModel(id: string, omitted?: string[]): Promise<void> {
    const record = await this.requireModel(id);
    await this.write([[modelKey(id), { ...record, complete: true, updatedAt: Date.now(), ...(omitted?.length ? { omitted } : {}) }]]);
  }

  async tensors(id: string): Promise<StoredTensor[]> {
    return (await this.backend.entries<StoredTensor>(tensorPrefix(id))).map(([, v]) => v);
  }

  async readTensor(id: string, name: string): Promise<Uint8Array> {
    const entry = await this.backend.get<StoredTensor>(`${tensorPrefix(id)}${name}`);
    if (!entry) throw new IntegrityError(id, name, 'not in the cache');
    const out = new Uint8Array(entry.byteLength);
    let at = 0;
    for (const chunk of entry.chunks) {
      const bytes = await this.backend.get<Uint8Array>(chunk.key);
      if (!bytes) throw new IntegrityError(id, name, `chunk ${chunk.key.split(SEP).pop()} is missing`);
      if (bytes.length !== chunk.byteLength || at + bytes.length > out.length) throw new IntegrityError(id, name, `chunk of ${bytes.length} bytes where ${chunk.byteLength} were stored`);
      const sum = crc32(bytes);
      if (sum !== chunk.crc32) throw new IntegrityError(id, name, `checksum ${sum.toString(16)} where ${chunk.crc32.toString(16)} was stored`);
      out.set(bytes, at);
      at += bytes.length;
    }
    if (at !== entry.byteLength) throw new IntegrityError(id, name, `${at} bytes where ${entry.byteLength} were stored`);
    return out;
  }

  async listModels(): Promise<ModelSummary[]> {
    return (await this.backend.entries<ModelRecord>(modelKey(''))).map(([, r]) => ({ id: r.id, storedBytes: r.storedBytes, complete: r.complete, updatedAt: r.updatedAt }));
  }

  async deleteModel(id: string): Promise<void> {
    // Chunks go first and the record last, so an interrupted delete still shows the model (and can be retried).
    await this.backend.deletePrefix(chunkPrefix(id));
    await this.backend.deletePrefix(tensorPrefix(id));
    await this.backend.deletePrefix(donePrefix(id));
    await this.backend.deleteKey(modelKey(id));
  }

  private async requireModel(id: string): Promise<ModelRecord> {
    const record = await this.getModel(id);
    if (!record) throw new Error(`The model ${id} was not started in the cache (beginModel first).`);
    return record;
  }

  /** setMany, with the browser's quota failure turned into a QuotaError a person can act on. */
  private async write(entries: [string, unknown][], bytes = 0): Promise<void> {
    try {
      await this.backend.setMany(entries);
    } catch (e) {
      if (e instanceof Error && e.name === 'QuotaExceededError') throw new QuotaError(bytes, null, 'Storing the next tensor');
      throw e;
    }
  }
}

const prefixRange = (prefix: string) => IDBKeyRange.bound(prefix, `${prefix}\uffff`);

/** The browser's backend: one idb-keyval store in a database of its own. */
export function indexedDbBackend(dbName: string, storeName = 'weights'): KeyValueBackend {
  const store: UseStore = createStore(dbName, storeName);
  return {
    get: <T>(key: string) => store('readonly', (s) => promisifyRequest(s.get(key) as IDBRequest<T | undefined>)),
    entries: <T>(prefix: string) => store('readonly', async (s) => {
      const range = prefixRange(prefix);
      const [keys, values] = await Promise.all([promisifyRequest(s.getAllKeys(range)), promisifyRequest(s.getAll(range))]);
      return keys.map((k, i) => [k as string, values[i] as T] as [string, T]);
    }),
    keys: (prefix) => store('readonly', async (s) => (await promisifyRequest(s.getAllKeys(prefixRange(prefix)))) as string[]),
    setMany: (entries) => store('readwrite', (s) => {
      for (const [k, v] of entries) s.put(v, k);
      return promisifyRequest(s.transaction);
    }),
    deletePrefix: (prefix) => store('readwrite', (s) => {
      s.delete(prefixRange(prefix));
      return promisifyRequest(s.transaction);
    }),
    deleteKey: (key) => store('readwrite', (s) => {
      s.delete(key);
      return promisifyRequest(s.transaction);
    }),
  };
}

/** A Map that behaves like IndexedDB where it matters: values are structured-cloned in and out. */
export function memoryBackend(map = new Map<string, unknown>()): KeyValueBackend & { map: Map<string, unknown> } {
  const matching = (prefix: string) => [...map.keys()].filter((k) => k.startsWith(prefix)).sort();
  return {
    map,
    get: async <T>(key: string) => (map.has(key) ? structuredClone(map.get(key)) as T : undefined),
    entries: async <T>(prefix: string) => matching(prefix).map((k) => [k, structuredClone(map.get(k)) as T] as [string, T]),
    keys: async (prefix) => matching(prefix),
    setMany: async (entries) => { for (const [k, v] of entries) map.set(k, structuredClone(v)); },
    deletePrefix: async (prefix) => { for (const k of matching(prefix)) map.delete(k); },
    deleteKey: async (key) => { map.delete(key); },
  };
}

export const WEIGHTS_DB = 'framepack-weights';

/** The app's weight cache in IndexedDB. */
export function indexedDbWeightStore(dbName = WEIGHTS_DB, chunkBytes = DEFAULT_CHUNK_BYTES): ChunkedWeightStore {
  return new ChunkedWeightStore(indexedDbBackend(dbName), chunkBytes);
}

/** The same store in memory, for Node tests. */
export function memoryWeightStore(chunkBytes = DEFAULT_CHUNK_BYTES): ChunkedWeightStore {
  return new ChunkedWeightStore(memoryBackend(), chunkBytes);
}

// A cached checkpoint read back as the folder it was downloaded from. The engine's runners open models through
// FolderSource / ByteSource (config.json, `*.safetensors`, tokenizer files), so rather than teaching every runner
// about IndexedDB, this module serves the WeightStore's records under those same names: the stored config as
// `config.json`, stored files (tokenizers, preprocessor settings) under their own names, and the stored tensors
// as one synthesized safetensors file whose header is built from the records and whose data section is read
// tensor by tensor from the store (each read checked by the store's CRC). Shards of the source collapse into one
// file; the engine cannot tell, because openCheckpoint finds no index and reads the single file. A model converted
// to the stored format (weights/pack.ts) says so in that file's metadata, with its version, which is how the
// checkpoint knows to hand out its 4-bit weights as stored; a record of another version is refused.

import { CheckpointFileMissing, StoredModelError } from '../errors/weights.ts';
import type { FolderSource } from './checkpoint.ts';
import { fileSourceName } from './download.ts';
import { checkPackVersion, PACK_METADATA_KEY } from './pack.ts';
import { DTYPE_BYTES, type ByteSource } from './safetensors.ts';
import type { StoredTensor, WeightStore } from './weightCache.ts';

export interface StoredFolderOptions {
  /** Name the runners ask for, e.g. `model.safetensors`; null for a folder of files only (tokenizers). */
  weightsFile: string | null;
  /** Serve the record's config as `config.json` (networks have one, tokenizer folders do not). */
  config: boolean;
  /** For messages: where this folder came from. */
  where: string;
  /** Refuse (PackVersionError) a record not converted to this app's stored format, e.g. a raw download of an earlier build. */
  requirePack?: boolean;
}

function memorySource(name: string, bytes: Uint8Array): ByteSource {
  return {
    name,
    size: async () => bytes.length,
    async read(offset, length) {
      if (offset < 0 || offset + length > bytes.length) throw new RangeError(`${name}: read of [${offset}, ${offset + length}) is outside the ${bytes.length}-byte file`);
      return bytes.slice(offset, offset + length);
    },
  };
}

interface Placed {
  tensor: StoredTensor;
  /** Absolute offsets in the synthesized file, end exclusive. */
  begin: number;
  end: number;
}

/** The stored tensors laid out back to back behind a safetensors header (padded to 8 bytes, as the format's writers do). */
function layout(tensors: StoredTensor[], where: string, metadata: Record<string, string> | null): { header: Uint8Array; placed: Placed[]; size: number } {
  const json: Record<string, unknown> = metadata ? { __metadata__: metadata } : {};
  let at = 0;
  const relative: [StoredTensor, number, number][] = [];
  for (const t of tensors) {
    if (!(t.dtype in DTYPE_BYTES)) {
      throw new StoredModelError(`The cached tensor ${t.name} of ${where} is stored as ${t.dtype}, which this reader cannot serve; delete the model and download it again.`);
    }
    json[t.name] = { dtype: t.dtype, shape: t.shape, data_offsets: [at, at + t.byteLength] };
    relative.push([t, at, at + t.byteLength]);
    at += t.byteLength;
  }
  let text = JSON.stringify(json);
  text += ' '.repeat((8 - ((8 + new TextEncoder().encode(text).length) % 8)) % 8);
  const body = new TextEncoder().encode(text);
  const header = new Uint8Array(8 + body.length);
  new DataView(header.buffer).setBigUint64(0, BigInt(body.length), true);
  header.set(body, 8);
  const placed = relative.map(([tensor, b, e]) => ({ tensor, begin: header.length + b, end: header.length + e }));
  return { header, placed, size: header.length + at };
}

/** One safetensors file whose data comes from the store, one verified tensor at a time (the last one kept for chunked reads). */
function synthesizedSafetensors(store: WeightStore, id: string, name: string, tensors: StoredTensor[], where: string, metadata: Record<string, string> | null): ByteSource {
  const { header, placed, size } = layout(tensors, where, metadata);
  let last: { name: string; bytes: Promise<Uint8Array> } | null = null;
  const bytesOf = (t: StoredTensor) => {
    if (last?.name !== t.name) last = { name: t.name, bytes: store.readTensor(id, t.name) };
    return last.bytes;
  };
  return {
    name,
    size: async () => size,
    async read(offset, length) {
      if (offset < 0 || offset + length > size) throw new RangeError(`${name}: read of [${offset}, ${offset + length}) is outside the ${size}-byte file`);
      const out = new Uint8Array(length);
      const end = offset + length;
      if (offset < header.length) out.set(header.subarray(offset, Math.min(end, header.length)), 0);
      // First tensor ending after `offset` (binary search: placed is in ascending order).
      let lo = 0, hi = placed.length;
      while (lo < hi) {
        const mid = (lo + hi) >> 1;
        if (placed[mid].end <= offset) lo = mid + 1;
        else hi = mid;
      }
      for (let i = lo; i < placed.length && placed[i].begin < end; i++) {
        const p = placed[i];
        const bytes = await bytesOf(p.tensor);
        const from = Math.max(offset, p.begin), to = Math.min(end, p.end);
        out.set(bytes.subarray(from - p.begin, to - p.begin), from - offset);
      }
      return out;
    },
  };
}

/**
 * The cached model `id` as a FolderSource. Throws StoredModelError when the store has no finished model of that
 * id; opening a file it does not hold throws CheckpointFileMissing (which openCheckpoint uses to probe for shards).
 */
export async function storedFolderSource(store: WeightStore, id: string, options: StoredFolderOptions): Promise<FolderSource> {
  const record = await store.getModel(id);
  if (!record?.complete) throw new StoredModelError(`${options.where} is not (completely) in this browser's storage; download it first.`);
  if (options.requirePack || record.pack !== undefined) checkPackVersion(`${options.where} (stored)`, record.pack);
  const metadata = record.pack !== undefined ? { [PACK_METADATA_KEY]: String(record.pack) } : null;
  const all = await store.tensors(id);
  const files = new Map(all.filter((t) => t.dtype === 'FILE').map((t) => [t.name, t]));
  const tensors = all.filter((t) => t.dtype !== 'FILE');
  let weights: ByteSource | null = null;
  return async (file) => {
    const name = `${options.where}/${file}`;
    if (options.config && file === 'config.json') return memorySource(name, new TextEncoder().encode(JSON.stringify(record.config)));
    if (options.weightsFile !== null && file === options.weightsFile && tensors.length > 0) {
      weights ??= synthesizedSafetensors(store, id, name, tensors, options.where, metadata);
      return weights;
    }
    const stored = files.get(fileSourceName(file));
    if (stored) return memorySource(name, await store.readTensor(id, stored.name));
    throw new CheckpointFileMissing(file, `${options.where} (cached)`);
  };
}

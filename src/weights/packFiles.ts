// A pack of converted weights as files, for Node only (`npm run convert`): each stored part (weights/pack.ts
// format, read back from a WeightStore with every chunk's CRC checked) becomes a folder laid out like a Hugging Face
// checkpoint folder — config.json, the safetensors file the runners ask for (or shards of at most `shardBytes`
// with its .index.json), the tokenizer files — whose safetensors metadata carries the stored format's version, and
// manifest.json at the top lists the models (their framepack.json), the parts, their sizes, the tensors kept at
// fp32 and those left out. Any static server can host the folder; the page (?packUrl=) and the CLI (--pack) read it
// with the ordinary checkpoint reader, without converting anything.

import { closeSync, mkdirSync, openSync, writeFileSync, writeSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { StoredModelError } from '../errors/weights.ts';
import { fileSourceName } from './download.ts';
import { checkPackVersion, isKeptF32, PACK_FORMAT, PACK_MANIFEST, PACK_METADATA_KEY, PACK_VERSION, type PackManifest, type PackPartEntry } from './pack.ts';
import type { StoredTensor, WeightStore } from './weightCache.ts';

/** Default shard size of a pack part: large enough for few requests, small enough for most static hosts' limits. */
export const PACK_SHARD_BYTES = 2 ** 30;

export interface PackPartSpec {
  /** The part's folder in the pack (relative to manifest.json). */
  folder: string;
  storeId: string;
  weightsFile: string | null;
  configFile: string | null;
  extraFiles: string[];
  /** Where it was converted from, for the manifest. */
  source: string;
}

/** A safetensors header for `tensors` laid out back to back, padded to 8 bytes as the format's writers do. */
export function safetensorsHeader(tensors: Pick<StoredTensor, 'name' | 'dtype' | 'shape' | 'byteLength'>[]): Uint8Array {
  const json: Record<string, unknown> = { __metadata__: { [PACK_METADATA_KEY]: String(PACK_VERSION) } };
  let at = 0;
  for (const t of tensors) {
    json[t.name] = { dtype: t.dtype, shape: t.shape, data_offsets: [at, at + t.byteLength] };
    at += t.byteLength;
  }
  let text = JSON.stringify(json);
  text += ' '.repeat((8 - ((8 + Buffer.byteLength(text)) % 8)) % 8);
  const body = new TextEncoder().encode(text);
  const header = new Uint8Array(8 + body.length);
  new DataView(header.buffer).setBigUint64(0, BigInt(body.length), true);
  header.set(body, 8);
  return header;
}

/** Writes one stored part into `outDir/part.folder`; returns its manifest entry. Throws StoredModelError / PackVersionError. */
export async function writePackPart(store: WeightStore, part: PackPartSpec, outDir: string, shardBytes = PACK_SHARD_BYTES): Promise<PackPartEntry> {
  const record = await store.getModel(part.storeId);
  if (!record?.complete) throw new StoredModelError(`${part.source} is not completely stored; convert it first.`);
  checkPackVersion(part.source, record.pack);
  const dir = join(outDir, part.folder);
  mkdirSync(dir, { recursive: true });
  if (part.configFile) writeFileSync(join(dir, part.configFile), `${JSON.stringify(record.config, null, 2)}\n`);
  const all = await store.tensors(part.storeId);
  for (const file of part.extraFiles) {
    const stored = all.find((t) => t.name === fileSourceName(file));
    if (!stored) throw new StoredModelError(`${part.source}: ${file} is not stored.`);
    mkdirSync(dirname(join(dir, file)), { recursive: true });
    writeFileSync(join(dir, file), await store.readTensor(part.storeId, stored.name));
  }
  const tensors = all.filter((t) => t.dtype !== 'FILE');
  let bytes = 0;
  if (part.weightsFile && tensors.length > 0) {
    const shards: StoredTensor[][] = [[]];
    let size = 0;
    for (const t of tensors) {
      if (size > 0 && size + t.byteLength > shardBytes) {
        shards.push([]);
        size = 0;
      }
      shards.at(-1)!.push(t);
      size += t.byteLength;
    }
    const stem = part.weightsFile.replace(/\.safetensors$/, '');
    const names = shards.length === 1 ? [part.weightsFile] : shards.map((_, i) => `${stem}-${String(i + 1).padStart(5, '0')}-of-${String(shards.length).padStart(5, '0')}.safetensors`);
    const weightMap: Record<string, string> = {};
    for (const [i, shard] of shards.entries()) {
      const fd = openSync(join(dir, names[i]), 'w');
      try {
        writeSync(fd, safetensorsHeader(shard));
        for (const t of shard) {
          writeSync(fd, await store.readTensor(part.storeId, t.name)); // CRC-checked
          weightMap[t.name] = names[i];
          bytes += t.byteLength;
        }
      } finally {
        closeSync(fd);
      }
    }
    if (shards.length > 1) {
      const sorted = Object.fromEntries(Object.entries(weightMap).sort(([a], [b]) => (a < b ? -1 : 1)));
      writeFileSync(join(dir, `${part.weightsFile}.index.json`), `${JSON.stringify({ metadata: { total_size: bytes }, weight_map: sorted }, null, 2)}\n`);
    }
  }
  return {
    source: part.source,
    weights: part.weightsFile,
    config: part.configFile,
    files: part.extraFiles,
    tensors: tensors.length,
    bytes,
    keptF32: tensors.filter((t) => isKeptF32({ name: t.name, dtype: t.dtype, shape: t.shape, data: new Uint8Array(0) })).map((t) => t.name),
    omitted: record.omitted ?? [],
  };
}

/** Writes manifest.json (last, so a folder without it is an unfinished pack). */
export function writePackManifest(outDir: string, models: PackManifest['models'], parts: PackManifest['parts']): PackManifest {
  const manifest: PackManifest = {
    format: PACK_FORMAT,
    version: PACK_VERSION,
    what: 'FramePack Web converted weights (src/weights/pack.ts): per part, safetensors with NAME.q4 (U8 [n, k/32, 16] MatMulNBits nibbles) + NAME.q4_scales (F16 [n, k/32]) for 4-bit weights, F16 floats (F32 where fp16 overflows, listed in keptF32); tensors no network reads are left out (omitted).',
    models,
    parts,
    bytes: Object.values(parts).reduce((n, p) => n + p.bytes, 0),
  };
  writeFileSync(join(outDir, PACK_MANIFEST), `${JSON.stringify(manifest, null, 2)}\n`);
  return manifest;
}

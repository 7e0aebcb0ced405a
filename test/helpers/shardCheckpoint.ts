// Test checkpoints in the layout of the official Hugging Face repositories, made from a single-file fixture
// checkpoint: the tensors split into shards named `{stem}-0000k-of-0000n.safetensors` plus `{stem}.safetensors.index.json`.
// The safetensors format is parsed and written here by hand (8-byte length, JSON header, data), independently of
// src/weights, so what the tests expect does not come from the code they test.

import { copyFileSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

export interface HandTensor {
  name: string;
  dtype: string;
  shape: number[];
  bytes: Uint8Array;
}

/** Every tensor of a safetensors file in storage order, parsed by hand. */
export function readTensorsByHand(path: string): HandTensor[] {
  const file = readFileSync(path);
  const headerLen = Number(file.readBigUInt64LE(0));
  const header = JSON.parse(file.subarray(8, 8 + headerLen).toString('utf8')) as Record<string, { dtype: string; shape: number[]; data_offsets: [number, number] }>;
  const data = 8 + headerLen;
  return Object.entries(header)
    .filter(([name]) => name !== '__metadata__')
    .sort(([, a], [, b]) => a.data_offsets[0] - b.data_offsets[0])
    .map(([name, t]) => ({ name, dtype: t.dtype, shape: t.shape, bytes: new Uint8Array(file.subarray(data + t.data_offsets[0], data + t.data_offsets[1])) }));
}

/** Writes one safetensors file by hand; returns where each tensor's data lies in the file [begin, end). */
export function writeSafetensorsByHand(path: string, tensors: HandTensor[]): Map<string, [number, number]> {
  const header: Record<string, unknown> = { __metadata__: { format: 'pt' } };
  let off = 0;
  for (const t of tensors) {
    header[t.name] = { dtype: t.dtype, shape: t.shape, data_offsets: [off, off + t.bytes.length] };
    off += t.bytes.length;
  }
  const json = Buffer.from(JSON.stringify(header));
  const out = Buffer.alloc(8 + json.length + off);
  out.writeBigUInt64LE(BigInt(json.length), 0);
  json.copy(out, 8);
  const where = new Map<string, [number, number]>();
  let p = 8 + json.length;
  for (const t of tensors) {
    out.set(t.bytes, p);
    where.set(t.name, [p, p + t.bytes.length]);
    p += t.bytes.length;
  }
  writeFileSync(path, out);
  return where;
}

export interface ShardedCopy {
  shards: string[];
  /** shard file → tensor name → [begin, end) byte range inside that shard. */
  layout: Map<string, Map<string, [number, number]>>;
  tensors: HandTensor[];
}

/**
 * Copies `srcDir` (config.json + `{stem}.safetensors`) to `destDir` as `shardCount` shards with an index, the
 * tensors cut into contiguous groups of about equal bytes (storage order kept, as Hugging Face's sharding does).
 */
export function shardCheckpoint(srcDir: string, destDir: string, stem: string, shardCount: number): ShardedCopy {
  mkdirSync(destDir, { recursive: true });
  copyFileSync(join(srcDir, 'config.json'), join(destDir, 'config.json'));
  const tensors = readTensorsByHand(join(srcDir, `${stem}.safetensors`));
  const totalBytes = tensors.reduce((n, t) => n + t.bytes.length, 0);
  const groups: HandTensor[][] = Array.from({ length: shardCount }, () => []);
  let seen = 0;
  for (const t of tensors) {
    groups[Math.min(shardCount - 1, Math.floor((seen * shardCount) / totalBytes))].push(t);
    seen += t.bytes.length;
  }
  const pad = (k: number) => String(k).padStart(5, '0');
  const shards = groups.map((_, k) => `${stem}-${pad(k + 1)}-of-${pad(shardCount)}.safetensors`);
  const layout = new Map<string, Map<string, [number, number]>>();
  const weightMap: Record<string, string> = {};
  groups.forEach((group, k) => {
    layout.set(shards[k], writeSafetensorsByHand(join(destDir, shards[k]), group));
    for (const t of group) weightMap[t.name] = shards[k];
  });
  writeFileSync(join(destDir, `${stem}.safetensors.index.json`), JSON.stringify({ metadata: { total_size: totalBytes }, weight_map: weightMap }, null, 2));
  return { shards, layout, tensors };
}

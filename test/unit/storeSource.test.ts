// The cache read back as a checkpoint folder: the bundled tiny model's sharded transformer and its tokenizer folder
// are downloaded (unchanged) into an in-memory WeightStore, then opened through storedFolderSource exactly as the
// engine opens a model. Every tensor must come back byte-identical to the original shards (read independently
// with openCheckpoint over the files on disk), config.json must equal the file's JSON, stored files must equal the
// originals, chunked reads across tensor boundaries must agree with whole reads, and a missing file must throw
// CheckpointFileMissing so that openCheckpoint's shard probing works.

import { CheckpointFileMissing, StoredModelError } from '../../src/errors/index.ts';
import { describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { openCheckpoint } from '../../src/weights/checkpoint.ts';
import { downloadCheckpoint } from '../../src/weights/download.ts';
import { nodeFolderSource } from '../../src/weights/nodeFileSource.ts';
import { readHeader } from '../../src/weights/safetensors.ts';
import { storedFolderSource } from '../../src/weights/storeSource.ts';
import { memoryWeightStore } from '../../src/weights/weightCache.ts';

const TINY = join(import.meta.dirname, '..', '..', 'public', 'models', 'tiny');
const identity = (info: { name: string; dtype: string; shape: number[] }, bytes: Uint8Array) => [{ name: info.name, dtype: info.dtype, shape: info.shape, data: bytes }];

describe('storedFolderSource', () => {
  it('serves a cached sharded checkpoint as one safetensors file with byte-identical tensors', async () => {
    const dir = join(TINY, 'transformer');
    const store = memoryWeightStore(65536); // small chunks: tensors span several chunks
    await downloadCheckpoint({ folder: nodeFolderSource(dir), where: dir, weightsFile: 'diffusion_pytorch_model.safetensors', store, model: 't', convert: identity, storage: null });
    const folder = await storedFolderSource(store, 't', { weightsFile: 'diffusion_pytorch_model.safetensors', config: true, where: 'tiny/transformer' });

    const original = await openCheckpoint(nodeFolderSource(dir), dir, 'diffusion_pytorch_model.safetensors');
    expect(original.files.length).toBeGreaterThan(1); // the fixture really is sharded
    const cached = await openCheckpoint(folder, 'cache', 'diffusion_pytorch_model.safetensors');
    expect(cached.files).toEqual(['diffusion_pytorch_model.safetensors']);
    expect(cached.config).toEqual(JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8')));
    expect([...cached.tensors.keys()].sort()).toEqual([...original.tensors.keys()].sort());
    for (const name of original.tensors.keys()) {
      const a = await original.raw(name), b = await cached.raw(name);
      expect(b.info.dtype).toBe(a.info.dtype);
      expect(b.info.shape).toEqual(a.info.shape);
      expect(Buffer.from(b.data.buffer, b.data.byteOffset, b.data.byteLength).equals(Buffer.from(a.data.buffer, a.data.byteOffset, a.data.byteLength)), name).toBe(true);
    }

    // Reads that straddle tensor boundaries (as streamTensors makes them) agree with one whole read.
    const file = await folder('diffusion_pytorch_model.safetensors');
    const size = await file.size();
    const whole = await file.read(0, size);
    const header = await readHeader(file);
    expect(header.tensors.at(-1)!.end).toBe(size);
    expect((8 + Number(new DataView(whole.buffer).getBigUint64(0, true))) % 8).toBe(0);
    const pieces: Uint8Array[] = [];
    for (let at = 0; at < size; at += 40_000) pieces.push(await file.read(at, Math.min(40_000, size - at)));
    expect(Buffer.concat(pieces).equals(Buffer.from(whole))).toBe(true);
  });

  it('serves stored files under their names and refuses files it does not hold', async () => {
    const dir = join(TINY, 'HunyuanVideo', 'tokenizer');
    const store = memoryWeightStore();
    const extraFiles = ['tokenizer.json', 'tokenizer_config.json', 'special_tokens_map.json'];
    await downloadCheckpoint({ folder: nodeFolderSource(dir), where: dir, weightsFile: null, configFile: null, extraFiles, store, model: 'tok', convert: identity, storage: null });
    const folder = await storedFolderSource(store, 'tok', { weightsFile: null, config: false, where: 'tiny/tokenizer' });
    for (const f of extraFiles) {
      const src = await folder(f);
      expect(Buffer.from(await src.read(0, await src.size())).equals(readFileSync(join(dir, f))), f).toBe(true);
    }
    await expect(folder('config.json')).rejects.toBeInstanceOf(CheckpointFileMissing);
    await expect(folder('model.safetensors')).rejects.toBeInstanceOf(CheckpointFileMissing);
  });

  it('refuses a model that is not completely stored', async () => {
    const store = memoryWeightStore();
    await expect(storedFolderSource(store, 'nothing', { weightsFile: 'model.safetensors', config: true, where: 'x' })).rejects.toBeInstanceOf(StoredModelError);
    await store.beginModel('half', 'fp', {}, 3);
    await expect(storedFolderSource(store, 'half', { weightsFile: 'model.safetensors', config: true, where: 'x' })).rejects.toBeInstanceOf(StoredModelError);
  });
});

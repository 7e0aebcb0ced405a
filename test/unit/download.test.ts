// The resumable download-and-convert driver and the chunked weight store, end to end over real HTTP: the tiny
// DiT sharded in the official repositories' layout is served by test/helpers/rangeServer.ts, converted into the
// in-memory WeightStore (the same code as the IndexedDB one, over a Map), and checked against the tensors parsed
// by hand from the fixture file. A connection cut mid-shard surfaces as NetworkError, and the next call resumes
// without fetching a finished tensor again (checked in the server's request log), ending byte-equal to a clean run.

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { crc32 as zlibCrc32 } from 'node:zlib';
import { blobFolderSource } from '../../src/weights/blobSource.ts';
import { downloadCheckpoint, fileSourceName, type Converter, type DownloadOptions, type DownloadProgress } from '../../src/weights/download.ts';
import { f32ToF16Bits } from '../../src/weights/dtypes.ts';
import { HttpFileNotFound, IntegrityError, NetworkError, QuotaError } from '../../src/errors/index.ts';
import { hubDownload } from '../../src/weights/huggingFace.ts';
import { crc32 } from '../../src/weights/integrity.ts';
import { ChunkedWeightStore, memoryBackend, memoryWeightStore, type WeightStore } from '../../src/weights/weightCache.ts';
import { fixturesDir } from '../helpers/fixtures.ts';
import { startRangeServer, type RangeServer } from '../helpers/rangeServer.ts';
import { shardCheckpoint, type HandTensor, type ShardedCopy } from '../helpers/shardCheckpoint.ts';

const STEM = 'diffusion_pytorch_model';
const HF_DIR = 'lllyasviel/FramePackI2V_HY/resolve/main';
const TOKENIZER_DIR = 'hunyuanvideo-community/HunyuanVideo/resolve/main/tokenizer';
const READ = 64 * 1024; // small reads so the 1.9 MB shards take many Range requests, as real shards do

let root: string;
let server: RangeServer;
let sharded: ShardedCopy;
const byName = new Map<string, HandTensor>();

beforeAll(async () => {
  root = mkdtempSync(join(tmpdir(), 'download-'));
  sharded = shardCheckpoint(join(fixturesDir(), 'dit_tiny'), join(root, HF_DIR), STEM, 2);
  for (const t of sharded.tensors) byName.set(t.name, t);
  mkdirSync(join(root, TOKENIZER_DIR), { recursive: true });
  for (const f of ['tokenizer.json', 'tokenizer_config.json', 'special_tokens_map.json']) writeFileSync(join(root, TOKENIZER_DIR, f), JSON.stringify({ file: f, pad: 'x'.repeat(100) }));
  server = await startRangeServer(root);
});

afterAll(async () => {
  await server.close();
  rmSync(root, { recursive: true, force: true });
});

const identity: Converter = (info, bytes) => [{ name: info.name, dtype: info.dtype, shape: info.shape, data: bytes }];

const toF16: Converter = (info, bytes) => {
  const f32 = new Float32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 4);
  const out = new Uint16Array(f32.length);
  for (let i = 0; i < f32.length; i++) out[i] = f32ToF16Bits(f32[i]);
  return [{ name: info.name, dtype: 'F16', shape: info.shape, data: new Uint8Array(out.buffer) }];
};

function transformerOptions(store: WeightStore, extra: Partial<DownloadOptions> = {}): DownloadOptions {
  return { ...hubDownload('transformer-original', { endpoint: server.url, retryDelayMs: 1 }), store, model: 'dit', convert: identity, readBytes: READ, storage: null, ...extra };
}

async function storedContent(store: WeightStore, model: string) {
  const out = new Map<string, { dtype: string; shape: number[]; bytes: Uint8Array }>();
  for (const t of await store.tensors(model)) out.set(t.name, { dtype: t.dtype, shape: t.shape, bytes: await store.readTensor(model, t.name) });
  return out;
}

function expectEqualsFixture(content: Map<string, { dtype: string; shape: number[]; bytes: Uint8Array }>) {
  expect([...content.keys()].sort()).toEqual([...byName.keys()].sort());
  for (const [name, t] of content) {
    const want = byName.get(name)!;
    expect([t.dtype, t.shape]).toEqual([want.dtype, want.shape]);
    expect(Buffer.compare(t.bytes, want.bytes), name).toBe(0);
  }
}

const shardPath = (k: number) => `/${HF_DIR}/${sharded.shards[k]}`;
const dataBytes = () => sharded.tensors.reduce((n, t) => n + t.bytes.length, 0);

describe('downloadCheckpoint', () => {
  it('converts the sharded checkpoint (fp32→fp16) into the store; progress only grows and ends at the total', async () => {
    const store = memoryWeightStore(256 * 1024);
    const events: DownloadProgress[] = [];
    const result = await downloadCheckpoint(transformerOptions(store, { convert: toF16, onProgress: (e) => events.push(e) }));
    expect(result).toMatchObject({ converted: byName.size, skipped: 0 });
    for (const t of await store.tensors('dit')) {
      const want = new Float32Array(byName.get(t.name)!.bytes.slice().buffer);
      const wantF16 = Uint16Array.from(want, f32ToF16Bits);
      expect(t.dtype).toBe('F16');
      expect(Buffer.compare(await store.readTensor('dit', t.name), new Uint8Array(wantF16.buffer)), t.name).toBe(0);
    }
    const record = await store.getModel('dit');
    expect(record).toMatchObject({ complete: true, sources: byName.size, storedBytes: dataBytes() / 2 });
    expect(record!.config).toEqual(JSON.parse(readFileSync(join(root, HF_DIR, 'config.json'), 'utf8')));
    expect(events.length).toBeGreaterThan(sharded.shards.length * 4);
    for (let i = 1; i < events.length; i++) expect(events[i].loaded).toBeGreaterThan(events[i - 1].loaded);
    expect(events.every((e) => e.phase === 'download' && e.total === dataBytes())).toBe(true);
    expect(events.at(-1)!.loaded).toBe(dataBytes());
    expect(new Set(events.map((e) => e.file))).toEqual(new Set(sharded.shards));
  });

  it('a connection cut mid-shard: NetworkError, then the next call resumes without refetching finished tensors', async () => {
    const clean = memoryWeightStore();
    await downloadCheckpoint(transformerOptions(clean));
    expectEqualsFixture(await storedContent(clean, 'dit'));

    const store = memoryWeightStore();
    const shard1 = sharded.layout.get(sharded.shards[1])!;
    const ends = [...shard1.values()];
    const cut = ends[Math.floor(ends.length / 2)][0] + 1000; // inside a tensor in the middle of the second shard
    server.cutAt(shardPath(1), cut);
    const err = await downloadCheckpoint(transformerOptions(store, hubDownload('transformer-original', { endpoint: server.url, retries: 0 }))).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(NetworkError);
    expect((err as Error).message).toMatch(/check your connection.*resumes where it stopped/);

    const finished = await store.finishedSources('dit');
    for (const name of sharded.layout.get(sharded.shards[0])!.keys()) expect(finished.has(name)).toBe(true);
    // Finished means fully received before the cut; everything before the read that was cut is finished.
    for (const [name, [, end]] of shard1) {
      if (finished.has(name)) expect(end).toBeLessThanOrEqual(cut);
      if (end <= cut - READ) expect(finished.has(name), name).toBe(true);
    }
    expect(finished.size).toBeGreaterThan(sharded.layout.get(sharded.shards[0])!.size);
    expect(finished.size).toBeLessThan(byName.size);
    expect((await store.getModel('dit'))!.complete).toBe(false);

    const mark = server.log.length;
    const result = await downloadCheckpoint(transformerOptions(store));
    expect(result).toMatchObject({ converted: byName.size - finished.size, skipped: finished.size });
    // No request of the resumed run touches the data of a tensor finished before the cut (headers may be re-read).
    for (const [k, shard] of sharded.shards.entries()) {
      const done = [...sharded.layout.get(shard)!].filter(([name]) => finished.has(name)).map(([, r]) => r);
      const gets = server.log.slice(mark).filter((r) => r.path === shardPath(k) && r.method === 'GET');
      for (const r of gets) {
        expect(r.range).not.toBeNull();
        for (const [b, e] of done) expect(r.range![1] < b || r.range![0] >= e, `${shard} ${r.range} overlaps a finished tensor [${b}, ${e})`).toBe(true);
      }
    }
    const refetched = server.log.slice(mark).filter((r) => r.path === shardPath(1) && r.method === 'GET' && r.range![0] >= ends[0][0]);
    expect(refetched.length).toBeGreaterThan(0);
    expect((await store.getModel('dit'))!.complete).toBe(true);
    const [got, want] = [await storedContent(store, 'dit'), await storedContent(clean, 'dit')];
    expect([...got.keys()].sort()).toEqual([...want.keys()].sort());
    for (const [name, t] of got) {
      expect([t.dtype, t.shape]).toEqual([want.get(name)!.dtype, want.get(name)!.shape]);
      expect(Buffer.compare(t.bytes, want.get(name)!.bytes), name).toBe(0);
    }
  });

  it('abort stops the download with AbortError and a later call finishes it', async () => {
    const store = memoryWeightStore();
    const controller = new AbortController();
    const err = await downloadCheckpoint(transformerOptions(store, {
      signal: controller.signal,
      onProgress: (e) => { if (e.loaded > dataBytes() / 3) controller.abort(); },
    })).catch((e: unknown) => e);
    expect((err as Error).name).toBe('AbortError');
    const finished = (await store.finishedSources('dit')).size;
    expect(finished).toBeGreaterThan(0);
    expect(finished).toBeLessThan(byName.size);
    const result = await downloadCheckpoint(transformerOptions(store));
    expect(result.skipped).toBe(finished);
    expectEqualsFixture(await storedContent(store, 'dit'));
  });

  it('quota: too little space is a QuotaError naming the needed size, before any data is fetched', async () => {
    let persistAsked = 0;
    const tiny = { estimate: async () => ({ quota: 1_000_000, usage: 200_000 }), persist: async () => { persistAsked++; return true; } };
    const mark = server.log.length;
    const err = await downloadCheckpoint(transformerOptions(memoryWeightStore(), { storage: tiny })).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(QuotaError);
    expect((err as QuotaError).neededBytes).toBe(dataBytes());
    expect((err as QuotaError).availableBytes).toBe(800_000);
    expect((err as Error).message).toContain(`needs ${(dataBytes() / 1e6).toFixed(1)} MB`);
    expect((err as Error).message).toContain('only 800 kB is available');
    expect((err as Error).message).toMatch(/delete other cached models/);
    // Only headers were read: no Range request reaches past a shard's header.
    const headerEnd = (k: number) => Math.min(...[...sharded.layout.get(sharded.shards[k])!.values()].map(([b]) => b));
    for (const r of server.log.slice(mark).filter((r) => r.method === 'GET' && r.range)) {
      const k = sharded.shards.findIndex((_, i) => r.path === shardPath(i));
      if (k >= 0) expect(r.range![1]).toBeLessThan(headerEnd(k));
    }
    expect(persistAsked).toBe(0);

    const roomy = { estimate: async () => ({ quota: 1e12, usage: 0 }), persisted: async () => false, persist: async () => { persistAsked++; return true; } };
    const ok = await downloadCheckpoint(transformerOptions(memoryWeightStore(), { storage: roomy }));
    expect(ok.persisted).toBe(true);
    expect(persistAsked).toBe(1);
  });

  it('local files (Blobs) give the same store content as HTTP', async () => {
    const dir = join(root, HF_DIR);
    const files = new Map<string, Blob>(['config.json', `${STEM}.safetensors.index.json`, ...sharded.shards].map((f) => [f, new Blob([readFileSync(join(dir, f))])]));
    const store = memoryWeightStore();
    await downloadCheckpoint({ folder: blobFolderSource(files), where: 'picked folder', weightsFile: `${STEM}.safetensors`, store, model: 'dit', convert: identity, storage: null });
    expectEqualsFixture(await storedContent(store, 'dit'));
  });

  it('a tokenizer component: files stored as they are; a missing one is HttpFileNotFound', async () => {
    const store = memoryWeightStore();
    const result = await downloadCheckpoint({ ...hubDownload('tokenizer', { endpoint: server.url }), store, model: 'tokenizer', convert: identity, storage: null });
    expect(result.converted).toBe(3);
    const got = new TextDecoder().decode(await store.readTensor('tokenizer', fileSourceName('tokenizer.json')));
    expect(got).toBe(readFileSync(join(root, TOKENIZER_DIR, 'tokenizer.json'), 'utf8'));
    const err = await downloadCheckpoint({ ...hubDownload('vae', { endpoint: server.url }), store, model: 'vae', convert: identity, storage: null }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(HttpFileNotFound);
    expect((err as Error).message).toMatch(/hunyuanvideo-community\/HunyuanVideo\/resolve\/main\/vae\/config\.json.*check the repository name/);
  });
});

describe('weight store', () => {
  it('CRC-32 equals zlib and the standard check value', () => {
    expect(crc32(new TextEncoder().encode('123456789'))).toBe(0xcbf43926);
    const bytes = new Uint8Array(100_003);
    for (let i = 0; i < bytes.length; i++) bytes[i] = (i * 2654435761) >>> 13;
    expect(crc32(bytes)).toBe(zlibCrc32(bytes));
    expect(crc32(bytes.subarray(5000), crc32(bytes.subarray(0, 5000)))).toBe(zlibCrc32(bytes));
  });

  it('chunks, lists sizes, catches a damaged or missing chunk, deletes, and restarts on a new fingerprint', async () => {
    const backend = memoryBackend();
    const store = new ChunkedWeightStore(backend, 1000);
    const data = Uint8Array.from({ length: 2500 }, (_, i) => i % 251);
    await store.beginModel('a', 'v1', { x: 1 }, 2);
    await store.beginModel('ab', 'v1', {}, 1); // a prefix of another id must not mix with it
    await store.putConverted('a', 'w', [{ name: 'w.q', dtype: 'Q4', shape: [2500], data }, { name: 'w.s', dtype: 'F16', shape: [0], data: new Uint8Array(0) }]);
    await store.putConverted('ab', 'v', [{ name: 'v', dtype: 'U8', shape: [3], data: data.subarray(0, 3) }]);
    const entry = (await store.tensors('a')).find((t) => t.name === 'w.q')!;
    expect(entry.chunks.map((c) => c.byteLength)).toEqual([1000, 1000, 500]);
    expect(Array.from(await store.readTensor('a', 'w.q'))).toEqual(Array.from(data));
    expect((await store.readTensor('a', 'w.s')).length).toBe(0);
    expect((await store.listModels()).map((m) => [m.id, m.storedBytes, m.complete])).toEqual([['a', 2500, false], ['ab', 3, false]]);

    const key = entry.chunks[1].key;
    const damaged = backend.map.get(key) as Uint8Array;
    damaged[10] ^= 0x40;
    const err = await store.readTensor('a', 'w.q').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(IntegrityError);
    expect((err as Error).message).toMatch(/cached model a is damaged.*delete it and download it again/);
    backend.map.delete(key);
    await expect(store.readTensor('a', 'w.q')).rejects.toThrow(/chunk 1 is missing/);

    await store.deleteModel('a');
    expect((await store.listModels()).map((m) => m.id)).toEqual(['ab']);
    expect([...backend.map.keys()].filter((k) => k.includes('\u0000a\u0000'))).toEqual([]);
    await store.beginModel('ab', 'v2', {}, 1);
    expect(await store.tensors('ab')).toEqual([]);
    expect((await store.finishedSources('ab')).size).toBe(0);
  });
});

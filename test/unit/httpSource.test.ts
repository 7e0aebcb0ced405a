// HTTP byte sources against a real local server (test/helpers/rangeServer.ts): Range reads of the fixture DiT
// checkpoint and of a sharded copy in the Hugging Face layout equal the bytes on disk (parsed by hand), and each
// failure a user can meet — a 404, a gated repo, a 500, a cut connection, no network, a server without Range,
// a cancelled load — ends in the behaviour and the message it should.

import { CheckpointFileMissing, HttpError, HttpFileNotFound, NetworkError } from '../../src/errors/index.ts';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtempSync, readFileSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openCheckpoint } from '../../src/weights/checkpoint.ts';
import { httpFileSource, httpFolderSource } from '../../src/weights/httpSource.ts';
import { hubComponent, hubDownload, hubFileUrl, hubFolderUrl } from '../../src/weights/huggingFace.ts';
import { fixturesDir } from '../helpers/fixtures.ts';
import { startRangeServer, type RangeServer } from '../helpers/rangeServer.ts';
import { readTensorsByHand, shardCheckpoint, type ShardedCopy } from '../helpers/shardCheckpoint.ts';

const STEM = 'diffusion_pytorch_model';
const WEIGHTS = `${STEM}.safetensors`;
const HF_DIR = 'lllyasviel/FramePackI2V_HY/resolve/main';

let root: string;
let server: RangeServer;
let sharded: ShardedCopy;
const dit = () => join(fixturesDir(), 'dit_tiny');
const fast = { retryDelayMs: 1 };

beforeAll(async () => {
  root = mkdtempSync(join(tmpdir(), 'http-source-'));
  for (const name of ['ref', 'norange', 'gated']) symlinkSync(dit(), join(root, name));
  sharded = shardCheckpoint(dit(), join(root, HF_DIR), STEM, 2);
  server = await startRangeServer(root);
  server.ignoreRange('/norange/');
  server.requireToken('/gated/', 'hf_test_token');
});

afterAll(async () => {
  await server.close();
  rmSync(root, { recursive: true, force: true });
});

function requestsFor(path: string, since = 0) {
  return server.log.slice(since).filter((r) => r.path === path);
}

async function expectSameTensors(ckpt: Awaited<ReturnType<typeof openCheckpoint>>) {
  const want = readTensorsByHand(join(dit(), WEIGHTS));
  expect([...ckpt.tensors.keys()].sort()).toEqual(want.map((t) => t.name).sort());
  for (const t of want) {
    const { info, data } = await ckpt.raw(t.name);
    expect(info.dtype).toBe(t.dtype);
    expect(info.shape).toEqual(t.shape);
    expect(Buffer.compare(new Uint8Array(data.buffer, data.byteOffset, data.byteLength), t.bytes), t.name).toBe(0);
  }
}

describe('httpFolderSource over a real server', () => {
  it('opens the fixture checkpoint with Range requests and reads every tensor as on disk', async () => {
    const mark = server.log.length;
    const ckpt = await openCheckpoint(httpFolderSource(`${server.url}/ref/`, fast), 'dit_tiny', WEIGHTS);
    expect(ckpt.config).toEqual(JSON.parse(readFileSync(join(dit(), 'config.json'), 'utf8')));
    expect(ckpt.files).toEqual([WEIGHTS]);
    await expectSameTensors(ckpt);
    // The index probe is a 404 (single-file form); every read of the weights is a 206 to a Range request.
    expect(requestsFor(`/ref/${WEIGHTS}.index.json`, mark).map((r) => r.status)).toEqual([404]);
    const gets = requestsFor(`/ref/${WEIGHTS}`, mark).filter((r) => r.method === 'GET');
    expect(gets.length).toBeGreaterThan(0);
    for (const r of gets) {
      expect(r.status).toBe(206);
      expect(r.range).not.toBeNull();
    }
  });

  it('reads a sharded checkpoint in the Hugging Face layout through index.json', async () => {
    const component = hubComponent('transformer-original');
    expect(hubFolderUrl(component, server.url)).toBe(`${server.url}/${HF_DIR}/`);
    expect(hubFileUrl(component, 'config.json')).toBe('https://huggingface.co/lllyasviel/FramePackI2V_HY/resolve/main/config.json');
    const hub = hubDownload('transformer-original', { endpoint: server.url, ...fast });
    const ckpt = await openCheckpoint(hub.folder, hub.where, hub.weightsFile!);
    expect(ckpt.files).toEqual(sharded.shards);
    expect(sharded.shards).toHaveLength(2);
    for (const [shard, tensors] of sharded.layout) {
      for (const name of tensors.keys()) expect(ckpt.tensors.get(name)!.file).toBe(shard);
    }
    await expectSameTensors(ckpt);
  });

  it('works with a server that ignores Range for a small file, and refuses a large one with a message', async () => {
    const mark = server.log.length;
    await expectSameTensors(await openCheckpoint(httpFolderSource(`${server.url}/norange/`, fast), 'norange', WEIGHTS));
    // One whole-file GET answered 200, then every read is sliced from it.
    expect(requestsFor(`/norange/${WEIGHTS}`, mark).filter((r) => r.method === 'GET').map((r) => r.status)).toEqual([200]);
    const big = httpFileSource(`${server.url}/norange/${WEIGHTS}`, { ...fast, maxIgnoredRangeBytes: 1_000_000 });
    const err = await big.read(100, 10).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(HttpError);
    expect((err as Error).message).toMatch(/ignores Range requests.*too large.*supports Range/);
  });

  it('retries a 500 and resumes a cut transfer from the byte where it stopped', async () => {
    const path = `/${HF_DIR}/${sharded.shards[1]}`;
    const src = httpFileSource(`${server.url}${path}`, fast);
    const size = await src.size();
    const cut = Math.floor(size * 0.6);
    server.failNext(path, 500);
    server.cutAt(path, cut);
    const mark = server.log.length;
    const got = await src.read(0, size);
    expect(Buffer.compare(got, readFileSync(join(root, path)))).toBe(0);
    const log = requestsFor(path, mark);
    expect(log.map((r) => r.status)).toEqual([500, 206, 206]);
    expect(log[1].range).toEqual([0, size - 1]);
    expect(log[1].sent).toBe(cut); // the cut happened where it was asked to
    expect(log[2].range).toEqual([cut, size - 1]); // and only the rest was asked for again
  });

  it('404: HttpFileNotFound (a CheckpointFileMissing) names the URL and says to check the repository name', async () => {
    const err = await httpFolderSource(`${server.url}/nobody/no-repo/resolve/main/`, fast)('config.json').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(HttpFileNotFound);
    expect(err).toBeInstanceOf(CheckpointFileMissing);
    expect((err as HttpFileNotFound).url).toBe(`${server.url}/nobody/no-repo/resolve/main/config.json`);
    expect((err as Error).message).toMatch(/config\.json was not found at http:\/\/127\.0\.0\.1:\d+\/nobody\/no-repo\/resolve\/main\/config\.json.*check the repository name/);
  });

  it('401: says the repository needs a token or an accepted license; with the token it opens', async () => {
    const err = await openCheckpoint(httpFolderSource(`${server.url}/gated/`, fast), 'gated', WEIGHTS).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(HttpError);
    expect((err as HttpError).status).toBe(401);
    expect((err as Error).message).toMatch(/needs a Hugging Face token.*license/);
    const ok = await openCheckpoint(httpFolderSource(`${server.url}/gated/`, { ...fast, headers: { Authorization: 'Bearer hf_test_token' } }), 'gated', WEIGHTS);
    expect(ok.tensors.size).toBe(readTensorsByHand(join(dit(), WEIGHTS)).length);
  });

  it('a 5xx that persists: HttpError after the bounded retries', async () => {
    const path = '/ref/config.json';
    server.failNext(path, 503, 10);
    const mark = server.log.length;
    const err = await httpFileSource(`${server.url}${path}`, { retries: 2, retryDelayMs: 1 }).size().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(HttpError);
    expect((err as HttpError).status).toBe(503);
    expect((err as Error).message).toMatch(/HTTP 503 on 3 attempts.*try again later.*resumes where it stopped/);
    expect(requestsFor(path, mark)).toHaveLength(3);
    server.failNext(path, 503, 0);
  });

  it('no server: NetworkError says to check the connection and that the download resumes', async () => {
    const gone = await startRangeServer(root);
    await gone.close();
    const err = await httpFileSource(`${gone.url}/ref/config.json`, { retries: 1, retryDelayMs: 1 }).size().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(NetworkError);
    expect((err as Error).message).toMatch(/check your connection.*resumes where it stopped/);
  });

  it('abort ends a request in flight and a backoff wait at once', async () => {
    server.delayMs = 3000;
    try {
      const controller = new AbortController();
      const t0 = performance.now();
      setTimeout(() => controller.abort(), 50);
      const err = await httpFileSource(`${server.url}/ref/config.json`, { signal: controller.signal }).size().catch((e: unknown) => e);
      expect((err as Error).name).toBe('AbortError');
      expect(performance.now() - t0).toBeLessThan(1000);
    } finally {
      server.delayMs = 0;
    }
    const path = '/ref/dit_tiny-config-missing.json';
    server.failNext(path, 500, 5);
    const controller = new AbortController();
    const t0 = performance.now();
    setTimeout(() => controller.abort(), 50);
    const err = await httpFileSource(`${server.url}${path}`, { signal: controller.signal, retryDelayMs: 10_000 }).size().catch((e: unknown) => e);
    expect((err as Error).name).toBe('AbortError');
    expect(performance.now() - t0).toBeLessThan(1000);
  });
});

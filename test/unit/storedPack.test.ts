// Weights converted once, at download (src/weights/pack.ts): the converter's formats (4-bit nibbles and fp16 scales
// equal to the job-time quantizer's, bf16 → fp16 exact, a tensor fp16 would overflow kept at fp32), and the bundled
// tiny model through the app's own download code (BrowserFramePack's model methods, in Node, over a real HTTP
// server, into the same ChunkedWeightStore as IndexedDB's): what is stored is byte for byte the pack `npm run
// convert` writes; a second page load converts nothing; the runners read the stored 4-bit weights without calling
// the quantizer and compute exactly what the raw checkpoint quantized at job time gives; a pack served at ?packUrl=
// is stored as it is; a raw download of an earlier build is reported and converted again; other versions are refused.

import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { PackVersionError } from '../../src/errors/index.ts';
import { parseDiTConfig } from '../../src/models/dit.ts';
import { packedRopeTable, ropeConfigFromDit } from '../../src/pipeline/ropeTables.ts';
import { tensorError } from '../../src/pipeline/tensorError.ts';
import { readCaseFile, type CaseFile } from '../../src/cli/caseFile.ts';
import { storedFolderSource } from '../../src/weights/storeSource.ts';
import type { DiTInputs } from '../../src/worker/dit.ts';
import { fixturesDir } from '../helpers/fixtures.ts';
import { hostWeights } from '../../src/runtime/weightFeeds.ts';
import { openCheckpoint, type Checkpoint } from '../../src/weights/checkpoint.ts';
import { directoryWeightStore } from '../../src/weights/dirStore.ts';
import { downloadCheckpoint } from '../../src/weights/download.ts';
import { bf16ToF32, f16ToF32, f32ToBf16Bits, f32ToF16 } from '../../src/weights/dtypes.ts';
import { httpFolderSource } from '../../src/weights/httpSource.ts';
import { nodeFolderSource } from '../../src/weights/nodeFileSource.ts';
import { convertTensor, isKeptF32, PACK_VERSION } from '../../src/weights/pack.ts';
import * as quantize from '../../src/weights/quantize.ts';
import { memoryWeightStore, type ChunkedWeightStore } from '../../src/weights/weightCache.ts';
import { BrowserFramePack } from '../../src/worker/browserApi.ts';
import { createDiT } from '../../src/worker/dit.ts';
import { openComponent, type Component, type ModelSource } from '../../src/worker/modelPackage.ts';
import { PARTS, prepareStoredModel } from '../../src/worker/modelStore.ts';
import { boundWeightSets, NETWORKS, networkConversion } from '../../src/worker/storedFormats.ts';
import { createLlamaTextEncoder } from '../../src/worker/textEncoders.ts';
import { localModelPlan } from '../../src/cli/modelSources.ts';
import { startRangeServer, type RangeServer } from '../helpers/rangeServer.ts';
import { ortReady } from '../helpers/ortSetup.ts';
import type { WorkerEvent } from '../../src/worker/protocol.ts';

// Every call of the quantizer, whoever makes it: the download's converter (quantizeRowsInto) or a job (quantizeQ4).
vi.mock('../../src/weights/quantize.ts', async (importOriginal) => {
  const m = await importOriginal<typeof import('../../src/weights/quantize.ts')>();
  return { ...m, quantizeQ4: vi.fn(m.quantizeQ4), quantizeRowsInto: vi.fn(m.quantizeRowsInto) };
});
const calls = () => vi.mocked(quantize.quantizeQ4).mock.calls.length + vi.mocked(quantize.quantizeRowsInto).mock.calls.length;

const ROOT = resolve(import.meta.dirname, '..', '..');
const TINY = join(ROOT, 'public', 'models', 'tiny');
const info = (name: string, dtype: 'BF16' | 'F16' | 'F32', shape: number[]) => ({ name, dtype, shape, begin: 0, end: 0 });
const bytesOf = (a: Uint16Array | Float32Array) => new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
/** A dit_forward case's inputs as the engine passes them. */
function ditInputs(f: CaseFile, config: Record<string, unknown>): DiTInputs {
  const latents = f.f32('hidden_states');
  const [h, w] = latents.shape.slice(3);
  const indices = { latentIndices: f.ints('latent_indices'), cleanLatentIndices: f.ints('clean_latent_indices'), clean2xIndices: f.ints('clean_latent_2x_indices'), clean4xIndices: f.ints('clean_latent_4x_indices') };
  return {
    latents, timestep: f.f32('timestep').data[0], guidance: f.f32('guidance').data[0], textStates: f.f32('encoder_hidden_states'), textMask: f.bools('encoder_attention_mask'),
    pooledProjections: f.f32('pooled_projections'), imageEmbeddings: f.f32('image_embeddings'), cleanLatents: f.f32('clean_latents'), cleanLatents2x: f.f32('clean_latents_2x'),
    cleanLatents4x: f.f32('clean_latents_4x'), rope: packedRopeTable(indices, h, w, parseDiTConfig(config).patchSize, ropeConfigFromDit(config)),
  };
}
const same = (a: ArrayBufferView, b: ArrayBufferView) => Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength));

describe('the converter', () => {
  it('4-bit: the job-time quantizer\'s nibbles with its scales in fp16; floats: bf16 → fp16 exactly; a tensor fp16 would overflow stays fp32', () => {
    const [n, k] = [24, 96];
    const f32 = Float32Array.from({ length: n * k }, (_, i) => Math.sin(i * 0.37) * (1 + (i % 7)));
    const bf16 = Uint16Array.from(f32, f32ToBf16Bits);
    const [blocks, scales] = convertTensor(info('w', 'BF16', [n, k]), bytesOf(bf16), { kind: 'q4', n, k });
    const want = quantize.quantizeQ4(bf16ToF32(bf16), n, k);
    expect([blocks.name, blocks.dtype, blocks.shape, scales.name, scales.dtype, scales.shape]).toEqual(['w.q4', 'U8', [n, 3, 16], 'w.q4_scales', 'F16', [n, 3]]);
    expect(same(blocks.data, want.blocks)).toBe(true);
    expect(same(scales.data, f32ToF16(want.scales))).toBe(true);

    const [half] = convertTensor(info('b', 'BF16', [n * k]), bytesOf(bf16), { kind: 'float' });
    expect(half.dtype).toBe('F16');
    expect(Array.from(f16ToF32(new Uint16Array(half.data.buffer.slice(half.data.byteOffset, half.data.byteOffset + half.data.byteLength))))).toEqual(Array.from(bf16ToF32(bf16)));
    const [f16] = convertTensor(info('h', 'F16', [4]), new Uint8Array(8), { kind: 'float' });
    expect(f16.dtype).toBe('F16');

    // 65504 is fp16's largest; 65520 and beyond round to Inf: such a tensor is kept at fp32 (exactly) and listed.
    const big = Uint16Array.from([1, 2, 70000, 3].map(f32ToBf16Bits));
    const [kept] = convertTensor(info('big', 'BF16', [4]), bytesOf(big), { kind: 'float' });
    expect([kept.dtype, isKeptF32(kept)]).toEqual(['F32', true]);
    expect(Array.from(new Float32Array(kept.data.buffer, kept.data.byteOffset, 4))).toEqual(Array.from(bf16ToF32(big)));
    const [fits] = convertTensor(info('fits', 'F32', [2]), bytesOf(Float32Array.of(65504, -65519)), { kind: 'float' });
    expect(fits.dtype).toBe('F16');
    const [over] = convertTensor(info('over', 'F32', [2]), bytesOf(Float32Array.of(1, -65520)), { kind: 'float' });
    expect(over.dtype).toBe('F32');
  });
});

describe('the tiny model, converted once at download', () => {
  let server: RangeServer;
  let work: string;
  let pack: string;
  const store = memoryWeightStore(64 * 1024);
  const events: WorkerEvent[] = [];
  const signal = new AbortController().signal;
  let model: ModelSource;

  beforeAll(async () => {
    server = await startRangeServer(join(ROOT, 'public', 'models'));
    work = mkdtempSync(join(tmpdir(), 'stored-pack-'));
    pack = join(work, 'pack');
    // What `npm run convert` writes for the tiny model.
    const r = spawnSync(process.execPath, ['scripts/run-node.mjs', 'src/cli/convert.ts', '--', '--model', TINY, '--out', pack], { cwd: ROOT, encoding: 'utf8' });
    expect(r.status, r.stderr).toBe(0);
    const api = new BrowserFramePack({ tinyModelUrl: `${server.url}/tiny/`, store });
    model = await api.prepareModel('tiny', (e) => events.push(e), signal);
  });
  afterAll(async () => {
    await server?.close();
    rmSync(work, { recursive: true, force: true });
  });

  it('stores exactly the 4-bit pack `npm run convert` writes, and says so in every record', async () => {
    expect(calls()).toBeGreaterThan(0); // the download converted
    for (const component of PARTS) {
      const record = (await store.getModel(`tiny/${component}`))!;
      expect(record).toMatchObject({ complete: true, pack: PACK_VERSION });
      expect(record.fingerprint).toMatch(/#framepack-web-pack-v1$/);
      const stored = (await store.tensors(`tiny/${component}`)).filter((t) => t.dtype !== 'FILE');
      const folder = model.package.components[component];
      if (!(NETWORKS as readonly string[]).includes(component)) {
        expect(stored).toEqual([]);
        continue;
      }
      const packed = await openComponent({ package: model.package, open: async (p) => (await nodeFolderSource(pack)(p)) }, component);
      expect(packed.packVersion).toBe(PACK_VERSION);
      expect(stored.map((t) => t.name).sort()).toEqual([...packed.tensors.keys()].sort());
      for (const t of stored) {
        const p = await packed.raw(t.name);
        expect([t.dtype, t.shape], `${folder} ${t.name}`).toEqual([p.info.dtype, p.info.shape]);
        expect(same(await store.readTensor(`tiny/${component}`, t.name), p.data), `${folder} ${t.name}`).toBe(true);
      }
    }
    const transformer = await store.tensors('tiny/transformer');
    expect(transformer.some((t) => t.name.endsWith('.attn.to_q.weight.q4'))).toBe(true);
    expect(transformer.some((t) => t.name.startsWith('context_embedder.token_refiner.') && t.name.endsWith('.q4'))).toBe(false); // the refiner is fp16
    const llama = await store.getModel('tiny/text_encoder');
    expect(llama!.omitted!.some((n) => n.startsWith('layers.3.'))).toBe(true); // FramePack reads hidden_states[-3]
  });

  it('a second page load converts nothing, and the runners read the stored 4-bit weights, matching the raw checkpoint quantized at job time', async () => {
    const mark = server.log.length;
    const before = calls();
    const again = await new BrowserFramePack({ tinyModelUrl: `${server.url}/tiny/`, store }).prepareModel('tiny', () => undefined, signal);
    expect(calls()).toBe(before);
    expect(server.log.slice(mark).filter((r) => r.method === 'GET' && r.path.endsWith('.safetensors'))).toEqual([]);

    // Every weight of every network, as the runners bind them: no quantizer call, every 4-bit binding as stored.
    for (const component of NETWORKS) {
      const checkpoint = await openComponent(again, component as Component);
      const { sets } = boundWeightSets(component, checkpoint.config, new Set(checkpoint.tensors.keys()));
      for (const { set, blocks } of sets) {
        for (let b = 0; b < (blocks ?? 1); b++) {
          const host = await hostWeights(set, checkpoint, blocks === null ? undefined : b);
          for (const w of set.weights.filter((x) => x.layout === 'q4')) expect(host.tensors[w.input].dtype).toBe(w.part === 'scales' ? 'float16' : 'uint8');
        }
      }
    }
    expect(calls()).toBe(before);

    // The DiT and Llama runners on the CPU with fp16 activations: the stored pack against the raw files quantized now.
    await ortReady();
    const raw = (c: Component): Promise<Checkpoint> => openComponent({ package: again.package, open: (p) => nodeFolderSource(TINY)(p) }, c);
    const ids = [1, 5, 9, 14, 2, 7];
    const llamaOf = async (ck: Checkpoint) => {
      const enc = await createLlamaTextEncoder(ck, { provider: 'wasm', dtype: 'float16', quantized: true });
      const out = (await enc.run(ids)).hiddenStatesM3.data;
      await enc.release();
      return out;
    };
    const fromStore = await llamaOf(await openComponent(again, 'text_encoder'));
    expect(calls()).toBe(before);
    const fromRaw = await llamaOf(await raw('text_encoder'));
    expect(calls()).toBeGreaterThan(before); // the raw checkpoint is quantized at job time
    expect(Array.from(fromStore)).toEqual(Array.from(fromRaw));

    // The DiT on a reference case (its fixture weights converted like a download), through the forward a job runs.
    const f = await readCaseFile(join(fixturesDir(), 'dit_forward_original_p0.safetensors'));
    const folder = join(fixturesDir(), f.meta.weights as string);
    const ditStore = memoryWeightStore();
    await downloadCheckpoint({ folder: nodeFolderSource(folder), where: folder, weightsFile: 'diffusion_pytorch_model.safetensors', store: ditStore, model: 'dit', storage: null, conversion: networkConversion('transformer'), pack: PACK_VERSION });
    const storedDit = await openCheckpoint(await storedFolderSource(ditStore, 'dit', { weightsFile: 'diffusion_pytorch_model.safetensors', config: true, where: 'dit', requirePack: true }), 'dit', 'diffusion_pytorch_model.safetensors');
    const rawDit = await openCheckpoint(nodeFolderSource(folder), folder, 'diffusion_pytorch_model.safetensors');
    const inputs = ditInputs(f, rawDit.config);
    const forward = async (ck: Checkpoint) => {
      const dit = await createDiT(ck, { provider: 'wasm', dtype: 'float16', quantized: true });
      const out = (await dit.forward(inputs)).data;
      await dit.release();
      return out;
    };
    const mid = calls();
    const ditFromStore = await forward(storedDit);
    expect(calls()).toBe(mid);
    const ditFromRaw = await forward(rawDit);
    expect(calls()).toBeGreaterThan(mid);
    // The fixture's weights are fp32: their fp16 storage moves the fp32-bound ones (timestep path, head) a little.
    const storedVsRaw = tensorError(ditFromStore, ditFromRaw);
    console.log(`tiny DiT case, 4-bit, fp16 activations: stored pack against the raw checkpoint quantized at job time: err ${storedVsRaw.rel.toExponential(2)}`);
    expect(storedVsRaw.rel).toBeLessThan(1.5e-3); // measured 5.1e-4
    expect(tensorError(ditFromStore, f.f32('output').data).rel).toBeLessThan(0.55); // the 4-bit ceiling of test/reference/dit.test.ts
  });

  it('a pack at ?packUrl= is stored as it is, converting nothing', async () => {
    const packServer = await startRangeServer(pack);
    try {
      const packStore = memoryWeightStore();
      const before = calls();
      const api = new BrowserFramePack({ tinyModelUrl: `${server.url}/nowhere/`, packUrl: `${packServer.url}/`, store: packStore });
      const fromPack = await api.prepareModel('tiny', () => undefined, signal);
      expect(calls()).toBe(before);
      expect(fromPack.package.name).toBe('tiny');
      for (const component of NETWORKS) {
        const a = (await store.tensors(`tiny/${component}`)).filter((t) => t.dtype !== 'FILE');
        const id = `pack/${model.package.components[component]}`;
        const b = (await packStore.tensors(id)).filter((t) => t.dtype !== 'FILE');
        expect(b.map((t) => [t.name, t.dtype, t.shape])).toEqual(a.map((t) => [t.name, t.dtype, t.shape]));
        for (const t of a) expect(same(await packStore.readTensor(id, t.name), await store.readTensor(`tiny/${component}`, t.name))).toBe(true);
      }
      expect((await api.models()).find((m) => m.id === 'tiny')).toMatchObject({ cached: true });
    } finally {
      await packServer.close();
    }
  });

  it('a raw download of an earlier build is reported and converted again; other versions are refused', async () => {
    const old = memoryWeightStore() as ChunkedWeightStore;
    const api = new BrowserFramePack({ tinyModelUrl: `${server.url}/tiny/`, store: old });
    // An earlier build stored the VAE as downloaded: no stored-format version, fingerprint without it.
    const dir = join(TINY, 'HunyuanVideo', 'vae');
    await downloadCheckpoint({ folder: httpFolderSource(`${server.url}/tiny/HunyuanVideo/vae/`), where: dir, weightsFile: 'diffusion_pytorch_model.safetensors', store: old, model: 'tiny/vae', storage: null,
      convert: (i, bytes) => [{ name: i.name, dtype: i.dtype, shape: i.shape, data: bytes }] });
    expect((await api.models()).find((m) => m.id === 'tiny')!.label).toMatch(/stored in an older format; Generate converts it again/);
    const seen: WorkerEvent[] = [];
    await api.prepareModel('tiny', (e) => seen.push(e), signal);
    expect(seen.some((e) => e.type === 'load' && e.phase === 'convert' && /vae: stored in an older format \(version 0; this app reads 1\), converting it again/.test(e.component))).toBe(true);
    expect((await old.getModel('tiny/vae'))!.pack).toBe(PACK_VERSION);
    expect((await api.models()).find((m) => m.id === 'tiny')!.label).not.toMatch(/older format/);

    // A pack file of another version is never read.
    const bad = join(work, 'v2');
    const json = JSON.stringify({ __metadata__: { framepack_web_pack: '2' }, x: { dtype: 'F16', shape: [1], data_offsets: [0, 2] } });
    const header = Buffer.alloc(8);
    header.writeBigUInt64LE(BigInt(json.length));
    rmSync(bad, { recursive: true, force: true });
    spawnSync('mkdir', ['-p', bad]);
    writeFileSync(join(bad, 'model.safetensors'), Buffer.concat([header, Buffer.from(json), Buffer.alloc(2)]));
    await expect(openCheckpoint(nodeFolderSource(bad), bad, 'model.safetensors', { configFile: null })).rejects.toBeInstanceOf(PackVersionError);
    await expect(openCheckpoint(nodeFolderSource(bad), bad, 'model.safetensors', { configFile: null })).rejects.toThrow(/newer than this app reads/);
  });

  it('the CLI\'s directory store converts once and resumes: a second run converts nothing', async () => {
    const dir = join(work, 'store');
    const plan = await localModelPlan(TINY);
    const first = directoryWeightStore(dir);
    await prepareStoredModel(first, plan, { storage: null });
    const before = calls();
    const second = directoryWeightStore(dir);
    await prepareStoredModel(second, plan, { storage: null });
    expect(calls()).toBe(before);
    for (const component of NETWORKS) {
      const a = await second.tensors(`local/${model.package.components[component]}`);
      const b = (await store.tensors(`tiny/${component}`));
      expect(a.map((t) => [t.name, t.dtype, t.shape])).toEqual(b.map((t) => [t.name, t.dtype, t.shape]));
    }
  });
});

// The causal 3D VAE against the reference fixtures (every `vae_roundtrip` case): encode → posterior mean, log-variance
// and scaled latent; decode of a short latent (no tiling) and a long one (diffusers' temporal tiling), through the
// product runner on the wasm EP in fp32 (ORT), and on WebGPU (SwiftShader) through our kernels (worker/vaeWebgpu.ts),
// counting the dispatches each kernel made against the count the layer list implies. The tiling arithmetic is
// checked against a literal transcription of diffusers' loops on synthetic tiles (decode and encode), the tiles a
// memory budget buys at the real size are pinned, and the real config must consume exactly the real checkpoint's
// tensors.
import { afterAll, describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { buildVaeDecoder, buildVaeEncoder, decoderPeakBytes, parseVaeConfig, vaeDecoderLayers, vaeEncoderLayers, type VaeConfig } from '../../src/models/vae.ts';
import type { Tensor } from '../../src/pipeline/tensor.ts';
import { formatError, tensorError, type TensorError } from '../../src/pipeline/tensorError.ts';
import { GpuOutOfMemoryError } from '../../src/errors/index.ts';
import { openCheckpoint, type Checkpoint } from '../../src/weights/checkpoint.ts';
import { nodeFolderSource } from '../../src/weights/nodeFileSource.ts';
import { convGeometry, isSoftwareDevice, layerShapes, vaeDispatchCounts, vaeGpuPeakBytes, type VaeDispatchCounts } from '../../src/worker/vaeWebgpu.ts';
import { chooseConvTile, CONV_TILES, convDispatchRanges, convReduction } from '../../src/kernels/vaeConv.ts';
import { vaeAttentionDispatchRanges } from '../../src/kernels/vaeAttention.ts';
import { DEFAULT_DISPATCH_FLOPS } from '../../src/kernels/vaeCommon.ts';
import {
  chooseSpatialTiling,
  createVae,
  decodePlan,
  LOW_VRAM_BUDGET_BYTES,
  spatialTiledEncode,
  DEFAULT_MAX_TENSOR_BYTES,
  DIFFUSERS_TILING,
  spatialTiledDecode,
  temporalTiledDecode,
  type Vae,
  type VaeTiling,
} from '../../src/worker/vae.ts';
import { fixturesDir, listCases, loadFixture, type FixtureFile } from '../helpers/fixtures.ts';
import { ortReady } from '../helpers/ortSetup.ts';
import { testGpu } from '../helpers/webgpu.ts';

const BAR = 1e-4; // the fixtures README's bar for single networks in fp32

async function cases(): Promise<FixtureFile[]> {
  const out: FixtureFile[] = [];
  for (const path of await listCases(fixturesDir())) {
    const f = await loadFixture(path);
    if (f.meta.case === 'vae_roundtrip') out.push(f);
  }
  return out;
}

async function weightsOf(f: FixtureFile): Promise<Checkpoint> {
  const dir = join(fixturesDir(), String(f.meta.weights));
  return openCheckpoint(nodeFolderSource(dir), dir, 'diffusion_pytorch_model.safetensors');
}

function report(f: FixtureFile, label: string, name: string, got: Tensor, ms: number) {
  expect(got.shape).toEqual(f.shape(name));
  const err = tensorError(got.data, f.f32(name).data);
  console.log(`vae ${f.path.split('/').pop()} ${label}: ${name} ${formatError(err)}; ${ms.toFixed(0)} ms`);
  return err;
}

async function timed<T>(work: () => Promise<T>): Promise<[T, number]> {
  const t0 = performance.now();
  const out = await work();
  return [out, performance.now() - t0];
}

/** One wasm fp32 VAE per case file, shared by the tests below (a session costs seconds to create). */
const wasmVaes = new Map<string, Promise<Vae>>();
function wasmVae(f: FixtureFile): Promise<Vae> {
  let v = wasmVaes.get(f.path);
  if (!v) wasmVaes.set(f.path, (v = (async () => createVae(await weightsOf(f), { provider: 'wasm', dtype: 'float32' }))()));
  return v;
}

async function encodeCase(f: FixtureFile, vae: Vae, label: string): Promise<TensorError[]> {
  const [enc, ms] = await timed(() => vae.encode(f.f32('image')));
  return [
    report(f, label, 'posterior_mean', enc.mean, ms),
    report(f, label, 'posterior_logvar', enc.logvar, ms),
    report(f, label, 'latent_scaled', enc.latent, ms),
  ];
}

async function decodeCase(f: FixtureFile, vae: Vae, label: string, input: string, expected: string): Promise<TensorError> {
  const [decoded, ms] = await timed(() => vae.decode(f.f32(input)));
  return report(f, label, expected, decoded, ms);
}

/** The long decode (3 temporal tiles) takes ~35 s on SwiftShader even on our kernels: on a GPU or when asked. */
const webgpuDecode = process.env.FRAMEPACK_GPU === 'hardware' || process.env.FRAMEPACK_SLOW === '1';
/** Why the fp16 test cannot run here (it is skipped, saying so in its name), or null. */
const fp16Missing = !webgpuDecode
  ? 'SwiftShader decodes for minutes: run with FRAMEPACK_GPU=hardware or FRAMEPACK_SLOW=1'
  : !(await testGpu()).capabilities.shaderF16
    ? 'the adapter has no shader-f16 (SwiftShader has none)'
    : null;

describe('VAE (vae_roundtrip fixtures)', () => {
  afterAll(async () => {
    for (const v of wasmVaes.values()) await (await v).release();
  });

  it('finds the cases', async () => {
    expect((await cases()).length).toBeGreaterThan(0);
  });

  it('wasm fp32 encode: posterior mean, logvar and scaled latent within 1e-4', async () => {
    await ortReady();
    for (const f of await cases()) {
      const vae = await wasmVae(f);
      expect(vae.config.scalingFactor).toBe(Number(f.meta.scaling_factor));
      for (const e of await encodeCase(f, vae, 'wasm fp32')) expect(e.rel).toBeLessThanOrEqual(BAR);
    }
  });

  it('wasm fp32 decode, short (whole) and long (temporal tiles): within 1e-4', async () => {
    await ortReady();
    for (const f of await cases()) {
      const vae = await wasmVae(f);
      expect((await decodeCase(f, vae, 'wasm fp32', 'z_short', 'decoded_short')).rel).toBeLessThanOrEqual(BAR);
      expect((await decodeCase(f, vae, 'wasm fp32', 'z_long', 'decoded_long')).rel).toBeLessThanOrEqual(BAR);
    }
  });

  it('webgpu fp32 on our kernels: encode and decoded_short within 1e-4 (SwiftShader; decoded_long too on a GPU or with FRAMEPACK_SLOW=1), dispatches as the layer lists say', async () => {
    await ortReady();
    const { capabilities, device } = await testGpu();
    const [f] = await cases();
    const vae = await createVae(await weightsOf(f), { provider: 'webgpu', maxTensorBytes: capabilities.maxStorageBufferBindingSize });
    expect(vae.backend).toBe('kernels');
    const seen = countDispatches();
    const errors = await encodeCase(f, vae, 'webgpu fp32');
    const software = isSoftwareDevice(device);
    const [, , , h, w] = f.shape('image');
    const encoderCounts = vaeDispatchCounts(vaeEncoderLayers(vae.config), { frames: 1, height: h, width: w, channels: 3 }, 'f32', device.limits, software);
    expect(seen.counts).toEqual(encoderCounts);
    errors.push(await decodeCase(f, vae, 'webgpu fp32', 'z_short', 'decoded_short'));
    const [, L, frames, zh, zw] = f.shape('z_short');
    const decoderCounts = vaeDispatchCounts(vaeDecoderLayers(vae.config), { frames, height: zh, width: zw, channels: L }, 'f32', device.limits, software);
    const both = { conv: encoderCounts.conv + decoderCounts.conv, groupNorm: encoderCounts.groupNorm + decoderCounts.groupNorm, attention: encoderCounts.attention + decoderCounts.attention };
    seen.stop();
    // Every kind of kernel ran, as often as the layer lists and the splitting rules say, and nothing else did.
    expect(seen.counts).toEqual(both);
    expect({ ...vae.dispatches }).toEqual(both);
    expect(seen.other).toBe(0);
    for (const n of Object.values(both)) expect(n).toBeGreaterThan(0);
    if (webgpuDecode) errors.push(await decodeCase(f, vae, 'webgpu fp32', 'z_long', 'decoded_long'));
    await vae.release();
    for (const e of errors) expect(e.rel).toBeLessThanOrEqual(BAR);
  });

  it('webgpu kernels with diffusers\' spatial tiles forced (64/48 px): equal to the wasm decode of the same tiles', async () => {
    await ortReady();
    const [f] = await cases();
    const tiling = { ...DIFFUSERS_TILING, sampleSize: 64, sampleStride: 48 };
    const z = f.f32('z_short');
    // One latent frame (one pixel frame): the seams are what is tested, not the length.
    const z2 = { data: z.data.filter((_, i) => Math.floor(i / (12 * 10)) % 3 === 0), shape: [1, 16, 1, 12, 10] };
    const gpu = await createVae(await weightsOf(f), { provider: 'webgpu', spatialTiling: 'on', tiling });
    expect(gpu.decodeTiling(z2.shape)).toEqual({ spatial: tiling, calls: 4 });
    const [got, ms] = await timed(() => gpu.decode(z2));
    await gpu.release();
    const wasm = await wasmVae(f);
    const want = await spatialTiledDecode(z2, (t) => wasm.decode(t), tiling, 8);
    const err = tensorError(got.data, want.data);
    console.log(`vae webgpu kernels, spatial tiles 64/48 against wasm with the same tiles: ${formatError(err)}; ${ms.toFixed(0)} ms`);
    expect(got.shape).toEqual(want.shape);
    expect(err.rel).toBeLessThanOrEqual(BAR);
  });

  it.skipIf(fp16Missing !== null)(`webgpu fp16 activations: error reported, not a parity bar${fp16Missing ? ` [skipped: ${fp16Missing}]` : ''}`, async () => {
    await ortReady();
    const { capabilities } = await testGpu();
    const [f] = await cases();
    const vae = await createVae(await weightsOf(f), { provider: 'webgpu', dtype: 'float16', maxTensorBytes: capabilities.maxStorageBufferBindingSize });
    const errors = [...(await encodeCase(f, vae, 'webgpu fp16')), await decodeCase(f, vae, 'webgpu fp16', 'z_short', 'decoded_short'), await decodeCase(f, vae, 'webgpu fp16', 'z_long', 'decoded_long')];
    await vae.release();
    for (const e of errors) expect(Number.isFinite(e.rel)).toBe(true);
  });

  it('spatial tiling forced by a small tensor limit on the tiny model: really tiles; error against the whole decode reported', async () => {
    await ortReady();
    const [f] = await cases();
    const vae = await wasmVae(f);
    const config = vae.config;
    const z = f.f32('z_short');
    const [, , frames, height, width] = z.shape;
    // 64-pixel tiles every 48 (8 and 6 latents, 16-pixel blend) so the 12×10 latent splits in 2×2; the limit lets
    // a tile through but not the whole latent.
    const tiling = { ...DIFFUSERS_TILING, sampleSize: 64, sampleStride: 48 };
    const limit = decoderPeakBytes(config, { frames, height, width }) - 1;
    const tooLarge = (t: { frames: number; height: number; width: number }) => decoderPeakBytes(config, t) > limit;
    expect(decodePlan(config, tiling, z.shape, tooLarge)).toEqual({ temporal: false, spatial: true, calls: 4 });
    // The runner's tiling loop around the same session's whole-tile decode (what createVae does for this plan).
    const tiles: number[][] = [];
    const [decoded, ms] = await timed(() => spatialTiledDecode(z, (t) => (tiles.push(t.shape), vae.decode(t)), tiling, config.spatialCompression));
    expect(tiles).toEqual([[1, 16, 3, 8, 8], [1, 16, 3, 8, 4], [1, 16, 3, 6, 8], [1, 16, 3, 6, 4]]);
    for (const t of tiles) expect(tooLarge({ frames: t[2], height: t[3], width: t[4] })).toBe(false);
    // Not a parity bar: GroupNorm statistics per tile make a tiled decode differ from the whole one by design.
    const err = report(f, 'wasm fp32 spatially tiled (64/48 px)', 'decoded_short', decoded, ms);
    expect(err.rel).toBeGreaterThan(0);
    expect(Number.isFinite(err.rel)).toBe(true);
  });

  it('the runner refuses a tile past the limit that spatial tiling cannot split, before running it', async () => {
    const [f] = await cases();
    const vae = await createVae(await weightsOf(f), { provider: 'wasm', maxTensorBytes: 1024 });
    await expect(vae.decode(f.f32('z_short'))).rejects.toThrow(GpuOutOfMemoryError);
    await expect(vae.encode(f.f32('image'))).rejects.toThrow(GpuOutOfMemoryError);
    await vae.release();
  });
});

// ---- Tiling arithmetic: the runner's tiling against a literal transcription of diffusers 0.33.1's loops. ----

function rand(n: number, seed: number): Float32Array {
  let s = seed;
  return Float32Array.from({ length: n }, () => ((s = (s * 1103515245 + 12345) % 2 ** 31) / 2 ** 31) * 2 - 1);
}

const at = (shape: number[], c: number, f: number, y: number, x: number) => (((c * shape[2] + f) * shape[3] + y) * shape[4] + x);

/** z[:, :, f0:f1, y0:y1, x0:x1] with Python's clipping. */
function crop(t: Tensor, [f0, f1]: number[], [y0, y1]: number[], [x0, x1]: number[]): Tensor {
  const [, c, tf, th, tw] = t.shape;
  const r = (a: number, b: number, n: number) => [Math.min(a, n), Math.min(Math.max(b, a), n)];
  const [a0, a1] = r(f0, f1, tf), [b0, b1] = r(y0, y1, th), [d0, d1] = r(x0, x1, tw);
  const shape = [1, c, a1 - a0, b1 - b0, d1 - d0];
  const out = new Float32Array(shape.reduce((p, q) => p * q, 1));
  for (let ci = 0; ci < c; ci++) for (let fi = a0; fi < a1; fi++) for (let yi = b0; yi < b1; yi++) for (let xi = d0; xi < d1; xi++) {
    out[at(shape, ci, fi - a0, yi - b0, xi - d0)] = t.data[at(t.shape, ci, fi, yi, xi)];
  }
  return { data: out, shape };
}

function cat(parts: Tensor[], axis: 2 | 3 | 4): Tensor {
  const shape = [...parts[0].shape];
  shape[axis] = parts.reduce((n, p) => n + p.shape[axis], 0);
  const out = new Float32Array(shape.reduce((p, q) => p * q, 1));
  let offset = 0;
  for (const p of parts) {
    const [, c, tf, th, tw] = p.shape;
    for (let ci = 0; ci < c; ci++) for (let fi = 0; fi < tf; fi++) for (let yi = 0; yi < th; yi++) for (let xi = 0; xi < tw; xi++) {
      const idx = [ci, fi, yi, xi];
      idx[axis - 1] += offset;
      out[at(shape, idx[0], idx[1], idx[2], idx[3])] = p.data[at(p.shape, ci, fi, yi, xi)];
    }
    offset += p.shape[axis];
  }
  return { data: out, shape };
}

/** b[..., x, ...] = a[..., −e + x, ...]·(1 − x/e) + b[..., x, ...]·(x/e), in place, float32 products and sum as torch. */
function blend(a: Tensor, b: Tensor, axis: 2 | 3 | 4, extent: number): Tensor {
  const e = Math.min(a.shape[axis], b.shape[axis], extent);
  const [, c, tf, th, tw] = b.shape;
  const f = Math.fround;
  for (let ci = 0; ci < c; ci++) for (let fi = 0; fi < tf; fi++) for (let yi = 0; yi < th; yi++) for (let xi = 0; xi < tw; xi++) {
    const pos = [fi, yi, xi][axis - 2];
    if (pos >= e) continue;
    const ai = [fi, yi, xi];
    ai[axis - 2] = a.shape[axis] - e + pos;
    const va = a.data[at(a.shape, ci, ai[0], ai[1], ai[2])];
    const k = at(b.shape, ci, fi, yi, xi);
    b.data[k] = f(f(va * f(1 - pos / e)) + f(b.data[k] * f(pos / e)));
  }
  return b;
}

const ALL = [0, Infinity];
const copy = (t: Tensor): Tensor => ({ data: t.data.slice(), shape: [...t.shape] });

/** Counts dispatches on every compute pass by the kernel of the pipeline set: vaeConv, vaeGroupNorm, vaeAttention, other. */
function countDispatches(): { counts: VaeDispatchCounts; other: number; stop: () => void } {
  const proto = (globalThis as unknown as { GPUComputePassEncoder: { prototype: GPUComputePassEncoder } }).GPUComputePassEncoder.prototype;
  const setPipeline = proto.setPipeline;
  const dispatch = proto.dispatchWorkgroups;
  const current = new WeakMap<GPUComputePassEncoder, string>();
  const seen = { counts: { conv: 0, groupNorm: 0, attention: 0 }, other: 0, stop: () => {} };
  proto.setPipeline = function (this: GPUComputePassEncoder, p: GPUComputePipeline) {
    current.set(this, p.label);
    return setPipeline.call(this, p);
  };
  proto.dispatchWorkgroups = function (this: GPUComputePassEncoder, ...a: [number, number?, number?]) {
    const label = current.get(this) ?? '';
    if (label.startsWith('vaeConv')) seen.counts.conv++;
    else if (label.startsWith('vaeGroupNorm')) seen.counts.groupNorm++;
    else if (label.startsWith('vaeAttention')) seen.counts.attention++;
    else seen.other++;
    return dispatch.apply(this, a);
  };
  seen.stop = () => {
    proto.setPipeline = setPipeline;
    proto.dispatchWorkgroups = dispatch;
  };
  return seen;
}

/** diffusers' `_temporal_tiled_decode`, line by line (including the decode of a trailing 1-latent tile). */
function diffusersTemporal(z: Tensor, decode: (z: Tensor) => Tensor, t: VaeTiling): Tensor {
  const numFrames = z.shape[2];
  const numSampleFrames = (numFrames - 1) * 4 + 1;
  const tileLatentMin = Math.floor(t.sampleFrames / 4);
  const tileLatentStride = Math.floor(t.sampleFrameStride / 4);
  const blendFrames = t.sampleFrames - t.sampleFrameStride;
  const row: Tensor[] = [];
  for (let i = 0; i < numFrames; i += tileLatentStride) {
    let decoded = decode(crop(z, [i, i + tileLatentMin + 1], ALL, ALL));
    if (i > 0) decoded = crop(decoded, [1, Infinity], ALL, ALL);
    row.push(decoded);
  }
  const result: Tensor[] = [];
  row.forEach((tile, i) => {
    if (i > 0) result.push(crop(blend(row[i - 1], tile, 2, blendFrames), [0, t.sampleFrameStride], ALL, ALL));
    else result.push(crop(tile, [0, t.sampleFrameStride + 1], ALL, ALL));
  });
  return crop(cat(result, 2), [0, numSampleFrames], ALL, ALL);
}

/** diffusers' `tiled_decode`, line by line. */
function diffusersSpatial(z: Tensor, decode: (z: Tensor) => Tensor, t: VaeTiling): Tensor {
  const [, , , height, width] = z.shape;
  const tileMin = Math.floor(t.sampleSize / 8);
  const tileStride = Math.floor(t.sampleStride / 8);
  const blendExtent = t.sampleSize - t.sampleStride;
  const rows: Tensor[][] = [];
  for (let i = 0; i < height; i += tileStride) {
    const row: Tensor[] = [];
    for (let j = 0; j < width; j += tileStride) row.push(decode(crop(z, ALL, [i, i + tileMin], [j, j + tileMin])));
    rows.push(row);
  }
  const resultRows: Tensor[] = [];
  rows.forEach((row, i) => {
    const resultRow: Tensor[] = [];
    row.forEach((tile, j) => {
      if (i > 0) tile = blend(rows[i - 1][j], tile, 3, blendExtent);
      if (j > 0) tile = blend(row[j - 1], tile, 4, blendExtent);
      resultRow.push(crop(tile, ALL, [0, t.sampleStride], [0, t.sampleStride]));
    });
    resultRows.push(cat(resultRow, 4));
  });
  return crop(cat(resultRows, 3), ALL, [0, height * 8], [0, width * 8]);
}

/** diffusers' `tiled_encode`, line by line (blend and keep in latent pixels). */
function diffusersTiledEncode(x: Tensor, encode: (x: Tensor) => Tensor, t: VaeTiling): Tensor {
  const [, , , height, width] = x.shape;
  const latentHeight = Math.floor(height / 8);
  const latentWidth = Math.floor(width / 8);
  const tileLatentMin = Math.floor(t.sampleSize / 8);
  const tileLatentStride = Math.floor(t.sampleStride / 8);
  const blendExtent = tileLatentMin - tileLatentStride;
  const rows: Tensor[][] = [];
  for (let i = 0; i < height; i += t.sampleStride) {
    const row: Tensor[] = [];
    for (let j = 0; j < width; j += t.sampleStride) row.push(encode(crop(x, ALL, [i, i + t.sampleSize], [j, j + t.sampleSize])));
    rows.push(row);
  }
  const resultRows: Tensor[] = [];
  rows.forEach((row, i) => {
    const resultRow: Tensor[] = [];
    row.forEach((tile, j) => {
      if (i > 0) tile = blend(rows[i - 1][j], tile, 3, blendExtent);
      if (j > 0) tile = blend(row[j - 1], tile, 4, blendExtent);
      resultRow.push(crop(tile, ALL, [0, tileLatentStride], [0, tileLatentStride]));
    });
    resultRows.push(cat(resultRow, 4));
  });
  return crop(cat(resultRows, 3), ALL, [0, latentHeight], [0, latentWidth]);
}

/** A stand-in encoder: [1, 3, 1, H, W] → [1, 4, 1, ⌈H/8⌉, ⌈W/8⌉], depending on the whole tile (its mean) and tile-local positions. */
function fakeEncode(x: Tensor): Tensor {
  const [, c, , th, tw] = x.shape;
  const mean = x.data.reduce((s, v) => s + v, 0) / x.data.length;
  const shape = [1, 4, 1, Math.ceil(th / 8), Math.ceil(tw / 8)];
  const out = new Float32Array(shape.reduce((p, q) => p * q, 1));
  for (let o = 0; o < 4; o++) for (let y = 0; y < shape[3]; y++) for (let xx = 0; xx < shape[4]; xx++) {
    out[at(shape, o, 0, y, xx)] = Math.fround(x.data[at(x.shape, o % c, 0, 8 * y, 8 * xx)] + mean + 0.01 * o - 0.003 * y + 0.002 * xx);
  }
  return { data: out, shape };
}

/**
 * A stand-in decoder with the real one's shapes ([1, C, T, h, w] → [1, 3, 4(T−1)+1, 8h, 8w]) whose output depends
 * on the whole tile (its mean, like per-tile GroupNorm) and on tile-local positions, so every seam shows.
 */
function fakeDecode(z: Tensor): Tensor {
  const [, c, tf, th, tw] = z.shape;
  const mean = z.data.reduce((s, v) => s + v, 0) / z.data.length;
  const shape = [1, 3, 4 * (tf - 1) + 1, 8 * th, 8 * tw];
  const out = new Float32Array(shape.reduce((p, q) => p * q, 1));
  for (let o = 0; o < 3; o++) for (let f = 0; f < shape[2]; f++) for (let y = 0; y < shape[3]; y++) for (let x = 0; x < shape[4]; x++) {
    const src = z.data[at(z.shape, o % c, Math.ceil(f / 4), y >> 3, x >> 3)];
    out[at(shape, o, f, y, x)] = Math.fround(src * (1 + 0.25 * o) + mean + 0.01 * f - 0.003 * y + 0.002 * x);
  }
  return { data: out, shape };
}

describe('VAE tiling arithmetic (synthetic tiles)', () => {

  it('temporal tiling equals diffusers _temporal_tiled_decode exactly, for 5…13 latent frames', async () => {
    for (const frames of [5, 6, 7, 8, 9, 10, 11, 12, 13]) {
      const z = { data: rand(2 * frames * 3 * 2, frames), shape: [1, 2, frames, 3, 2] };
      const got = await temporalTiledDecode(z, async (t) => fakeDecode(t), DIFFUSERS_TILING, 4);
      const want = diffusersTemporal(copy(z), fakeDecode, DIFFUSERS_TILING);
      expect(got.shape).toEqual([1, 3, 4 * (frames - 1) + 1, 24, 16]);
      expect(tensorError(got.data, want.data).abs).toBe(0);
    }
  });

  it('spatial tiling equals diffusers tiled_decode exactly, including edge tiles narrower than the blend', async () => {
    // 40-pixel tiles every 24 (5 and 3 latents), blend 16 px; the last tiles are 8 px, under the blend width.
    const tiling: VaeTiling = { ...DIFFUSERS_TILING, sampleSize: 40, sampleStride: 24 };
    for (const [h, w] of [[10, 7], [5, 5], [4, 9]]) {
      const z = { data: rand(2 * 2 * h * w, h * 31 + w), shape: [1, 2, 2, h, w] };
      const got = await spatialTiledDecode(z, async (t) => fakeDecode(t), tiling, 8);
      const want = diffusersSpatial(copy(z), fakeDecode, tiling);
      expect(got.shape).toEqual([1, 3, 5, 8 * h, 8 * w]);
      expect(tensorError(got.data, want.data).abs).toBe(0);
    }
    // diffusers' own sizes: 256-pixel tiles every 192, 64-pixel blend, on a 70×45 latent.
    const z = { data: rand(1 * 1 * 70 * 45, 7), shape: [1, 1, 1, 70, 45] };
    const got = await spatialTiledDecode(z, async (t) => fakeDecode(t), DIFFUSERS_TILING, 8);
    expect(tensorError(got.data, diffusersSpatial(copy(z), fakeDecode, DIFFUSERS_TILING).data).abs).toBe(0);
  });

  it('tiled encode equals diffusers tiled_encode exactly (blend in latent pixels), edge tiles included', async () => {
    const tiling: VaeTiling = { ...DIFFUSERS_TILING, sampleSize: 64, sampleStride: 48 };
    for (const [h, w] of [[96, 80], [160, 136], [64, 200]]) {
      const x = { data: rand(3 * h * w, h + w), shape: [1, 3, 1, h, w] };
      const got = await spatialTiledEncode(x, async (t) => fakeEncode(t), tiling, 8);
      const want = diffusersTiledEncode(copy(x), fakeEncode, tiling);
      expect(got.shape).toEqual([1, 4, 1, h / 8, w / 8]);
      expect(tensorError(got.data, want.data).abs).toBe(0);
    }
  });

  it('the kernels\' tiles from the memory budget at the 640 bucket: none with room, diffusers\' at 6 GB, smaller below, larger above', () => {
    const real = parseVaeConfig(JSON.parse(readFileSync(resolve(import.meta.dirname, '../../src/models/configs/vae.json'), 'utf8')));
    const plan = vaeDecoderLayers(real);
    // The largest temporal tile of a section: 5 latents of 80×76.
    const peak = (t: VaeTiling | null) => vaeGpuPeakBytes(plan, { frames: 5, height: t ? Math.min(80, t.sampleSize / 8) : 80, width: t ? Math.min(76, t.sampleSize / 8) : 76, channels: 16 }, 'f16');
    const size = (budget: number) => chooseSpatialTiling(DIFFUSERS_TILING, budget, peak)?.sampleSize ?? null;
    console.log(`vae kernels' peak GPU bytes (fp16, 5 latents): whole 80×76 ${(peak(null) / 1e9).toFixed(2)} GB, 256 px tiles ${(peak(DIFFUSERS_TILING) / 1e9).toFixed(2)} GB`);
    expect(size(200e9)).toBeNull();
    expect(size(LOW_VRAM_BUDGET_BYTES)).toBe(256);
    expect(chooseSpatialTiling(DIFFUSERS_TILING, LOW_VRAM_BUDGET_BYTES, peak)).toBe(DIFFUSERS_TILING);
    expect(size(1e9)).toBeLessThan(256);
    expect(size(7e9)).toBeGreaterThan(256);
    expect(size(16e9)).toBeNull();
  });

  it('at the real size (a whole 5-latent tile of 80×76, fp16, NVIDIA limits) every planned dispatch is within the FLOP budget', () => {
    const real = parseVaeConfig(JSON.parse(readFileSync(resolve(import.meta.dirname, '../../src/models/configs/vae.json'), 'utf8')));
    const plan = vaeDecoderLayers(real);
    const limits = { maxStorageBufferBindingSize: 2 ** 31 - 4, maxComputeWorkgroupsPerDimension: 65535 };
    const shapes = layerShapes(plan, { frames: 5, height: 80, width: 76, channels: 16 });
    let dispatches = 0;
    for (const l of plan.layers) {
      const s = shapes.get(l.input)!;
      if (l.op === 'conv') {
        const g = convGeometry(l, s, false);
        const tile = CONV_TILES[chooseConvTile(g)];
        const kPad = Math.ceil(convReduction(g) / tile.bk) * tile.bk;
        const nPad = Math.ceil(g.outChannels / (tile.wn * tile.tn)) * tile.wn * tile.tn;
        for (const [a, b] of convDispatchRanges(g, chooseConvTile(g), 'f16', limits, DEFAULT_DISPATCH_FLOPS, l.planar === true)) {
          expect(2 * (b - a) * kPad * nPad).toBeLessThanOrEqual(DEFAULT_DISPATCH_FLOPS * tile.rate);
          dispatches++;
        }
      } else if (l.op === 'attention') {
        dispatches += vaeAttentionDispatchRanges({ tokens: s.frames * s.height * s.width, dim: l.channels, tokensPerFrame: s.height * s.width }).length;
      }
    }
    expect(shapes.get(plan.output)).toEqual({ frames: 17, height: 640, width: 608, channels: 3 });
    console.log(`vae real decoder, one 5-latent tile of 80×76: ${dispatches} conv and attention dispatches`);
  });

  it('plans: the fixture decodes whole under the default limit; the real 640×608 bucket tiles spatially within 2 GiB', () => {
    const dir = join(fixturesDir(), 'vae_tiny');
    const tiny = parseVaeConfig(JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8')));
    const over = (c: VaeConfig, limit: number, dtype: 'float32' | 'float16') => (t: { frames: number; height: number; width: number }) => decoderPeakBytes(c, t, dtype) > limit;
    expect(decodePlan(tiny, DIFFUSERS_TILING, [1, 16, 3, 12, 10], over(tiny, DEFAULT_MAX_TENSOR_BYTES, 'float32'))).toEqual({ temporal: false, spatial: false, calls: 1 });
    // 10 latents: tiles at 0, 3, 6 (a 1-latent tile at 9 would add no frame).
    expect(decodePlan(tiny, DIFFUSERS_TILING, [1, 16, 10, 12, 10], over(tiny, DEFAULT_MAX_TENSOR_BYTES, 'float32'))).toEqual({ temporal: true, spatial: false, calls: 3 });
    const real = parseVaeConfig(JSON.parse(readFileSync(resolve(import.meta.dirname, '../../src/models/configs/vae.json'), 'utf8')));
    const nvidia = 2 ** 31 - 4;
    for (const dtype of ['float32', 'float16'] as const) {
      // A section of 9 latents at the 640×608 bucket (latent 80×76): 3 temporal tiles × 4×4 spatial tiles.
      expect(decodePlan(real, DIFFUSERS_TILING, [1, 16, 9, 80, 76], over(real, nvidia, dtype))).toEqual({ temporal: true, spatial: true, calls: 3 * 16 });
      expect(decoderPeakBytes(real, { frames: 5, height: 32, width: 32 }, dtype)).toBeLessThanOrEqual(nvidia);
    }
  });
});

describe('VAE real config', () => {
  it('encoder + decoder consume exactly the real checkpoint tensors with their stored shapes', () => {
    const real = (JSON.parse(readFileSync(join(fixturesDir(), 'real_shapes.json'), 'utf8')) as { vae: Record<string, number[]> }).vae;
    const config = parseVaeConfig(JSON.parse(readFileSync(resolve(import.meta.dirname, '../../src/models/configs/vae.json'), 'utf8')));
    for (const dtype of ['float32', 'float16'] as const) {
      const consumed = new Map<string, number[]>();
      for (const graph of [buildVaeEncoder(config, { dtype }), buildVaeDecoder(config, { dtype })]) {
        for (const w of graph.weights) {
          expect(w.layout === 'q4').toBe(false);
          // Norms are fp32 on both paths; convs and linears take the activation dtype.
          expect(w.dtype).toBe(/norm/.test(w.tensor) ? 'float32' : dtype);
          consumed.set(w.tensor, w.shape);
        }
      }
      // The reference reads every VAE tensor (encoder for the start frame, decoder for every section): none unused.
      expect([...consumed.keys()].sort()).toEqual(Object.keys(real).sort());
      for (const [name, shape] of consumed) expect(shape, name).toEqual(real[name]);
    }
  });
});

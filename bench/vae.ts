// The HunyuanVideo VAE at FramePack's real size on a real GPU, through the product's path (worker/vae.ts createVae
// on WebGPU: our kernels, diffusers' tiling loops): the real configuration (src/models/configs/vae.json), random
// weights of realistic scale (conv and linear weights uniform with std 1/√fan-in, biases ±0.02, norm weights ≈ 1),
// and three workloads at the 640 bucket (frames 640×608, latents 80×76) —
//   encode    one frame
//   decode9   a first section: 9 latents → 33 frames
//   decode18  a later section: 18 latents → 69 frames
// — each with FramePack's low-VRAM tiling ('low': enable_tiling, temporal 16/12 frames, spatial 256/192 px) and its
// high-VRAM mode ('high': temporal tiles only). For each it prints the wall time of a plain run, then (a second,
// profiled run: every dispatch in a pass of its own with timestamp queries, the GPU waited for after each layer) GPU
// time and TFLOP/s per op class, the dispatch count, the longest single dispatch, and the peak of live GPU bytes
// (runtime/gpuMemory.ts). With --torch FILE (the JSON line of bench/vae_reference.py, run in the same invocation)
// it ends with one table against diffusers. --numerics instead checks each conv tile against its CPU twin at the real
// widths (small frames), then decodes the first section (low-VRAM tiles) in fp16 and in fp32 on the same weights and
// latents and prints the error.
//
// Usage (GPU machine, from a bundle): node vae.mjs [--torch torch_vae.json] [--dtype float16|float32]
//   [--workloads encode,decode9,decode18] [--modes low,high] [--no-profile] [--numerics]
//   [--software --small]   (SwiftShader smoke run: the fixture's 8…16-channel VAE at a 96×80 frame)

import { readFileSync } from 'node:fs';
import realConfig from '../src/models/configs/vae.json' with { type: 'json' };
import tinyConfig from '../test/fixtures/reference/vae_tiny/config.json' with { type: 'json' };
import { parseVaeConfig, vaeDecoderLayers, vaeEncoderLayers, type VaeConfig } from '../src/models/vae.ts';
import { nodeGpu } from '../src/runtime/nodeWebgpu.ts';
import { gpuName, readGpuBuffer, requestGpu } from '../src/runtime/device.ts';
import { trackGpuMemory } from '../src/runtime/gpuMemory.ts';
import type { Tensor } from '../src/pipeline/tensor.ts';
import type { Checkpoint } from '../src/weights/checkpoint.ts';
import { createVae, DIFFUSERS_TILING, type Vae } from '../src/worker/vae.ts';
import type { LayerTiming } from '../src/worker/vaeWebgpu.ts';
import { convOutputShape, convWeightToKN, createVaeConv, type ConvGeometry } from '../src/kernels/vaeConv.ts';
import { causalConv3d } from '../src/kernels/cpuReferenceVae.ts';
import { f16ToF32, f32ToF16 } from '../src/weights/dtypes.ts';
import { flag, opt } from './args.ts';

const software = flag('software');
const small = flag('small');
const gpu = nodeGpu({ software, dawnFlags: software ? [] : ['enable-dawn-features=allow_unsafe_apis,vulkan_enable_f16_on_nvidia'] });
const tracked = trackGpuMemory();
const ctx = await requestGpu(gpu);
const device = ctx.device;
const dtype = opt('dtype', ctx.capabilities.shaderF16 ? 'float16' : 'float32') as 'float16' | 'float32';
const config: VaeConfig = parseVaeConfig((small ? tinyConfig : realConfig) as Record<string, unknown>);
const [height, width] = small ? [96, 80] : [640, 608];
const s = config.spatialCompression;
const gpuLabel = gpuName(ctx.capabilities);
console.log(`VAE bench on ${gpuLabel}: ${small ? 'tiny fixture' : 'real'} config, ${dtype}, ${width}×${height} frames (latents ${width / s}×${height / s}); timestamp-query ${ctx.capabilities.timestampQuery ? 'yes' : 'no'}`);

// ── random weights of realistic scale, by name, with the shapes the layer lists read ──
function weightShapes(c: VaeConfig): Map<string, number[]> {
  const shapes = new Map<string, number[]>();
  for (const plan of [vaeEncoderLayers(c), vaeDecoderLayers(c)]) {
    for (const l of plan.layers) {
      if (l.op === 'conv') {
        const per = l.outChannels / l.weights.length;
        for (const p of l.weights) {
          shapes.set(`${p}.weight`, l.kernel === 3 ? [per, l.inChannels, 3, 3, 3] : [per, l.inChannels]);
          shapes.set(`${p}.bias`, [per]);
        }
      } else if (l.op === 'norm') {
        shapes.set(`${l.prefix}.weight`, [l.channels]);
        shapes.set(`${l.prefix}.bias`, [l.channels]);
      }
    }
  }
  return shapes;
}

function randomCheckpoint(c: VaeConfig, seed0: number): Checkpoint {
  const shapes = weightShapes(c);
  const cache = new Map<string, Float32Array>();
  const f32 = async (name: string) => {
    let data = cache.get(name);
    if (data) return data;
    const shape = shapes.get(name);
    if (!shape) throw new Error(`bench: no shape for weight ${name}`);
    let seed = seed0;
    for (const ch of name) seed = (Math.imul(seed, 31) + ch.charCodeAt(0)) >>> 0;
    const rand = () => ((seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) / 2 ** 32) * 2 - 1;
    const n = shape.reduce((a, b) => a * b, 1);
    const isNorm = /norm/.test(name);
    const fanIn = shape.length > 1 ? shape.slice(1).reduce((a, b) => a * b, 1) : 1;
    const amplitude = Math.sqrt(3 / fanIn); // uniform(−a, a) has std a/√3 = 1/√fan-in
    data = new Float32Array(n);
    for (let i = 0; i < n; i++) {
      if (name.endsWith('.weight') && isNorm) data[i] = 1 + 0.05 * rand();
      else if (name.endsWith('.bias')) data[i] = 0.02 * rand();
      else data[i] = amplitude * rand();
    }
    cache.set(name, data);
    return data;
  };
  return { where: 'random', config: { ...(small ? tinyConfig : realConfig) }, tensors: new Map(), files: [], f32 } as unknown as Checkpoint;
}

function randomTensor(shape: number[], seed: number, amplitude = 1): Tensor {
  let a = seed >>> 0;
  const n = shape.reduce((p, q) => p * q, 1);
  const data = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    a = (Math.imul(a, 1103515245) + 12345) >>> 0;
    data[i] = (a / 2 ** 32 - 0.5) * 2 * amplitude;
  }
  return { data, shape };
}

type Workload = 'encode' | 'decode9' | 'decode18';
type Mode = 'low' | 'high';
const workloads = opt('workloads', 'encode,decode9,decode18').split(',') as Workload[];
const modes = opt('modes', 'low,high').split(',') as Mode[];
const latentH = height / s;
const latentW = width / s;
const inputOf = (w: Workload): Tensor =>
  w === 'encode' ? randomTensor([1, config.inChannels, 1, height, width], 7) : randomTensor([1, config.latentChannels, w === 'decode9' ? 9 : 18, latentH, latentW], w === 'decode9' ? 9 : 18);

const checkpoint = randomCheckpoint(config, 1);
async function openVae(mode: Mode, d: 'float16' | 'float32', onLayer?: (t: LayerTiming) => void): Promise<Vae> {
  return createVae(checkpoint, {
    provider: 'webgpu', device, dtype: d, spatialTiling: mode === 'low' ? 'on' : 'off',
    tiling: small ? { ...DIFFUSERS_TILING, sampleSize: 64, sampleStride: 48 } : DIFFUSERS_TILING, onLayer,
  });
}

const run = (vae: Vae, w: Workload, x: Tensor) => (w === 'encode' ? vae.encode(x).then((e) => e.mean) : vae.decode(x));

if (flag('numerics')) {
  // Each conv tile on this GPU against the CPU twin at the real widths (small frames): catches a driver that
  // compiles a tile wrongly, which fp16-against-fp32 (both on the same tiles) cannot.
  const uploadF = (v: Float32Array, d: 'f32' | 'f16') => {
    const data = d === 'f16' ? f32ToF16(v) : v;
    const b = device.createBuffer({ size: Math.max(16, Math.ceil(data.byteLength / 4) * 4), usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST | GPUBufferUsage.COPY_SRC });
    device.queue.writeBuffer(b, 0, data.buffer, data.byteOffset, data.byteLength);
    return b;
  };
  for (const d of ctx.capabilities.shaderF16 ? (['f32', 'f16'] as const) : (['f32'] as const)) {
    for (const [tile, cin, cout] of [['large', 256, 256], ['medium', 512, 64], ['narrow', 128, 16], ['thin', 128, 3]] as const) {
      const g: ConvGeometry = { inFrames: 2, inHeight: 6, inWidth: 5, inChannels: cin, outChannels: cout, kernelTime: 3, kernelSpace: 3, upTime: 2, upSpace: 2 };
      const o = convOutputShape(g);
      const rows = o.frames * o.height * o.width;
      const round = (v: Float32Array) => (d === 'f16' ? f16ToF32(f32ToF16(v)) : v);
      const x = round(randomTensor([g.inFrames * g.inHeight * g.inWidth * cin], 21).data);
      const wShape = [cout, cin, 3, 3, 3];
      const wt = round(randomTensor([cout * cin * 27], 22, Math.sqrt(3 / (27 * cin))).data);
      const conv = await createVaeConv(device, { dtype: d, tile, planarF32: true });
      const out = device.createBuffer({ size: rows * cout * 4, usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC });
      await conv.run(g, { x: uploadF(x, d), weight: uploadF(convWeightToKN(wt, wShape), d), out });
      const got = new Float32Array(await readGpuBuffer(device, out, rows * cout * 4));
      const want = causalConv3d({ x, g, weight: wt });
      let maxAbs = 0;
      let scale = 0;
      for (let m = 0; m < rows; m++) for (let n = 0; n < cout; n++) {
        maxAbs = Math.max(maxAbs, Math.abs(got[n * rows + m] - want[m * cout + n]));
        scale = Math.max(scale, Math.abs(want[m * cout + n]));
      }
      console.log(`conv tile ${tile} ${d}, ${cin}→${cout} upsampled, against the CPU twin: max rel ${(maxAbs / scale).toExponential(2)}${maxAbs / scale > (d === 'f16' ? 1e-2 : 1e-4) ? '  <-- WRONG' : ''}`);
    }
  }
  // First section, low-VRAM tiles: fp16 against fp32, same weights and latents.
  const z = inputOf('decode9');
  const results: Record<string, Tensor> = {};
  for (const d of ['float32', 'float16'] as const) {
    if (d === 'float16' && !ctx.capabilities.shaderF16) continue;
    const vae = await openVae('low', d);
    const t0 = performance.now();
    results[d] = await vae.decode(z);
    console.log(`numerics: ${d} decode of 9 latents in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
    await vae.release();
  }
  if (!results.float16) {
    console.log('numerics: no shader-f16 on this device; nothing to compare');
    process.exit(0);
  }
  const a = results.float16.data;
  const b = results.float32.data;
  let maxAbs = 0;
  let scale = 0;
  let sq = 0;
  let sqRef = 0;
  for (let i = 0; i < a.length; i++) {
    maxAbs = Math.max(maxAbs, Math.abs(a[i] - b[i]));
    scale = Math.max(scale, Math.abs(b[i]));
    sq += (a[i] - b[i]) ** 2;
    sqRef += b[i] ** 2;
  }
  const report = { gpu: gpuLabel, workload: 'decode9/low', frames: results.float32.shape, maxRel: maxAbs / scale, maxAbs, rmsRel: Math.sqrt(sq / sqRef) };
  console.log(JSON.stringify(report));
  console.log(`fp16 vs fp32 decode (9 latents, low-VRAM tiles): max rel ${report.maxRel.toExponential(2)} (max abs ${maxAbs.toExponential(2)} of scale ${scale.toFixed(3)}), RMS rel ${report.rmsRel.toExponential(2)}`);
  process.exit(0);
}

interface Result {
  workload: Workload;
  mode: Mode;
  ms: number;
  calls: number;
  peakBytes: number;
  dispatches: number;
  byKind: Record<string, { ms: number; flops: number; bytes: number; count: number }>;
  longest: { ms: number; label: string } | null;
  gpuMs: number;
}

// Warm-up: every pipeline compiled on a small input before anything is timed.
const warm = await openVae('high', dtype);
await warm.encode(randomTensor([1, config.inChannels, 1, 4 * s, 4 * s], 3));
await warm.decode(randomTensor([1, config.latentChannels, 2, 4, 4], 4));
if (!small) await warm.decode(randomTensor([1, config.latentChannels, 2, 32, 32], 5));
await warm.release();

const results: Result[] = [];
for (const w of workloads) {
  for (const mode of modes) {
    const x = inputOf(w);
    // Plain run: the product's path as the engine calls it.
    let vae = await openVae(mode, dtype);
    // Weights go up on a plan's first call: make that call on a small input so it is not timed.
    const prime = (v: Vae) => (w === 'encode' ? v.encode(randomTensor([1, config.inChannels, 1, 2 * s, 2 * s], 11)).then(() => {}) : v.decode(randomTensor([1, config.latentChannels, 1, 2, 2], 12)).then(() => {}));
    await prime(vae);
    const before = vae.dispatches.conv + vae.dispatches.groupNorm + vae.dispatches.attention;
    const et = w === 'encode' ? vae.encodeTiling(x.shape) : null;
    const calls = w === 'encode' ? (et ? Math.ceil(height / et.sampleStride) * Math.ceil(width / et.sampleStride) : 1) : vae.decodeTiling(x.shape).calls;
    tracked.resetPeak();
    const t0 = performance.now();
    await run(vae, w, x);
    const ms = performance.now() - t0;
    const peakBytes = tracked.peak();
    const dispatches = vae.dispatches.conv + vae.dispatches.groupNorm + vae.dispatches.attention - before;
    await vae.release();
    const result: Result = { workload: w, mode, ms, calls, peakBytes, dispatches, byKind: {}, longest: null, gpuMs: 0 };
    if (!flag('no-profile')) {
      let last = performance.now();
      let profiling = false;
      vae = await openVae(mode, dtype, (t) => {
        if (!profiling) return;
        // Without timestamp queries: the layer's wall time (the runner waited for the GPU), split over its dispatches.
        const now = performance.now();
        const wall = (now - last) / t.dispatches.length;
        last = now;
        t.dispatches.forEach((d, i) => {
          const k = (result.byKind[d.kind] ??= { ms: 0, flops: 0, bytes: 0, count: 0 });
          const dms = t.gpuMs?.[i] ?? wall;
          k.ms += dms;
          k.flops += d.flops;
          k.bytes += d.bytes;
          k.count++;
          result.gpuMs += dms;
          if (t.gpuMs && (!result.longest || dms > result.longest.ms)) result.longest = { ms: dms, label: d.label };
        });
      });
      profiling = false;
      await prime(vae);
      profiling = true;
      last = performance.now();
      await run(vae, w, x);
      await vae.release();
    }
    results.push(result);
    const kinds = Object.entries(result.byKind).map(([k, v]) => `${k} ${v.ms.toFixed(0)} ms ${v.flops ? `${(v.flops / v.ms / 1e9).toFixed(1)} TFLOP/s` : `${(v.bytes / v.ms / 1e6).toFixed(0)} GB/s`} (${v.count})`).join(', ');
    console.log(`${w}/${mode}: ${(ms / 1000).toFixed(2)} s, ${calls} tile call(s), ${dispatches} dispatches, peak ${(peakBytes / 1e9).toFixed(2)} GB live` +
      (result.gpuMs ? `; GPU ${(result.gpuMs / 1000).toFixed(2)} s: ${kinds}; longest dispatch ${result.longest ? `${result.longest.ms.toFixed(1)} ms (${result.longest.label})` : 'n/a (no timestamp-query)'}` : ''));
  }
}

console.log(JSON.stringify({ gpu: gpuLabel, dtype, results }));

const torchFile = opt('torch', '');
if (torchFile) {
  const lines = readFileSync(torchFile, 'utf8').trim().split('\n');
  const torch = JSON.parse(lines[lines.length - 1]) as { torch: string; gpu: string; dtype: string; results: Record<string, { s: number; peak_bytes: number }> };
  console.log(`\nAgainst diffusers (torch ${torch.torch}, ${torch.dtype}, ${torch.gpu}), same workloads and tiles:\n`);
  console.log('| workload | tiling | ours (s) | diffusers (s) | ratio | ours peak GB | diffusers peak GB | longest dispatch (ms) |');
  console.log('| --- | --- | --- | --- | --- | --- | --- | --- |');
  for (const r of results) {
    const t = torch.results[`${r.workload}/${r.mode}`];
    const ratio = t ? (r.ms / 1000 / t.s).toFixed(1) : '—';
    console.log(`| ${r.workload} | ${r.mode === 'low' ? `low-VRAM (${small ? '64/48' : '256/192'} px, 16/12 frames)` : 'high-VRAM (16/12 frames)'} | ${(r.ms / 1000).toFixed(2)} | ${t ? t.s.toFixed(2) : '—'} | ${ratio}× | ${(r.peakBytes / 1e9).toFixed(2)} | ${t ? (t.peak_bytes / 1e9).toFixed(2) : '—'} | ${r.longest ? r.longest.ms.toFixed(1) : '—'} |`);
  }
}
process.exit(0);

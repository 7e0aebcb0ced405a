// `npm run bench`: the FramePack transformer at its real configuration (20 dual + 40 single blocks, 3072 wide,
// 24 heads) on a real GPU through the product's code path — the same graph builders (src/models/dit.ts), the same
// ORT sessions, the same flash-attention kernel between the block halves — with random 4-bit weights of realistic
// scale, at the 640-bucket token counts. Prints per-block and per-step times (median of several), TFLOP/s per op
// class, weight bytes and peak live GPU bytes, then (when bench/torch_reference.py ran in the same invocation and
// its JSON is passed with --torch FILE) the PyTorch bf16 figures and the ratio.
//
// Usage (GPU machine, from a bundle): node bench.mjs [--image-tokens 17500] [--text-tokens 256] [--repeats 5]
//   [--dtype float16|float32] [--software] [--small] [--torch torch.json] [--step] [--stream-gb 6]
// --step also runs two whole steps (60 blocks with their own weights) all resident, then streamed within --stream-gb.

import { readFileSync } from 'node:fs';
import realConfig from '../src/models/configs/transformer.json' with { type: 'json' };
import { buildDiTGraphs, hiddenSize, mlpWidth, parseDiTConfig, DIT_IO, type DiTConfig } from '../src/models/dit.ts';
import type { BuiltGraph } from '../src/models/graph.ts';
import { nodeGpu } from '../src/runtime/nodeWebgpu.ts';
import { requestGpu } from '../src/runtime/device.ts';
import { createSession, gpuTensor, setupOrt, type GraphSession, type OrtTensor } from '../src/runtime/ort.ts';
import { WeightResidency, hostBlockBytes, type HostBlock, type HostTensor } from '../src/runtime/residency.ts';
import { createFlashAttention, attentionFlops } from '../src/kernels/flashAttention.ts';
import { f32ToF16 } from '../src/weights/dtypes.ts';
import { trackGpuMemory } from '../src/runtime/gpuMemory.ts';

const args = process.argv.slice(2);
const opt = (name: string, fallback: string) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1] : fallback;
};
const flag = (name: string) => args.includes(`--${name}`);

const software = flag('software');
const small = flag('small'); // a cut-down config for a smoke run on SwiftShader
const repeats = Number(opt('repeats', '5'));
const imageTokens = Number(opt('image-tokens', small ? '256' : '17500'));
const condTokens = Number(opt('siglip-tokens', small ? '16' : '729')) + Number(opt('text-tokens', small ? '16' : '256'));

const gpu = nodeGpu({ software, dawnFlags: software ? [] : ['enable-dawn-features=allow_unsafe_apis,vulkan_enable_f16_on_nvidia'] });
const tracked = trackGpuMemory();
const ctx = await requestGpu(gpu);
const device = ctx.device;
(globalThis as { navigator?: { gpu?: GPU } }).navigator ??= {};
(globalThis as unknown as { navigator: { gpu?: GPU } }).navigator.gpu ??= gpu;
setupOrt({ device });
const dtype = (opt('dtype', ctx.capabilities.shaderF16 ? 'float16' : 'float32')) as 'float16' | 'float32';

const config: DiTConfig = parseDiTConfig(small ? { ...realConfig, num_attention_heads: 2, attention_head_dim: 128, rope_axes_dim: [16, 56, 56] } : realConfig);
const d = hiddenSize(config);
const graphs = buildDiTGraphs(config, { dtype, quantized: true, attention: 'external' });
const split = graphs.split!;

// ── random weights of realistic scale ──
let seed = 12345;
const rand = () => ((seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) / 2 ** 32);
/** Host tensors for one block of `graph`: 4-bit nibbles uniform, scales so that W has std ≈ 1/√in. */
function randomBlock(graph: BuiltGraph, key: string): HostBlock {
  const tensors: Record<string, HostTensor> = {};
  for (const w of graph.weights) {
    const inF = w.shape[1] ?? w.shape[0];
    if (w.layout === 'q4' && w.part === 'blocks') {
      const n = w.shape[0] * Math.ceil(w.shape[1] / 32) * 16;
      const data = new Uint8Array(n);
      for (let i = 0; i < n; i++) data[i] = (rand() * 256) | 0;
      tensors[w.input] = { dtype: 'uint8', dims: [w.shape[0], Math.ceil(w.shape[1] / 32), 16], data };
    } else {
      const n = w.layout === 'q4' ? w.shape[0] * Math.ceil(w.shape[1] / 32) : w.shape.reduce((a, b) => a * b, 1);
      // Uniform nibbles (std ≈ 4.6 steps) → scale 1/(4.6·√in) gives W std ≈ 1/√in; norms and biases near 1 and 0.
      const isNorm = w.tensor.includes('norm');
      const values = new Float32Array(n).map(() => (w.layout === 'q4' ? 1 / (4.6 * Math.sqrt(w.shape[1])) : isNorm ? 1 : (rand() - 0.5) * 0.02));
      const dims = w.layout === 'q4' ? [n] : w.layout === 'transpose' ? [w.shape[1], w.shape[0]] : w.shape;
      tensors[w.input] = w.dtype === 'float16' ? { dtype: 'float16', dims, data: f32ToF16(values) } : { dtype: 'float32', dims, data: values };
    }
    void inF;
  }
  return { key, tensors };
}

const residency = new WeightResidency(device);
const loadStart = performance.now();
const blocks = {
  dualPre: randomBlock(split.dualPre, 'dualPre'),
  dualPost: randomBlock(split.dualPost, 'dualPost'),
  singlePre: randomBlock(split.singlePre, 'singlePre'),
  singlePost: randomBlock(split.singlePost, 'singlePost'),
};
const sessions: Record<keyof typeof blocks, GraphSession> = {
  dualPre: await createSession(split.dualPre, 'webgpu', { outputsOnGpu: true }),
  dualPost: await createSession(split.dualPost, 'webgpu', { outputsOnGpu: true }),
  singlePre: await createSession(split.singlePre, 'webgpu', { outputsOnGpu: true }),
  singlePost: await createSession(split.singlePost, 'webgpu', { outputsOnGpu: true }),
};
const kernel = await createFlashAttention(device, { heads: config.heads, headDim: config.headDim, dtype: dtype === 'float16' ? 'f16' : 'f32' });
const loadMs = performance.now() - loadStart;

// ── activations on the GPU ──
function gpuRandom(dims: number[], scale: number): OrtTensor {
  const n = dims.reduce((a, b) => a * b, 1);
  const data = new Float32Array(n).map(() => (rand() - 0.5) * 2 * scale);
  const buffer = device.createBuffer({ size: data.byteLength, usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST | GPUBufferUsage.COPY_SRC });
  device.queue.writeBuffer(buffer, 0, data);
  return gpuTensor(buffer, 'float32', dims);
}
const angles = new Float32Array(imageTokens * config.headDim).map(() => rand() * 6.28);
const cosT = gpuRandom([imageTokens, config.headDim], 1);
const sinT = gpuRandom([imageTokens, config.headDim], 1);
void angles;
const streams = {
  [DIT_IO.imageTokens]: gpuRandom([1, imageTokens, d], 1),
  [DIT_IO.contextTokens]: gpuRandom([1, condTokens, d], 1),
  [DIT_IO.temb]: gpuRandom([1, d], 1),
  [DIT_IO.ropeCos]: cosT,
  [DIT_IO.ropeSin]: sinT,
};
const tokens = imageTokens + condTokens;
const attnOut = device.createBuffer({ size: tokens * d * (dtype === 'float16' ? 2 : 4), usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC });

async function gpuIdle(): Promise<void> {
  await device.queue.onSubmittedWorkDone();
}
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

/** One block split in three timed parts: pre graph, kernel, post graph (each waited for on the GPU). */
async function timeBlock(pre: keyof typeof blocks, post: keyof typeof blocks) {
  const times = { pre: [] as number[], attention: [] as number[], post: [] as number[], total: [] as number[] };
  for (let r = 0; r < repeats + 1; r++) {
    const t0 = performance.now();
    const a = await sessions[pre].run({ ...residency.feeds(blocks[pre]), ...streams });
    await gpuIdle();
    const t1 = performance.now();
    const enc = device.createCommandEncoder();
    kernel.encode(enc, { q: a.q.gpuBuffer, k: a.k.gpuBuffer, v: a.v.gpuBuffer, out: attnOut, nq: tokens, nk: tokens });
    device.queue.submit([enc.finish()]);
    await gpuIdle();
    const t2 = performance.now();
    const feeds: Record<string, OrtTensor> = { ...residency.feeds(blocks[post]), [DIT_IO.imageTokens]: streams[DIT_IO.imageTokens], [DIT_IO.contextTokens]: streams[DIT_IO.contextTokens], [DIT_IO.attention]: gpuTensor(attnOut, dtype, [1, tokens, d]) };
    for (const i of split[post].inputs) if (i.name in a) feeds[i.name] = a[i.name];
    const out = await sessions[post].run(feeds);
    await gpuIdle();
    const t3 = performance.now();
    for (const t of [...Object.values(a), ...Object.values(out)]) t.dispose();
    if (r === 0) continue; // the first run compiles shaders
    times.pre.push(t1 - t0);
    times.attention.push(t2 - t1);
    times.post.push(t3 - t2);
    times.total.push(t3 - t0);
  }
  return { pre: median(times.pre), attention: median(times.attention), post: median(times.post), total: median(times.total) };
}

const dual = await timeBlock('dualPre', 'dualPost');
const single = await timeBlock('singlePre', 'singlePost');

/**
 * A whole step's 60 blocks, each block its own weights (keys per index, so residency uploads or streams each one
 * as it would in a job), timed end to end; the live-buffer peak then covers every resident weight.
 */
async function timeStep(stepResidency: WeightResidency): Promise<number> {
  const t0 = performance.now();
  for (const [pre, post, count] of [['dualPre', 'dualPost', config.layers], ['singlePre', 'singlePost', config.singleLayers]] as const) {
    for (let i = 0; i < count; i++) {
      const a = await sessions[pre].run({ ...stepResidency.feeds({ ...blocks[pre], key: `${pre}/${i}` }), ...streams });
      const enc = device.createCommandEncoder();
      kernel.encode(enc, { q: a.q.gpuBuffer, k: a.k.gpuBuffer, v: a.v.gpuBuffer, out: attnOut, nq: tokens, nk: tokens });
      device.queue.submit([enc.finish()]);
      const feeds: Record<string, OrtTensor> = { ...stepResidency.feeds({ ...blocks[post], key: `${post}/${i}` }), [DIT_IO.imageTokens]: streams[DIT_IO.imageTokens], [DIT_IO.contextTokens]: streams[DIT_IO.contextTokens], [DIT_IO.attention]: gpuTensor(attnOut, dtype, [1, tokens, d]) };
      for (const inp of split[post].inputs) if (inp.name in a) feeds[inp.name] = a[inp.name];
      const out = await sessions[post].run(feeds);
      for (const t of [...Object.values(a), ...Object.values(out)]) t.dispose();
    }
  }
  await gpuIdle();
  return performance.now() - t0;
}

const stepRuns: { budgetGiB: number | null; firstMs: number; secondMs: number; peakLiveGpuBytes: number; residentBytes: number; streamedBytesPerStep: number }[] = [];
if (flag('step')) {
  for (const budgetGiB of [null, Number(opt('stream-gb', '6'))]) {
    const r = new WeightResidency(device, budgetGiB === null ? Infinity : budgetGiB * 2 ** 30);
    tracked.resetPeak();
    const firstMs = await timeStep(r); // uploads (or streams) every block
    const streamedBefore = r.stats.streamedBytes;
    const secondMs = await timeStep(r);
    stepRuns.push({ budgetGiB, firstMs, secondMs, peakLiveGpuBytes: tracked.peak(), residentBytes: r.stats.residentBytes, streamedBytesPerStep: r.stats.streamedBytes - streamedBefore });
    r.release();
  }
}

// FLOPs: linears 2·tokens·in·out; attention 4·N²·D.
const m = mlpWidth(config);
const nImg = imageTokens;
const nCtx = condTokens;
const dualLinear = 2 * (nImg + nCtx) * d * (3 * d) + 2 * (nImg + nCtx) * d * d + 2 * 2 * (nImg + nCtx) * d * m;
const singleLinear = 2 * tokens * d * (3 * d + m) + 2 * tokens * (d + m) * d;
const attention = attentionFlops(tokens, tokens, config.heads, config.headDim);
const stepMs = config.layers * dual.total + config.singleLayers * single.total;
const tflops = (flop: number, ms: number) => flop / (ms / 1000) / 1e12;
const weightBytes = config.layers * (hostBlockBytes(blocks.dualPre) + hostBlockBytes(blocks.dualPost)) + config.singleLayers * (hostBlockBytes(blocks.singlePre) + hostBlockBytes(blocks.singlePost));

const result = {
  gpu: `${ctx.capabilities.vendor} ${ctx.capabilities.architecture} ${ctx.capabilities.description}`.trim(),
  dtype,
  attentionPath: kernel.path,
  imageTokens,
  condTokens,
  dualBlockMs: dual,
  singleBlockMs: single,
  stepMsBlocksOnly: stepMs,
  tflops: {
    dualLinears: tflops(dualLinear, dual.pre + dual.post),
    singleLinears: tflops(singleLinear, single.pre + single.post),
    attention: tflops(attention, (dual.attention + single.attention) / 2),
  },
  loadMs,
  weightBytesAll60Blocks: weightBytes,
  peakLiveGpuBytes: tracked.peak(),
  step: stepRuns,
};
console.log(JSON.stringify(result));

const torchFile = opt('torch', '');
if (torchFile) {
  const lines = readFileSync(torchFile, 'utf8').trim().split('\n');
  const torch = JSON.parse(lines[lines.length - 1]) as Record<string, number | string>;
  const row = (what: string, ours: number, theirs: number) => `| ${what} | ${ours.toFixed(2)} | ${theirs.toFixed(2)} | ${(ours / theirs).toFixed(1)}× |`;
  console.log(`\n| figure (${result.gpu}, ${dtype}, attention ${kernel.path}) | ours (WebGPU, ms) | PyTorch ${torch.torch} bf16 (ms) | ratio |`);
  console.log('| --- | --- | --- | --- |');
  console.log(row('dual block', dual.total, Number(torch.dual_block_s) * 1000));
  console.log(row('single block', single.total, Number(torch.single_block_s) * 1000));
  console.log(row('step (60 blocks)', stepMs, Number(torch.step_s_blocks_only) * 1000));
  console.log(row('attention, one call', (dual.attention + single.attention) / 2, Number(torch.attention_s) * 1000));
  for (const r of stepRuns) console.log(row(`whole step, measured, ${r.budgetGiB === null ? 'all weights resident' : `streamed within ${r.budgetGiB} GiB`}`, r.secondMs, Number(torch.step_s_blocks_only) * 1000));
  console.log(`PyTorch SDPA backend: ${torch.sdpa_backend}; GPU ${torch.gpu}; CUDA ${torch.cuda}`);
}
process.exit(0);

// `npm run bench`: the FramePack transformer at its real configuration (20 dual + 40 single blocks, 3072 wide,
// 24 heads) on a real GPU through the product's code path — the same block plans (src/models/ditBlocks.ts) run by the
// same executor (src/worker/ditBlocksWebgpu.ts): the 4-bit GEMM and GEMV, the fused element-wise kernels and flash
// attention — with random 4-bit weights of realistic scale, at the 640-bucket token counts. Prints per-block
// times split into attention, linears and the fused kernels (each stage waited for; median of several) with every
// stage's own median, per-step times, TFLOP/s per op class, weight bytes and peak live GPU bytes, then (when
// bench/torch_reference.py ran in the same invocation and its JSON is passed with --torch FILE) the PyTorch bf16
// figures and the ratio.
//
// `npm run bench -- --job …` runs the whole-job bench instead (bench/job.ts); `--soak …` a long video's memory (bench/soak.ts).
//
// Usage (GPU machine, from a bundle): node bench.mjs [--image-tokens 17500] [--text-tokens 256] [--repeats 5]
//   [--dtype float16|float32] [--software] [--small] [--torch torch.json] [--step] [--stream-gb 6]
//   [--path auto|portable|subgroup-matrix] [--no-f16] [--profile]
// --path portable opens the GPU as stock Chrome does (no unsafe APIs: no subgroup matrices) and runs the portable
// kernels; --no-f16 leaves shader-f16 off (Chrome on Linux NVIDIA without its flag: fp32 activations). --profile
// times every dispatch (timestamp queries) and every submit of one block of each kind and reports the longest.
// --step also runs two whole steps (60 blocks with their own weights) all resident, then streamed within --stream-gb.
// --numerics instead runs one dual and one single block in --dtype (default float16) and in float32 on the same random
// weights and inputs and prints the error (bench/blockNumerics.ts); --unrounded-weights gives the float32 reference
// its own fp32 scales instead of the fp16-rounded ones.

import { readFileSync } from 'node:fs';
import realConfig from '../src/models/configs/transformer.json' with { type: 'json' };
import { buildDiT, hiddenSize, mlpWidth, parseDiTConfig, type DiTConfig } from '../src/models/dit.ts';
import type { BlockKind, BlockPlan, BlockStage } from '../src/models/ditBlocks.ts';
import type { WeightSet } from '../src/models/graph.ts';
import { nodeGpu } from '../src/runtime/nodeWebgpu.ts';
import { gpuName, requestGpu } from '../src/runtime/device.ts';
import { gpuTensor, setupOrt, type OrtTensor } from '../src/runtime/ort.ts';
import { WeightResidency, hostBlockBytes, type HostBlock, type HostTensor } from '../src/runtime/residency.ts';
import { attentionFlops } from '../src/kernels/flashAttention.ts';
import { stageWeightSource, type DiTStreams } from '../src/worker/ditBlocks.ts';
import { createWebgpuBlockExecutor } from '../src/worker/ditBlocksWebgpu.ts';
import { f32ToF16 } from '../src/weights/dtypes.ts';
import { trackGpuMemory } from '../src/runtime/gpuMemory.ts';
import { blockNumerics, formatBlockNumerics } from './blockNumerics.ts';
import { hardwareDawnFlags } from '../src/cli/nodeRuntime.ts';
import { DispatchProfiler, setDispatchProfiler } from '../src/kernels/dispatch.ts';
import { flag, opt } from './args.ts';

if (process.argv.includes('--job')) await import('./job.ts'); // it exits when done
if (process.argv.includes('--soak')) await import('./soak.ts'); // it exits when done

const software = flag('software');
const small = flag('small'); // a cut-down config for a smoke run on SwiftShader
const repeats = Number(opt('repeats', '5'));
const imageTokens = Number(opt('image-tokens', small ? '256' : '17500'));
const condTokens = Number(opt('siglip-tokens', small ? '16' : '729')) + Number(opt('text-tokens', small ? '16' : '256'));

const kernelPath = opt('path', 'auto') as 'auto' | 'portable' | 'subgroup-matrix';
const gpu = nodeGpu({ software, dawnFlags: software ? [] : hardwareDawnFlags(kernelPath, flag('no-f16')) });
const tracked = trackGpuMemory();
const ctx = await requestGpu(gpu);
const device = ctx.device;
(globalThis as { navigator?: { gpu?: GPU } }).navigator ??= {};
(globalThis as unknown as { navigator: { gpu?: GPU } }).navigator.gpu ??= gpu;
setupOrt({ device });
const dtype = (opt('dtype', ctx.capabilities.shaderF16 && !flag('no-f16') ? 'float16' : 'float32')) as 'float16' | 'float32';

const config: DiTConfig = parseDiTConfig(small ? { ...realConfig, num_attention_heads: 2, attention_head_dim: 128, rope_axes_dim: [16, 56, 56] } : realConfig);
const d = hiddenSize(config);

if (flag('numerics')) {
  const report = await blockNumerics({ device, config, imageTokens, condTokens, dtype, kernelPath, roundReferenceWeights: !flag('unrounded-weights') });
  console.log(JSON.stringify({ gpu: gpuName(ctx.capabilities), ...report }));
  for (const line of formatBlockNumerics(report)) console.log(line);
  process.exit(0);
}

const plans = buildDiT(config, { dtype, quantized: true }).blocks;

// ── random weights of realistic scale ──
let seed = 12345;
const rand = () => ((seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) / 2 ** 32);
/** Host tensors for one block of a weight set: 4-bit nibbles uniform, scales so that W has std ≈ 1/√in. */
function randomBlock(graph: WeightSet, key: string): HostBlock {
  const tensors: Record<string, HostTensor> = {};
  for (const w of graph.weights) {
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
  }
  return { key, tensors };
}

const loadStart = performance.now();
// One random set per plan, shared by every block; each block index is its own HostBlock (own residency key), as
// each block of a job is.
const random = new Map<BlockPlan, HostBlock>(Object.values(plans).map((plan) => [plan, randomBlock(plan.weights, plan.weights.name)]));
const perBlock = new Map<string, HostBlock>();
const stageWeights = stageWeightSource(async (plan, block) => {
  const key = `${plan.weights.name}/${block}`;
  let host = perBlock.get(key);
  if (!host) perBlock.set(key, (host = { key, tensors: random.get(plan)!.tensors }));
  return host;
});
// The residency the executor feeds from; swapped for the whole-step runs.
let residency = new WeightResidency(device);
const runner = await createWebgpuBlockExecutor(device, config, plans, { dtype, path: kernelPath, weights: async (plan, block) => residency.feeds(await stageWeights(plan, block)) });
const loadMs = performance.now() - loadStart;

// ── activations on the GPU ──
function gpuRandom(dims: number[], scale: number): OrtTensor {
  const n = dims.reduce((a, b) => a * b, 1);
  const data = new Float32Array(n).map(() => (rand() - 0.5) * 2 * scale);
  const buffer = device.createBuffer({ size: data.byteLength, usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST | GPUBufferUsage.COPY_SRC });
  device.queue.writeBuffer(buffer, 0, data);
  return gpuTensor(buffer, 'float32', dims);
}
const streams: DiTStreams = {
  x: gpuRandom([1, imageTokens, d], 1),
  ctx: gpuRandom([1, condTokens, d], 1),
  temb: gpuRandom([1, d], 1),
  cos: gpuRandom([imageTokens, config.headDim], 1),
  sin: gpuRandom([imageTokens, config.headDim], 1),
};
const tokens = imageTokens + condTokens;

async function gpuIdle(): Promise<void> {
  await device.queue.onSubmittedWorkDone();
}
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
function stageName(s: BlockStage): string {
  switch (s.op) {
    case 'attention': return 'attention';
    case 'linear': return `${s.linear.format} ${s.linear.parts.map((p) => p.prefix.split('.').slice(2).join('.')).join('+')}[${s.linear.kOffset}:${s.linear.kOffset + s.linear.k}]`;
    case 'heads': return `heads ${s.rows}`;
    case 'adaParams': return `adaParams ${s.out}`;
    case 'adaNorm': return `adaNorm ${s.rows}${s.residual ? ` +${s.residual.y}` : ''}${s.modulation ? ` →${s.modulation.out}` : ''}`;
  }
}

/**
 * One block through the runner, each stage waited for on the GPU and timed (median of the repeats after a first,
 * compiling, run), grouped as attention, linears and the fused kernels; total is the sum of the stage medians.
 */
async function timeBlock(kind: BlockKind) {
  const perStage = new Map<string, number[]>();
  for (let r = 0; r < repeats + 1; r++) {
    const seen: [BlockStage, number][] = [];
    const out = await runner.run(kind, 0, streams, { onStage: (stage, ms) => seen.push([stage, ms]) });
    out.x.dispose();
    out.ctx.dispose();
    if (r === 0) continue; // the first run compiles shaders
    for (const [stage, ms] of seen) perStage.set(stageName(stage), [...(perStage.get(stageName(stage)) ?? []), ms]);
  }
  const stages = Object.fromEntries([...perStage].map(([name, ms]) => [name, median(ms)]));
  const sum = (match: (s: BlockStage) => boolean) => plans[kind].stages.filter(match).reduce((t, s) => t + stages[stageName(s)], 0);
  const attentionMs = sum((s) => s.op === 'attention');
  const linearsMs = sum((s) => s.op === 'linear');
  const fusedMs = sum((s) => s.op === 'heads' || s.op === 'adaNorm' || s.op === 'adaParams'); // element-wise kernels and the AdaLN GEMVs
  return { attention: attentionMs, kernelLinears: linearsMs, fused: fusedMs, total: attentionMs + linearsMs + fusedMs, stages };
}

const dual = await timeBlock('dual');
const single = await timeBlock('single');

/**
 * One block of each kind with every dispatch timed by timestamp queries, and every submit from its first dispatch's
 * start to its last one's end on the GPU's clock: the longest of each, against the 25 ms / 250 ms goals.
 */
async function profileBlocks() {
  if (!device.features.has('timestamp-query')) return null;
  const profiler = new DispatchProfiler(device, 2048); // WebGPU allows 4096 queries per set
  const queue = device.queue;
  const submit = queue.submit.bind(queue);
  queue.submit = (buffers: Iterable<GPUCommandBuffer>) => {
    submit(buffers);
    profiler.markSubmit();
  };
  setDispatchProfiler(profiler);
  try {
    for (const kind of ['dual', 'single'] as const) {
      const out = await runner.run(kind, 0, streams);
      out.x.dispose();
      out.ctx.dispose();
    }
    await gpuIdle();
  } finally {
    setDispatchProfiler(null);
    queue.submit = submit;
  }
  await profiler.flush();
  const longest = profiler.timings.reduce((a, b) => (b.ms > a.ms ? b : a));
  const spans = profiler.submitSpans();
  return { dispatches: profiler.timings.length, longestDispatch: { label: longest.label, ms: longest.ms }, longestSubmitMs: Math.max(...spans), submits: spans.length };
}
const profile = flag('profile') ? await profileBlocks() : null;

/**
 * A whole step's 60 blocks, each block its own weights (keys per index, so residency uploads or streams each one
 * as it would in a job), timed end to end; the live-buffer peak then covers every resident weight.
 */
async function timeStep(): Promise<number> {
  const t0 = performance.now();
  for (const [kind, count] of [['dual', config.layers], ['single', config.singleLayers]] as const) {
    for (let i = 0; i < count; i++) {
      const out = await runner.run(kind, i, streams);
      out.x.dispose();
      out.ctx.dispose();
    }
  }
  await gpuIdle();
  return performance.now() - t0;
}

const stepRuns: { budgetGiB: number | null; firstMs: number; secondMs: number; peakLiveGpuBytes: number; residentBytes: number; streamedBytesPerStep: number }[] = [];
if (flag('step')) {
  for (const budgetGiB of [null, Number(opt('stream-gb', '6'))]) {
    const previous = residency;
    residency = new WeightResidency(device, budgetGiB === null ? Infinity : budgetGiB * 2 ** 30);
    previous.release();
    tracked.resetPeak();
    const firstMs = await timeStep(); // uploads (or streams) every block
    const streamedBefore = residency.stats.streamedBytes;
    const secondMs = await timeStep();
    stepRuns.push({ budgetGiB, firstMs, secondMs, peakLiveGpuBytes: tracked.peak(), residentBytes: residency.stats.residentBytes, streamedBytesPerStep: residency.stats.streamedBytes - streamedBefore });
  }
}

// FLOPs: linears 2·tokens·in·out; attention 4·N²·D.
const m = mlpWidth(config);
const dualLinear = 2 * tokens * d * (3 * d) + 2 * tokens * d * d + 2 * 2 * tokens * d * m;
const singleLinear = 2 * tokens * d * (3 * d + m) + 2 * tokens * (d + m) * d;
const attention = attentionFlops(tokens, tokens, config.heads, config.headDim);
const stepMs = config.layers * dual.total + config.singleLayers * single.total;
const tflops = (flop: number, ms: number) => (ms > 0 && flop > 0 ? flop / (ms / 1000) / 1e12 : null);
const bytesOf = (plan: BlockPlan) => hostBlockBytes(random.get(plan)!);
const weightBytes = config.layers * bytesOf(plans.dual) + config.singleLayers * bytesOf(plans.single);

const result = {
  gpu: gpuName(ctx.capabilities),
  dtype,
  kernels: runner.kernels,
  imageTokens,
  condTokens,
  dualBlockMs: dual,
  singleBlockMs: single,
  stepMsBlocksOnly: stepMs,
  tflops: {
    // Every token-wise linear (the one-row AdaLN products are not counted).
    dualKernelLinears: tflops(dualLinear, dual.kernelLinears),
    singleKernelLinears: tflops(singleLinear, single.kernelLinears),
    attention: tflops(attention, (dual.attention + single.attention) / 2),
  },
  loadMs,
  weightBytesAll60Blocks: weightBytes,
  peakLiveGpuBytes: tracked.peak(),
  step: stepRuns,
  profile,
};
console.log(JSON.stringify(result));

const torchFile = opt('torch', '');
if (torchFile) {
  const lines = readFileSync(torchFile, 'utf8').trim().split('\n');
  const torch = JSON.parse(lines[lines.length - 1]) as Record<string, number | string>;
  const row = (what: string, ours: number, theirs: number) => `| ${what} | ${ours.toFixed(2)} | ${theirs.toFixed(2)} | ${(ours / theirs).toFixed(1)}× |`;
  console.log(`\n| figure (${result.gpu}, ${dtype}, attention ${runner.kernels.attention}, linears ${runner.kernels.linear}) | ours (WebGPU, ms) | PyTorch ${torch.torch} bf16 (ms) | ratio |`);
  console.log('| --- | --- | --- | --- |');
  console.log(row('dual block', dual.total, Number(torch.dual_block_s) * 1000));
  console.log(row('single block', single.total, Number(torch.single_block_s) * 1000));
  console.log(row('step (60 blocks)', stepMs, Number(torch.step_s_blocks_only) * 1000));
  console.log(row('attention, one call', (dual.attention + single.attention) / 2, Number(torch.attention_s) * 1000));
  for (const r of stepRuns) console.log(row(`whole step, measured, ${r.budgetGiB === null ? 'all weights resident' : `streamed within ${r.budgetGiB} GiB`}`, r.secondMs, Number(torch.step_s_blocks_only) * 1000));
  if (profile) console.log(`| longest dispatch (${profile.longestDispatch.label}) / longest submit | ${profile.longestDispatch.ms.toFixed(1)} / ${profile.longestSubmitMs.toFixed(1)} | | |`);
  console.log(`PyTorch SDPA backend: ${torch.sdpa_backend}; GPU ${torch.gpu}; CUDA ${torch.cuda}`);
}
process.exit(0);

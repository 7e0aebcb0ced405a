// `bench --numerics`: how far the fp16 activation path drifts from fp32 at the real width. One dual and one single
// block run through the product's code path (the WebGPU executor, src/worker/ditBlocksWebgpu.ts, on the block
// plans of src/models/ditBlocks.ts with 4-bit weights) twice: once as the reference in float32, once in the dtype
// under test. Both get the same random 4-bit weights (the same nibbles and scales; the reference is fed the
// fp16-rounded value of every weight the fp16 plan stores in fp16, so only activation precision differs) and the
// same input streams (x, ctx, temb ~ N(0, 1), RoPE cos/sin from the real tables of a 640-bucket grid). The output
// tokens and the block's residual (out − in, which the stream's own scale would otherwise hide) are compared with
// the repo's metric (src/pipeline/tensorError.ts). Reported, never asserted: bench/ prints figures.

import { buildDiT, hiddenSize, type DiTConfig } from '../src/models/dit.ts';
import type { BlockKind, BlockPlan } from '../src/models/ditBlocks.ts';
import type { WeightBinding, WeightSet } from '../src/models/graph.ts';
import { gpuTensor, tensorData, type OrtTensor } from '../src/runtime/ort.ts';
import { WeightResidency, type HostBlock, type HostTensor } from '../src/runtime/residency.ts';
import { stageWeightSource, type DiTStreams } from '../src/worker/ditBlocks.ts';
import { createWebgpuBlockExecutor } from '../src/worker/ditBlocksWebgpu.ts';
import { f16BitsToF32, f32ToF16, f32ToF16Bits } from '../src/weights/dtypes.ts';
import { ropeFreqs1x } from '../src/pipeline/ropeTables.ts';
import { tensorError, type TensorError } from '../src/pipeline/tensorError.ts';

type Dtype = 'float32' | 'float16';

export interface BlockNumericsOptions {
  device: GPUDevice;
  config: DiTConfig;
  imageTokens: number;
  /** SigLIP + text tokens. */
  condTokens: number;
  /** The path under test; the reference is always float32. */
  dtype: Dtype;
  /** The candidate's kernel path ('auto' by default); the f32 reference runs the portable f32 kernels either way. */
  kernelPath?: 'auto' | 'portable' | 'subgroup-matrix';
  /** Feed the reference the fp16-rounded weights (default): only activation precision then differs. */
  roundReferenceWeights: boolean;
  seed?: number;
}

/** The repo's metric plus the RMS ratio ‖Δ‖/‖want‖, which max-based figures can hide behind one outlier. */
export type NumericsError = TensorError & { rms: number };

export interface StreamErrors {
  /** The block's output stream. */
  out: NumericsError;
  /** out − in: what the block added to the stream. */
  residual: NumericsError;
}

export interface PathReport {
  dtype: Dtype;
  /** Stages of each plan by op. */
  stages: { dual: Record<string, number>; single: Record<string, number> };
  kernels: Record<string, string>;
  dispatches: Record<string, number>;
  ms: { dual: number; single: number };
}

export interface BlockNumericsReport {
  mode: 'numerics';
  hidden: number;
  heads: number;
  headDim: number;
  imageTokens: number;
  condTokens: number;
  reference: PathReport;
  candidate: PathReport;
  referenceWeights: string;
  inputs: string;
  dual: { image: StreamErrors; context: StreamErrors };
  single: { image: StreamErrors; context: StreamErrors };
}

// ── seeded randomness ──
function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 2 ** 32;
  };
}

function normals(rand: () => number, n: number): Float32Array {
  const out = new Float32Array(n);
  for (let i = 0; i < n; i += 2) {
    const r = Math.sqrt(-2 * Math.log(1 - rand()));
    const a = 2 * Math.PI * rand();
    out[i] = r * Math.cos(a);
    if (i + 1 < n) out[i + 1] = r * Math.sin(a);
  }
  return out;
}

const roundToF16 = (x: number) => f16BitsToF32(f32ToF16Bits(x));
type Plans = Record<BlockKind, BlockPlan>;

const stageCounts = (plan: BlockPlan) => {
  const counts: Record<string, number> = {};
  for (const s of plan.stages) counts[s.op] = (counts[s.op] ?? 0) + 1;
  return counts;
};

/**
 * Random block weights shared by both paths: values are made once per checkpoint tensor (and layout and part), so
 * every plan of either dtype that reads a tensor gets the same numbers. 4-bit nibbles uniform; scales
 * (0.5–1.5)/(4.6·√in) per block of 32 so W has std ≈ 1/√in; norms 1; other weights small.
 */
class SharedWeights {
  private values = new Map<string, Float32Array | Uint8Array>();
  constructor(private readonly rand: () => number, private readonly roundToHalf: Set<string>) {}

  static key(w: WeightBinding): string {
    return `${w.tensor}|${w.layout}|${w.part ?? ''}`;
  }

  private valuesOf(w: WeightBinding): Float32Array | Uint8Array {
    const key = SharedWeights.key(w);
    let v = this.values.get(key);
    if (v) return v;
    const kBlocks = Math.ceil((w.shape[1] ?? 0) / 32);
    if (w.layout === 'q4' && w.part === 'blocks') {
      v = new Uint8Array(w.shape[0] * kBlocks * 16).map(() => (this.rand() * 256) | 0);
    } else {
      const n = w.layout === 'q4' ? w.shape[0] * kBlocks : w.shape.reduce((a, b) => a * b, 1);
      const isNorm = w.tensor.includes('norm');
      v = new Float32Array(n).map(() => (w.layout === 'q4' ? (0.5 + this.rand()) / (4.6 * Math.sqrt(w.shape[1])) : isNorm ? 1 : (this.rand() - 0.5) * 0.02));
      if (this.roundToHalf.has(key)) v = v.map(roundToF16);
    }
    this.values.set(key, v);
    return v;
  }

  /** The host tensors of a weight set, in its dtypes and layouts. */
  block(graph: WeightSet, key: string): HostBlock {
    const tensors: Record<string, HostTensor> = {};
    for (const w of graph.weights) {
      const v = this.valuesOf(w);
      if (v instanceof Uint8Array) {
        tensors[w.input] = { dtype: 'uint8', dims: [w.shape[0], Math.ceil(w.shape[1] / 32), 16], data: v };
        continue;
      }
      const dims = w.layout === 'q4' ? [v.length] : w.layout === 'transpose' ? [w.shape[1], w.shape[0]] : w.shape;
      // Elementwise random values: a transposed layout is the same distribution, no reordering needed.
      tensors[w.input] = w.dtype === 'float16' ? { dtype: 'float16', dims, data: f32ToF16(v) } : { dtype: 'float32', dims, data: v };
    }
    return { key, tensors };
  }
}

function compare(got: Float32Array, want: Float32Array, input: Float32Array): StreamErrors {
  const withRms = (g: Float32Array, w: Float32Array): NumericsError => {
    let dd = 0;
    let ww = 0;
    for (let i = 0; i < w.length; i++) {
      dd += (g[i] - w[i]) ** 2;
      ww += w[i] ** 2;
    }
    return { ...tensorError(g, w), rms: ww > 0 ? Math.sqrt(dd / ww) : Math.sqrt(dd) };
  };
  const minusInput = (a: Float32Array) => a.map((v, i) => v - input[i]);
  return { out: withRms(got, want), residual: withRms(minusInput(got), minusInput(want)) };
}

/**
 * Runs one dual and one single block in float32 and in options.dtype on the same weights and inputs and reports the
 * candidate's error against the reference. Throws what the WebGPU executor throws (e.g. no shader-f16 for a float16
 * candidate).
 */
export async function blockNumerics(o: BlockNumericsOptions): Promise<BlockNumericsReport> {
  const { device, config, imageTokens, condTokens } = o;
  if (o.dtype === 'float16' && !device.features.has('shader-f16')) {
    throw new Error("This device has no 'shader-f16': the float16 path cannot run here. Pass --dtype float32 for a plumbing check (float32 against itself reads 0).");
  }
  const d = hiddenSize(config);
  const rand = mulberry32(o.seed ?? 20250503);
  const planFor = (dtype: Dtype) => buildDiT(config, { dtype, quantized: true }).blocks;
  const referencePlans = planFor('float32');
  const candidatePlans = planFor(o.dtype);

  // Every weight the candidate holds in fp16 is rounded once for both (when asked), so the reference reads it too.
  const halfKeys = new Set<string>();
  if (o.roundReferenceWeights) {
    for (const plan of Object.values(candidatePlans)) {
      for (const w of plan.weights.weights) if (w.dtype === 'float16') halfKeys.add(SharedWeights.key(w));
    }
  }
  const weights = new SharedWeights(rand, halfKeys);

  // ── the same input streams for both: [1, N_img, D], [1, M + L, D], [1, D] ~ N(0, 1); real RoPE tables ──
  const host = { x: normals(rand, imageTokens * d), ctx: normals(rand, condTokens * d), temb: normals(rand, d) };
  // A 640×640 bucket's post-patch grid is 40×40 per latent frame; tokens fill frames t-major, as packed ones do.
  const grid = Math.min(40, Math.ceil(Math.sqrt(imageTokens)));
  const frames = Math.ceil(imageTokens / (grid * grid));
  const rope = ropeFreqs1x(Array.from({ length: frames }, (_, t) => t), grid, grid, { axesDim: config.ropeAxesDim, theta: config.ropeTheta });
  const channels = 2 * config.headDim;
  const column = (from: number) => {
    const out = new Float32Array(imageTokens * config.headDim);
    for (let r = 0; r < imageTokens; r++) out.set(rope.subarray(r * channels + from, r * channels + from + config.headDim), r * config.headDim);
    return out;
  };
  const buffers: GPUBuffer[] = [];
  const upload = (data: Float32Array, dims: number[]): OrtTensor => {
    const buffer = device.createBuffer({ size: data.byteLength, usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST | GPUBufferUsage.COPY_SRC, label: 'numerics input' });
    device.queue.writeBuffer(buffer, 0, data);
    buffers.push(buffer);
    return gpuTensor(buffer, 'float32', dims);
  };
  const streams: DiTStreams = {
    x: upload(host.x, [1, imageTokens, d]),
    ctx: upload(host.ctx, [1, condTokens, d]),
    temb: upload(host.temb, [1, d]),
    cos: upload(column(0), [imageTokens, config.headDim]),
    sin: upload(column(config.headDim), [imageTokens, config.headDim]),
  };

  /** Both blocks on one path, outputs read back; the path's weights and buffers are freed before returning. */
  const runPath = async (dtype: Dtype, plans: Plans, path: BlockNumericsOptions['kernelPath'] = 'auto') => {
    const residency = new WeightResidency(device);
    const blocks = new Map<BlockPlan, HostBlock>();
    const stageWeights = stageWeightSource(async (plan) => {
      let b = blocks.get(plan);
      if (!b) blocks.set(plan, (b = weights.block(plan.weights, `${dtype}/${plan.weights.name}`)));
      return b;
    });
    const runner = await createWebgpuBlockExecutor(device, config, plans, { dtype, path, weights: async (plan, block) => residency.feeds(await stageWeights(plan, block)) });
    const outputs = {} as Record<BlockKind, { image: Float32Array; context: Float32Array }>;
    const ms = {} as Record<BlockKind, number>;
    try {
      for (const kind of ['dual', 'single'] as const) {
        const t0 = performance.now();
        const out = await runner.run(kind, 0, streams);
        await device.queue.onSubmittedWorkDone();
        ms[kind] = performance.now() - t0; // includes the first run's shader compiles
        outputs[kind] = { image: (await tensorData(out.x)) as Float32Array, context: (await tensorData(out.ctx)) as Float32Array };
        out.x.dispose();
        out.ctx.dispose();
      }
      const report: PathReport = {
        dtype,
        stages: { dual: stageCounts(plans.dual), single: stageCounts(plans.single) },
        kernels: { ...runner.kernels },
        dispatches: { ...runner.dispatches },
        ms: { dual: ms.dual, single: ms.single },
      };
      return { outputs, report };
    } finally {
      await runner.release();
      residency.release();
    }
  };

  try {
    const reference = await runPath('float32', referencePlans);
    const candidate = await runPath(o.dtype, candidatePlans, o.kernelPath);
    const errors = (kind: BlockKind) => ({
      image: compare(candidate.outputs[kind].image, reference.outputs[kind].image, host.x),
      context: compare(candidate.outputs[kind].context, reference.outputs[kind].context, host.ctx),
    });
    return {
      mode: 'numerics',
      hidden: d,
      heads: config.heads,
      headDim: config.headDim,
      imageTokens,
      condTokens,
      reference: reference.report,
      candidate: candidate.report,
      referenceWeights:
        halfKeys.size > 0
          ? `fp16-rounded: the float32 reference read the fp16 value of all ${halfKeys.size} weights the candidate stores in fp16 (4-bit scales, biases, norms), so only activation precision differs`
          : o.roundReferenceWeights
            ? 'identical: the candidate stores no weight in fp16'
            : 'unrounded: the float32 reference read its own fp32 scales/biases, so the error includes fp16 weight rounding',
      inputs: 'x, ctx, temb ~ N(0, 1); RoPE cos/sin of a 40×40-per-frame grid; weights W std ≈ 1/√in (4-bit, per-block scales)',
      dual: errors('dual'),
      single: errors('single'),
    };
  } finally {
    for (const b of buffers) b.destroy();
  }
}

/** The report as lines a person reads. */
export function formatBlockNumerics(r: BlockNumericsReport): string[] {
  const e = (x: NumericsError) => `rel ${x.rel.toExponential(2)}  abs ${x.abs.toExponential(2)}  scale ${x.scale.toPrecision(3)}  rms ${x.rms.toExponential(2)}`;
  const path = (p: PathReport) => `${p.dtype}, kernels ${Object.entries(p.kernels).map(([k, v]) => `${k} ${v}`).join(', ')}`;
  const stages = (p: PathReport) => (['dual', 'single'] as const).map((k) => `${k} ${Object.entries(p.stages[k]).map(([op, n]) => `${n} ${op}`).join(', ')}`).join('; ');
  const lines = [
    `candidate: ${path(r.candidate)}`,
    `reference: ${path(r.reference)}`,
    `stages: candidate ${stages(r.candidate)}; reference ${stages(r.reference)}`,
    `width ${r.hidden} (${r.heads}×${r.headDim}), ${r.imageTokens} image + ${r.condTokens} context tokens; reference weights ${r.referenceWeights}`,
  ];
  if (r.candidate.dtype === r.reference.dtype) lines.push('(the same path twice: a plumbing check, every error should read 0)');
  for (const kind of ['dual', 'single'] as const) {
    for (const stream of ['image', 'context'] as const) {
      for (const what of ['out', 'residual'] as const) lines.push(`${`${kind} ${stream} ${what}`.padEnd(24)} ${e(r[kind][stream][what])}`);
    }
  }
  return lines;
}

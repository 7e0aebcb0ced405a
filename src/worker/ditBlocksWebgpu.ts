// The WebGPU executor of the DiT's block plans: every stage of a block in our WGSL kernels (src/kernels/), recorded
// into one command encoder by the network-agnostic plan runner (src/runtime/planRunner.ts), which also owns the
// buffers between stages. Linears run in the 4-bit GEMM (q4Matmul.ts) or the float one (matmul.ts) as the plan's
// weight format says, the AdaLN parameters in the matching one-row product (q4Gemv.ts / matmul.ts), the norms, RoPE
// and residuals in the fused kernels (qkvHeads.ts, adaNorm.ts), the joint attention in flashAttention.ts. Weights
// come from the residency manager as GPU buffers; the streams stay on the GPU between blocks.

import {
  stageReads, stageWrites, stagesFor, linearWeightNames, TEACACHE_PROBE,
  type BlockKind, type BlockPlan, type BlockStage, type PlanLinear, type PlanValue, type StreamRows,
} from '../models/ditBlocks.ts';
import { DIT_NORM_EPS, DIT_IO, hiddenSize, type DiTConfig } from '../models/ditConfig.ts';
import { gpuTensor, type OrtTensor } from '../runtime/ort.ts';
import { readGpuBuffer } from '../runtime/device.ts';
import { f16ToF32 } from '../weights/dtypes.ts';
import { GpuBufferPool, runGpuPlan, type StageContext } from '../runtime/planRunner.ts';
import { attentionFlops, createFlashAttention, type FlashAttention } from '../kernels/flashAttention.ts';
import { h200Flops, h200Ms, rowsPerDispatch, SUBMIT_BUDGET_MS, type KernelPath } from '../kernels/dispatchBudget.ts';
import { createQ4Matmul, type Q4Matmul } from '../kernels/q4Matmul.ts';
import { createQ4Gemv, type Q4Gemv } from '../kernels/q4Gemv.ts';
import { createMatmul, createSiluGemv, type Matmul, type SiluGemv } from '../kernels/matmul.ts';
import { createQkvHeads, type QkvHeads } from '../kernels/qkvHeads.ts';
import { createAdaNorm, type AdaNorm } from '../kernels/adaNorm.ts';
import type { DispatchCounts } from '../models/ditBlocks.ts';
import { relativeL1FromSums, type BlockExecutor, type BlockRunOptions, type DiTStreams, type TeaCacheState } from './ditBlocks.ts';
import { createTeaCacheKernels } from '../kernels/teacache.ts';
import { DiTKernelInputError, TeaCacheResidualMissing } from '../errors/engine.ts';

export interface WebgpuBlockExecutorOptions {
  dtype: 'float32' | 'float16';
  /**
   * The kernels' path: 'auto' (default) takes the tensor cores (subgroup matrices) where the device has them and the
   * portable kernels elsewhere; 'portable' forces the portable ones (what stock Chrome gets), 'subgroup-matrix'
   * refuses to run without the tensor-core path.
   */
  path?: 'auto' | 'portable' | 'subgroup-matrix';
  /** Block `block`'s weights as the stages read them (ditBlocks.ts stageWeights), as GPU tensors on `device`. */
  weights(plan: BlockPlan, block: number): Promise<Record<string, OrtTensor>>;
}

function gpuBufferOf(t: OrtTensor, what: string): GPUBuffer {
  if (t.location !== 'gpu-buffer') {
    throw new DiTKernelInputError(`${what} is a ${t.location} tensor but a kernel needs it on the GPU: on WebGPU give the DiT a WeightResidency on ORT's device (the default).`);
  }
  return t.gpuBuffer;
}

const linearKey = (l: PlanLinear) => `${l.format}/${l.k}x${l.n}/${l.epilogue}/${l.bias ? 'bias' : 'no-bias'}`;

/**
 * Creates the kernels the plans need on `device`. Throws the kernels' config errors (Q4MatmulConfigError,
 * AttentionConfigError, …) when the device cannot run one.
 */
export async function createWebgpuBlockExecutor(device: GPUDevice, config: DiTConfig, plans: Record<BlockKind, BlockPlan>, options: WebgpuBlockExecutorOptions): Promise<BlockExecutor> {
  const dtype = options.dtype === 'float16' ? 'f16' : 'f32';
  const elementBytes = dtype === 'f16' ? 2 : 4;
  const stages = [...plans.dual.stages, ...plans.single.stages];
  const width = hiddenSize(config);
  const path = options.path && options.path !== 'auto' ? options.path : undefined;

  const products = new Map<string, Q4Matmul | Matmul>();
  const rows = new Map<string, Q4Gemv | SiluGemv>();
  for (const stage of stages) {
    if (stage.op === 'linear' && !products.has(linearKey(stage.linear))) {
      const l = stage.linear;
      const shape = { k: l.k, n: l.n, dtype, epilogue: l.epilogue, bias: l.bias, path } as const;
      products.set(linearKey(l), l.format === 'q4' ? await createQ4Matmul(device, shape) : await createMatmul(device, shape));
    }
    if (stage.op === 'adaParams' && !rows.has(linearKey(stage.linear))) {
      const l = stage.linear;
      rows.set(linearKey(l), l.format === 'q4' ? await createQ4Gemv(device, { k: l.k, n: l.n, dtype }) : await createSiluGemv(device, { k: l.k, n: l.n, dtype }));
    }
  }
  const attention: FlashAttention = await createFlashAttention(device, { heads: config.heads, headDim: config.headDim, dtype, path });
  const heads: QkvHeads = await createQkvHeads(device, { heads: config.heads, headDim: config.headDim, dtype, eps: DIT_NORM_EPS });
  const adaNorm: AdaNorm = await createAdaNorm(device, { dim: width, dtype, eps: DIT_NORM_EPS });
  const teacache = await createTeaCacheKernels(device, dtype);
  const pool = new GpuBufferPool(device, 'dit');
  const dispatches: DispatchCounts = { linear: 0, adaParams: 0, attention: 0, fused: 0 };
  /** The kernels serving a kind of product: format and path, e.g. 'q4/subgroup-matrix' (several, comma-separated). */
  const kernelNames = (kernels: ReadonlyMap<string, object>) =>
    [...new Set([...kernels.entries()].map(([key, k]) => `${key.split('/')[0]}/${'path' in k ? String(k.path) : 'portable'}`))].join(', ');

  const attentionPath: KernelPath = attention.path === 'subgroup-matrix' ? 'attention/subgroup-matrix' : `attention/portable/${dtype}`;
  const productPath = (l: PlanLinear): KernelPath => {
    if (l.format === 'float') return 'matmul/portable';
    return (products.get(linearKey(l)) as Q4Matmul).path === 'subgroup-matrix' ? 'q4Matmul/subgroup-matrix' : `q4Matmul/portable/${dtype}`;
  };

  /** Records one stage: the block's streams have `imageRows` and `contextRows` tokens. */
  const recordStage = (plan: BlockPlan, weights: Record<string, OrtTensor>, imageRows: number, contextRows: number) => {
    const rowsOf = (r: PlanValue['rows']) => (r === 'image' ? imageRows : r === 'context' ? contextRows : r === 'joint' ? imageRows + contextRows : r);
    const bytesOf = (name: string) => {
      const v = plan.values[name];
      return rowsOf(v.rows) * v.width * (v.dtype === 'float32' ? 4 : elementBytes);
    };
    /** Where a stream's rows start in a value: 0 in one of its own, N_img for the context rows of a joint one. */
    const firstRow = (name: string, stream: StreamRows) => (plan.values[name].rows === 'joint' && stream === 'context' ? imageRows : 0);
    const weight = (name: string) => gpuBufferOf(weights[name], name);
    return (stage: BlockStage, c: StageContext) => {
      switch (stage.op) {
        case 'adaParams': {
          // out [chunks, D] f32 = W·SiLU(temb) + b
          const l = stage.linear;
          const names = linearWeightNames(l);
          const [x, out, bias] = [c.read(stage.x), c.write(stage.out, bytesOf(stage.out)), weight(names.bias!)];
          const product = rows.get(linearKey(l))!;
          if (l.format === 'q4') (product as Q4Gemv).encode(c.encoder, { x, blocks: weight(names.weight), scales: weight(names.scales!), bias, out });
          else (product as SiluGemv).encode(c.encoder, { x, w: weight(names.weight), bias, out });
          dispatches.adaParams++;
          return;
        }
        case 'adaNorm': {
          // residual.out [rows, D] f32 = x + mod[gate]·(y + y2); modulation.out [rows, D] = LN(·)·(1 + mod[scale]) + mod[shift]
          const r = stage.residual;
          const m = stage.modulation;
          adaNorm.encode(c.encoder, {
            x: c.read(stage.x),
            mod: c.read(stage.mod),
            rows: stage.rows === 'image' ? imageRows : contextRows,
            residual: r && { y: c.read(r.y), y2: r.y2 ? c.read(r.y2) : undefined, yRow0: firstRow(r.y, stage.rows), gate: r.gate, out: c.write(r.out, bytesOf(r.out)) },
            modulation: m && { shift: m.shift, scale: m.scale, out: c.write(m.out, bytesOf(m.out)), outRow0: firstRow(m.out, stage.rows) },
          });
          dispatches.fused++;
          return;
        }
        case 'linear': {
          // out [rows, n] = x [rows, k]·Wᵀ (+ b) (+ GELU)
          const l = stage.linear;
          const m = stage.rows ? (stage.rows === 'image' ? imageRows : contextRows) : rowsOf(plan.values[stage.x].rows);
          let x = c.read(stage.x);
          if (stage.rows && firstRow(stage.x, stage.rows) > 0) {
            // The kernels read x from its buffer's start: a joint value's context rows (after the image's) get a copy.
            const rowBytes = l.k * elementBytes;
            const copy = c.scratch(m * rowBytes, `${stage.x} context rows`);
            c.encoder.copyBufferToBuffer(x, imageRows * rowBytes, copy, 0, m * rowBytes);
            x = copy;
          }
          const names = linearWeightNames(l);
          const out = c.write(stage.out, bytesOf(stage.out));
          const bias = names.bias ? weight(names.bias) : undefined;
          const product = products.get(linearKey(l))!;
          c.reserve(h200Ms(productPath(l), 2 * m * l.k * l.n));
          if (l.format === 'q4') (product as Q4Matmul).encode(c.encoder, { x, blocks: weight(names.weight), scales: weight(names.scales!), bias, out, m });
          else (product as Matmul).encode(c.encoder, { x, w: weight(names.weight), bias, out, m });
          dispatches.linear++;
          return;
        }
        case 'heads': {
          // rows of q, k, v [N_img + N_ctx, H·d] from qkv [rows, 3·H·d]: per-head RMSNorm, RoPE on image rows
          const count = stage.rows === 'image' ? imageRows : contextRows;
          const [q, k, v] = [stage.q, stage.k, stage.v].map((name) => c.write(name, bytesOf(name)));
          heads.encode(c.encoder, {
            qkv: c.read(stage.qkv), normQ: weight(stage.normQ), normK: weight(stage.normK), cos: c.read(stage.cos), sin: c.read(stage.sin), q, k, v,
            rows: count, inRow0: firstRow(stage.qkv, stage.rows), outRow0: firstRow(stage.q, stage.rows), rope: stage.rows === 'image',
          });
          dispatches.fused++;
          return;
        }
        case 'attention': {
          // out [N, H·d] = softmax(q·kᵀ/√d)·v over the joint rows, in query chunks of at most half a submit's budget
          const n = imageRows + contextRows;
          const io = { q: c.read(stage.q), k: c.read(stage.k), v: c.read(stage.v), out: c.write(stage.out, bytesOf(stage.out)), nk: n };
          const perRow = attentionFlops(1, n, config.heads, config.headDim);
          const rowBytes = width * elementBytes;
          const chunk = rowsPerDispatch(h200Flops(attentionPath, SUBMIT_BUDGET_MS / 2), perRow, 128, [rowBytes], device.limits.minStorageBufferOffsetAlignment);
          const step = (chunk * rowBytes) % device.limits.minStorageBufferOffsetAlignment === 0 ? chunk : n;
          for (let row0 = 0; row0 < n; row0 += step) {
            const rows = Math.min(step, n - row0);
            c.reserve(h200Ms(attentionPath, rows * perRow));
            attention.encode(c.encoder, { ...io, row0, nq: rows });
          }
          dispatches.attention++;
          return;
        }
      }
    };
  };

  /** The streams on the GPU: a CPU tensor (a caller's) is uploaded for this run, and its buffer freed after it. */
  const inputsOf = (plan: BlockPlan, s: DiTStreams) => {
    const uploads: GPUBuffer[] = [];
    const onGpu = (t: OrtTensor, name: string): GPUBuffer => {
      if (t.location !== 'cpu') return gpuBufferOf(t, name);
      const data = t.data as Float32Array;
      const buffer = device.createBuffer({ size: Math.max(16, Math.ceil(data.byteLength / 4) * 4), usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST, label: `dit ${name} upload` });
      device.queue.writeBuffer(buffer, 0, data.buffer, data.byteOffset, data.byteLength);
      uploads.push(buffer);
      return buffer;
    };
    const byName: Record<string, OrtTensor> = { [DIT_IO.imageTokens]: s.x, [DIT_IO.contextTokens]: s.ctx, [DIT_IO.temb]: s.temb, [DIT_IO.ropeCos]: s.cos, [DIT_IO.ropeSin]: s.sin };
    const inputs = new Map(plan.inputs.map((name) => [name, onGpu(byName[name], name)]));
    return { inputs, uploads };
  };

  const runStages = async (plan: BlockPlan, block: number, s: DiTStreams, stagesToRun: readonly BlockStage[], keep: string[], runOptions: BlockRunOptions = {}) => {
    const [imageRows, contextRows] = [s.x.dims[1], s.ctx.dims[1]];
    pool.resize(`${imageRows}/${contextRows}`);
    const weights = await options.weights(plan, block);
    const { inputs, uploads } = inputsOf(plan, s);
    try {
      return await runGpuPlan(device, pool, { stages: stagesToRun, reads: stageReads, writes: stageWrites }, inputs, keep, recordStage(plan, weights, imageRows, contextRows), { submitBudgetMs: SUBMIT_BUDGET_MS, ...runOptions });
    } finally {
      for (const b of uploads) b.destroy(); // after the commands reading them were submitted: WebGPU keeps them alive until done
    }
  };

  return {
    executor: 'webgpu',
    kernels: { linear: kernelNames(products), adaParams: kernelNames(rows), attention: attention.path },
    dispatches,
    async run(kind, block, s, runOptions) {
      const plan = plans[kind];
      const out = await runStages(plan, block, s, plan.stages, [plan.outputs.x, plan.outputs.ctx], runOptions);
      const stream = (name: string, rows: number) => gpuTensor(out[name], 'float32', [1, rows, width], { dispose: () => pool.give(out[name]) });
      return { x: stream(plan.outputs.x, s.x.dims[1]), ctx: stream(plan.outputs.ctx, s.ctx.dims[1]) };
    },
    async probe(kind, block, s, value) {
      const plan = plans[kind];
      const out = await runStages(plan, block, s, stagesFor(plan, value), [value]);
      const info = plan.values[value];
      const count = (info.rows === 'image' ? s.x.dims[1] : info.rows === 'context' ? s.ctx.dims[1] : info.rows === 'joint' ? s.x.dims[1] + s.ctx.dims[1] : info.rows) * info.width;
      try {
        const raw = await readGpuBuffer(device, out[value], count * (info.dtype === 'float32' ? 4 : elementBytes));
        return info.dtype === 'float32' || dtype === 'f32' ? new Float32Array(raw) : f16ToF32(new Uint16Array(raw));
      } finally {
        pool.give(out[value]);
      }
    },
    teacacheState(): TeaCacheState {
      // Kept between calls, outside the pool's lifetimes: the previous probe, the residual, the sums' scratch.
      let previous: { buffer: GPUBuffer; n: number } | null = null;
      let residual: { buffer: GPUBuffer; n: number } | null = null;
      const scratch = device.createBuffer({ label: 'teacache scratch', size: teacache.scratchBytes, usage: GPUBufferUsage.STORAGE });
      const sums = device.createBuffer({ label: 'teacache sums', size: 16, usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC });
      const owned = (bytes: number, label: string) => device.createBuffer({ label, size: Math.max(16, bytes), usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST });
      return {
        async probe(s, compare) {
          const plan = plans.dual;
          const out = await runStages(plan, 0, s, stagesFor(plan, TEACACHE_PROBE), [TEACACHE_PROBE]);
          const current = { buffer: out[TEACACHE_PROBE], n: s.x.dims[1] * width };
          let rel: number | undefined;
          if (compare) {
            if (!previous || previous.n !== current.n) throw new Error('TeaCache compared a call with no previous probe of the same size; keep one slot per section and branch.');
            const encoder = device.createCommandEncoder({ label: 'teacache l1' });
            teacache.encodeL1Sums(encoder, current.buffer, previous.buffer, current.n, scratch, sums);
            device.queue.submit([encoder.finish()]);
            const [diff, base] = new Float32Array(await readGpuBuffer(device, sums, 8)); // the only values read back
            rel = relativeL1FromSums(diff, base, current.n);
          }
          if (previous) pool.give(previous.buffer);
          previous = current;
          return rel;
        },
        saveResidual(xIn, xOut) {
          const n = xIn.dims[1] * width;
          if (!residual || residual.n !== n) {
            residual?.buffer.destroy();
            residual = { buffer: owned(n * 4, 'teacache residual'), n };
          }
          const encoder = device.createCommandEncoder({ label: 'teacache residual' });
          teacache.encodeCombine(encoder, gpuBufferOf(xOut, 'x_out'), gpuBufferOf(xIn, 'x_in'), -1, n, residual.buffer);
          device.queue.submit([encoder.finish()]);
        },
        applyResidual(xIn) {
          const n = xIn.dims[1] * width;
          if (!residual || residual.n !== n) throw new TeaCacheResidualMissing(residual?.n ?? null, n);
          const out = pool.take(n * 4, 'teacache skipped x');
          const encoder = device.createCommandEncoder({ label: 'teacache skip' });
          teacache.encodeCombine(encoder, gpuBufferOf(xIn, 'x_in'), residual.buffer, 1, n, out);
          device.queue.submit([encoder.finish()]);
          return gpuTensor(out, 'float32', [...xIn.dims], { dispose: () => pool.give(out) });
        },
        release() {
          if (previous) pool.give(previous.buffer);
          residual?.buffer.destroy();
          scratch.destroy();
          sums.destroy();
          previous = residual = null;
        },
      };
    },
    async release() {
      pool.release();
    },
  };
}

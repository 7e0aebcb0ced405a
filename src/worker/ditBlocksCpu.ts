// The CPU reference executor of the DiT's block plans: each stage is one call of its kernel's CPU twin
// (src/kernels/cpuReference.ts), in plan order, on Float32Arrays — what `--provider wasm` runs for the DiT and what
// the reference fixtures prove. It reads the same stage weights as the WebGPU executor (4-bit blocks dequantized on
// first use, fp16 widened), and on the f16 path rounds every activation-dtype value to fp16 when it is stored, as
// the GPU's buffers do, so the two paths can be compared value for value.

import { stageReads, stagesFor, linearWeightNames, TEACACHE_PROBE, type BlockKind, type BlockPlan, type BlockStage, type DispatchCounts, type PlanLinear, type ValueRows } from '../models/ditBlocks.ts';
import { DIT_IO, DIT_NORM_EPS, type DiTConfig } from '../models/ditConfig.ts';
import { adaNorm, allRows, attention, linear, qkvHeads, siluGemv } from '../kernels/cpuReference.ts';
import { cpuTensor, tensorData, type OrtTensor } from '../runtime/ort.ts';
import type { HostTensor } from '../runtime/residency.ts';
import { f16ToF32, f32ToF16 } from '../weights/dtypes.ts';
import { dequantizeQ4 } from '../weights/quantize.ts';
import type { BlockExecutor, BlockWeightSource, DiTStreams, TeaCacheState } from './ditBlocks.ts';
import { relativeL1 } from '../pipeline/teacache.ts';
import { TeaCacheResidualMissing } from '../errors/engine.ts';

export interface CpuBlockExecutorOptions {
  dtype: 'float32' | 'float16';
  /** Block `block`'s weights as the stages read them (ditBlocks.ts stageWeightSource). */
  weights: BlockWeightSource;
}

/** A host tensor's values as f32 (fp16 bits widened). */
function floats(t: HostTensor): Float32Array {
  if (t.dtype === 'float16') return f16ToF32(t.data as Uint16Array);
  return t.data as Float32Array;
}

export function createCpuBlockExecutor(config: DiTConfig, plans: Record<BlockKind, BlockPlan>, options: CpuBlockExecutorOptions): BlockExecutor {
  const { heads, headDim } = config;
  const dispatches: DispatchCounts = { linear: 0, adaParams: 0, attention: 0, fused: 0 };
  const roundF16 = options.dtype === 'float16';
  /** A stored value in its dtype: activation-dtype values are fp16-rounded on the f16 path. */
  const store = (plan: BlockPlan, name: string, values: Float64Array | Float32Array) =>
    roundF16 && plan.values[name].dtype === 'activation' ? f16ToF32(f32ToF16(Float32Array.from(values))) : Float32Array.from(values);
  // Dequantized / widened weights, once per stage-weight tensor (a streamed block's tensors are new objects).
  const widened = new WeakMap<HostTensor, Float32Array>();

  /** W [n, k] as f32 and the bias, for a product. */
  const weightsOf = (l: PlanLinear, tensors: Record<string, HostTensor>) => {
    const names = linearWeightNames(l);
    const t = tensors[names.weight];
    let w = widened.get(t);
    if (!w) {
      w = l.format === 'q4' ? dequantizeQ4({ blocks: t.data as Uint8Array, scales: floats(tensors[names.scales!]), n: l.n, k: l.k }) : floats(t);
      widened.set(t, w);
    }
    return { w, bias: names.bias ? floats(tensors[names.bias]) : null };
  };

  const runStages = async (plan: BlockPlan, block: number, s: DiTStreams, stages: readonly BlockStage[]) => {
    const tensors = (await options.weights(plan, block)).tensors;
    const [imageRows, contextRows] = [s.x.dims[1], s.ctx.dims[1]];
    const rowsOf = (r: ValueRows) => (r === 'image' ? imageRows : r === 'context' ? contextRows : r === 'joint' ? imageRows + contextRows : r);
    const firstRow = (name: string, stream: 'image' | 'context') => (plan.values[name].rows === 'joint' && stream === 'context' ? imageRows : 0);
    const values = new Map<string, Float32Array>();
    const inputs: Record<string, OrtTensor> = { [DIT_IO.imageTokens]: s.x, [DIT_IO.contextTokens]: s.ctx, [DIT_IO.temb]: s.temb, [DIT_IO.ropeCos]: s.cos, [DIT_IO.ropeSin]: s.sin };
    for (const name of plan.inputs) values.set(name, Float32Array.from((await tensorData(inputs[name])) as Float32Array));
    const read = (name: string) => {
      const v = values.get(name);
      if (!v) throw new Error(`DiT ${plan.kind} block plan: '${name}' is read before any stage wrote it.`);
      return v;
    };
    /** The value's storage: new, or the one an earlier stage of a joint value made. */
    const target = (name: string) => {
      let v = values.get(name);
      if (!v) values.set(name, (v = new Float32Array(rowsOf(plan.values[name].rows) * plan.values[name].width)));
      return v;
    };
    const write = (name: string, data: Float64Array, row0 = 0) => target(name).set(store(plan, name, data), row0 * plan.values[name].width);

    for (const stage of stages) {
      switch (stage.op) {
        case 'adaParams': {
          // out [chunks, D] f32 = W·SiLU(temb) + b
          const { w, bias } = weightsOf(stage.linear, tensors);
          write(stage.out, siluGemv(read(stage.x), stage.linear.k, w, stage.linear.n, bias!));
          dispatches.adaParams++;
          break;
        }
        case 'adaNorm': {
          // residual.out [rows, D] f32 = x + mod[gate]·(y + y2); modulation.out [rows, D] = LN(·)·(1 + mod[scale]) + mod[shift]
          const r = stage.residual;
          const m = stage.modulation;
          const out = adaNorm({
            x: read(stage.x), mod: read(stage.mod), rows: rowsOf(stage.rows), dim: plan.values[stage.x].width, eps: DIT_NORM_EPS,
            residual: r && { y: read(r.y), y2: r.y2 ? read(r.y2) : undefined, yRow0: firstRow(r.y, stage.rows), gate: r.gate },
            modulation: m && { shift: m.shift, scale: m.scale },
          });
          if (r) write(r.out, out.stream);
          if (m) write(m.out, out.normed!, firstRow(m.out, stage.rows));
          dispatches.fused++;
          break;
        }
        case 'linear': {
          // out [rows, n] = x [rows, k]·Wᵀ (+ b) (+ GELU); a stream's rows of a joint x when `rows` says so
          const l = stage.linear;
          const { w, bias } = weightsOf(l, tensors);
          const count = stage.rows ? rowsOf(stage.rows) : rowsOf(plan.values[stage.x].rows);
          const row0 = stage.rows ? firstRow(stage.x, stage.rows) : 0;
          const x = read(stage.x).subarray(row0 * l.k, (row0 + count) * l.k);
          write(stage.out, linear(x, count, l.k, w, l.n, bias, l.epilogue));
          dispatches.linear++;
          break;
        }
        case 'heads': {
          // rows of q, k, v [N_img + N_ctx, H·d] from qkv [·, 3·H·d]: per-head RMSNorm, RoPE on image rows
          const rope = stage.rows === 'image' ? { cos: read(stage.cos), sin: read(stage.sin) } : null;
          const out = qkvHeads({
            qkv: read(stage.qkv), inRow0: firstRow(stage.qkv, stage.rows), rows: rowsOf(stage.rows), heads, headDim,
            normQ: floats(tensors[stage.normQ]), normK: floats(tensors[stage.normK]), rope, eps: DIT_NORM_EPS,
          });
          const row0 = firstRow(stage.q, stage.rows);
          write(stage.q, out.q, row0);
          write(stage.k, out.k, row0);
          write(stage.v, out.v, row0);
          dispatches.fused++;
          break;
        }
        case 'attention': {
          // out [N, H·d] = softmax(q·kᵀ/√d)·v over the joint rows
          const n = imageRows + contextRows;
          write(stage.out, attention(read(stage.q), read(stage.k), read(stage.v), n, heads, headDim, allRows(n)));
          dispatches.attention++;
          break;
        }
      }
      // Values nothing later reads are dropped, as the GPU executor returns their buffers.
      const later = new Set(stages.slice(stages.indexOf(stage) + 1).flatMap(stageReads));
      for (const name of stageReads(stage)) if (!later.has(name) && !plan.inputs.includes(name)) values.delete(name);
    }
    return values;
  };

  return {
    executor: 'cpu',
    kernels: { linear: 'cpu', adaParams: 'cpu', attention: 'cpu' },
    dispatches,
    async run(kind, block, s) {
      const plan = plans[kind];
      const values = await runStages(plan, block, s, plan.stages);
      const d = plan.values[plan.outputs.x].width;
      return {
        x: cpuTensor('float32', values.get(plan.outputs.x)!, [1, s.x.dims[1], d]),
        ctx: cpuTensor('float32', values.get(plan.outputs.ctx)!, [1, s.ctx.dims[1], d]),
      };
    },
    async probe(kind, block, s, value) {
      const plan = plans[kind];
      const values = await runStages(plan, block, s, stagesFor(plan, value));
      const v = values.get(value);
      if (!v) throw new Error(`The ${kind} block plan did not write '${value}'.`);
      return v;
    },
    teacacheState(): TeaCacheState {
      let previous: Float32Array | null = null;
      let residual: Float32Array | null = null;
      return {
        async probe(s, compare) {
          const current = (await runStages(plans.dual, 0, s, stagesFor(plans.dual, TEACACHE_PROBE))).get(TEACACHE_PROBE)!;
          const rel = compare ? relativeL1(current, previous!) : undefined;
          previous = current;
          return rel;
        },
        saveResidual(xIn, xOut) {
          const [a, b] = [xOut.data as Float32Array, xIn.data as Float32Array];
          residual = a.map((v, i) => v - b[i]);
        },
        applyResidual(xIn) {
          const x = xIn.data as Float32Array;
          if (!residual || residual.length !== x.length) throw new TeaCacheResidualMissing(residual?.length ?? null, x.length);
          const r = residual;
          return cpuTensor('float32', x.map((v, i) => v + r[i]), [...xIn.dims]);
        },
        release() {
          previous = residual = null;
        },
      };
    },
    async release() {},
  };
}

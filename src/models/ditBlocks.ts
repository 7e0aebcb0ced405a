// The one description of FramePack's two transformer blocks — the dual-stream block (framepack-reference.md §5.7)
// and the single-stream block (§5.8) — as block plans: ordered stages, each one kernel's work, passing values by
// name. Two executors run a plan: the WebGPU one (src/worker/ditBlocksWebgpu.ts, our WGSL kernels) for the product
// and the benches, and the CPU reference (src/worker/ditBlocksCpu.ts) for the parity checks and `--provider wasm`.
// A plan only describes: which values exist (their rows, width and dtype), what each stage reads and writes, and
// which checkpoint weights it takes in which stored format — 4-bit (MatMulNBits layout) or float in the activation
// dtype (fp16 on the f16 path, fp32 otherwise). The residual streams, temb, the AdaLN parameters and the RoPE tables
// are float32 whatever the activation dtype, as §5.10 advises.

import { WeightList, type WeightSet } from './graph.ts';
import type { OnnxDType } from './onnxProto.ts';
import { inputName } from './ops.ts';
import { DIT_IO, hiddenSize, mlpWidth, type DiTConfig } from './ditConfig.ts';

export const DUAL_BLOCK = 'transformer_blocks.{i}';
export const SINGLE_BLOCK = 'single_transformer_blocks.{i}';

export type BlockKind = 'dual' | 'single';

/** Which token rows of the block's two streams: the image tokens (N_img) or the context tokens (N_ctx). */
export type StreamRows = 'image' | 'context';

/** A value's rows: one stream's, both streams' (joint, image rows first), or a fixed count (temb, AdaLN chunks). */
export type ValueRows = StreamRows | 'joint' | number;

export interface PlanValue {
  rows: ValueRows;
  width: number;
  /** 'activation': fp16 on the f16 path, fp32 otherwise. */
  dtype: 'float32' | 'activation';
}

/** How a linear's weights are stored: 4-bit MatMulNBits blocks of 32 with scales, or float in the activation dtype. */
export type WeightFormat = 'q4' | 'float';

/** One checkpoint Linear a product reads: the weight set's entries that hold it. */
export interface PlanLinearPart {
  /** The checkpoint Linear's prefix (`{i}` for the block). */
  prefix: string;
  /** Its 4-bit blocks ('q4') or its float weight [n, storedK] ('float'). */
  weight: string;
  /** Its 4-bit scales; null for 'float'. */
  scales: string | null;
  bias: string;
  /** Its output features. */
  n: number;
}

/**
 * y [rows, n] = x [rows, k]·W[:, kOffset : kOffset + k]ᵀ (+ b) (+ GELU), W being the parts' weights with their rows
 * stacked in order (q, k, v as one [3D, D] weight), b their biases likewise.
 */
export interface PlanLinear {
  format: WeightFormat;
  parts: PlanLinearPart[];
  /** The stored weights' input width. */
  storedK: number;
  /** The columns this product reads: [kOffset, kOffset + k) (one part only when k < storedK). */
  kOffset: number;
  k: number;
  /** The sum of the parts' n. */
  n: number;
  /** False for the first of proj_out's two halves, whose bias the second adds. */
  bias: boolean;
  epilogue: 'none' | 'gelu_tanh';
}

export type BlockStage =
  /** out [chunks, D] (f32) = W·SiLU(x) + b, x = temb [1, D]: a block's AdaLN parameters, in the reference's chunk order. */
  | { op: 'adaParams'; x: string; out: string; chunks: number; linear: PlanLinear }
  /**
   * On the `rows` of stream x [·, D] (f32), with AdaLN parameters mod [chunks, D] (f32):
   * residual.out = x + mod[gate]·(y + y2) (f32; y, y2 their own rows or their part of a joint value), and/or
   * modulation.out = LN(that)·(1 + mod[scale]) + mod[shift] (activation dtype; into its part of a joint value).
   */
  | {
      op: 'adaNorm';
      x: string;
      mod: string;
      rows: StreamRows;
      residual?: { y: string; y2?: string; gate: number; out: string };
      modulation?: { shift: number; scale: number; out: string };
    }
  /** A product on x's rows, or on one stream's rows of a joint x (`rows`). */
  | { op: 'linear'; x: string; rows?: StreamRows; out: string; linear: PlanLinear }
  /**
   * The `rows` of a stacked projection qkv [·, 3·H·d]: q and k RMS-normed per head with the weights normQ/normK, RoPE
   * (cos, sin [N_img, d]) on image rows, v as it is, into their rows of the joint q, k, v [N_img + N_ctx, H·d].
   */
  | { op: 'heads'; qkv: string; rows: StreamRows; normQ: string; normK: string; cos: string; sin: string; q: string; k: string; v: string }
  /** out = softmax(q·kᵀ/√d)·v per head over all joint rows [N_img + N_ctx, H·d]. */
  | { op: 'attention'; q: string; k: string; v: string; out: string };

export interface BlockPlan {
  kind: BlockKind;
  /** Every value: the block's inputs, its intermediates and its outputs. */
  values: Record<string, PlanValue>;
  /** What the caller provides: the streams, temb and the RoPE halves. */
  inputs: readonly string[];
  /** The updated image and context streams. */
  outputs: { x: string; ctx: string };
  stages: BlockStage[];
  /** The block's checkpoint weights (`{i}` names), as the residency manager and the converters see them. */
  weights: WeightSet;
}

/** The value TeaCache compares between steps (§8): block 0's modulated image tokens, written by the dual plan's first image AdaLN. */
export const TEACACHE_PROBE = 'qkv_in';

/** The values a stage reads. */
export function stageReads(stage: BlockStage): string[] {
  switch (stage.op) {
    case 'adaParams': return [stage.x];
    case 'adaNorm': return [stage.x, stage.mod, ...(stage.residual ? [stage.residual.y, ...(stage.residual.y2 ? [stage.residual.y2] : [])] : [])];
    case 'linear': return [stage.x];
    case 'heads': return [stage.qkv, stage.cos, stage.sin];
    case 'attention': return [stage.q, stage.k, stage.v];
  }
}

/** The values a stage writes (joint values are written in parts, by one stage per stream). */
export function stageWrites(stage: BlockStage): string[] {
  switch (stage.op) {
    case 'adaParams': return [stage.out];
    case 'adaNorm': return [...(stage.residual ? [stage.residual.out] : []), ...(stage.modulation ? [stage.modulation.out] : [])];
    case 'linear': return [stage.out];
    case 'heads': return [stage.q, stage.k, stage.v];
    case 'attention': return [stage.out];
  }
}

/** The weights a stage reads, named as the executors hold them: stacked parts joined with '+', a column range as [a:b]. */
export function linearWeightNames(l: PlanLinear): { weight: string; scales: string | null; bias: string | null } {
  const join = (pick: (p: PlanLinearPart) => string) => l.parts.map(pick).join('+');
  const range = l.kOffset === 0 && l.k === l.storedK ? '' : `[${l.kOffset}:${l.kOffset + l.k}]`;
  return {
    weight: `${join((p) => p.weight)}${range}`,
    scales: l.format === 'q4' ? `${join((p) => p.scales!)}${range}` : null,
    bias: l.bias ? join((p) => p.bias) : null,
  };
}

/**
 * The stages, from the first, that `value` depends on within one block: what an executor runs to compute it alone
 * (TeaCache's probe). Throws when no stage writes it.
 */
export function stagesFor(plan: BlockPlan, value: string): BlockStage[] {
  const needed = new Set([value]);
  const picked: BlockStage[] = [];
  for (let i = plan.stages.length - 1; i >= 0; i--) {
    const stage = plan.stages[i];
    if (!stageWrites(stage).some((w) => needed.has(w))) continue;
    picked.unshift(stage);
    for (const r of stageReads(stage)) needed.add(r);
  }
  if (picked.length === 0) throw new Error(`No stage of the ${plan.kind} block plan writes '${value}'.`);
  return picked;
}

// ───────────────────────────── building the plans ─────────────────────────────

export interface BlockPlanOptions {
  dtype: OnnxDType;
  /** 4-bit weights for every block linear whose columns fall on 32-wide quantization blocks; float otherwise. */
  quantized: boolean;
}

/** Declares the Linears' weights in `w` (format by the options) under the names ops.linear gives a graph's. */
function linearParts(w: WeightList, prefixes: string[], inF: number, outF: number, format: WeightFormat): PlanLinearPart[] {
  return prefixes.map((prefix) => {
    const name = inputName(prefix);
    const shape = [outF, inF];
    return format === 'q4'
      ? { prefix, weight: w.weight(`${name}_q4`, `${prefix}.weight`, shape, 'q4'), scales: w.weightScales(`${name}_scales`, `${prefix}.weight`, shape), bias: w.weight(`${name}_bias`, `${prefix}.bias`, [outF]), n: outF }
      : { prefix, weight: w.weight(`${name}_weight`, `${prefix}.weight`, shape), scales: null, bias: w.weight(`${name}_bias`, `${prefix}.bias`, [outF]), n: outF };
  });
}

/** Builds the stages' linears and norm weights into one weight list. */
class PlanWeights {
  readonly list: WeightList;

  constructor(name: string, private readonly options: BlockPlanOptions) {
    this.list = new WeightList(name, options.dtype);
  }

  private formatFor(storedK: number, cuts: number[] = []): WeightFormat {
    return this.options.quantized && [storedK, ...cuts].every((v) => v % 32 === 0) ? 'q4' : 'float';
  }

  /** A product over whole weights (rows of several stacked), with bias. */
  whole(prefixes: string[], k: number, n: number, epilogue: PlanLinear['epilogue'] = 'none'): PlanLinear {
    const format = this.formatFor(k);
    const parts = linearParts(this.list, prefixes, k, n, format);
    return { format, parts, storedK: k, kOffset: 0, k, n: n * prefixes.length, bias: true, epilogue };
  }

  /** Column ranges of one weight [n, Σ widths], one product each; the last adds the bias. */
  columnParts(prefix: string, widths: number[], n: number): PlanLinear[] {
    const storedK = widths.reduce((a, b) => a + b, 0);
    const offsets = widths.map((_, i) => widths.slice(0, i).reduce((a, b) => a + b, 0));
    const format = this.formatFor(storedK, offsets);
    const parts = linearParts(this.list, [prefix], storedK, n, format);
    return widths.map((k, i) => ({ format, parts, storedK, kOffset: offsets[i], k, n, bias: i === widths.length - 1, epilogue: 'none' }));
  }

  /** A learned per-head RMSNorm weight [headDim]. */
  norm(tensor: string, dim: number): string {
    return this.list.weight(inputName(tensor), tensor, [dim]);
  }
}

/** The values every block takes: the streams, temb and the RoPE halves. */
function blockInputs(c: DiTConfig): Record<string, PlanValue> {
  const d = hiddenSize(c);
  return {
    [DIT_IO.imageTokens]: { rows: 'image', width: d, dtype: 'float32' },
    [DIT_IO.contextTokens]: { rows: 'context', width: d, dtype: 'float32' },
    [DIT_IO.temb]: { rows: 1, width: d, dtype: 'float32' },
    [DIT_IO.ropeCos]: { rows: 'image', width: c.headDim, dtype: 'float32' },
    [DIT_IO.ropeSin]: { rows: 'image', width: c.headDim, dtype: 'float32' },
  };
}

const INPUTS = [DIT_IO.imageTokens, DIT_IO.contextTokens, DIT_IO.temb, DIT_IO.ropeCos, DIT_IO.ropeSin] as const;
const OUTPUTS = { x: 'image_tokens_out', ctx: 'context_tokens_out' } as const;

/**
 * The dual-stream block (§5.7). Per stream: AdaLN parameters → modulation → stacked q/k/v → heads (norms, RoPE on
 * the image rows) → one joint attention → out projection → residual and second modulation → feed-forward → residual.
 */
function dualBlockPlan(c: DiTConfig, options: BlockPlanOptions): BlockPlan {
  const d = hiddenSize(c);
  const m = mlpWidth(c);
  const w = new PlanWeights('dit_dual_block', options);
  const act = (rows: ValueRows, width = d): PlanValue => ({ rows, width, dtype: 'activation' });
  const f32 = (rows: ValueRows, width = d): PlanValue => ({ rows, width, dtype: 'float32' });
  const attn = (names: string[]) => names.map((n) => `${DUAL_BLOCK}.attn.${n}`);
  // Per stream: its values, its linears (to_* on the image tokens, add_*_proj on the context) and its q/k norms.
  const stream = (rows: StreamRows) => {
    const image = rows === 'image';
    const s = image ? '' : '_context';
    const names = {
      x: image ? DIT_IO.imageTokens : DIT_IO.contextTokens,
      mod: image ? 'mod_x' : 'mod_c',
      qkvIn: `qkv${s}_in`,
      qkv: `qkv${s}`,
      attentionOut: `attention${s}_out`,
      mid: image ? 'image_tokens_mid' : 'context_tokens_mid',
      ffIn: `ff${s}_in`,
      ffHidden: `ff${s}_hidden`,
      ffOut: `ff${s}_out`,
      out: image ? OUTPUTS.x : OUTPUTS.ctx,
    };
    const ff = image ? 'ff' : 'ff_context';
    return {
      rows,
      names,
      values: {
        [names.mod]: f32(6),
        [names.qkvIn]: act(rows),
        [names.qkv]: act(rows, 3 * d),
        [names.attentionOut]: act(rows),
        [names.mid]: f32(rows),
        [names.ffIn]: act(rows),
        [names.ffHidden]: act(rows, m),
        [names.ffOut]: act(rows),
        [names.out]: f32(rows),
      },
      ada: w.whole([`${DUAL_BLOCK}.${image ? 'norm1' : 'norm1_context'}.linear`], d, 6 * d),
      qkvLinear: w.whole(attn(image ? ['to_q', 'to_k', 'to_v'] : ['add_q_proj', 'add_k_proj', 'add_v_proj']), d, d),
      outLinear: w.whole(attn([image ? 'to_out.0' : 'to_add_out']), d, d),
      up: w.whole([`${DUAL_BLOCK}.${ff}.net.0.proj`], d, m, 'gelu_tanh'),
      down: w.whole([`${DUAL_BLOCK}.${ff}.net.2`], m, d),
      normQ: w.norm(`${DUAL_BLOCK}.attn.${image ? 'norm_q' : 'norm_added_q'}.weight`, c.headDim),
      normK: w.norm(`${DUAL_BLOCK}.attn.${image ? 'norm_k' : 'norm_added_k'}.weight`, c.headDim),
    };
  };
  const [image, context] = [stream('image'), stream('context')];
  const both = <T>(f: (s: typeof image) => T): T[] => [f(image), f(context)];
  // AdaLayerNormZero's chunks: shift, scale, gate of the attention; shift, scale, gate of the feed-forward.
  const stages: BlockStage[] = [
    ...both((s): BlockStage => ({ op: 'adaParams', x: DIT_IO.temb, out: s.names.mod, chunks: 6, linear: s.ada })),
    ...both((s): BlockStage => ({ op: 'adaNorm', x: s.names.x, mod: s.names.mod, rows: s.rows, modulation: { shift: 0, scale: 1, out: s.names.qkvIn } })),
    ...both((s): BlockStage => ({ op: 'linear', x: s.names.qkvIn, out: s.names.qkv, linear: s.qkvLinear })),
    ...both((s): BlockStage => ({ op: 'heads', qkv: s.names.qkv, rows: s.rows, normQ: s.normQ, normK: s.normK, cos: DIT_IO.ropeCos, sin: DIT_IO.ropeSin, q: 'q', k: 'k', v: 'v' })),
    { op: 'attention', q: 'q', k: 'k', v: 'v', out: 'attention' },
    ...both((s): BlockStage => ({ op: 'linear', x: 'attention', rows: s.rows, out: s.names.attentionOut, linear: s.outLinear })),
    ...both((s): BlockStage => ({
      op: 'adaNorm', x: s.names.x, mod: s.names.mod, rows: s.rows,
      residual: { y: s.names.attentionOut, gate: 2, out: s.names.mid }, modulation: { shift: 3, scale: 4, out: s.names.ffIn },
    })),
    // One stream's feed-forward after the other's, so only one hidden [rows, mlp] value is alive at a time.
    ...both((s): BlockStage[] => [
      { op: 'linear', x: s.names.ffIn, out: s.names.ffHidden, linear: s.up },
      { op: 'linear', x: s.names.ffHidden, out: s.names.ffOut, linear: s.down },
    ]).flat(),
    ...both((s): BlockStage => ({ op: 'adaNorm', x: s.names.mid, mod: s.names.mod, rows: s.rows, residual: { y: s.names.ffOut, gate: 5, out: s.names.out } })),
  ];
  const values: Record<string, PlanValue> = {
    ...blockInputs(c),
    ...image.values,
    ...context.values,
    q: act('joint'), k: act('joint'), v: act('joint'), attention: act('joint'),
  };
  return { kind: 'dual', values, inputs: INPUTS, outputs: OUTPUTS, stages, weights: w.list };
}

/**
 * The single-stream block (§5.8): AdaLN parameters → both streams modulated into one joint value → stacked q/k/v,
 * and proj_mlp + GELU → heads → attention → proj_out as two products, one per half of its [attention ; mlp] input
 * (so the halves need no concatenated copy) → the gated residual per stream, summing the halves.
 */
function singleBlockPlan(c: DiTConfig, options: BlockPlanOptions): BlockPlan {
  const d = hiddenSize(c);
  const m = mlpWidth(c);
  const w = new PlanWeights('dit_single_block', options);
  const act = (width = d): PlanValue => ({ rows: 'joint', width, dtype: 'activation' });
  const qkv = w.whole(['to_q', 'to_k', 'to_v'].map((n) => `${SINGLE_BLOCK}.attn.${n}`), d, d);
  const mlp = w.whole([`${SINGLE_BLOCK}.proj_mlp`], d, m, 'gelu_tanh');
  const [outAttention, outMlp] = w.columnParts(`${SINGLE_BLOCK}.proj_out`, [d, m], d);
  const ada = w.whole([`${SINGLE_BLOCK}.norm.linear`], d, 3 * d);
  const [normQ, normK] = [w.norm(`${SINGLE_BLOCK}.attn.norm_q.weight`, c.headDim), w.norm(`${SINGLE_BLOCK}.attn.norm_k.weight`, c.headDim)];
  const streams = [
    { rows: 'image' as const, x: DIT_IO.imageTokens, out: OUTPUTS.x },
    { rows: 'context' as const, x: DIT_IO.contextTokens, out: OUTPUTS.ctx },
  ];
  // AdaLayerNormZeroSingle's chunks: shift, scale, gate.
  const stages: BlockStage[] = [
    { op: 'adaParams', x: DIT_IO.temb, out: 'mod', chunks: 3, linear: ada },
    ...streams.map((s): BlockStage => ({ op: 'adaNorm', x: s.x, mod: 'mod', rows: s.rows, modulation: { shift: 0, scale: 1, out: 'normed' } })),
    { op: 'linear', x: 'normed', out: 'qkv', linear: qkv },
    { op: 'linear', x: 'normed', out: 'mlp', linear: mlp },
    ...streams.map((s): BlockStage => ({ op: 'heads', qkv: 'qkv', rows: s.rows, normQ, normK, cos: DIT_IO.ropeCos, sin: DIT_IO.ropeSin, q: 'q', k: 'k', v: 'v' })),
    { op: 'attention', q: 'q', k: 'k', v: 'v', out: 'attention' },
    { op: 'linear', x: 'attention', out: 'proj_out_attention', linear: outAttention },
    { op: 'linear', x: 'mlp', out: 'proj_out_mlp', linear: outMlp },
    ...streams.map((s): BlockStage => ({ op: 'adaNorm', x: s.x, mod: 'mod', rows: s.rows, residual: { y: 'proj_out_attention', y2: 'proj_out_mlp', gate: 2, out: s.out } })),
  ];
  const values: Record<string, PlanValue> = {
    ...blockInputs(c),
    mod: { rows: 3, width: d, dtype: 'float32' },
    normed: act(), qkv: act(3 * d), mlp: act(m), q: act(), k: act(), v: act(), attention: act(),
    proj_out_attention: act(), proj_out_mlp: act(),
    [OUTPUTS.x]: { rows: 'image', width: d, dtype: 'float32' },
    [OUTPUTS.ctx]: { rows: 'context', width: d, dtype: 'float32' },
  };
  return { kind: 'single', values, inputs: INPUTS, outputs: OUTPUTS, stages, weights: w.list };
}

/** Both block plans for a config. Every size comes from it. */
export function buildBlockPlans(c: DiTConfig, options: BlockPlanOptions): Record<BlockKind, BlockPlan> {
  return { dual: dualBlockPlan(c, options), single: singleBlockPlan(c, options) };
}

/** Dispatches per kind of kernel: the products, the AdaLN rows, the attention, the fused element-wise kernels. */
export interface DispatchCounts {
  linear: number;
  adaParams: number;
  attention: number;
  fused: number;
}

/** How many dispatches of each kind one run of a plan makes. */
export function planDispatches(plan: BlockPlan): DispatchCounts {
  const count = (ops: BlockStage['op'][]) => plan.stages.filter((s) => ops.includes(s.op)).length;
  return { linear: count(['linear']), adaParams: count(['adaParams']), attention: count(['attention']), fused: count(['heads', 'adaNorm']) };
}

/** How many dispatches the blocks of one forward make: what the executors' counters must add up to. */
export function forwardDispatches(c: DiTConfig, plans: Record<BlockKind, BlockPlan>): DispatchCounts {
  const [d, s] = [planDispatches(plans.dual), planDispatches(plans.single)];
  const total = (key: keyof DispatchCounts) => d[key] * c.layers + s[key] * c.singleLayers;
  return { linear: total('linear'), adaParams: total('adaParams'), attention: total('attention'), fused: total('fused') };
}

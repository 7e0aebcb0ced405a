// The Llama text encoder (llava-llama-3-8b's text tower, `LlamaModel`) as graphs built from its config.json.
// FramePack reads hidden_states[-3]: the residual stream after num_hidden_layers − 2 decoder layers, without the
// final RMSNorm (framepack-reference.md §3.4). So the product builds one decoder-layer graph (every layer binds
// its own weights through `{i}`) and runs it only that many times; the last two layers and `norm.weight` are never
// read. The full depth (all layers + final norm = last_hidden_state) is an option for parity tests. The token
// embedding (128,320 × 4,096, 1 GB in fp16, beyond some devices' largest binding) is not a graph input: the
// runner reads only the rows of the prompt's ids from the checkpoint, which is exact.

import { LlamaConfigError } from '../errors/models.ts';
import { Graph, type BuiltGraph } from './graph.ts';
import { attention, linear, mergeHeads, rmsNorm, silu, splitHeads, toActivation, toFloat32 } from './ops.ts';

export interface LlamaConfig {
  hiddenSize: number;
  intermediateSize: number;
  numLayers: number;
  numHeads: number;
  numKvHeads: number;
  headDim: number;
  rmsNormEps: number;
  ropeTheta: number;
  vocabSize: number;
}

function positiveInt(json: Record<string, unknown>, key: string): number {
  const v = json[key];
  if (typeof v !== 'number' || !Number.isInteger(v) || v <= 0) throw new LlamaConfigError(`${key} must be a positive integer, got ${JSON.stringify(v)}`);
  return v;
}

function positiveNumber(v: unknown, key: string): number {
  if (typeof v !== 'number' || !(v > 0)) throw new LlamaConfigError(`${key} must be a positive number, got ${JSON.stringify(v)}`);
  return v;
}

/**
 * Reads a Hugging Face Llama config.json. RoPE θ is read from `rope_parameters.rope_theta` (transformers ≥ 5) or
 * `rope_theta` (earlier); only the default (unscaled) RoPE is supported. Throws LlamaConfigError.
 */
export function parseLlamaConfig(json: Record<string, unknown>): LlamaConfig {
  const hiddenSize = positiveInt(json, 'hidden_size');
  const numHeads = positiveInt(json, 'num_attention_heads');
  const numKvHeads = json.num_key_value_heads === undefined || json.num_key_value_heads === null ? numHeads : positiveInt(json, 'num_key_value_heads');
  if (numHeads % numKvHeads !== 0) throw new LlamaConfigError(`num_attention_heads ${numHeads} is not a multiple of num_key_value_heads ${numKvHeads}`);
  const headDim = json.head_dim === undefined || json.head_dim === null ? hiddenSize / numHeads : positiveInt(json, 'head_dim');
  if (!Number.isInteger(headDim) || headDim % 2 !== 0) throw new LlamaConfigError(`the head dimension must be an even integer, got ${headDim}`);
  const act = json.hidden_act ?? 'silu';
  if (act !== 'silu') throw new LlamaConfigError(`hidden_act must be "silu", got ${JSON.stringify(act)}`);
  if (json.attention_bias === true || json.mlp_bias === true) throw new LlamaConfigError('attention_bias and mlp_bias must be false');
  const params = json.rope_parameters as Record<string, unknown> | undefined | null;
  const scaling = (params ?? (json.rope_scaling as Record<string, unknown> | undefined | null)) ?? null;
  const ropeType = scaling ? (scaling.rope_type ?? scaling.type ?? 'default') : 'default';
  if (ropeType !== 'default') throw new LlamaConfigError(`RoPE type ${JSON.stringify(ropeType)} is not supported (only the default, unscaled RoPE)`);
  const ropeTheta = positiveNumber(params?.rope_theta ?? json.rope_theta, 'rope_parameters.rope_theta (or rope_theta)');
  const rmsNormEps = positiveNumber(json.rms_norm_eps, 'rms_norm_eps');
  const numLayers = positiveInt(json, 'num_hidden_layers');
  if (numLayers < 3) throw new LlamaConfigError(`FramePack reads hidden_states[-3], which needs at least 3 layers; this config has ${numLayers}`);
  return {
    hiddenSize,
    intermediateSize: positiveInt(json, 'intermediate_size'),
    numLayers,
    numHeads,
    numKvHeads,
    headDim,
    rmsNormEps,
    ropeTheta,
    vocabSize: positiveInt(json, 'vocab_size'),
  };
}

/** Decoder layers before hidden_states[-3]: all but the last two (30 of 32 for the real model). */
export function framepackLlamaLayers(config: LlamaConfig): number {
  return config.numLayers - 2;
}

export interface LlamaBuildOptions {
  dtype: 'float32' | 'float16';
  /** 4-bit MatMulNBits for the seven linears of every layer. */
  quantized?: boolean;
  /** Checkpoint tensor-name prefix: '' for a saved LlamaModel (the real text_encoder), 'model.' for a CausalLM. */
  prefix?: string;
  /** 'framepack': the layers hidden_states[-3] needs, no final norm. 'full': every layer and the final norm. */
  depth?: 'framepack' | 'full';
}

export interface LlamaGraphs {
  config: LlamaConfig;
  /** One decoder layer; inputs `hidden` [1,n,D] (activation dtype), `rope_cos`/`rope_sin` [n, headDim] fp32. */
  layer: BuiltGraph;
  /** How many times the layer runs (blocks 0 … layers−1). */
  layers: number;
  /** After how many layers the stream is hidden_states[-3]. */
  hiddenStatesM3After: number;
  /** Final RMSNorm → `last_hidden_state` fp32, only at depth 'full'. */
  finalNorm: BuiltGraph | null;
  /** The embedding table, looked up on the CPU row by row (never bound whole). */
  embedding: { tensor: string; shape: [number, number] };
}

/** q·cos + rotate_half(q)·sin on [1, H, n, d] heads, in fp32 (rotate_half on halves, as in transformers' Llama). */
function applyRope(g: Graph, x: string, cos: string, sin: string, headDim: number): string {
  const xf = toFloat32(g, x);
  const [x1, x2] = g.opN('Split', [xf, g.ints([headDim / 2, headDim / 2])], 2, { axis: -1 });
  const rotated = g.op('Concat', [g.op('Neg', [x2]), x1], { axis: -1 });
  return toActivation(g, g.op('Add', [g.op('Mul', [xf, cos]), g.op('Mul', [rotated, sin])]));
}

/** [1, KV, n, d] → [1, KV·rep, n, d], each KV head repeated for `rep` consecutive query heads (repeat_kv). */
function repeatKv(g: Graph, x: string, kvHeads: number, rep: number, headDim: number): string {
  if (rep === 1) return x;
  const r = g.op('Unsqueeze', [x, g.ints([2])]);
  const e = g.op('Expand', [r, g.ints([1, 1, rep, 1, 1])]);
  return g.op('Reshape', [e, g.ints([1, kvHeads * rep, -1, headDim])]);
}

/**
 * Additive causal mask [n, n] (0 on and below the diagonal, float32's lowest above, as transformers builds it)
 * from the sequence length of `x` [1, n, D]. Built in the graph so every caller gets it for free.
 */
export function causalMask(g: Graph, x: string): string {
  const n = g.op('Cast', [g.op('Squeeze', [g.op('Shape', [x], { start: 1, end: 2 }), g.ints([0])])], { to: 1 });
  const positions = g.op('Range', [g.scalar(0), n, g.scalar(1)]);
  const rows = g.op('Unsqueeze', [positions, g.ints([1])]);
  const cols = g.op('Unsqueeze', [positions, g.ints([0])]);
  return g.op('Where', [g.op('Greater', [cols, rows]), g.scalar(-3.4028234663852886e38), g.scalar(0)]);
}

function buildDecoderLayer(config: LlamaConfig, options: LlamaBuildOptions): BuiltGraph {
  const { hiddenSize: d, numHeads: heads, numKvHeads: kvHeads, headDim: hd, intermediateSize: mlp, rmsNormEps: eps } = config;
  const quantized = options.quantized ?? false;
  const p = `${options.prefix ?? ''}layers.{i}`;
  const g = new Graph('llama_decoder_layer', options.dtype);
  const x = g.input('hidden', options.dtype, [1, 'tokens', d]); // residual stream
  const cos = g.input('rope_cos', 'float32', ['tokens', hd]);
  const sin = g.input('rope_sin', 'float32', ['tokens', hd]);

  const h = rmsNorm(g, x, eps, { tensor: `${p}.input_layernorm.weight`, dim: d });
  const q = linear(g, h, `${p}.self_attn.q_proj`, d, heads * hd, { bias: false, quantized });
  const k = linear(g, h, `${p}.self_attn.k_proj`, d, kvHeads * hd, { bias: false, quantized });
  const v = linear(g, h, `${p}.self_attn.v_proj`, d, kvHeads * hd, { bias: false, quantized });
  const qh = applyRope(g, splitHeads(g, q, heads, hd), cos, sin, hd); // [1, H, n, hd]
  const kh = repeatKv(g, applyRope(g, splitHeads(g, k, kvHeads, hd), cos, sin, hd), kvHeads, heads / kvHeads, hd);
  const vh = repeatKv(g, splitHeads(g, v, kvHeads, hd), kvHeads, heads / kvHeads, hd);
  const attn = mergeHeads(g, attention(g, qh, kh, vh, hd, causalMask(g, x)), heads, hd);
  const x1 = g.op('Add', [x, linear(g, attn, `${p}.self_attn.o_proj`, heads * hd, d, { bias: false, quantized })]);

  const h2 = rmsNorm(g, x1, eps, { tensor: `${p}.post_attention_layernorm.weight`, dim: d });
  const gate = silu(g, linear(g, h2, `${p}.mlp.gate_proj`, d, mlp, { bias: false, quantized }));
  const up = linear(g, h2, `${p}.mlp.up_proj`, d, mlp, { bias: false, quantized });
  const out = g.op('Add', [x1, linear(g, g.op('Mul', [gate, up]), `${p}.mlp.down_proj`, mlp, d, { bias: false, quantized })]);
  g.output(out, 'hidden_out', options.dtype, [1, 'tokens', d]);
  return g.build();
}

function buildFinalNorm(config: LlamaConfig, options: LlamaBuildOptions): BuiltGraph {
  const g = new Graph('llama_final_norm', options.dtype);
  const x = g.input('hidden', options.dtype, [1, 'tokens', config.hiddenSize]);
  const y = rmsNorm(g, x, config.rmsNormEps, { tensor: `${options.prefix ?? ''}norm.weight`, dim: config.hiddenSize });
  g.output(toFloat32(g, y), 'last_hidden_state', 'float32', [1, 'tokens', config.hiddenSize]);
  return g.build();
}

/** The Llama graphs for a config. Describes only; no weights are touched. */
export function buildLlama(config: LlamaConfig, options: LlamaBuildOptions): LlamaGraphs {
  const full = options.depth === 'full';
  return {
    config,
    layer: buildDecoderLayer(config, options),
    layers: full ? config.numLayers : framepackLlamaLayers(config),
    hiddenStatesM3After: framepackLlamaLayers(config),
    finalNorm: full ? buildFinalNorm(config, options) : null,
    embedding: { tensor: `${options.prefix ?? ''}embed_tokens.weight`, shape: [config.vocabSize, config.hiddenSize] },
  };
}

/**
 * Every checkpoint tensor a set of graphs reads, with its stored shape: `{i}` names expanded for blocks
 * 0 … blocks−1. This is what a loader must fetch, and all it must fetch.
 */
export function consumedTensors(parts: readonly { graph: BuiltGraph; blocks?: number }[]): Map<string, number[]> {
  const out = new Map<string, number[]>();
  for (const { graph, blocks } of parts) {
    for (const w of graph.weights) {
      if (!w.tensor.includes('{i}')) out.set(w.tensor, w.shape);
      else for (let i = 0; i < (blocks ?? 0); i++) out.set(w.tensor.replace('{i}', String(i)), w.shape);
    }
  }
  return out;
}

/** The tensors the Llama graphs consume, the CPU-side embedding included. */
export function llamaTensors(graphs: LlamaGraphs): Map<string, number[]> {
  const parts = [{ graph: graphs.layer, blocks: graphs.layers }, ...(graphs.finalNorm ? [{ graph: graphs.finalNorm }] : [])];
  const out = consumedTensors(parts);
  out.set(graphs.embedding.tensor, graphs.embedding.shape);
  return out;
}

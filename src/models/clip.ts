// The CLIP-L text encoder (`CLIPTextModel`, HunyuanVideo's text_encoder_2) as graphs built from its config.json.
// FramePack uses only `pooler_output`: the final-layernormed state at the first EOS token (framepack-reference.md
// §3.4). Three graphs: embeddings (token table gathered in the graph + learned positions), one pre-LN encoder
// layer that every layer binds its weights to through `{i}`, and the final LayerNorm with the pooled gather.
// The encoder layer here is the same pre-LN transformer layer SigLIP's vision tower uses, so siglip.ts reuses it.

import { ClipConfigError } from '../errors/models.ts';
import { Graph, type BuiltGraph } from './graph.ts';
import type { OnnxDType } from './onnxProto.ts';
import { attention, geluTanh, layerNorm, linear, mergeHeads, quickGelu, splitHeads, toFloat32 } from './ops.ts';
import { causalMask, consumedTensors } from './llama.ts';

export interface ClipTextConfig {
  hiddenSize: number;
  intermediateSize: number;
  numLayers: number;
  numHeads: number;
  layerNormEps: number;
  vocabSize: number;
  maxPositions: number;
  eosTokenId: number;
}

function int(json: Record<string, unknown>, key: string, error: (d: string) => Error, min = 1): number {
  const v = json[key];
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min) throw error(`${key} must be an integer ≥ ${min}, got ${JSON.stringify(v)}`);
  return v;
}

function positive(json: Record<string, unknown>, key: string, error: (d: string) => Error): number {
  const v = json[key];
  if (typeof v !== 'number' || !(v > 0)) throw error(`${key} must be a positive number, got ${JSON.stringify(v)}`);
  return v;
}

/** Reads a Hugging Face CLIPTextModel config.json (quick_gelu activation only). Throws ClipConfigError. */
export function parseClipTextConfig(json: Record<string, unknown>): ClipTextConfig {
  const err = (d: string) => new ClipConfigError(d);
  const act = json.hidden_act ?? 'quick_gelu';
  if (act !== 'quick_gelu') throw err(`hidden_act must be "quick_gelu", got ${JSON.stringify(act)}`);
  const hiddenSize = int(json, 'hidden_size', err);
  const numHeads = int(json, 'num_attention_heads', err);
  if (hiddenSize % numHeads !== 0) throw err(`hidden_size ${hiddenSize} is not a multiple of num_attention_heads ${numHeads}`);
  return {
    hiddenSize,
    intermediateSize: int(json, 'intermediate_size', err),
    numLayers: int(json, 'num_hidden_layers', err),
    numHeads,
    layerNormEps: positive(json, 'layer_norm_eps', err),
    vocabSize: int(json, 'vocab_size', err),
    maxPositions: int(json, 'max_position_embeddings', err),
    // transformers' CLIPTextConfig default is the legacy 2 (see clipPooledPosition).
    eosTokenId: json.eos_token_id === undefined ? 2 : int(json, 'eos_token_id', err, 0),
  };
}

/**
 * The token whose final state is `pooler_output`, as transformers picks it: the first `eosTokenId`; but for
 * configs that still say eos_token_id = 2 (openai's CLIP-L, HunyuanVideo's text_encoder_2) the first position of
 * the largest id, which is the real EOS 49407 since it is the vocabulary's last token. Like torch's argmax, a
 * sequence without EOS pools position 0.
 */
export function clipPooledPosition(ids: readonly number[], eosTokenId: number): number {
  if (eosTokenId === 2) {
    let best = 0;
    for (let i = 1; i < ids.length; i++) if (ids[i] > ids[best]) best = i;
    return best;
  }
  return Math.max(0, ids.indexOf(eosTokenId));
}

export interface EncoderLayerSpec {
  dim: number;
  heads: number;
  mlpDim: number;
  eps: number;
  activation: 'quick_gelu' | 'gelu_tanh';
  causal: boolean;
  /** Checkpoint prefix of the layer, with `{i}` for the layer index (e.g. `encoder.layers.{i}`). */
  prefix: string;
  quantized: boolean;
}

/**
 * One pre-LN transformer encoder layer as CLIP and SigLIP write it:
 * x + out_proj(attn(LN1(x))), then + fc2(act(fc1(LN2(x)))), with biased q/k/v/out projections.
 */
export function encoderLayer(g: Graph, x: string, s: EncoderLayerSpec): string {
  const hd = s.dim / s.heads;
  const lin = (input: string, name: string, inF: number, outF: number) => linear(g, input, `${s.prefix}.${name}`, inF, outF, { quantized: s.quantized });
  const h = layerNorm(g, x, s.dim, s.eps, `${s.prefix}.layer_norm1`);
  const q = splitHeads(g, lin(h, 'self_attn.q_proj', s.dim, s.dim), s.heads, hd);
  const k = splitHeads(g, lin(h, 'self_attn.k_proj', s.dim, s.dim), s.heads, hd);
  const v = splitHeads(g, lin(h, 'self_attn.v_proj', s.dim, s.dim), s.heads, hd);
  const attn = mergeHeads(g, attention(g, q, k, v, hd, s.causal ? causalMask(g, x) : null), s.heads, hd);
  const x1 = g.op('Add', [x, lin(attn, 'self_attn.out_proj', s.dim, s.dim)]);
  const h2 = layerNorm(g, x1, s.dim, s.eps, `${s.prefix}.layer_norm2`);
  const fc1 = lin(h2, 'mlp.fc1', s.dim, s.mlpDim);
  const act = s.activation === 'quick_gelu' ? quickGelu(g, fc1) : geluTanh(g, fc1);
  return g.op('Add', [x1, lin(act, 'mlp.fc2', s.mlpDim, s.dim)]);
}

/** The one-layer graph a stack of encoder layers shares: `hidden` [1, n, D] → `hidden_out`. */
export function buildEncoderLayerGraph(name: string, dtype: OnnxDType, spec: EncoderLayerSpec): BuiltGraph {
  const g = new Graph(name, dtype);
  const x = g.input('hidden', dtype, [1, 'tokens', spec.dim]);
  g.output(encoderLayer(g, x, spec), 'hidden_out', dtype, [1, 'tokens', spec.dim]);
  return g.build();
}

export interface ClipBuildOptions {
  dtype: 'float32' | 'float16';
  quantized?: boolean;
  /** Checkpoint tensor-name prefix: '' (a saved text_model, as in the fixtures) or 'text_model.' (a saved CLIPTextModel). */
  prefix?: string;
}

export interface ClipGraphs {
  config: ClipTextConfig;
  /** `input_ids` int64 [1, n ≤ maxPositions] → `hidden` [1, n, D] (activation dtype). */
  embeddings: BuiltGraph;
  layer: BuiltGraph;
  layers: number;
  /** `hidden` + `pooled_index` int64 [1] → `last_hidden_state` [1, n, D], `pooler_output` [1, D], fp32. */
  final: BuiltGraph;
}

/** The CLIP text graphs for a config. Describes only; no weights are touched. */
export function buildClipText(config: ClipTextConfig, options: ClipBuildOptions): ClipGraphs {
  const prefix = options.prefix ?? '';
  const d = config.hiddenSize;

  const e = new Graph('clip_text_embeddings', options.dtype);
  const ids = e.input('input_ids', 'int64', [1, 'tokens']);
  const table = e.weight('token_embedding', `${prefix}embeddings.token_embedding.weight`, [config.vocabSize, d]);
  const positions = e.weight('position_embedding', `${prefix}embeddings.position_embedding.weight`, [config.maxPositions, d]);
  const n = e.op('Shape', [ids], { start: 1, end: 2 });
  const pos = e.op('Slice', [positions, e.ints([0]), n, e.ints([0])]); // rows 0 … n−1
  e.output(e.op('Add', [e.op('Gather', [table, ids], { axis: 0 }), pos]), 'hidden', options.dtype, [1, 'tokens', d]);

  const layer = buildEncoderLayerGraph('clip_text_layer', options.dtype, {
    dim: d, heads: config.numHeads, mlpDim: config.intermediateSize, eps: config.layerNormEps,
    activation: 'quick_gelu', causal: true, prefix: `${prefix}encoder.layers.{i}`, quantized: options.quantized ?? false,
  });

  const f = new Graph('clip_text_final', options.dtype);
  const x = f.input('hidden', options.dtype, [1, 'tokens', d]);
  const index = f.input('pooled_index', 'int64', [1]);
  const last = toFloat32(f, layerNorm(f, x, d, config.layerNormEps, `${prefix}final_layer_norm`));
  f.output(last, 'last_hidden_state', 'float32', [1, 'tokens', d]);
  f.output(f.op('Reshape', [f.op('Gather', [last, index], { axis: 1 }), f.ints([1, d])]), 'pooler_output', 'float32', [1, d]);

  return { config, embeddings: e.build(), layer, layers: config.numLayers, final: f.build() };
}

/** Every checkpoint tensor the CLIP graphs read, with its stored shape. */
export function clipTensors(graphs: ClipGraphs): Map<string, number[]> {
  return consumedTensors([{ graph: graphs.embeddings }, { graph: graphs.layer, blocks: graphs.layers }, { graph: graphs.final }]);
}

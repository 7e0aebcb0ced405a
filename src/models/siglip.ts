// SigLIP's vision tower (`SiglipVisionModel`, so400m-patch14-384 from FLUX.1-Redux) as graphs built from its
// config.json. FramePack uses `last_hidden_state`: patch embeddings + learned positions, the encoder layers, then
// the post-layernorm; the attention-pooling head is never read (framepack-reference.md §3.3). Three graphs:
// patchify (a 14×14 stride-14 Conv), one encoder layer shared by every layer through `{i}`, the post-layernorm.

import { SiglipConfigError } from '../errors/models.ts';
import { Graph, type BuiltGraph } from './graph.ts';
import { layerNorm, toFloat32 } from './ops.ts';
import { buildEncoderLayerGraph } from './clip.ts';
import { consumedTensors } from './llama.ts';

export interface SiglipVisionConfig {
  hiddenSize: number;
  intermediateSize: number;
  numLayers: number;
  numHeads: number;
  layerNormEps: number;
  imageSize: number;
  patchSize: number;
  numChannels: number;
}

function int(json: Record<string, unknown>, key: string, fallback?: number): number {
  const v = json[key] ?? fallback;
  if (typeof v !== 'number' || !Number.isInteger(v) || v <= 0) throw new SiglipConfigError(`${key} must be a positive integer, got ${JSON.stringify(v)}`);
  return v;
}

/** Reads a Hugging Face SiglipVisionModel config.json (gelu_pytorch_tanh only). Throws SiglipConfigError. */
export function parseSiglipVisionConfig(json: Record<string, unknown>): SiglipVisionConfig {
  const act = json.hidden_act ?? 'gelu_pytorch_tanh';
  if (act !== 'gelu_pytorch_tanh') throw new SiglipConfigError(`hidden_act must be "gelu_pytorch_tanh", got ${JSON.stringify(act)}`);
  const eps = json.layer_norm_eps ?? 1e-6;
  if (typeof eps !== 'number' || !(eps > 0)) throw new SiglipConfigError(`layer_norm_eps must be a positive number, got ${JSON.stringify(eps)}`);
  const config = {
    hiddenSize: int(json, 'hidden_size'),
    intermediateSize: int(json, 'intermediate_size'),
    numLayers: int(json, 'num_hidden_layers'),
    numHeads: int(json, 'num_attention_heads'),
    layerNormEps: eps,
    imageSize: int(json, 'image_size'),
    patchSize: int(json, 'patch_size'),
    numChannels: int(json, 'num_channels', 3),
  };
  if (config.hiddenSize % config.numHeads !== 0) throw new SiglipConfigError(`hidden_size ${config.hiddenSize} is not a multiple of num_attention_heads ${config.numHeads}`);
  if (config.imageSize < config.patchSize) throw new SiglipConfigError(`image_size ${config.imageSize} is smaller than patch_size ${config.patchSize}`);
  return config;
}

/**
 * Patch tokens per image: ⌊image_size / patch_size⌋², 729 for so400m (384 px is not a multiple of 14: the
 * stride-14 conv covers 378 px and never sees the last 6 rows and columns, as in the reference).
 */
export function siglipTokens(config: SiglipVisionConfig): number {
  return Math.floor(config.imageSize / config.patchSize) ** 2;
}

export interface SiglipBuildOptions {
  dtype: 'float32' | 'float16';
  quantized?: boolean;
  /** Checkpoint tensor-name prefix: '' (a saved vision_model, as in the fixtures) or 'vision_model.' (a saved SiglipVisionModel). */
  prefix?: string;
}

export interface SiglipGraphs {
  config: SiglipVisionConfig;
  /** `pixel_values` [1, C, S, S] (activation dtype) → `hidden` [1, P, D]. */
  embeddings: BuiltGraph;
  layer: BuiltGraph;
  layers: number;
  /** `hidden` → `last_hidden_state` [1, P, D] fp32 (after post_layernorm). */
  final: BuiltGraph;
}

/** The SigLIP vision graphs for a config. Describes only; no weights are touched. */
export function buildSiglipVision(config: SiglipVisionConfig, options: SiglipBuildOptions): SiglipGraphs {
  const prefix = options.prefix ?? '';
  const { hiddenSize: d, patchSize: p, imageSize: s, numChannels: c } = config;
  const tokens = siglipTokens(config);

  const e = new Graph('siglip_embeddings', options.dtype);
  const px = e.input('pixel_values', options.dtype, [1, c, s, s]);
  const w = e.weight('patch_embedding_weight', `${prefix}embeddings.patch_embedding.weight`, [d, c, p, p]);
  const b = e.weight('patch_embedding_bias', `${prefix}embeddings.patch_embedding.bias`, [d]);
  const conv = e.op('Conv', [px, w, b], { kernel_shape: [p, p], strides: [p, p] }); // [1, D, ⌊S/p⌋, ⌊S/p⌋]
  const patches = e.op('Transpose', [e.op('Reshape', [conv, e.ints([1, d, tokens])])], { perm: [0, 2, 1] });
  const positions = e.weight('position_embedding', `${prefix}embeddings.position_embedding.weight`, [tokens, d]);
  e.output(e.op('Add', [patches, positions]), 'hidden', options.dtype, [1, tokens, d]);

  const layer = buildEncoderLayerGraph('siglip_layer', options.dtype, {
    dim: d, heads: config.numHeads, mlpDim: config.intermediateSize, eps: config.layerNormEps,
    activation: 'gelu_tanh', causal: false, prefix: `${prefix}encoder.layers.{i}`, quantized: options.quantized ?? false,
  });

  const f = new Graph('siglip_post_layernorm', options.dtype);
  const x = f.input('hidden', options.dtype, [1, tokens, d]);
  f.output(toFloat32(f, layerNorm(f, x, d, config.layerNormEps, `${prefix}post_layernorm`)), 'last_hidden_state', 'float32', [1, tokens, d]);

  return { config, embeddings: e.build(), layer, layers: config.numLayers, final: f.build() };
}

/** Every checkpoint tensor the SigLIP graphs read, with its stored shape. */
export function siglipTensors(graphs: SiglipGraphs): Map<string, number[]> {
  return consumedTensors([{ graph: graphs.embeddings }, { graph: graphs.layer, blocks: graphs.layers }, { graph: graphs.final }]);
}

// The packed DiT's configuration (HunyuanVideoTransformer3DModelPacked's config.json, framepack-reference.md §5)
// and the names its graphs and block plans share: read once here, so the embedders' and head's graphs
// (src/models/dit.ts) and the blocks' plans (src/models/ditBlocks.ts) take every size from the same place.

import { DiTConfigError } from '../errors/models.ts';
/** The config.json fields the packed DiT reads (diffusers' names in the comments). */
export interface DiTConfig {
  /** in_channels: latent channels of the noisy and the context latents. */
  inChannels: number;
  /** out_channels: channels of the predicted velocity. */
  outChannels: number;
  /** num_attention_heads */
  heads: number;
  /** attention_head_dim; equals the sum of the RoPE axes. */
  headDim: number;
  /** num_layers: dual-stream blocks. */
  layers: number;
  /** num_single_layers: single-stream blocks. */
  singleLayers: number;
  /** num_refiner_layers: token refiner blocks. */
  refinerLayers: number;
  /** mlp_ratio: feed-forward width over the hidden size. */
  mlpRatio: number;
  /** patch_size (H and W) and patch_size_t (T) of the noisy-latent patch embedder. */
  patchSize: number;
  patchSizeT: number;
  /** guidance_embeds: whether a distilled-guidance embedding is added to temb. */
  guidanceEmbeds: boolean;
  /** text_embed_dim: width of the Llama states fed to the token refiner. */
  textEmbedDim: number;
  /** pooled_projection_dim: width of the CLIP pooled vector. */
  pooledProjectionDim: number;
  /** rope_theta and rope_axes_dim (T, Y, X). */
  ropeTheta: number;
  ropeAxesDim: [number, number, number];
  /** image_proj_dim: width of the SigLIP states. */
  imageProjDim: number;
}

/** LayerNorm and RMSNorm epsilon everywhere in the model. */
export const DIT_NORM_EPS = 1e-6;
/** Channels of the sinusoidal timestep/guidance embedding (diffusers' Timesteps(256, flip_sin_to_cos=True)). */
export const TIMESTEP_CHANNELS = 256;

/** The context-latent patch embedders, fixed in the reference's code (HunyuanVideoPatchEmbedForCleanLatents). */
export const CLEAN_EMBEDDERS = {
  proj: [1, 2, 2],
  proj_2x: [2, 4, 4],
  proj_4x: [4, 8, 8],
} as const satisfies Record<string, readonly [number, number, number]>;

function need(json: Record<string, unknown>, key: string, check: (v: unknown) => boolean, what: string): unknown {
  const v = json[key];
  if (!check(v)) throw new DiTConfigError(`The transformer's config.json has ${key} = ${JSON.stringify(v)}; expected ${what}. Is this a FramePack (HunyuanVideoTransformer3DModelPacked) checkpoint?`);
  return v;
}

const positiveInt = (v: unknown) => Number.isInteger(v) && (v as number) > 0;
const nonNegativeInt = (v: unknown) => Number.isInteger(v) && (v as number) >= 0;

/**
 * Reads a packed-DiT config.json. Throws DiTConfigError when a field is missing or the checkpoint lacks the
 * FramePack parts this port needs (the clean-latent embedders, the image projection, RMS qk-norm).
 */
export function parseDiTConfig(json: Record<string, unknown>): DiTConfig {
  const int = (k: string) => need(json, k, positiveInt, 'a positive integer') as number;
  const count = (k: string) => need(json, k, nonNegativeInt, 'a whole number ≥ 0') as number;
  need(json, 'has_clean_x_embedder', (v) => v === true, 'true');
  need(json, 'has_image_proj', (v) => v === true, 'true');
  need(json, 'qk_norm', (v) => v === 'rms_norm', '"rms_norm"');
  const axes = need(json, 'rope_axes_dim', (v) => Array.isArray(v) && v.length === 3 && v.every((d) => positiveInt(d) && d % 2 === 0), 'three positive even integers') as number[];
  const config: DiTConfig = {
    inChannels: int('in_channels'),
    outChannels: int('out_channels'),
    heads: int('num_attention_heads'),
    headDim: int('attention_head_dim'),
    layers: count('num_layers'),
    singleLayers: count('num_single_layers'),
    refinerLayers: count('num_refiner_layers'),
    mlpRatio: need(json, 'mlp_ratio', (v) => typeof v === 'number' && v > 0, 'a positive number') as number,
    patchSize: int('patch_size'),
    patchSizeT: int('patch_size_t'),
    guidanceEmbeds: need(json, 'guidance_embeds', (v) => typeof v === 'boolean', 'true or false') as boolean,
    textEmbedDim: int('text_embed_dim'),
    pooledProjectionDim: int('pooled_projection_dim'),
    ropeTheta: need(json, 'rope_theta', (v) => typeof v === 'number' && v > 0, 'a positive number') as number,
    ropeAxesDim: [axes[0], axes[1], axes[2]],
    imageProjDim: int('image_proj_dim'),
  };
  if (axes[0] + axes[1] + axes[2] !== config.headDim) {
    throw new DiTConfigError(`The transformer's rope_axes_dim ${JSON.stringify(axes)} must add up to attention_head_dim ${config.headDim}.`);
  }
  if (!Number.isInteger(hiddenSize(config) * config.mlpRatio)) throw new DiTConfigError(`mlp_ratio ${config.mlpRatio} does not give a whole feed-forward width.`);
  return config;
}

/** The model width D = heads · headDim. */
export function hiddenSize(c: DiTConfig): number {
  return c.heads * c.headDim;
}

/** Feed-forward width (the reference's int(D · mlp_ratio)). */
export function mlpWidth(c: DiTConfig): number {
  return hiddenSize(c) * c.mlpRatio;
}

/** Values each output token of proj_out holds: (c, pt, ph, pw). */
export function patchValues(c: DiTConfig): number {
  return c.outChannels * c.patchSizeT * c.patchSize * c.patchSize;
}

/** The values the DiT's graphs and block plans pass between them (graph inputs and outputs, block inputs). */
export const DIT_IO = {
  latents: 'latents',
  cleanLatents: 'clean_latents',
  cleanLatents2x: 'clean_latents_2x',
  cleanLatents4x: 'clean_latents_4x',
  timestepProj: 'timestep_proj',
  guidanceProj: 'guidance_proj',
  pooled: 'pooled_projections',
  text: 'text_states',
  image: 'image_embeddings',
  rope: 'rope',
  imageTokens: 'image_tokens',
  contextTokens: 'context_tokens',
  temb: 'temb',
  ropeCos: 'rope_cos',
  ropeSin: 'rope_sin',
  grid: 'grid',
  velocity: 'velocity',
} as const;

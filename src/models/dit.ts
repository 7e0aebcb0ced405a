// The packed HunyuanVideo transformer of FramePack (HunyuanVideoTransformer3DModelPacked, framepack-reference.md §5)
// as five graphs, so that one compiled session serves every block of a kind and the engine can stream block weights:
// the embedders (patch embedders for the noisy and the 1x/2x/4x context latents, timestep/guidance/pooled-text
// embedding, the token refiner, the SigLIP projection), one dual-stream block, one single-stream block, the output
// head, and block 0's AdaLN modulation alone (what TeaCache compares between steps, §8). Tensors passed between the
// graphs (image tokens, context tokens, temb, RoPE cos/sin) are float32 whatever the activation dtype, so the
// residual streams and the timestep embedding stay fp32 as §5.10 advises; linears run in the activation dtype, or
// 4-bit where the options ask for it. For WebGPU each block is also described as a plan (graphs.blocks): graphs split
// around the attention our kernel computes and, with 4-bit weights, around the large linears our 4-bit matmul
// computes from the same weights. Every size comes from the checkpoint's config.json.

import { Graph, type BuiltGraph } from './graph.ts';
import type { OnnxDType } from './onnxProto.ts';
import { attention, geluTanh, inputName, layerNorm, linear, mergeHeads, rmsNorm, silu, splitHeads, toActivation, toFloat32 } from './ops.ts';

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

export class DiTConfigError extends Error {
  override name = 'DiTConfigError';
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

export interface DiTGraphOptions {
  /** Activation dtype: 'float16' where the adapter has shader-f16, 'float32' otherwise and for parity tests. */
  dtype?: OnnxDType;
  /**
   * 4-bit MatMulNBits for the transformer blocks' and the token refiner's linears whose input width is a multiple
   * of 32 (attention, feed-forward and AdaLN modulation: ≈ 12.4 of the 12.9 B parameters). The patch embedders,
   * the timestep/text embedders, proj_in, the SigLIP projection, the output head and every norm stay 16/32-bit:
   * they are small, and the head and the timestep path are fp32 by design.
   */
  quantized?: boolean;
  /**
   * 'inline' (default): attention is an ONNX MatMul/Softmax inside each block graph. 'external': the blocks are
   * also built split around their attention, which the runner computes with the flash-attention kernel.
   */
  attention?: 'inline' | 'external';
  /**
   * With attention 'external' and `quantized`: 'kernel' builds block plans that run entirely in our kernels (no ORT
   * graph): the token-wise linears in src/kernels/q4Matmul.ts, the AdaLN parameters in q4Gemv.ts (both read the same
   * MatMulNBits weights), the norms, RoPE and residuals in qkvHeads.ts and adaNorm.ts. 'onnx' (default) keeps every
   * linear a MatMulNBits node. Needs a hidden size that is a multiple of 32 (every block linear 4-bit, proj_out's
   * [o ; mlp] halves on block boundaries).
   */
  linears?: 'onnx' | 'kernel';
}

/** Graph input and output names the runner feeds and reads. */
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
  imageTokensOut: 'image_tokens_out',
  contextTokensOut: 'context_tokens_out',
  grid: 'grid',
  velocity: 'velocity',
  modulated: 'modulated',
  q: 'q',
  k: 'k',
  v: 'v',
  attention: 'attention',
  mlp: 'mlp',
  mod: 'mod',
  modX: 'mod_x',
  modC: 'mod_c',
  // Between the stages of a block whose large linears run in the 4-bit kernel.
  attentionOut: 'attention_out',
  attentionContextOut: 'attention_context_out',
  imageTokensMid: 'image_tokens_mid',
  contextTokensMid: 'context_tokens_mid',
  ffIn: 'ff_in',
  ffHidden: 'ff_hidden',
  ffOut: 'ff_out',
  ffContextIn: 'ff_context_in',
  ffContextHidden: 'ff_context_hidden',
  ffContextOut: 'ff_context_out',
  normed: 'normed',
  qkvIn: 'qkv_in',
  qkvContextIn: 'qkv_context_in',
  qkv: 'qkv',
  qkvContext: 'qkv_context',
  projOutAttention: 'proj_out_attention',
  projOutMlp: 'proj_out_mlp',
} as const;

export const DUAL_BLOCK = 'transformer_blocks.{i}';
export const SINGLE_BLOCK = 'single_transformer_blocks.{i}';

// ───────────────────────────── shared fragments ─────────────────────────────

/** Quantize a linear only where MatMulNBits' 32-wide blocks tile its input exactly. */
function blockLinear(g: Graph, x: string, prefix: string, inF: number, outF: number, quantized: boolean): string {
  return linear(g, x, prefix, inF, outF, { quantized: quantized && inF % 32 === 0 });
}

/** A Linear kept in float32 whatever the activation dtype (timestep path, output head). */
function linearF32(g: Graph, x: string, prefix: string, inF: number, outF: number): string {
  const name = inputName(prefix);
  const w = g.weight(`${name}_weight`, `${prefix}.weight`, [outF, inF], 'transpose', 'float32');
  const b = g.weight(`${name}_bias`, `${prefix}.bias`, [outF], 'asis', 'float32');
  return g.op('Add', [g.op('MatMul', [x, w]), b]);
}

/** linear_1 → SiLU → linear_2 in float32 (TimestepEmbedding, PixArtAlphaTextProjection with act "silu"). */
function mlpF32(g: Graph, x: string, prefix: string, inF: number, outF: number): string {
  return linearF32(g, silu(g, linearF32(g, x, `${prefix}.linear_1`, inF, outF)), `${prefix}.linear_2`, outF, outF);
}

/** Parameter-free LayerNorm (the AdaLN's), float32 in and out. */
function plainLayerNorm(g: Graph, x: string, dim: number): string {
  const ones = g.constant(new Float32Array(dim).fill(1));
  const zeros = g.constant(new Float32Array(dim));
  return g.op('LayerNormalization', [x, ones, zeros], { axis: -1, epsilon: DIT_NORM_EPS, stash_type: 1 });
}

/** Linear(SiLU(temb)) as float32 [1, n, D]: the AdaLN modulation parameters, in the reference's chunk order. */
function modulationParams(g: Graph, temb: string, prefix: string, chunks: number, dim: number, quantized: boolean): string {
  const y = toFloat32(g, blockLinear(g, toActivation(g, silu(g, temb)), prefix, dim, chunks * dim, quantized));
  return g.op('Reshape', [y, g.ints([1, chunks, dim])]);
}

/** The n chunks [1, 1, D] of modulation parameters [1, n, D]; they broadcast over tokens. */
function splitModulation(g: Graph, params: string, chunks: number): string[] {
  return g.opN('Split', [params, g.ints(new Array<number>(chunks).fill(1))], chunks, { axis: 1 });
}

/** chunk(Linear(SiLU(temb)), n): n float32 tensors [1, 1, D]. */
function modulation(g: Graph, temb: string, prefix: string, chunks: number, dim: number, quantized: boolean): string[] {
  return splitModulation(g, modulationParams(g, temb, prefix, chunks, dim, quantized), chunks);
}

/** LN(x)·(1 + scale) + shift in float32 (AdaLayerNormZero / AdaLayerNormContinuous). */
function modulate(g: Graph, x: string, dim: number, scale: string, shift: string): string {
  return g.op('Add', [g.op('Mul', [plainLayerNorm(g, x, dim), g.op('Add', [scale, g.scalar(1)])]), shift]);
}

/** x + gate·y with the residual stream in float32. */
function gatedResidual(g: Graph, x: string, y: string, gate: string): string {
  return g.op('Add', [x, g.op('Mul', [toFloat32(g, y), gate])]);
}

/**
 * RoPE on [1, H, N, d] heads with float32 cos/sin tables [N, d]: pairs (2i, 2i+1), rotated = (−x_{2i+1}, x_{2i}),
 * out = x·cos + rotated·sin, computed in float32 (apply_rotary_emb_transposed).
 */
function applyRope(g: Graph, x: string, cos: string, sin: string): string {
  const xf = toFloat32(g, x);
  const pairs = g.op('Reshape', [xf, g.ints([0, 0, 0, -1, 2])]);
  const [even, odd] = g.opN('Split', [pairs, g.ints([1, 1])], 2, { axis: -1 });
  const rotated = g.op('Reshape', [g.op('Concat', [g.op('Neg', [odd]), even], { axis: -1 }), g.ints([0, 0, 0, -1])]);
  return toActivation(g, g.op('Add', [g.op('Mul', [xf, cos]), g.op('Mul', [rotated, sin])]));
}

/** to_x(n) → heads [1, H, N, d], RMS-normed per head with the learned weight `norm`. */
function headsOf(g: Graph, c: DiTConfig, n: string, proj: string, norm: string | null, quantized: boolean): string {
  const d = hiddenSize(c);
  const h = splitHeads(g, blockLinear(g, n, proj, d, d, quantized), c.heads, c.headDim);
  return norm ? rmsNorm(g, h, DIT_NORM_EPS, { tensor: norm, dim: c.headDim }) : h;
}

/** Token counts [N_a, N_b] of two [1, N, ·] tensors, as a Split's sizes. */
function tokenCounts(g: Graph, a: string, b: string): string {
  return g.op('Concat', [g.op('Shape', [a], { start: 1, end: 2 }), g.op('Shape', [b], { start: 1, end: 2 })], { axis: 0 });
}

/** FeedForward: Linear(D→mlp) → GELU(tanh) → Linear(mlp→D). */
function feedForward(g: Graph, c: DiTConfig, x: string, prefix: string, quantized: boolean): string {
  const d = hiddenSize(c);
  const m = mlpWidth(c);
  return blockLinear(g, geluTanh(g, blockLinear(g, x, `${prefix}.net.0.proj`, d, m, quantized)), `${prefix}.net.2`, m, d, quantized);
}

function options(o: DiTGraphOptions): { dtype: OnnxDType; quantized: boolean } {
  const dtype = o.dtype ?? 'float32';
  if (dtype !== 'float32' && dtype !== 'float16') throw new DiTConfigError(`The DiT runs in float32 or float16 activations, not ${dtype}.`);
  return { dtype, quantized: o.quantized ?? false };
}

// ───────────────────────────── embedders ─────────────────────────────

/**
 * A Conv3d with kernel = stride as a patchify + Gemm (ORT's WebGPU EP has no fast Conv3D): x [1, C, T, H, W],
 * whose T/H/W are multiples of the kernel, → tokens [1, T'·H'·W', D] in t-major, row, column order, each patch
 * flattened (c, kt, kh, kw) like the conv weight [D, C, kt, kh, kw].
 */
function patchEmbed(g: Graph, c: DiTConfig, x: string, prefix: string, kernel: readonly [number, number, number]): string {
  const d = hiddenSize(c);
  const [kt, kh, kw] = kernel;
  const k = c.inChannels * kt * kh * kw;
  const axis = (i: number) => g.op('Shape', [x], { start: i, end: i + 1 });
  const div = (i: number, by: number) => g.op('Div', [axis(i), g.ints([by])]);
  const blocks = g.op('Concat', [g.ints([c.inChannels]), div(2, kt), g.ints([kt]), div(3, kh), g.ints([kh]), div(4, kw), g.ints([kw])], { axis: 0 });
  const r = g.op('Reshape', [toActivation(g, x), blocks]); // [C, T', kt, H', kh, W', kw]
  const patches = g.op('Reshape', [g.op('Transpose', [r], { perm: [1, 3, 5, 0, 2, 4, 6] }), g.ints([-1, k])]); // [N, K]
  const name = inputName(prefix);
  const w = g.op('Reshape', [g.weight(`${name}_weight`, `${prefix}.weight`, [d, c.inChannels, kt, kh, kw]), g.ints([d, k])]);
  const b = g.weight(`${name}_bias`, `${prefix}.bias`, [d]);
  const tokens = g.op('Gemm', [patches, w, b], { transB: 1 });
  return toFloat32(g, g.op('Reshape', [tokens, g.ints([1, -1, d])]));
}

/** One HunyuanVideoIndividualTokenRefinerBlock on the valid text tokens h [1, L, D] (fp32) with its temb. */
function refinerBlock(g: Graph, c: DiTConfig, h: string, tRef: string, index: number, quantized: boolean): string {
  const d = hiddenSize(c);
  const p = `context_embedder.token_refiner.refiner_blocks.${index}`;
  const n1 = layerNorm(g, h, d, DIT_NORM_EPS, `${p}.norm1`);
  const q = headsOf(g, c, n1, `${p}.attn.to_q`, null, quantized);
  const k = headsOf(g, c, n1, `${p}.attn.to_k`, null, quantized);
  const v = headsOf(g, c, n1, `${p}.attn.to_v`, null, quantized);
  const a = blockLinear(g, mergeHeads(g, attention(g, q, k, v, c.headDim), c.heads, c.headDim), `${p}.attn.to_out.0`, d, d, quantized);
  const [gateMsa, gateMlp] = modulation(g, tRef, `${p}.norm_out.linear`, 2, d, quantized);
  const h1 = gatedResidual(g, h, a, gateMsa);
  const n2 = layerNorm(g, h1, d, DIT_NORM_EPS, `${p}.norm2`);
  const m = mlpWidth(c);
  const ff = blockLinear(g, silu(g, blockLinear(g, n2, `${p}.ff.net.0.proj`, d, m, quantized)), `${p}.ff.net.2`, m, d, quantized);
  return gatedResidual(g, h1, ff, gateMlp);
}

/**
 * The embedders graph. Inputs (float32): latents [1, C, T, H, W]; clean_latents [1, C, T1, H, W]; clean_latents_2x
 * and clean_latents_4x already replicate-padded at the end to multiples of (2,4,4) and (4,8,8); timestep_proj and
 * guidance_proj, the 256-channel sinusoids of the timestep and the guidance; pooled_projections [1, P]; text_states
 * [1, L, textDim], the L valid Llama tokens only (§5.6: with batch 1 the padded ones never reach a valid token);
 * image_embeddings [1, M, imageProjDim]; rope [N_img, 2·headDim], the packed RoPE table. Outputs (float32):
 * image_tokens [1, N_img, D] in packed order [4x, 2x, 1x, noisy]; context_tokens [1, M + L, D] = [SigLIP
 * projection; refined text]; temb [1, D]; rope_cos and rope_sin [N_img, headDim], the table's halves.
 */
export function buildDiTEmbed(c: DiTConfig, graphOptions: DiTGraphOptions = {}): BuiltGraph {
  const { dtype, quantized } = options(graphOptions);
  const g = new Graph('dit_embed', dtype);
  const d = hiddenSize(c);
  const latent = (name: string, t: string, h: string, w: string) => g.input(name, 'float32', [1, c.inChannels, t, h, w]);
  const x = latent(DIT_IO.latents, 'T', 'H', 'W');
  const clean = latent(DIT_IO.cleanLatents, 'T1', 'H', 'W');
  const clean2x = latent(DIT_IO.cleanLatents2x, 'T2', 'H2', 'W2');
  const clean4x = latent(DIT_IO.cleanLatents4x, 'T4', 'H4', 'W4');
  const tProj = g.input(DIT_IO.timestepProj, 'float32', [1, TIMESTEP_CHANNELS]);
  const gProj = c.guidanceEmbeds ? g.input(DIT_IO.guidanceProj, 'float32', [1, TIMESTEP_CHANNELS]) : null;
  const pooled = g.input(DIT_IO.pooled, 'float32', [1, c.pooledProjectionDim]);
  const text = g.input(DIT_IO.text, 'float32', [1, 'L', c.textEmbedDim]);
  const image = g.input(DIT_IO.image, 'float32', [1, 'M', c.imageProjDim]);
  const rope = g.input(DIT_IO.rope, 'float32', ['N_img', 2 * c.headDim]);

  // §5.2, §5.3, §5.5: packed order [4x, 2x, clean 1x, noisy].
  const tokens = g.op('Concat', [
    patchEmbed(g, c, clean4x, 'clean_x_embedder.proj_4x', CLEAN_EMBEDDERS.proj_4x),
    patchEmbed(g, c, clean2x, 'clean_x_embedder.proj_2x', CLEAN_EMBEDDERS.proj_2x),
    patchEmbed(g, c, clean, 'clean_x_embedder.proj', CLEAN_EMBEDDERS.proj),
    patchEmbed(g, c, x, 'x_embedder.proj', [c.patchSizeT, c.patchSize, c.patchSize]),
  ], { axis: 1 });
  g.output(tokens, DIT_IO.imageTokens, 'float32', [1, 'N_img', d]);
  // The table's two halves, made here once per call so that on WebGPU they stay on the GPU for every block.
  const [cos, sin] = g.opN('Split', [rope, g.ints([c.headDim, c.headDim])], 2, { axis: 1 });
  g.output(cos, DIT_IO.ropeCos, 'float32', ['N_img', c.headDim]);
  g.output(sin, DIT_IO.ropeSin, 'float32', ['N_img', c.headDim]);

  // §5.6.1: temb = MLP_t(sin t) + MLP_g(sin g) + MLP_txt(pooled), in float32.
  let temb = mlpF32(g, tProj, 'time_text_embed.timestep_embedder', TIMESTEP_CHANNELS, d);
  if (gProj) temb = g.op('Add', [temb, mlpF32(g, gProj, 'time_text_embed.guidance_embedder', TIMESTEP_CHANNELS, d)]);
  temb = g.op('Add', [temb, mlpF32(g, pooled, 'time_text_embed.text_embedder', c.pooledProjectionDim, d)]);
  g.output(temb, DIT_IO.temb, 'float32', [1, d]);

  // §5.6.2: the token refiner on the valid tokens; the masked mean is then a plain mean.
  const textPooled = g.op('ReduceMean', [text, g.ints([1])], { keepdims: 0 });
  const tRef = g.op('Add', [
    mlpF32(g, tProj, 'context_embedder.time_text_embed.timestep_embedder', TIMESTEP_CHANNELS, d),
    mlpF32(g, textPooled, 'context_embedder.time_text_embed.text_embedder', c.textEmbedDim, d),
  ]);
  let h = toFloat32(g, linear(g, toActivation(g, text), 'context_embedder.proj_in', c.textEmbedDim, d));
  for (let i = 0; i < c.refinerLayers; i++) h = refinerBlock(g, c, h, tRef, i, quantized);

  // §5.6.3: ClipVisionProjection up → SiLU → down; §5.6.4: image tokens first.
  const up = linear(g, toActivation(g, image), 'image_projection.up', c.imageProjDim, 3 * d);
  const projected = toFloat32(g, linear(g, silu(g, up), 'image_projection.down', 3 * d, d));
  g.output(g.op('Concat', [projected, h], { axis: 1 }), DIT_IO.contextTokens, 'float32', [1, 'N_ctx', d]);
  return g.build();
}

// ───────────────────────────── blocks ─────────────────────────────
//
// Each block is written as two fragments around its attention: `pre` (modulation, q/k/v with their RMSNorm and
// RoPE, in token-major [1, N, H·d] layout — what a Linear produces and what our WGSL kernel reads) and `post`
// (output projections, gated residuals, feed-forward). With `attention: 'inline'` both fragments and an ONNX
// attention make one graph (the wasm EP, parity tests); with 'external' they are two graphs and the attention
// between them is our flash-attention kernel (src/kernels/flashAttention.ts) on the WebGPU EP, which never
// materialises the N×N scores (24 × 18.5k² floats at the 640 buckets would not fit any GPU binding).

function blockInputs(g: Graph, c: DiTConfig) {
  const d = hiddenSize(c);
  return {
    x: g.input(DIT_IO.imageTokens, 'float32', [1, 'N_img', d]),
    ctx: g.input(DIT_IO.contextTokens, 'float32', [1, 'N_ctx', d]),
  };
}

function ropeInputs(g: Graph, c: DiTConfig) {
  return {
    temb: g.input(DIT_IO.temb, 'float32', [1, hiddenSize(c)]),
    cos: g.input(DIT_IO.ropeCos, 'float32', ['N_img', c.headDim]),
    sin: g.input(DIT_IO.ropeSin, 'float32', ['N_img', c.headDim]),
  };
}

function blockOutputs(g: Graph, c: DiTConfig, x: string, ctx: string): void {
  g.output(x, DIT_IO.imageTokensOut, 'float32', [1, 'N_img', hiddenSize(c)]);
  g.output(ctx, DIT_IO.contextTokensOut, 'float32', [1, 'N_ctx', hiddenSize(c)]);
}

/** A projection y [1, N, D] as token-major heads [1, N, H, d], RMS-normed per head with the learned weight `norm`. */
function normedHeads(g: Graph, c: DiTConfig, y: string, norm: string | null): string {
  const h = g.op('Reshape', [y, g.ints([1, -1, c.heads, c.headDim])]);
  return norm ? rmsNorm(g, h, DIT_NORM_EPS, { tensor: norm, dim: c.headDim }) : h;
}

/** The q, k, v projections [1, N, D] of one stream, before heads, norms and RoPE. */
interface Projections { q: string; k: string; v: string }

/** [1, N, H, d] → [1, N, H·d] */
function flatHeads(g: Graph, c: DiTConfig, x: string): string {
  return g.op('Reshape', [x, g.ints([1, -1, c.heads * c.headDim])]);
}

/** The RoPE tables [N_img, d] as [N_img, 1, d], to broadcast over the heads of token-major [1, N, H, d]. */
function perHeadTables(g: Graph, cos: string, sin: string): [string, string] {
  const shape = g.ints([0, 1, -1]);
  return [g.op('Reshape', [cos, shape]), g.op('Reshape', [sin, shape])];
}

interface DualModulation {
  /** The AdaLN parameters [1, 6, D] of the image and the context stream, float32. */
  modX: string;
  modC: string;
  /** The streams modulated for the attention (activation dtype): what q, k, v are projected from. */
  xn: string;
  cn: string;
}

/** The dual block's AdaLN modulations and its attention inputs LN(x)·(1 + scale) + shift per stream. */
function dualModulation(g: Graph, c: DiTConfig, x: string, ctx: string, temb: string, quantized: boolean): DualModulation {
  const d = hiddenSize(c);
  const p = DUAL_BLOCK;
  const modX = modulationParams(g, temb, `${p}.norm1.linear`, 6, d, quantized);
  const modC = modulationParams(g, temb, `${p}.norm1_context.linear`, 6, d, quantized);
  const [shift1, scale1] = splitModulation(g, modX, 6);
  const [cShift1, cScale1] = splitModulation(g, modC, 6);
  return { modX, modC, xn: toActivation(g, modulate(g, x, d, scale1, shift1)), cn: toActivation(g, modulate(g, ctx, d, cScale1, cShift1)) };
}

/** The dual block's q, k, v projections as graph linears: to_* on the image stream, add_*_proj on the context. */
function dualProjections(g: Graph, c: DiTConfig, xn: string, cn: string, quantized: boolean): { image: Projections; context: Projections } {
  const d = hiddenSize(c);
  const p = `${DUAL_BLOCK}.attn`;
  const proj = (n: string, prefix: string) => blockLinear(g, n, prefix, d, d, quantized);
  return {
    image: { q: proj(xn, `${p}.to_q`), k: proj(xn, `${p}.to_k`), v: proj(xn, `${p}.to_v`) },
    context: { q: proj(cn, `${p}.add_q_proj`), k: proj(cn, `${p}.add_k_proj`), v: proj(cn, `${p}.add_v_proj`) },
  };
}

/** Joint q, k, v [1, N_img + N_ctx, H·d] from the projections: per-head RMSNorm, RoPE on the image heads only. */
function dualJointHeads(g: Graph, c: DiTConfig, image: Projections, context: Projections, cos: string, sin: string): Projections {
  const p = `${DUAL_BLOCK}.attn`;
  // Image heads get RoPE, the context heads (SigLIP and text) do not; one joint attention over both.
  const [c3, s3] = perHeadTables(g, cos, sin);
  const joint = (imageHeads: string, contextHeads: string) => flatHeads(g, c, g.op('Concat', [imageHeads, contextHeads], { axis: 1 }));
  return {
    q: joint(applyRope(g, normedHeads(g, c, image.q, `${p}.norm_q.weight`), c3, s3), normedHeads(g, c, context.q, `${p}.norm_added_q.weight`)),
    k: joint(applyRope(g, normedHeads(g, c, image.k, `${p}.norm_k.weight`), c3, s3), normedHeads(g, c, context.k, `${p}.norm_added_k.weight`)),
    v: joint(normedHeads(g, c, image.v, null), normedHeads(g, c, context.v, null)),
  };
}

interface DualPre { q: string; k: string; v: string; modX: string; modC: string }

/** Dual block up to its attention (§5.7): joint q, k, v [1, N_img + N_ctx, H·d] and the two modulations [1, 6, D]. */
function dualPre(g: Graph, c: DiTConfig, x: string, ctx: string, temb: string, cos: string, sin: string, quantized: boolean): DualPre {
  const m = dualModulation(g, c, x, ctx, temb, quantized);
  const { image, context } = dualProjections(g, c, m.xn, m.cn, quantized);
  return { ...dualJointHeads(g, c, image, context, cos, sin), modX: m.modX, modC: m.modC };
}

interface DualAttentionOut {
  /** The streams after the attention's gated residual, float32. */
  x1: string;
  c1: string;
  /** Their second modulation, the feed-forwards' inputs (activation dtype). */
  xn: string;
  cn: string;
}

/** The dual block's attention residuals x + gate1·y, ctx + c_gate1·y_c and their second modulation (the feed-forwards' inputs). */
function dualAttentionResidual(g: Graph, c: DiTConfig, x: string, ctx: string, yImage: string, yContext: string, modX: string, modC: string): DualAttentionOut {
  const d = hiddenSize(c);
  const [, , gate1, shift2, scale2] = splitModulation(g, modX, 6);
  const [, , cGate1, cShift2, cScale2] = splitModulation(g, modC, 6);
  const x1 = gatedResidual(g, x, yImage, gate1);
  const c1 = gatedResidual(g, ctx, yContext, cGate1);
  return { x1, c1, xn: toActivation(g, modulate(g, x1, d, scale2, shift2)), cn: toActivation(g, modulate(g, c1, d, cScale2, cShift2)) };
}

/** Dual block from its attention o [1, N_img + N_ctx, H·d] to the feed-forwards' inputs. */
function dualAttentionOut(g: Graph, c: DiTConfig, x: string, ctx: string, o: string, modX: string, modC: string, quantized: boolean): DualAttentionOut {
  const d = hiddenSize(c);
  const [oImage, oContext] = g.opN('Split', [o, tokenCounts(g, x, ctx)], 2, { axis: 1 });
  const yImage = blockLinear(g, oImage, `${DUAL_BLOCK}.attn.to_out.0`, d, d, quantized);
  const yContext = blockLinear(g, oContext, `${DUAL_BLOCK}.attn.to_add_out`, d, d, quantized);
  return dualAttentionResidual(g, c, x, ctx, yImage, yContext, modX, modC);
}

/** The dual block's last residuals: x1 + gate2·ff(xn), c1 + c_gate2·ff_context(cn). */
function dualFeedForwardResidual(g: Graph, x1: string, c1: string, ffX: string, ffC: string, modX: string, modC: string): [string, string] {
  const gate2 = splitModulation(g, modX, 6)[5];
  const cGate2 = splitModulation(g, modC, 6)[5];
  return [gatedResidual(g, x1, ffX, gate2), gatedResidual(g, c1, ffC, cGate2)];
}

/** Dual block after its attention: o [1, N_img + N_ctx, H·d] → the updated streams. */
function dualPost(g: Graph, c: DiTConfig, x: string, ctx: string, o: string, modX: string, modC: string, quantized: boolean): [string, string] {
  const a = dualAttentionOut(g, c, x, ctx, o, modX, modC, quantized);
  const ffX = feedForward(g, c, a.xn, `${DUAL_BLOCK}.ff`, quantized);
  const ffC = feedForward(g, c, a.cn, `${DUAL_BLOCK}.ff_context`, quantized);
  return dualFeedForwardResidual(g, a.x1, a.c1, ffX, ffC, modX, modC);
}

/** The single block's modulation [1, 3, D] and the joint stream [x ; ctx] modulated by it, n (activation dtype). */
function singleModulation(g: Graph, c: DiTConfig, x: string, ctx: string, temb: string, quantized: boolean): { n: string; mod: string } {
  const d = hiddenSize(c);
  const s = g.op('Concat', [x, ctx], { axis: 1 });
  const mod = modulationParams(g, temb, `${SINGLE_BLOCK}.norm.linear`, 3, d, quantized);
  const [shift, scale] = splitModulation(g, mod, 3);
  return { n: toActivation(g, modulate(g, s, d, scale, shift)), mod };
}

/** The single block's q, k, v projections of n as graph linears. */
function singleProjections(g: Graph, c: DiTConfig, n: string, quantized: boolean): Projections {
  const d = hiddenSize(c);
  const proj = (name: string) => blockLinear(g, n, `${SINGLE_BLOCK}.attn.${name}`, d, d, quantized);
  return { q: proj('to_q'), k: proj('to_k'), v: proj('to_v') };
}

/** q, k, v [1, N, H·d] from the projections: per-head RMSNorm, RoPE on the image part (token counts `sizes`) of q and k. */
function singleHeads(g: Graph, c: DiTConfig, proj: Projections, sizes: string, cos: string, sin: string): Projections {
  const p = `${SINGLE_BLOCK}.attn`;
  const [c3, s3] = perHeadTables(g, cos, sin);
  const ropeImagePart = (heads: string) => {
    const [image, context] = g.opN('Split', [heads, sizes], 2, { axis: 1 });
    return flatHeads(g, c, g.op('Concat', [applyRope(g, image, c3, s3), context], { axis: 1 }));
  };
  return {
    q: ropeImagePart(normedHeads(g, c, proj.q, `${p}.norm_q.weight`)),
    k: ropeImagePart(normedHeads(g, c, proj.k, `${p}.norm_k.weight`)),
    v: flatHeads(g, c, normedHeads(g, c, proj.v, null)),
  };
}

interface SingleAttentionInputs { q: string; k: string; v: string; n: string; mod: string }

/** Single block up to its attention (§5.8): q, k, v [1, N, H·d], the modulated joint stream n and the modulation [1, 3, D]. */
function singleAttentionInputs(g: Graph, c: DiTConfig, x: string, ctx: string, temb: string, cos: string, sin: string, quantized: boolean): SingleAttentionInputs {
  const { n, mod } = singleModulation(g, c, x, ctx, temb, quantized);
  return { ...singleHeads(g, c, singleProjections(g, c, n, quantized), tokenCounts(g, x, ctx), cos, sin), n, mod };
}

/** The single block's MLP branch GELU(proj_mlp(n)) [1, N, mlp]. */
function singleMlp(g: Graph, c: DiTConfig, n: string, quantized: boolean): string {
  return geluTanh(g, blockLinear(g, n, `${SINGLE_BLOCK}.proj_mlp`, hiddenSize(c), mlpWidth(c), quantized));
}

/** s + gate·out (float32) for the joint stream s = [x ; ctx], split back into the two streams. */
function singleResidual(g: Graph, x: string, ctx: string, out: string, mod: string): [string, string] {
  const s = g.op('Concat', [x, ctx], { axis: 1 });
  const [, , gate] = splitModulation(g, mod, 3);
  const [x1, c1] = g.opN('Split', [gatedResidual(g, s, out, gate), tokenCounts(g, x, ctx)], 2, { axis: 1 });
  return [x1, c1];
}

/** Single block after its attention: s + gate·proj_out([o ; mlp]), split back into the two streams. */
function singlePost(g: Graph, c: DiTConfig, x: string, ctx: string, o: string, mlp: string, mod: string, quantized: boolean): [string, string] {
  const out = blockLinear(g, g.op('Concat', [o, mlp], { axis: 2 }), `${SINGLE_BLOCK}.proj_out`, hiddenSize(c) + mlpWidth(c), hiddenSize(c), quantized);
  return singleResidual(g, x, ctx, out, mod);
}

/** softmax(q·kᵀ/√d)·v inside the graph, for token-major [1, N, H·d] q, k, v (the inline variant). */
function inlineAttention(g: Graph, c: DiTConfig, q: string, k: string, v: string): string {
  const heads = (t: string) => splitHeads(g, t, c.heads, c.headDim);
  return mergeHeads(g, attention(g, heads(q), heads(k), heads(v), c.headDim), c.heads, c.headDim);
}

const attnShape = (c: DiTConfig) => [1, 'N_tot', c.heads * c.headDim];

/**
 * One dual-stream block (§5.7), weights `transformer_blocks.{i}.*` as inputs. Inputs: image_tokens [1, N_img, D],
 * context_tokens [1, N_ctx, D], temb [1, D], rope_cos/rope_sin [N_img, headDim]; outputs the updated streams.
 */
export function buildDiTDualBlock(c: DiTConfig, graphOptions: DiTGraphOptions = {}): BuiltGraph {
  const { dtype, quantized } = options(graphOptions);
  const g = new Graph('dit_dual_block', dtype);
  const { x, ctx } = blockInputs(g, c);
  const { temb, cos, sin } = ropeInputs(g, c);
  const pre = dualPre(g, c, x, ctx, temb, cos, sin, quantized);
  const [x2, c2] = dualPost(g, c, x, ctx, inlineAttention(g, c, pre.q, pre.k, pre.v), pre.modX, pre.modC, quantized);
  blockOutputs(g, c, x2, c2);
  return g.build();
}

/** The dual block up to its attention: outputs q, k, v [1, N_tot, H·d] (activation dtype) and mod_x, mod_c [1, 6, D]. */
export function buildDiTDualPre(c: DiTConfig, graphOptions: DiTGraphOptions = {}): BuiltGraph {
  const { dtype, quantized } = options(graphOptions);
  const g = new Graph('dit_dual_pre', dtype);
  const { x, ctx } = blockInputs(g, c);
  const { temb, cos, sin } = ropeInputs(g, c);
  const pre = dualPre(g, c, x, ctx, temb, cos, sin, quantized);
  for (const name of ['q', 'k', 'v'] as const) g.output(pre[name], DIT_IO[name], dtype, attnShape(c));
  g.output(pre.modX, DIT_IO.modX, 'float32', [1, 6, hiddenSize(c)]);
  g.output(pre.modC, DIT_IO.modC, 'float32', [1, 6, hiddenSize(c)]);
  return g.build();
}

/** The dual block after its attention: inputs the streams, attention [1, N_tot, H·d], mod_x and mod_c. */
export function buildDiTDualPost(c: DiTConfig, graphOptions: DiTGraphOptions = {}): BuiltGraph {
  const { dtype, quantized } = options(graphOptions);
  const g = new Graph('dit_dual_post', dtype);
  const { x, ctx } = blockInputs(g, c);
  const o = g.input(DIT_IO.attention, dtype, attnShape(c));
  const modX = g.input(DIT_IO.modX, 'float32', [1, 6, hiddenSize(c)]);
  const modC = g.input(DIT_IO.modC, 'float32', [1, 6, hiddenSize(c)]);
  const [x2, c2] = dualPost(g, c, x, ctx, o, modX, modC, quantized);
  blockOutputs(g, c, x2, c2);
  return g.build();
}

/**
 * One single-stream block (§5.8), weights `single_transformer_blocks.{i}.*` as inputs; same inputs and outputs as
 * the dual block (the streams are joined inside and split again, so the engine's loop is uniform).
 */
export function buildDiTSingleBlock(c: DiTConfig, graphOptions: DiTGraphOptions = {}): BuiltGraph {
  const { dtype, quantized } = options(graphOptions);
  const g = new Graph('dit_single_block', dtype);
  const { x, ctx } = blockInputs(g, c);
  const { temb, cos, sin } = ropeInputs(g, c);
  const pre = singleAttentionInputs(g, c, x, ctx, temb, cos, sin, quantized);
  const mlp = singleMlp(g, c, pre.n, quantized);
  const [x1, c1] = singlePost(g, c, x, ctx, inlineAttention(g, c, pre.q, pre.k, pre.v), mlp, pre.mod, quantized);
  blockOutputs(g, c, x1, c1);
  return g.build();
}

/** The single block up to its attention: outputs q, k, v [1, N_tot, H·d], mlp [1, N_tot, mlp] and mod [1, 3, D]. */
export function buildDiTSinglePre(c: DiTConfig, graphOptions: DiTGraphOptions = {}): BuiltGraph {
  const { dtype, quantized } = options(graphOptions);
  const g = new Graph('dit_single_pre', dtype);
  const { x, ctx } = blockInputs(g, c);
  const { temb, cos, sin } = ropeInputs(g, c);
  const pre = singleAttentionInputs(g, c, x, ctx, temb, cos, sin, quantized);
  for (const name of ['q', 'k', 'v'] as const) g.output(pre[name], DIT_IO[name], dtype, attnShape(c));
  g.output(singleMlp(g, c, pre.n, quantized), DIT_IO.mlp, dtype, [1, 'N_tot', mlpWidth(c)]);
  g.output(pre.mod, DIT_IO.mod, 'float32', [1, 3, hiddenSize(c)]);
  return g.build();
}

/** The single block after its attention: inputs the streams, attention, mlp and mod. */
export function buildDiTSinglePost(c: DiTConfig, graphOptions: DiTGraphOptions = {}): BuiltGraph {
  const { dtype, quantized } = options(graphOptions);
  const g = new Graph('dit_single_post', dtype);
  const { x, ctx } = blockInputs(g, c);
  const o = g.input(DIT_IO.attention, dtype, attnShape(c));
  const mlp = g.input(DIT_IO.mlp, dtype, [1, 'N_tot', mlpWidth(c)]);
  const mod = g.input(DIT_IO.mod, 'float32', [1, 3, hiddenSize(c)]);
  const [x1, c1] = singlePost(g, c, x, ctx, o, mlp, mod, quantized);
  blockOutputs(g, c, x1, c1);
  return g.build();
}

/**
 * Block 0's AdaLN-modulated image tokens LN(x)·(1 + scale_msa) + shift_msa (TeaCache's probe, §8), float32
 * [1, N_img, D]. Its weight inputs have the same names as the dual block's, so the engine feeds it block 0's.
 */
export function buildDiTBlockModulation(c: DiTConfig, graphOptions: DiTGraphOptions = {}): BuiltGraph {
  const { dtype, quantized } = options(graphOptions);
  const g = new Graph('dit_block_modulation', dtype);
  const d = hiddenSize(c);
  const x = g.input(DIT_IO.imageTokens, 'float32', [1, 'N_img', d]);
  const temb = g.input(DIT_IO.temb, 'float32', [1, d]);
  const [shift1, scale1] = modulation(g, temb, `${DUAL_BLOCK}.norm1.linear`, 6, d, quantized);
  g.output(modulate(g, x, d, scale1, shift1), DIT_IO.modulated, 'float32', [1, 'N_img', d]);
  return g.build();
}

// ───────────────────────────── head ─────────────────────────────

/**
 * The output head (§5.9): norm_out (scale first, then shift) and proj_out in float32 on the last T'·H'·W' image
 * tokens, then unpatchify `b (t h w) (c pt ph pw) → b c (t pt) (h ph) (w pw)`. Inputs: image_tokens [1, N_img, D],
 * temb [1, D], grid int64 [3] = (T', H', W') post-patch. Output: velocity [1, C_out, T, H, W] float32.
 */
export function buildDiTHead(c: DiTConfig, graphOptions: DiTGraphOptions = {}): BuiltGraph {
  const { dtype } = options(graphOptions);
  const g = new Graph('dit_head', dtype);
  const d = hiddenSize(c);
  const x = g.input(DIT_IO.imageTokens, 'float32', [1, 'N_img', d]);
  const temb = g.input(DIT_IO.temb, 'float32', [1, d]);
  const grid = g.input(DIT_IO.grid, 'int64', [3]);

  const emb = linearF32(g, silu(g, temb), 'norm_out.linear', d, 2 * d);
  const [scale, shift] = g.opN('Split', [g.op('Reshape', [emb, g.ints([1, 2, d])]), g.ints([1, 1])], 2, { axis: 1 });
  // Keep the noisy tokens (the last T'·H'·W'); the norm is per token, so slicing first changes nothing.
  const at = (i: number) => g.op('Slice', [grid, g.ints([i]), g.ints([i + 1])]);
  const noisy = g.op('Mul', [g.op('Mul', [at(0), at(1)]), at(2)]);
  const total = g.op('Shape', [x], { start: 1, end: 2 });
  const xs = g.op('Slice', [x, g.op('Sub', [total, noisy]), total, g.ints([1])]);
  const y = linearF32(g, modulate(g, xs, d, scale, shift), 'proj_out', d, patchValues(c));

  const [pt, ph, pw] = [c.patchSizeT, c.patchSize, c.patchSize];
  const patches = g.op('Reshape', [y, g.op('Concat', [grid, g.ints([c.outChannels, pt, ph, pw])], { axis: 0 })]); // [T', H', W', C, pt, ph, pw]
  const moved = g.op('Transpose', [patches], { perm: [3, 0, 4, 1, 5, 2, 6] }); // [C, T', pt, H', ph, W', pw]
  const full = g.op('Concat', [g.ints([1, c.outChannels]), g.op('Mul', [grid, g.ints([pt, ph, pw])])], { axis: 0 });
  g.output(g.op('Reshape', [moved, full]), DIT_IO.velocity, 'float32', [1, c.outChannels, 'T', 'H', 'W']);
  return g.build();
}

// ───────────────────────────── block plans ─────────────────────────────
//
// What the engine runs for one block, in order: ONNX graphs, the flash-attention kernel and the 4-bit matmul
// kernel, passing values by name (the streams image_tokens, context_tokens, temb, rope_cos, rope_sin come in;
// image_tokens_out and context_tokens_out go out). A plan only describes; src/worker/dit.ts runs it.

/** One checkpoint Linear read by a kernel product: the inputs of the plan's `linearWeights` graph that hold it. */
export interface KernelLinearPart {
  /** The checkpoint Linear's prefix (`{i}` for the block). */
  prefix: string;
  /** Its 4-bit blocks, scales and bias. */
  blocks: string;
  scales: string;
  bias: string;
  /** Its output features. */
  n: number;
}

/**
 * One product the 4-bit matmul kernel computes: y [1, N, n] = x [1, N, k]·W[:, kOffset : kOffset + k]ᵀ (+ b)
 * (+ GELU), W being the parts' weights with their rows stacked in order (q, k, v as one [3D, D] weight), b their
 * biases likewise.
 */
export interface KernelLinear {
  parts: KernelLinearPart[];
  /** The stored weights' input width (K of their MatMulNBits blocks). */
  storedK: number;
  /** The columns this product reads: [kOffset, kOffset + k), on 32-wide block boundaries when k < storedK (one part only). */
  kOffset: number;
  k: number;
  /** The sum of the parts' n. */
  n: number;
  /** False for the first of proj_out's two halves, whose bias the second adds. */
  bias: boolean;
  epilogue: 'none' | 'gelu_tanh';
}

/** Which token rows of the block's streams a kernel stage covers: the image tokens (N_img) or the context tokens (N_ctx). */
export type StreamRows = 'image' | 'context';

export type BlockStage =
  | { op: 'graph'; graph: BuiltGraph }
  | { op: 'attention'; q: string; k: string; v: string; out: string }
  /** `rows`: of a joint [1, N_img + N_ctx, k] value, only the image tokens (the first N_img) or the context tokens (the last N_ctx). */
  | { op: 'linear'; x: string; rows?: StreamRows; out: string; linear: KernelLinear }
  /**
   * src/kernels/qkvHeads.ts: the `rows` of a stacked projection qkv [1, ·, 3·H·d] (its own rows, or its part of a
   * joint value) RMS-normed per head with the weight inputs normQ/normK, RoPE on image rows, into their rows of the
   * joint q, k, v [1, N_img + N_ctx, H·d].
   */
  | { op: 'heads'; qkv: string; rows: StreamRows; normQ: string; normK: string }
  /**
   * src/kernels/adaNorm.ts on the `rows` of stream x [1, ·, D] (f32), chunks of modulation parameters mod [1, ·, D]:
   * residual.out = x + mod[gate]·(y + y2) (f32; y, y2 its rows or its part of a joint value), and/or
   * modulation.out = LN(that)·(1 + mod[scale]) + mod[shift] (activation dtype; into its part of a joint value when
   * `joint`).
   */
  /** src/kernels/q4Gemv.ts: a block's AdaLN parameters out [1, chunks, D] (f32) = W·SiLU(x) + b, x = temb [1, D]. */
  | { op: 'adaParams'; x: string; out: string; chunks: number; linear: KernelLinear }
  | {
      op: 'adaNorm';
      x: string;
      mod: string;
      rows: StreamRows;
      residual?: { y: string; y2?: string; gate: number; out: string };
      modulation?: { shift: number; scale: number; out: string; joint: boolean };
    };

export interface BlockPlan {
  stages: BlockStage[];
  /** A graph with weight inputs only, the kernel linears' weights (so weight loading and residency serve them as any graph's); null without kernel linears. */
  linearWeights: BuiltGraph | null;
}

/** Declares 4-bit Linears' blocks, scales and bias as inputs of `g` under the names ops.linear gives them. */
function kernelLinearParts(g: Graph, prefixes: string[], inF: number, outF: number): KernelLinearPart[] {
  return prefixes.map((prefix) => {
    const name = inputName(prefix);
    return {
      prefix,
      blocks: g.weight(`${name}_q4`, `${prefix}.weight`, [outF, inF], 'q4'),
      scales: g.weightScales(`${name}_scales`, `${prefix}.weight`, [outF, inF]),
      bias: g.weight(`${name}_bias`, `${prefix}.bias`, [outF]),
      n: outF,
    };
  });
}

/** A product over whole weights (rows of several stacked), with bias. */
function wholeLinear(parts: KernelLinearPart[], k: number, epilogue: KernelLinear['epilogue']): KernelLinear {
  return { parts, storedK: k, kOffset: 0, k, n: parts.reduce((n, p) => n + p.n, 0), bias: true, epilogue };
}

function linearStage(x: string, out: string, parts: KernelLinearPart[], k: number, epilogue: KernelLinear['epilogue'], rows?: StreamRows): BlockStage {
  return { op: 'linear', x, ...(rows ? { rows } : {}), out, linear: wholeLinear(parts, k, epilogue) };
}

/** A block's AdaLN parameters `chunks` × D from temb, through the Linear `prefix` declared in `g`. */
function adaParamsStage(g: Graph, c: DiTConfig, prefix: string, out: string, chunks: number): BlockStage {
  const d = hiddenSize(c);
  return { op: 'adaParams', x: DIT_IO.temb, out, chunks, linear: wholeLinear(kernelLinearParts(g, [prefix], d, chunks * d), d, 'none') };
}

function graphStage(graph: BuiltGraph): BlockStage {
  return { op: 'graph', graph };
}

function attentionStage(): BlockStage {
  return { op: 'attention', q: DIT_IO.q, k: DIT_IO.k, v: DIT_IO.v, out: DIT_IO.attention };
}

/** The learned per-head RMSNorm weights [headDim] of q and k, as weight inputs of `g` (the names ops.rmsNorm gives them). */
function headNormWeights(g: Graph, c: DiTConfig, q: string, k: string): { normQ: string; normK: string } {
  const norm = (tensor: string) => g.weight(inputName(tensor), tensor, [c.headDim]);
  return { normQ: norm(q), normK: norm(k) };
}

/**
 * The dual block on WebGPU with 4-bit weights, all in our kernels. Per stream: AdaLN parameters → modulation →
 * stacked q/k/v → heads (norms, RoPE) → joint attention → out projection → residual and second modulation →
 * feed-forward → residual.
 */
function dualKernelPlan(c: DiTConfig, dtype: OnnxDType): BlockPlan {
  const d = hiddenSize(c);
  const m = mlpWidth(c);
  const w = new Graph('dit_dual_kernel_weights', dtype);
  const attn = (names: string[]) => names.map((n) => `${DUAL_BLOCK}.attn.${n}`);
  const qkv = kernelLinearParts(w, attn(['to_q', 'to_k', 'to_v']), d, d);
  const qkvContext = kernelLinearParts(w, attn(['add_q_proj', 'add_k_proj', 'add_v_proj']), d, d);
  const out = kernelLinearParts(w, attn(['to_out.0']), d, d);
  const outContext = kernelLinearParts(w, attn(['to_add_out']), d, d);
  const ff = (stream: 'ff' | 'ff_context') => ({
    up: kernelLinearParts(w, [`${DUAL_BLOCK}.${stream}.net.0.proj`], d, m),
    down: kernelLinearParts(w, [`${DUAL_BLOCK}.${stream}.net.2`], m, d),
  });
  const [ffX, ffC] = [ff('ff'), ff('ff_context')];
  const imageNorms = headNormWeights(w, c, `${DUAL_BLOCK}.attn.norm_q.weight`, `${DUAL_BLOCK}.attn.norm_k.weight`);
  const contextNorms = headNormWeights(w, c, `${DUAL_BLOCK}.attn.norm_added_q.weight`, `${DUAL_BLOCK}.attn.norm_added_k.weight`);
  // AdaLayerNormZero's chunks: shift, scale, gate of the attention; shift, scale, gate of the feed-forward.
  const stream = (rows: StreamRows) => rows === 'image'
    ? { x: DIT_IO.imageTokens, mod: DIT_IO.modX, qkvIn: DIT_IO.qkvIn, qkv: DIT_IO.qkv, norms: imageNorms, attentionOut: DIT_IO.attentionOut, mid: DIT_IO.imageTokensMid, ffIn: DIT_IO.ffIn, ffOut: DIT_IO.ffOut, out: DIT_IO.imageTokensOut }
    : { x: DIT_IO.contextTokens, mod: DIT_IO.modC, qkvIn: DIT_IO.qkvContextIn, qkv: DIT_IO.qkvContext, norms: contextNorms, attentionOut: DIT_IO.attentionContextOut, mid: DIT_IO.contextTokensMid, ffIn: DIT_IO.ffContextIn, ffOut: DIT_IO.ffContextOut, out: DIT_IO.contextTokensOut };
  const [image, context] = [stream('image'), stream('context')];
  const firstNorm = (rows: StreamRows): BlockStage => {
    const s = stream(rows);
    return { op: 'adaNorm', x: s.x, mod: s.mod, rows, modulation: { shift: 0, scale: 1, out: s.qkvIn, joint: false } };
  };
  const heads = (rows: StreamRows): BlockStage => ({ op: 'heads', qkv: stream(rows).qkv, rows, ...stream(rows).norms });
  const attentionResidual = (rows: StreamRows): BlockStage => {
    const s = stream(rows);
    return { op: 'adaNorm', x: s.x, mod: s.mod, rows, residual: { y: s.attentionOut, gate: 2, out: s.mid }, modulation: { shift: 3, scale: 4, out: s.ffIn, joint: false } };
  };
  const feedForwardResidual = (rows: StreamRows): BlockStage => {
    const s = stream(rows);
    return { op: 'adaNorm', x: s.mid, mod: s.mod, rows, residual: { y: s.ffOut, gate: 5, out: s.out } };
  };
  const stages: BlockStage[] = [
    adaParamsStage(w, c, `${DUAL_BLOCK}.norm1.linear`, DIT_IO.modX, 6),
    adaParamsStage(w, c, `${DUAL_BLOCK}.norm1_context.linear`, DIT_IO.modC, 6),
    firstNorm('image'),
    firstNorm('context'),
    linearStage(image.qkvIn, image.qkv, qkv, d, 'none'),
    linearStage(context.qkvIn, context.qkv, qkvContext, d, 'none'),
    heads('image'),
    heads('context'),
    attentionStage(),
    linearStage(DIT_IO.attention, image.attentionOut, out, d, 'none', 'image'),
    linearStage(DIT_IO.attention, context.attentionOut, outContext, d, 'none', 'context'),
    attentionResidual('image'),
    attentionResidual('context'),
    linearStage(DIT_IO.ffIn, DIT_IO.ffHidden, ffX.up, d, 'gelu_tanh'),
    linearStage(DIT_IO.ffHidden, DIT_IO.ffOut, ffX.down, m, 'none'),
    linearStage(DIT_IO.ffContextIn, DIT_IO.ffContextHidden, ffC.up, d, 'gelu_tanh'),
    linearStage(DIT_IO.ffContextHidden, DIT_IO.ffContextOut, ffC.down, m, 'none'),
    feedForwardResidual('image'),
    feedForwardResidual('context'),
  ];
  return { stages, linearWeights: w.build() };
}

/**
 * The single block on WebGPU with 4-bit weights, all in our kernels: AdaLN parameters → modulation of both streams
 * into one joint value → stacked q/k/v and proj_mlp + GELU → heads → attention →
 * proj_out as two products, one per half of its [o ; mlp] input (so o and mlp need no concatenated copy) → residual
 * per stream, summing the halves.
 */
function singleKernelPlan(c: DiTConfig, dtype: OnnxDType): BlockPlan {
  const d = hiddenSize(c);
  const m = mlpWidth(c);
  const w = new Graph('dit_single_kernel_weights', dtype);
  const qkv = kernelLinearParts(w, ['to_q', 'to_k', 'to_v'].map((n) => `${SINGLE_BLOCK}.attn.${n}`), d, d);
  const mlp = kernelLinearParts(w, [`${SINGLE_BLOCK}.proj_mlp`], d, m);
  const out = kernelLinearParts(w, [`${SINGLE_BLOCK}.proj_out`], d + m, d);
  const norms = headNormWeights(w, c, `${SINGLE_BLOCK}.attn.norm_q.weight`, `${SINGLE_BLOCK}.attn.norm_k.weight`);
  const outHalf = (x: string, y: string, kOffset: number, k: number, bias: boolean): BlockStage =>
    ({ op: 'linear', x, out: y, linear: { parts: out, storedK: d + m, kOffset, k, n: d, bias, epilogue: 'none' } });
  // AdaLayerNormZeroSingle's chunks: shift, scale, gate.
  const streamOf = (rows: StreamRows) => (rows === 'image' ? { x: DIT_IO.imageTokens, out: DIT_IO.imageTokensOut } : { x: DIT_IO.contextTokens, out: DIT_IO.contextTokensOut });
  const norm = (rows: StreamRows): BlockStage => ({ op: 'adaNorm', x: streamOf(rows).x, mod: DIT_IO.mod, rows, modulation: { shift: 0, scale: 1, out: DIT_IO.normed, joint: true } });
  const residual = (rows: StreamRows): BlockStage =>
    ({ op: 'adaNorm', x: streamOf(rows).x, mod: DIT_IO.mod, rows, residual: { y: DIT_IO.projOutAttention, y2: DIT_IO.projOutMlp, gate: 2, out: streamOf(rows).out } });
  const stages: BlockStage[] = [
    adaParamsStage(w, c, `${SINGLE_BLOCK}.norm.linear`, DIT_IO.mod, 3),
    norm('image'),
    norm('context'),
    linearStage(DIT_IO.normed, DIT_IO.qkv, qkv, d, 'none'),
    linearStage(DIT_IO.normed, DIT_IO.mlp, mlp, d, 'gelu_tanh'),
    { op: 'heads', qkv: DIT_IO.qkv, rows: 'image', ...norms },
    { op: 'heads', qkv: DIT_IO.qkv, rows: 'context', ...norms },
    attentionStage(),
    outHalf(DIT_IO.attention, DIT_IO.projOutAttention, 0, d, false),
    outHalf(DIT_IO.mlp, DIT_IO.projOutMlp, d, m, true),
    residual('image'),
    residual('context'),
  ];
  return { stages, linearWeights: w.build() };
}

export interface DiTGraphs {
  embed: BuiltGraph;
  /** Whole blocks with their attention inside (attention 'inline'). */
  dual: BuiltGraph;
  single: BuiltGraph;
  /** The blocks split around an external attention (attention 'external', linears 'onnx'); absent otherwise. */
  split?: { dualPre: BuiltGraph; dualPost: BuiltGraph; singlePre: BuiltGraph; singlePost: BuiltGraph };
  /** What the engine runs per block, whichever the options: the whole-block graph, or graphs and kernels. */
  blocks: { dual: BlockPlan; single: BlockPlan };
  head: BuiltGraph;
  /** Block 0's modulated input, for TeaCache. */
  modulation: BuiltGraph;
}

/**
 * Builds every graph of the DiT for these options. Throws DiTConfigError when `linears: 'kernel'` is asked for
 * without 4-bit linears, an external attention, or a hidden size that is a multiple of 32.
 */
export function buildDiTGraphs(c: DiTConfig, graphOptions: DiTGraphOptions = {}): DiTGraphs {
  const { dtype, quantized } = options(graphOptions);
  const external = graphOptions.attention === 'external';
  const kernelLinears = graphOptions.linears === 'kernel';
  if (kernelLinears && !(quantized && external && hiddenSize(c) % 32 === 0)) {
    throw new DiTConfigError(`Linears in the 4-bit kernel need quantized: true, attention: 'external' and a hidden size that is a multiple of 32 (this one: ${hiddenSize(c)}).`);
  }
  const dual = buildDiTDualBlock(c, graphOptions);
  const single = buildDiTSingleBlock(c, graphOptions);
  const split = external && !kernelLinears
    ? { dualPre: buildDiTDualPre(c, graphOptions), dualPost: buildDiTDualPost(c, graphOptions), singlePre: buildDiTSinglePre(c, graphOptions), singlePost: buildDiTSinglePost(c, graphOptions) }
    : undefined;
  const blocks = kernelLinears
    ? { dual: dualKernelPlan(c, dtype), single: singleKernelPlan(c, dtype) }
    : split
      ? {
          dual: { stages: [graphStage(split.dualPre), attentionStage(), graphStage(split.dualPost)], linearWeights: null },
          single: { stages: [graphStage(split.singlePre), attentionStage(), graphStage(split.singlePost)], linearWeights: null },
        }
      : { dual: { stages: [graphStage(dual)], linearWeights: null }, single: { stages: [graphStage(single)], linearWeights: null } };
  return {
    embed: buildDiTEmbed(c, graphOptions),
    dual,
    single,
    ...(split ? { split } : {}),
    blocks,
    head: buildDiTHead(c, graphOptions),
    modulation: buildDiTBlockModulation(c, graphOptions),
  };
}

/**
 * Every checkpoint tensor the graphs read, with `{i}` expanded over the blocks, and its stored shape: what a
 * converter must fetch and what the real-shapes test checks against the real checkpoint.
 */
export function ditTensorShapes(c: DiTConfig, graphs: DiTGraphs): Map<string, number[]> {
  const out = new Map<string, number[]>();
  const add = (graph: BuiltGraph, blocks: number | null) => {
    for (const w of graph.weights) {
      const names = blocks === null ? [w.tensor] : Array.from({ length: blocks }, (_, i) => w.tensor.replace('{i}', String(i)));
      for (const name of names) out.set(name, w.shape);
    }
  };
  add(graphs.embed, null);
  add(graphs.dual, c.layers);
  add(graphs.single, c.singleLayers);
  add(graphs.head, null);
  return out;
}

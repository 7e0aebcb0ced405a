// The packed HunyuanVideo transformer of FramePack (HunyuanVideoTransformer3DModelPacked, framepack-reference.md §5):
// the embedders and the output head as ONNX graphs, the 20 dual and 40 single blocks as block plans
// (src/models/ditBlocks.ts, the one description of a block, run by our kernels). The embedders (patch embedders for
// the noisy and the 1x/2x/4x context latents, timestep/guidance/pooled-text embedding, the token refiner, the SigLIP
// projection) run once per call and the head once at its end: together a few percent of a step, so they stay graphs
// on onnxruntime (WebGPU or wasm), proven against the fixtures on both. Tensors passed between the graphs and the
// blocks (image tokens, context tokens, temb, RoPE cos/sin) are float32 whatever the activation dtype, so the
// residual streams and the timestep embedding stay fp32 as §5.10 advises; linears run in the activation dtype, or
// 4-bit where the options ask for it. Every size comes from the checkpoint's config.json.

import { Graph, type BuiltGraph, type WeightSet } from './graph.ts';
import type { OnnxDType } from './onnxProto.ts';
import { attention, inputName, layerNorm, linear, mergeHeads, rmsNorm, silu, splitHeads, toActivation, toFloat32 } from './ops.ts';
import { DiTConfigError } from '../errors/models.ts';
import { CLEAN_EMBEDDERS, DIT_IO, DIT_NORM_EPS, hiddenSize, mlpWidth, patchValues, TIMESTEP_CHANNELS, type DiTConfig } from './ditConfig.ts';
import { buildBlockPlans, type BlockKind, type BlockPlan } from './ditBlocks.ts';

export * from './ditConfig.ts';

export interface DiTGraphOptions {
  /** Activation dtype: 'float16' where the adapter has shader-f16, 'float32' otherwise and for parity tests. */
  dtype?: OnnxDType;
  /**
   * 4-bit weights (MatMulNBits layout, blocks of 32) for the blocks' linears whose input width is a multiple of 32
   * (attention, feed-forward and AdaLN modulation: 12.46 of the 12.87 B parameters). The token refiner, the patch
   * embedders, the timestep/text embedders, proj_in, the SigLIP projection, the output head and every norm stay
   * 16/32-bit: they are small, the head and the timestep path are fp32 by design, and the refiner's 4-bit error
   * (5–7% on the context tokens of the fixtures, against 0.05% at fp16: scripts/measureRefinerPrecision.ts) would
   * condition every block for 0.38 GB saved.
   */
  quantized?: boolean;
}

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

/** to_x(n) → heads [1, H, N, d], RMS-normed per head with the learned weight `norm`. */
function headsOf(g: Graph, c: DiTConfig, n: string, proj: string, norm: string | null, quantized: boolean): string {
  const d = hiddenSize(c);
  const h = splitHeads(g, blockLinear(g, n, proj, d, d, quantized), c.heads, c.headDim);
  return norm ? rmsNorm(g, h, DIT_NORM_EPS, { tensor: norm, dim: c.headDim }) : h;
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
  const { dtype } = options(graphOptions);
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
  // The refiner's linears stay in the activation dtype even with 4-bit blocks (see DiTGraphOptions.quantized).
  for (let i = 0; i < c.refinerLayers; i++) h = refinerBlock(g, c, h, tRef, i, false);

  // §5.6.3: ClipVisionProjection up → SiLU → down; §5.6.4: image tokens first.
  const up = linear(g, toActivation(g, image), 'image_projection.up', c.imageProjDim, 3 * d);
  const projected = toFloat32(g, linear(g, silu(g, up), 'image_projection.down', 3 * d, d));
  g.output(g.op('Concat', [projected, h], { axis: 1 }), DIT_IO.contextTokens, 'float32', [1, 'N_ctx', d]);
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

// ───────────────────────────── the whole network ─────────────────────────────

/** What the engine runs for one DiT call: the embedders' graph, the blocks' plans, the head's graph. */
export interface DiTNetwork {
  embed: BuiltGraph;
  blocks: Record<BlockKind, BlockPlan>;
  head: BuiltGraph;
}

/** Builds the DiT's graphs and block plans for these options. Throws DiTConfigError for an unsupported dtype. */
export function buildDiT(c: DiTConfig, graphOptions: DiTGraphOptions = {}): DiTNetwork {
  const { dtype, quantized } = options(graphOptions);
  return { embed: buildDiTEmbed(c, graphOptions), blocks: buildBlockPlans(c, { dtype, quantized }), head: buildDiTHead(c, graphOptions) };
}

/**
 * Every checkpoint tensor the network reads, with `{i}` expanded over the blocks, and its stored shape: what a
 * converter must fetch and what the real-shapes test checks against the real checkpoint.
 */
export function ditTensorShapes(c: DiTConfig, network: DiTNetwork): Map<string, number[]> {
  const out = new Map<string, number[]>();
  const add = (set: WeightSet, blocks: number | null) => {
    for (const w of set.weights) {
      const names = blocks === null ? [w.tensor] : Array.from({ length: blocks }, (_, i) => w.tensor.replace('{i}', String(i)));
      for (const name of names) out.set(name, w.shape);
    }
  };
  add(network.embed, null);
  add(network.blocks.dual.weights, c.layers);
  add(network.blocks.single.weights, c.singleLayers);
  add(network.head, null);
  return out;
}

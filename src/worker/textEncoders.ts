// Runs the two text encoders for a checkpoint on an execution provider: Llama up to hidden_states[-3] (what
// FramePack conditions on) and CLIP-L's pooled output. This is the one code path the app, the CLI and
// check-reference use. Both networks are stacks of identical layers, so each runs one layer session per block
// with that block's weight feeds (cached for now; the residency manager will own them later), keeping the
// stream on the GPU between layers on WebGPU. The Llama token embedding is looked up here on the CPU, reading
// only the prompt's rows from the checkpoint: exact, and the 1 GB table never becomes a GPU binding.

import { TensorMissing } from '../errors/weights.ts';
import { TokenIdsError } from '../errors/engine.ts';
import type { BuiltGraph } from '../models/graph.ts';
import { buildClipText, clipPooledPosition, parseClipTextConfig, type ClipGraphs } from '../models/clip.ts';
import { buildLlama, parseLlamaConfig, type LlamaGraphs } from '../models/llama.ts';
import { axisFrequencies } from '../pipeline/ropeTables.ts';
import type { Tensor } from '../pipeline/tensor.ts';
import { cpuTensor, createSession, tensorData, type ExecutionProvider, type GraphSession, type OrtTensor } from '../runtime/ort.ts';
import { weightFeeds } from '../runtime/weightFeeds.ts';
import type { Checkpoint } from '../weights/checkpoint.ts';
import { f16ToF32, f32ToF16 } from '../weights/dtypes.ts';
import { DTYPE_BYTES, toFloat32 } from '../weights/safetensors.ts';

export interface EncoderOptions {
  provider: ExecutionProvider;
  /** Activation (and weight) dtype; norms, softmax and RoPE stay fp32 either way. */
  dtype: 'float32' | 'float16';
  /** 4-bit MatMulNBits weights for the layers' linears. */
  quantized?: boolean;
}

/**
 * The prefix the checkpoint's tensor names carry, found by looking for `probe` under each candidate (e.g.
 * `text_model.` in a saved CLIPTextModel, none in the fixtures). Throws TensorMissing naming the probe.
 */
export function checkpointPrefix(checkpoint: Checkpoint, probe: string, candidates: readonly string[]): string {
  const found = candidates.find((p) => checkpoint.tensors.has(`${p}${probe}`));
  if (found === undefined) throw new TensorMissing(candidates.map((p) => `${p}${probe}`).join(' or '), checkpoint.where);
  return found;
}

/** Float32 values of an output, widening fp16; downloads GPU outputs. */
export async function readFloat32(t: OrtTensor): Promise<Float32Array> {
  const data = await tensorData(t);
  if (data instanceof Float32Array) return data.slice();
  if (data instanceof Uint16Array) return f16ToF32(data);
  throw new Error(`expected a float tensor, got ${t.type}`);
}

/** Frees a GPU-resident intermediate; CPU tensors are left to the garbage collector. */
export function disposeIfGpu(t: OrtTensor | null | undefined): void {
  if (t && t.location === 'gpu-buffer') t.dispose();
}

/** A float32 array as a feed in the graph's activation dtype. */
export function activationFeed(dtype: 'float32' | 'float16', data: Float32Array, dims: number[]): OrtTensor {
  return dtype === 'float16' ? cpuTensor('float16', f32ToF16(data), dims) : cpuTensor('float32', data, dims);
}

export interface LayerStack {
  /**
   * Runs blocks 0 … count−1 on `hidden` (input `hidden`, output `hidden_out`), with `extra` feeds shared by all
   * blocks. Returns the final stream and, when `keepAfter` is given, the stream after that many blocks.
   */
  run(hidden: OrtTensor, extra: Record<string, OrtTensor>, count: number, keepAfter?: number): Promise<{ out: OrtTensor; kept: OrtTensor | null }>;
  release(): Promise<void>;
}

/** One session for a layer graph that every block of a stack binds its own weights to. */
export async function createLayerStack(graph: BuiltGraph, checkpoint: Checkpoint, provider: ExecutionProvider): Promise<LayerStack> {
  const session = await createSession(graph, provider, { outputsOnGpu: provider === 'webgpu' });
  const cache = new Map<number, Record<string, OrtTensor>>();
  const blockFeeds = async (block: number) => {
    let feeds = cache.get(block);
    if (!feeds) cache.set(block, (feeds = await weightFeeds(graph, checkpoint, block)));
    return feeds;
  };
  return {
    async run(hidden, extra, count, keepAfter) {
      let h = hidden;
      let kept: OrtTensor | null = keepAfter === 0 ? hidden : null;
      for (let block = 0; block < count; block++) {
        const out = (await session.run({ ...(await blockFeeds(block)), ...extra, hidden: h })).hidden_out;
        if (h !== hidden && h !== kept) disposeIfGpu(h);
        h = out;
        if (block + 1 === keepAfter) kept = out;
      }
      return { out: h, kept };
    },
    async release() {
      cache.clear();
      await session.release();
    },
  };
}

/** Throws TokenIdsError unless every id indexes a vocabulary of `vocab` rows and the count is within `max`. */
function checkIds(ids: readonly number[], vocab: number, max: number | null, what: string): void {
  if (ids.length === 0) throw new TokenIdsError(`The ${what} got no tokens; the prompt must tokenize to at least one token.`);
  if (max !== null && ids.length > max) throw new TokenIdsError(`The ${what} takes at most ${max} tokens, got ${ids.length}; shorten the prompt.`);
  for (const id of ids) {
    if (!Number.isInteger(id) || id < 0 || id >= vocab) {
      throw new TokenIdsError(`Token id ${id} is outside the ${what}'s vocabulary of ${vocab}; the tokenizer does not match this checkpoint.`);
    }
  }
}

/**
 * Rows `ids` of a [V, D] embedding table, read straight from the checkpoint (one small read per token, whatever
 * the table's size), widened to float32: [ids.length · D].
 */
export async function embeddingRows(checkpoint: Checkpoint, tensor: string, ids: readonly number[]): Promise<Float32Array> {
  const info = checkpoint.tensors.get(tensor);
  if (!info) throw new TensorMissing(tensor, checkpoint.where);
  const [, dim] = info.shape;
  const rowBytes = dim * DTYPE_BYTES[info.dtype];
  const source = await checkpoint.source(info.file);
  const out = new Float32Array(ids.length * dim);
  const rows = new Map<number, Float32Array>();
  for (let t = 0; t < ids.length; t++) {
    let row = rows.get(ids[t]);
    if (!row) rows.set(ids[t], (row = toFloat32(info.dtype, await source.read(info.begin + ids[t] * rowBytes, rowBytes))));
    out.set(row, t * dim);
  }
  return out;
}

/**
 * Llama's RoPE tables [n, headDim] for positions 0 … n−1, as transformers computes them in float32: the angle
 * pos·inv_freq rounded to float32, then its cos/sin, the half-dimension table repeated twice (rotate_half layout).
 * Computed here rather than in the graph because GPU cos/sin lose accuracy at angles of hundreds of radians.
 */
export function llamaRopeTables(n: number, headDim: number, theta: number): { cos: Float32Array; sin: Float32Array } {
  const inv = axisFrequencies(headDim, theta);
  const half = headDim / 2;
  const cos = new Float32Array(n * headDim);
  const sin = new Float32Array(n * headDim);
  for (let p = 0; p < n; p++) {
    for (let k = 0; k < half; k++) {
      const angle = Math.fround(p * inv[k]);
      cos[p * headDim + k] = cos[p * headDim + k + half] = Math.cos(angle);
      sin[p * headDim + k] = sin[p * headDim + k + half] = Math.sin(angle);
    }
  }
  return { cos, sin };
}

export interface LlamaOutputs {
  /** hidden_states[-3]: [1, n, D], the residual stream after num_hidden_layers − 2 layers, no final norm. */
  hiddenStatesM3: Tensor;
  /** last_hidden_state [1, n, D], only at depth 'full'. */
  lastHiddenState?: Tensor;
}

export interface LlamaTextEncoder {
  graphs: LlamaGraphs;
  /** Encodes unpadded token ids (padding on the right never changes a causal model's kept tokens). */
  run(ids: readonly number[]): Promise<LlamaOutputs>;
  release(): Promise<void>;
}

/**
 * The Llama text encoder for a checkpoint folder. Depth 'framepack' (default) runs only the layers
 * hidden_states[-3] needs and never reads the last two layers or the final norm; 'full' adds them and returns
 * last_hidden_state too. Throws LlamaConfigError, TensorMissing; run() throws TokenIdsError.
 */
export async function createLlamaTextEncoder(checkpoint: Checkpoint, options: EncoderOptions & { depth?: 'framepack' | 'full' }): Promise<LlamaTextEncoder> {
  const config = parseLlamaConfig(checkpoint.config);
  const prefix = checkpointPrefix(checkpoint, 'embed_tokens.weight', ['', 'model.']);
  const graphs = buildLlama(config, { dtype: options.dtype, quantized: options.quantized, prefix, depth: options.depth });
  const stack = await createLayerStack(graphs.layer, checkpoint, options.provider);
  const finalNorm = graphs.finalNorm ? await createSession(graphs.finalNorm, options.provider) : null;
  const finalFeeds = graphs.finalNorm ? await weightFeeds(graphs.finalNorm, checkpoint) : {};
  const d = config.hiddenSize;
  return {
    graphs,
    async run(ids) {
      checkIds(ids, config.vocabSize, null, 'Llama text encoder');
      const n = ids.length;
      const embedded = await embeddingRows(checkpoint, graphs.embedding.tensor, ids); // [n, D] fp32
      const rope = llamaRopeTables(n, config.headDim, config.ropeTheta);
      const extra = {
        rope_cos: cpuTensor('float32', rope.cos, [n, config.headDim]),
        rope_sin: cpuTensor('float32', rope.sin, [n, config.headDim]),
      };
      const { out, kept } = await stack.run(activationFeed(options.dtype, embedded, [1, n, d]), extra, graphs.layers, graphs.hiddenStatesM3After);
      const result: LlamaOutputs = { hiddenStatesM3: { data: await readFloat32(kept!), shape: [1, n, d] } };
      if (finalNorm) {
        const last = (await finalNorm.run({ ...finalFeeds, hidden: out })).last_hidden_state;
        result.lastHiddenState = { data: await readFloat32(last), shape: [1, n, d] };
      }
      if (out !== kept) disposeIfGpu(out);
      disposeIfGpu(kept);
      return result;
    },
    async release() {
      await stack.release();
      await finalNorm?.release();
    },
  };
}

export interface ClipOutputs {
  /** pooler_output [1, D]: the final-layernormed state at the pooled (EOS) token. */
  pooled: Tensor;
  lastHiddenState: Tensor;
}

export interface ClipTextEncoder {
  graphs: ClipGraphs;
  /** Encodes token ids (normally 77, padded with EOS as FramePack's CLIP tokenizer does). */
  run(ids: readonly number[]): Promise<ClipOutputs>;
  release(): Promise<void>;
}

/**
 * The CLIP text encoder for a checkpoint folder. `eosTokenId` overrides the config's (a case's metadata may name
 * it). Throws ClipConfigError, TensorMissing; run() throws TokenIdsError.
 */
export async function createClipTextEncoder(checkpoint: Checkpoint, options: EncoderOptions & { eosTokenId?: number }): Promise<ClipTextEncoder> {
  const config = parseClipTextConfig(checkpoint.config);
  const prefix = checkpointPrefix(checkpoint, 'final_layer_norm.weight', ['', 'text_model.']);
  const graphs = buildClipText(config, { dtype: options.dtype, quantized: options.quantized, prefix });
  const sessions: GraphSession[] = [];
  const embed = await createSession(graphs.embeddings, options.provider, { outputsOnGpu: options.provider === 'webgpu' });
  sessions.push(embed);
  const embedFeeds = await weightFeeds(graphs.embeddings, checkpoint);
  const stack = await createLayerStack(graphs.layer, checkpoint, options.provider);
  const final = await createSession(graphs.final, options.provider);
  sessions.push(final);
  const finalFeeds = await weightFeeds(graphs.final, checkpoint);
  const eos = options.eosTokenId ?? config.eosTokenId;
  const d = config.hiddenSize;
  return {
    graphs,
    async run(ids) {
      checkIds(ids, config.vocabSize, config.maxPositions, 'CLIP text encoder');
      const n = ids.length;
      const inputIds = cpuTensor('int64', BigInt64Array.from(ids, (v) => BigInt(v)), [1, n]);
      const hidden = (await embed.run({ ...embedFeeds, input_ids: inputIds })).hidden;
      const { out } = await stack.run(hidden, {}, graphs.layers);
      const pooledIndex = cpuTensor('int64', BigInt64Array.of(BigInt(clipPooledPosition(ids, eos))), [1]);
      const res = await final.run({ ...finalFeeds, hidden: out, pooled_index: pooledIndex });
      disposeIfGpu(hidden);
      if (out !== hidden) disposeIfGpu(out);
      return {
        pooled: { data: await readFloat32(res.pooler_output), shape: [1, d] },
        lastHiddenState: { data: await readFloat32(res.last_hidden_state), shape: [1, n, d] },
      };
    },
    async release() {
      await stack.release();
      for (const s of sessions) await s.release();
    },
  };
}

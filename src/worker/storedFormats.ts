// Which stored format (weights/pack.ts) each tensor of a network's checkpoint is converted to at download, derived
// from the networks' own builders: the weight sets a job binds — the DiT's embedders, block plans and head, Llama's
// decoder layer, CLIP's, SigLIP's and the VAE's graphs — built with the options the engine runs them with
// (worker/engine.ts: 4-bit for the DiT's blocks and for Llama, float for the rest). A tensor some binding takes as
// 'q4' is stored 4-bit with that binding's [n, k]; a tensor bound only as float is stored fp16 (fp32 where fp16
// overflows); a tensor no binding reads is left out. There is no list of tensor names here: a builder that binds a
// weight differently changes what is stored (and must come with a new PACK_VERSION).

import { buildClipText, parseClipTextConfig } from '../models/clip.ts';
import { buildDiT, parseDiTConfig } from '../models/dit.ts';
import type { WeightSet } from '../models/graph.ts';
import { buildLlama, parseLlamaConfig } from '../models/llama.ts';
import { buildSiglipVision, parseSiglipVisionConfig } from '../models/siglip.ts';
import { buildVaeDecoder, buildVaeEncoder, parseVaeConfig } from '../models/vae.ts';
import type { Checkpoint } from '../weights/checkpoint.ts';
import type { Conversion } from '../weights/download.ts';
import { convertTensor, passThrough, storedBytes, type StoredFormat } from '../weights/pack.ts';
import type { Component } from './modelPackage.ts';

/** The components that are networks (the others are folders of files: tokenizers, preprocessor settings). */
export type NetworkComponent = Extract<Component, 'transformer' | 'text_encoder' | 'text_encoder_2' | 'image_encoder' | 'vae'>;

export const NETWORKS: readonly NetworkComponent[] = ['transformer', 'text_encoder', 'text_encoder_2', 'image_encoder', 'vae'];

/** A weight set and how many blocks bind it (`{i}` names), or null for a set bound once. */
interface BoundSet {
  set: WeightSet;
  blocks: number | null;
}

/** The first of `candidates` under which `probe` is a tensor (the checkpoint's name prefix), as the runners find it. */
function prefixOf(names: ReadonlySet<string>, probe: string, candidates: readonly string[]): string {
  return candidates.find((p) => names.has(`${p}${probe}`)) ?? candidates[0];
}

/**
 * The weight sets a job binds for `component`, built from its config as the engine builds them, plus the tensors a
 * runner reads without a binding (Llama's token embedding, gathered row by row: float).
 */
export function boundWeightSets(component: NetworkComponent, config: Record<string, unknown>, names: ReadonlySet<string>): { sets: BoundSet[]; floats: string[] } {
  switch (component) {
    case 'transformer': {
      const c = parseDiTConfig(config);
      const dit = buildDiT(c, { dtype: 'float16', quantized: true });
      return { sets: [{ set: dit.embed, blocks: null }, { set: dit.blocks.dual.weights, blocks: c.layers }, { set: dit.blocks.single.weights, blocks: c.singleLayers }, { set: dit.head, blocks: null }], floats: [] };
    }
    case 'text_encoder': {
      const prefix = prefixOf(names, 'embed_tokens.weight', ['', 'model.']);
      const g = buildLlama(parseLlamaConfig(config), { dtype: 'float16', quantized: true, prefix });
      return { sets: [{ set: g.layer, blocks: g.layers }, ...(g.finalNorm ? [{ set: g.finalNorm, blocks: null }] : [])], floats: [g.embedding.tensor] };
    }
    case 'text_encoder_2': {
      const prefix = prefixOf(names, 'final_layer_norm.weight', ['', 'text_model.']);
      const g = buildClipText(parseClipTextConfig(config), { dtype: 'float16', quantized: false, prefix });
      return { sets: [{ set: g.embeddings, blocks: null }, { set: g.layer, blocks: g.layers }, { set: g.final, blocks: null }], floats: [] };
    }
    case 'image_encoder': {
      const prefix = prefixOf(names, 'post_layernorm.weight', ['', 'vision_model.']);
      const g = buildSiglipVision(parseSiglipVisionConfig(config), { dtype: 'float16', quantized: false, prefix });
      return { sets: [{ set: g.embeddings, blocks: null }, { set: g.layer, blocks: g.layers }, { set: g.final, blocks: null }], floats: [] };
    }
    case 'vae': {
      const c = parseVaeConfig(config);
      return { sets: [{ set: buildVaeEncoder(c, { dtype: 'float16' }), blocks: null }, { set: buildVaeDecoder(c, { dtype: 'float16' }), blocks: null }], floats: [] };
    }
  }
}

/**
 * Every tensor a job reads from `component`'s checkpoint and the format it is stored in. Throws when one tensor is
 * bound 4-bit with two different shapes (the builders would disagree about it).
 */
export function storedFormats(component: NetworkComponent, config: Record<string, unknown>, names: ReadonlySet<string>): Map<string, StoredFormat> {
  const { sets, floats } = boundWeightSets(component, config, names);
  const out = new Map<string, StoredFormat>();
  const put = (name: string, format: StoredFormat) => {
    const had = out.get(name);
    if (had?.kind === 'q4') {
      if (format.kind === 'q4' && (had.n !== format.n || had.k !== format.k)) throw new Error(`${name} is bound 4-bit as [${had.n}, ${had.k}] and as [${format.n}, ${format.k}].`);
      return; // 4-bit wins: a float binding of it would read the 4-bit weight dequantized
    }
    out.set(name, format);
  };
  for (const { set, blocks } of sets) {
    for (const w of set.weights) {
      const format: StoredFormat = w.layout === 'q4' ? { kind: 'q4', n: w.shape[0], k: w.shape[1] } : { kind: 'float' };
      if (blocks === null) put(w.tensor, format);
      else for (let i = 0; i < blocks; i++) put(w.tensor.replace('{i}', String(i)), format);
    }
  }
  for (const name of floats) put(name, { kind: 'float' });
  return out;
}

/**
 * The download's conversion for a network's checkpoint: each tensor into its stored format as its bytes arrive,
 * unbound ones left out. For a checkpoint that is already converted (a pack), its tensors are stored as they are.
 */
export function networkConversion(component: NetworkComponent): (checkpoint: Checkpoint | null) => Conversion {
  return (checkpoint) => {
    if (!checkpoint) return { convert: passThrough, convertedBytes: () => 0 };
    if (checkpoint.packVersion !== null) return { convert: passThrough, convertedBytes: (t) => t.end - t.begin };
    const formats = storedFormats(component, checkpoint.config, new Set(checkpoint.tensors.keys()));
    return {
      convert: (info, bytes) => convertTensor(info, bytes, formats.get(info.name)!),
      convertedBytes: (info) => storedBytes(info, formats.get(info.name)!),
      omit: (info) => !formats.has(info.name),
    };
  };
}

/** The conversion of a part: its network's, or files only (tokenizers) stored as they are. */
export function partConversion(component: Component): (checkpoint: Checkpoint | null) => Conversion {
  return (NETWORKS as readonly string[]).includes(component) ? networkConversion(component as NetworkComponent) : () => ({ convert: passThrough, convertedBytes: () => 0 });
}

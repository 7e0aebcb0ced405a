// Generates the bundled tiny demo model in public/models/tiny/: random weights for the real architecture of all five
// FramePack networks at small sizes, laid out file for file like the official Hugging Face repositories (config.json,
// safetensors under the real tensor names, the transformer and the Llama encoder sharded with an index.json, tokenizer
// files in their official formats with a small vocabulary learned here from a short English corpus), plus
// framepack.json with what only FramePack's own code knows (buckets, SigLIP size, latent window, fps, the template
// crop). The tensor lists come from the project's graph builders, so the model always fits the code that runs it;
// the tensors the reference never reads (Llama's last two layers and final norm, SigLIP's pooling head) are added as
// the real checkpoints have them. Output is a pure function of this file: fixed seeds, no timestamps.
//
// Usage: node scripts/run-node.mjs scripts/makeTinyModel.ts [OUT_DIR]   (default public/models/tiny)

import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { buildClipText, clipTensors, parseClipTextConfig } from '../src/models/clip.ts';
import { buildDiT, ditTensorShapes, parseDiTConfig } from '../src/models/dit.ts';
import { buildLlama, llamaTensors, parseLlamaConfig } from '../src/models/llama.ts';
import { buildSiglipVision, parseSiglipVisionConfig, siglipTensors } from '../src/models/siglip.ts';
import { buildVaeDecoder, buildVaeEncoder, parseVaeConfig } from '../src/models/vae.ts';
import { BYTE_TO_UNICODE, byteLevelEncode, translateReferenceRegex } from '../src/pipeline/bpeTokenizer.ts';
import { CLIP_BOS_TOKEN, CLIP_EOS_TOKEN, ClipTokenizer } from '../src/pipeline/clipTokenizer.ts';
import { LlamaTokenizer } from '../src/pipeline/llamaTokenizer.ts';
import { HUNYUAN_PROMPT_TEMPLATE, templatePrefixLength } from '../src/pipeline/promptTemplate.ts';
import { TorchGenerator } from '../src/pipeline/torchRandom.ts';
import { f32ToBf16Bits, f32ToF16Bits } from '../src/weights/dtypes.ts';

// ───────────────────────────── what the tiny model is ─────────────────────────────

/** Where each network lives, relative to the model folder (top folders named after the official repositories). */
export const TINY_COMPONENTS = {
  transformer: 'transformer',
  text_encoder: 'HunyuanVideo/text_encoder',
  tokenizer: 'HunyuanVideo/tokenizer',
  text_encoder_2: 'HunyuanVideo/text_encoder_2',
  tokenizer_2: 'HunyuanVideo/tokenizer_2',
  vae: 'HunyuanVideo/vae',
  image_encoder: 'flux_redux_bfl/image_encoder',
  feature_extractor: 'flux_redux_bfl/feature_extractor',
} as const;

/** (height, width) in pixels, multiples of 16, in the reference list's order (height ascending). */
const TINY_BUCKETS: [number, number][] = [[64, 128], [80, 112], [96, 96], [112, 80], [128, 64]];
const SIGLIP_IMAGE_SIZE = 56;
/** The reference's latent_window_size and frame rate. */
const LATENT_WINDOW = 9;
const FPS = 30;

/** Widths shared between networks: the DiT reads the Llama states, the CLIP pooled vector and the SigLIP states. */
const LLAMA_HIDDEN = 64;
const CLIP_HIDDEN = 32;
const SIGLIP_HIDDEN = 48;

const LLAMA_MERGES = 400;
const CLIP_MERGES = 320;

// Seeds per network, so changing one network leaves the others' bytes alone.
const SEEDS = { transformer: 1001, text_encoder: 1002, text_encoder_2: 1003, vae: 1004, image_encoder: 1005 } as const;

// ───────────────────────────── tokenizers ─────────────────────────────

/** Llama-3's pre-tokenizer regex, as its tokenizer.json writes it. */
const LLAMA3_SPLIT_REGEX =
  "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

const LLAMA_SPECIAL_TOKENS = ['<|begin_of_text|>', '<|end_of_text|>', '<|start_header_id|>', '<|end_header_id|>', '<|eot_id|>', '<pad>'];

/** The text the merges are learned from: video descriptions like the prompts FramePack gets, and the template itself. */
const CORPUS = [
  'The girl dances gracefully, with clear movements, full of charm.',
  'A character doing some simple body movements.',
  'The man talks to the camera and smiles, then turns his head to the left.',
  'A cat walks slowly along the wall in the warm light of the setting sun.',
  'The camera pans from left to right over a quiet lake surrounded by tall green trees.',
  'A small red car drives down an empty road through the desert at noon.',
  'Waves roll onto the sandy beach while the clouds move across the blue sky.',
  'The woman raises her hand, waves at the camera, and laughs happily.',
  'A dog runs across the grass in the park and jumps to catch a ball.',
  'Snow falls softly on the old wooden house in the middle of the forest.',
  'The boy plays the guitar on the stage under bright colored lights.',
  'A bird spreads its wings and flies away from the branch of the tree.',
  'The city street at night is full of people, cars and shining signs.',
  'Rain drops fall on the window as the light changes from day to night.',
  'The robot turns around, looks at the camera and lifts both arms.',
  'A cup of hot coffee steams on the table next to an open book.',
  'The dancer spins in a circle, her long dress moving with the music.',
  'Leaves fall from the trees and the wind moves them along the ground.',
  'A person walks toward the camera with a calm and steady expression.',
  'The mountains in the background are covered with snow and morning fog.',
  'The child smiles and claps her hands, then looks up at the sky.',
  'Fire burns in the fireplace, and the shadows move on the wall of the room.',
  'An old man reads a letter, then puts it down and closes his eyes.',
  'The flowers in the garden move gently in the soft wind of spring.',
  'Two friends sit on a bench, talk and laugh in the afternoon sun.',
  'The train moves fast through the green fields and small villages.',
  'A fish swims slowly between the rocks at the bottom of the clear water.',
  'The horse runs across the field, its mane flowing in the wind.',
  'She turns her head, looks over her shoulder and smiles at the camera.',
  'The painting comes to life as the colors start to move and shine.',
  'A young woman with long black hair stands by the window and looks outside.',
  'The chef cuts fresh vegetables on a wooden board in a bright kitchen.',
  'Smoke rises from the chimney of a small house on a cold winter morning.',
  'The astronaut floats inside the space station and waves to the camera.',
  'A butterfly lands on a yellow flower, opens its wings and flies again.',
  'The old clock on the wall shows that it is almost midnight.',
  'Children run and play in the water of a fountain on a hot summer day.',
  'The knight raises his sword and the light reflects from his silver armor.',
  'A boat moves slowly across the river as the sun rises behind the hills.',
  'The girl in the red coat walks through the crowd at the busy station.',
  'Lightning flashes over the dark sea and the waves grow higher and higher.',
  'The man in the black suit opens the door and steps into the room.',
  'A slow close-up shows the face of a woman who closes and opens her eyes.',
  'The tiger walks through the tall grass, then stops and looks around.',
  'Colorful balloons rise into the sky above the happy people in the square.',
  'The camera moves closer to the table where a candle is burning.',
  'An owl turns its head and blinks its big round eyes in the night.',
  'The singer holds the microphone and sings with her eyes closed.',
  'A paper boat floats on the water of a small stream after the rain.',
  'The windmill turns slowly on the hill under a sky full of white clouds.',
  'Two people dance together in the middle of an empty hall with a shiny floor.',
  'The wind blows through her hair as she stands at the edge of the cliff.',
  'A white cat sleeps in the sun and slowly moves its tail.',
  'The soldiers march along the road, and the flags move in the wind.',
  'Stars shine over the desert while the camera slowly turns to the moon.',
  'The little girl hugs her teddy bear and smiles at her mother.',
  'Water falls from the high rocks into the green lake below.',
  'The player kicks the ball and it flies into the corner of the goal.',
  'A woman in a white dress walks along the shore in the evening light.',
  'The man plays the piano, his fingers moving quickly over the keys.',
  // The template's own text, so its prefix tokenizes like a sentence the tokenizer knows.
  HUNYUAN_PROMPT_TEMPLATE.replace('{}', '').replace(/<\|[a-z_]+\|>/g, '\n'),
].join('\n');

type Word = { symbols: string[]; count: number };

/**
 * Byte-pair merges learned from words (symbol lists with counts): repeatedly merge the most frequent adjacent pair
 * (ties: the smaller pair in code-unit order), until `count` merges or no pair occurs twice.
 */
function learnMerges(words: Word[], count: number): [string, string][] {
  const merges: [string, string][] = [];
  while (merges.length < count) {
    const pairs = new Map<string, number>();
    for (const w of words) {
      for (let i = 0; i + 1 < w.symbols.length; i++) {
        const key = `${w.symbols[i]} ${w.symbols[i + 1]}`;
        pairs.set(key, (pairs.get(key) ?? 0) + w.count);
      }
    }
    let best: string | null = null;
    let bestCount = 1;
    for (const [key, n] of pairs) {
      if (n > bestCount || (n === bestCount && best !== null && key < best)) {
        best = key;
        bestCount = n;
      }
    }
    if (best === null) break;
    const [a, b] = best.split(' ');
    merges.push([a, b]);
    for (const w of words) {
      const out: string[] = [];
      for (let i = 0; i < w.symbols.length; i++) {
        if (i + 1 < w.symbols.length && w.symbols[i] === a && w.symbols[i + 1] === b) {
          out.push(a + b);
          i++;
        } else out.push(w.symbols[i]);
      }
      w.symbols = out;
    }
  }
  return merges;
}

function countWords(pieces: string[], toSymbols: (piece: string) => string[]): Word[] {
  const counts = new Map<string, number>();
  for (const p of pieces) counts.set(p, (counts.get(p) ?? 0) + 1);
  return [...counts].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([p, count]) => ({ symbols: toSymbols(p), count }));
}

/** The 256 byte symbols in GPT-2's table order (printable bytes first), the order both real vocabularies start with. */
function byteSymbols(): string[] {
  return [...BYTE_TO_UNICODE].sort((a, b) => a.charCodeAt(0) - b.charCodeAt(0));
}

/** The Llama-3 Split pre-tokenizer (behavior Isolated): the regex's matches and the gaps between them. */
function llamaPieces(text: string): string[] {
  const pattern = new RegExp(translateReferenceRegex(LLAMA3_SPLIT_REGEX), 'gu');
  const pieces: string[] = [];
  let start = 0;
  for (const m of text.matchAll(pattern)) {
    if (m[0].length === 0) continue;
    if (m.index > start) pieces.push(text.slice(start, m.index));
    pieces.push(m[0]);
    start = m.index + m[0].length;
  }
  if (start < text.length) pieces.push(text.slice(start));
  return pieces;
}

/** A vocabulary: the byte symbols, then each merge's product once, in merge order. */
function vocabulary(first: string[], merges: [string, string][]): Record<string, number> {
  const vocab: Record<string, number> = {};
  let next = 0;
  for (const s of first) vocab[s] = next++;
  for (const [a, b] of merges) if (!(a + b in vocab)) vocab[a + b] = next++;
  return vocab;
}

const addedToken = (content: string, normalized: boolean) => ({ content, lstrip: false, normalized, rstrip: false, single_word: false });

interface LlamaTokenizerFiles {
  files: Record<string, string>;
  vocabSize: number;
  bosId: number;
  eosId: number;
  padId: number;
  cropStart: number;
}

/** tokenizer/ in Llama-3's layout: tokenizer.json (byte-level BPE, ignore_merges), tokenizer_config.json, special_tokens_map.json. */
function makeLlamaTokenizer(): LlamaTokenizerFiles {
  const text = CORPUS;
  const words = countWords(llamaPieces(text), (p) => [...byteLevelEncode(p)]);
  const merges = learnMerges(words, LLAMA_MERGES);
  const vocab = vocabulary(byteSymbols(), merges);
  const base = Object.keys(vocab).length;
  const ids = Object.fromEntries(LLAMA_SPECIAL_TOKENS.map((t, i) => [t, base + i]));
  const json = {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: LLAMA_SPECIAL_TOKENS.map((content) => ({ id: ids[content], content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true })),
    normalizer: null,
    pre_tokenizer: {
      type: 'Sequence',
      pretokenizers: [
        { type: 'Split', pattern: { Regex: LLAMA3_SPLIT_REGEX }, behavior: 'Isolated', invert: false },
        { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: false },
      ],
    },
    post_processor: {
      type: 'Sequence',
      processors: [
        { type: 'ByteLevel', add_prefix_space: true, trim_offsets: false, use_regex: true },
        {
          type: 'TemplateProcessing',
          single: [{ SpecialToken: { id: '<|begin_of_text|>', type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }],
          pair: [
            { SpecialToken: { id: '<|begin_of_text|>', type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } },
            { SpecialToken: { id: '<|begin_of_text|>', type_id: 1 } }, { Sequence: { id: 'B', type_id: 1 } },
          ],
          special_tokens: { '<|begin_of_text|>': { id: '<|begin_of_text|>', ids: [ids['<|begin_of_text|>']], tokens: ['<|begin_of_text|>'] } },
        },
      ],
    },
    decoder: { type: 'ByteLevel', add_prefix_space: true, trim_offsets: true, use_regex: true },
    model: {
      type: 'BPE', dropout: null, unk_token: null, continuing_subword_prefix: null, end_of_word_suffix: null,
      fuse_unk: false, byte_fallback: false, ignore_merges: true, vocab, merges: merges.map(([a, b]) => `${a} ${b}`),
    },
  };
  const config = {
    added_tokens_decoder: Object.fromEntries(LLAMA_SPECIAL_TOKENS.map((t) => [String(ids[t]), { ...addedToken(t, false), special: true }])),
    bos_token: '<|begin_of_text|>',
    clean_up_tokenization_spaces: true,
    eos_token: '<|end_of_text|>',
    model_input_names: ['input_ids', 'attention_mask'],
    model_max_length: 8192,
    pad_token: '<pad>',
    padding_side: 'right',
    tokenizer_class: 'LlamaTokenizerFast',
  };
  const specialMap = {
    bos_token: addedToken('<|begin_of_text|>', false),
    eos_token: addedToken('<|end_of_text|>', false),
    pad_token: addedToken('<pad>', false),
  };
  // The crop FramePack hard-codes as 95 holds for the real vocabulary only; this one's prefix has its own length.
  const cropStart = templatePrefixLength(LlamaTokenizer.fromTokenizerJson(json));
  return {
    files: {
      'tokenizer.json': jsonText(json),
      'tokenizer_config.json': jsonText(config),
      'special_tokens_map.json': jsonText(specialMap),
    },
    vocabSize: base + LLAMA_SPECIAL_TOKENS.length,
    bosId: ids['<|begin_of_text|>'],
    eosId: ids['<|end_of_text|>'],
    padId: ids['<pad>'],
    cropStart,
  };
}

interface ClipTokenizerFiles {
  files: Record<string, string>;
  vocabSize: number;
  bosId: number;
  eosId: number;
}

/** tokenizer_2/ in CLIP's layout: vocab.json (bytes, bytes + </w>, merges, then the start/end tokens) and merges.txt. */
function makeClipTokenizer(): ClipTokenizerFiles {
  // The project's CLIP tokenizer with no merges cuts the cleaned, lower-cased text into words of byte symbols, the
  // last one marked </w>: exactly the units CLIP's BPE merges.
  const bytes = byteSymbols();
  const bare = Object.fromEntries([...bytes, ...bytes.map((b) => `${b}</w>`), CLIP_BOS_TOKEN, CLIP_EOS_TOKEN].map((s, i) => [s, i]));
  const symbols = ClipTokenizer.fromFiles(bare, '#version: 0.2\n').tokenize(CORPUS);
  const pieces: string[] = [];
  let word: string[] = [];
  for (const s of symbols) {
    word.push(s);
    if (s.endsWith('</w>')) {
      pieces.push(word.join('\u0000'));
      word = [];
    }
  }
  const merges = learnMerges(countWords(pieces, (p) => p.split('\u0000')), CLIP_MERGES);
  const vocab = vocabulary([...bytes, ...bytes.map((b) => `${b}</w>`)], merges);
  const bosId = Object.keys(vocab).length;
  vocab[CLIP_BOS_TOKEN] = bosId;
  vocab[CLIP_EOS_TOKEN] = bosId + 1;
  const config = {
    add_prefix_space: false,
    added_tokens_decoder: {
      [String(bosId)]: { ...addedToken(CLIP_BOS_TOKEN, true), special: true },
      [String(bosId + 1)]: { ...addedToken(CLIP_EOS_TOKEN, false), special: true },
    },
    bos_token: CLIP_BOS_TOKEN,
    clean_up_tokenization_spaces: true,
    do_lower_case: true,
    eos_token: CLIP_EOS_TOKEN,
    errors: 'replace',
    model_max_length: 77,
    pad_token: CLIP_EOS_TOKEN,
    tokenizer_class: 'CLIPTokenizer',
    unk_token: CLIP_EOS_TOKEN,
  };
  const specialMap = {
    bos_token: addedToken(CLIP_BOS_TOKEN, true),
    eos_token: addedToken(CLIP_EOS_TOKEN, true),
    pad_token: CLIP_EOS_TOKEN,
    unk_token: addedToken(CLIP_EOS_TOKEN, true),
  };
  return {
    files: {
      'vocab.json': JSON.stringify(vocab),
      'merges.txt': `${['#version: 0.2', ...merges.map(([a, b]) => `${a} ${b}`)].join('\n')}\n`,
      'tokenizer_config.json': jsonText(config),
      'special_tokens_map.json': jsonText(specialMap),
    },
    vocabSize: bosId + 2,
    bosId,
    eosId: bosId + 1,
  };
}

// ───────────────────────────── configs ─────────────────────────────

function transformerConfig(): Record<string, unknown> {
  return {
    _class_name: 'HunyuanVideoTransformer3DModelPacked',
    _diffusers_version: '0.33.1',
    attention_head_dim: 32,
    guidance_embeds: true,
    has_clean_x_embedder: true,
    has_image_proj: true,
    image_proj_dim: SIGLIP_HIDDEN,
    in_channels: 16,
    mlp_ratio: 4.0,
    num_attention_heads: 2,
    num_layers: 2,
    num_refiner_layers: 2,
    num_single_layers: 2,
    out_channels: 16,
    patch_size: 2,
    patch_size_t: 1,
    pooled_projection_dim: CLIP_HIDDEN,
    qk_norm: 'rms_norm',
    rope_axes_dim: [8, 12, 12],
    rope_theta: 256.0,
    text_embed_dim: LLAMA_HIDDEN,
  };
}

/**
 * The widths grow where the real ones (128, 256, 512, 512) grow, so the tiny VAE has the same tensors, conv_shortcut
 * of blocks 1 and 2 included; 2 norm groups give the real channels per group (4, 8, 16, 16).
 */
function vaeConfig(): Record<string, unknown> {
  return {
    _class_name: 'AutoencoderKLHunyuanVideo',
    _diffusers_version: '0.33.1',
    act_fn: 'silu',
    block_out_channels: [4, 8, 16, 16],
    down_block_types: Array(4).fill('HunyuanVideoDownBlock3D'),
    in_channels: 3,
    latent_channels: 16,
    layers_per_block: 2,
    mid_block_add_attention: true,
    norm_num_groups: 2,
    out_channels: 3,
    scaling_factor: 0.476986,
    spatial_compression_ratio: 8,
    temporal_compression_ratio: 4,
    up_block_types: Array(4).fill('HunyuanVideoUpBlock3D'),
  };
}

function llamaConfig(t: LlamaTokenizerFiles): Record<string, unknown> {
  return {
    architectures: ['LlamaModel'],
    attention_bias: false,
    attention_dropout: 0.0,
    bos_token_id: t.bosId,
    eos_token_id: t.eosId,
    head_dim: 16,
    hidden_act: 'silu',
    hidden_size: LLAMA_HIDDEN,
    initializer_range: 0.02,
    intermediate_size: 160,
    max_position_embeddings: 8192,
    mlp_bias: false,
    model_type: 'llama',
    num_attention_heads: 4,
    num_hidden_layers: 4,
    num_key_value_heads: 2,
    pad_token_id: t.padId,
    pretraining_tp: 1,
    rms_norm_eps: 1e-5,
    rope_scaling: null,
    rope_theta: 500000.0,
    tie_word_embeddings: false,
    torch_dtype: 'float16',
    transformers_version: '4.46.2',
    use_cache: true,
    vocab_size: t.vocabSize,
  };
}

function clipConfig(t: ClipTokenizerFiles): Record<string, unknown> {
  return {
    architectures: ['CLIPTextModel'],
    attention_dropout: 0.0,
    bos_token_id: t.bosId,
    dropout: 0.0,
    eos_token_id: t.eosId,
    hidden_act: 'quick_gelu',
    hidden_size: CLIP_HIDDEN,
    initializer_factor: 1.0,
    initializer_range: 0.02,
    intermediate_size: 64,
    layer_norm_eps: 1e-5,
    max_position_embeddings: 77,
    model_type: 'clip_text_model',
    num_attention_heads: 4,
    num_hidden_layers: 2,
    pad_token_id: t.eosId,
    projection_dim: CLIP_HIDDEN,
    torch_dtype: 'float16',
    transformers_version: '4.46.2',
    vocab_size: t.vocabSize,
  };
}

function siglipConfig(): Record<string, unknown> {
  return {
    architectures: ['SiglipVisionModel'],
    attention_dropout: 0.0,
    hidden_act: 'gelu_pytorch_tanh',
    hidden_size: SIGLIP_HIDDEN,
    image_size: SIGLIP_IMAGE_SIZE,
    intermediate_size: 96,
    layer_norm_eps: 1e-6,
    model_type: 'siglip_vision_model',
    num_attention_heads: 4,
    num_channels: 3,
    num_hidden_layers: 2,
    patch_size: 14,
    torch_dtype: 'bfloat16',
    transformers_version: '4.46.2',
  };
}

/** SiglipImageProcessor's settings as flux_redux_bfl/feature_extractor writes them, at the tiny size. */
function preprocessorConfig(): Record<string, unknown> {
  return {
    do_convert_rgb: null,
    do_normalize: true,
    do_rescale: true,
    do_resize: true,
    image_mean: [0.5, 0.5, 0.5],
    image_processor_type: 'SiglipImageProcessor',
    image_std: [0.5, 0.5, 0.5],
    processor_class: 'SiglipProcessor',
    resample: 3,
    rescale_factor: 0.00392156862745098,
    size: { height: SIGLIP_IMAGE_SIZE, width: SIGLIP_IMAGE_SIZE },
  };
}

// ───────────────────────────── tensor lists ─────────────────────────────

type TensorList = Map<string, number[]>;

function transformerTensors(config: Record<string, unknown>): TensorList {
  const c = parseDiTConfig(config);
  return ditTensorShapes(c, buildDiT(c));
}

function vaeTensors(config: Record<string, unknown>): TensorList {
  const c = parseVaeConfig(config);
  const out: TensorList = new Map();
  for (const g of [buildVaeEncoder(c), buildVaeDecoder(c)]) for (const w of g.weights) out.set(w.tensor, w.shape);
  return out;
}

/** Every layer and the final norm, as the real text_encoder holds them (FramePack reads only the first n−2 layers). */
function llamaTensorList(config: Record<string, unknown>): TensorList {
  return llamaTensors(buildLlama(parseLlamaConfig(config), { dtype: 'float32', depth: 'full', prefix: '' }));
}

/** A saved CLIPTextModel names its tensors under `text_model.`. */
function clipTensorList(config: Record<string, unknown>): TensorList {
  return clipTensors(buildClipText(parseClipTextConfig(config), { dtype: 'float32', prefix: 'text_model.' }));
}

/** A saved SiglipVisionModel names its tensors under `vision_model.`, and holds the attention-pooling head FramePack never reads. */
function siglipTensorList(config: Record<string, unknown>): TensorList {
  const c = parseSiglipVisionConfig(config);
  const out = siglipTensors(buildSiglipVision(c, { dtype: 'float32', prefix: 'vision_model.' }));
  const d = c.hiddenSize;
  const head: [string, number[]][] = [
    ['head.probe', [1, 1, d]],
    ['head.attention.in_proj_weight', [3 * d, d]],
    ['head.attention.in_proj_bias', [3 * d]],
    ['head.attention.out_proj.weight', [d, d]],
    ['head.attention.out_proj.bias', [d]],
    ['head.layernorm.weight', [d]],
    ['head.layernorm.bias', [d]],
    ['head.mlp.fc1.weight', [c.intermediateSize, d]],
    ['head.mlp.fc1.bias', [c.intermediateSize]],
    ['head.mlp.fc2.weight', [d, c.intermediateSize]],
    ['head.mlp.fc2.bias', [d]],
  ];
  for (const [name, shape] of head) out.set(`vision_model.${name}`, shape);
  return out;
}

// ───────────────────────────── random weights ─────────────────────────────

/** transformers' models start from normal(0, initializer_range); diffusers' from PyTorch's default (std 1/√(3·fan_in)). */
type InitStyle = 'transformers' | 'diffusers';

/**
 * Values like a freshly initialised model's: norm scales 1 + 0.02·n, biases 0.02·n, weight matrices, convs and
 * embeddings normal with the library's std. Every tensor draws from the network's generator in list order.
 */
function randomValues(gen: TorchGenerator, name: string, shape: number[], style: InitStyle): Float32Array {
  const x = gen.randn(shape).data;
  let scale: number;
  let offset = 0;
  // A one-dimensional `.weight` is always a norm's scale here (linears are 2-D, convs 4-D or 5-D).
  if (shape.length === 1 && name.endsWith('.weight')) {
    scale = 0.02;
    offset = 1;
  } else if (shape.length === 1) {
    scale = 0.02;
  } else if (style === 'transformers') {
    scale = 0.02;
  } else {
    const fanIn = shape.slice(1).reduce((a, b) => a * b, 1);
    scale = 1 / Math.sqrt(3 * fanIn);
  }
  for (let i = 0; i < x.length; i++) x[i] = offset + x[i] * scale;
  return x;
}

type StoredDType = 'BF16' | 'F16';

interface StoredTensor {
  name: string;
  dtype: StoredDType;
  shape: number[];
  bytes: Uint8Array;
}

/** Module order by name, numbers compared as numbers (blocks.2 before blocks.10), so no builder's order leaks in. */
function moduleOrder(a: string, b: string): number {
  const pa = a.split(/(\d+)/);
  const pb = b.split(/(\d+)/);
  for (let i = 0; i < Math.min(pa.length, pb.length); i++) {
    if (pa[i] === pb[i]) continue;
    const numeric = i % 2 === 1;
    return numeric ? Number(pa[i]) - Number(pb[i]) : pa[i] < pb[i] ? -1 : 1;
  }
  return pa.length - pb.length;
}

function storedTensors(list: TensorList, seed: number, style: InitStyle, dtype: StoredDType): StoredTensor[] {
  const gen = new TorchGenerator(seed);
  const narrow = dtype === 'BF16' ? f32ToBf16Bits : f32ToF16Bits;
  // Values are drawn in a fixed order of names, so the files do not change when a builder lists its inputs differently.
  return [...list].sort(([a], [b]) => moduleOrder(a, b)).map(([name, shape]) => {
    const values = randomValues(gen, name, shape, style);
    const bits = new Uint16Array(values.length);
    for (let i = 0; i < values.length; i++) bits[i] = narrow(values[i]);
    return { name, dtype, shape, bytes: new Uint8Array(bits.buffer) };
  });
}

// ───────────────────────────── files ─────────────────────────────

function jsonText(value: unknown): string {
  return `${JSON.stringify(value, null, 2)}\n`;
}

/** Like jsonText, with arrays of numbers on one line (framepack.json's buckets read as pairs). */
function compactJsonText(value: unknown): string {
  return jsonText(value).replace(/\[\s*(-?[\d.e+-]+(?:,\s*-?[\d.e+-]+)*)\s*\]/g, (_, inner: string) => `[${inner.split(/,\s*/).join(', ')}]`);
}

const byName = (a: { name: string }, b: { name: string }) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0);

/**
 * One safetensors file: 8-byte header length, the JSON header (`__metadata__` {format: pt}, tensors sorted by name)
 * padded with spaces to a multiple of 8 as the safetensors library does, then the data in header order.
 */
function safetensorsBytes(tensors: StoredTensor[]): Uint8Array {
  const sorted = [...tensors].sort(byName);
  const header: Record<string, unknown> = { __metadata__: { format: 'pt' } };
  let offset = 0;
  for (const t of sorted) {
    header[t.name] = { dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + t.bytes.length] };
    offset += t.bytes.length;
  }
  let json = JSON.stringify(header);
  json += ' '.repeat((8 - ((8 + json.length) % 8)) % 8);
  const headerBytes = new TextEncoder().encode(json);
  const out = new Uint8Array(8 + headerBytes.length + offset);
  new DataView(out.buffer).setBigUint64(0, BigInt(headerBytes.length), true);
  out.set(headerBytes, 8);
  let at = 8 + headerBytes.length;
  for (const t of sorted) {
    out.set(t.bytes, at);
    at += t.bytes.length;
  }
  return out;
}

/**
 * The weights of one checkpoint folder: `{stem}.safetensors`, or for `shards` > 1 the files
 * `{stem}-0000k-of-0000n.safetensors` (contiguous groups of about equal bytes, in module order as Hugging Face
 * shards) and `{stem}.safetensors.index.json`.
 */
function weightFiles(stem: string, tensors: StoredTensor[], shards: number): Record<string, Uint8Array | string> {
  if (shards === 1) return { [`${stem}.safetensors`]: safetensorsBytes(tensors) };
  const total = tensors.reduce((n, t) => n + t.bytes.length, 0);
  const groups: StoredTensor[][] = Array.from({ length: shards }, () => []);
  let seen = 0;
  for (const t of tensors) {
    groups[Math.min(shards - 1, Math.floor((seen * shards) / total))].push(t);
    seen += t.bytes.length;
  }
  const pad = (k: number) => String(k).padStart(5, '0');
  const files: Record<string, Uint8Array | string> = {};
  const weightMap: Record<string, string> = {};
  groups.forEach((group, k) => {
    const file = `${stem}-${pad(k + 1)}-of-${pad(shards)}.safetensors`;
    files[file] = safetensorsBytes(group);
    for (const t of group) weightMap[t.name] = file;
  });
  const sortedMap = Object.fromEntries(Object.entries(weightMap).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
  files[`${stem}.safetensors.index.json`] = jsonText({ metadata: { total_size: total }, weight_map: sortedMap });
  return files;
}

/** What FramePack's own code knows about a model, which no Hugging Face file says. */
function framepackJson(cropStart: number): Record<string, unknown> {
  return {
    what:
      'FramePack settings of this model that no Hugging Face file holds. components: each network\'s folder, relative to ' +
      'this file. buckets: (height, width) generation sizes in pixels, in the reference list\'s order. siglip_image_size: ' +
      'the SigLIP input size. latent_window_size and fps: the reference\'s. llama_crop_start: how many leading ids ' +
      '(BOS + the prompt template before the prompt) are cut from the Llama output; FramePack hard-codes 95, which holds ' +
      'for the real Llama-3 vocabulary only. The tiny transformer serves both the original and the F1 loop.',
    name: 'tiny',
    description: 'Random weights in the real architecture of all five networks at small sizes, for demos and tests; its videos are noise.',
    components: TINY_COMPONENTS,
    buckets: TINY_BUCKETS,
    siglip_image_size: SIGLIP_IMAGE_SIZE,
    latent_window_size: LATENT_WINDOW,
    fps: FPS,
    llama_crop_start: cropStart,
  };
}

/** Every file of the tiny model: path relative to the model folder → contents. */
export function tinyModelFiles(): Map<string, Uint8Array | string> {
  const llamaTok = makeLlamaTokenizer();
  const clipTok = makeClipTokenizer();
  const configs = {
    transformer: transformerConfig(),
    text_encoder: llamaConfig(llamaTok),
    text_encoder_2: clipConfig(clipTok),
    vae: vaeConfig(),
    image_encoder: siglipConfig(),
  };
  const files = new Map<string, Uint8Array | string>();
  const put = (folder: string, entries: Record<string, Uint8Array | string>) => {
    for (const [file, data] of Object.entries(entries)) files.set(`${folder}/${file}`, data);
  };
  const network = (key: keyof typeof configs, stem: string, list: TensorList, style: InitStyle, dtype: StoredDType, shards: number) => {
    put(TINY_COMPONENTS[key], { 'config.json': jsonText(configs[key]), ...weightFiles(stem, storedTensors(list, SEEDS[key], style, dtype), shards) });
  };
  // Storage dtypes as the official repositories: transformer bf16, text encoders and VAE fp16, SigLIP bf16.
  network('transformer', 'diffusion_pytorch_model', transformerTensors(configs.transformer), 'diffusers', 'BF16', 3);
  network('text_encoder', 'model', llamaTensorList(configs.text_encoder), 'transformers', 'F16', 2);
  network('text_encoder_2', 'model', clipTensorList(configs.text_encoder_2), 'transformers', 'F16', 1);
  network('vae', 'diffusion_pytorch_model', vaeTensors(configs.vae), 'diffusers', 'F16', 1);
  network('image_encoder', 'model', siglipTensorList(configs.image_encoder), 'transformers', 'BF16', 1);
  put(TINY_COMPONENTS.tokenizer, llamaTok.files);
  put(TINY_COMPONENTS.tokenizer_2, clipTok.files);
  put(TINY_COMPONENTS.feature_extractor, { 'preprocessor_config.json': jsonText(preprocessorConfig()) });
  files.set('framepack.json', compactJsonText(framepackJson(llamaTok.cropStart)));
  return files;
}

/** Writes the tiny model into `outDir`, replacing what was there. Returns the files written (relative paths) and bytes. */
export function makeTinyModel(outDir: string): { files: string[]; bytes: number } {
  const files = tinyModelFiles();
  rmSync(outDir, { recursive: true, force: true });
  let bytes = 0;
  for (const [path, data] of files) {
    const full = join(outDir, path);
    mkdirSync(dirname(full), { recursive: true });
    writeFileSync(full, data);
    bytes += typeof data === 'string' ? Buffer.byteLength(data) : data.length;
  }
  return { files: [...files.keys()].sort(), bytes };
}

if (process.argv[1] && import.meta.url === pathToFileURL(resolve(process.argv[1])).href) {
  const outDir = resolve(process.argv[2] ?? 'public/models/tiny');
  const started = performance.now();
  const { files, bytes } = makeTinyModel(outDir);
  console.log(`Wrote ${files.length} files, ${(bytes / 1024 / 1024).toFixed(2)} MiB, to ${outDir} in ${((performance.now() - started) / 1000).toFixed(1)} s`);
}

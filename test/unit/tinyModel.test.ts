// The bundled tiny model (public/models/tiny, written by scripts/makeTinyModel.ts): it must open like the official
// Hugging Face repositories through the same loader as the real weights, hold every tensor the builders consume with
// the right shape and storage dtype (and, like the real checkpoints, the ones the reference never reads), carry the
// real checkpoints' tensor names (real_shapes.json) up to the layer counts, come with tokenizers that the project's
// tokenizers read and that give the ids Hugging Face's own tokenizers give, be reproduced byte for byte by its
// script, and run through every network's runner on the wasm EP with finite outputs of the right shapes.
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative, resolve } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { makeTinyModel } from '../../scripts/makeTinyModel.ts';
import { buildClipText, clipTensors, parseClipTextConfig } from '../../src/models/clip.ts';
import { buildDiT, ditTensorShapes, parseDiTConfig } from '../../src/models/dit.ts';
import { buildLlama, framepackLlamaLayers, llamaTensors, parseLlamaConfig } from '../../src/models/llama.ts';
import { buildSiglipVision, parseSiglipVisionConfig, siglipTensors, siglipTokens } from '../../src/models/siglip.ts';
import { buildVaeDecoder, buildVaeEncoder, parseVaeConfig } from '../../src/models/vae.ts';
import { ClipTokenizer } from '../../src/pipeline/clipTokenizer.ts';
import { LlamaTokenizer } from '../../src/pipeline/llamaTokenizer.ts';
import { fillPromptTemplate, templatePrefixLength } from '../../src/pipeline/promptTemplate.ts';
import { siglipPixelValues, vaeInputPixels, type RgbImage } from '../../src/pipeline/resize.ts';
import { packedRopeTable, ropeConfigFromDit } from '../../src/pipeline/ropeTables.ts';
import { originalSectionLayout } from '../../src/pipeline/sectionPlan.ts';
import type { Tensor } from '../../src/pipeline/tensor.ts';
import { TorchGenerator } from '../../src/pipeline/torchRandom.ts';
import { openCheckpoint, type Checkpoint } from '../../src/weights/checkpoint.ts';
import { nodeFolderSource } from '../../src/weights/nodeFileSource.ts';
import { createDiT } from '../../src/worker/dit.ts';
import { createSiglipImageEncoder } from '../../src/worker/imageEncoder.ts';
import { createClipTextEncoder, createLlamaTextEncoder } from '../../src/worker/textEncoders.ts';
import { createVae } from '../../src/worker/vae.ts';
import { fixturesDir } from '../helpers/fixtures.ts';
import { ortReady } from '../helpers/ortSetup.ts';

const root = resolve(import.meta.dirname, '..', '..', 'public', 'models', 'tiny');
const readJson = (path: string) => JSON.parse(readFileSync(path, 'utf8'));

interface FramePackJson {
  components: Record<string, string>;
  buckets: [number, number][];
  siglip_image_size: number;
  latent_window_size: number;
  fps: number;
  llama_crop_start: number;
}
const framepack = readJson(join(root, 'framepack.json')) as FramePackJson;
const folder = (component: string) => join(root, framepack.components[component]);

type NetworkKey = 'transformer' | 'text_encoder' | 'text_encoder_2' | 'vae' | 'image_encoder';

/** Each network: the weights file name of its official repository and the dtype the official files store. */
const NETWORKS: Record<NetworkKey, { weights: string; dtype: 'BF16' | 'F16' }> = {
  transformer: { weights: 'diffusion_pytorch_model.safetensors', dtype: 'BF16' },
  text_encoder: { weights: 'model.safetensors', dtype: 'F16' },
  text_encoder_2: { weights: 'model.safetensors', dtype: 'F16' },
  vae: { weights: 'diffusion_pytorch_model.safetensors', dtype: 'F16' },
  image_encoder: { weights: 'model.safetensors', dtype: 'BF16' },
};
const KEYS = Object.keys(NETWORKS) as NetworkKey[];

/** The prefix a saved CLIPTextModel / SiglipVisionModel puts on its tensor names; real_shapes.json lists the inner module's names. */
const SAVED_PREFIX: Record<NetworkKey, string> = { transformer: '', text_encoder: '', text_encoder_2: 'text_model.', vae: '', image_encoder: 'vision_model.' };

const checkpoints = {} as Record<NetworkKey, Checkpoint>;
beforeAll(async () => {
  for (const key of KEYS) checkpoints[key] = await openCheckpoint(nodeFolderSource(folder(key)), folder(key), NETWORKS[key].weights);
});

/** What each builder, built from the tiny config.json, reads from the checkpoint: name → stored shape. */
function consumed(key: NetworkKey): Map<string, number[]> {
  const config = checkpoints[key].config;
  const prefix = SAVED_PREFIX[key];
  switch (key) {
    case 'transformer': {
      const c = parseDiTConfig(config);
      return ditTensorShapes(c, buildDiT(c));
    }
    case 'vae': {
      const c = parseVaeConfig(config);
      return new Map([...buildVaeEncoder(c).weights, ...buildVaeDecoder(c).weights].map((w) => [w.tensor, w.shape]));
    }
    case 'text_encoder':
      return llamaTensors(buildLlama(parseLlamaConfig(config), { dtype: 'float32', prefix }));
    case 'text_encoder_2':
      return clipTensors(buildClipText(parseClipTextConfig(config), { dtype: 'float32', prefix }));
    case 'image_encoder':
      return siglipTensors(buildSiglipVision(parseSiglipVisionConfig(config), { dtype: 'float32', prefix }));
  }
}

/** The tensors the real checkpoints hold and the reference never reads, by name (here at the tiny model's layer count). */
function neverRead(key: NetworkKey): string[] {
  if (key === 'text_encoder') {
    const c = parseLlamaConfig(checkpoints.text_encoder.config);
    const layer = ['self_attn.q_proj', 'self_attn.k_proj', 'self_attn.v_proj', 'self_attn.o_proj', 'mlp.gate_proj', 'mlp.up_proj', 'mlp.down_proj']
      .map((l) => `${l}.weight`)
      .concat(['input_layernorm.weight', 'post_attention_layernorm.weight']);
    const unread = [];
    for (let i = framepackLlamaLayers(c); i < c.numLayers; i++) unread.push(...layer.map((t) => `layers.${i}.${t}`));
    return [...unread, 'norm.weight'];
  }
  if (key === 'image_encoder') {
    return ['probe', 'attention.in_proj_weight', 'attention.in_proj_bias', 'attention.out_proj.weight', 'attention.out_proj.bias',
      'layernorm.weight', 'layernorm.bias', 'mlp.fc1.weight', 'mlp.fc1.bias', 'mlp.fc2.weight', 'mlp.fc2.bias'].map((t) => `vision_model.head.${t}`);
  }
  return [];
}

/** A name with the index of every repeated layer replaced, so checkpoints of different depths compare. */
const layerPattern = (name: string) => name.replace(/(^|\.)(layers|transformer_blocks|single_transformer_blocks|refiner_blocks)\.\d+\./g, '$1$2.#.');

describe('tiny model: layout and tensors', () => {
  it('every network opens from its framepack.json folder like the official repository; the transformer and Llama are sharded', () => {
    for (const key of KEYS) {
      const c = checkpoints[key];
      const dtypes = new Set([...c.tensors.values()].map((t) => t.dtype));
      expect(dtypes, key).toEqual(new Set([NETWORKS[key].dtype]));
      console.log(`tiny ${key}: ${c.tensors.size} tensors in ${c.files.join(', ')}`);
    }
    for (const key of ['transformer', 'text_encoder'] as const) {
      const c = checkpoints[key];
      expect(c.files.length).toBeGreaterThanOrEqual(2);
      const stem = NETWORKS[key].weights.replace('.safetensors', '');
      const index = readJson(join(folder(key), `${stem}.safetensors.index.json`)) as { metadata: { total_size: number }; weight_map: Record<string, string> };
      const bytes = [...c.tensors.values()].reduce((n, t) => n + t.end - t.begin, 0);
      expect(index.metadata.total_size).toBe(bytes);
      expect(Object.keys(index.weight_map).length).toBe(c.tensors.size);
      for (const [name, file] of Object.entries(index.weight_map)) expect(c.tensors.get(name)?.file).toBe(file);
    }
    // Exactly the official file names, nothing else.
    const files = listFiles(root).map((p) => relative(root, p)).sort();
    expect(files).toEqual([
      'HunyuanVideo/text_encoder/config.json',
      ...checkpoints.text_encoder.files.map((f) => `HunyuanVideo/text_encoder/${f}`),
      'HunyuanVideo/text_encoder/model.safetensors.index.json',
      'HunyuanVideo/text_encoder_2/config.json',
      'HunyuanVideo/text_encoder_2/model.safetensors',
      'HunyuanVideo/tokenizer/special_tokens_map.json',
      'HunyuanVideo/tokenizer/tokenizer.json',
      'HunyuanVideo/tokenizer/tokenizer_config.json',
      'HunyuanVideo/tokenizer_2/merges.txt',
      'HunyuanVideo/tokenizer_2/special_tokens_map.json',
      'HunyuanVideo/tokenizer_2/tokenizer_config.json',
      'HunyuanVideo/tokenizer_2/vocab.json',
      'HunyuanVideo/vae/config.json',
      'HunyuanVideo/vae/diffusion_pytorch_model.safetensors',
      'flux_redux_bfl/feature_extractor/preprocessor_config.json',
      'flux_redux_bfl/image_encoder/config.json',
      'flux_redux_bfl/image_encoder/model.safetensors',
      'framepack.json',
      'transformer/config.json',
      ...checkpoints.transformer.files.map((f) => `transformer/${f}`),
      'transformer/diffusion_pytorch_model.safetensors.index.json',
    ].sort());
    const total = files.reduce((n, f) => n + statSync(join(root, f)).size, 0);
    console.log(`tiny model: ${files.length} files, ${(total / 2 ** 20).toFixed(2)} MiB`);
    expect(total).toBeLessThan(4 * 2 ** 20);
  });

  it.each(KEYS)('%s: holds every tensor its builder consumes with the stored shape, plus exactly what the reference never reads', (key) => {
    const c = checkpoints[key];
    const want = consumed(key);
    for (const [name, shape] of want) expect(c.tensors.get(name)?.shape, name).toEqual(shape);
    const extra = [...c.tensors.keys()].filter((n) => !want.has(n)).sort();
    expect(extra).toEqual(neverRead(key).sort());
  });

  it.each(KEYS)('%s: tensor names equal the real checkpoint\'s (real_shapes.json) up to the layer count, with the same ranks', (key) => {
    const real = (readJson(join(fixturesDir(), 'real_shapes.json')) as Record<NetworkKey, Record<string, number[]>>)[key];
    const prefix = SAVED_PREFIX[key];
    const realRanks = new Map(Object.entries(real).map(([n, s]) => [layerPattern(prefix + n), s.length]));
    const tinyRanks = new Map([...checkpoints[key].tensors.values()].map((t) => [layerPattern(t.name), t.shape.length]));
    expect([...tinyRanks.keys()].sort()).toEqual([...realRanks.keys()].sort());
    for (const [pattern, rank] of tinyRanks) expect(rank, pattern).toBe(realRanks.get(pattern));
  });

  it('the networks fit each other and framepack.json', () => {
    const dit = parseDiTConfig(checkpoints.transformer.config);
    const llama = parseLlamaConfig(checkpoints.text_encoder.config);
    const clip = parseClipTextConfig(checkpoints.text_encoder_2.config);
    const siglip = parseSiglipVisionConfig(checkpoints.image_encoder.config);
    expect(dit.textEmbedDim).toBe(llama.hiddenSize);
    expect(dit.pooledProjectionDim).toBe(clip.hiddenSize);
    expect(dit.imageProjDim).toBe(siglip.hiddenSize);
    expect([llama.numLayers, framepackLlamaLayers(llama)]).toEqual([4, 2]); // hidden_states[-3]: the stream after 2 of the 4 layers
    const preprocessor = readJson(join(folder('feature_extractor'), 'preprocessor_config.json'));
    expect(preprocessor.size).toEqual({ height: framepack.siglip_image_size, width: framepack.siglip_image_size });
    expect(siglip.imageSize).toBe(framepack.siglip_image_size);
    expect(framepack.latent_window_size).toBe(9);
    expect(framepack.fps).toBe(30);
    expect(framepack.buckets.length).toBeGreaterThan(1);
    for (const [h, w] of framepack.buckets) expect([h % 16, w % 16]).toEqual([0, 0]);
    // The reference list's order: height ascending, width descending.
    for (let i = 1; i < framepack.buckets.length; i++) expect(framepack.buckets[i][0]).toBeGreaterThan(framepack.buckets[i - 1][0]);
  });
});

// Ids recorded from Hugging Face's own tokenizers (transformers 4.57.6, tokenizers 0.23.2) on the files in
// public/models/tiny: AutoTokenizer (PreTrainedTokenizerFast) on tokenizer/ with the filled template, and the slow
// CLIPTokenizer on tokenizer_2/ with padding="max_length", max_length=77, truncation=True:
//   tok = AutoTokenizer.from_pretrained('public/models/tiny/HunyuanVideo/tokenizer'); tok(template.format(p)).input_ids
//   clip = CLIPTokenizer.from_pretrained('public/models/tiny/HunyuanVideo/tokenizer_2'); clip(p, padding='max_length', max_length=77, truncation=True).input_ids
// Regenerate them when the script's corpus changes. Llama: total length, BOS, and the ids after the template prefix (163
// ids with BOS); CLIP: the ids up to the first <|endoftext|> (the rest is padding with it).
const TOKEN_CASES = [
  {
    prompt: 'A zebra 🦓 crosses  the\n\nriver at 12:45 — quickly!',
    llamaLength: 200,
    llamaKept: [32, 220, 89, 68, 65, 81, 64, 220, 172, 253, 99, 241, 264, 271, 360, 268, 220, 258, 361, 564, 334, 312, 220, 16, 17, 25, 19, 20, 220, 158, 222, 242, 628, 398, 310, 0, 660],
    clip: [832, 320, 89, 68, 670, 320, 172, 253, 99, 497, 761, 82, 602, 513, 585, 590, 533, 272, 273, 281, 275, 276, 158, 222, 498, 653, 72, 66, 74, 554, 256, 833],
  },
  {
    prompt: "东京的夜晚 neon lights, rain; UPPERCASE Words and numbers 1234567 don't stop",
    llamaLength: 224,
    llamaKept: [160, 116, 250, 160, 118, 105, 163, 248, 226, 161, 97, 250, 162, 247, 248, 220, 77, 355, 77, 366, 82, 11, 311, 328, 26, 220, 52, 47, 47, 36, 49, 34, 32, 50, 36, 220, 54, 358, 522, 273, 220, 77, 576, 65, 401, 220, 16, 17, 18, 19, 20, 21, 22, 289, 377, 6, 83, 305, 78, 79, 660],
    clip: [832, 160, 116, 506, 160, 118, 361, 163, 248, 482, 161, 97, 506, 162, 247, 504, 77, 68, 529, 812, 543, 267, 718, 282, 84, 79, 79, 526, 545, 624, 593, 81, 553, 519, 77, 84, 76, 65, 690, 272, 273, 274, 275, 276, 277, 278, 67, 529, 6, 339, 536, 78, 335, 833],
  },
];

describe('tiny model: tokenizers', () => {
  const llamaTokenizer = () => LlamaTokenizer.fromTokenizerJson(readJson(join(folder('tokenizer'), 'tokenizer.json')));
  const clipTokenizer = () =>
    ClipTokenizer.fromFiles(readFileSync(join(folder('tokenizer_2'), 'vocab.json'), 'utf8'), readFileSync(join(folder('tokenizer_2'), 'merges.txt'), 'utf8'));

  it('Llama: loads, declares its template crop in framepack.json, and tokenizes as Hugging Face does', () => {
    const tok = llamaTokenizer();
    const config = parseLlamaConfig(checkpoints.text_encoder.config);
    const tokenizerJson = readJson(join(folder('tokenizer'), 'tokenizer.json'));
    expect(Object.keys(tokenizerJson.model.vocab).length + tokenizerJson.added_tokens.length).toBe(config.vocabSize);
    expect(tokenizerJson.model.merges.length).toBeGreaterThanOrEqual(200);
    expect(tok.bosId).toBe(checkpoints.text_encoder.config.bos_token_id);
    for (const t of ['<|start_header_id|>', '<|end_header_id|>', '<|eot_id|>', '<|end_of_text|>', '<pad>']) expect(tok.tokenId(t), t).toBeDefined();
    expect(templatePrefixLength(tok)).toBe(framepack.llama_crop_start);
    for (const c of TOKEN_CASES) {
      const ids = tok.encode(fillPromptTemplate(c.prompt), { addBos: true });
      expect(ids.length).toBe(c.llamaLength);
      expect(ids[0]).toBe(tok.bosId);
      expect(ids.slice(framepack.llama_crop_start)).toEqual(c.llamaKept);
      expect(ids.at(-1)).toBe(tok.tokenId('<|eot_id|>'));
      expect(Math.max(...ids)).toBeLessThan(config.vocabSize);
    }
  });

  it('CLIP: loads, matches its config\'s ids and vocabulary, and tokenizes as Hugging Face does', () => {
    const tok = clipTokenizer();
    const config = checkpoints.text_encoder_2.config;
    const vocab = readJson(join(folder('tokenizer_2'), 'vocab.json')) as Record<string, number>;
    expect(Object.keys(vocab).length).toBe(config.vocab_size);
    expect([tok.bosId, tok.eosId]).toEqual([config.bos_token_id, config.eos_token_id]);
    for (const c of TOKEN_CASES) {
      const ids = tok.encode(c.prompt);
      expect(ids.length).toBe(77);
      expect(ids.slice(0, tok.firstEosIndex(ids) + 1)).toEqual(c.clip);
      expect(ids.slice(c.clip.length).every((id) => id === tok.eosId)).toBe(true);
    }
  });
});

describe('tiny model: the script', () => {
  it('reproduces every file byte for byte', () => {
    const dir = mkdtempSync(join(tmpdir(), 'tiny-model-'));
    try {
      const t0 = performance.now();
      const { files } = makeTinyModel(dir);
      console.log(`makeTinyModel: ${files.length} files in ${(performance.now() - t0).toFixed(0)} ms`);
      expect(files).toEqual(listFiles(root).map((p) => relative(root, p)).sort());
      for (const f of files) expect(Buffer.compare(readFileSync(join(dir, f)), readFileSync(join(root, f))), f).toBe(0);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

const finite = (t: Tensor) => t.data.every(Number.isFinite);
const stdOf = (t: Tensor) => Math.sqrt(t.data.reduce((s, v) => s + v * v, 0) / t.data.length);

/** A smooth synthetic RGB picture (diagonal gradients), the size of a bucket. */
function testImage(height: number, width: number): RgbImage {
  const data = new Uint8Array(height * width * 3);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const i = (y * width + x) * 3;
      data[i] = Math.round((255 * x) / (width - 1));
      data[i + 1] = Math.round((255 * y) / (height - 1));
      data[i + 2] = Math.round((255 * (x + y)) / (width + height - 2));
    }
  }
  return { width, height, data };
}

describe('tiny model: every network through its runner (wasm)', () => {
  it('Llama → CLIP → SigLIP → VAE encode → one DiT forward → VAE decode: finite outputs of the right shapes', async () => {
    await ortReady();
    const times: string[] = [];
    const timed = async <T>(label: string, f: () => Promise<T>): Promise<T> => {
      const t0 = performance.now();
      const out = await f();
      times.push(`${label} ${(performance.now() - t0).toFixed(0)} ms`);
      return out;
    };
    const options = { provider: 'wasm', dtype: 'float32' } as const;
    const prompt = 'A cat walks slowly along the wall in the warm light of the setting sun.';

    const llamaConfig = parseLlamaConfig(checkpoints.text_encoder.config);
    const ids = LlamaTokenizer.fromTokenizerJson(readJson(join(folder('tokenizer'), 'tokenizer.json'))).encode(fillPromptTemplate(prompt), { addBos: true });
    const llama = await createLlamaTextEncoder(checkpoints.text_encoder, options);
    const llamaOut = await timed('llama', () => llama.run(ids));
    await llama.release();
    expect(llamaOut.hiddenStatesM3.shape).toEqual([1, ids.length, llamaConfig.hiddenSize]);
    expect(finite(llamaOut.hiddenStatesM3)).toBe(true);
    const d = llamaConfig.hiddenSize;
    const kept = ids.length - framepack.llama_crop_start;
    const textStates = { data: llamaOut.hiddenStatesM3.data.slice(framepack.llama_crop_start * d), shape: [1, kept, d] };

    const clipIds = ClipTokenizer.fromFiles(readFileSync(join(folder('tokenizer_2'), 'vocab.json'), 'utf8'), readFileSync(join(folder('tokenizer_2'), 'merges.txt'), 'utf8')).encode(prompt);
    const clip = await createClipTextEncoder(checkpoints.text_encoder_2, options);
    const pooled = (await timed('clip', () => clip.run(clipIds))).pooled;
    await clip.release();
    expect(pooled.shape).toEqual([1, parseClipTextConfig(checkpoints.text_encoder_2.config).hiddenSize]);
    expect(finite(pooled)).toBe(true);

    const [height, width] = framepack.buckets.find(([h, w]) => h === w) ?? framepack.buckets[0];
    const image = testImage(height, width);
    const siglipConfig = parseSiglipVisionConfig(checkpoints.image_encoder.config);
    const siglip = await createSiglipImageEncoder(checkpoints.image_encoder, options);
    const imageEmbeddings = await timed('siglip', () => siglip.run(siglipPixelValues(image, framepack.siglip_image_size)));
    await siglip.release();
    expect(imageEmbeddings.shape).toEqual([1, siglipTokens(siglipConfig), siglipConfig.hiddenSize]);
    expect(finite(imageEmbeddings)).toBe(true);

    const vae = await createVae(checkpoints.vae, options);
    const encoded = await timed('vae encode', () => vae.encode(vaeInputPixels(image)));
    const [lh, lw] = [height / 8, width / 8];
    expect(encoded.latent.shape).toEqual([1, 16, 1, lh, lw]);
    expect(finite(encoded.latent)).toBe(true);

    // One DiT call as the original loop's last section makes it (padding 0), the start latent as every context frame.
    const window = framepack.latent_window_size;
    const layout = originalSectionLayout(0, window);
    const gen = new TorchGenerator(31337);
    const frames = (n: number) => {
      const out = new Float32Array(16 * n * lh * lw);
      const plane = lh * lw;
      for (let c = 0; c < 16; c++) for (let t = 0; t < n; t++) out.set(encoded.latent.data.subarray(c * plane, (c + 1) * plane), (c * n + t) * plane);
      return { data: out, shape: [1, 16, n, lh, lw] };
    };
    const ditConfig = checkpoints.transformer.config;
    const dit = await createDiT(checkpoints.transformer, { provider: 'wasm' });
    const velocity = await timed('dit forward', () => dit.forward({
      latents: gen.randn([1, 16, window, lh, lw]),
      timestep: 1000,
      guidance: 10000,
      textStates,
      pooledProjections: pooled,
      imageEmbeddings,
      cleanLatents: frames(layout.cleanLatentIndices.length),
      cleanLatents2x: frames(layout.clean2xIndices.length),
      cleanLatents4x: frames(layout.clean4xIndices.length),
      rope: packedRopeTable(layout, lh, lw, parseDiTConfig(ditConfig).patchSize, ropeConfigFromDit(ditConfig)),
    }));
    await dit.release();
    expect(velocity.shape).toEqual([1, 16, window, lh, lw]);
    expect(finite(velocity)).toBe(true);

    const decoded = await timed('vae decode', () => vae.decodeLatents(frames(2)));
    await vae.release();
    expect(decoded.shape).toEqual([1, 3, 5, height, width]);
    expect(finite(decoded)).toBe(true);
    console.log(`tiny model on wasm at ${height}×${width}, ${ids.length} Llama ids: ${times.join('; ')}; std: text ${stdOf(textStates).toFixed(3)}, ` +
      `pooled ${stdOf(pooled).toFixed(3)}, image ${stdOf(imageEmbeddings).toFixed(3)}, latent ${stdOf(encoded.latent).toFixed(3)}, velocity ${stdOf(velocity).toFixed(3)}, pixels ${stdOf(decoded).toFixed(3)}`);
  });
});

function listFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? listFiles(join(dir, e.name)) : [join(dir, e.name)]));
}

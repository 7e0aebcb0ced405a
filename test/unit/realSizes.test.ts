// The real-configuration graphs (and the DiT's block plans) of all five networks build without weights, and their
// parameter counts and converted sizes are what a formula written here says: 4-bit linears take 32 weights per
// block in 16 bytes of nibbles plus one fp16 scale (18 bytes per 32), everything else is fp16 (2 bytes each).
// The formula is applied to real_shapes.json independently of the builders' bindings, and the two must agree; so
// must the stored pack's sizes (src/worker/storedFormats.ts, derived from the builders), which the README and the
// app's model list state.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import transformerConfig from '../../src/models/configs/transformer.json' with { type: 'json' };
import textEncoderConfig from '../../src/models/configs/text_encoder.json' with { type: 'json' };
import clipConfig from '../../src/models/configs/text_encoder_2.json' with { type: 'json' };
import siglipConfig from '../../src/models/configs/image_encoder.json' with { type: 'json' };
import vaeConfig from '../../src/models/configs/vae.json' with { type: 'json' };
import { buildDiT, parseDiTConfig } from '../../src/models/dit.ts';
import { buildLlama, parseLlamaConfig } from '../../src/models/llama.ts';
import { buildClipText, parseClipTextConfig } from '../../src/models/clip.ts';
import { buildSiglipVision, parseSiglipVisionConfig } from '../../src/models/siglip.ts';
import { buildVaeDecoder, buildVaeEncoder, parseVaeConfig } from '../../src/models/vae.ts';
import type { WeightSet } from '../../src/models/graph.ts';
import { storedBytes } from '../../src/weights/pack.ts';
import { storedFormats, type NetworkComponent } from '../../src/worker/storedFormats.ts';
import { fixturesDir } from '../helpers/fixtures.ts';

const real = JSON.parse(readFileSync(join(fixturesDir(), 'real_shapes.json'), 'utf8')) as Record<string, Record<string, number[]>>;
const numel = (s: number[]) => s.reduce((a, b) => a * b, 1);
const GB = 1e9;

/** Bytes the builders' bindings ask for: each graph's (or block plan's) weights once per block it serves. */
function bindingBytes(parts: { graph: WeightSet; blocks: number }[]): { params: number; bytes: number } {
  let params = 0;
  let bytes = 0;
  for (const { graph, blocks } of parts) {
    for (const w of graph.weights) {
      if (w.layout === 'q4') {
        const [n, k] = w.shape;
        bytes += blocks * (w.part === 'blocks' ? n * Math.ceil(k / 32) * 16 : n * Math.ceil(k / 32) * 2);
        if (w.part === 'blocks') params += blocks * n * k;
      } else {
        bytes += blocks * numel(w.shape) * 2;
        params += blocks * numel(w.shape);
      }
    }
  }
  return { params, bytes };
}

/** The formula on real_shapes.json: quantized tensors (chosen by `isQ4`) at 18 bytes per 32 weights, the rest fp16. */
function formulaBytes(shapes: Record<string, number[]>, keep: (name: string) => boolean, isQ4: (name: string, shape: number[]) => boolean) {
  let params = 0;
  let bytes = 0;
  for (const [name, shape] of Object.entries(shapes)) {
    if (!keep(name)) continue;
    params += numel(shape);
    bytes += isQ4(name, shape) ? shape[0] * Math.ceil(shape[1] / 32) * 18 : numel(shape) * 2;
  }
  return { params, bytes };
}

/** The project's 4-bit policy, restated: 2-D Linear weights in the blocks (not the token refiner) whose input width is a multiple of 32. */
const ditQ4 = (name: string, shape: number[]) =>
  shape.length === 2 && shape[1] % 32 === 0 && name.endsWith('.weight') &&
  /^(transformer_blocks|single_transformer_blocks)\./.test(name) && !/norm_[qk]|norm_added|norm[12]\.weight/.test(name);

describe('real-configuration graphs: parameter counts and 4-bit sizes', () => {
  it('transformer: 12,874,314,816 parameters, 4-bit size by the 18-bytes-per-32 formula', () => {
    const c = parseDiTConfig(transformerConfig);
    const g = buildDiT(c, { dtype: 'float16', quantized: true });
    const got = bindingBytes([{ graph: g.embed, blocks: 1 }, { graph: g.blocks.dual.weights, blocks: c.layers }, { graph: g.blocks.single.weights, blocks: c.singleLayers }, { graph: g.head, blocks: 1 }]);
    const want = formulaBytes(real.transformer, () => true, ditQ4);
    expect(want.params).toBe(12_874_314_816);
    expect(got.params).toBe(want.params);
    expect(got.bytes).toBe(want.bytes);
    console.log(`transformer 4-bit: ${(got.bytes / GB).toFixed(2)} GB (16-bit: ${((want.params * 2) / GB).toFixed(2)} GB)`);
  });

  it('Llama text encoder: the 30 layers FramePack reads, 4-bit; the embedding stays fp16 and is gathered on the CPU', () => {
    const c = parseLlamaConfig(textEncoderConfig);
    const g = buildLlama(c, { dtype: 'float16', quantized: true });
    const got = bindingBytes([{ graph: g.layer, blocks: g.layers }]);
    const used = (name: string) => !/^layers\.(30|31)\./.test(name) && name !== 'norm.weight';
    const q4 = (name: string, shape: number[]) => shape.length === 2 && name !== 'embed_tokens.weight' && shape[1] % 32 === 0;
    const want = formulaBytes(real.text_encoder, used, q4);
    const embedding = numel(real.text_encoder['embed_tokens.weight']);
    expect(want.params).toBe(7_068_958_720);
    expect(got.params + embedding).toBe(want.params);
    expect(got.bytes + embedding * 2).toBe(want.bytes);
    console.log(`llama 4-bit (30 layers): ${(got.bytes / GB).toFixed(2)} GB + fp16 embedding ${((embedding * 2) / GB).toFixed(2)} GB`);
  });

  it('CLIP-L, SigLIP and the VAE stay 16-bit: 123,060,480 / 413.0 M (no pooling head) / 246,478,803 parameters', () => {
    const clip = buildClipText(parseClipTextConfig(clipConfig), { dtype: 'float16' });
    const clipGot = bindingBytes([{ graph: clip.embeddings, blocks: 1 }, { graph: clip.layer, blocks: clip.layers }, { graph: clip.final, blocks: 1 }]);
    expect(clipGot.params).toBe(formulaBytes(real.text_encoder_2, () => true, () => false).params);
    expect(clipGot.params).toBe(123_060_480);

    const sig = buildSiglipVision(parseSiglipVisionConfig(siglipConfig), { dtype: 'float16' });
    const sigGot = bindingBytes([{ graph: sig.embeddings, blocks: 1 }, { graph: sig.layer, blocks: sig.layers }, { graph: sig.final, blocks: 1 }]);
    const sigWant = formulaBytes(real.image_encoder, (n) => !n.startsWith('head.'), () => false);
    expect(sigGot.params).toBe(sigWant.params);
    // framepack-reference.md §2: 428.2 M with the unused pooling head, 413.0 M without.
    expect((sigGot.params / 1e6).toFixed(1)).toBe('413.0');
    expect((formulaBytes(real.image_encoder, () => true, () => false).params / 1e6).toFixed(1)).toBe('428.2');

    const vc = parseVaeConfig(vaeConfig);
    const vaeGot = bindingBytes([{ graph: buildVaeEncoder(vc), blocks: 1 }, { graph: buildVaeDecoder(vc), blocks: 1 }]);
    expect(vaeGot.params).toBe(formulaBytes(real.vae, () => true, () => false).params);
    expect(vaeGot.params).toBe(246_478_803);
    console.log(`clip ${(clipGot.bytes / GB).toFixed(3)} GB, siglip ${(sigGot.bytes / GB).toFixed(3)} GB, vae ${(vaeGot.bytes / GB).toFixed(3)} GB (fp16)`);
  });

  it('every large linear is 4-bit: a MatMulNBits node in the Llama graph, a 4-bit product in the DiT\'s block plans', () => {
    const c = parseDiTConfig(transformerConfig);
    const dit = buildDiT(c, { dtype: 'float16', quantized: true });
    for (const plan of Object.values(dit.blocks)) {
      const large = plan.weights.weights.filter((w) => w.shape.length === 2 && w.shape[0] * w.shape[1] >= 2 ** 20);
      expect(large.length).toBeGreaterThan(0);
      for (const w of large) expect(w.layout, `${plan.kind} ${w.tensor}`).toBe('q4');
      for (const stage of plan.stages) if (stage.op === 'linear' || stage.op === 'adaParams') expect(stage.linear.format).toBe('q4');
    }
    const llama = buildLlama(parseLlamaConfig(textEncoderConfig), { dtype: 'float16', quantized: true });
    for (const graph of [llama.layer]) {
      const large = graph.weights.filter((w) => w.shape.length === 2 && w.shape[0] * w.shape[1] >= 2 ** 20);
      expect(large.length).toBeGreaterThan(0);
      for (const w of large) {
        const consumers = graph.nodes.filter((n) => n.inputs.includes(w.input));
        expect(consumers.map((n) => `${n.domain ?? ''}:${n.opType}`), `${graph.name} ${w.tensor}`).toEqual(['com.microsoft:MatMulNBits']);
        expect(w.layout).toBe('q4');
      }
      // No plain MatMul reads a weight input at all: only activations meet in MatMul (attention).
      const weightInputs = new Set(graph.weights.map((w) => w.input));
      for (const n of graph.nodes.filter((n) => n.opType === 'MatMul')) expect(n.inputs.some((i) => weightInputs.has(i)), `${graph.name} MatMul ${n.name}`).toBe(false);
    }
  });

  it('the stored pack: 4-bit where the block plans and Llama bind 4-bit, fp16 elsewhere, unread tensors left out', () => {
    const configs: Record<NetworkComponent, Record<string, unknown>> = { transformer: transformerConfig, text_encoder: textEncoderConfig, text_encoder_2: clipConfig, image_encoder: siglipConfig, vae: vaeConfig };
    const sizes = {} as Record<NetworkComponent, number>;
    for (const component of Object.keys(configs) as NetworkComponent[]) {
      const shapes = real[component];
      const formats = storedFormats(component, configs[component], new Set(Object.keys(shapes)));
      let bytes = 0;
      for (const [name, shape] of Object.entries(shapes)) {
        const format = formats.get(name);
        if (format) bytes += storedBytes({ name, dtype: 'BF16', shape, begin: 0, end: 0 }, format);
      }
      sizes[component] = bytes;
    }
    // The same sizes by the formula restated here.
    const llamaUsed = (name: string) => !/^layers\.(30|31)\./.test(name) && name !== 'norm.weight';
    const llamaQ4 = (name: string, shape: number[]) => shape.length === 2 && name !== 'embed_tokens.weight';
    expect(sizes.transformer).toBe(formulaBytes(real.transformer, () => true, ditQ4).bytes);
    expect(sizes.text_encoder).toBe(formulaBytes(real.text_encoder, llamaUsed, llamaQ4).bytes);
    expect(sizes.text_encoder_2).toBe(formulaBytes(real.text_encoder_2, () => true, () => false).bytes);
    expect(sizes.image_encoder).toBe(formulaBytes(real.image_encoder, (n) => !n.startsWith('head.'), () => false).bytes);
    expect(sizes.vae).toBe(formulaBytes(real.vae, () => true, () => false).bytes);
    const one = Object.values(sizes).reduce((a, b) => a + b, 0);
    const download = Object.entries(real).reduce((n, [c, shapes]) => n + Object.entries(shapes).reduce((m, [name, shape]) => m + numel(shape) * (c === 'transformer' && name.startsWith('proj_out.') ? 4 : 2), 0), 0);
    console.log(`stored pack: transformer ${(sizes.transformer / GB).toFixed(2)} GB, llama ${(sizes.text_encoder / GB).toFixed(2)} GB, siglip ${(sizes.image_encoder / GB).toFixed(3)} GB, ` +
      `vae ${(sizes.vae / GB).toFixed(3)} GB, clip ${(sizes.text_encoder_2 / GB).toFixed(3)} GB: one model ${(one / GB).toFixed(2)} GB (download ${(download / GB).toFixed(2)} GB, ` +
      `F1's transformer adds ${(sizes.transformer / GB).toFixed(2)} GB: both ${((one + sizes.transformer) / GB).toFixed(2)} GB)`);
    // What src/worker/browserApi.ts tells the user before anything is stored.
    expect((one / GB).toFixed(1)).toBe('14.1');
  });
});


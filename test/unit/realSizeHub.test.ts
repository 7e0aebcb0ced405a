// The real-size hub (scripts/realSizeHub.ts) on localhost: FramePack's repositories at their real size, generated
// per Range request. Its layout is the published one (the transformer's shards 9.97 + 9.99 + 5.79 GB, Llama's four,
// index.json weight maps, real_shapes.json names and shapes, the documented dtypes), the app's HTTP checkpoint
// reader opens it like Hugging Face, and the app's download converts a few of its tensors — 4-bit block linears at
// offsets past 4 and 9 GB, an fp32 head weight, norms, biases — into the stored format. Every value is checked
// against the synthesis rule computed here, independently of the hub's code.

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import realShapes from '../fixtures/reference/real_shapes.json' with { type: 'json' };
import { startRealSizeHub, type RealSizeHub } from '../../scripts/realSizeHub.ts';
import { openCheckpoint } from '../../src/weights/checkpoint.ts';
import { downloadCheckpoint } from '../../src/weights/download.ts';
import { f16ToF32, f32ToF16, f32ToF16Bits } from '../../src/weights/dtypes.ts';
import { hubDownload } from '../../src/weights/huggingFace.ts';
import { PACK_VERSION } from '../../src/weights/pack.ts';
import { quantizeQ4 } from '../../src/weights/quantize.ts';
import { memoryWeightStore } from '../../src/weights/weightCache.ts';
import { networkConversion, type NetworkComponent } from '../../src/worker/storedFormats.ts';

const real = realShapes as Record<string, Record<string, number[]>>;
const numel = (s: number[]) => s.reduce((a, b) => a * b, 1);

// ── The synthesis rule, restated from the hub's documentation (not imported from it). ──
function seedOf(repo: string, tensor: string): number {
  let h = 2166136261;
  for (const c of `${repo}:${tensor}`) h = Math.imul(h ^ c.charCodeAt(0), 16777619) >>> 0;
  return h >>> 0;
}
function expectedFloat32(repo: string, tensor: string, shape: number[], count = numel(shape)): Float32Array {
  const seed = seedOf(repo, tensor);
  const norm = shape.length === 1 && tensor.endsWith('.weight') && tensor.includes('norm');
  const [offset, scale] = shape.length === 1 ? [norm ? 1 : 0, 0.02] : [0, 1 / Math.sqrt(numel(shape) / shape[0])];
  const out = new Float32Array(count);
  for (let i = 0; i < count; i++) {
    let x = (seed ^ Math.imul(i, 0x9e3779b1)) >>> 0;
    x = Math.imul(x ^ (x >>> 16), 0x85ebca6b) >>> 0;
    x = Math.imul(x ^ (x >>> 13), 0xc2b2ae35) >>> 0;
    x = (x ^ (x >>> 16)) >>> 0;
    out[i] = offset + scale * Math.sqrt(3) * (2 * ((x >>> 8) / 2 ** 24) - 1);
  }
  return out;
}
/** float32 → bf16 → float32, round to nearest even (finite values). */
function throughBf16(v: Float32Array): Float32Array {
  const bits = new Uint32Array(v.buffer.slice(0));
  for (let i = 0; i < bits.length; i++) {
    const b = bits[i];
    bits[i] = ((b + 0x7fff + ((b >>> 16) & 1)) >>> 16) << 16;
  }
  return new Float32Array(bits.buffer);
}
const throughF16 = (v: Float32Array) => f16ToF32(f32ToF16(v));

const TRANSFORMER = 'lllyasviel/FramePackI2V_HY';
const HUNYUAN = 'hunyuanvideo-community/HunyuanVideo';

let hub: RealSizeHub;
beforeAll(async () => {
  hub = await startRealSizeHub();
});
afterAll(async () => {
  await hub?.close();
});

describe('the real-size hub', () => {
  it('lays the repositories out as published: shard sizes, index.json, names, shapes and dtypes', async () => {
    const head = async (path: string) => Number((await fetch(`${hub.url}/${path}`, { method: 'HEAD' })).headers.get('content-length'));
    const index = await (await fetch(`${hub.url}/${TRANSFORMER}/resolve/main/diffusion_pytorch_model.safetensors.index.json`)).json() as { metadata: { total_size: number }; weight_map: Record<string, string> };
    const shards = [...new Set(Object.values(index.weight_map))].sort();
    expect(shards).toEqual([1, 2, 3].map((i) => `diffusion_pytorch_model-0000${i}-of-00003.safetensors`));
    const sizes = await Promise.all(shards.map((s) => head(`${TRANSFORMER}/resolve/main/${s}`)));
    expect(sizes.map((b) => (b / 1e9).toFixed(2))).toEqual(['9.97', '9.99', '5.79']); // framepack-reference.md §2
    expect(index.metadata.total_size).toBe(25_749_022_976); // 12,874,314,816 parameters × 2 bytes, + 2 × 196,672 for proj_out in fp32
    expect(Object.keys(index.weight_map)).toEqual(Object.keys(real.transformer).sort());

    const dit = await openCheckpoint(hubDownload('transformer-original', { endpoint: hub.url }).folder, TRANSFORMER, 'diffusion_pytorch_model.safetensors');
    expect(dit.packVersion).toBeNull();
    expect(dit.tensors.size).toBe(Object.keys(real.transformer).length);
    for (const [name, shape] of Object.entries(real.transformer)) {
      const t = dit.tensors.get(name)!;
      expect([t.shape, t.dtype, t.file], name).toEqual([shape, name.startsWith('proj_out.') ? 'F32' : 'BF16', index.weight_map[name]]);
    }
    const llama = await openCheckpoint(hubDownload('text_encoder', { endpoint: hub.url }).folder, HUNYUAN, 'model.safetensors');
    expect(llama.files).toEqual([1, 2, 3, 4].map((i) => `model-0000${i}-of-00004.safetensors`));
    expect([...llama.tensors.values()].every((t) => t.dtype === 'F16' && String(t.shape) === String(real.text_encoder[t.name]))).toBe(true);
    const siglip = await openCheckpoint(hubDownload('image_encoder', { endpoint: hub.url }).folder, 'lllyasviel/flux_redux_bfl', 'model.safetensors');
    expect(siglip.tensors.size).toBe(Object.keys(real.image_encoder).length);

    // Raw bytes, read at an offset past 9 GB, are the rule's values rounded to bf16.
    const late = [...dit.tensors.values()].filter((t) => t.file === shards[1]).sort((a, b) => b.begin - a.begin)[0];
    expect(late.begin).toBeGreaterThan(9e9);
    const got = new Uint16Array((await (await fetch(`${hub.url}/${TRANSFORMER}/resolve/main/${shards[1]}`, { headers: { Range: `bytes=${late.begin}-${late.begin + 4095}` } })).arrayBuffer()));
    const want = throughBf16(expectedFloat32(TRANSFORMER, late.name, late.shape, 2048));
    expect(Array.from(new Float32Array(Uint32Array.from(got, (b) => b << 16).buffer))).toEqual(Array.from(want));
  });

  it('the download converts its tensors into the stored format: names, shapes and bytes as the rule and the converter say', async () => {
    // A few tensors of each repository: 4-bit block linears read from past 4 GB (Llama's first shard) and 9 GB (the
    // transformer's second) into their files, an fp32 head weight, norms, a bias, a token-refiner linear (fp16).
    const farthest = async (name: 'transformer-original' | 'text_encoder', weights: string, file: string, pattern: RegExp) => {
      const ck = await openCheckpoint(hubDownload(name, { endpoint: hub.url }).folder, name, weights);
      const t = [...ck.tensors.values()].filter((x) => x.file === file && pattern.test(x.name)).sort((a, b) => b.begin - a.begin)[0];
      return t;
    };
    const ditLate = await farthest('transformer-original', 'diffusion_pytorch_model.safetensors', 'diffusion_pytorch_model-00002-of-00003.safetensors', /\.attn\.to_q\.weight$/);
    const llamaLate = await farthest('text_encoder', 'model.safetensors', 'model-00001-of-00004.safetensors', /\.self_attn\.k_proj\.weight$/);
    expect([ditLate.begin > 9e9, llamaLate.begin > 4.2e9]).toEqual([true, true]);
    const cases: { component: NetworkComponent; repo: string; name: 'transformer-original' | 'text_encoder'; keep: string[] }[] = [
      { component: 'transformer', repo: TRANSFORMER, name: 'transformer-original',
        keep: [ditLate.name, 'single_transformer_blocks.39.proj_out.bias', 'proj_out.weight', 'transformer_blocks.0.attn.norm_q.weight', 'context_embedder.token_refiner.refiner_blocks.0.attn.to_q.weight'] },
      { component: 'text_encoder', repo: HUNYUAN, name: 'text_encoder', keep: [llamaLate.name, 'layers.29.input_layernorm.weight', 'layers.31.self_attn.k_proj.weight'] },
    ];
    const store = memoryWeightStore();
    for (const c of cases) {
      const source = hubDownload(c.name, { endpoint: hub.url });
      const result = await downloadCheckpoint({
        ...source, store, model: c.name, storage: null, pack: PACK_VERSION,
        conversion: (ck) => {
          const base = networkConversion(c.component)(ck);
          return { ...base, omit: (t) => !c.keep.includes(t.name) || !!base.omit?.(t) };
        },
      });
      // Llama's layer 31 is not read by FramePack (hidden_states[-3]): left out like every tensor not kept here.
      expect(result.converted).toBe(c.keep.filter((n) => !n.startsWith('layers.31.')).length);
      const stored = new Map((await store.tensors(c.name)).map((t) => [t.name, t]));
      for (const name of c.keep) {
        const shape = real[c.component][name];
        const source16 = c.component === 'transformer' && name.startsWith('proj_out.') ? expectedFloat32(c.repo, name, shape) : (c.component === 'transformer' ? throughBf16 : throughF16)(expectedFloat32(c.repo, name, shape));
        const block = name === ditLate.name || name === llamaLate.name;
        if (name.startsWith('layers.31.')) {
          expect(stored.has(name) || stored.has(`${name}.q4`)).toBe(false);
        } else if (block) {
          const [n, k] = shape;
          const q = quantizeQ4(source16, n, k);
          expect(stored.get(`${name}.q4`)).toMatchObject({ dtype: 'U8', shape: [n, k / 32, 16] });
          expect(stored.get(`${name}.q4_scales`)).toMatchObject({ dtype: 'F16', shape: [n, k / 32] });
          expect(Buffer.from(await store.readTensor(c.name, `${name}.q4`)).equals(Buffer.from(q.blocks)), name).toBe(true);
          expect(Buffer.from(await store.readTensor(c.name, `${name}.q4_scales`)).equals(Buffer.from(f32ToF16(q.scales).buffer)), name).toBe(true);
        } else {
          // Biases, norms (≈ 1), the fp32 head weight and the token refiner: fp16.
          expect(stored.get(name), name).toMatchObject({ dtype: 'F16', shape });
          const bits = Uint16Array.from(source16, f32ToF16Bits);
          expect(Buffer.from(await store.readTensor(c.name, name)).equals(Buffer.from(bits.buffer)), name).toBe(true);
          if (name.endsWith('norm_q.weight') || name.endsWith('layernorm.weight')) expect(Math.abs(source16.reduce((a, b) => a + b, 0) / source16.length - 1)).toBeLessThan(0.01);
        }
      }
    }
  });
});

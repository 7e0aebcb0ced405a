import { SafetensorsFormatError } from '../../src/errors/index.ts';
import { describe, expect, it } from 'vitest';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { readHeader, streamTensors, toFloat32 } from '../../src/weights/safetensors.ts';
import { nodeFileSource, nodeFolderSource } from '../../src/weights/nodeFileSource.ts';
import { openCheckpoint } from '../../src/weights/checkpoint.ts';
import { bf16ToF32, f16BitsToF32, f32ToBf16Bits, f32ToF16Bits, roundToBf16 } from '../../src/weights/dtypes.ts';
import { fixturesDir, loadFixture } from '../helpers/fixtures.ts';

/** Writes a safetensors file by hand (independent of the reader) from named byte arrays. */
function writeSafetensors(path: string, tensors: { name: string; dtype: string; shape: number[]; bytes: Uint8Array }[], meta?: Record<string, string>) {
  const header: Record<string, unknown> = meta ? { __metadata__: meta } : {};
  let off = 0;
  for (const t of tensors) {
    header[t.name] = { dtype: t.dtype, shape: t.shape, data_offsets: [off, off + t.bytes.length] };
    off += t.bytes.length;
  }
  const json = new TextEncoder().encode(JSON.stringify(header));
  const out = new Uint8Array(8 + json.length + off);
  new DataView(out.buffer).setBigUint64(0, BigInt(json.length), true);
  out.set(json, 8);
  let p = 8 + json.length;
  for (const t of tensors) { out.set(t.bytes, p); p += t.bytes.length; }
  writeFileSync(path, out);
}

describe('safetensors reader', () => {
  it('reads the fixtures: dtypes, shapes and metadata of a case file', async () => {
    const f = await loadFixture('sampler_unipc.safetensors');
    expect(f.meta.case).toBe('sampler');
    expect(f.meta.steps).toBe(4);
    expect(f.shape('model_inputs')).toEqual([4, 1, 16, 3, 12, 10]);
    expect(f.f32('sigmas').data[0]).toBe(1);
    expect(f.ints('latent_indices').length).toBe(3);
    expect(f.bools('encoder_attention_mask').filter(Boolean).length).toBe(7);
  });

  it('opens the tiny DiT checkpoint folder with its config', async () => {
    const ckpt = await openCheckpoint(nodeFolderSource(join(fixturesDir(), 'dit_tiny')), 'dit_tiny', 'diffusion_pytorch_model.safetensors');
    expect(ckpt.config.num_attention_heads).toBe(2);
    const w = await ckpt.f32('x_embedder.proj.weight');
    expect(ckpt.tensors.get('x_embedder.proj.weight')!.shape).toEqual([64, 16, 1, 2, 2]);
    expect(w.length).toBe(64 * 16 * 4);
  });

  it('reads sharded checkpoints through index.json and converts bf16/f16', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'st-'));
    const vals = [1.5, -2.25, 3.0, 0.15625];
    const bf = new Uint16Array(vals.map(f32ToBf16Bits));
    const hf = new Uint16Array(vals.map(f32ToF16Bits));
    writeSafetensors(join(dir, 'm-00001-of-00002.safetensors'), [{ name: 'a', dtype: 'BF16', shape: [2, 2], bytes: new Uint8Array(bf.buffer) }]);
    writeSafetensors(join(dir, 'm-00002-of-00002.safetensors'), [{ name: 'b', dtype: 'F16', shape: [4], bytes: new Uint8Array(hf.buffer) }]);
    writeFileSync(join(dir, 'm.safetensors.index.json'), JSON.stringify({ weight_map: { a: 'm-00001-of-00002.safetensors', b: 'm-00002-of-00002.safetensors' } }));
    writeFileSync(join(dir, 'config.json'), '{"x": 1}');
    const ckpt = await openCheckpoint(nodeFolderSource(dir), dir, 'm.safetensors');
    expect(ckpt.files).toHaveLength(2);
    expect(Array.from(await ckpt.f32('a'))).toEqual(vals);
    expect(Array.from(await ckpt.f32('b'))).toEqual(vals);
  });

  it('streams tensors in order with chunks smaller than a tensor', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'st-'));
    const a = Float32Array.from({ length: 1000 }, (_, i) => i * 0.5);
    const b = Float32Array.from({ length: 37 }, (_, i) => -i);
    writeSafetensors(join(dir, 'x.safetensors'), [
      { name: 'a', dtype: 'F32', shape: [1000], bytes: new Uint8Array(a.buffer) },
      { name: 'b', dtype: 'F32', shape: [37], bytes: new Uint8Array(b.buffer) },
    ]);
    const src = nodeFileSource(join(dir, 'x.safetensors'));
    const header = await readHeader(src);
    const got: Record<string, Float32Array> = {};
    for await (const { info, bytes } of streamTensors(src, header, 333)) got[info.name] = toFloat32(info.dtype, bytes);
    expect(Array.from(got.a)).toEqual(Array.from(a));
    expect(Array.from(got.b)).toEqual(Array.from(b));
  });

  it('rejects a truncated file with a message a person can act on', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'st-'));
    writeFileSync(join(dir, 'bad.safetensors'), new Uint8Array([200, 0, 0, 0, 0, 0, 0, 0, 123]));
    await expect(readHeader(nodeFileSource(join(dir, 'bad.safetensors')))).rejects.toThrow(SafetensorsFormatError);
  });
});

describe('16-bit conversions', () => {
  it('round bf16 to nearest even as torch does (the reference timestep table)', () => {
    // framepack-reference.md §6.2: bf16(σ·1000) for 25 steps, and guidance 10000 → 9984.
    const sigma = [1.0, 0.994083, 0.98773, 0.980892, 0.97351, 0.965517, 0.956835, 0.947368, 0.937008, 0.92562, 0.913043, 0.899083, 0.883495, 0.865979, 0.846154, 0.823529, 0.797468, 0.767123, 0.731343, 0.688525, 0.636364, 0.571429, 0.488372, 0.378378, 0.225806];
    const want = [1000, 996, 988, 980, 972, 964, 956, 948, 936, 924, 912, 900, 884, 864, 848, 824, 796, 768, 732, 688, 636, 572, 488, 378, 226];
    expect(sigma.map((s) => roundToBf16(Math.fround(s * 1000)))).toEqual(want);
    expect(roundToBf16(10000)).toBe(9984);
    expect(Array.from(bf16ToF32(new Uint16Array([0x3f80, 0xc000])))).toEqual([1, -2]);
  });

  it('round fp16 to nearest even, with subnormals and overflow', () => {
    expect(f32ToF16Bits(1)).toBe(0x3c00);
    expect(f32ToF16Bits(65504)).toBe(0x7bff);
    expect(f32ToF16Bits(65520)).toBe(0x7c00); // rounds up to Inf
    expect(f16BitsToF32(f32ToF16Bits(2 ** -24))).toBe(2 ** -24);
    expect(f16BitsToF32(f32ToF16Bits(1 + 2 ** -11))).toBe(1); // tie → even
    expect(f16BitsToF32(f32ToF16Bits(1 + 3 * 2 ** -11))).toBe(1 + 2 ** -9);
  });
});

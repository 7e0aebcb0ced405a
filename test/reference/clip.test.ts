// The CLIP text encoder against the reference fixtures (every `clip_pooled` case): pooler_output and
// last_hidden_state through the product runner on the wasm EP and on WebGPU (SwiftShader) in fp32, the 4-bit
// path's error, the pooled-token rule, and the real config consuming exactly the real checkpoint's tensors.
import { TokenIdsError } from '../../src/errors/index.ts';
import { describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { buildClipText, clipPooledPosition, clipTensors, parseClipTextConfig } from '../../src/models/clip.ts';
import { formatError, tensorError } from '../../src/pipeline/tensorError.ts';
import type { ExecutionProvider } from '../../src/runtime/ort.ts';
import { openCheckpoint, type Checkpoint } from '../../src/weights/checkpoint.ts';
import { nodeFolderSource } from '../../src/weights/nodeFileSource.ts';
import { checkpointPrefix, createClipTextEncoder } from '../../src/worker/textEncoders.ts';
import { fixturesDir, listCases, loadFixture, type FixtureFile } from '../helpers/fixtures.ts';
import { ortReady } from '../helpers/ortSetup.ts';

const BAR = 1e-4; // the fixtures README's bar for single networks in fp32

async function cases(): Promise<FixtureFile[]> {
  const out: FixtureFile[] = [];
  for (const path of await listCases(fixturesDir())) {
    const f = await loadFixture(path);
    if (f.meta.case === 'clip_pooled') out.push(f);
  }
  return out;
}

async function weightsOf(f: FixtureFile): Promise<Checkpoint> {
  const dir = join(fixturesDir(), String(f.meta.weights));
  return openCheckpoint(nodeFolderSource(dir), dir, 'model.safetensors');
}

async function runCase(f: FixtureFile, provider: ExecutionProvider, quantized: boolean, dtype: 'float32' | 'float16' = 'float32') {
  const t0 = performance.now();
  const eosTokenId = f.meta.eos_token_id === undefined ? undefined : Number(f.meta.eos_token_id);
  const encoder = await createClipTextEncoder(await weightsOf(f), { provider, dtype, quantized, eosTokenId });
  const out = await encoder.run(f.ints('input_ids'));
  const ms = performance.now() - t0;
  await expect(encoder.run([encoder.graphs.config.vocabSize])).rejects.toThrow(TokenIdsError);
  await encoder.release();
  const pooled = tensorError(out.pooled.data, f.f32('pooler_output').data);
  const last = tensorError(out.lastHiddenState.data, f.f32('last_hidden_state').data);
  console.log(`clip ${f.path.split('/').pop()} ${provider} ${quantized ? '4-bit' : dtype === 'float16' ? 'fp16' : 'fp32'}: pooler_output ${formatError(pooled)}; last_hidden_state ${formatError(last)}; ${ms.toFixed(0)} ms`);
  expect(out.pooled.shape).toEqual(f.shape('pooler_output'));
  expect(out.lastHiddenState.shape).toEqual(f.shape('last_hidden_state'));
  return { pooled, last };
}

describe('CLIP text encoder (clip_pooled fixtures)', () => {
  it('finds the cases', async () => {
    expect((await cases()).length).toBeGreaterThan(0);
  });

  it('wasm fp32: pooler_output and last_hidden_state within 1e-4', async () => {
    await ortReady();
    for (const f of await cases()) {
      const { pooled, last } = await runCase(f, 'wasm', false);
      expect(pooled.rel).toBeLessThanOrEqual(BAR);
      expect(last.rel).toBeLessThanOrEqual(BAR);
    }
  });

  it('webgpu fp32 (SwiftShader): pooler_output and last_hidden_state within 1e-4', async () => {
    await ortReady();
    const [f] = await cases();
    const { pooled, last } = await runCase(f, 'webgpu', false);
    expect(pooled.rel).toBeLessThanOrEqual(BAR);
    expect(last.rel).toBeLessThanOrEqual(BAR);
  });

  // Reported, not held to the fp32 bar: 4-bit weights, and fp16 activations (measured on the wasm EP since
  // SwiftShader has no shader-f16).
  for (const [quantized, dtype] of [[true, 'float32'], [false, 'float16']] as const) {
    it(`${quantized ? '4-bit' : 'fp16'} on wasm: error reported (not a parity bar)`, async () => {
      await ortReady();
      for (const f of await cases()) {
        const { pooled, last } = await runCase(f, 'wasm', quantized, dtype);
        expect(Number.isFinite(pooled.rel) && Number.isFinite(last.rel)).toBe(true);
      }
    });
  }
});

describe('CLIP pooled token', () => {
  it('is the first EOS id; with the legacy eos_token_id 2 (real CLIP-L config) the first 49407, the largest id', () => {
    // framepack-reference.md §3.4: pooler_output = state at the first EOS (49407); BOS 49406, pad = EOS.
    const ids = [49406, 320, 1125, 539, 49407, 49407, 49407];
    expect(clipPooledPosition(ids, 2)).toBe(4);
    expect(clipPooledPosition(ids, 49407)).toBe(4);
    expect(clipPooledPosition([598, 5, 599, 599], 599)).toBe(2);
  });
});

describe('CLIP real configuration (real_shapes.json text_encoder_2)', () => {
  const realConfig = JSON.parse(readFileSync(new URL('../../src/models/configs/text_encoder_2.json', import.meta.url), 'utf8')) as Record<string, unknown>;
  const real = (JSON.parse(readFileSync(join(fixturesDir(), 'real_shapes.json'), 'utf8')) as Record<string, Record<string, number[]>>).text_encoder_2;

  it('matches the reference document (12 layers, 768 wide, 12 heads, MLP 3072, 77 positions)', () => {
    expect(parseClipTextConfig(realConfig)).toEqual({
      hiddenSize: 768, intermediateSize: 3072, numLayers: 12, numHeads: 12, layerNormEps: 1e-5, vocabSize: 49408, maxPositions: 77, eosTokenId: 2,
    });
  });

  it('the graphs read every real tensor with its stored shape; there is no projection or other unused tensor', () => {
    for (const quantized of [false, true]) {
      const used = clipTensors(buildClipText(parseClipTextConfig(realConfig), { dtype: 'float16', quantized }));
      expect([...used.keys()].sort()).toEqual(Object.keys(real).sort());
      for (const [name, shape] of used) expect([name, shape]).toEqual([name, real[name]]);
    }
    expect(Object.keys(real).some((n) => n.includes('projection'))).toBe(false);
  });

  it('a checkpoint saved as CLIPTextModel (names under text_model.) is found and read under that prefix', () => {
    const names = new Map(Object.keys(real).map((n) => [`text_model.${n}`, null as never]));
    const fake = { where: 'fake', tensors: names } as unknown as Checkpoint;
    const prefix = checkpointPrefix(fake, 'final_layer_norm.weight', ['', 'text_model.']);
    expect(prefix).toBe('text_model.');
    const used = clipTensors(buildClipText(parseClipTextConfig(realConfig), { dtype: 'float16', prefix }));
    expect([...used.keys()].sort()).toEqual([...names.keys()].sort());
    expect(() => checkpointPrefix(fake, 'final_layer_norm.weight', [''])).toThrow(/final_layer_norm\.weight/);
  });
});

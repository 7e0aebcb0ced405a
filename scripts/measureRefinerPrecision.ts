// Measures what storing the DiT token refiner's linears in 4-bit costs against storing them in fp16, on the tiny
// fixtures (test/fixtures/reference dit_forward cases), through the product's CPU executor (createDiT with
// provider 'wasm'). The block linears are 4-bit in every variant (as the stored pack holds them); only the
// refiner's linears change. Each variant feeds the fp32 graphs weights that went through the stored format's
// rounding (4-bit quantize → dequantize, or fp16), so the refiner's effect is isolated from everything else; the
// product's own 4-bit path (quantized: true) is run too, to show the simulation matches it.
// Usage: node scripts/run-node.mjs scripts/measureRefinerPrecision.ts

import { join } from 'node:path';
import { buildDiT, parseDiTConfig } from '../src/models/dit.ts';
import { packedRopeTable, ropeConfigFromDit } from '../src/pipeline/ropeTables.ts';
import { formatError, tensorError } from '../src/pipeline/tensorError.ts';
import { setupOrt } from '../src/runtime/ort.ts';
import { openCheckpoint, type Checkpoint } from '../src/weights/checkpoint.ts';
import { f16ToF32, f32ToF16 } from '../src/weights/dtypes.ts';
import { nodeFolderSource } from '../src/weights/nodeFileSource.ts';
import { dequantizeQ4, quantizeQ4 } from '../src/weights/quantize.ts';
import { createDiT, type DiTInputs } from '../src/worker/dit.ts';
import { fixturesDirIn, listCaseFiles, readCaseFile, type CaseFile } from '../src/cli/caseFile.ts';

type Rounding = 'q4' | 'f16' | 'f32';

/** The checkpoint with each tensor rounded as `roundingOf` says (shape [n, k] for 4-bit). */
function rounded(base: Checkpoint, roundingOf: (name: string) => { rounding: Rounding; shape?: number[] }): Checkpoint {
  return {
    ...base,
    async f32(name) {
      const w = await base.f32(name);
      const { rounding, shape } = roundingOf(name);
      if (rounding === 'f16') return f16ToF32(f32ToF16(w));
      if (rounding === 'q4') return dequantizeQ4(quantizeQ4(w, shape![0], shape![1]));
      return w;
    },
  };
}

function inputsOf(f: CaseFile, config: Record<string, unknown>): DiTInputs {
  const latents = f.f32('hidden_states');
  const [h, w] = latents.shape.slice(3);
  const indices = { latentIndices: f.ints('latent_indices'), cleanLatentIndices: f.ints('clean_latent_indices'), clean2xIndices: f.ints('clean_latent_2x_indices'), clean4xIndices: f.ints('clean_latent_4x_indices') };
  return {
    latents, timestep: f.f32('timestep').data[0], guidance: f.f32('guidance').data[0],
    textStates: f.f32('encoder_hidden_states'), textMask: f.bools('encoder_attention_mask'), pooledProjections: f.f32('pooled_projections'),
    imageEmbeddings: f.f32('image_embeddings'), cleanLatents: f.f32('clean_latents'), cleanLatents2x: f.f32('clean_latents_2x'), cleanLatents4x: f.f32('clean_latents_4x'),
    rope: packedRopeTable(indices, h, w, parseDiTConfig(config).patchSize, ropeConfigFromDit(config)),
  };
}

setupOrt({});
const dir = fixturesDirIn(process.cwd());
for (const path of await listCaseFiles(dir)) {
  const f = await readCaseFile(path);
  if (f.meta.case !== 'dit_forward') continue;
  const folder = join(dir, f.meta.weights as string);
  const base = await openCheckpoint(nodeFolderSource(folder), folder, 'diffusion_pytorch_model.safetensors');
  const c = parseDiTConfig(base.config);
  const q = buildDiT(c, { quantized: true });
  const blockQ4 = new Map<string, number[]>();
  for (const plan of Object.values(q.blocks)) {
    for (const w of plan.weights.weights) {
      if (w.layout !== 'q4') continue;
      for (let i = 0; i < Math.max(c.layers, c.singleLayers); i++) blockQ4.set(w.tensor.replace('{i}', String(i)), w.shape);
    }
  }
  const refinerQ4 = new Map(q.embed.weights.filter((w) => w.layout === 'q4').map((w) => [w.tensor, w.shape]));
  const inputs = inputsOf(f, base.config);
  const want = f.f32('output').data;
  const variant = async (refiner: Rounding, rest: Rounding) => {
    const ck = rounded(base, (name) => {
      if (blockQ4.has(name)) return { rounding: 'q4', shape: blockQ4.get(name) };
      if (refinerQ4.has(name)) return { rounding: refiner, shape: refinerQ4.get(name) };
      return { rounding: rest };
    });
    const dit = await createDiT(ck, { provider: 'wasm' });
    const out = await dit.forward(inputs);
    const ctx = (await dit.embed(inputs)).contextTokens.data;
    await dit.release();
    return { out: out.data, ctx };
  };
  const exact = await createDiT(base, { provider: 'wasm' });
  const ctx32 = (await exact.embed(inputs)).contextTokens.data;
  await exact.release();
  const product = await createDiT(base, { provider: 'wasm', quantized: true });
  const productOut = (await product.forward(inputs)).data;
  await product.release();
  const name = path.split('/').pop()!.replace('.safetensors', '');
  const allQ4 = await variant('q4', 'f16');
  const refinerF16 = await variant('f16', 'f16');
  const refinerOnlyQ4 = await (async () => {
    const ck = rounded(base, (n) => (refinerQ4.has(n) ? { rounding: 'q4', shape: refinerQ4.get(n) } : { rounding: 'f32' }));
    const dit = await createDiT(ck, { provider: 'wasm' });
    const out = (await dit.forward(inputs)).data;
    await dit.release();
    return out;
  })();
  console.log(`${name}:`);
  console.log(`  product 4-bit path (quantized: true)      output ${formatError(tensorError(productOut, want))}`);
  console.log(`  simulated, refiner 4-bit, rest fp16       output ${formatError(tensorError(allQ4.out, want))}; context tokens ${formatError(tensorError(allQ4.ctx, ctx32))}`);
  console.log(`  simulated, refiner fp16, rest fp16        output ${formatError(tensorError(refinerF16.out, want))}; context tokens ${formatError(tensorError(refinerF16.ctx, ctx32))}`);
  console.log(`  refiner 4-bit alone (blocks fp32)         output ${formatError(tensorError(refinerOnlyQ4, want))}`);
}

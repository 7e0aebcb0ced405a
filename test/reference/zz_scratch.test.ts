import { it } from 'vitest';
import { join } from 'node:path';
import { openCheckpoint } from '../../src/weights/checkpoint.ts';
import { nodeFolderSource } from '../../src/weights/nodeFileSource.ts';
import { createDiT } from '../../src/worker/dit.ts';
import { packedRopeTable, ropeConfigFromDit } from '../../src/pipeline/ropeTables.ts';
import { formatError, tensorError } from '../../src/pipeline/tensorError.ts';
import { fixturesDir, loadFixture } from '../helpers/fixtures.ts';
import { ortReady } from '../helpers/ortSetup.ts';
it('scratch', async () => {
  await ortReady();
  const dir = fixturesDir();
  const ck = await openCheckpoint(nodeFolderSource(join(dir, 'dit_tiny')), 'x', 'diffusion_pytorch_model.safetensors');
  const dit = await createDiT(ck, { provider: 'wasm' });
  for (const name of ['dit_forward_f1', 'dit_forward_original_p0', 'dit_forward_original_p1']) {
    const f = await loadFixture(name + '.safetensors');
    const lat = f.f32('hidden_states');
    const inputs = {
      latents: lat, timestep: Number(process.env.TS ?? f.f32('timestep').data[0]), guidance: Number(process.env.GS ?? f.f32('guidance').data[0]),
      textStates: f.f32('encoder_hidden_states'), textMask: f.bools('encoder_attention_mask'),
      pooledProjections: f.f32('pooled_projections'), imageEmbeddings: f.f32('image_embeddings'),
      cleanLatents: f.f32('clean_latents'), cleanLatents2x: f.f32('clean_latents_2x'), cleanLatents4x: f.f32('clean_latents_4x'),
      rope: process.env.FIXROPE ? f.f32('rope_freqs').data : packedRopeTable({ latentIndices: f.ints('latent_indices'), cleanLatentIndices: f.ints('clean_latent_indices'), clean2xIndices: f.ints('clean_latent_2x_indices'), clean4xIndices: f.ints('clean_latent_4x_indices') }, lat.shape[3], lat.shape[4], 2, ropeConfigFromDit(ck.config)),
    };
    const out = await dit.forward(inputs);
    console.log(process.env.SIN_MODE, name, formatError(tensorError(out.data, f.f32('output').data)));
  }
});

// Reference cases that run the networks: each one goes through the same runners (src/worker/) the app and the CLI
// use. Inputs are read from the case file by the names its metadata lists; sizes come from the files, so any
// directory of cases made by the reference code runs unchanged.

import { join } from 'node:path';
import { existsSync } from 'node:fs';
import type { CaseFile } from './caseFile.ts';
import { registerCaseHandler, weightFolders, type CaseOptions, type TensorResult } from './referenceCases.ts';
import { tensorError } from '../pipeline/tensorError.ts';
import { openCheckpoint, type Checkpoint } from '../weights/checkpoint.ts';
import { nodeFolderSource } from '../weights/nodeFileSource.ts';
import { createDiT } from '../worker/dit.ts';
import { createVae } from '../worker/vae.ts';
import { createClipTextEncoder, createLlamaTextEncoder } from '../worker/textEncoders.ts';
import { createSiglipImageEncoder } from '../worker/imageEncoder.ts';
import { sectionVelocityModel, type Conditioning } from '../worker/ditSection.ts';
import { fmDenoiser, distilledGuidanceValue } from '../pipeline/fmWrapper.ts';
import { sampleUniPC } from '../pipeline/unipc.ts';
import { fluxMu, fluxSigmas, noisyTokenCount } from '../pipeline/sigmas.ts';
import { TorchGenerator } from '../pipeline/torchRandom.ts';
import { readCaseFile } from './caseFile.ts';
import { runFramePackLoop } from '../worker/framepackLoop.ts';
import { collectVideo } from '../worker/videoCollector.ts';
import { DEFAULT_TEACACHE_THRESHOLD } from '../pipeline/teacache.ts';

const measure = (tensor: string, got: ArrayLike<number>, want: ArrayLike<number>): TensorResult => ({ tensor, ...tensorError(got, want) });

/** A checkpoint folder in either of the official layouts (diffusers' or transformers' weight file name). */
export function openFolder(dir: string): Promise<Checkpoint> {
  const file = ['diffusion_pytorch_model.safetensors', 'model.safetensors'].find(
    (f) => existsSync(join(dir, f)) || existsSync(join(dir, `${f.replace(/\.safetensors$/, '')}.safetensors.index.json`)),
  );
  if (!file) throw new Error(`${dir} holds no diffusion_pytorch_model.safetensors or model.safetensors (or their index.json)`);
  return openCheckpoint(nodeFolderSource(dir), dir, file);
}

function conditioningOf(c: CaseFile): Conditioning {
  return {
    textStates: c.f32('encoder_hidden_states'),
    textMask: c.has('encoder_attention_mask') ? c.bools('encoder_attention_mask') : undefined,
    pooled: c.f32('pooled_projections'),
    imageEmbeddings: c.f32('image_embeddings'),
  };
}

/** 16-bit graphs reproduce the reference's bf16 casts of x, the timestep and the guidance (§6.3); fp32 rounds nothing. */
const referenceDtypeOf = (o: CaseOptions) => (o.dtype === 'float16' ? 'bfloat16' : 'float32') as 'bfloat16' | 'float32';

const meta = <T>(c: CaseFile, key: string, fallback?: T): T => {
  if (key in c.meta) return c.meta[key] as T;
  if (fallback === undefined) throw new Error(`${c.path}: metadata has no "${key}"`);
  return fallback;
};

registerCaseHandler('dit_forward', async (c, dir, o) => {
  const dit = await createDiT(await openFolder(weightFolders(c, dir)[0]), { provider: o.provider, dtype: o.dtype, quantized: o.quantized });
  try {
    const x = c.f32('hidden_states');
    const model = sectionVelocityModel(
      dit,
      {
        latentIndices: c.ints('latent_indices'),
        cleanLatentIndices: c.ints('clean_latent_indices'),
        clean2xIndices: c.ints('clean_latent_2x_indices'),
        clean4xIndices: c.ints('clean_latent_4x_indices'),
      },
      { cleanLatents: c.f32('clean_latents'), cleanLatents2x: c.f32('clean_latents_2x'), cleanLatents4x: c.f32('clean_latents_4x') },
      x.shape,
      { positive: conditioningOf(c) },
      { guidance: c.f32('guidance').data[0], teacacheThreshold: null, steps: 1 },
    );
    const v = await model(x.data, c.f32('timestep').data[0], 'positive');
    return [measure('output', v, c.f32('output').data)];
  } finally {
    await dit.release();
  }
});

registerCaseHandler('sampler', async (c, dir, o) => {
  // `inputs_from` names the case whose conditioning this one reuses.
  const inputs = typeof c.meta.inputs_from === 'string' ? await readCaseFile(join(dir, `${c.meta.inputs_from}.safetensors`)) : c;
  const dit = await createDiT(await openFolder(weightFolders(c, dir)[0]), { provider: o.provider, dtype: o.dtype, quantized: o.quantized });
  try {
    const steps = meta<number>(c, 'steps');
    const noise = new TorchGenerator(BigInt(meta<number>(c, 'seed'))).randn(inputs.shape('noise'));
    const [, , t, h, w] = noise.shape;
    const sigmas = fluxSigmas(steps, fluxMu(noisyTokenCount(t, h, w)));
    const teacache = meta<boolean>(c, 'teacache', false);
    const accumulated: number[] = [];
    const model = sectionVelocityModel(
      dit,
      {
        latentIndices: inputs.ints('latent_indices'),
        cleanLatentIndices: inputs.ints('clean_latent_indices'),
        clean2xIndices: inputs.ints('clean_latent_2x_indices'),
        clean4xIndices: inputs.ints('clean_latent_4x_indices'),
      },
      { cleanLatents: inputs.f32('clean_latents'), cleanLatents2x: inputs.f32('clean_latents_2x'), cleanLatents4x: inputs.f32('clean_latents_4x') },
      noise.shape,
      { positive: conditioningOf(inputs) },
      {
        guidance: distilledGuidanceValue(meta<number>(c, 'distilled_guidance'), referenceDtypeOf(o)),
        teacacheThreshold: teacache ? meta<number>(c, 'rel_l1_thresh', DEFAULT_TEACACHE_THRESHOLD) : null,
        steps,
        onCall: (_b, _computed, acc) => accumulated.push(acc),
      },
    );
    const modelInputs: Float32Array[] = [];
    const denoised: Float32Array[] = [];
    const denoiser = fmDenoiser(async (x, ts, branch) => {
      modelInputs.push(x.slice());
      return model(x, ts, branch);
    }, { dtype: referenceDtypeOf(o), cfg: meta<number>(c, 'cfg', 1), cfgRescale: meta<number>(c, 'cfg_rescale', 0) });
    const result = await sampleUniPC(denoiser, noise.data, sigmas, { variant: 'bh1', onStep: (_i, d) => void denoised.push(d.slice()) });
    const out: TensorResult[] = [];
    const expected = meta<string[]>(c, 'expected');
    const stacked = (list: Float32Array[]) => {
      const all = new Float32Array(list.reduce((n, a) => n + a.length, 0));
      let off = 0;
      for (const a of list) all.set(a, (off += a.length) - a.length);
      return all;
    };
    for (const name of expected) {
      if (name === 'result') out.push(measure(name, result, c.f32(name).data));
      else if (name === 'denoised') out.push(measure(name, stacked(denoised), c.f32(name).data));
      else if (name === 'model_inputs') out.push(measure(name, stacked(modelInputs), c.f32(name).data));
      else if (name === 'sigmas') out.push(measure(name, sigmas, c.f32(name).data));
      else if (name === 'accumulated_rel_l1') out.push(measure(name, accumulated, c.f32(name).data));
      else throw new Error(`${c.path}: unknown expected tensor ${name}`);
    }
    return out;
  } finally {
    await dit.release();
  }
});

registerCaseHandler('vae_roundtrip', async (c, dir, o) => {
  const vae = await createVae(await openFolder(weightFolders(c, dir)[0]), { provider: o.provider, dtype: o.dtype });
  try {
    const out: TensorResult[] = [];
    const enc = await vae.encode(c.f32('image'));
    const decodes: Record<string, string> = { decoded_short: 'z_short', decoded_long: 'z_long' };
    for (const name of meta<string[]>(c, 'expected')) {
      if (name === 'posterior_mean') out.push(measure(name, enc.mean.data, c.f32(name).data));
      else if (name === 'posterior_logvar') out.push(measure(name, enc.logvar.data, c.f32(name).data));
      else if (name === 'latent_scaled') out.push(measure(name, enc.latent.data, c.f32(name).data));
      else if (decodes[name]) out.push(measure(name, (await vae.decode(c.f32(decodes[name]))).data, c.f32(name).data));
      else throw new Error(`${c.path}: unknown expected tensor ${name}`);
    }
    return out;
  } finally {
    await vae.release();
  }
});

registerCaseHandler('llama_hidden', async (c, dir, o) => {
  const expected = meta<string[]>(c, 'expected');
  const encoder = await createLlamaTextEncoder(await openFolder(weightFolders(c, dir)[0]), {
    provider: o.provider, dtype: o.dtype, quantized: o.quantized, depth: expected.includes('last_hidden_state') ? 'full' : 'framepack',
  });
  try {
    const got = await encoder.run(c.ints('input_ids'));
    return expected.map((name) => {
      if (name === 'hidden_states_m3') return measure(name, got.hiddenStatesM3.data, c.f32(name).data);
      if (name === 'last_hidden_state' && got.lastHiddenState) return measure(name, got.lastHiddenState.data, c.f32(name).data);
      throw new Error(`${c.path}: unknown expected tensor ${name}`);
    });
  } finally {
    await encoder.release();
  }
});

registerCaseHandler('clip_pooled', async (c, dir, o) => {
  const eos = c.meta.eos_token_id;
  const encoder = await createClipTextEncoder(await openFolder(weightFolders(c, dir)[0]), {
    provider: o.provider, dtype: o.dtype, quantized: o.quantized, ...(typeof eos === 'number' ? { eosTokenId: eos } : {}),
  });
  try {
    const got = await encoder.run(c.ints('input_ids'));
    return meta<string[]>(c, 'expected').map((name) => {
      if (name === 'pooler_output') return measure(name, got.pooled.data, c.f32(name).data);
      if (name === 'last_hidden_state') return measure(name, got.lastHiddenState.data, c.f32(name).data);
      throw new Error(`${c.path}: unknown expected tensor ${name}`);
    });
  } finally {
    await encoder.release();
  }
});

registerCaseHandler('siglip_hidden', async (c, dir, o) => {
  const encoder = await createSiglipImageEncoder(await openFolder(weightFolders(c, dir)[0]), { provider: o.provider, dtype: o.dtype, quantized: o.quantized });
  try {
    const got = await encoder.run(c.f32('pixel_values'));
    return [measure('last_hidden_state', got.data, c.f32('last_hidden_state').data)];
  } finally {
    await encoder.release();
  }
});

registerCaseHandler('pipeline', async (c, dir, o: CaseOptions) => {
  const [ditDir, vaeDir] = weightFolders(c, dir);
  const vae = await createVae(await openFolder(vaeDir), { provider: o.provider, dtype: o.dtype });
  const dit = await createDiT(await openFolder(ditDir), { provider: o.provider, dtype: o.dtype, quantized: o.quantized });
  try {
    const steps = meta<number>(c, 'steps');
    const startLatent = (await vae.encode(c.f32('image'))).latent;
    const guidance = distilledGuidanceValue(meta<number>(c, 'distilled_guidance'), referenceDtypeOf(o));
    const teacache = meta<boolean>(c, 'teacache', false);
    const video = collectVideo();
    const { history, generated } = await runFramePackLoop(
      {
        variant: meta<'original' | 'f1'>(c, 'variant'),
        sections: meta<number>(c, 'sections'),
        latentWindow: meta<number>(c, 'latent_window'),
        steps,
        seed: BigInt(meta<number>(c, 'seed')),
        cfg: meta<number>(c, 'cfg', 1),
        cfgRescale: meta<number>(c, 'cfg_rescale', 0),
        referenceDtype: referenceDtypeOf(o),
      },
      startLatent,
      {
        sectionModel: async ({ layout, context, latentShape }) =>
          sectionVelocityModel(dit, layout, context, latentShape, { positive: conditioningOf(c) }, {
            guidance, steps, teacacheThreshold: teacache ? meta<number>(c, 'rel_l1_thresh', DEFAULT_TEACACHE_THRESHOLD) : null,
          }),
        decode: (latents) => vae.decodeLatents(latents),
      },
      video.sink,
    );
    const out: TensorResult[] = [];
    for (const name of meta<string[]>(c, 'expected')) {
      const m = /^section(\d+)_generated$/.exec(name);
      if (name === 'pixels') out.push(measure(name, video.whole().data, c.f32(name).data));
      else if (name === 'history_latents') out.push(measure(name, history.latents.data, c.f32(name).data));
      else if (m) out.push(measure(name, generated[Number(m[1])].data, c.f32(name).data));
      else throw new Error(`${c.path}: unknown expected tensor ${name}`);
    }
    return out;
  } finally {
    await dit.release();
    await vae.release();
  }
});

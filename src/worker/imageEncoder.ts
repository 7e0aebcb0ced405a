// Runs SigLIP's vision tower for a checkpoint on an execution provider and returns its last_hidden_state, the
// image conditioning FramePack feeds the transformer (framepack-reference.md §3.3). This is the one code path the
// app, the CLI and check-reference use: patchify, then one layer session per encoder layer with that layer's
// weights, then the post-layernorm; the pooling head's weights are never read.

import { PixelValuesShapeError } from '../errors/engine.ts';
import { buildSiglipVision, parseSiglipVisionConfig, siglipTokens, type SiglipGraphs } from '../models/siglip.ts';
import type { Tensor } from '../pipeline/tensor.ts';
import { createSession } from '../runtime/ort.ts';
import { weightFeeds } from '../runtime/weightFeeds.ts';
import type { Checkpoint } from '../weights/checkpoint.ts';
import { activationFeed, checkpointPrefix, createLayerStack, disposeIfGpu, readFloat32, type EncoderOptions } from './textEncoders.ts';

export interface SiglipImageEncoder {
  graphs: SiglipGraphs;
  /** pixel_values [1, C, S, S] (already resized to the config's image_size and normalised) → [1, P, D]. */
  run(pixelValues: Tensor): Promise<Tensor>;
  release(): Promise<void>;
}

/** The SigLIP image encoder for a checkpoint folder. Throws SiglipConfigError, TensorMissing; run() throws PixelValuesShapeError. */
export async function createSiglipImageEncoder(checkpoint: Checkpoint, options: EncoderOptions): Promise<SiglipImageEncoder> {
  const config = parseSiglipVisionConfig(checkpoint.config);
  const prefix = checkpointPrefix(checkpoint, 'post_layernorm.weight', ['', 'vision_model.']);
  const graphs = buildSiglipVision(config, { dtype: options.dtype, quantized: options.quantized, prefix });
  const embed = await createSession(graphs.embeddings, options.provider, { outputsOnGpu: options.provider === 'webgpu' });
  const embedFeeds = await weightFeeds(graphs.embeddings, checkpoint);
  const stack = await createLayerStack(graphs.layer, checkpoint, options.provider);
  const final = await createSession(graphs.final, options.provider);
  const finalFeeds = await weightFeeds(graphs.final, checkpoint);
  const want = [1, config.numChannels, config.imageSize, config.imageSize];
  const tokens = siglipTokens(config);
  return {
    graphs,
    async run(pixelValues) {
      if (pixelValues.shape.join() !== want.join()) {
        throw new PixelValuesShapeError(`SigLIP takes pixel_values of shape [${want}], got [${pixelValues.shape}]; resize the image to ${config.imageSize}×${config.imageSize} first.`);
      }
      const hidden = (await embed.run({ ...embedFeeds, pixel_values: activationFeed(options.dtype, pixelValues.data, want) })).hidden;
      const { out } = await stack.run(hidden, {}, graphs.layers);
      const last = (await final.run({ ...finalFeeds, hidden: out })).last_hidden_state;
      disposeIfGpu(hidden);
      if (out !== hidden) disposeIfGpu(out);
      return { data: await readFloat32(last), shape: [1, tokens, config.hiddenSize] };
    },
    async release() {
      await stack.release();
      await embed.release();
      await final.release();
    },
  };
}

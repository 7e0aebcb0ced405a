// Failures of the graph builders in src/models/: a network's config.json (or the build options) that the builder
// cannot turn into a graph. A person cannot fix these from the page — the model list names fixed checkpoints — so
// they count as programming errors and keep their stack across the worker boundary. They live here so the page can
// rebuild them by name without loading any graph code: this module imports nothing and does nothing when imported.

/** The transformer's config.json (or the build options) is not a FramePack packed DiT this builder can run. */
export class DiTConfigError extends Error {
  override name = 'DiTConfigError';
}

/** The Llama text encoder's config.json is not one this app can run: the text_encoder folder holds another model. */
export class LlamaConfigError extends Error {
  override name = 'LlamaConfigError';
  constructor(detail: string) {
    super(`The Llama text encoder's config.json is not one this app can run: ${detail}. Check that the text_encoder folder holds the HunyuanVideo Llama (LlamaModel) checkpoint.`);
  }
}

/** The CLIP text encoder's config.json is not one this app can run: the text_encoder_2 folder holds another model. */
export class ClipConfigError extends Error {
  override name = 'ClipConfigError';
  constructor(detail: string) {
    super(`The CLIP text encoder's config.json is not one this app can run: ${detail}. Check that the text_encoder_2 folder holds a CLIPTextModel checkpoint.`);
  }
}

/** The SigLIP image encoder's config.json is not one this app can run: the image_encoder folder holds another model. */
export class SiglipConfigError extends Error {
  override name = 'SiglipConfigError';
  constructor(detail: string) {
    super(`The SigLIP image encoder's config.json is not one this app can run: ${detail}. Check that the image_encoder folder holds a SiglipVisionModel checkpoint.`);
  }
}

/** The VAE's config.json is not one this app can run: the vae folder holds another model. */
export class VaeConfigError extends Error {
  override name = 'VaeConfigError';
  constructor(detail: string) {
    super(`The VAE's config.json is not one this app can run: ${detail}. Check that the vae folder holds an AutoencoderKLHunyuanVideo checkpoint.`);
  }
}

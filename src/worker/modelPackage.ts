// A FramePack model as the engine sees it: the folders of its five networks and tokenizers (laid out like the
// official Hugging Face repositories) plus the settings no Hugging Face file holds — resolution buckets, SigLIP
// input size, latent window, the Llama crop — read from a `framepack.json` beside them.

import { ModelPackageError } from '../errors/engine.ts';
import { BUCKETS_640, type Bucket } from '../pipeline/buckets.ts';
import { HUNYUAN_CROP_START } from '../pipeline/promptTemplate.ts';
import { openCheckpoint, type Checkpoint, type FolderSource } from '../weights/checkpoint.ts';
import type { ByteSource } from '../weights/safetensors.ts';

export type Component = 'transformer' | 'text_encoder' | 'tokenizer' | 'text_encoder_2' | 'tokenizer_2' | 'vae' | 'image_encoder' | 'feature_extractor';

export interface ModelPackage {
  name: string;
  description: string;
  components: Record<Component, string>;
  buckets: Bucket[];
  siglipImageSize: number;
  latentWindow: number;
  fps: number;
  llamaCropStart: number;
}

const COMPONENTS: Component[] = ['transformer', 'text_encoder', 'tokenizer', 'text_encoder_2', 'tokenizer_2', 'vae', 'image_encoder', 'feature_extractor'];

/** Parses framepack.json; fields it lacks take the reference's values (640 buckets, 384, window 9, crop 95). */
export function parseModelPackage(json: Record<string, unknown>): ModelPackage {
  const components = json.components as Record<string, string> | undefined;
  if (!components) throw new ModelPackageError('framepack.json has no "components": it does not describe a FramePack model.');
  for (const c of COMPONENTS) {
    if (typeof components[c] !== 'string') throw new ModelPackageError(`framepack.json names no folder for the ${c}.`);
  }
  const buckets = Array.isArray(json.buckets)
    ? (json.buckets as [number, number][]).map(([height, width]) => ({ height, width }))
    : [...BUCKETS_640];
  return {
    name: String(json.name ?? 'model'),
    description: String(json.description ?? ''),
    components: components as Record<Component, string>,
    buckets,
    siglipImageSize: Number(json.siglip_image_size ?? 384),
    latentWindow: Number(json.latent_window_size ?? 9),
    fps: Number(json.fps ?? 30),
    llamaCropStart: Number(json.llama_crop_start ?? HUNYUAN_CROP_START),
  };
}

/** A whole model: its package description and a way to open any file of it by path relative to framepack.json. */
export interface ModelSource {
  package: ModelPackage;
  open(path: string): Promise<ByteSource>;
}

export async function readText(src: ByteSource): Promise<string> {
  return new TextDecoder().decode(await src.read(0, await src.size()));
}

export async function openModelSource(open: (path: string) => Promise<ByteSource>): Promise<ModelSource> {
  const json = JSON.parse(await readText(await open('framepack.json'))) as Record<string, unknown>;
  return { package: parseModelPackage(json), open };
}

/** The folder of one component as a FolderSource. */
export function componentFolder(model: ModelSource, component: Component): FolderSource {
  const base = model.package.components[component].replace(/\/$/, '');
  return (file) => model.open(`${base}/${file}`);
}

const WEIGHT_FILES: Partial<Record<Component, string>> = {
  transformer: 'diffusion_pytorch_model.safetensors',
  vae: 'diffusion_pytorch_model.safetensors',
  text_encoder: 'model.safetensors',
  text_encoder_2: 'model.safetensors',
  image_encoder: 'model.safetensors',
};

/** Opens a network's checkpoint (config.json + weights, sharded or not). */
export function openComponent(model: ModelSource, component: Component): Promise<Checkpoint> {
  const file = WEIGHT_FILES[component];
  if (!file) throw new ModelPackageError(`${component} is not a network`);
  return openCheckpoint(componentFolder(model, component), `${model.package.name}/${model.package.components[component]}`, file);
}

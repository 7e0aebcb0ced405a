// Where the CLI's model comes from, shared by generate and convert: a local model folder (framepack.json and
// checkpoint folders, read raw), the Hugging Face repositories (or a mirror, such as the real-size hub of
// scripts/realSizeHub.ts) converted once into a directory store, or a pack of converted weights (npm run convert's
// output, a folder or a URL) read without conversion.

import { existsSync } from 'node:fs';
import { homedir } from 'node:os';
import { join, resolve } from 'node:path';
import { CheckpointFileMissing, formatBytes } from '../errors/weights.ts';
import type { FolderSource } from '../weights/checkpoint.ts';
import { directoryWeightStore } from '../weights/dirStore.ts';
import { httpFolderSource } from '../weights/httpSource.ts';
import { hubComponent } from '../weights/huggingFace.ts';
import { nodeFileSource, nodeFolderSource } from '../weights/nodeFileSource.ts';
import { packFingerprint, type PackManifest } from '../weights/pack.ts';
import type { WeightStore } from '../weights/weightCache.ts';
import { openModelSource, parseModelPackage, readText, type Component, type ModelSource } from '../worker/modelPackage.ts';
import {
  HUB_NAMES, modelSourceOf, packModelPlan, PARTS, prepareStoredModel, readPackManifest, storedModelSource,
  type ModelPlan, type PartSpec,
} from '../worker/modelStore.ts';

/** The cache directory when --cache-dir is not given. */
export function defaultCacheDir(): string {
  return join(process.env.XDG_CACHE_HOME ?? join(homedir(), '.cache'), 'framepack-web');
}

/** A local model folder read raw (the bundled tiny model, a Hugging Face layout on disk). */
export async function openLocalModel(dir: string): Promise<ModelSource> {
  const root = resolve(dir);
  return openModelSource(async (path) => {
    const full = join(root, path);
    if (!existsSync(full)) throw new CheckpointFileMissing(path, root);
    return nodeFileSource(full);
  });
}

/** A local model folder as a plan to convert (store ids `local/FOLDER`). */
export async function localModelPlan(dir: string): Promise<ModelPlan> {
  const root = resolve(dir);
  const packageJson = JSON.parse(await readText(nodeFileSource(join(root, 'framepack.json')))) as Record<string, unknown>;
  const components = parseModelPackage(packageJson).components;
  const parts: PartSpec[] = PARTS.map((component: Component) => {
    const folder = components[component];
    const spec = hubComponent(HUB_NAMES[component]);
    const where = join(root, folder);
    return {
      component, folder, storeId: `local/${folder}`, fingerprint: packFingerprint(where), where,
      weightsFile: spec.weights, configFile: spec.config, extraFiles: spec.files, source: () => nodeFolderSource(where),
    };
  });
  return { packageJson, parts };
}

/** A pack folder or URL: its manifest and a way to open its part folders. */
export async function openPack(location: string): Promise<{ manifest: PackManifest; base: string; folderAt: (folder: string) => FolderSource }> {
  const remote = /^https?:\/\//.test(location);
  const base = remote ? (location.endsWith('/') ? location : `${location}/`) : resolve(location);
  const folderAt = (folder: string): FolderSource => (remote ? httpFolderSource(new URL(`${folder.replace(/\/$/, '')}/`, base).href) : nodeFolderSource(join(base, folder)));
  const manifest = await readPackManifest(remote ? httpFolderSource(base) : nodeFolderSource(base), base);
  return { manifest, base, folderAt };
}

/** Which of a pack's models to use: the one asked for, else FramePack (F1 with variant f1), else its only one. */
export function pickPackModel(manifest: PackManifest, variant: string | undefined, asked?: string): string {
  const ids = Object.keys(manifest.models);
  if (asked) return asked;
  const wanted = variant === 'f1' ? 'framepack-f1' : 'framepack';
  if (ids.includes(wanted)) return wanted;
  if (ids.length === 1) return ids[0];
  throw new Error(`The pack holds ${ids.join(', ')}; say which with --pack-model.`);
}

/** A pack's model read directly from its files (no store, no conversion). */
export function packModelSource(manifest: PackManifest, model: string, base: string, folderAt: (folder: string) => FolderSource): Promise<ModelSource> {
  const plan = packModelPlan(manifest, model, base, folderAt);
  return modelSourceOf(plan.packageJson, new Map(plan.parts.map((p) => [p.folder, p.source()])));
}

/** Prints download progress of a plan's parts to stderr, a line per part and per tenth of it. */
export function progressPrinter(): Parameters<typeof prepareStoredModel>[2] {
  let last = '';
  return {
    storage: null,
    onOutdated: (part, version) => console.error(`${part.where}: stored in an older format (version ${version}); converting it again`),
    onProgress: (part, i, n, p) => {
      const tenth = p.total > 0 ? Math.floor((10 * p.loaded) / p.total) : 10;
      const line = `part ${i}/${n} ${part.component}: ${formatBytes(p.loaded)} of ${formatBytes(p.total)}`;
      const key = `${part.storeId}/${tenth}`;
      if (key !== last) console.error(line);
      last = key;
    },
  };
}

/** Downloads and converts what the store lacks, then opens the model from the store. */
export async function storedModel(store: WeightStore, plan: ModelPlan): Promise<ModelSource> {
  await prepareStoredModel(store, plan, progressPrinter());
  return storedModelSource(store, plan);
}

export { directoryWeightStore };

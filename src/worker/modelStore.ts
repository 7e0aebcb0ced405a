// A model kept in a WeightStore (IndexedDB in the browser, a directory for the CLI), whatever it came from: the
// official Hugging Face repositories (converted at download), a pack written by `npm run convert` (stored as it
// is), or the bundled tiny model (converted like the hub's). A model is a plan — its parts (networks and tokenizer
// folders), where each comes from, under which store id and fingerprint — and preparing it downloads the parts not
// yet stored, converting each tensor into the stored format (weights/pack.ts) as its bytes arrive. A job then opens
// the stored parts and only reads them. Environment-neutral: the page's worker (browserApi.ts) and the CLI share it.

import { CheckpointFileMissing } from '../errors/weights.ts';
import { hubComponent, hubDownload, type ComponentName, type HubOptions } from '../weights/huggingFace.ts';
import { downloadCheckpoint, type DownloadProgress } from '../weights/download.ts';
import type { FolderSource } from '../weights/checkpoint.ts';
import { PACK_MANIFEST, PACK_VERSION, packFingerprint, parsePackManifest, type PackManifest } from '../weights/pack.ts';
import { storedFolderSource } from '../weights/storeSource.ts';
import type { ModelRecord, WeightStore } from '../weights/weightCache.ts';
import { openModelSource, readText, type Component, type ModelSource } from './modelPackage.ts';
import { partConversion } from './storedFormats.ts';

/** The parts of a model in the order a job needs them, so an interrupted download has the early stages ready. */
export const PARTS: Component[] = ['text_encoder', 'tokenizer', 'text_encoder_2', 'tokenizer_2', 'image_encoder', 'feature_extractor', 'vae', 'transformer'];

/** The Hugging Face manifest entry that names each part's files (the tiny model copies that layout). */
export const HUB_NAMES: Record<Component, ComponentName> = {
  transformer: 'transformer-original', text_encoder: 'text_encoder', tokenizer: 'tokenizer', text_encoder_2: 'text_encoder_2',
  tokenizer_2: 'tokenizer_2', vae: 'vae', image_encoder: 'image_encoder', feature_extractor: 'feature_extractor',
};

export type HubModelId = 'framepack' | 'framepack-f1';

/** One stored part: which store entry holds it, where it comes from, and how the runners open it. */
export interface PartSpec {
  component: Component;
  /** Its folder as framepack.json names it. */
  folder: string;
  storeId: string;
  /** Source and stored-format version (weights/pack.ts packFingerprint): another one means convert again. */
  fingerprint: string;
  weightsFile: string | null;
  configFile: string | null;
  extraFiles: string[];
  /** Opens the source folder for a download. */
  source: () => FolderSource;
  where: string;
}

export interface ModelPlan {
  /** framepack.json's content. */
  packageJson: Record<string, unknown>;
  parts: PartSpec[];
}

/** The transformer's repository of a hub model. */
export const hubTransformer = (id: HubModelId): ComponentName => (id === 'framepack' ? 'transformer-original' : 'transformer-f1');

/** FramePack or FramePack-F1 from the official repositories (or a mirror: `hub.endpoint`). Touches no network. */
export function hubModelPlan(id: HubModelId, hub: HubOptions = {}): ModelPlan {
  const components: Record<string, string> = {};
  const parts: PartSpec[] = PARTS.map((component) => {
    const name: ComponentName = component === 'transformer' ? hubTransformer(id) : HUB_NAMES[component];
    components[component] = name;
    const spec = hubComponent(name);
    const download = () => hubDownload(name, hub);
    const where = download().where;
    return {
      component, folder: name, storeId: `hf/${name}`, fingerprint: packFingerprint(where), where,
      weightsFile: spec.weights, configFile: spec.config, extraFiles: spec.files,
      source: () => download().folder,
    };
  });
  const packageJson = { name: id === 'framepack' ? 'FramePack' : 'FramePack-F1', description: 'lllyasviel/FramePack on HunyuanVideo', components };
  return { packageJson, parts };
}

/** Reads and checks a pack's manifest.json (PackFormatError, PackVersionError). */
export async function readPackManifest(folder: FolderSource, where: string): Promise<PackManifest> {
  let text: string;
  try {
    text = await readText(await folder(PACK_MANIFEST));
  } catch (e) {
    if (e instanceof CheckpointFileMissing) return parsePackManifest(null, where);
    throw e;
  }
  let json: unknown = null;
  try {
    json = JSON.parse(text);
  } catch {
    // parsePackManifest says what is wrong
  }
  return parsePackManifest(json, where);
}

/**
 * A model of a pack (npm run convert's output) at `base` (a URL or a folder; `folderAt` opens a part's folder):
 * its parts are already converted and are stored as they are. Store ids are `${idPrefix}${folder}`.
 */
export function packModelPlan(manifest: PackManifest, model: string, base: string, folderAt: (path: string) => FolderSource, idPrefix = 'pack/'): ModelPlan {
  const packageJson = manifest.models[model];
  if (!packageJson) throw new Error(`The pack at ${base} holds no model "${model}" (it has ${Object.keys(manifest.models).join(', ')}).`);
  const components = packageJson.components as Record<Component, string>;
  const parts: PartSpec[] = PARTS.map((component) => {
    const folder = components[component];
    const entry = manifest.parts[folder];
    if (!entry) throw new Error(`The pack at ${base} names ${folder} for the ${component} but lists no such part.`);
    const where = `${base.replace(/\/$/, '')}/${folder}/`;
    return {
      component, folder, storeId: `${idPrefix}${folder}`, fingerprint: packFingerprint(where), where,
      weightsFile: entry.weights, configFile: entry.config, extraFiles: entry.files,
      source: () => folderAt(folder),
    };
  });
  return { packageJson, parts };
}

/** Whether a stored record is this part, finished, in this app's stored format. */
export function partReady(record: ModelRecord | undefined, part: PartSpec): boolean {
  return !!record?.complete && record.fingerprint === part.fingerprint && record.pack === PACK_VERSION;
}

/** A stored record in another (older) stored format: raw downloads of earlier builds are version 0. */
export function outdatedVersion(record: ModelRecord | undefined): number | null {
  return record && record.pack !== PACK_VERSION ? (record.pack ?? 0) : null;
}

export interface PrepareOptions {
  signal?: AbortSignal;
  /** Download progress of part `index` of `count` (the parts still to fetch). */
  onProgress?: (part: PartSpec, index: number, count: number, progress: DownloadProgress) => void;
  /** A part is stored in an older stored format and is converted again. */
  onOutdated?: (part: PartSpec, version: number) => void;
  /** Default `navigator.storage` where it exists; null skips the quota check (the CLI). */
  storage?: null;
  readBytes?: number;
}

/**
 * Downloads (or resumes) and converts every part of `plan` that `store` does not hold ready. Throws what
 * downloadCheckpoint throws (QuotaError, NetworkError, …); what was stored before stays stored.
 */
export async function prepareStoredModel(store: WeightStore, plan: ModelPlan, options: PrepareOptions = {}): Promise<void> {
  const pending: PartSpec[] = [];
  for (const part of plan.parts) {
    const record = await store.getModel(part.storeId);
    if (partReady(record, part)) continue;
    const old = outdatedVersion(record);
    if (old !== null) options.onOutdated?.(part, old);
    pending.push(part);
  }
  for (const [i, part] of pending.entries()) {
    await downloadCheckpoint({
      folder: part.source(),
      where: part.where,
      weightsFile: part.weightsFile,
      configFile: part.configFile,
      extraFiles: part.extraFiles,
      store,
      model: part.storeId,
      fingerprint: part.fingerprint,
      conversion: partConversion(part.component),
      pack: PACK_VERSION,
      signal: options.signal,
      readBytes: options.readBytes,
      ...(options.storage === null ? { storage: null } : {}),
      onProgress: (p) => options.onProgress?.(part, i + 1, pending.length, p),
    });
  }
}

/** The stored model as the engine opens it: framepack.json from the plan, every part read from the store. */
export async function storedModelSource(store: WeightStore, plan: ModelPlan): Promise<ModelSource> {
  const folders = new Map<string, FolderSource>();
  for (const part of plan.parts) {
    folders.set(part.folder, await storedFolderSource(store, part.storeId, { weightsFile: part.weightsFile, config: part.configFile !== null, where: part.where, requirePack: true }));
  }
  return modelSourceOf(plan.packageJson, folders);
}

/** A ModelSource over part folders keyed by their framepack.json folder names (the longest prefix owns a path). */
export function modelSourceOf(packageJson: Record<string, unknown>, folders: Map<string, FolderSource>): Promise<ModelSource> {
  const packageText = JSON.stringify(packageJson);
  return openModelSource(async (path) => {
    if (path === 'framepack.json') {
      const bytes = new TextEncoder().encode(packageText);
      return { name: 'framepack.json', size: async () => bytes.length, read: async (o, n) => bytes.slice(o, o + n) };
    }
    // Folders may nest (HunyuanVideo/text_encoder): the longest one that prefixes the path owns it.
    const folder = [...folders.keys()].filter((f) => path.startsWith(`${f.replace(/\/$/, '')}/`)).sort((a, b) => b.length - a.length)[0];
    if (folder === undefined) throw new Error(`No part of the model holds ${path}.`);
    return folders.get(folder)!(path.slice(folder.replace(/\/$/, '').length + 1));
  });
}

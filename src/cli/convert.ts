// `npm run convert -- --out DIR (--model DIR | --hub-endpoint URL [--models framepack,framepack-f1]) [--cache-dir DIR]`:
// converts a model once into the stored format (src/weights/pack.ts) and writes it as a pack any static server can
// host: one folder per part (config.json, safetensors with the version in their metadata, tokenizer files) and
// manifest.json. The page loads it with ?packUrl=URL, the CLI with --pack DIR|URL, neither converting anything.
// Each part is downloaded (Range requests, resumable) and converted tensor by tensor into a directory store
// (--cache-dir, or a temporary one inside DIR that is emptied part by part), then written out; peak memory is about
// the largest tensor twice (measured: see README "The stored pack").

import { mkdirSync, rmSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { HUGGING_FACE } from '../weights/huggingFace.ts';
import { writePackManifest, writePackPart, PACK_SHARD_BYTES } from '../weights/packFiles.ts';
import type { PackPartEntry } from '../weights/pack.ts';
import { hubModelPlan, prepareStoredModel, type HubModelId, type ModelPlan, type PartSpec } from '../worker/modelStore.ts';
import { directoryWeightStore, localModelPlan, progressPrinter } from './modelSources.ts';

const USAGE = `usage: convert --out DIR (--model DIR | --hub-endpoint URL [--models framepack,framepack-f1] [--hf-token T]) [--cache-dir DIR] [--shard-gb N] [--parts C,…]
  --model DIR         a local FramePack model folder (framepack.json + checkpoint folders), e.g. public/models/tiny
  --hub-endpoint URL  the Hugging Face repositories at URL (${HUGGING_FACE}, a mirror, or npm run hub)
  --cache-dir DIR     keep the converted parts in this directory store (generate --cache-dir reads it); default: a
                      temporary store inside --out, emptied as each part is written`;

function parse(argv: string[]): Record<string, string> {
  const o: Record<string, string> = {};
  for (let i = 0; i < argv.length; i++) {
    if (!argv[i].startsWith('--')) throw new Error(`unexpected argument ${argv[i]}\n${USAGE}`);
    o[argv[i].slice(2)] = argv[++i] ?? '';
  }
  if (!o.out || (!o.model === !o['hub-endpoint'])) throw new Error(USAGE);
  return o;
}

async function main(): Promise<number> {
  const o = parse(process.argv.slice(2));
  const out = resolve(o.out);
  mkdirSync(out, { recursive: true });
  const temporary = !o['cache-dir'];
  const cacheDir = o['cache-dir'] ? resolve(o['cache-dir']) : join(out, '.convert-store');
  const store = directoryWeightStore(cacheDir);
  const t0 = performance.now();

  // Models and their plans; parts shared between models (FramePack and F1 share all but the transformer) once.
  const plans: [string, ModelPlan][] = [];
  if (o.model) {
    const plan = await localModelPlan(o.model);
    plans.push([String(plan.packageJson.name ?? 'model'), plan]);
  } else {
    const ids = (o.models ?? 'framepack').split(',') as HubModelId[];
    for (const id of ids) plans.push([id, hubModelPlan(id, { endpoint: o['hub-endpoint'], token: o['hf-token'] })]);
  }
  const parts = new Map<string, PartSpec>();
  const only = o.parts ? new Set(o.parts.split(',')) : null; // e.g. --parts text_encoder,transformer (a partial pack, for measurements)
  for (const [, plan] of plans) for (const p of plan.parts) if (!only || only.has(p.component)) parts.set(p.folder, p);

  const entries: Record<string, PackPartEntry> = {};
  const shardBytes = o['shard-gb'] ? Number(o['shard-gb']) * 1e9 : PACK_SHARD_BYTES;
  for (const part of parts.values()) {
    await prepareStoredModel(store, { packageJson: {}, parts: [part] }, progressPrinter());
    const entry = await writePackPart(store, { folder: part.folder, storeId: part.storeId, weightsFile: part.weightsFile, configFile: part.configFile, extraFiles: part.extraFiles, source: part.where }, out, shardBytes);
    entries[part.folder] = entry;
    if (temporary) await store.deleteModel(part.storeId);
    console.error(`${part.folder}: ${entry.tensors} tensors, ${(entry.bytes / 1e9).toFixed(3)} GB` +
      `${entry.keptF32.length ? `; kept at fp32 (fp16 would overflow): ${entry.keptF32.join(', ')}` : ''}` +
      `${entry.omitted.length ? `; left out (no network reads them): ${entry.omitted.length} tensors` : ''}`);
  }
  if (temporary) rmSync(cacheDir, { recursive: true, force: true });
  const models = Object.fromEntries(plans.map(([id, plan]) => [id, plan.packageJson]));
  const manifest = writePackManifest(out, models, entries);
  const rss = process.resourceUsage().maxRSS * 1024;
  console.error(`wrote ${out}: ${Object.keys(manifest.parts).length} parts, ${(manifest.bytes / 1e9).toFixed(2)} GB, pack version ${manifest.version}, ` +
    `in ${((performance.now() - t0) / 1000).toFixed(0)} s; peak RSS ${(rss / 2 ** 30).toFixed(2)} GiB`);
  return 0;
}

main().then((code) => process.exit(code), (e: Error) => {
  console.error(e.message);
  process.exit(2);
});

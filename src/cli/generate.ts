// `npm run generate -- --model DIR --image F --prompt TEXT --seconds S --seed N --steps K --out FILE`: the app's job
// in Node, through the same engine and the `webgpu` package (SwiftShader without a GPU). Writes the frames as Y4M,
// and an MP4 through ffmpeg when FILE ends in .mp4 and ffmpeg is installed. The model comes from a local folder read
// raw (--model), from the Hugging Face repositories or a mirror converted once into a directory store
// (--hub-endpoint URL --cache-dir DIR: later runs only read the store), or from a pack of converted weights
// (--pack DIR|URL, npm run convert's output, read without conversion; with --cache-dir a URL is stored first).
// The job's state is saved in the cache directory after every section: run the same command again after Ctrl-C or
// a crash and it goes on from the last finished section (--fresh starts over).

import { spawnSync } from 'node:child_process';
import { resolve } from 'node:path';
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { framePlacement } from '../pipeline/history.ts';
import { JobResumeError } from '../errors/engine.ts';
import { DEFAULT_SETTINGS, type JobCheckpoint, type JobSettings } from '../worker/engine.ts';
import { jobFolder, jobKey } from './jobFolder.ts';
import { runJobWithRecovery } from '../worker/jobRecovery.ts';
import type { ModelSource } from '../worker/modelPackage.ts';
import { hubModelPlan, packModelPlan } from '../worker/modelStore.ts';
import { defaultCacheDir, directoryWeightStore, openLocalModel, openPack, packModelSource, pickPackModel, storedModel } from './modelSources.ts';
import { readImageFile } from './imageFile.ts';
import { y4mSink } from './y4mSink.ts';
import { nodeRuntime, type GpuKind } from './nodeRuntime.ts';
import type { ExecutionProvider } from '../runtime/ort.ts';

const USAGE = `usage: generate --model DIR --image FILE --prompt TEXT [--seconds S] [--seed N] [--steps K] [--out FILE.y4m|FILE.mp4]
  [--end-image FILE] [--variant original|f1] [--no-teacache] [--gs G] [--window N] [--provider webgpu|wasm] [--gpu auto|hardware|software]
  [--dtype float32|float16] [--q4] [--budget-gb N] [--crf N] [--path auto|portable|subgroup-matrix] [--no-f16] [--cache-dir DIR] [--fresh]`;

function parse(argv: string[]) {
  const o: Record<string, string | boolean> = {};
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (!a.startsWith('--')) throw new Error(`unexpected argument ${a}\n${USAGE}`);
    const key = a.slice(2);
    if (['no-teacache', 'q4', 'no-f16', 'fresh'].includes(key)) o[key] = true;
    else o[key] = argv[++i] ?? '';
  }
  for (const k of ['image', 'prompt']) if (typeof o[k] !== 'string') throw new Error(`--${k} is required\n${USAGE}`);
  if (['model', 'pack', 'hub-endpoint'].filter((k) => typeof o[k] === 'string').length !== 1) throw new Error(`one of --model, --pack, --hub-endpoint is required\n${USAGE}`);
  return o as Record<string, string> & { 'no-teacache'?: boolean; q4?: boolean; 'no-f16'?: boolean; fresh?: boolean };
}

async function main(): Promise<number> {
  const o = parse(process.argv.slice(2));
  const model = await openModel(o);
  const settings: JobSettings = {
    ...DEFAULT_SETTINGS,
    prompt: o.prompt,
    variant: (o.variant as JobSettings['variant']) ?? 'original',
    seed: o.seed !== undefined ? Number(o.seed) : DEFAULT_SETTINGS.seed,
    seconds: o.seconds !== undefined ? Number(o.seconds) : DEFAULT_SETTINGS.seconds,
    steps: o.steps !== undefined ? Number(o.steps) : DEFAULT_SETTINGS.steps,
    distilledGuidance: o.gs !== undefined ? Number(o.gs) : DEFAULT_SETTINGS.distilledGuidance,
    teacache: !o['no-teacache'],
    latentWindow: o.window !== undefined ? Number(o.window) : null,
  };
  // Each try opens a device: the first, and after a lost one a new one (worker/jobRecovery.ts).
  const openRuntime = () => nodeRuntime({
    provider: (o.provider as ExecutionProvider) ?? 'webgpu',
    gpu: (o.gpu as GpuKind) ?? 'auto',
    dtype: o.dtype as 'float32' | 'float16' | undefined,
    // Converted weights (hub, pack) are 4-bit: the job reads them as stored.
    quantized: !!o.q4 || !o.model,
    budgetBytes: o['budget-gb'] ? Number(o['budget-gb']) * 2 ** 30 : undefined,
    kernelPath: (o.path as 'auto' | 'portable' | 'subgroup-matrix' | undefined) ?? 'auto',
    noF16: !!o['no-f16'],
  });
  const { runtime, gpu } = await openRuntime();
  const out = resolve(o.out ?? 'framepack.y4m');
  const y4mPath = out.endsWith('.mp4') ? `${out}.y4m` : out;
  // The job's state is saved after every section (cli/jobFolder.ts): the same command goes on from there.
  const images = [o.image, o['end-image']].filter((f): f is string => typeof f === 'string').map((f) => new Uint8Array(readFileSync(f)));
  const folder = jobFolder(resolve(o['cache-dir'] ?? defaultCacheDir()), jobKey({ model: String(o.model ?? o.pack ?? o['hub-endpoint']), settings, images, out }));
  if (o.fresh) folder.clear();
  let resume: JobCheckpoint | undefined;
  try {
    resume = folder.saved();
  } catch (e) {
    if (!(e instanceof JobResumeError)) throw e;
    console.error(`The job saved in ${folder.dir} cannot be continued (${e.why}); starting it over.`);
    folder.clear();
  }
  if (resume) console.error(`Going on with the job saved in ${folder.dir}: ${resume.loop?.sectionsDone ?? 0} sections were done (--fresh starts over).`);
  const sink = y4mSink(y4mPath, model.package.fps, folder.dir, resume?.loop
    ? { sectionsDone: resume.loop.sectionsDone, held: resume.loop.held, placement: framePlacement(settings.variant) }
    : undefined);
  const controller = new AbortController();
  process.on('SIGINT', () => controller.abort(new Error('Stopped by Ctrl-C; the finished sections are kept.')));
  const t0 = performance.now();
  console.error(`model ${model.package.name}, ${runtime.provider}${gpu ? ` (${gpu.capabilities.architecture || gpu.capabilities.vendor})` : ''} ${runtime.dtype}${runtime.quantized ? ' q4' : ''}`);
  let failure: unknown = null;
  try {
    await runJobWithRecovery(model, { image: readImageFile(o.image), endImage: o['end-image'] ? readImageFile(o['end-image']) : undefined, settings }, sink, (e) => {
      if (e.type === 'stage' || e.type === 'recovery') console.error(e.message);
      else if (e.type === 'plan') console.error(`${e.sections} sections, ${e.frames} frames at ${e.width}×${e.height}, ${e.fps} fps`);
      else if (e.type === 'step') console.error(`  section ${e.section + 1}/${e.sections} step ${e.step}/${e.steps}${e.etaMs !== null ? `, ETA ${(e.etaMs / 1000).toFixed(0)} s` : ''}`);
      else if (e.type === 'section') console.error(`section ${e.section + 1}/${e.sections} done: ${e.frames} frames (${e.seconds.toFixed(2)} s)`);
    }, {
      signal: controller.signal,
      resume,
      onCheckpoint: (c) => folder.save(c),
      // The first try takes the device opened above (the banner names it), each later one a new device.
      openRuntime: async (attempt) => (attempt === 0 ? runtime : (await openRuntime()).runtime),
    });
  } catch (e) {
    failure = e;
  }
  let frames = 0;
  try {
    frames = sink.finish();
  } catch {
    // nothing was decoded yet
  }
  if (frames > 0) {
    if (out !== y4mPath) {
      const r = spawnSync('ffmpeg', ['-v', 'error', '-y', '-i', y4mPath, '-c:v', 'libx264', '-crf', o.crf ?? '16', '-pix_fmt', 'yuv420p', out], { stdio: 'inherit' });
      if (r.status === 0) rmSync(y4mPath);
      else console.error(`ffmpeg is not available or failed; the frames are in ${y4mPath}`);
    }
    console.error(`wrote ${frames} frames to ${out !== y4mPath && !existsSync(y4mPath) ? out : y4mPath} in ${((performance.now() - t0) / 1000).toFixed(1)} s; peak RSS ${(process.resourceUsage().maxRSS / 2 ** 20).toFixed(2)} GiB`);
  }
  if (failure) {
    console.error((failure as Error).message);
    if (existsSync(folder.dir)) console.error(`The finished sections are saved in ${folder.dir}: run the same command again to go on from there.`);
    return 1;
  }
  folder.clear();
  return 0;
}

/** The model the flags name (see USAGE). */
async function openModel(o: Record<string, string | boolean | undefined>): Promise<ModelSource> {
  const cacheDir = resolve((o['cache-dir'] as string | undefined) ?? defaultCacheDir());
  if (typeof o.model === 'string') return openLocalModel(o.model);
  if (typeof o['hub-endpoint'] === 'string') {
    const plan = hubModelPlan(o.variant === 'f1' ? 'framepack-f1' : 'framepack', { endpoint: o['hub-endpoint'], token: o['hf-token'] as string | undefined });
    console.error(`converted weights are kept in ${cacheDir}`);
    return storedModel(directoryWeightStore(cacheDir), plan);
  }
  const { manifest, base, folderAt } = await openPack(o.pack as string);
  const id = pickPackModel(manifest, o.variant as string | undefined, o['pack-model'] as string | undefined);
  if (typeof o['cache-dir'] === 'string') return storedModel(directoryWeightStore(cacheDir), packModelPlan(manifest, id, base, folderAt));
  return packModelSource(manifest, id, base, folderAt);
}

main().then((code) => process.exit(code), (e: Error) => {
  console.error(e.message);
  process.exit(2);
});

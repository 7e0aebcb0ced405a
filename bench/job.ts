// `npm run bench -- --job` (this file): one whole FramePack job at real size through the engine the page runs
// (worker/engine.ts runJob), on the weights of a real-size stored pack generated on read (bench/syntheticPack.ts:
// the pack `npm run convert` writes from the real-size hub, without the 14 GB on disk). Reports the wall time of
// each stage — Llama, CLIP, SigLIP, loading, VAE encode, each section's steps and decode, the video file — the time
// to the first latent preview, compute seconds per second of video, peak GPU bytes per stage (counted, and
// nvidia-smi's figure over the same window), peak host RSS. With --reference FILE (bench/framepack_reference.py's
// JSON from the same command) it prints the two side by side with ratios.
//
//   node .gpu-bundle/job.mjs [--variant original|f1] [--seconds 5] [--steps 25] [--no-teacache] [--budget-gb N]
//     [--path auto|portable|subgroup-matrix] [--no-f16] [--llama-tokenizer FILE] [--reference FILE] [--json FILE]
//     [--report FILE]   (print an earlier run's --json beside --reference, without running)
//
// Settings as issue 10 states them: a 1024×1024 start image (the 640 bucket picks its size), 25 steps, distilled
// CFG 10, seed 31337, the prompt below.

import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync, writeFileSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DEFAULT_SETTINGS, runJob, type JobSettings } from '../src/worker/engine.ts';
import { nodeRuntime } from '../src/cli/nodeRuntime.ts';
import { gpuName } from '../src/runtime/device.ts';
import { trackGpuMemory, type GpuMemoryTracker } from '../src/runtime/gpuMemory.ts';
import { y4mSink } from '../src/cli/y4mSink.ts';
import type { RgbImage } from '../src/pipeline/resize.ts';
import { syntheticPack } from './syntheticPack.ts';
import { flag, opt } from './args.ts';

const PROMPT = 'The girl dances gracefully, with clear movements, full of charm.';

/** A 1024×1024 start image with some structure (gradients and rings), as the bench's stand-in for a photo. */
function startImage(size = 1024): RgbImage {
  const data = new Uint8Array(size * size * 3);
  for (let y = 0; y < size; y++) {
    for (let x = 0; x < size; x++) {
      const r = Math.hypot(x - size / 2, y - size / 2);
      const i = 3 * (y * size + x);
      data[i] = (255 * x) / size;
      data[i + 1] = (255 * y) / size;
      data[i + 2] = 128 + 127 * Math.sin(r / 24);
    }
  }
  return { width: size, height: size, data };
}

/** nvidia-smi's memory.used every 100 ms, with arrival times; null where there is no nvidia-smi. */
function nvidiaSmi(): { samples: [number, number][]; stop(): void } | null {
  let child: ChildProcess;
  try {
    child = spawn('nvidia-smi', ['--query-gpu=memory.used', '--format=csv,noheader,nounits', '-lms', '100'], { stdio: ['ignore', 'pipe', 'ignore'] });
  } catch {
    return null;
  }
  const samples: [number, number][] = [];
  let failed = false;
  child.on('error', () => void (failed = true));
  child.stdout!.on('data', (chunk: Buffer) => {
    for (const line of chunk.toString().split('\n')) if (line.trim()) samples.push([performance.now(), Number(line.trim()) * 2 ** 20]);
  });
  return { samples, stop: () => (failed ? undefined : void child.kill()) };
}

interface Stage {
  name: string;
  ms: number;
  /** Peak bytes of live GPU buffers we (and ORT) made during the stage. */
  gpuPeak: number;
  /** nvidia-smi's largest memory.used over the stage (the whole process and the driver's own). */
  smiPeak: number | null;
  t0: number;
  t1: number;
}

const gib = (b: number) => (b / 2 ** 30).toFixed(2);

async function runOneJob() {
  let memory!: GpuMemoryTracker; // installed before the device exists, so it sees every buffer
  const variant = opt('variant', 'original') as JobSettings['variant'];
  const kernelPath = opt('path', 'auto') as 'auto' | 'portable' | 'subgroup-matrix';
  const budgetGb = opt('budget-gb', '');
  const { runtime, gpu } = await nodeRuntime({
    provider: 'webgpu', gpu: 'auto', quantized: true, kernelPath, noF16: flag('no-f16'),
    budgetBytes: budgetGb ? Number(budgetGb) * 2 ** 30 : undefined,
    beforeDevice: () => void (memory = trackGpuMemory()),
  });
  const tokenizerFile = opt('llama-tokenizer', '');
  const pack = await syntheticPack(variant === 'f1' ? 'framepack-f1' : 'framepack', { llamaTokenizer: tokenizerFile ? readFileSync(tokenizerFile) : undefined });
  const settings: JobSettings = {
    ...DEFAULT_SETTINGS, prompt: PROMPT, variant,
    seconds: Number(opt('seconds', '5')), steps: Number(opt('steps', '25')), teacache: !flag('no-teacache'),
  };
  const gpuLabel = gpu ? gpuName(gpu.capabilities) : 'none';
  console.error(`job bench: ${variant}, ${settings.seconds} s, ${settings.steps} steps, TeaCache ${settings.teacache ? 'on' : 'off'}, ${runtime.dtype}, path ${kernelPath}, budget ${budgetGb || 'all resident'}; GPU ${gpuLabel}`);
  console.error(`pack (generated on read): ${Object.entries(pack.bytes).map(([k, v]) => `${k} ${gib(v)}`).join(', ')} GiB`);

  const smi = nvidiaSmi();
  const stages: Stage[] = [];
  let mark = performance.now();
  const close = (name: string, ms = performance.now() - mark) => {
    const t1 = performance.now();
    stages.push({ name, ms, gpuPeak: memory.peak(), smiPeak: null, t0: t1 - ms, t1 });
    memory.resetPeak();
    mark = t1;
  };
  const steps: number[][] = [];
  let lastStep = 0;
  let firstPreviewMs: number | null = null;
  let section = 0;
  const dir = mkdtempSync(join(tmpdir(), 'job-bench-'));
  const sink = y4mSink(join(dir, 'job.y4m'), 30, join(dir, 'parts'));
  const t0 = performance.now();
  let plan = { sections: 0, frames: 0, width: 0, height: 0 };
  const result = await runJob(pack.model, { image: startImage(), settings }, runtime, sink, (e) => {
    const now = performance.now();
    if (e.type === 'plan') plan = e;
    else if (e.type === 'timing') {
      if (e.what === 'decode') close(`section ${section + 1} decode`, e.ms);
      else close(e.what, e.ms);
    } else if (e.type === 'stage' && e.stage === 'sampling') {
      mark = now;
      lastStep = now;
    } else if (e.type === 'stage' && e.stage === 'decode') {
      close(`section ${section + 1} steps`);
    } else if (e.type === 'step') {
      firstPreviewMs ??= now - t0;
      (steps[e.section] ??= []).push(now - lastStep);
      lastStep = now;
    } else if (e.type === 'section') {
      section = e.section + 1;
      mark = now;
      lastStep = now;
      console.error(`section ${e.section + 1}/${e.sections}: ${e.frames} frames so far, ${((now - t0) / 1000).toFixed(1)} s`);
    }
  });
  mark = performance.now();
  const frames = sink.finish();
  close('video file (Y4M; the page encodes MP4 with WebCodecs as it goes)');
  const totalMs = performance.now() - t0;
  rmSync(dir, { recursive: true, force: true });
  smi?.stop();
  if (smi) for (const s of stages) s.smiPeak = Math.max(0, ...smi.samples.filter(([t]) => t >= s.t0 - 100 && t <= s.t1 + 100).map(([, b]) => b));
  const videoSeconds = frames / 30;
  return {
    gpu: gpuLabel, variant, settings: { seconds: settings.seconds, steps: settings.steps, teacache: settings.teacache, dtype: runtime.dtype, path: kernelPath, budgetGb: budgetGb || null },
    bucket: `${plan.width}×${plan.height}`, sections: result.sections, frames, totalMs, firstPreviewMs, secondsPerVideoSecond: totalMs / 1000 / videoSeconds,
    peakRssBytes: process.resourceUsage().maxRSS * 1024, packBytes: pack.bytes,
    stages: stages.map(({ t0: _a, t1: _b, ...s }) => s), steps,
  };
}

type Report = Awaited<ReturnType<typeof runOneJob>>;

/** bench/framepack_reference.py's JSON: the same stages, in seconds. */
interface Reference {
  mode: string;
  stages: { name: string; s: number; peak_bytes: number }[];
  total_s: number;
  first_preview_s: number;
  steps: number[][];
}

function print(r: Report, refs: Reference[]) {
  const lines = [`| stage | ours (s) | GPU peak counted / nvidia-smi (GiB) |${refs.map((x) => ` reference ${x.mode} (s) | ratio | ref. peak (GiB) |`).join('')}`];
  lines.push(`|---|---|---|${refs.map(() => '---|---|---|').join('')}`);
  for (const s of r.stages) {
    const cells = refs.map((ref) => {
      const m = ref.stages.find((x) => x.name === s.name);
      return m ? ` ${m.s.toFixed(2)} | ${(s.ms / 1000 / m.s).toFixed(1)}× | ${gib(m.peak_bytes)} |` : ' — | — | — |';
    });
    lines.push(`| ${s.name} | ${(s.ms / 1000).toFixed(2)} | ${gib(s.gpuPeak)} / ${s.smiPeak === null ? '—' : gib(s.smiPeak)} |${cells.join('')}`);
  }
  lines.push(`| **whole job** | **${(r.totalMs / 1000).toFixed(1)}** | |${refs.map((ref) => ` **${ref.total_s.toFixed(1)}** | **${(r.totalMs / 1000 / ref.total_s).toFixed(2)}×** | |`).join('')}`);
  lines.push(`| first latent preview | ${((r.firstPreviewMs ?? 0) / 1000).toFixed(1)} | |${refs.map((ref) => ` ${ref.first_preview_s.toFixed(1)} | | |`).join('')}`);
  console.log(lines.join('\n'));
  for (const [k, s] of r.steps.entries()) {
    const sorted = [...s].sort((a, b) => a - b);
    console.log(`section ${k + 1} steps (ms): ${s.map((x) => x.toFixed(0)).join(' ')}; median ${sorted[sorted.length >> 1].toFixed(0)}`);
  }
  console.log(`${r.sections} sections, ${r.frames} frames at ${r.bucket}; ${r.secondsPerVideoSecond.toFixed(1)} compute s per video s; peak host RSS ${gib(r.peakRssBytes)} GiB`);
}

// --report FILE prints an earlier run's JSON (e.g. beside a reference run made after it in the same command).
const report: Report = opt('report', '') ? JSON.parse(readFileSync(opt('report', ''), 'utf8')) : await runOneJob();
if (opt('json', '')) writeFileSync(opt('json', ''), `${JSON.stringify(report)}\n`);
// The reference's stdout also carries FramePack's own prints: its results are the lines that are JSON objects.
const refs = opt('reference', '') ? readFileSync(opt('reference', ''), 'utf8').split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as Reference) : [];
print(report, refs);
process.exit(0);

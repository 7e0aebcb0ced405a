// `npm run bench -- --soak …` (this file): one long video through the engine the page runs, sampling memory after
// every section — host RSS, the counted bytes of live GPU buffers (ours and ORT's, runtime/gpuMemory.ts) with their
// peak over the section, and nvidia-smi's memory.used where there is one — then a least-squares slope per section
// of each. FramePack's headline is that memory does not grow with the video's length: the slopes say whether it does.
// The frames go to a Y4M file that ffmpeg turns into an MP4; ffprobe then counts its frames.
//
//   node bench.mjs --soak [--model DIR | --real] [--seconds 120] [--steps 1] [--window N] [--bucket WxH]
//     [--no-teacache] [--variant original|f1] [--path auto|portable|subgroup-matrix] [--software] [--json FILE] [--out FILE.mp4]
//
// --model DIR reads a model folder as the CLI does (the bundled tiny model: public/models/tiny); --real reads the
// real-size stored pack generated on read (bench/syntheticPack.ts), as the job bench does.

import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { DEFAULT_SETTINGS, runJob, type JobSettings } from '../src/worker/engine.ts';
import { nodeRuntime } from '../src/cli/nodeRuntime.ts';
import { gpuName } from '../src/runtime/device.ts';
import { openLocalModel } from '../src/cli/modelSources.ts';
import { trackGpuMemory, type GpuMemoryTracker } from '../src/runtime/gpuMemory.ts';
import { y4mSink } from '../src/cli/y4mSink.ts';
import type { ModelSource } from '../src/worker/modelPackage.ts';
import { syntheticPack } from './syntheticPack.ts';
import { flag, opt } from './args.ts';

interface Sample {
  section: number;
  /** Seconds since the job started. */
  at: number;
  rss: number;
  gpuLive: number;
  gpuPeak: number;
  smi: number | null;
}

const mib = (b: number) => (b / 2 ** 20).toFixed(1);

/** nvidia-smi's memory.used now, in bytes; null without nvidia-smi. */
function smiNow(): number | null {
  const r = spawnSync('nvidia-smi', ['--query-gpu=memory.used', '--format=csv,noheader,nounits'], { encoding: 'utf8' });
  return r.status === 0 ? Number(r.stdout.trim().split('\n')[0]) * 2 ** 20 : null;
}

/** Least-squares slope of y over x. */
function slope(x: number[], y: number[]): number {
  const n = x.length;
  const mx = x.reduce((a, b) => a + b, 0) / n, my = y.reduce((a, b) => a + b, 0) / n;
  let sxy = 0, sxx = 0;
  for (let i = 0; i < n; i++) {
    sxy += (x[i] - mx) * (y[i] - my);
    sxx += (x[i] - mx) ** 2;
  }
  return sxx === 0 ? 0 : sxy / sxx;
}

/** Frames and frame rate of a video file as ffprobe counts them. */
function ffprobe(file: string): { frames: number; fps: string } | null {
  const r = spawnSync('ffprobe', ['-v', 'error', '-count_frames', '-select_streams', 'v:0', '-show_entries', 'stream=nb_read_frames,r_frame_rate', '-of', 'json', file], { encoding: 'utf8' });
  if (r.status !== 0) return null;
  const s = (JSON.parse(r.stdout) as { streams: { nb_read_frames: string; r_frame_rate: string }[] }).streams[0];
  return { frames: Number(s.nb_read_frames), fps: s.r_frame_rate };
}

let memory!: GpuMemoryTracker; // installed before the device exists, so it sees every buffer
const { runtime, gpu } = await nodeRuntime({
  provider: 'webgpu', gpu: flag('software') ? 'software' : 'auto', quantized: true, kernelPath: opt('path', 'auto') as 'auto' | 'portable' | 'subgroup-matrix',
  beforeDevice: () => void (memory = trackGpuMemory()),
});
const model: ModelSource = flag('real') ? (await syntheticPack(opt('variant', 'original') === 'f1' ? 'framepack-f1' : 'framepack')).model : await openLocalModel(resolve(opt('model', 'public/models/tiny')));
const bucketOpt = opt('bucket', '');
const [bw, bh] = bucketOpt ? bucketOpt.split('x').map(Number) : [0, 0];
const settings: JobSettings = {
  ...DEFAULT_SETTINGS,
  prompt: 'The girl dances gracefully, with clear movements, full of charm.',
  variant: opt('variant', 'original') as JobSettings['variant'],
  seconds: Number(opt('seconds', '120')),
  steps: Number(opt('steps', '1')),
  teacache: !flag('no-teacache'),
  latentWindow: opt('window', '') ? Number(opt('window', '')) : null,
  bucket: bucketOpt ? { width: bw, height: bh } : null,
};
const gpuLabel = gpu ? gpuName(gpu.capabilities) : 'none';
const size = 256;
const image = { width: size, height: size, data: new Uint8Array(size * size * 3).map((_, i) => (i * 37 + (i >> 9)) % 256) };

const dir = mkdtempSync(join(tmpdir(), 'soak-'));
const y4m = join(dir, 'soak.y4m');
const sink = y4mSink(y4m, model.package.fps, join(dir, 'parts'));
const samples: Sample[] = [];
const t0 = performance.now();
let plan = { sections: 0, frames: 0, width: 0, height: 0 };
console.error(`soak: ${model.package.name}, ${settings.variant}, ${settings.seconds} s, ${settings.steps} steps, TeaCache ${settings.teacache ? 'on' : 'off'}, ${runtime.dtype}; GPU ${gpuLabel}`);
await runJob(model, { image, settings }, runtime, sink, (e) => {
  if (e.type === 'plan') {
    plan = e;
    console.error(`${e.sections} sections, ${e.frames} frames at ${e.width}×${e.height}`);
  } else if (e.type === 'stage' && e.stage === 'sampling') {
    memory.resetPeak();
  } else if (e.type === 'section') {
    const s: Sample = { section: e.section + 1, at: (performance.now() - t0) / 1000, rss: process.memoryUsage().rss, gpuLive: memory.live(), gpuPeak: memory.peak(), smi: smiNow() };
    memory.resetPeak();
    samples.push(s);
    console.error(`section ${s.section}/${e.sections} at ${s.at.toFixed(1)} s: RSS ${mib(s.rss)} MiB, GPU live ${mib(s.gpuLive)} MiB, peak ${mib(s.gpuPeak)} MiB${s.smi !== null ? `, nvidia-smi ${mib(s.smi)} MiB` : ''}`);
  }
});
const frames = sink.finish();
const totalS = (performance.now() - t0) / 1000;
const out = resolve(opt('out', join(dir, 'soak.mp4')));
const encoded = spawnSync('ffmpeg', ['-v', 'error', '-y', '-i', y4m, '-c:v', 'libx264', '-crf', '18', '-pix_fmt', 'yuv420p', out], { stdio: 'inherit' });
const probed = encoded.status === 0 ? ffprobe(out) : null;

// Slopes over every section but the first, whose samples include the job's one-time allocations.
const later = samples.slice(1);
const x = later.map((s) => s.section);
const slopes = {
  rss: slope(x, later.map((s) => s.rss)),
  gpuLive: slope(x, later.map((s) => s.gpuLive)),
  gpuPeak: slope(x, later.map((s) => s.gpuPeak)),
  smi: later.every((s) => s.smi !== null) ? slope(x, later.map((s) => s.smi!)) : null,
};
const rows = ['| section | time (s) | host RSS (MiB) | GPU live, counted (MiB) | GPU peak in section, counted (MiB) | nvidia-smi (MiB) |', '|---|---|---|---|---|---|'];
for (const s of samples) rows.push(`| ${s.section} | ${s.at.toFixed(1)} | ${mib(s.rss)} | ${mib(s.gpuLive)} | ${mib(s.gpuPeak)} | ${s.smi === null ? '—' : mib(s.smi)} |`);
rows.push(`| **slope per section** (2…${samples.length}) | | ${(slopes.rss / 2 ** 20).toFixed(3)} | ${(slopes.gpuLive / 2 ** 20).toFixed(3)} | ${(slopes.gpuPeak / 2 ** 20).toFixed(3)} | ${slopes.smi === null ? '—' : (slopes.smi / 2 ** 20).toFixed(3)} |`);
console.log(rows.join('\n'));
const spread = (v: number[]) => (Math.max(...v) - Math.min(...v)) / 2 ** 20;
console.log(`GPU ${gpuLabel}; ${plan.sections} sections at ${plan.width}×${plan.height}, ${frames} frames written in ${totalS.toFixed(1)} s; ` +
  `RSS range over sections 2…: ${spread(later.map((s) => s.rss)).toFixed(1)} MiB, GPU live range ${spread(later.map((s) => s.gpuLive)).toFixed(1)} MiB; peak RSS ${mib(process.resourceUsage().maxRSS * 1024)} MiB`);
console.log(probed ? `ffprobe ${out}: ${probed.frames} frames at ${probed.fps} fps` : 'ffmpeg/ffprobe not available: no MP4 made');
if (opt('json', '')) writeFileSync(opt('json', ''), `${JSON.stringify({ gpu: gpuLabel, settings, plan, frames, totalS, samples, slopes, probed })}\n`);
if (!opt('out', '')) rmSync(dir, { recursive: true, force: true });
else rmSync(y4m, { force: true });
process.exit(0);

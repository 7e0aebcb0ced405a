// src/video in real Chromium: synthetic decoded sections go through the video assembler (both loop orders, the
// reference's frame counts at lws 9), and every MP4 it hands back is checked from outside with ffprobe/ffmpeg:
// codec, 30 fps, frame count, each frame's content in the right place in time, and PSNR against the frames the
// reference's own soft_append + uint8 rule would have produced (rebuilt by hand in test/helpers/syntheticVideo.ts).
//
// How the page gets the code: the production build has no test entry, so the harness (harness/videoHarness.ts)
// is bundled by esbuild when this file loads and served with page.route at a made-up http://127.0.0.1 origin —
// localhost counts as a secure context, which WebCodecs needs, and no server or port has to be managed.

import { expect, test, type Page } from '@playwright/test';
import { build } from 'esbuild';
import { spawnSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { LoopVariant } from '../../src/pipeline/sectionPlan.ts';
import { chromiumLaunchOptions } from './chromium.ts';
import { referenceVideo, sectionWindows } from '../helpers/syntheticVideo.ts';
import type { VideoHarness } from './harness/videoHarness.ts';

test.use({ launchOptions: chromiumLaunchOptions({ webgpu: false }) });

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const OUT = join(ROOT, 'test-results', 'video');
const ORIGIN = 'http://127.0.0.1:47813';
// 96×80: even (4:2:0), 80 = 5 macroblocks; small enough that three sections encode in a second.
const WIDTH = 96, HEIGHT = 80, CRF = 16, SECTIONS = 3;

let bundle: Promise<string> | undefined;
function harnessBundle(): Promise<string> {
  bundle ??= build({ entryPoints: [join(ROOT, 'test/e2e/harness/videoHarness.ts')], bundle: true, format: 'esm', target: 'es2022', write: false })
    .then((r) => r.outputFiles[0].text);
  return bundle;
}

async function openHarness(page: Page): Promise<void> {
  const js = await harnessBundle();
  await page.route(`${ORIGIN}/**`, (route) => {
    const path = new URL(route.request().url()).pathname;
    if (path === '/harness.js') return route.fulfill({ contentType: 'text/javascript', body: js });
    if (path === '/') return route.fulfill({ contentType: 'text/html', body: '<!doctype html><script type="module" src="/harness.js"></script>' });
    return route.fulfill({ status: 404, body: '' });
  });
  await page.goto(`${ORIGIN}/`);
  await page.waitForFunction(() => 'videoHarness' in globalThis);
}

function call<K extends keyof VideoHarness>(page: Page, name: K, ...args: Parameters<VideoHarness[K]>): Promise<Awaited<ReturnType<VideoHarness[K]>>> {
  return page.evaluate(({ name, args }) => {
    const h = (globalThis as unknown as { videoHarness: Record<string, (...a: unknown[]) => unknown> }).videoHarness;
    return h[name](...args);
  }, { name, args: args as unknown[] }) as Promise<Awaited<ReturnType<VideoHarness[K]>>>;
}

function expectedVideo(variant: LoopVariant, upTo: number): Uint8Array[] {
  return referenceVideo(variant, SECTIONS, upTo, WIDTH, HEIGHT);
}

interface Probe {
  codec_name: string;
  profile?: string;
  width: number;
  height: number;
  r_frame_rate: string;
  nb_frames: string;
  nb_read_frames: string;
  pix_fmt: string;
}

function ffprobe(file: string): Probe {
  const r = spawnSync('ffprobe', ['-v', 'error', '-select_streams', 'v:0', '-count_frames', '-show_entries',
    'stream=codec_name,profile,width,height,r_frame_rate,nb_frames,nb_read_frames,pix_fmt', '-of', 'json', file], { encoding: 'utf8' });
  expect(r.stderr, `ffprobe complained about ${file}`).toBe('');
  return JSON.parse(r.stdout).streams[0] as Probe;
}

/** Decodes every frame to rgb24 with ffmpeg; any decoder message fails the test. */
function ffmpegFrames(file: string): Uint8Array[] {
  const r = spawnSync('ffmpeg', ['-v', 'error', '-i', file, '-f', 'rawvideo', '-pix_fmt', 'rgb24', 'pipe:1'], { maxBuffer: 1 << 28 });
  expect(r.stderr.toString(), `ffmpeg complained about ${file}`).toBe('');
  const size = WIDTH * HEIGHT * 3;
  return Array.from({ length: r.stdout.length / size }, (_, i) => new Uint8Array(r.stdout.buffer, r.stdout.byteOffset + i * size, size));
}

const meanColour = (rgb: Uint8Array) => [0, 1, 2].map((c) => { let s = 0; for (let i = c; i < rgb.length; i += 3) s += rgb[i]; return s / (rgb.length / 3); });

function psnr(got: Uint8Array[], want: Uint8Array[]): { video: number; worstFrame: number } {
  let total = 0, worst = Infinity;
  got.forEach((g, f) => {
    let se = 0;
    for (let i = 0; i < g.length; i++) se += (g[i] - want[f][i]) ** 2;
    total += se;
    worst = Math.min(worst, 10 * Math.log10((255 ** 2 * g.length) / Math.max(se, 1e-9)));
  });
  return { video: 10 * Math.log10((255 ** 2 * got.length * got[0].length) / total), worstFrame: worst };
}

interface Checked { probe: Probe; psnr: number; worstFramePsnr: number; worstMeanError: number }

/** The external checks every MP4 must pass; returns the figures for the report. */
function checkMp4(name: string, base64: string, want: Uint8Array[], family: string): Checked {
  mkdirSync(OUT, { recursive: true });
  const file = join(OUT, `${name}.mp4`);
  writeFileSync(file, Buffer.from(base64, 'base64'));
  const probe = ffprobe(file);
  expect(probe.codec_name).toBe({ avc: 'h264', vp9: 'vp9', av1: 'av1' }[family]);
  expect([probe.width, probe.height]).toEqual([WIDTH, HEIGHT]);
  expect(probe.r_frame_rate).toBe('30/1');
  expect(Number(probe.nb_frames)).toBe(want.length);
  expect(Number(probe.nb_read_frames)).toBe(want.length);
  const got = ffmpegFrames(file);
  expect(got.length).toBe(want.length);
  // Order: every decoded frame's mean colour is nearest to its own frame's among all frames of the video, and
  // within a few levels of it (flat colours survive H.264 almost untouched).
  const wantMeans = want.map(meanColour);
  let worstMeanError = 0;
  got.forEach((g, i) => {
    const m = meanColour(g);
    const dist = wantMeans.map((w) => Math.max(...w.map((v, c) => Math.abs(v - m[c]))));
    const nearest = dist.indexOf(Math.min(...dist));
    expect(nearest, `${name}: decoded frame ${i} looks like frame ${nearest}`).toBe(i);
    worstMeanError = Math.max(worstMeanError, dist[i]);
  });
  expect(worstMeanError, `${name}: mean colour error`).toBeLessThan(3);
  const q = psnr(got, want);
  expect(q.video, `${name}: PSNR`).toBeGreaterThan(30);
  return { probe, psnr: q.video, worstFramePsnr: q.worstFrame, worstMeanError };
}

function report(name: string, c: Checked, extra: Record<string, unknown> = {}): void {
  console.log(`${name}: ${c.probe.codec_name} ${c.probe.profile ?? ''} ${c.probe.width}x${c.probe.height} ${c.probe.pix_fmt} r=${c.probe.r_frame_rate} ` +
    `frames=${c.probe.nb_frames} PSNR=${c.psnr.toFixed(2)} dB (worst frame ${c.worstFramePsnr.toFixed(2)}) mean-colour err ≤ ${c.worstMeanError.toFixed(2)} ` +
    JSON.stringify(extra));
}

test.describe('video: WebCodecs + mp4-muxer in Chromium', () => {
  let family = 'avc';

  test.beforeEach(async ({ page }) => {
    await openHarness(page);
    family = (await call(page, 'probe', WIDTH, HEIGHT, CRF)).family;
  });

  test('the browser offers an MP4 codec; H.264 is preferred when present', async ({ page }) => {
    const probe = await call(page, 'probe', WIDTH, HEIGHT, CRF);
    console.log('encoder probe:', JSON.stringify(probe));
    if (probe.raw['avc1.42001E']) expect(probe.family).toBe('avc');
    expect(['avc', 'vp9', 'av1']).toContain(probe.family);
  });

  test('a size no codec can take gets a typed error that says what to do', async ({ page }) => {
    const failure = await call(page, 'failure', 16384, 16384);
    expect(failure?.name).toBe('UnsupportedVideoCodecError');
    expect(failure?.message).toMatch(/cannot encode 16384×16384 video .* smaller video size/);
  });

  for (const variant of ['original', 'f1'] as const) {
    test(`${variant} loop: a playable MP4 after every section, frames in time order`, async ({ page }) => {
      const results = await call(page, 'assemble', variant, SECTIONS, SECTIONS, WIDTH, HEIGHT, CRF);
      const counts = variant === 'f1' ? [37, 73, 109] : [33, 69, 109];
      expect(results.map((r) => r.frames)).toEqual(counts);
      results.forEach((r, s) => {
        const c = checkMp4(`${variant}-section${s + 1}`, r.mp4, expectedVideo(variant, s + 1), family);
        report(`${variant} after section ${s + 1}`, c, { addMs: Math.round(r.addMs), videoMs: Math.round(r.videoMs), mp4Bytes: Math.round(r.mp4.length * 3 / 4), finalEncodedBytes: r.encodedBytes });
      });
      const last = await call(page, 'play', results[results.length - 1].mp4);
      expect([last.width, last.height]).toEqual([WIDTH, HEIGHT]);
      expect(last.duration).toBeCloseTo(109 / 30, 1);
    });
  }

  test('original loop: the video after section 1 alone is a playable MP4 of exactly that section', async ({ page }) => {
    const [first] = await call(page, 'assemble', 'original', SECTIONS, 1, WIDTH, HEIGHT, CRF);
    expect(first.frames).toBe(33);
    // It shows the END of the final video: frames 76–108 of 109 (the section that is generated first).
    expect(sectionWindows('original', SECTIONS)[0]).toMatchObject({ start: 76, frames: 33 });
    report('original, stopped after section 1', checkMp4('original-stopped-after-1', first.mp4, expectedVideo('original', 1), family));
    const played = await call(page, 'play', first.mp4);
    expect(played.duration).toBeCloseTo(33 / 30, 1);
  });

  test('Mp4Writer streams frames in time order into one MP4', async ({ page }) => {
    const written = await call(page, 'write', 37, WIDTH, HEIGHT, CRF);
    const c = checkMp4('writer-37', written.mp4, expectedVideo('f1', 1), family);
    report(`Mp4Writer (${written.label})`, c, { ms: Math.round(written.ms) });
  });

  test('the VP9 fallback writes the same video when H.264 is not used', async ({ page }) => {
    const results = await call(page, 'assemble', 'original', SECTIONS, SECTIONS, WIDTH, HEIGHT, CRF, ['vp9']);
    const c = checkMp4('original-vp9', results[2].mp4, expectedVideo('original', 3), 'vp9');
    report('original, VP9 fallback', c, { addMs: results.map((r) => Math.round(r.addMs)), videoMs: results.map((r) => Math.round(r.videoMs)) });
  });
});

// The app as a person uses it, in Debian's Chromium with WebGPU on SwiftShader, against the production build served
// by `vite preview` (playwright.config.ts): the bundled tiny model, an uploaded PNG, two sections. What is checked
// comes from outside the app: ffprobe reads the downloaded MP4 (H.264, 30 fps, the reference formula's frame count),
// ffmpeg decodes it and its frames are compared (PSNR) with the frames the CLI writes for the same job and seed
// through the same engine (the same 4-bit weights, the block plans on the CPU executor); the page's transformer
// report shows that every block ran through the plan's kernels, dispatch for dispatch; the network log shows that a second run reads the
// model from IndexedDB, and Stop keeps the finished section; a reload after the first section leaves an interrupted
// gallery entry whose Continue, through two GPU devices destroyed mid-section (?loseDeviceAt), finishes the video with the uninterrupted run's frames. Bad inputs are in appErrors.spec.ts. It also writes the
// README's screenshots of the empty, generating and done states (docs/screenshot-*.png).

import { expect, test, type BrowserContext, type Page } from '@playwright/test';
import { spawn, spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { videoFramesAfter } from '../../src/pipeline/frameCount.ts';
import { buildDiT, parseDiTConfig } from '../../src/models/dit.ts';
import { forwardDispatches, planDispatches, stagesFor, TEACACHE_PROBE } from '../../src/models/ditBlocks.ts';
import type { TransformerReport } from '../../src/worker/engine.ts';
import { attr, fillJob as fill, JOB, JOB_TIMEOUT, progress, ROOT, screenshot, waitIdle, workDir, writeStartImage } from './appHelpers.ts';

const WORK = workDir('app-e2e');
const IMAGE = writeStartImage(WORK);
const SECTIONS = 2, WINDOW = 9;
const fillJob = (page: Page) => fill(page, IMAGE);

interface Probe { codec_name: string; r_frame_rate: string; nb_read_frames: string; width: number; height: number }

function ffprobe(file: string): Probe {
  const r = spawnSync('ffprobe', ['-v', 'error', '-select_streams', 'v:0', '-count_frames', '-show_entries',
    'stream=codec_name,r_frame_rate,nb_read_frames,width,height', '-of', 'json', file], { encoding: 'utf8' });
  expect(r.stderr, `ffprobe complained about ${file}`).toBe('');
  return JSON.parse(r.stdout).streams[0] as Probe;
}

/** Every frame as rgb24, decoded by ffmpeg (MP4 or Y4M alike). */
function rgbFrames(file: string, width: number, height: number): Buffer[] {
  const r = spawnSync('ffmpeg', ['-v', 'error', '-i', file, '-f', 'rawvideo', '-pix_fmt', 'rgb24', 'pipe:1'], { maxBuffer: 1 << 30 });
  expect(r.stderr.toString(), `ffmpeg complained about ${file}`).toBe('');
  const size = width * height * 3;
  return Array.from({ length: r.stdout.length / size }, (_, i) => r.stdout.subarray(i * size, (i + 1) * size));
}

function psnr(a: Buffer[], b: Buffer[]): { video: number; worstFrame: number } {
  let total = 0, n = 0, worst = Infinity;
  for (let f = 0; f < a.length; f++) {
    let se = 0;
    for (let i = 0; i < a[f].length; i++) se += (a[f][i] - b[f][i]) ** 2;
    total += se;
    n += a[f].length;
    worst = Math.min(worst, 10 * Math.log10((255 * 255) / Math.max(se / a[f].length, 1e-12)));
  }
  return { video: 10 * Math.log10((255 * 255) / Math.max(total / n, 1e-12)), worstFrame: worst };
}

/**
 * The CLI on the same job: the same engine and 4-bit weights with the DiT's block plans on the CPU executor and the
 * other networks on ORT's wasm EP (the browser runs WebGPU on SwiftShader, so the comparison also checks one backend
 * against the other), frames written as Y4M.
 */
function runCli(out: string): Promise<{ code: number; log: string; seconds: number }> {
  const t0 = performance.now();
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ['scripts/run-node.mjs', 'src/cli/generate.ts', '--', '--model', 'public/models/tiny', '--image', IMAGE,
      '--prompt', JOB.prompt, '--seconds', JOB.seconds, '--seed', JOB.seed, '--steps', String(JOB.steps), '--out', out,
      '--provider', 'wasm', '--dtype', 'float32', '--q4', '--cache-dir', join(WORK, 'cli-cache')], { cwd: ROOT });
    let log = '';
    child.stdout.on('data', (d) => { log += d; });
    child.stderr.on('data', (d) => { log += d; });
    child.on('close', (code) => resolve({ code: code ?? 1, log, seconds: (performance.now() - t0) / 1000 }));
  });
}

/** The MP4 behind the download link, read in the page (it is a blob: URL) and written to disk. */
async function downloadMp4(page: Page, name: string): Promise<{ file: string; bytes: number }> {
  const link = page.getByTestId('download-mp4');
  await expect(link).toHaveAttribute('href', /^blob:/);
  await expect(link).toHaveAttribute('download', /\.mp4$/);
  const base64 = await link.evaluate(async (a: HTMLAnchorElement) => {
    const bytes = new Uint8Array(await (await fetch(a.href)).arrayBuffer());
    let s = '';
    for (let i = 0; i < bytes.length; i += 0x8000) s += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
    return btoa(s);
  });
  const file = join(WORK, name);
  writeFileSync(file, Buffer.from(base64, 'base64'));
  return { file, bytes: Buffer.from(base64, 'base64').length };
}

test.describe.serial('one job end to end, then from the cache with Stop, then reloaded mid-job and continued', () => {
  let context: BrowserContext;
  let page: Page;

  test.beforeAll(async ({ browser }) => {
    context = await browser.newContext({ viewport: { width: 1280, height: 720 } });
    page = await context.newPage();
  });
  test.afterAll(async () => {
    await context?.close();
  });

  test('two sections: preview and progress advance step by step; the MP4 is H.264, 30 fps, the reference frame count, and matches the CLI', async () => {
    test.setTimeout(JOB_TIMEOUT + 10 * 60_000);
    const t0 = performance.now();
    const cliOut = join(WORK, 'cli.y4m');
    const cli = runCli(cliOut); // runs beside the browser: the same job through the same engine in Node

    await page.goto('/');
    await expect(page.getByTestId('adapter')).toHaveText('swiftshader', { timeout: 60_000 });
    await screenshot(page, 'empty');
    await fillJob(page);
    await expect(page.getByText(`${SECTIONS} sections, ${videoFramesAfter('original', SECTIONS, SECTIONS, WINDOW)} frames at 30 fps`)).toBeVisible();
    await page.getByTestId('generate').click();

    // Watch the progress hooks while the job runs: (section, step) must only move forward.
    const seen: [number, number][] = [];
    let shotTaken = false;
    for (;;) {
      // One read of all hooks, so a step event cannot land between two of them.
      const d = await progress(page).evaluate((el) => ({ ...(el as HTMLElement).dataset }));
      if (d.phase === 'idle') break;
      const section = Number(d.section), step = Number(d.step);
      if (step > 0 && (seen.length === 0 || seen.at(-1)![0] !== section || seen.at(-1)![1] !== step)) seen.push([section, step]);
      if (!shotTaken && Number(d.stepEvents) >= 2) {
        await expect(page.getByTestId('preview')).toBeVisible();
        await screenshot(page, 'generating');
        shotTaken = true;
      }
      await page.waitForTimeout(200);
      expect(performance.now() - t0, 'the job took too long').toBeLessThan(JOB_TIMEOUT);
    }
    const browserSeconds = (performance.now() - t0) / 1000;
    await expect(page.getByTestId('error')).toHaveCount(0);
    await expect(progress(page)).toHaveAttribute('data-stage', 'done');

    // One step event per step per section, in order, each with a preview.
    const expected = Array.from({ length: SECTIONS * JOB.steps }, (_, i) => `${Math.floor(i / JOB.steps)}:${(i % JOB.steps) + 1}`);
    expect((await attr(page, 'step-log')).split(',')).toEqual(expected);
    expect(Number(await page.getByTestId('preview').getAttribute('data-updates'))).toBe(SECTIONS * JOB.steps);
    for (let i = 1; i < seen.length; i++) expect(seen[i][0] * 100 + seen[i][1]).toBeGreaterThan(seen[i - 1][0] * 100 + seen[i - 1][1]);
    expect(await page.getByRole('progressbar', { name: 'Job progress' }).getAttribute('value')).toBe('100');

    // The transformer ran every block through the 4-bit plan on our kernels: the dispatches the page reports are
    // exactly what the plans (built here from the tiny config) make for the calls that ran the blocks, plus
    // TeaCache's probe (the dual plan's first image stages) on every call.
    const report = JSON.parse(await attr(page, 'transformer')) as TransformerReport;
    const config = parseDiTConfig(JSON.parse(readFileSync(join(ROOT, 'public/models/tiny/transformer/config.json'), 'utf8')) as Record<string, unknown>);
    const plans = buildDiT(config, { quantized: true }).blocks;
    const perCall = forwardDispatches(config, plans);
    const perProbe = planDispatches({ ...plans.dual, stages: stagesFor(plans.dual, TEACACHE_PROBE) });
    expect(report.executor).toBe('webgpu');
    expect(report.kernels).toEqual({ linear: 'q4/portable', adaParams: 'q4/portable', attention: 'portable' });
    expect(report.calls).toBe(SECTIONS * JOB.steps);
    expect(report.blockCalls).toBeGreaterThanOrEqual(SECTIONS); // each section's first step computes
    for (const key of ['linear', 'adaParams', 'attention', 'fused'] as const) {
      expect(report.dispatches[key], key).toBe(report.blockCalls * perCall[key] + report.calls * perProbe[key]);
    }
    await expect(page.getByTestId('transformer-report')).toContainText('our WebGPU kernels');

    await expect(page.getByTestId('video')).toBeVisible();
    await screenshot(page, 'done');
    const mp4 = await downloadMp4(page, 'app.mp4');
    const probe = ffprobe(mp4.file);
    const frames = videoFramesAfter('original', SECTIONS, SECTIONS, WINDOW);
    expect(probe.codec_name).toBe('h264');
    expect(probe.r_frame_rate).toBe('30/1');
    expect(Number(probe.nb_read_frames)).toBe(frames);

    const done = await cli;
    expect(done.code, done.log.slice(-2000)).toBe(0);
    const got = rgbFrames(mp4.file, probe.width, probe.height);
    const want = rgbFrames(cliOut, probe.width, probe.height);
    expect(want.length).toBe(frames);
    const q = psnr(got, want);
    console.log(`app job: ${browserSeconds.toFixed(0)} s in the browser (CLI beside it: ${done.seconds.toFixed(0)} s); transformer ${JSON.stringify(report)}; MP4 ${mp4.bytes} bytes, ` +
      `${probe.codec_name} ${probe.width}×${probe.height} ${probe.r_frame_rate} fps, ${probe.nb_read_frames} frames; ` +
      `PSNR against the CLI's frames ${q.video.toFixed(2)} dB (worst frame ${q.worstFrame.toFixed(2)} dB)`);
    expect(q.video).toBeGreaterThanOrEqual(35);
    await expect(page.getByTestId('gallery-entry')).toHaveCount(1);
  });

  test('after a reload the model is read from the cache (no download), and Stop at the first section keeps a valid MP4 of it', async () => {
    test.setTimeout(JOB_TIMEOUT);
    const modelRequests: string[] = [];
    context.on('request', (r) => { if (r.url().includes('/models/tiny/')) modelRequests.push(r.url()); });
    await page.reload();
    await expect(page.getByTestId('adapter')).toHaveText('swiftshader', { timeout: 60_000 });
    await fillJob(page);
    await page.getByTestId('generate').click();
    // The first section's video arrives with its section event: press Stop then.
    await expect(progress(page)).toHaveAttribute('data-video-frames', /^[1-9]/, { timeout: JOB_TIMEOUT });
    await page.getByTestId('stop').click();
    await waitIdle(page);
    await expect(page.getByRole('status')).toContainText('Stopped');
    await expect(page.getByTestId('error')).toHaveCount(0);
    expect(modelRequests, 'the cached model was downloaded again').toEqual([]);
    expect(await attr(page, 'stage')).not.toBe('download');

    const mp4 = await downloadMp4(page, 'stopped.mp4');
    const probe = ffprobe(mp4.file);
    expect(probe.codec_name).toBe('h264');
    expect(probe.r_frame_rate).toBe('30/1');
    expect(Number(probe.nb_read_frames)).toBe(videoFramesAfter('original', 1, SECTIONS, WINDOW));
    // The stopped run is in the gallery too, marked as such.
    await expect(page.getByTestId('gallery-entry')).toHaveCount(2);
    await expect(page.getByTestId('gallery-entry').first()).toContainText('stopped early');
    console.log(`stopped job: MP4 ${mp4.bytes} bytes, ${probe.nb_read_frames} frames`);
  });

  test('a reload after the first section leaves it in the gallery as interrupted; Continue, through two lost devices, finishes the uninterrupted run\'s video', async () => {
    test.setTimeout(JOB_TIMEOUT);
    await page.reload();
    await expect(page.getByTestId('adapter')).toHaveText('swiftshader', { timeout: 60_000 });
    await fillJob(page);
    await page.getByTestId('generate').click();
    // The page writes the interrupted entry once the worker has stored the section's state; then the tab goes away.
    const interrupted = page.locator('[data-testid="gallery-entry"][data-interrupted="true"]');
    await expect(interrupted).toHaveCount(1, { timeout: JOB_TIMEOUT });
    // The page comes back with its GPU device to be destroyed twice in the continued section, after its first step
    // (?loseDeviceAt, device.destroy() in the worker, as a GPU reset loses it).
    await page.goto('/?loseDeviceAt=1:1,1:1');
    await expect(page.getByTestId('adapter')).toHaveText('swiftshader', { timeout: 60_000 });
    await expect(interrupted).toHaveCount(1);
    await expect(interrupted).toContainText('(interrupted)');
    await expect(interrupted).toContainText(`${videoFramesAfter('original', 1, SECTIONS, WINDOW)} frames`);
    await interrupted.getByTestId('gallery-continue').click();
    await expect(progress(page)).toHaveAttribute('data-phase', 'running');
    const status = page.getByRole('status');
    await expect(status).toContainText('The GPU device was lost; going on from section 2 on a new one (try 1 of 2)', { timeout: JOB_TIMEOUT });
    await screenshot(page, 'device-recovery');
    await expect(status).toContainText('(try 2 of 2)', { timeout: JOB_TIMEOUT });
    await waitIdle(page);
    await expect(page.getByTestId('error')).toHaveCount(0);
    // Continue ran the second section only: its first step on each of the three devices, then the rest on the last.
    const steps = (await attr(page, 'step-log')).split(',');
    expect(steps.every((s) => s.startsWith('1:'))).toBe(true);
    expect(steps.filter((s) => s === '1:1')).toHaveLength(3);
    expect(steps.slice(2)).toEqual(Array.from({ length: JOB.steps }, (_, i) => `1:${i + 1}`));
    await expect(interrupted).toHaveCount(0);

    const mp4 = await downloadMp4(page, 'continued.mp4');
    const probe = ffprobe(mp4.file);
    const frames = videoFramesAfter('original', SECTIONS, SECTIONS, WINDOW);
    expect(Number(probe.nb_read_frames)).toBe(frames);
    // The frames are the uninterrupted job's: against its uncompressed frames (the CLI's, test 1) as close as the
    // uninterrupted MP4 is (every frame here was encoded after the reload: the first section leaves only overlap
    // frames, which the second blends; the two MP4s then differ only by the H.264 encoder's history).
    const got = rgbFrames(mp4.file, probe.width, probe.height);
    const uninterrupted = rgbFrames(join(WORK, 'app.mp4'), probe.width, probe.height);
    const exact = rgbFrames(join(WORK, 'cli.y4m'), probe.width, probe.height);
    const q = psnr(got, exact), qRef = psnr(uninterrupted, exact), qMp4 = psnr(got, uninterrupted);
    console.log(`continued job: ${steps.length} steps after the reload (two lost devices), ${probe.nb_read_frames} frames; PSNR against the job's uncompressed frames ` +
      `${q.video.toFixed(2)} dB (the uninterrupted MP4: ${qRef.video.toFixed(2)} dB), against the uninterrupted MP4 ${qMp4.video.toFixed(2)} dB ` +
      `(worst frame ${qMp4.worstFrame.toFixed(2)} dB)`);
    expect(q.video).toBeGreaterThanOrEqual(qRef.video - 0.5); // measured 0.12 dB below
    expect(qMp4.video).toBeGreaterThanOrEqual(40); // measured 43.1 dB
  });
});

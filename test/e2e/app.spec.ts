// The app as a person uses it, in Debian's Chromium with WebGPU on SwiftShader, against the production build served
// by `vite preview` (playwright.config.ts): the bundled tiny model, an uploaded PNG, two sections. What is checked
// comes from outside the app: ffprobe reads the downloaded MP4 (H.264, 30 fps, the reference formula's frame count),
// ffmpeg decodes it and its frames are compared (PSNR) with the frames the CLI writes for the same job and seed
// through the same engine on WebGPU (SwiftShader in Node); the network log shows that a second run reads the
// model from IndexedDB; the bad inputs fail through real mechanisms (a file that is not an image, a quota lowered
// through the DevTools protocol, a server that cuts the connection mid-file, a GPU buffer beyond the device's limit).
// It also writes the README's screenshots (docs/screenshot-*.png).

import { expect, test, type BrowserContext, type Page } from '@playwright/test';
import { spawn, spawnSync } from 'node:child_process';
import { mkdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { crc32, deflateSync } from 'node:zlib';
import { videoFramesAfter } from '../../src/pipeline/frameCount.ts';
import { startRangeServer, type RangeServer } from '../helpers/rangeServer.ts';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const DOCS = join(ROOT, 'docs');
/** Inputs and outputs of this run (the MP4s, the CLI's Y4M), kept for a look afterwards; .cache/ is not committed. */
const WORK = join(ROOT, '.cache', 'app-e2e');
rmSync(WORK, { recursive: true, force: true });
mkdirSync(WORK, { recursive: true });

// The job: 2.4 s at the reference's window 9 → 2 sections; 4 steps; the tiny model's 112×80 bucket for a 4:3 image.
const JOB = { prompt: 'A character doing some simple body movements.', seconds: '2.4', steps: 4, seed: '31337', crf: '0' };
const SECTIONS = 2, WINDOW = 9;
const JOB_TIMEOUT = 25 * 60_000;

/** A PNG (RGB, 8 bit) written by hand, so the test needs no image library and the CLI gets the very same file. */
function png(width: number, height: number, pixel: (x: number, y: number) => [number, number, number]): Buffer {
  const raw = Buffer.alloc((width * 3 + 1) * height);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) raw.set(pixel(x, y), y * (width * 3 + 1) + 1 + x * 3);
  }
  const chunk = (type: string, data: Buffer) => {
    const body = Buffer.concat([Buffer.from(type, 'latin1'), data]);
    const out = Buffer.alloc(8 + data.length + 4);
    out.writeUInt32BE(data.length, 0);
    body.copy(out, 4);
    out.writeUInt32BE(crc32(body) >>> 0, 8 + data.length);
    return out;
  };
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr.set([8, 2, 0, 0, 0], 8);
  return Buffer.concat([Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]), chunk('IHDR', ihdr), chunk('IDAT', deflateSync(raw)), chunk('IEND', Buffer.alloc(0))]);
}

/** 160×120: a gradient with a disc, so the VAE and the resize see structure, not a flat field. */
const IMAGE = join(WORK, 'start.png');
writeFileSync(IMAGE, png(160, 120, (x, y) => {
  const disc = (x - 100) ** 2 + (y - 55) ** 2 < 30 ** 2;
  return disc ? [240, 200, 40] : [Math.round((x * 255) / 159), Math.round((y * 255) / 119), 128];
}));

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

/** The CLI on the same job: same engine, WebGPU on SwiftShader in Node, frames written as Y4M. */
function runCli(out: string): Promise<{ code: number; log: string; seconds: number }> {
  const t0 = performance.now();
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ['scripts/run-node.mjs', 'src/cli/generate.ts', '--', '--model', 'public/models/tiny', '--image', IMAGE,
      '--prompt', JOB.prompt, '--seconds', JOB.seconds, '--seed', JOB.seed, '--steps', String(JOB.steps), '--out', out,
      '--provider', 'webgpu', '--gpu', 'software', '--dtype', 'float32'], { cwd: ROOT });
    let log = '';
    child.stdout.on('data', (d) => { log += d; });
    child.stderr.on('data', (d) => { log += d; });
    child.on('close', (code) => resolve({ code: code ?? 1, log, seconds: (performance.now() - t0) / 1000 }));
  });
}

async function screenshot(page: Page, name: string): Promise<void> {
  mkdirSync(DOCS, { recursive: true });
  await page.evaluate(() => window.scrollTo(0, 0));
  await page.screenshot({ path: join(DOCS, `screenshot-${name}.png`) });
}

/** Fills the form the way a person would (the values of JOB), starting with the image. */
async function fillJob(page: Page, options: { seconds?: string; steps?: number } = {}): Promise<void> {
  await page.getByTestId('image-input').setInputFiles(IMAGE);
  await expect(page.getByRole('img', { name: /Start image/ })).toBeVisible();
  await page.getByTestId('model-select').selectOption('tiny');
  await page.getByTestId('prompt').fill(JOB.prompt);
  await page.getByTestId('seconds').fill(options.seconds ?? JOB.seconds);
  await page.getByTestId('steps').fill(String(options.steps ?? JOB.steps));
  await page.getByTestId('seed').fill(JOB.seed);
  await page.getByTestId('crf').fill(JOB.crf);
}

const progress = (page: Page) => page.getByTestId('progress');
const attr = async (page: Page, name: string) => (await progress(page).getAttribute(`data-${name}`)) ?? '';

async function waitIdle(page: Page, timeout = JOB_TIMEOUT): Promise<void> {
  await expect(progress(page)).toHaveAttribute('data-phase', 'idle', { timeout });
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

test.describe.serial('one job end to end, then from the cache with Stop', () => {
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
    console.log(`app job: ${browserSeconds.toFixed(0)} s in the browser (CLI beside it: ${done.seconds.toFixed(0)} s); MP4 ${mp4.bytes} bytes, ` +
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
});

test.describe('bad input gets a clear message and loses nothing', () => {
  test.use({ viewport: { width: 1280, height: 720 } });

  test('a file that is not an image, an image too small, an image too large', async ({ page }) => {
    await page.goto('/');
    await page.getByTestId('image-input').setInputFiles(IMAGE);
    const start = page.getByRole('img', { name: /Start image/ });
    await expect(start).toBeVisible();
    await page.getByTestId('image-input').setInputFiles({ name: 'notes.txt', mimeType: 'text/plain', buffer: Buffer.from('not a picture') });
    await expect(page.getByTestId('error')).toContainText('notes.txt is not an image');
    await expect(start).toBeVisible(); // the image chosen before is still there
    await page.getByTestId('image-input').setInputFiles({ name: 'broken.png', mimeType: 'image/png', buffer: Buffer.from('\x89PNG garbage') });
    await expect(page.getByTestId('error')).toContainText('broken.png could not be read as an image');
    await page.getByTestId('image-input').setInputFiles({ name: 'tiny.png', mimeType: 'image/png', buffer: png(40, 30, () => [1, 2, 3]) });
    await expect(page.getByTestId('error')).toContainText('tiny.png is 40×30 pixels; it needs at least 64 pixels on each side');
    await page.getByTestId('end-image-input').setInputFiles({ name: 'wide.png', mimeType: 'image/png', buffer: png(8200, 64, () => [9, 9, 9]) });
    await expect(page.getByTestId('error')).toContainText('wide.png is 8200×64 pixels');
    await expect(start).toBeVisible();
    await expect(page.getByTestId('generate')).toBeEnabled();
  });

  test('a quota lowered through the DevTools protocol: the download stops with the size still needed', async ({ page, baseURL }) => {
    test.setTimeout(5 * 60_000);
    await page.goto('/');
    await expect(page.getByTestId('adapter')).toHaveText('swiftshader', { timeout: 60_000 });
    const cdp = await page.context().newCDPSession(page);
    const origin = new URL(baseURL!).origin;
    await cdp.send('Storage.overrideQuotaForOrigin', { origin, quotaSize: 400_000 });
    try {
      await fillJob(page);
      await page.getByTestId('generate').click();
      const error = page.getByTestId('error');
      await expect(error).toHaveAttribute('data-error-name', 'QuotaError', { timeout: 120_000 });
      await expect(error).toContainText(/needs [\d.]+ (kB|MB) of browser storage, but the browser refused to store more/);
      await expect(page.getByText('The "Models in this browser" panel below lists what is stored')).toBeVisible();
      await screenshot(page, 'error');
      await expect(page.getByRole('img', { name: /Start image/ })).toBeVisible();
      await expect(page.getByTestId('prompt')).toHaveValue(JOB.prompt);
    } finally {
      await cdp.send('Storage.overrideQuotaForOrigin', { origin });
    }
  });

  test('a GPU buffer beyond the device limit: the message names the size and what to change', async ({ page }) => {
    test.setTimeout(10 * 60_000);
    // A device allowing 1 MiB per buffer (the app plans its tensors against this limit), and the 512-pixel class.
    await page.goto('/?maxGpuBufferBytes=1048576');
    await expect(page.getByTestId('adapter')).toHaveText('swiftshader', { timeout: 60_000 });
    await fillJob(page);
    await page.getByTestId('resolution').selectOption('512');
    await page.getByTestId('generate').click();
    const error = page.getByTestId('error');
    await expect(error).toHaveAttribute('data-error-name', 'GpuOutOfMemoryError', { timeout: 8 * 60_000 });
    await expect(error).toContainText(/could not allocate \d+ MiB for the VAE encoder at \d+×\d+ pixels \(this device allows at most 1 MiB in one buffer\)/);
    await expect(page.getByText('Pick a smaller size under Settings → Resolution')).toBeVisible();
    await expect(progress(page)).toHaveAttribute('data-phase', 'idle');
  });

  test.describe('a server that cuts the connection mid-file', () => {
    let server: RangeServer;
    test.beforeAll(async () => {
      server = await startRangeServer(join(ROOT, 'public', 'models'));
    });
    test.afterAll(async () => {
      await server?.close();
    });

    test('the download fails with a message, and Generate again resumes it without fetching finished parts', async ({ page }) => {
      test.setTimeout(5 * 60_000);
      await page.goto(`/?modelBase=${encodeURIComponent(`${server.url}/tiny/`)}`);
      await expect(page.getByTestId('adapter')).toHaveText('swiftshader', { timeout: 60_000 });
      // The transformer comes last; cut its second shard in the middle on every attempt (the app retries 4 times).
      const shard = '/tiny/transformer/diffusion_pytorch_model-00002-of-00003.safetensors';
      server.cutAt(shard, 300_000, 5);
      await fillJob(page);
      await page.getByTestId('generate').click();
      const error = page.getByTestId('error');
      await expect(error).toHaveAttribute('data-error-name', 'NetworkError', { timeout: 120_000 });
      await expect(error).toContainText(/Could not download .*diffusion_pytorch_model-00002-of-00003\.safetensors .*the download resumes where it stopped/);
      await expect(page.getByText('Press Generate again when the connection is back')).toBeVisible();
      const cut = server.log.filter((r) => r.path === shard && r.method === 'GET');
      expect(cut.length).toBe(5);
      expect(cut.every((r) => r.sent < 647_560)).toBe(true);
      await expect(page.getByTestId('model-storage')).toContainText('partly downloaded');

      // Connection back: Generate again. Parts finished before the cut are not fetched again.
      const mark = server.log.length;
      await page.getByTestId('generate').click();
      await expect(progress(page)).toHaveAttribute('data-stage', /text|image|vae-encode|sampling/, { timeout: 120_000 });
      await page.getByTestId('stop').click();
      await waitIdle(page, 5 * 60_000);
      await expect(page.getByTestId('error')).toHaveCount(0);
      const again = server.log.slice(mark).filter((r) => r.method === 'GET').map((r) => r.path);
      expect(again.filter((p) => !p.startsWith('/tiny/transformer/')), 'finished parts were downloaded again').toEqual([]);
      expect(again).toContain(shard);
      await expect(page.getByTestId('model-storage')).toContainText('complete');
    });
  });

  test.describe('FramePack from a Hugging Face mirror in the official layout', () => {
    // The tiny model's files arranged as the three official repositories lay them out (sharded transformer with its
    // index.json, HunyuanVideo's subfolders, flux_redux_bfl's image encoder), served by a real HTTP server.
    let server: RangeServer;
    const hub = join(WORK, 'hub');
    const TINY = join(ROOT, 'public', 'models', 'tiny');
    test.beforeAll(async () => {
      const link = (from: string, to: string) => {
        mkdirSync(dirname(join(hub, to)), { recursive: true });
        symlinkSync(join(TINY, from), join(hub, to));
      };
      link('transformer', 'lllyasviel/FramePackI2V_HY/resolve/main');
      for (const c of ['text_encoder', 'tokenizer', 'text_encoder_2', 'tokenizer_2', 'vae']) link(`HunyuanVideo/${c}`, `hunyuanvideo-community/HunyuanVideo/resolve/main/${c}`);
      for (const c of ['image_encoder', 'feature_extractor']) link(`flux_redux_bfl/${c}`, `lllyasviel/flux_redux_bfl/resolve/main/${c}`);
      server = await startRangeServer(hub);
    });
    test.afterAll(async () => {
      await server?.close();
    });

    test('every part is fetched from the repositories\' URLs, a transfer cut once is resumed, and the model is stored', async ({ page }) => {
      test.setTimeout(5 * 60_000);
      await page.goto(`/?hubEndpoint=${encodeURIComponent(server.url)}`);
      await expect(page.getByTestId('adapter')).toHaveText('swiftshader', { timeout: 60_000 });
      const shard = '/lllyasviel/FramePackI2V_HY/resolve/main/diffusion_pytorch_model-00003-of-00003.safetensors';
      server.cutAt(shard, 200_000); // once: the app's retry picks the transfer up again
      await fillJob(page);
      await page.getByTestId('model-select').selectOption('framepack');
      await expect(page.getByTestId('variant')).toHaveCount(0); // FramePack runs its own (original) loop
      await page.getByTestId('generate').click();
      // Past the download, the job itself is not the point here (the tiny weights do not fit the real model's
      // settings, such as its 640-pixel buckets): stop it as soon as it starts on the networks.
      await expect(progress(page)).not.toHaveAttribute('data-stage', /^(download|)$/, { timeout: 120_000 });
      await page.getByTestId('stop').click({ force: true }); // may already be over (the settings do not fit the weights)
      await waitIdle(page, 5 * 60_000);
      await expect(page.getByTestId('model-storage')).toContainText(/FramePack \(HunyuanVideo I2V[^]*?complete/);

      const gets = server.log.filter((r) => r.method === 'GET');
      for (const prefix of ['/lllyasviel/FramePackI2V_HY/resolve/main/', '/hunyuanvideo-community/HunyuanVideo/resolve/main/text_encoder/',
        '/hunyuanvideo-community/HunyuanVideo/resolve/main/vae/', '/lllyasviel/flux_redux_bfl/resolve/main/image_encoder/']) {
        expect(gets.some((r) => r.path.startsWith(prefix)), prefix).toBe(true);
      }
      expect(gets.some((r) => r.path.endsWith('/text_encoder/model.safetensors.index.json'))).toBe(true);
      const shardGets = gets.filter((r) => r.path === shard);
      expect(shardGets.length).toBeGreaterThanOrEqual(2);
      expect(shardGets[0].sent).toBe(200_000); // cut there
      expect(shardGets.at(-1)!.status).toBeGreaterThanOrEqual(200);
    });
  });

  test('the app shell opens offline once it has been loaded (service worker), the weights cache apart', async ({ page, context }) => {
    await page.goto('/');
    await page.evaluate(() => navigator.serviceWorker.ready.then(() => undefined));
    await page.reload(); // now controlled by the service worker
    await expect.poll(() => page.evaluate(() => !!navigator.serviceWorker.controller)).toBe(true);
    await context.setOffline(true);
    try {
      await page.reload();
      await expect(page.getByRole('heading', { name: 'FramePack Web' })).toBeVisible();
      await expect(page.getByTestId('capabilities')).toContainText('Largest single GPU buffer binding', { timeout: 60_000 });
      const cached = await page.evaluate(async () => (await Promise.all((await caches.keys()).map(async (k) => (await (await caches.open(k)).keys()).map((r) => r.url)))).flat());
      expect(cached.some((u) => u.endsWith('.wasm'))).toBe(true);
      expect(cached.filter((u) => u.includes('/models/'))).toEqual([]);
    } finally {
      await context.setOffline(false);
    }
  });
});

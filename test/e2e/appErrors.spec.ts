// The app's bad inputs, each through a real mechanism, each with a message that says what to do and nothing lost:
// a file that is not an image (or too small, too large), a storage quota lowered through the DevTools protocol, a
// server that cuts the connection mid-file (then Generate again resumes), a GPU buffer beyond the device's limit;
// plus the real models' download path against a local mirror in the official repositories' layout, and the app shell
// opening offline; a GPU device lost three times, and an allocation the driver refuses. Production build, Debian's
// Chromium, WebGPU on SwiftShader; the tiny model. It writes the README's error screenshots (docs/screenshot-error.png,
// screenshot-device-lost.png, screenshot-out-of-memory.png).

import { expect, test } from '@playwright/test';
import { mkdirSync, symlinkSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { startRangeServer, type RangeServer } from '../helpers/rangeServer.ts';
import { fillJob as fill, JOB, png, progress, ROOT, screenshot, waitIdle, workDir, writeStartImage } from './appHelpers.ts';
import type { Page } from '@playwright/test';

const WORK = workDir('app-e2e-errors');
const IMAGE = writeStartImage(WORK);
const fillJob = (page: Page) => fill(page, IMAGE);

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
    // The app shell's cache (service worker: ORT's wasm alone is 27 MB) counts too: leave 400 kB above it.
    await page.evaluate(() => navigator.serviceWorker.ready.then(() => undefined));
    await expect.poll(() => page.evaluate(async () => (await caches.keys()).length)).toBeGreaterThan(0);
    const usage = await page.evaluate(async () => (await navigator.storage.estimate()).usage ?? 0);
    await cdp.send('Storage.overrideQuotaForOrigin', { origin, quotaSize: usage + 400_000 });
    try {
      await fillJob(page);
      await page.getByTestId('generate').click();
      const error = page.getByTestId('error');
      await expect(error).toHaveAttribute('data-error-name', 'QuotaError', { timeout: 120_000 });
      await expect(error).toContainText(/^The model tiny\/[\w.]+ needs (?!0 kB)[\d.]+ (kB|MB) of browser storage, but the browser refused to store more/);
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
    // A device allowing 32 KiB per buffer (the app plans its tensors against this limit), and the 512-pixel class:
    // even the VAE encoder's smallest spatial tile needs more (at 1 MiB the kernels tile the frame and the job runs).
    await page.goto('/?maxGpuBufferBytes=32768');
    await expect(page.getByTestId('adapter')).toHaveText('swiftshader', { timeout: 60_000 });
    await fillJob(page);
    await page.getByTestId('resolution').selectOption('512');
    await page.getByTestId('generate').click();
    const error = page.getByTestId('error');
    await expect(error).toHaveAttribute('data-error-name', 'GpuOutOfMemoryError', { timeout: 8 * 60_000 });
    await expect(error).toContainText(/could not allocate \d+ (MiB|KiB) for the VAE encoder at \d+×\d+ pixels \(this device allows at most 32 KiB in one buffer\)/);
    await expect(page.getByText('Pick a smaller size under Settings → Resolution')).toBeVisible();
    await expect(progress(page)).toHaveAttribute('data-phase', 'idle');
  });

  test('a GPU device lost three times: the job ends with a message naming the likely cause and what to try', async ({ page }) => {
    test.setTimeout(10 * 60_000);
    // device.destroy() in the worker as each try's text stage begins (?loseDeviceAt): two new devices, then the end.
    await page.goto('/?loseDeviceAt=text,text,text');
    await expect(page.getByTestId('adapter')).toHaveText('swiftshader', { timeout: 60_000 });
    await fillJob(page);
    await page.getByTestId('generate').click();
    const error = page.getByTestId('error');
    await expect(error).toHaveAttribute('data-error-name', 'RepeatedDeviceLossError', { timeout: 8 * 60_000 });
    await expect(error).toContainText(/lost 3 times during this job, most likely GPU resets .* or the driver, so the job stopped; the 0 finished sections are kept\. Try a smaller resolution/);
    await expect(progress(page)).toHaveAttribute('data-phase', 'idle');
    await screenshot(page, 'device-lost');
  });

  test('the driver refuses an allocation: GpuOutOfMemoryError names the stage, the size and what to do', async ({ page }) => {
    test.setTimeout(10 * 60_000);
    // The Llama encoder's stage first asks for one buffer of the device's largest size (?oversizeBufferIn), which
    // SwiftShader's driver refuses (VK_ERROR_OUT_OF_DEVICE_MEMORY): the refusal a full GPU gives, caught by the
    // stage's error scope. (A capped browser cannot stand in: Chromium ends its GPU process when malloc fails.)
    await page.goto(`/?oversizeBufferIn=${encodeURIComponent('the Llama text encoder')}`);
    await expect(page.getByTestId('adapter')).toHaveText('swiftshader', { timeout: 60_000 });
    await fillJob(page);
    await page.getByTestId('generate').click();
    const error = page.getByTestId('error');
    await expect(error).toHaveAttribute('data-error-name', 'GpuOutOfMemoryError', { timeout: 8 * 60_000 });
    await expect(error).toContainText(/The GPU ran out of memory in the Llama text encoder: it refused part of the \d+\.\d\d GiB asked for there, .* Every finished section is kept\. Choose a smaller resolution or a lower memory budget/);
    await expect(progress(page)).toHaveAttribute('data-phase', 'idle');
    await screenshot(page, 'out-of-memory');
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
      await expect(page.getByTestId('model-storage')).toContainText(/FramePack \(HunyuanVideo I2V[\s\S]*?complete/);

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

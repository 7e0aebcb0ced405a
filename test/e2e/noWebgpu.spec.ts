// A browser without WebGPU gets a clear message instead of a broken page, and loses nothing: the image can still
// be chosen, the settings used, the gallery read; only Start is held back, saying why.
import { expect, test } from '@playwright/test';
import { chromiumLaunchOptions } from './chromium.ts';
import { deflateSync, crc32 } from 'node:zlib';

test.use({ launchOptions: chromiumLaunchOptions({ webgpu: false }), viewport: { width: 1280, height: 720 } });

/** A 96×72 grey RGB PNG. */
function smallPng(): Buffer {
  const w = 96, h = 72;
  const raw = Buffer.alloc((w * 3 + 1) * h, 128);
  for (let y = 0; y < h; y++) raw[y * (w * 3 + 1)] = 0;
  const chunk = (type: string, data: Buffer) => {
    const body = Buffer.concat([Buffer.from(type, 'latin1'), data]);
    const len = Buffer.alloc(4);
    len.writeUInt32BE(data.length);
    const crc = Buffer.alloc(4);
    crc.writeUInt32BE(crc32(body) >>> 0);
    return Buffer.concat([len, body, crc]);
  };
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(w, 0);
  ihdr.writeUInt32BE(h, 4);
  ihdr.set([8, 2, 0, 0, 0], 8);
  return Buffer.concat([Buffer.from('89504e470d0a1a0a', 'hex'), chunk('IHDR', ihdr), chunk('IDAT', deflateSync(raw)), chunk('IEND', Buffer.alloc(0))]);
}

test('without WebGPU the page says what to do', async ({ page }) => {
  await page.goto('/');
  await expect(page.getByTestId('error')).toContainText(/WebGPU|adapter/);
});

test('without WebGPU the whole app still works up to Start, which says why it is held back', async ({ page }) => {
  await page.goto('/');
  const error = page.getByTestId('error');
  await expect(error).toHaveAttribute('data-error-name', /NoWebGPUError|NoAdapterError/);
  await expect(page.getByTestId('capabilities')).toContainText('No usable GPU');
  await page.getByTestId('image-input').setInputFiles({ name: 'grey.png', mimeType: 'image/png', buffer: smallPng() });
  await expect(page.getByRole('img', { name: /Start image/ })).toBeVisible();
  await page.getByTestId('prompt').fill('A character doing some simple body movements.');
  await page.getByTestId('seconds').fill('2.4');
  await expect(page.getByText('2 sections, 73 frames at 30 fps')).toBeVisible();
  await expect(page.getByTestId('generate')).toBeDisabled();
  await expect(page.getByText('Generation needs WebGPU')).toBeVisible();
  await expect(page.getByTestId('gallery')).toBeVisible();
  await expect(page.getByText('You can still look at past results in the gallery.')).toBeVisible();
});

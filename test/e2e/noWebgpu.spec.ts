// A browser without WebGPU gets a clear message instead of a broken page, and loses nothing: the image can still
// be chosen, the settings used, the gallery read; only Start is held back, saying why.
import { expect, test } from '@playwright/test';
import { chromiumLaunchOptions } from './chromium.ts';
import { png } from './appHelpers.ts';

test.use({ launchOptions: chromiumLaunchOptions({ webgpu: false }), viewport: { width: 1280, height: 720 } });

test('without WebGPU the page says what to do', async ({ page }) => {
  await page.goto('/');
  await expect(page.getByTestId('error')).toContainText(/WebGPU|adapter/);
});

test('without WebGPU the whole app still works up to Start, which says why it is held back', async ({ page }) => {
  await page.goto('/');
  const error = page.getByTestId('error');
  await expect(error).toHaveAttribute('data-error-name', /NoWebGPUError|NoAdapterError/);
  await expect(page.getByTestId('capabilities')).toContainText('No usable GPU');
  await page.getByTestId('image-input').setInputFiles({ name: 'grey.png', mimeType: 'image/png', buffer: png(96, 72, () => [128, 128, 128]) });
  await expect(page.getByRole('img', { name: /Start image/ })).toBeVisible();
  await page.getByTestId('prompt').fill('A character doing some simple body movements.');
  await page.getByTestId('seconds').fill('2.4');
  await expect(page.getByText('2 sections, 73 frames at 30 fps')).toBeVisible();
  await expect(page.getByTestId('generate')).toBeDisabled();
  await expect(page.getByText('Generation needs WebGPU')).toBeVisible();
  await expect(page.getByTestId('gallery')).toBeVisible();
  await expect(page.getByText('You can still look at past results in the gallery.')).toBeVisible();
});

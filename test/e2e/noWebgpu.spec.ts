// A browser without WebGPU gets a clear message instead of a broken page.
import { expect, test } from '@playwright/test';
import { chromiumLaunchOptions } from './chromium.ts';

test.use({ launchOptions: chromiumLaunchOptions({ webgpu: false }) });

test('without WebGPU the page says what to do', async ({ page }) => {
  await page.goto('/');
  await expect(page.getByTestId('error')).toContainText(/WebGPU|adapter/);
});

// The capability panel tells the user what they get: on SwiftShader (subgroups, no shader-f16, no subgroup
// matrices) the portable path without half precision, the flags that give the faster paths on Linux and macOS and
// the Windows answer, a numeric estimate per step and, next to the resolution choice, for the whole video, following
// the settings; and the ?dtype= overrides. No generation: the worker only probes the GPU (one small 4-bit GEMM).
import { expect, test, type Page } from '@playwright/test';
import { png } from './appHelpers.ts';

test.use({ viewport: { width: 1280, height: 900 } });

// The first page load starts the worker, opens the device and compiles the probe's kernel: seconds on SwiftShader.
const PROBE_TIMEOUT = 60_000;
const DURATION = /≈ (\d+(?:\.\d+)?) (s|min|h|days|years)\b/;

async function openPanel(page: Page, query = ''): Promise<void> {
  await page.goto(`/${query}`);
  await expect(page.getByTestId('kernel-path')).toBeVisible({ timeout: PROBE_TIMEOUT });
}

const videoSeconds = async (page: Page) => Number(await page.getByTestId('video-estimate').getAttribute('data-seconds'));

test('on SwiftShader: portable without half precision, the flags, and estimates per step and per video', async ({ page }) => {
  await openPanel(page);
  const path = page.getByTestId('kernel-path');
  await expect(path).toHaveAttribute('data-path', 'portable-f32');
  await expect(path).toContainText("This browser runs the transformer's portable without half precision path.");
  await expect(page.getByTestId('path-advice')).toContainText('software GPU');
  const advice = page.getByTestId('platform-advice');
  await expect(advice.locator('[data-platform="linux"]')).toContainText('--enable-unsafe-webgpu');
  await expect(advice.locator('[data-platform="linux"]')).toContainText('--enable-dawn-features=vulkan_enable_f16_on_nvidia');
  await expect(advice.locator('[data-platform="linux"]')).toContainText('(this computer)');
  await expect(advice.locator('[data-platform="macos"]')).toContainText('--enable-unsafe-webgpu');
  await expect(advice.locator('[data-platform="windows"]')).toContainText('no faster path in Chrome today');
  await expect(page.getByTestId('dtype-problem')).toHaveCount(0);

  // Per step at the default (no image: the square image's 640 bucket), scaled by the probe on this GPU.
  const step = page.getByTestId('step-estimate');
  await expect(step).toContainText(/per step at 608×640/);
  expect(await step.textContent()).toMatch(DURATION);
  await expect(step).toContainText(/ran at [\d.e+-]+ TFLOP\/s against the H200's 30/);

  // The whole video, next to the resolution choice: 5 s → 4 sections × 25 steps.
  const video = page.getByTestId('video-estimate');
  await expect(video).toContainText(/Estimated time of the whole video at 608×640 on this GPU's portable without half precision path/);
  await expect(video).toContainText('4 sections × 25 steps');
  await expect(video).toContainText("leaves out TeaCache's savings");
  expect(await video.textContent()).toMatch(DURATION);
  const base = await videoSeconds(page);
  expect(base).toBeGreaterThan(0);

  // It follows the steps, the length and the resolution (and the image's bucket).
  await page.getByTestId('steps').fill('50');
  await expect(video).toContainText('4 sections × 50 steps');
  expect((await videoSeconds(page)) / base).toBeCloseTo(2, 3);
  await page.getByTestId('seconds').fill('2.4');
  await expect(video).toContainText('2 sections × 50 steps');
  expect((await videoSeconds(page)) / base).toBeCloseTo(1, 3);
  await page.getByTestId('resolution').selectOption('320');
  await expect(video).toContainText('at 304×320');
  await expect(step).toContainText('per step at 304×320');
  expect(await videoSeconds(page)).toBeLessThan(base / 3);
  await page.getByTestId('image-input').setInputFiles({ name: 'wide.png', mimeType: 'image/png', buffer: png(160, 120, () => [90, 140, 200]) });
  await expect(video).toContainText('at 352×272');
});

test('?dtype=float32 runs the same path here (no half precision to leave out) and says nothing is wrong', async ({ page }) => {
  await openPanel(page, '?dtype=float32');
  await expect(page.getByTestId('kernel-path')).toHaveAttribute('data-path', 'portable-f32');
  await expect(page.getByTestId('dtype-problem')).toHaveCount(0);
  await expect(page.getByTestId('video-estimate')).toContainText('portable without half precision path');
});

test('?dtype=float16 on a GPU without shader-f16 is refused in plain words', async ({ page }) => {
  await openPanel(page, '?dtype=float16');
  await expect(page.getByTestId('kernel-path')).toHaveAttribute('data-path', 'portable-f32');
  await expect(page.getByTestId('dtype-problem')).toContainText('?dtype=float16');
  await expect(page.getByTestId('dtype-problem')).toContainText('no shader-f16');
  expect(await page.getByTestId('step-estimate').textContent()).toMatch(DURATION);
});

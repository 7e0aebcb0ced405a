// What the app's browser tests share: a PNG written by hand (no image library; the CLI gets the very same file),
// the job a person would set up, and small waits and reads on the page's stable hooks (data-testid, data-*).

import { expect, type Page } from '@playwright/test';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { crc32, deflateSync } from 'node:zlib';

export const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
export const DOCS = join(ROOT, 'docs');

// The job: 2.4 s at the reference's window 9 → 2 sections; 4 steps; the tiny model's 112×80 bucket for a 4:3 image.
export const JOB = { prompt: 'A character doing some simple body movements.', seconds: '2.4', steps: 4, seed: '31337', crf: '0' };
export const JOB_TIMEOUT = 25 * 60_000;

/** A fresh folder under .cache/ (not committed) for one spec's inputs and outputs, kept for a look afterwards. */
export function workDir(name: string): string {
  const dir = join(ROOT, '.cache', name);
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  return dir;
}

/** A PNG (RGB, 8 bit) written by hand, so the test needs no image library and the CLI gets the very same file. */
export function png(width: number, height: number, pixel: (x: number, y: number) => [number, number, number]): Buffer {
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

/** Writes the start image: 160×120, a gradient with a disc, so the VAE and the resize see structure, not a flat field. */
export function writeStartImage(dir: string): string {
  const file = join(dir, 'start.png');
  writeFileSync(file, png(160, 120, (x, y) => {
    const disc = (x - 100) ** 2 + (y - 55) ** 2 < 30 ** 2;
    return disc ? [240, 200, 40] : [Math.round((x * 255) / 159), Math.round((y * 255) / 119), 128];
  }));
  return file;
}

export async function screenshot(page: Page, name: string): Promise<void> {
  mkdirSync(DOCS, { recursive: true });
  await page.evaluate(() => window.scrollTo(0, 0));
  await page.screenshot({ path: join(DOCS, `screenshot-${name}.png`) });
}

/** Fills the form the way a person would (the values of JOB), starting with the image. */
export async function fillJob(page: Page, image: string, options: { seconds?: string; steps?: number } = {}): Promise<void> {
  await page.getByTestId('image-input').setInputFiles(image);
  await expect(page.getByRole('img', { name: /Start image/ })).toBeVisible();
  await page.getByTestId('model-select').selectOption('tiny');
  await page.getByTestId('prompt').fill(JOB.prompt);
  await page.getByTestId('seconds').fill(options.seconds ?? JOB.seconds);
  await page.getByTestId('steps').fill(String(options.steps ?? JOB.steps));
  await page.getByTestId('seed').fill(JOB.seed);
  await page.getByTestId('crf').fill(JOB.crf);
}

export const progress = (page: Page) => page.getByTestId('progress');
export const attr = async (page: Page, name: string) => (await progress(page).getAttribute(`data-${name}`)) ?? '';

export async function waitIdle(page: Page, timeout = JOB_TIMEOUT): Promise<void> {
  await expect(progress(page)).toHaveAttribute('data-phase', 'idle', { timeout });
}

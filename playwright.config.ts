// Browser tests: Debian's Chromium (no Playwright browser download; CI is offline) with WebGPU on SwiftShader,
// against the production build served by `vite preview`.
import { defineConfig } from '@playwright/test';
import { chromiumLaunchOptions } from './test/e2e/chromium.ts';

const port = 4174;

export default defineConfig({
  testDir: 'test/e2e',
  testMatch: '**/*.spec.ts',
  timeout: 10 * 60_000,
  workers: 1,
  reporter: [['list']],
  use: {
    baseURL: `http://127.0.0.1:${port}/`,
    launchOptions: chromiumLaunchOptions(),
  },
  webServer: {
    command: `npx vite build && npx vite preview --host 127.0.0.1 --port ${port} --strictPort`,
    url: `http://127.0.0.1:${port}/`,
    reuseExistingServer: false,
    timeout: 180_000,
  },
});

// The app build (static dist/) and the test runner share this file: one place for paths and plugins.
import { defineConfig } from 'vitest/config';
import { svelte } from '@sveltejs/vite-plugin-svelte';
import { serviceWorkerPlugin } from './scripts/serviceWorkerPlugin.ts';
import { folderContentHash } from './scripts/contentHash.ts';

export default defineConfig({
  plugins: [svelte(), serviceWorkerPlugin('src/pwa/serviceWorker.ts')],
  base: './',
  // No index.html fallback for unknown paths: a missing model file must be a 404 (as on any static host), since
  // checkpoint loading probes for optional files such as `*.safetensors.index.json`.
  appType: 'mpa',
  worker: { format: 'es' },
  // Which bundled tiny model this build ships (src/worker/browserApi.ts keys its cache by it).
  define: { __TINY_MODEL_HASH__: JSON.stringify(folderContentHash('public/models/tiny')) },
  build: { target: 'es2022', outDir: 'dist', sourcemap: true },
  optimizeDeps: { exclude: ['onnxruntime-web'] },
  test: {
    include: ['test/unit/**/*.test.ts', 'test/reference/**/*.test.ts'],
    environment: 'node',
    testTimeout: 120_000,
    hookTimeout: 180_000,
    // SwiftShader and the fixture cases are CPU-heavy; two workers match CI's two cores.
    pool: 'forks',
    // conversionMemory.test.ts measures held memory after a forced collection.
    execArgv: ['--expose-gc'],
    maxWorkers: 2,
  },
});

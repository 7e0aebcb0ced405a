// The app build (static dist/) and the test runner share this file: one place for paths and plugins.
import { defineConfig } from 'vitest/config';
import { svelte } from '@sveltejs/vite-plugin-svelte';

export default defineConfig({
  plugins: [svelte()],
  base: './',
  worker: { format: 'es' },
  build: { target: 'es2022', outDir: 'dist', sourcemap: true },
  optimizeDeps: { exclude: ['onnxruntime-web'] },
  test: {
    include: ['test/unit/**/*.test.ts', 'test/reference/**/*.test.ts'],
    environment: 'node',
    testTimeout: 120_000,
    hookTimeout: 180_000,
    // SwiftShader and the fixture cases are CPU-heavy; two workers match CI's two cores.
    pool: 'forks',
    maxWorkers: 2,
  },
});

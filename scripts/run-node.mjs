// Runs a TypeScript entry point of src/cli in Node: bundles it with esbuild (onnxruntime-web and webgpu stay
// external, loaded from node_modules or the GPU bundle) into .cache/cli/, then runs it with the remaining arguments.
// Usage: node scripts/run-node.mjs src/cli/checkReference.ts -- ARGS
import { build } from 'esbuild';
import { spawnSync } from 'node:child_process';
import { basename } from 'node:path';

const [entry, ...rest] = process.argv.slice(2);
const args = rest[0] === '--' ? rest.slice(1) : rest;
const outfile = `.cache/cli/${basename(entry).replace(/\.ts$/, '.mjs')}`;
await build({
  entryPoints: [entry],
  bundle: true,
  platform: 'node',
  format: 'esm',
  target: 'node20',
  outfile,
  external: ['webgpu', 'onnxruntime-web', 'onnxruntime-web/*'],
  banner: { js: "import { createRequire as __cr } from 'node:module'; const require = __cr(import.meta.url);" },
  logLevel: 'warning',
});
const r = spawnSync(process.execPath, [outfile, ...args], { stdio: 'inherit' });
process.exit(r.status ?? 1);

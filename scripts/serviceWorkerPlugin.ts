// Vite plugin: after the build is written, compiles src/pwa/serviceWorker.ts to dist/sw.js with the list of files
// the build produced (the app shell: HTML, scripts, styles, ORT's wasm, the manifest and icon) and a version hash of
// that list, so each build's service worker caches exactly its own files. Bundled models under public/models are
// left out: weights belong to the IndexedDB cache, not to the shell.

import { createHash } from 'node:crypto';
import { readdirSync, statSync } from 'node:fs';
import { join, relative, resolve, sep } from 'node:path';
import { build } from 'esbuild';
import type { Plugin, ResolvedConfig } from 'vite';

function publicFiles(dir: string): string[] {
  const out: string[] = [];
  const walk = (d: string) => {
    for (const name of readdirSync(d)) {
      const full = join(d, name);
      if (statSync(full).isDirectory()) walk(full);
      else out.push(relative(dir, full).split(sep).join('/'));
    }
  };
  walk(dir);
  return out;
}

export function serviceWorkerPlugin(entry: string): Plugin {
  let config: ResolvedConfig;
  return {
    name: 'framepack-service-worker',
    apply: 'build',
    configResolved(c) {
      config = c;
    },
    async writeBundle(_options, bundle) {
      const outDir = resolve(config.root, config.build.outDir);
      const fromPublic = config.publicDir ? publicFiles(config.publicDir).filter((f) => !f.startsWith('models/')) : [];
      const files = [...new Set([...Object.keys(bundle), ...fromPublic])].filter((f) => !f.endsWith('.map') && f !== 'sw.js').sort();
      const version = createHash('sha256').update(files.map((f) => `${f}:${statSync(join(outDir, f)).size}`).join('\n')).digest('hex').slice(0, 12);
      await build({
        entryPoints: [resolve(config.root, entry)],
        bundle: true,
        format: 'iife',
        target: 'es2022',
        outfile: join(outDir, 'sw.js'),
        define: { __PRECACHE__: JSON.stringify(['./', ...files.filter((f) => f !== 'index.html')]), __VERSION__: JSON.stringify(version) },
        logLevel: 'warning',
      });
    },
  };
}

// The page's bundle must not carry the worker's code (onnxruntime-web, the downloader, WebCodecs plumbing): the UI
// may take only types from src/worker/, src/runtime/, src/weights/ and src/video/, and run-time values only from
// neutral modules (src/errors/, src/pipeline/ …). `import { type X }` counts as a run-time import: with
// verbatimModuleSyntax it still loads the module. The worker itself is started from a URL, not imported.

import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';

const ROOT = join(import.meta.dirname, '../..');
const UI = join(ROOT, 'src/ui');
const FORBIDDEN = ['src/worker/', 'src/runtime/', 'src/weights/', 'src/video/'];

function uiFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((d) => {
    const p = join(dir, d.name);
    if (d.isDirectory()) return uiFiles(p);
    return /\.(ts|svelte)$/.test(d.name) ? [p] : [];
  });
}

interface ImportRef { specifier: string; typeOnly: boolean; statement: string }

/** Static imports and re-exports (with `from`), side-effect imports and dynamic import() calls of one file. */
function importsOf(text: string): ImportRef[] {
  const refs: ImportRef[] = [];
  for (const m of text.matchAll(/(?:^|[;\n])\s*((import|export)\s+(type\s+)?[^'";]*?\bfrom\s*['"]([^'"]+)['"])/g)) {
    refs.push({ specifier: m[4], typeOnly: !!m[3], statement: m[1] });
  }
  for (const m of text.matchAll(/(?:^|[;\n])\s*(import\s*['"]([^'"]+)['"])/g)) refs.push({ specifier: m[2], typeOnly: false, statement: m[1] });
  for (const m of text.matchAll(/\bimport\s*\(\s*['"]([^'"]+)['"]\s*\)/g)) refs.push({ specifier: m[1], typeOnly: false, statement: m[0] });
  return refs;
}

/** The project-relative path a relative specifier names, or null for a package. */
function target(from: string, specifier: string): string | null {
  if (!specifier.startsWith('.')) return null;
  return relative(ROOT, resolve(dirname(from), specifier)).split('\\').join('/');
}

const forbidden = (path: string) => FORBIDDEN.some((f) => path.startsWith(f));

describe('the UI imports no worker-side code', () => {
  it('finds every kind of import', () => {
    const refs = importsOf(`import a from './a.ts';\nimport type { B } from '../worker/b.ts';\nimport {\n  c,\n  type D,\n} from '../weights/c.ts';\nexport { e } from './e.ts';\nexport type { F } from './f.ts';\nimport './g.css';\nconst h = await import('../video/h.ts');\n  import { i } from '../runtime/i.ts';`);
    expect(refs.map((r) => [r.specifier, r.typeOnly])).toEqual([
      ['./a.ts', false], ['../worker/b.ts', true], ['../weights/c.ts', false], ['./e.ts', false], ['./f.ts', true],
      ['../runtime/i.ts', false], ['./g.css', false], ['../video/h.ts', false],
    ]);
  });

  it('src/ui/ takes only types from src/worker/, src/runtime/, src/weights/ and src/video/', () => {
    const files = uiFiles(UI);
    expect(files.some((f) => f.endsWith('.svelte'))).toBe(true);
    const bad: string[] = [];
    for (const file of files) {
      for (const ref of importsOf(readFileSync(file, 'utf8'))) {
        const to = target(file, ref.specifier);
        if (to && forbidden(to) && !ref.typeOnly) bad.push(`${relative(ROOT, file)}: ${ref.statement.replace(/\s+/g, ' ')}`);
      }
    }
    expect(bad).toEqual([]);
  });

  it('nothing the UI loads at run time loads them either', () => {
    // Follow run-time imports from every UI file through the project; none may reach the four folders.
    const seen = new Map<string, string>(); // file → the file that first imported it
    const queue = uiFiles(UI).map((f) => relative(ROOT, f));
    for (const f of queue) seen.set(f, '(ui)');
    const bad: string[] = [];
    while (queue.length) {
      const file = queue.shift()!;
      const abs = join(ROOT, file);
      if (!existsSync(abs) || !/\.(ts|svelte)$/.test(file)) continue;
      for (const ref of importsOf(readFileSync(abs, 'utf8'))) {
        if (ref.typeOnly) continue;
        const to = target(abs, ref.specifier);
        if (!to || seen.has(to)) continue;
        seen.set(to, file);
        if (forbidden(to)) bad.push(`${to} (imported by ${file})`);
        else queue.push(to);
      }
    }
    expect(bad).toEqual([]);
    expect([...seen.keys()].some((f) => f.startsWith('src/errors/'))).toBe(true);
  });
});

// A hash of a folder's files (names and bytes, in sorted order), for the build to tell the app which bundled tiny
// model it ships: the app's cache keys the tiny model by it, so a regenerated model is downloaded again instead of
// an older copy in IndexedDB being reused under the same URL.

import { createHash } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { join, relative } from 'node:path';

export function folderContentHash(root: string): string {
  const hash = createHash('sha256');
  const walk = (dir: string): string[] =>
    readdirSync(dir, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? walk(join(dir, e.name)) : [join(dir, e.name)]));
  for (const file of walk(root).sort()) {
    hash.update(relative(root, file));
    hash.update('\0');
    hash.update(readFileSync(file));
  }
  return hash.digest('hex').slice(0, 16);
}

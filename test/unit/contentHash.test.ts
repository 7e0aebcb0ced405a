// The build keys the app's cache of the bundled tiny model by this hash (vite.config.ts), so it must change with any
// byte or name of the folder and only then.

import { describe, expect, it } from 'vitest';
import { mkdtempSync, mkdirSync, renameSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { folderContentHash } from '../../scripts/contentHash.ts';

describe('folderContentHash', () => {
  it('is stable for the same files and changes with a byte, a name or a new file', () => {
    const dir = mkdtempSync(join(tmpdir(), 'content-hash-'));
    mkdirSync(join(dir, 'sub'));
    writeFileSync(join(dir, 'a.json'), '{"x": 1}');
    writeFileSync(join(dir, 'sub', 'b.bin'), Buffer.from([1, 2, 3]));
    const first = folderContentHash(dir);
    expect(folderContentHash(dir)).toBe(first);
    writeFileSync(join(dir, 'sub', 'b.bin'), Buffer.from([1, 2, 4]));
    const byte = folderContentHash(dir);
    expect(byte).not.toBe(first);
    renameSync(join(dir, 'sub', 'b.bin'), join(dir, 'sub', 'c.bin'));
    const name = folderContentHash(dir);
    expect(name).not.toBe(byte);
    writeFileSync(join(dir, 'new.txt'), '');
    expect(folderContentHash(dir)).not.toBe(name);
  });
});

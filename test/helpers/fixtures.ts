// Reads the reference fixtures (../shared/fixtures/reference, or FRAMEPACK_FIXTURES) through the same case
// reader check-reference uses. A missing directory is a loud failure, not a skip.

import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { readCaseFile, listCaseFiles, type CaseFile } from '../../src/cli/caseFile.ts';

const repoRoot = resolve(import.meta.dirname, '..', '..');

export function fixturesDir(): string {
  const dir = process.env.FRAMEPACK_FIXTURES ?? resolve(repoRoot, '..', 'shared', 'fixtures', 'reference');
  if (!existsSync(dir)) {
    throw new Error(`Reference fixtures not found at ${dir}. Check out ../shared beside the repository or set FRAMEPACK_FIXTURES.`);
  }
  return dir;
}

export type FixtureFile = CaseFile;

export function loadFixture(fileOrPath: string): Promise<FixtureFile> {
  return readCaseFile(fileOrPath.includes('/') ? fileOrPath : join(fixturesDir(), fileOrPath));
}

export const listCases = listCaseFiles;

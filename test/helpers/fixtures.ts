// Reads the reference fixtures (test/fixtures/reference, or FRAMEPACK_FIXTURES) through the same case
// reader check-reference uses. A missing directory is a loud failure, not a skip.

import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fixturesDirIn, readCaseFile, listCaseFiles, type CaseFile } from '../../src/cli/caseFile.ts';

const repoRoot = resolve(import.meta.dirname, '..', '..');

export function fixturesDir(): string {
  const dir = fixturesDirIn(repoRoot);
  if (!existsSync(dir)) throw new Error(`Reference fixtures not found at ${dir}: FRAMEPACK_FIXTURES points nowhere, or the clone lacks test/fixtures/reference.`);
  return dir;
}

export type FixtureFile = CaseFile;

export function loadFixture(fileOrPath: string): Promise<FixtureFile> {
  return readCaseFile(fileOrPath.includes('/') ? fileOrPath : join(fixturesDir(), fileOrPath));
}

export const listCases = listCaseFiles;

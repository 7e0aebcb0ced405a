// Reads the reference fixtures (../shared/fixtures/reference, or FRAMEPACK_FIXTURES) through the same
// safetensors reader the product uses for real checkpoints. A missing directory is a loud failure, not a skip.

import { existsSync, readdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { readHeader, readTensorBytes, viewAs, type TensorData } from '../../src/weights/safetensors.ts';
import { nodeFileSource } from '../../src/weights/nodeFileSource.ts';
import type { Tensor } from '../../src/pipeline/tensor.ts';

const repoRoot = resolve(import.meta.dirname, '..', '..');

export function fixturesDir(): string {
  const dir = process.env.FRAMEPACK_FIXTURES ?? resolve(repoRoot, '..', 'shared', 'fixtures', 'reference');
  if (!existsSync(dir)) {
    throw new Error(`Reference fixtures not found at ${dir}. Check out ../shared beside the repository or set FRAMEPACK_FIXTURES.`);
  }
  return dir;
}

export interface FixtureFile {
  path: string;
  /** __metadata__ with every value JSON-decoded. */
  meta: Record<string, unknown>;
  names: string[];
  raw(name: string): TensorData;
  shape(name: string): number[];
  /** An F32 tensor as a pipeline Tensor. */
  f32(name: string): Tensor;
  /** An I64 tensor as plain numbers. */
  ints(name: string): number[];
  bools(name: string): boolean[];
}

export async function loadFixture(fileOrPath: string): Promise<FixtureFile> {
  const path = fileOrPath.includes('/') ? fileOrPath : join(fixturesDir(), fileOrPath);
  const src = nodeFileSource(path);
  const header = await readHeader(src);
  const data = new Map<string, TensorData>();
  for (const t of header.tensors) data.set(t.name, viewAs(t.dtype, await readTensorBytes(src, t)));
  const meta: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(header.metadata)) {
    try { meta[k] = JSON.parse(v); } catch { meta[k] = v; }
  }
  const get = (name: string) => {
    const d = data.get(name);
    if (!d) throw new Error(`${path} has no tensor ${name}`);
    return d;
  };
  return {
    path,
    meta,
    names: header.tensors.map((t) => t.name),
    raw: get,
    shape: (name) => header.byName.get(name)!.shape,
    f32: (name) => {
      const d = get(name);
      if (!(d instanceof Float32Array)) throw new Error(`${name} is not F32`);
      return { data: d, shape: header.byName.get(name)!.shape };
    },
    ints: (name) => Array.from(get(name) as BigInt64Array, Number),
    bools: (name) => Array.from(get(name) as Uint8Array, (b) => b !== 0),
  };
}

/** Every case file (safetensors whose metadata has `case`) directly in a directory. */
export async function listCases(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const f of readdirSync(dir).sort()) {
    if (!f.endsWith('.safetensors')) continue;
    const h = await readHeader(nodeFileSource(join(dir, f)));
    if ('case' in h.metadata) out.push(join(dir, f));
  }
  return out;
}

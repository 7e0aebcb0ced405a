// A reference case file (test/fixtures/reference/README.md, "Case schema"): a safetensors file whose metadata has
// `case`, read whole (cases are small) through the product's own safetensors reader. Used by check-reference and
// by the tests, so both read cases the same way.

import { readdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { readHeader, readTensorBytes, viewAs, type TensorData } from '../weights/safetensors.ts';
import { nodeFileSource } from '../weights/nodeFileSource.ts';
import type { Tensor } from '../pipeline/tensor.ts';

export interface CaseFile {
  path: string;
  /** __metadata__ with every value JSON-decoded (strings that are not JSON stay strings). */
  meta: Record<string, unknown>;
  names: string[];
  has(name: string): boolean;
  raw(name: string): TensorData;
  shape(name: string): number[];
  /** An F32 tensor as a pipeline Tensor. */
  f32(name: string): Tensor;
  /** An I64 tensor as plain numbers. */
  ints(name: string): number[];
  bools(name: string): boolean[];
}

/** Where the reference fixtures are: FRAMEPACK_FIXTURES, or the repository's own test/fixtures/reference under `root`. */
export function fixturesDirIn(root: string): string {
  return process.env.FRAMEPACK_FIXTURES ?? resolve(root, 'test', 'fixtures', 'reference');
}

export async function readCaseFile(path: string): Promise<CaseFile> {
  const src = nodeFileSource(path);
  const header = await readHeader(src);
  const data = new Map<string, TensorData>();
  for (const t of header.tensors) data.set(t.name, viewAs(t.dtype, await readTensorBytes(src, t)));
  const meta: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(header.metadata)) {
    try {
      meta[k] = JSON.parse(v);
    } catch {
      meta[k] = v;
    }
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
    has: (name) => data.has(name),
    raw: get,
    shape: (name) => header.byName.get(name)!.shape,
    f32: (name) => {
      const d = get(name);
      if (!(d instanceof Float32Array)) throw new Error(`${path}: ${name} is not F32`);
      return { data: d, shape: header.byName.get(name)!.shape };
    },
    ints: (name) => Array.from(get(name) as BigInt64Array, Number),
    bools: (name) => Array.from(get(name) as Uint8Array, (b) => b !== 0),
  };
}

/** Every case file (safetensors whose metadata has `case`) directly in a directory, sorted by name. */
export async function listCaseFiles(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const f of readdirSync(dir).sort()) {
    if (!f.endsWith('.safetensors')) continue;
    const h = await readHeader(nodeFileSource(join(dir, f)));
    if ('case' in h.metadata) out.push(join(dir, f));
  }
  return out;
}

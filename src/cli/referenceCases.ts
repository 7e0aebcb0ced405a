// Runs one reference case (test/fixtures/reference/README.md, "Case schema") through the product's own code path and
// measures its error per expected tensor. check-reference and the parity tests both call this, so a case passes
// in CI exactly when the code a user runs reproduces the reference.

import { dirname, join, basename } from 'node:path';
import { readCaseFile, type CaseFile } from './caseFile.ts';
import { tensorError, type TensorError } from '../pipeline/tensorError.ts';
import { fluxMu, fluxSigmas } from '../pipeline/sigmas.ts';
import { TorchGenerator } from '../pipeline/torchRandom.ts';
import type { ExecutionProvider } from '../runtime/ort.ts';

export interface CaseOptions {
  provider: ExecutionProvider;
  /** Activation dtype of the graphs; fixtures are recorded in float32. */
  dtype: 'float32' | 'float16';
  /** 4-bit large linears. */
  quantized: boolean;
}

export interface TensorResult extends TensorError {
  tensor: string;
}

export interface CaseResult {
  file: string;
  kind: string;
  results: TensorResult[];
  /** The README's pass line for this kind of case. */
  bar: number;
  pass: boolean;
  /** Why a case was not run (unknown kind, or not supported for these options). */
  skipped?: string;
}

/** Pass lines from the fixtures README: single networks and functions 1e-4, multi-step cases 1e-3. */
export function barFor(kind: string): number {
  return kind === 'sampler' || kind === 'pipeline' ? 1e-3 : 1e-4;
}

type Handler = (c: CaseFile, dir: string, options: CaseOptions) => Promise<TensorResult[]>;

const measure = (tensor: string, got: ArrayLike<number>, want: ArrayLike<number>): TensorResult => ({ tensor, ...tensorError(got, want) });

/** `sN_tSEQ` tables of get_flux_sigmas_from_mu(N, calculate_flux_mu(SEQ)). */
const sigmasCase: Handler = async (c) =>
  c.names.map((name) => {
    const m = /^s(\d+)_t(\d+)$/.exec(name);
    if (!m) throw new Error(`${c.path}: tensor ${name} is not of the form sN_tSEQ`);
    return measure(name, fluxSigmas(Number(m[1]), fluxMu(Number(m[2]))), c.f32(name).data);
  });

/**
 * torch.randn fixtures: `seed{S}_n{N}` is a draw of N values; `seed{S}_first`, `_first_last` and `_second` are the
 * first and last values of a first draw of the metadata's `shape` and the first of a second draw.
 */
const torchRandnCase: Handler = async (c) => {
  const out: TensorResult[] = [];
  const draws = new Map<string, Float32Array[]>();
  const drawsFor = (seed: string): Float32Array[] => {
    let d = draws.get(seed);
    if (!d) {
      const g = new TorchGenerator(BigInt(seed));
      const shape = c.meta.shape as number[];
      d = [g.randn(shape).data, g.randn(shape).data];
      draws.set(seed, d);
    }
    return d;
  };
  for (const name of c.names) {
    const want = c.f32(name).data;
    let m = /^seed(\d+)_n(\d+)$/.exec(name);
    if (m) {
      out.push(measure(name, new TorchGenerator(BigInt(m[1])).randn([Number(m[2])]).data, want));
      continue;
    }
    m = /^seed(\d+)_(first|first_last|second)$/.exec(name);
    if (!m) throw new Error(`${c.path}: tensor ${name} is not a known torch_randn record`);
    const [first, second] = drawsFor(m[1]);
    const got = m[2] === 'first' ? first.subarray(0, want.length) : m[2] === 'second' ? second.subarray(0, want.length) : first.subarray(first.length - want.length);
    out.push(measure(name, got, want));
  }
  return out;
};

const handlers: Record<string, Handler> = {
  sigmas: sigmasCase,
  torch_randn: torchRandnCase,
};

/** Registers the handler for a case kind (the network runners add theirs). */
export function registerCaseHandler(kind: string, handler: Handler): void {
  handlers[kind] = handler;
}

export async function runCase(path: string, options: CaseOptions): Promise<CaseResult> {
  const c = await readCaseFile(path);
  const kind = String(c.meta.case);
  const handler = handlers[kind];
  const file = basename(path);
  if (!handler) return { file, kind, results: [], bar: barFor(kind), pass: false, skipped: `no runner for case kind '${kind}'` };
  const results = await handler(c, dirname(path), options);
  const bar = barFor(kind);
  return { file, kind, results, bar, pass: results.length > 0 && results.every((r) => r.rel <= bar) };
}

/** Resolves a case's `weights` entry (a folder name or a list of them) beside the case file. */
export function weightFolders(c: CaseFile, dir: string): string[] {
  const w = c.meta.weights;
  const list = Array.isArray(w) ? (w as string[]) : w ? [String(w)] : [];
  return list.map((f) => join(dir, f));
}

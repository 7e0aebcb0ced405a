// The stored format: what the app keeps of a checkpoint, converted once as its bytes arrive, so a job only reads.
// Each tensor a network binds is stored in the format its binding takes (the networks' builders decide which,
// src/worker/storedFormats.ts; nothing here names a tensor):
//   - 4-bit (a binding with layout 'q4'): `NAME.q4` U8 [n, ⌈k/32⌉, 16], the MatMulNBits nibbles (weights/quantize.ts),
//     and `NAME.q4_scales` F16 [n, ⌈k/32⌉], one scale per block of 32;
//   - float (every other binding): `NAME` as F16, or as F32 when fp16 cannot hold it (a finite value beyond ±65504,
//     checked on the tensor's own values: such tensors are listed, see PackPartEntry.keptF32); integer tensors as
//     they are;
//   - tensors no binding reads (Llama's last two layers and final norm, SigLIP's pooling head) are not stored.
// The same layout serves the browser's store (weights/weightCache.ts, read back by weights/storeSource.ts) and a pack
// of files (`npm run convert`: safetensors files per part plus manifest.json) that any static server can host.
// The format carries a version (PACK_VERSION): in every pack file's safetensors metadata, in the manifest and in
// each stored model's record, and in the fingerprint a stored model is keyed by, so weights of another version are
// converted again and never read as if they were this one (weights/checkpoint.ts refuses them).

import { PackFormatError, PackVersionError } from '../errors/weights.ts';
import { f32ToF16Bits } from './dtypes.ts';
import { q4Bytes, quantizeRowsInto, Q4_BLOCK } from './quantize.ts';
import { DTYPE_BYTES, viewAs, type SafetensorsDType, type TensorInfo } from './safetensors.ts';
import type { ConvertedTensor } from './weightCache.ts';

export const PACK_FORMAT = 'framepack-web-pack';
/** Version 1: 4-bit blocks + fp16 scales, fp16 floats (fp32 where fp16 overflows), unbound tensors left out. */
export const PACK_VERSION = 1;
/** The safetensors `__metadata__` key holding the version in a pack file (and a synthesized stored file). */
export const PACK_METADATA_KEY = 'framepack_web_pack';
export const Q4_BLOCKS_SUFFIX = '.q4';
export const Q4_SCALES_SUFFIX = '.q4_scales';
/** Largest finite fp16. */
export const FP16_MAX = 65504;

/** How one source tensor is stored: 4-bit for a [n, k] Linear weight, or float (fp16, fp32 when it must). */
export type StoredFormat = { kind: 'q4'; n: number; k: number } | { kind: 'float' };

/** A stored model's (or a pack part's) fingerprint: its source and the format version, so a version change converts again. */
export function packFingerprint(source: string): string {
  return `${source}#${PACK_FORMAT}-v${PACK_VERSION}`;
}

/** The version a safetensors file's metadata declares; null for a raw checkpoint (no such key). */
export function packVersionOf(metadata: Record<string, string>): number | null {
  const v = metadata[PACK_METADATA_KEY];
  if (v === undefined) return null;
  const n = Number(v);
  return Number.isInteger(n) && n >= 0 ? n : -1;
}

/** Throws PackVersionError unless `found` is this app's version. */
export function checkPackVersion(where: string, found: number | null | undefined): void {
  if (found !== PACK_VERSION) throw new PackVersionError(where, found ?? 0, PACK_VERSION);
}

const FLOAT: ReadonlySet<SafetensorsDType> = new Set(['F16', 'BF16', 'F32', 'F64']);
const numel = (shape: number[]) => shape.reduce((a, b) => a * b, 1);

/** Bytes a tensor takes once stored (fp16 for floats: one that must stay fp32 takes twice that, found only when converted). */
export function storedBytes(info: TensorInfo, format: StoredFormat): number {
  if (format.kind === 'q4') return q4Bytes(format.n, format.k, 2);
  return FLOAT.has(info.dtype) ? numel(info.shape) * 2 : info.end - info.begin;
}

/** `count` values of a float tensor from element `first` on, widened to float32 into `out`. */
function widen(dtype: SafetensorsDType, data: ArrayLike<number>, first: number, count: number, out: Float32Array): void {
  if (dtype === 'BF16') {
    const bits = new Uint32Array(out.buffer, out.byteOffset, count);
    for (let i = 0; i < count; i++) bits[i] = (data[first + i] as number) << 16;
  } else if (dtype === 'F16') {
    for (let i = 0; i < count; i++) out[i] = F16_TABLE[data[first + i] as number];
  } else {
    for (let i = 0; i < count; i++) out[i] = data[first + i] as number;
  }
}

/** fp16 bits → float32, all 65536 of them (exact). */
const F16_TABLE: Float32Array = (() => {
  const t = new Float32Array(65536);
  for (let h = 0; h < 65536; h++) {
    const sign = h & 0x8000 ? -1 : 1;
    const exp = (h >>> 10) & 0x1f;
    const frac = h & 0x3ff;
    t[h] = exp === 0 ? sign * frac * 2 ** -24 : exp === 31 ? (frac ? NaN : sign * Infinity) : sign * (1 + frac / 1024) * 2 ** (exp - 15);
  }
  return t;
})();

const bytesOf = (a: Uint16Array | Float32Array | Uint8Array) => new Uint8Array(a.buffer, a.byteOffset, a.byteLength);

/** A [n, k] float weight in 4-bit: blocks and fp16 scales, quantized a few rows at a time (no float32 copy of the whole). */
function toQ4(info: TensorInfo, bytes: Uint8Array, n: number, k: number): ConvertedTensor[] {
  if (!FLOAT.has(info.dtype)) throw new Error(`${info.name}: a ${info.dtype} tensor cannot be stored in 4-bit.`);
  if (numel(info.shape) !== n * k) throw new Error(`${info.name}: stored shape [${info.shape}] is not the [${n}, ${k}] its 4-bit binding declares.`);
  const data = viewAs(info.dtype, bytes) as ArrayLike<number>;
  const kb = Math.ceil(k / Q4_BLOCK);
  const blocks = new Uint8Array(n * kb * (Q4_BLOCK / 2));
  const scales = new Float32Array(n * kb);
  const rowsPerStep = Math.max(1, Math.floor(65536 / k));
  const rows = new Float32Array(rowsPerStep * k);
  for (let r = 0; r < n; r += rowsPerStep) {
    const count = Math.min(rowsPerStep, n - r);
    widen(info.dtype, data, r * k, count * k, rows);
    quantizeRowsInto(rows, count, k, blocks, scales, r);
  }
  const half = new Uint16Array(scales.length);
  for (let i = 0; i < scales.length; i++) half[i] = f32ToF16Bits(scales[i]);
  return [
    { name: `${info.name}${Q4_BLOCKS_SUFFIX}`, dtype: 'U8', shape: [n, kb, Q4_BLOCK / 2], data: blocks },
    { name: `${info.name}${Q4_SCALES_SUFFIX}`, dtype: 'F16', shape: [n, kb], data: bytesOf(half) },
  ];
}

/** A float tensor as fp16, or as fp32 when a finite value lies beyond fp16's range (then `keptF32` is true). */
function toFloat(info: TensorInfo, bytes: Uint8Array): ConvertedTensor {
  const base = { name: info.name, shape: info.shape };
  if (info.dtype === 'F16') return { ...base, dtype: 'F16', data: bytes };
  if (!FLOAT.has(info.dtype)) return { ...base, dtype: info.dtype, data: bytes };
  const data = viewAs(info.dtype, bytes) as ArrayLike<number>;
  const n = numel(info.shape);
  const out = new Uint16Array(n);
  const step = 65536;
  const scratch = new Float32Array(step);
  for (let at = 0; at < n; at += step) {
    const count = Math.min(step, n - at);
    widen(info.dtype, data, at, count, scratch);
    for (let i = 0; i < count; i++) {
      const h = f32ToF16Bits(scratch[i]);
      // The range check: a finite value that rounds to ±Inf in fp16 (|x| ≥ 65520) keeps the whole tensor at fp32.
      if ((h & 0x7fff) === 0x7c00 && Number.isFinite(scratch[i])) return keptF32(info, bytes);
      out[at + i] = h;
    }
  }
  return { ...base, dtype: 'F16', data: bytesOf(out) };
}

/** The tensor at float32 (bf16 and fp16 widen exactly): what a tensor fp16 cannot hold is stored as. */
function keptF32(info: TensorInfo, bytes: Uint8Array): ConvertedTensor {
  if (info.dtype === 'F32') return { name: info.name, dtype: 'F32', shape: info.shape, data: bytes };
  const data = viewAs(info.dtype, bytes) as ArrayLike<number>;
  const out = new Float32Array(numel(info.shape));
  widen(info.dtype, data, 0, out.length, out);
  return { name: info.name, dtype: 'F32', shape: info.shape, data: bytesOf(out) };
}

/** One source tensor in its stored format (see the header). */
export function convertTensor(info: TensorInfo, bytes: Uint8Array, format: StoredFormat): ConvertedTensor[] {
  return format.kind === 'q4' ? toQ4(info, bytes, format.n, format.k) : [toFloat(info, bytes)];
}

/** Whether a converted float tensor had to stay float32 although its source was 16-bit or the policy asked fp16. */
export function isKeptF32(out: ConvertedTensor): boolean {
  return out.dtype === 'F32' && !out.name.endsWith(Q4_SCALES_SUFFIX);
}

/** A pack's tensors are already in the stored format: stored as they are. */
export function passThrough(info: TensorInfo, bytes: Uint8Array): ConvertedTensor[] {
  if (!(info.dtype in DTYPE_BYTES)) throw new Error(`${info.name}: unknown dtype ${info.dtype}`);
  return [{ name: info.name, dtype: info.dtype, shape: info.shape, data: bytes }];
}

// ───────────────────────────── a pack of files ─────────────────────────────

/** One part (a network or a tokenizer folder) of a pack, as manifest.json lists it. */
export interface PackPartEntry {
  /** What it was converted from (a URL or a folder). */
  source: string;
  /** The safetensors name the folder answers to (`model.safetensors`; shards through its .index.json); null: files only. */
  weights: string | null;
  config: string | null;
  /** Files stored as they are (tokenizers, preprocessor settings). */
  files: string[];
  /** Stored tensors (a 4-bit weight counts twice: blocks and scales) and their bytes. */
  tensors: number;
  bytes: number;
  /** Float tensors stored at fp32 because fp16 would overflow. */
  keptF32: string[];
  /** Source tensors no network binds, not stored. */
  omitted: string[];
}

/** manifest.json of a pack: the format and version, the models it serves (their framepack.json) and its parts. */
export interface PackManifest {
  format: typeof PACK_FORMAT;
  version: number;
  what?: string;
  /** Model id ('tiny', 'framepack', 'framepack-f1', or the name of a local model) → its framepack.json, components naming part folders. */
  models: Record<string, Record<string, unknown>>;
  /** Part folder (relative to the manifest) → what it holds. */
  parts: Record<string, PackPartEntry>;
  bytes: number;
}

export const PACK_MANIFEST = 'manifest.json';

/** Validates a parsed manifest.json. Throws PackFormatError (not a pack) or PackVersionError (another version). */
export function parsePackManifest(json: unknown, where: string): PackManifest {
  const m = json as Partial<PackManifest> | null;
  if (!m || typeof m !== 'object' || m.format !== PACK_FORMAT) throw new PackFormatError(where, `${PACK_MANIFEST} does not say "format": "${PACK_FORMAT}"`);
  if (typeof m.version !== 'number') throw new PackFormatError(where, `${PACK_MANIFEST} has no "version"`);
  checkPackVersion(where, m.version);
  if (!m.models || typeof m.models !== 'object' || !m.parts || typeof m.parts !== 'object') throw new PackFormatError(where, `${PACK_MANIFEST} lists no "models" or no "parts"`);
  return m as PackManifest;
}

// The safetensors format, read from any byte source: a local file, a Blob, or a server with Range requests.
// One reader serves the test fixtures, the bundled tiny model and the real sharded checkpoints, so it never
// needs the whole file in memory: the header is read first, then each tensor's bytes on demand or in order.

import { SafetensorsFormatError } from '../errors/weights.ts';
import { bf16ToF32, f16ToF32 } from './dtypes.ts';

export type SafetensorsDType = 'F64' | 'F32' | 'F16' | 'BF16' | 'I64' | 'I32' | 'I16' | 'I8' | 'U8' | 'BOOL';

export const DTYPE_BYTES: Record<SafetensorsDType, number> = {
  F64: 8, F32: 4, F16: 2, BF16: 2, I64: 8, I32: 4, I16: 2, I8: 1, U8: 1, BOOL: 1,
};

export interface TensorInfo {
  name: string;
  dtype: SafetensorsDType;
  shape: number[];
  /** Absolute byte offsets in the file (header included), end exclusive. */
  begin: number;
  end: number;
}

export interface SafetensorsHeader {
  /** Tensors in file order (ascending offset). */
  tensors: TensorInfo[];
  byName: Map<string, TensorInfo>;
  /** `__metadata__`, string to string as the format defines it. */
  metadata: Record<string, string>;
  /** Where the data section starts. */
  dataOffset: number;
}

/** Random access to the bytes of one file. Implementations: Node file, Blob, HTTP Range. */
export interface ByteSource {
  readonly name: string;
  size(): Promise<number>;
  read(offset: number, length: number): Promise<Uint8Array>;
}

const MAX_HEADER_BYTES = 100 * 1024 * 1024; // the format's own limit

/** Reads and validates the header. Throws SafetensorsFormatError on anything malformed. */
export async function readHeader(src: ByteSource): Promise<SafetensorsHeader> {
  const fileSize = await src.size();
  if (fileSize < 8) throw new SafetensorsFormatError(src.name, `only ${fileSize} bytes`);
  const lenBytes = await src.read(0, 8);
  const headerLen = Number(new DataView(lenBytes.buffer, lenBytes.byteOffset, 8).getBigUint64(0, true));
  if (headerLen > MAX_HEADER_BYTES || 8 + headerLen > fileSize) {
    throw new SafetensorsFormatError(src.name, `header length ${headerLen} does not fit a ${fileSize}-byte file`);
  }
  const json = new TextDecoder().decode(await src.read(8, headerLen));
  return parseHeaderJson(src.name, json, 8 + headerLen, fileSize);
}

export function parseHeaderJson(file: string, json: string, dataOffset: number, fileSize: number): SafetensorsHeader {
  let raw: Record<string, unknown>;
  try {
    raw = JSON.parse(json) as Record<string, unknown>;
  } catch {
    throw new SafetensorsFormatError(file, 'header is not JSON');
  }
  const metadata = (raw.__metadata__ ?? {}) as Record<string, string>;
  const tensors: TensorInfo[] = [];
  for (const [name, value] of Object.entries(raw)) {
    if (name === '__metadata__') continue;
    const v = value as { dtype: string; shape: number[]; data_offsets: [number, number] };
    if (!(v.dtype in DTYPE_BYTES)) throw new SafetensorsFormatError(file, `tensor ${name} has unknown dtype ${v.dtype}`);
    const dtype = v.dtype as SafetensorsDType;
    const count = v.shape.reduce((a, b) => a * b, 1);
    const [b, e] = v.data_offsets;
    if (e - b !== count * DTYPE_BYTES[dtype] || dataOffset + e > fileSize) {
      throw new SafetensorsFormatError(file, `tensor ${name} has offsets [${b}, ${e}) inconsistent with its shape or the file size`);
    }
    tensors.push({ name, dtype, shape: v.shape, begin: dataOffset + b, end: dataOffset + e });
  }
  tensors.sort((a, b) => a.begin - b.begin);
  return { tensors, byName: new Map(tensors.map((t) => [t.name, t])), metadata, dataOffset };
}

export type TensorData = Float32Array | Float64Array | BigInt64Array | Int32Array | Int16Array | Int8Array | Uint8Array | Uint16Array;

/**
 * Typed view of a tensor's raw bytes, in its stored dtype (F16/BF16 as Uint16Array, BOOL as Uint8Array).
 * Copies when the bytes are not aligned for the element type.
 */
export function viewAs(dtype: SafetensorsDType, bytes: Uint8Array): TensorData {
  const width = DTYPE_BYTES[dtype];
  const aligned = bytes.byteOffset % width === 0 ? bytes : bytes.slice();
  const { buffer, byteOffset, byteLength } = aligned;
  const n = byteLength / width;
  switch (dtype) {
    case 'F64': return new Float64Array(buffer, byteOffset, n);
    case 'F32': return new Float32Array(buffer, byteOffset, n);
    case 'F16': case 'BF16': return new Uint16Array(buffer, byteOffset, n);
    case 'I64': return new BigInt64Array(buffer, byteOffset, n);
    case 'I32': return new Int32Array(buffer, byteOffset, n);
    case 'I16': return new Int16Array(buffer, byteOffset, n);
    case 'I8': return new Int8Array(buffer, byteOffset, n);
    case 'U8': case 'BOOL': return new Uint8Array(buffer, byteOffset, n);
  }
}

/** Any floating dtype widened to float32 (F16 and BF16 decoded exactly; F64 rounded). */
export function toFloat32(dtype: SafetensorsDType, bytes: Uint8Array): Float32Array {
  const v = viewAs(dtype, bytes);
  if (dtype === 'F32') return v as Float32Array;
  if (dtype === 'F16') return f16ToF32(v as Uint16Array);
  if (dtype === 'BF16') return bf16ToF32(v as Uint16Array);
  if (dtype === 'F64') return Float32Array.from(v as Float64Array);
  throw new Error(`toFloat32: ${dtype} is not a floating-point dtype`);
}

/** Reads one tensor's bytes. */
export async function readTensorBytes(src: ByteSource, info: TensorInfo): Promise<Uint8Array> {
  return src.read(info.begin, info.end - info.begin);
}

/**
 * Yields every tensor of a file in storage order while reading the file front to back in chunks of at most
 * `chunkBytes` (a tensor larger than a chunk is assembled from several reads). This is what lets conversion
 * stream a multi-gigabyte shard with bounded memory: at most one tensor plus one chunk is held at a time.
 */
export async function* streamTensors(
  src: ByteSource,
  header: SafetensorsHeader,
  chunkBytes = 64 * 1024 * 1024,
  signal?: AbortSignal,
): AsyncGenerator<{ info: TensorInfo; bytes: Uint8Array }> {
  let pending: Uint8Array = new Uint8Array(0); // bytes read ahead, starting at `pendingAt`
  let pendingAt = header.dataOffset;
  for (const info of header.tensors) {
    signal?.throwIfAborted();
    const length = info.end - info.begin;
    const out = new Uint8Array(length);
    let filled = 0;
    while (filled < length) {
      const want = info.begin + filled;
      const inPending = want - pendingAt;
      if (inPending >= 0 && inPending < pending.length) {
        const take = Math.min(pending.length - inPending, length - filled);
        out.set(pending.subarray(inPending, inPending + take), filled);
        filled += take;
      } else {
        const readLen = Math.min(chunkBytes, (await src.size()) - want);
        pending = await src.read(want, readLen);
        pendingAt = want;
        signal?.throwIfAborted();
      }
    }
    yield { info, bytes: out };
  }
}

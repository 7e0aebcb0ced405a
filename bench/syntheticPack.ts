// A real-size stored pack that never touches a disk, for the job bench: the model the real-size hub
// (scripts/realSizeHub.ts) serves, in the form `npm run convert` would store it — the same tensor names, the same
// formats (worker/storedFormats.ts decides them from the networks' builders), the same safetensors headers with the
// pack version — with every byte generated when the engine reads it. A GPU machine has 64 GiB of disk and a
// 10-minute command, and converting the 43 GB takes longer than that, so the job bench reads this instead and times
// conversion separately (bench/job.ts --convert).
//
// Values, at realistic scale and cheap enough to generate at several GB/s:
//   - 4-bit blocks: bytes taken from a 16 MiB pool of random bytes whose two nibbles are each uniform on 1…15 (so
//     q − 8 is uniform on −7…7, mean 0, standard deviation √(224/12) ≈ 4.32), at an offset given by the tensor's seed;
//   - their fp16 scales: the hub's standard deviation for the tensor over 4.32, times a per-block factor uniform on
//     0.75…1.25 — so the dequantized weight has about the hub's 1/√fan_in;
//   - floats: the hub's rule (its offset and scale for the tensor, uniform values) rounded to fp16.
// Scales and floats come from pools of 2²⁰ values, one per distinct distribution, read from an offset given by the
// tensor's seed: values repeat every 2²⁰ elements, which no timing or memory figure can see, and a read is a copy
// (the first version generated every value on read, at 0.1–0.2 GB/s, which the job's stages then paid for).

import { hubComponent, type ComponentName } from '../src/weights/huggingFace.ts';
import { Q4_BLOCKS_SUFFIX, Q4_SCALES_SUFFIX, type StoredFormat } from '../src/weights/pack.ts';
import { safetensorsHeader } from '../src/weights/packFiles.ts';
import { f32ToF16Bits } from '../src/weights/dtypes.ts';
import type { ByteSource } from '../src/weights/safetensors.ts';
import { CheckpointFileMissing } from '../src/errors/weights.ts';
import { hubModelPlan, HUB_NAMES, hubTransformer, modelSourceOf, type HubModelId } from '../src/worker/modelStore.ts';
import { NETWORKS, storedFormats, type NetworkComponent } from '../src/worker/storedFormats.ts';
import type { ModelSource } from '../src/worker/modelPackage.ts';
import type { FolderSource } from '../src/weights/checkpoint.ts';
import { fnv1a32, realSizeFiles, tensorElements, unitUniform, type HubTensor } from '../scripts/realSizeHub.ts';

const Q4_BLOCK = 32;
const NIBBLE_STD = Math.sqrt(224 / 12);
const POOL_BYTES = 16 * 2 ** 20;

/** Random bytes with both nibbles uniform on 1…15 (xorshift32; deterministic). */
const POOL: Uint8Array = (() => {
  const pool = new Uint8Array(POOL_BYTES);
  let x = 0x2545f491;
  for (let i = 0; i < POOL_BYTES; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    const u = x >>> 0;
    pool[i] = (1 + ((u & 0xffff) % 15)) | ((1 + ((u >>> 16) % 15)) << 4);
  }
  return pool;
})();

type Part = { kind: 'q4-blocks' | 'q4-scales' | 'float'; source: HubTensor; n: number; kb: number };

interface SynthTensor {
  name: string;
  dtype: 'U8' | 'F16';
  shape: number[];
  byteLength: number;
  part: Part;
  /** Absolute offsets in the file. */
  begin: number;
}

/** fp16 values for one distribution, made once and shared by the tensors that have it (cheap to read: a copy). */
const FLOAT_POOL = 2 ** 20;
const floatPools = new Map<string, Uint16Array>();

function floatPool(kind: 'q4-scales' | 'float', offset: number, scale: number): Uint16Array {
  const key = `${kind}:${offset}:${scale}`;
  let pool = floatPools.get(key);
  if (!pool) {
    pool = new Uint16Array(FLOAT_POOL);
    if (kind === 'q4-scales') {
      const base = scale / NIBBLE_STD;
      for (let j = 0; j < FLOAT_POOL; j++) pool[j] = f32ToF16Bits(base * (0.75 + 0.5 * unitUniform(0x5ca1e, j)));
    } else {
      pool = new Uint16Array(tensorElements({ name: key, dtype: 'F16', shape: [FLOAT_POOL], begin: 0, end: 0, seed: fnv1a32(key), offset, scale }, 0, FLOAT_POOL).buffer);
    }
    floatPools.set(key, pool);
  }
  return pool;
}

/** `out.length` bytes of `pool` from byte `at` on, wrapping around. */
function copyWrapped(pool: Uint8Array, at: number, out: Uint8Array): Uint8Array {
  let from = at % pool.length;
  for (let o = 0; o < out.length;) {
    const n = Math.min(out.length - o, pool.length - from);
    out.set(pool.subarray(from, from + n), o);
    o += n;
    from = 0;
  }
  return out;
}

/** Bytes [a, b) of one stored tensor: a window of its pool, starting where the tensor's seed says. */
function tensorBytes(t: SynthTensor, a: number, b: number): Uint8Array {
  const { part } = t;
  const out = new Uint8Array(b - a);
  if (part.kind === 'q4-blocks') return copyWrapped(POOL, part.source.seed + a, out);
  const pool = floatPool(part.kind, part.source.offset, part.source.scale);
  // Start on an even byte of the pool so that every value keeps both of its bytes.
  return copyWrapped(new Uint8Array(pool.buffer), 2 * (part.source.seed % FLOAT_POOL) + a, out);
}

/** One network's pack file: header plus generated tensors, with its byte count. */
function packFile(component: NetworkComponent, config: Record<string, unknown>, hubTensors: HubTensor[], name: string): ByteSource & { tensors: number; bytes: number } {
  const byName = new Map(hubTensors.map((t) => [t.name, t]));
  const formats: Map<string, StoredFormat> = storedFormats(component, config, new Set(byName.keys()));
  const list: Omit<SynthTensor, 'begin'>[] = [];
  for (const [tensor, format] of [...formats].sort(([a], [b]) => (a < b ? -1 : 1))) {
    const source = byName.get(tensor);
    if (!source) throw new Error(`${component}: ${tensor} is bound but not in the real-size layout`);
    if (format.kind === 'q4') {
      const kb = Math.ceil(format.k / Q4_BLOCK);
      list.push({ name: `${tensor}${Q4_BLOCKS_SUFFIX}`, dtype: 'U8', shape: [format.n, kb, Q4_BLOCK / 2], byteLength: format.n * kb * (Q4_BLOCK / 2), part: { kind: 'q4-blocks', source, n: format.n, kb } });
      list.push({ name: `${tensor}${Q4_SCALES_SUFFIX}`, dtype: 'F16', shape: [format.n, kb], byteLength: format.n * kb * 2, part: { kind: 'q4-scales', source, n: format.n, kb } });
    } else {
      const numel = source.shape.reduce((x, y) => x * y, 1);
      list.push({ name: tensor, dtype: 'F16', shape: source.shape, byteLength: numel * 2, part: { kind: 'float', source, n: 0, kb: 0 } });
    }
  }
  const header = safetensorsHeader(list); // carries the pack version, as a converted file's does
  let at = header.length;
  const placed: SynthTensor[] = list.map((t) => {
    const p = { ...t, begin: at };
    at += t.byteLength;
    return p;
  });
  const size = at;
  return {
    name,
    tensors: placed.length,
    bytes: size - header.length,
    size: async () => size,
    async read(offset, length) {
      const end = Math.min(size, offset + length);
      const out = new Uint8Array(end - offset);
      if (offset < header.length) out.set(header.subarray(offset, Math.min(end, header.length)), 0);
      for (const t of placed) {
        const tEnd = t.begin + t.byteLength;
        if (tEnd <= offset || t.begin >= end) continue;
        const a = Math.max(offset, t.begin) - t.begin;
        const b = Math.min(end, tEnd) - t.begin;
        out.set(tensorBytes(t, a, b), t.begin + a - offset);
      }
      return out;
    },
  };
}

export interface SyntheticPack {
  model: ModelSource;
  /** Stored bytes per network (what npm run convert would write). */
  bytes: Record<NetworkComponent, number>;
}

/**
 * The real-size model `id` as a stored pack generated on read. `llamaTokenizer` replaces the tokenizer.json the hub
 * would serve (the real Llama-3 one, when the machine has no node_modules to find it in).
 */
export async function syntheticPack(id: HubModelId, options: { root?: string; llamaTokenizer?: Uint8Array } = {}): Promise<SyntheticPack> {
  const hub = realSizeFiles(options.root);
  const plan = hubModelPlan(id);
  const bytes = {} as Record<NetworkComponent, number>;
  const folders = new Map<string, FolderSource>();
  for (const part of plan.parts) {
    const name: ComponentName = part.component === 'transformer' ? hubTransformer(id) : HUB_NAMES[part.component];
    const spec = hubComponent(name);
    const prefix = `${spec.repo}/resolve/main/${spec.subfolder ? `${spec.subfolder}/` : ''}`;
    const files = [...hub.values()].filter((f) => f.path.startsWith(prefix) && !f.path.slice(prefix.length).includes('/'));
    const plain = new Map(files.filter((f) => f.tensors.length === 0 && !f.path.endsWith('.index.json')).map((f) => [f.path.slice(prefix.length), f.bytes]));
    if (part.component === 'tokenizer' && options.llamaTokenizer) plain.set('tokenizer.json', options.llamaTokenizer);
    let weights: (ByteSource & { bytes: number }) | null = null;
    if ((NETWORKS as readonly string[]).includes(part.component)) {
      const component = part.component as NetworkComponent;
      const config = JSON.parse(new TextDecoder().decode(plain.get(spec.config ?? 'config.json')!)) as Record<string, unknown>;
      weights = packFile(component, config, files.flatMap((f) => f.tensors), `${name} (synthetic pack)`);
      bytes[component] = weights.bytes;
    }
    folders.set(part.folder, async (file) => {
      if (weights && file === spec.weights) return weights;
      const content = plain.get(file);
      if (!content) throw new CheckpointFileMissing(file, `${name} (synthetic pack)`);
      return { name: file, size: async () => content.length, read: async (o, n) => content.slice(o, o + n) };
    });
  }
  return { model: await modelSourceOf(plan.packageJson, folders), bytes };
}

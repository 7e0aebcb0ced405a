// A checkpoint folder as Hugging Face lays it out: `config.json` plus either one `*.safetensors` file or shards
// listed in `*.safetensors.index.json` (weight_map: tensor name → shard file). Opening one reads only headers;
// tensors are fetched one at a time, so the same code serves a 96-pixel test model and the 25 GB transformer.
// The same folder layout holds converted weights (weights/pack.ts: a pack of files, or the browser's store served
// by weights/storeSource.ts): their files declare the stored format's version in their metadata, and the
// checkpoint then answers `q4(name)` with a weight's stored 4-bit blocks and scales, so the runners read what was
// converted at download instead of converting again. Another version than this app's is refused (PackVersionError).

import { CheckpointFileMissing, TensorMissing } from '../errors/weights.ts';
import { checkPackVersion, packVersionOf, Q4_BLOCKS_SUFFIX, Q4_SCALES_SUFFIX } from './pack.ts';
import { readHeader, readTensorBytes, toFloat32, viewAs, type ByteSource, type SafetensorsHeader, type TensorData, type TensorInfo } from './safetensors.ts';

/** Opens a file of the checkpoint folder by its relative name; throws CheckpointFileMissing if absent. */
export type FolderSource = (file: string) => Promise<ByteSource>;

export interface CheckpointTensor extends TensorInfo {
  file: string;
}

/** A weight stored in 4-bit: MatMulNBits blocks [n, blocksPerRow, 16] and one fp16 scale per block (bits). */
export interface StoredQ4 {
  blocks: Uint8Array;
  scales: Uint16Array;
  n: number;
  blocksPerRow: number;
}

export interface Checkpoint {
  where: string;
  config: Record<string, unknown>;
  /** Every tensor in the checkpoint with its shard. */
  tensors: Map<string, CheckpointTensor>;
  files: string[];
  source(file: string): Promise<ByteSource>;
  header(file: string): Promise<SafetensorsHeader>;
  /** A tensor in its stored dtype. */
  raw(name: string): Promise<{ info: CheckpointTensor; data: TensorData }>;
  /** A floating tensor widened to float32. */
  f32(name: string): Promise<Float32Array>;
  /** The stored format's version (weights/pack.ts) of converted weights; null for a raw checkpoint. */
  packVersion: number | null;
  /** `name` as stored in 4-bit, or null when the checkpoint holds it otherwise (every raw checkpoint). */
  q4(name: string): Promise<StoredQ4 | null>;
}

async function readJson(src: ByteSource): Promise<unknown> {
  const bytes = await src.read(0, await src.size());
  return JSON.parse(new TextDecoder().decode(bytes));
}

/**
 * Opens a checkpoint folder. `weightsFile` names the single-file form (e.g. `model.safetensors`); the sharded
 * form is found through `${weightsFile}.index.json` or an explicit `indexFile`.
 */
export async function openCheckpoint(
  open: FolderSource,
  where: string,
  weightsFile: string,
  options: { configFile?: string | null } = {},
): Promise<Checkpoint> {
  const configFile = options.configFile === undefined ? 'config.json' : options.configFile;
  const config = configFile ? ((await readJson(await open(configFile))) as Record<string, unknown>) : {};
  const stem = weightsFile.replace(/\.safetensors$/, '');
  let files: string[];
  let index: ByteSource | null = null;
  try {
    index = await open(`${stem}.safetensors.index.json`);
  } catch (e) {
    if (!(e instanceof CheckpointFileMissing)) throw e;
  }
  if (index) {
    const map = ((await readJson(index)) as { weight_map: Record<string, string> }).weight_map;
    files = [...new Set(Object.values(map))].sort();
  } else {
    files = [weightsFile];
  }
  const sources = new Map<string, ByteSource>();
  const headers = new Map<string, SafetensorsHeader>();
  const tensors = new Map<string, CheckpointTensor>();
  let packVersion: number | null = null;
  for (const file of files) {
    const src = await open(file);
    const header = await readHeader(src);
    sources.set(file, src);
    headers.set(file, header);
    for (const t of header.tensors) tensors.set(t.name, { ...t, file });
    const version = packVersionOf(header.metadata);
    if (version !== null) {
      checkPackVersion(where, version); // never read converted weights of another version as this one's
      packVersion = version;
    }
  }
  const get = (name: string): CheckpointTensor => {
    const t = tensors.get(name);
    if (!t) throw new TensorMissing(name, where);
    return t;
  };
  return {
    where,
    config,
    tensors,
    files,
    source: async (file) => sources.get(file) ?? open(file),
    header: async (file) => headers.get(file)!,
    async raw(name) {
      const info = get(name);
      const bytes = await readTensorBytes(sources.get(info.file)!, info);
      return { info, data: viewAs(info.dtype, bytes) };
    },
    async f32(name) {
      const info = get(name);
      return toFloat32(info.dtype, await readTensorBytes(sources.get(info.file)!, info));
    },
    packVersion,
    async q4(name) {
      if (packVersion === null) return null;
      const blocks = tensors.get(`${name}${Q4_BLOCKS_SUFFIX}`);
      const scales = tensors.get(`${name}${Q4_SCALES_SUFFIX}`);
      if (!blocks || !scales) return null;
      if (blocks.dtype !== 'U8' || scales.dtype !== 'F16' || blocks.shape.length !== 3 || blocks.shape[2] !== 16) {
        throw new TensorMissing(`${name} in 4-bit (U8 [n, k/32, 16] blocks and F16 scales; found ${blocks.dtype} [${blocks.shape}] and ${scales.dtype})`, where);
      }
      const [n, blocksPerRow] = blocks.shape;
      const data = await readTensorBytes(sources.get(blocks.file)!, blocks);
      const scaleBits = viewAs('F16', await readTensorBytes(sources.get(scales.file)!, scales)) as Uint16Array;
      if (scaleBits.length !== n * blocksPerRow) throw new TensorMissing(`${name} scales (${n * blocksPerRow} of them; found ${scaleBits.length})`, where);
      return { blocks: data, scales: scaleBits, n, blocksPerRow };
    },
  };
}

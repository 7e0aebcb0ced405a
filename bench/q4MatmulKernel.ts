// Times our 4-bit matmul kernels on a real GPU at FramePack's sizes (18,485 tokens = 17,500 image + 729 SigLIP +
// 256 text, the transformer's large linears at 3072 wide) against onnxruntime-web's MatMulNBits on the same weight
// buffers in the same process and device, and checks a few output rows of every variant (ORT's too) against a
// float64 CPU reference, so a speed-up is never bought with a wrong answer. Before timing, --check (on by default)
// runs small odd shapes through every path and tiling against the reference: the GPU-side counterpart of
// test/unit/q4Matmul.test.ts for machines without vitest. Standalone Node script: bundle with
//   npx esbuild bench/q4MatmulKernel.ts --bundle --platform=node --format=esm --outfile=.gpu-bundle/q4MatmulKernel.mjs \
//     --external:webgpu --external:onnxruntime-web '--external:onnxruntime-web/*'
// and run it where `webgpu` and `onnxruntime-web` resolve (see scripts/gpu-bundle). Options: --m=ROWS
// --runs=R --shapes=KxN,... --only=subgroup-matrix,portable-f16,portable-f32,ort --tilings=2x2x1,4x2x2-f2x4,2x4x1,...
// (sgM×sgN×blocks, then optionally -f<fragM>x<fragN> result matrices per subgroup; each timed as its own row, the
// first shown as "default" in the summary; every one also goes through the small checks and has its big-shape rows
// checked) --no-check --software. A few seconds of work run before the first timing, so the GPU's clocks have ramped
// up.
// Ours is timed with GPU timestamps around its pass where the device has them; ORT's run with the wall clock from
// run() to the queue going idle (it records its own passes). Last line: one JSON object.

import { nodeGpu } from '../src/runtime/nodeWebgpu.ts';
import { gpuName, requestGpu } from '../src/runtime/device.ts';
import {
  DEFAULT_TILING,
  createQ4Matmul,
  q4MatmulFlops,
  tilingKey,
  subgroupMatrixUnavailableReason,
  type Q4Epilogue,
  type Q4Matmul,
  type Q4MatmulDtype,
  type Q4MatmulPath,
  type SubgroupMatrixTiling,
} from '../src/kernels/q4Matmul.ts';
import { Graph } from '../src/models/graph.ts';
import { geluTanh, linear } from '../src/models/ops.ts';
import { createSession, gpuTensor, setupOrt, type OrtTensor } from '../src/runtime/ort.ts';
import { dequantizeQ4, quantizeQ4 } from '../src/weights/quantize.ts';
import { f16BitsToF32, f16ToF32, f32ToF16 } from '../src/weights/dtypes.ts';
import { tensorError } from '../src/pipeline/tensorError.ts';

function option(name: string, fallback: string): string {
  const hit = process.argv.find((a) => a.startsWith(`--${name}=`));
  return hit ? hit.slice(name.length + 3) : fallback;
}

const m = Number(option('m', '18485'));
const runs = Number(option('runs', '5'));
const shapes = option('shapes', '3072x3072,3072x9216,3072x12288,12288x3072,15360x3072')
  .split(',')
  .map((s) => s.split('x').map(Number) as [number, number]);
const only = option('only', 'subgroup-matrix,portable-f16,ort').split(',').filter(Boolean);
/** `2x4x1` (4 × 4 result matrices per subgroup), `4x2x2-f2x4` (2 × 4 per subgroup); tilingKey's names read back. */
function parseTiling(s: string): SubgroupMatrixTiling {
  const hit = /^(\d+)x(\d+)x(\d+)(?:-f(\d+)x(\d+))?$/.exec(s);
  if (!hit) throw new Error(`Cannot read tiling '${s}' (expected e.g. 2x4x1, 4x2x2-f2x4).`);
  const [, sgM, sgN, blocks, fragM, fragN] = hit;
  return {
    sgM: Number(sgM),
    sgN: Number(sgN),
    blocks: Number(blocks),
    ...(fragM ? { fragM: Number(fragM), fragN: Number(fragN) } : {}),
  };
}
const tilings: SubgroupMatrixTiling[] = option('tilings', `${tilingKey(DEFAULT_TILING)},2x4x1,1x1x1`).split(',').map(parseTiling);
const check = !process.argv.includes('--no-check');
const tilingName = (t: SubgroupMatrixTiling) => tilingKey(t);
/** FramePack's FFN up projection (3072 → 12288) is followed by GELU(tanh); every linear has a bias. */
const epilogueFor = (k: number, n: number): Q4Epilogue => (k === 3072 && n === 12288 ? 'gelu_tanh' : 'none');

let seed = 0x9e3779b9;
function nextRandom(): number {
  seed ^= seed << 13;
  seed ^= seed >>> 17;
  seed ^= seed << 5;
  return seed >>> 0;
}
const uniform = (amplitude: number) => ((nextRandom() / 4294967296) * 2 - 1) * amplitude;

function geluTanhF64(v: number): number {
  return 0.5 * v * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (v + 0.044715 * v * v * v)));
}

/** Rows of y = x·Wᵀ + b (+ GELU) in float64; x [*, k] as f32, w [n, k]. */
function referenceRows(x: (row: number) => Float32Array, w: Float32Array, bias: Float32Array, k: number, n: number, epilogue: Q4Epilogue, rows: number[]): Float64Array {
  const out = new Float64Array(rows.length * n);
  rows.forEach((row, ri) => {
    const xr = x(row);
    for (let c = 0; c < n; c++) {
      let acc = 0;
      const wo = c * k;
      for (let i = 0; i < k; i++) acc += xr[i] * w[wo + i];
      acc += bias[c];
      out[ri * n + c] = epilogue === 'gelu_tanh' ? geluTanhF64(acc) : acc;
    }
  });
  return out;
}

const gpu = nodeGpu({ software: process.argv.includes('--software'), dawnFlags: ['enable-dawn-features=allow_unsafe_apis,vulkan_enable_f16_on_nvidia'] });
const { device, capabilities } = await requestGpu(gpu);
device.addEventListener('uncapturederror', (e) => console.error('WebGPU error:', (e as GPUUncapturedErrorEvent).error.message));
(globalThis as { navigator?: { gpu?: GPU } }).navigator ??= {};
(globalThis as unknown as { navigator: { gpu?: GPU } }).navigator.gpu ??= gpu;
setupOrt({ device });
const deviceName = gpuName(capabilities);
console.log(`device: ${deviceName}; f16 ${capabilities.shaderF16}, subgroup-matrix ${capabilities.subgroupMatrix}, timestamps ${capabilities.timestampQuery}`);

const usage = GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST | GPUBufferUsage.COPY_SRC;
function upload(data: Uint8Array | Uint16Array | Float32Array, elements?: number): GPUBuffer {
  const bytes = elements === undefined ? data.byteLength : elements * data.BYTES_PER_ELEMENT;
  const buffer = device.createBuffer({ size: Math.ceil(bytes / 4) * 4, usage });
  const whole = Math.floor(bytes / 4) * 4;
  if (whole > 0) device.queue.writeBuffer(buffer, 0, data.buffer, data.byteOffset, whole);
  if (whole < bytes) {
    const tail = new Uint8Array(4);
    tail.set(new Uint8Array(data.buffer, data.byteOffset + whole, bytes - whole));
    device.queue.writeBuffer(buffer, whole, tail);
  }
  return buffer;
}
async function readBytes(source: GPUBuffer, ranges: { offset: number; size: number }[]): Promise<ArrayBuffer> {
  const total = ranges.reduce((s, r) => s + r.size, 0);
  const readback = device.createBuffer({ size: Math.ceil(total / 4) * 4, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
  const encoder = device.createCommandEncoder();
  let at = 0;
  for (const r of ranges) {
    encoder.copyBufferToBuffer(source, r.offset, readback, at, r.size);
    at += r.size;
  }
  device.queue.submit([encoder.finish()]);
  await readback.mapAsync(GPUMapMode.READ);
  const raw = readback.getMappedRange().slice(0, total);
  readback.unmap();
  readback.destroy();
  return raw;
}

// ── small odd shapes through every path, against float64 ──
interface CheckResult {
  variant: string;
  shape: string;
  rel?: number;
  abs?: number;
  ok?: boolean;
  error?: string;
}
const checks: CheckResult[] = [];
async function runChecks(): Promise<void> {
  const cases: { m: number; k: number; n: number; bias: boolean; epilogue: Q4Epilogue }[] = [
    { m: 37, k: 96, n: 72, bias: true, epilogue: 'gelu_tanh' },
    { m: 300, k: 256, n: 200, bias: true, epilogue: 'none' },
    { m: 10, k: 64, n: 40, bias: false, epilogue: 'gelu_tanh' },
    { m: 257, k: 192, n: 136, bias: true, epilogue: 'gelu_tanh' },
    { m: 1000, k: 3072, n: 384, bias: true, epilogue: 'gelu_tanh' },
    { m: 50, k: 32, n: 264, bias: true, epilogue: 'none' }, // one step along K
  ];
  const variants: { name: string; path: Q4MatmulPath; dtype: Q4MatmulDtype; tiling?: SubgroupMatrixTiling }[] = [
    { name: 'portable-f32', path: 'portable', dtype: 'f32' },
    { name: 'portable-f16', path: 'portable', dtype: 'f16' },
    { name: 'subgroup-matrix (default tiling)', path: 'subgroup-matrix', dtype: 'f16' },
    ...tilings.map((t) => ({ name: `subgroup-matrix ${tilingName(t)}`, path: 'subgroup-matrix' as const, dtype: 'f16' as const, tiling: t })),
  ];
  for (const c of cases) {
    const w = new Float32Array(c.n * c.k).map(() => uniform(1 / Math.sqrt(c.k)));
    const q = quantizeQ4(w, c.n, c.k);
    const x32 = new Float32Array(c.m * c.k).map(() => uniform(1));
    const bias32 = new Float32Array(c.n).map(() => uniform(0.5));
    for (const v of variants) {
      const shape = `m=${c.m} k=${c.k} n=${c.n}${c.bias ? ' +bias' : ''}${c.epilogue === 'gelu_tanh' ? ' +gelu' : ''}`;
      const result: CheckResult = { variant: v.name, shape };
      if (v.dtype === 'f16' && !capabilities.shaderF16) continue;
      if (v.path === 'subgroup-matrix' && subgroupMatrixUnavailableReason(device, { k: c.k, dtype: v.dtype, tiling: v.tiling })) continue;
      checks.push(result);
      try {
        const f16 = v.dtype === 'f16';
        const narrow = (a: Float32Array) => (f16 ? f16ToF32(f32ToF16(a)) : a);
        const toGpu = (a: Float32Array) => upload(f16 ? f32ToF16(a) : a);
        const scales = narrow(q.scales);
        const x = narrow(x32);
        const bias = narrow(bias32);
        const want = referenceRows((r) => x.subarray(r * c.k, (r + 1) * c.k), dequantizeQ4({ ...q, scales }), c.bias ? bias : new Float32Array(c.n), c.k, c.n, c.epilogue, Array.from({ length: c.m }, (_, i) => i));
        const io = { x: toGpu(x), blocks: upload(q.blocks), scales: toGpu(scales), bias: c.bias ? toGpu(bias) : undefined };
        const outBytes = c.m * c.n * (f16 ? 2 : 4);
        const out = device.createBuffer({ size: Math.ceil(outBytes / 4) * 4, usage });
        device.queue.writeBuffer(out, 0, new Uint8Array(out.size).fill(0xff));
        const matmul = await createQ4Matmul(device, { k: c.k, n: c.n, dtype: v.dtype, epilogue: c.epilogue, bias: c.bias, path: v.path, tiling: v.tiling });
        await matmul.run({ ...io, out, m: c.m });
        const raw = await readBytes(out, [{ offset: 0, size: outBytes }]);
        const got = f16 ? f16ToF32(new Uint16Array(raw)) : new Float32Array(raw);
        const err = tensorError(got, want);
        Object.assign(result, { rel: err.rel, abs: err.abs, ok: err.rel <= (f16 ? 2e-3 : 1e-5) });
        for (const b of [io.x, io.blocks, io.scales, io.bias, out]) b?.destroy();
      } catch (e) {
        result.error = (e as Error).message;
      }
      console.log(`check ${v.name} ${shape}: ${result.error ? `ERROR ${result.error}` : `rel ${result.rel!.toExponential(2)} abs ${result.abs!.toExponential(2)} ${result.ok ? 'ok' : 'FAIL'}`}`);
    }
  }
}

// ── FramePack-sized timings ──
interface Timing {
  variant: string;
  k: number;
  n: number;
  epilogue: Q4Epilogue;
  medianMs?: number;
  runsMs?: number[];
  tflops?: number;
  timing?: 'gpu-timestamps' | 'wall-clock';
  relErr?: number;
  absErr?: number;
  /** ORT only: mean wall time of `runs` runs issued back to back with one wait at the end. */
  backToBackMs?: number;
  backToBackTflops?: number;
  skipped?: string;
}
const timings: Timing[] = [];
const checkedRows = [0, 1, 255, 256, Math.floor(m / 2), m - 2, m - 1];
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

const maxK = Math.max(...shapes.map(([k]) => k));
console.log(`generating x: ${m} × ${maxK} f16 …`);
const f16Table = f32ToF16(new Float32Array(65536).map((_, i) => (i / 65535) * 2 - 1));
const xHost = new Uint16Array(m * maxK);
for (let i = 0; i < xHost.length; i += 2) {
  const r = nextRandom();
  xHost[i] = f16Table[r & 0xffff];
  if (i + 1 < xHost.length) xHost[i + 1] = f16Table[r >>> 16];
}
const xRow = (k: number) => (row: number) => {
  const out = new Float32Array(k);
  for (let i = 0; i < k; i++) out[i] = f16BitsToF32(xHost[row * k + i]);
  return out;
};
/** x [m, k] f16 per K (the first m·k values of xHost), uploaded once. */
const xF16 = new Map<number, GPUBuffer>();
const xBuffer = (k: number) => {
  let b = xF16.get(k);
  if (!b) xF16.set(k, (b = upload(xHost, m * k)));
  return b;
};

interface ShapeData {
  k: number;
  n: number;
  epilogue: Q4Epilogue;
  blocks: GPUBuffer;
  scales: GPUBuffer;
  bias: GPUBuffer;
  want: Float64Array;
}
function makeShape(k: number, n: number): ShapeData {
  const kBlocks = Math.ceil(k / 32);
  const blocks = new Uint8Array(n * kBlocks * 16);
  for (let i = 0; i < blocks.length; i += 4) {
    const r = nextRandom();
    blocks[i] = r & 0xff;
    blocks[i + 1] = (r >>> 8) & 0xff;
    blocks[i + 2] = (r >>> 16) & 0xff;
    blocks[i + 3] = r >>> 24;
  }
  // Uniform nibbles have std ≈ 4.6 steps: scales ≈ 1/(4.6·√k) give W a std near 1/√k, outputs of order 1.
  const scales = f32ToF16(new Float32Array(n * kBlocks).map(() => (0.5 + nextRandom() / 4294967296) / (4.6 * Math.sqrt(k))));
  const bias = f32ToF16(new Float32Array(n).map(() => uniform(0.1)));
  const epilogue = epilogueFor(k, n);
  const w = dequantizeQ4({ blocks, scales: f16ToF32(scales), n, k });
  const want = referenceRows(xRow(k), w, f16ToF32(bias), k, n, epilogue, checkedRows);
  return { k, n, epilogue, blocks: upload(blocks), scales: upload(scales), bias: upload(bias), want };
}

const timestamps = device.features.has('timestamp-query');
const querySet = timestamps ? device.createQuerySet({ type: 'timestamp', count: 2 }) : null;
const resolve = device.createBuffer({ size: 16, usage: GPUBufferUsage.QUERY_RESOLVE | GPUBufferUsage.COPY_SRC });
const readTimes = device.createBuffer({ size: 16, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
const maxOutBytes = Math.max(...shapes.map(([, n]) => m * n * 4));
const out = device.createBuffer({ size: maxOutBytes, usage });
/** 0xff bytes are NaN in f16 and f32: written over the output before timing, so unwritten elements cannot pass. */
const poison = new Uint8Array(maxOutBytes).fill(0xff);

async function rowError(source: GPUBuffer, s: ShapeData, elem: 2 | 4): Promise<{ rel: number; abs: number }> {
  const rowBytes = s.n * elem;
  const raw = await readBytes(source, checkedRows.map((r) => ({ offset: r * rowBytes, size: rowBytes })));
  const got = elem === 2 ? f16ToF32(new Uint16Array(raw)) : new Float32Array(raw);
  const err = tensorError(got, s.want);
  return { rel: err.rel, abs: err.abs };
}

async function timeOurs(matmul: Q4Matmul, s: ShapeData, x: GPUBuffer): Promise<Partial<Timing>> {
  const io = { x, blocks: s.blocks, scales: s.scales, bias: s.bias, out, m };
  const once = async (): Promise<number> => {
    const encoder = device.createCommandEncoder();
    const pass = encoder.beginComputePass(querySet ? { timestampWrites: { querySet, beginningOfPassWriteIndex: 0, endOfPassWriteIndex: 1 } } : {});
    matmul.encode(pass, io);
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
  device.queue.writeBuffer(out, 0, poison, 0, m * s.n * (matmul.dtype === 'f16' ? 2 : 4));
  await once();
  const runsMs: number[] = [];
  for (let i = 0; i < runs; i++) runsMs.push(await once());
  const err = await rowError(out, s, matmul.dtype === 'f16' ? 2 : 4);
  return { runsMs, medianMs: median(runsMs), timing: querySet ? 'gpu-timestamps' : 'wall-clock', relErr: err.rel, absErr: err.abs };
}

async function timeOrt(s: ShapeData, x: GPUBuffer): Promise<Partial<Timing>> {
  const g = new Graph(`q4linear_${s.k}x${s.n}`, 'float16');
  let y = linear(g, g.input('x', 'float16', [1, m, s.k]), 'lin', s.k, s.n, { quantized: true, bias: true });
  if (s.epilogue === 'gelu_tanh') y = geluTanh(g, y);
  g.output(y, 'y', 'float16', [1, m, s.n]);
  const session = await createSession(g.build(), 'webgpu', { outputsOnGpu: true });
  const kBlocks = Math.ceil(s.k / 32);
  const feeds: Record<string, OrtTensor> = {
    x: gpuTensor(x, 'float16', [1, m, s.k]),
    lin_q4: gpuTensor(s.blocks, 'uint8', [s.n, kBlocks, 16]),
    lin_scales: gpuTensor(s.scales, 'float16', [s.n * kBlocks]),
    lin_bias: gpuTensor(s.bias, 'float16', [s.n]),
  };
  const runsMs: number[] = [];
  let err = { rel: NaN, abs: NaN };
  for (let i = 0; i <= runs; i++) {
    const start = performance.now();
    const result = await session.run(feeds);
    await device.queue.onSubmittedWorkDone();
    const ms = performance.now() - start;
    if (i > 0) runsMs.push(ms); // the first run compiles ORT's shaders
    if (i === runs) err = await rowError((result.y as unknown as { gpuBuffer: GPUBuffer }).gpuBuffer, s, 2);
    result.y.dispose();
  }
  // Back to back, waiting once at the end, as the denoising loop runs: ORT's own overhead between runs overlaps the GPU.
  const start = performance.now();
  const results = [];
  for (let i = 0; i < runs; i++) results.push(await session.run(feeds));
  await device.queue.onSubmittedWorkDone();
  const backToBackMs = (performance.now() - start) / runs;
  for (const r of results) r.y.dispose();
  await session.release();
  return { runsMs, medianMs: median(runsMs), backToBackMs, timing: 'wall-clock', relErr: err.rel, absErr: err.abs };
}

/** About two seconds of back-to-back portable work with nothing timed: GPU clocks ramp up over the first seconds. */
async function warmUp(s: ShapeData): Promise<void> {
  const matmul = await createQ4Matmul(device, { k: s.k, n: s.n, dtype: 'f16', bias: false, path: 'portable' });
  const rows = Math.min(m, 4096);
  const start = performance.now();
  while (performance.now() - start < 2000) {
    const encoder = device.createCommandEncoder();
    for (let i = 0; i < 4; i++) matmul.encode(encoder, { x: xBuffer(s.k), blocks: s.blocks, scales: s.scales, out, m: rows });
    device.queue.submit([encoder.finish()]);
    await device.queue.onSubmittedWorkDone();
  }
}

function report(t: Timing, flops: number, extra: Partial<Timing>): void {
  Object.assign(t, extra);
  if (t.medianMs !== undefined) t.tflops = flops / (t.medianMs / 1e3) / 1e12;
  if (t.backToBackMs !== undefined) t.backToBackTflops = flops / (t.backToBackMs / 1e3) / 1e12;
  timings.push(t);
  const what = `${t.variant} ${t.k}→${t.n}${t.epilogue === 'gelu_tanh' ? '+gelu' : ''}`;
  if (t.skipped) console.log(`${what}: skipped (${t.skipped})`);
  else {
    console.log(
      `${what}: median ${t.medianMs!.toFixed(2)} ms (${t.timing}; runs ${t.runsMs!.map((r) => r.toFixed(2)).join(', ')}) = ${t.tflops!.toFixed(1)} TFLOP/s; ` +
        `rows ${checkedRows.join(',')} rel err ${t.relErr!.toExponential(2)} (abs ${t.absErr!.toExponential(2)})` +
        (t.backToBackMs !== undefined ? `; back to back ${t.backToBackMs.toFixed(2)} ms = ${t.backToBackTflops!.toFixed(1)} TFLOP/s` : ''),
    );
  }
}

async function main(): Promise<void> {
  if (check) await runChecks();
  console.log(`timing: m = ${m}, median of ${runs}`);
  const data = new Map<string, ShapeData>();
  for (const [k, n] of shapes) data.set(`${k}x${n}`, makeShape(k, n));
  const each = async (variant: string, body: (s: ShapeData, x: GPUBuffer) => Promise<Partial<Timing>>) => {
    for (const s of data.values()) {
      const t: Timing = { variant, k: s.k, n: s.n, epilogue: s.epilogue };
      try {
        report(t, q4MatmulFlops(m, s.k, s.n), await body(s, xBuffer(s.k)));
      } catch (e) {
        report(t, 0, { skipped: `failed: ${(e as Error).message}` });
      }
    }
  };
  const canF16 = capabilities.shaderF16;
  if (canF16) await warmUp([...data.values()].at(-1)!);
  if (only.includes('subgroup-matrix') && canF16) {
    for (const tiling of tilings) {
      await each(`subgroup-matrix ${tilingName(tiling)}`, async (s, x) => {
        const reason = subgroupMatrixUnavailableReason(device, { k: s.k, dtype: 'f16', tiling });
        if (reason) return { skipped: reason };
        return timeOurs(await createQ4Matmul(device, { k: s.k, n: s.n, dtype: 'f16', epilogue: s.epilogue, bias: true, path: 'subgroup-matrix', tiling }), s, x);
      });
    }
  }
  if (only.includes('ort') && canF16) await each('ort MatMulNBits', timeOrt);
  if (only.includes('portable-f16') && canF16) {
    await each('portable-f16', async (s, x) => timeOurs(await createQ4Matmul(device, { k: s.k, n: s.n, dtype: 'f16', epilogue: s.epilogue, bias: true, path: 'portable' }), s, x));
  }
  if (only.includes('portable-f32')) {
    await each('portable-f32', async (s) => {
      const x32 = new Float32Array(m * s.k);
      for (let i = 0; i < x32.length; i++) x32[i] = f16BitsToF32(xHost[i]);
      const x = upload(x32);
      const scales = (await readBytes(s.scales, [{ offset: 0, size: s.n * Math.ceil(s.k / 32) * 2 }])) as ArrayBuffer;
      const bias = await readBytes(s.bias, [{ offset: 0, size: s.n * 2 }]);
      const s32: ShapeData = { ...s, scales: upload(f16ToF32(new Uint16Array(scales))), bias: upload(f16ToF32(new Uint16Array(bias))) };
      const result = await timeOurs(await createQ4Matmul(device, { k: s.k, n: s.n, dtype: 'f32', epilogue: s.epilogue, bias: true, path: 'portable' }), s32, x);
      for (const b of [x, s32.scales, s32.bias]) b.destroy();
      return result;
    });
  }

  // Summary: per shape, the best of our subgroup-matrix tilings, the default tiling, the portable kernel and ORT.
  console.log('\n| K → N | ours, best tiling (TFLOP/s) | ours, first tiling | portable f16 | ORT MatMulNBits (waited; back to back) | best / ORT back to back |');
  console.log('| --- | --- | --- | --- | --- | --- |');
  for (const s of data.values()) {
    const rows = timings.filter((t) => t.k === s.k && t.n === s.n && t.tflops !== undefined);
    const ours = rows.filter((t) => t.variant.startsWith('subgroup-matrix')).sort((a, b) => b.tflops! - a.tflops!);
    const named = (v: string) => rows.find((t) => t.variant === v)?.tflops;
    const fmt = (v: number | undefined) => (v === undefined ? '—' : v.toFixed(1));
    const ortRow = rows.find((t) => t.variant === 'ort MatMulNBits');
    const ort = ortRow?.backToBackTflops;
    const best = ours[0];
    console.log(
      `| ${s.k} → ${s.n}${s.epilogue === 'gelu_tanh' ? ' +GELU' : ''} | ${best ? `${best.tflops!.toFixed(1)} (${best.variant.split(' ')[1]})` : '—'} | ` +
        `${fmt(named(`subgroup-matrix ${tilingName(tilings[0])}`))} | ${fmt(named('portable-f16'))} | ${fmt(ortRow?.tflops)}; ${fmt(ort)} | ${best && ort ? `${(best.tflops! / ort).toFixed(2)}×` : '—'} |`,
    );
  }
  console.log(JSON.stringify({ bench: 'q4MatmulKernel', device: deviceName, m, runs, checks, timings }));
  device.destroy();
}

main().then(
  () => process.exit(0),
  (e) => {
    console.error(e);
    process.exit(1);
  },
);

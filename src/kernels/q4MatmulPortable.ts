// The portable 4-bit GEMM: y[M, N] = x[M, K]·Wᵀ (+ bias) (+ GELU) in plain WGSL, for every GPU stock Chrome offers
// (no subgroup matrices: Windows' D3D12 has none, Linux and macOS need an unsafe flag). The layout is a classic
// register-tiled GEMM: a workgroup of 256 invocations computes 128 × 128 outputs, each invocation an 8 × 8 block; per
// step the x tile and the dequantized W tile go to workgroup memory transposed ([k][row] as vec4, so an invocation
// reads its 8 rows and its 8 columns as two vec4 loads each per k).
// - f16 (shader-f16): one quantization block (32 of K) per step; the products are packed half-precision FMAs on
//   vec2<f16> (two output columns per instruction — the hardware's half2 rate, twice its f32 rate), accumulated in
//   f16 over the block's 32 products, then added to f32 accumulators: a block's partial sum stays near its own scale,
//   so the f16 sum loses about an f16 ulp of it, and the sum over K is f32. W is dequantized with its f16 scale, so
//   partial sums stay small (|w| ≈ 1/√K) and cannot overflow where the activations fit f16. 2 × 8 KiB.
// - f32: half a block (16 of K) per step, f32 throughout. 2 × 8 KiB.
// K must be a multiple of 32 (whole quantization blocks: the plans quantize only such linears). The source is
// generated with every accumulator its own variable, so the driver keeps them in registers.

import { GELU_EPILOGUE_WGSL } from './epilogue.ts';

export const PORTABLE_TILE_M = 128;
export const PORTABLE_TILE_N = 128;
export const PORTABLE_THREADS = 256;
/** Workgroup memory of either variant: the x and the W tile, 8 KiB each. */
export const PORTABLE_WORKGROUP_BYTES = 16384;

const ROWS = 8; // outputs per invocation: 8 rows …
const COLS = 8; // … × 8 columns

const range = (n: number) => Array.from({ length: n }, (_, i) => i);

/** One k step of the f16 inner product: 8 rows × 4 column pairs of packed FMAs into the f16 partial sums. */
function f16Step(): string {
  const lines = [
    'let a0 = xs[kk * 32u + tr * 2u];',
    'let a1 = xs[kk * 32u + tr * 2u + 1u];',
    'let b0 = ws[kk * 32u + tc * 2u];',
    'let b1 = ws[kk * 32u + tc * 2u + 1u];',
  ];
  const rowOf = (i: number) => `a${i >> 2}.${'xyzw'[i & 3]}`;
  const pairOf = (j: number) => `b${j >> 1}.${j & 1 ? 'zw' : 'xy'}`;
  for (const i of range(ROWS)) {
    lines.push(`let r${i} = vec2<f16>(${rowOf(i)});`);
    for (const j of range(COLS / 2)) lines.push(`h${i}_${j} = fma(r${i}, ${pairOf(j)}, h${i}_${j});`);
  }
  return lines.map((l) => `      ${l}`).join('\n');
}

/** One k step of the f32 inner product: 8 rows × 2 vec4 columns of FMAs into the f32 accumulators. */
function f32Step(): string {
  const lines = [
    'let a0 = xs[kk * 32u + tr * 2u];',
    'let a1 = xs[kk * 32u + tr * 2u + 1u];',
    'let b0 = ws[kk * 32u + tc * 2u];',
    'let b1 = ws[kk * 32u + tc * 2u + 1u];',
  ];
  for (const i of range(ROWS)) {
    const a = `a${i >> 2}.${'xyzw'[i & 3]}`;
    lines.push(`acc${i}_0 = fma(vec4<f32>(${a}), b0, acc${i}_0);`, `acc${i}_1 = fma(vec4<f32>(${a}), b1, acc${i}_1);`);
  }
  return lines.map((l) => `      ${l}`).join('\n');
}

const declare = (lines: string[]) => lines.map((l) => `  ${l}`).join('\n');

/** The portable kernel's WGSL for a dtype. */
export function portableTiledSource(dtype: 'f16' | 'f32'): string {
  const f16 = dtype === 'f16';
  const accumulators = declare(range(ROWS).flatMap((i) => [`var acc${i}_0 = vec4<f32>(0.0);`, `var acc${i}_1 = vec4<f32>(0.0);`]));
  const partials = declare(range(ROWS).flatMap((i) => range(COLS / 2).map((j) => `var h${i}_${j} = vec2<f16>(0.0);`)));
  const flush = declare(range(ROWS).flatMap((i) => [
    `acc${i}_0 += vec4<f32>(vec2<f32>(h${i}_0), vec2<f32>(h${i}_1));`,
    `acc${i}_1 += vec4<f32>(vec2<f32>(h${i}_2), vec2<f32>(h${i}_3));`,
  ]));
  const write = declare(range(ROWS).flatMap((i) => [
    `writeRow(row0 + tr * 8u + ${i}u, col0 + tc * 8u, acc${i}_0);`,
    `writeRow(row0 + tr * 8u + ${i}u, col0 + tc * 8u + 4u, acc${i}_1);`,
  ]));
  // Staging, per step: x rows as vec4<u32> (8 halves) or vec4<f32> (4 floats) chunks, W as 16 (f16) or 8 (f32)
  // nibbles per invocation, two invocations per W row.
  const stageX = f16
    ? `
    for (var e = 0u; e < 2u; e++) {
      let i = t + e * 256u;
      let r = i / 4u;                      // tile row
      let c = i % 4u;                      // 8 halves of the block: k = 8c ..
      var v = vec4<u32>(0u);
      if (row0 + r < params.m) { v = x[(row0 + r) * (params.k / 8u) + kb * 4u + c]; }
      let at = (c * 8u) * 32u + r / 4u;
      let lane = r % 4u;
      for (var w = 0u; w < 4u; w++) {
        let pair = bitcast<vec2<f16>>(v[w]);
        xs[at + (2u * w) * 32u][lane] = pair.x;
        xs[at + (2u * w + 1u) * 32u][lane] = pair.y;
      }
    }`
    : `
    for (var e = 0u; e < 2u; e++) {
      let i = t + e * 256u;
      let r = i / 4u;                      // tile row
      let c = i % 4u;                      // 4 floats of the half block: k = 4c ..
      var v = vec4<f32>(0.0);
      if (row0 + r < params.m) { v = x[(row0 + r) * (params.k / 4u) + step * 4u + c]; }
      let at = (c * 4u) * 32u + r / 4u;
      let lane = r % 4u;
      for (var j = 0u; j < 4u; j++) { xs[at + j * 32u][lane] = v[j]; }
    }`;
  const stageW = f16
    ? `
    {
      let col = t / 2u;
      let upper = t % 2u;                  // nibbles 16·upper .. of the block
      var words = vec2<u32>(0u);
      var scale = f16(0.0);
      if (col0 + col < params.n) {
        let b = blocks[(col0 + col) * params.kBlocks + kb];
        words = select(b.zw, b.xy, upper == 0u);
        scale = scales[(col0 + col) * params.kBlocks + kb];
      }
      for (var j = 0u; j < 16u; j++) {
        let q = (words[j / 8u] >> (4u * (j % 8u))) & 15u;
        ws[(upper * 16u + j) * 32u + col / 4u][col % 4u] = (f16(q) - 8.0h) * scale;
      }
    }`
    : `
    {
      let col = t / 2u;
      let part = t % 2u;                   // nibbles 8·part .. of the half block
      let kb = step / 2u;
      var word = 0u;
      var scale = 0.0;
      if (col0 + col < params.n) {
        word = blocks[(col0 + col) * params.kBlocks + kb][(step % 2u) * 2u + part];
        scale = scales[(col0 + col) * params.kBlocks + kb];
      }
      for (var j = 0u; j < 8u; j++) {
        ws[(part * 8u + j) * 32u + col / 4u][col % 4u] = (f32((word >> (4u * j)) & 15u) - 8.0) * scale;
      }
    }`;
  const loop = f16
    ? `
  for (var kb = 0u; kb < params.kBlocks; kb++) {
    workgroupBarrier();${stageX}${stageW}
    workgroupBarrier();
${partials.replace(/^ {2}/gm, '    ')}
    for (var kk = 0u; kk < 32u; kk++) {
${f16Step()}
    }
${flush.replace(/^ {2}/gm, '    ')}
  }`
    : `
  for (var step = 0u; step < params.kBlocks * 2u; step++) {
    workgroupBarrier();${stageX}${stageW}
    workgroupBarrier();
    for (var kk = 0u; kk < 16u; kk++) {
${f32Step()}
    }
  }`;
  return /* wgsl */ `
${f16 ? 'enable f16;' : ''}
alias Elem = ${dtype};

const FLAG_BIAS: u32 = 1u;
const FLAG_GELU: u32 = 2u;

struct Params { m: u32, n: u32, k: u32, kBlocks: u32, flags: u32, pad0: u32, pad1: u32, pad2: u32 }

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> x: array<${f16 ? 'vec4<u32>' : 'vec4<f32>'}>;
@group(0) @binding(2) var<storage, read> blocks: array<vec4<u32>>;
@group(0) @binding(3) var<storage, read> scales: array<Elem>;
@group(0) @binding(4) var<storage, read> bias: array<Elem>;
@group(0) @binding(5) var<storage, read_write> y: array<Elem>;

var<workgroup> xs: array<vec4<Elem>, ${f16 ? 1024 : 512}>;   // [k][tile row / 4]
var<workgroup> ws: array<vec4<Elem>, ${f16 ? 1024 : 512}>;   // [k][tile column / 4]

${GELU_EPILOGUE_WGSL}

fn writeRow(row: u32, col: u32, v: vec4<f32>) {
  if (row >= params.m) { return; }
  for (var j = 0u; j < 4u; j++) {
    if (col + j < params.n) { y[row * params.n + col + j] = Elem(finish(v[j], col + j)); }
  }
}

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) t: u32) {
  let row0 = wg.y * 128u;
  let col0 = wg.x * 128u;
  let tr = t / 16u;                // outputs: rows row0 + 8·tr ..
  let tc = t % 16u;                //          columns col0 + 8·tc ..
${accumulators}
${loop}
${write}
}
`;
}

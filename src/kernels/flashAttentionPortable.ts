// The portable attention kernel for devices with `subgroups` (Chrome gives them on D3D12, Vulkan and Metal): what
// stock Chrome runs FramePack's attention with. softmax(q·kᵀ/√d)·v with FlashAttention's online softmax, laid out so
// that every key's row is read by all invocations at once (a workgroup-memory broadcast) and each invocation keeps
// its query's state in registers:
// - a workgroup of 256 invocations takes 128 queries of one head, by default two invocations per query, each owning
//   half of the head's dims (its slice of q and of the output accumulator); a shape with four invocations per pair of
//   queries (each key slice read from workgroup memory then feeds two queries) exists for benches;
// - per tile of keys (32 f16 / 16 f32, staged in workgroup memory), in groups of 8 keys: each invocation computes
//   its slice of the dot products, the parts add them with subgroupShuffleXor, all rescale their slice of the output
//   to the group's running maximum (base 2), and accumulate p·v for their dims;
// - f16: the products are packed half-precision FMAs, each slice's dot product summed in f16 over at most 32 dims
//   (four lanes of 8) and the group's p·v over 8 keys in f16, both then added in f32; f32 throughout otherwise.
// Head dims 32, 64, 128. Workgroup memory: the K and V tiles, 2 × 8 KiB. The source is generated with every register
// value its own variable, so the driver keeps them in registers. Devices without subgroups run flashAttention.ts's
// own portable kernel.

/** How the tiled kernel shares a query's work: `parts` invocations per query (each a slice of the head's dims), `queries` queries per invocation. */
export interface TiledAttentionShape {
  parts: 2 | 4;
  queries: 1 | 2;
}

/**
 * Two invocations per query: on an H200 23.3 TFLOP/s (f16) and 12.4 (f32) at FramePack's size, against 21.8 and 6.9
 * for four invocations per pair of queries, whose key reads serve two queries (bench/RESULTS.md).
 */
export const DEFAULT_TILED_SHAPE: TiledAttentionShape = { parts: 2, queries: 1 };
export const TILED_WORKGROUP_BYTES = 16384;

/** Queries one workgroup (256 invocations) takes. */
export function tiledQueriesPerWorkgroup(shape: TiledAttentionShape): number {
  return (256 / shape.parts) * shape.queries;
}

const range = (n: number) => Array.from({ length: n }, (_, i) => i);
const GROUP = 8; // keys per softmax update

/** The kernel's WGSL for a dtype, head size and shape. */
export function tiledAttentionSource(dtype: 'f16' | 'f32', headDim: number, shape: TiledAttentionShape = DEFAULT_TILED_SHAPE): string {
  const f16 = dtype === 'f16';
  const { parts, queries } = shape;
  const slice = headDim / parts; // dims per invocation
  const vecs = slice / 4; // vec4 of them
  const tileKeys = f16 ? 32 : 16;
  const rowVecs = headDim / 4;
  const perGroup = tiledQueriesPerWorkgroup(shape);
  const Q = range(queries);
  const q = (a: number, c: number) => `q${a}_${c}`;
  const o = (a: number, c: number) => `o${a}_${c}`;
  const lines: string[] = [];
  const push = (...ls: string[]) => lines.push(...ls.map((l) => `      ${l}`));

  // Scores of one group of 8 keys: each query's dot product over this invocation's slice, then summed over the parts.
  for (const j of range(GROUP)) {
    const kAt = (c: number) => `ks[(g * ${GROUP}u + ${j}u) * ${rowVecs}u + part * ${vecs}u + ${c}u]`;
    for (const a of Q) push(f16 ? `var d${a}_${j} = vec4<f16>(0.0);` : `var s${a}_${j} = 0.0;`);
    for (const c of range(vecs)) {
      const uses = Q.map((a) => (f16 ? `d${a}_${j} = fma(${q(a, c)}, kv, d${a}_${j});` : `s${a}_${j} += dot(${q(a, c)}, kv);`)).join(' ');
      push(`{ let kv = ${kAt(c)}; ${uses} }`);
    }
    for (const a of Q) {
      const s = `s${a}_${j}`;
      if (f16) push(`var ${s} = (f32(d${a}_${j}.x) + f32(d${a}_${j}.y)) + (f32(d${a}_${j}.z) + f32(d${a}_${j}.w));`);
      push(`${s} += subgroupShuffleXor(${s}, 1u);`);
      if (parts === 4) push(`${s} += subgroupShuffleXor(${s}, 2u);`);
      push(`${s} *= params.scaleLog2;`, `if (k0 + g * ${GROUP}u + ${j}u >= params.nk) { ${s} = NEG_BIG; }`);
    }
  }
  // Online softmax over the group per query, then p·v for this invocation's slice.
  for (const a of Q) {
    const sj = (j: number) => `s${a}_${j}`;
    push(`let mNew${a} = max(m${a}, max(max(max(${sj(0)}, ${sj(1)}), max(${sj(2)}, ${sj(3)})), max(max(${sj(4)}, ${sj(5)}), max(${sj(6)}, ${sj(7)}))));`);
    push(`let alpha${a} = exp2(m${a} - mNew${a});`, `m${a} = mNew${a};`);
    for (const j of range(GROUP)) push(`let p${a}_${j} = exp2(${sj(j)} - mNew${a});`);
    push(`l${a} = l${a} * alpha${a} + ((p${a}_0 + p${a}_1) + (p${a}_2 + p${a}_3)) + ((p${a}_4 + p${a}_5) + (p${a}_6 + p${a}_7));`);
    for (const c of range(vecs)) push(`${o(a, c)} *= alpha${a};`);
    if (f16) for (const j of range(GROUP)) push(`let h${a}_${j} = vec4<f16>(f16(p${a}_${j}));`);
  }
  const vAt = (j: number, c: number) => `vs[(g * ${GROUP}u + ${j}u) * ${rowVecs}u + part * ${vecs}u + ${c}u]`;
  for (const c of range(vecs)) {
    if (f16) {
      push(`{`);
      for (const a of Q) push(`  var acc${a} = vec4<f16>(0.0);`);
      for (const j of range(GROUP)) push(`  { let vv = ${vAt(j, c)}; ${Q.map((a) => `acc${a} = fma(h${a}_${j}, vv, acc${a});`).join(' ')} }`);
      for (const a of Q) push(`  ${o(a, c)} += vec4<f32>(acc${a});`);
      push(`}`);
    } else {
      for (const j of range(GROUP)) push(`{ let vv = ${vAt(j, c)}; ${Q.map((a) => `${o(a, c)} = fma(vec4<f32>(p${a}_${j}), vv, ${o(a, c)});`).join(' ')} }`);
    }
  }
  const group = lines.join('\n');
  const declarations = Q.flatMap((a) => [
    `  let query${a} = min(wg.x * ${perGroup}u + (t / ${parts}u) * ${queries}u + ${a}u, params.nq - 1u);`,
    `  let qAt${a} = query${a} * tokenStride + head * ${rowVecs}u + part * ${vecs}u;`,
    ...range(vecs).map((c) => `  let ${q(a, c)} = q[qAt${a} + ${c}u];`),
    ...range(vecs).map((c) => `  var ${o(a, c)} = vec4<f32>(0.0);`),
    `  var m${a} = NEG_BIG;`,
    `  var l${a} = 0.0;`,
  ]).join('\n');
  const stores = Q.map((a) => `  if (wg.x * ${perGroup}u + (t / ${parts}u) * ${queries}u + ${a}u < params.nq) {
    let inv = 1.0 / l${a};
${range(vecs).map((c) => `    out[qAt${a} + ${c}u] = vec4<Elem>(${o(a, c)} * inv);`).join('\n')}
  }`).join('\n');

  return /* wgsl */ `
${f16 ? 'enable f16;' : ''}
enable subgroups;
diagnostic(off, subgroup_uniformity);
alias Elem = ${dtype};

const NEG_BIG: f32 = -1.0e30;    // "minus infinity" that stays finite under subtraction
const TILE: u32 = ${tileKeys}u;    // keys staged per step

struct Params { nq: u32, nk: u32, heads: u32, scaleLog2: f32 }

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> q: array<vec4<Elem>>;
@group(0) @binding(2) var<storage, read> k: array<vec4<Elem>>;
@group(0) @binding(3) var<storage, read> v: array<vec4<Elem>>;
@group(0) @binding(4) var<storage, read_write> out: array<vec4<Elem>>;

var<workgroup> ks: array<vec4<Elem>, ${tileKeys * rowVecs}>;   // [key][head dim / 4]
var<workgroup> vs: array<vec4<Elem>, ${tileKeys * rowVecs}>;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) t: u32) {
  let head = wg.y;
  let tokenStride = params.heads * ${rowVecs}u;          // vec4 per token
  let part = t % ${parts}u;                              // which slice of the head's dims
  // Queries past nq recompute the last one (so the subgroup shuffles stay uniform) and are not written.
${declarations}
  for (var k0 = 0u; k0 < params.nk; k0 += TILE) {
    workgroupBarrier();
    for (var i = t; i < TILE * ${rowVecs}u; i += 256u) {
      let key = k0 + i / ${rowVecs}u;
      var kv = vec4<Elem>(0.0);
      var vv = vec4<Elem>(0.0);
      if (key < params.nk) {
        let at = key * tokenStride + head * ${rowVecs}u + i % ${rowVecs}u;
        kv = k[at];
        vv = v[at];
      }
      ks[i] = kv;
      vs[i] = vv;
    }
    workgroupBarrier();
    for (var g = 0u; g < TILE / ${GROUP}u; g++) {
${group}
    }
  }
${stores}
}
`;
}

// The graph builder and the layer fragments, run through onnxruntime on the wasm EP and on WebGPU (SwiftShader),
// against plain loops written here.
import { describe, expect, it } from 'vitest';
import { Graph } from '../../src/models/graph.ts';
import { attention, geluTanh, layerNorm, linear, mergeHeads, rmsNorm, splitHeads } from '../../src/models/ops.ts';
import { createSession, cpuTensor, tensorData, type ExecutionProvider } from '../../src/runtime/ort.ts';
import { formatError, tensorError } from '../../src/pipeline/tensorError.ts';
import { ortReady } from '../helpers/ortSetup.ts';

function rand(n: number, seed: number): Float32Array {
  let s = seed;
  return Float32Array.from({ length: n }, () => ((s = (s * 1103515245 + 12345) % 2 ** 31) / 2 ** 31) * 2 - 1);
}

/** CPU reference of the block: LN(affine) → linear → gelu → RMSNorm(w) → 2-head self-attention. */
function cpuBlock(x: Float32Array, n: number, d: number, p: Record<string, Float32Array>): Float32Array {
  const ln = new Float64Array(n * d);
  for (let t = 0; t < n; t++) {
    let m = 0, v = 0;
    for (let c = 0; c < d; c++) m += x[t * d + c];
    m /= d;
    for (let c = 0; c < d; c++) v += (x[t * d + c] - m) ** 2;
    v /= d;
    for (let c = 0; c < d; c++) ln[t * d + c] = ((x[t * d + c] - m) / Math.sqrt(v + 1e-5)) * p['ln.weight'][c] + p['ln.bias'][c];
  }
  const h = new Float64Array(n * d);
  for (let t = 0; t < n; t++) for (let o = 0; o < d; o++) {
    let s = p['fc.bias'][o];
    for (let i = 0; i < d; i++) s += ln[t * d + i] * p['fc.weight'][o * d + i];
    h[t * d + o] = 0.5 * s * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (s + 0.044715 * s ** 3)));
  }
  for (let t = 0; t < n; t++) {
    let ms = 0;
    for (let c = 0; c < d; c++) ms += h[t * d + c] ** 2;
    const inv = 1 / Math.sqrt(ms / d + 1e-6);
    for (let c = 0; c < d; c++) h[t * d + c] *= inv * p['rms.weight'][c];
  }
  const heads = 2, hd = d / heads, out = new Float32Array(n * d);
  for (let hh = 0; hh < heads; hh++) for (let i = 0; i < n; i++) {
    const sc = new Float64Array(n);
    let mx = -Infinity;
    for (let j = 0; j < n; j++) {
      let s = 0;
      for (let c = 0; c < hd; c++) s += h[i * d + hh * hd + c] * h[j * d + hh * hd + c];
      sc[j] = s / Math.sqrt(hd);
      mx = Math.max(mx, sc[j]);
    }
    let z = 0;
    for (let j = 0; j < n; j++) z += (sc[j] = Math.exp(sc[j] - mx));
    for (let c = 0; c < hd; c++) {
      let s = 0;
      for (let j = 0; j < n; j++) s += (sc[j] / z) * h[j * d + hh * hd + c];
      out[i * d + hh * hd + c] = s;
    }
  }
  return out;
}

for (const provider of ['wasm', 'webgpu'] as ExecutionProvider[]) {
  describe(`graph ops on ${provider}`, () => {
    it('LayerNorm, linear, GELU(tanh), RMSNorm and attention match a float64 loop', async () => {
      await ortReady();
      const n = 5, d = 8;
      const g = new Graph('block');
      const x = g.input('x', 'float32', [1, n, d]);
      let h = layerNorm(g, x, d, 1e-5, 'ln');
      h = geluTanh(g, linear(g, h, 'fc', d, d));
      h = rmsNorm(g, h, 1e-6, { tensor: 'rms.weight', dim: d });
      const heads = splitHeads(g, h, 2, d / 2);
      g.output(mergeHeads(g, attention(g, heads, heads, heads, d / 2), 2, d / 2), 'y', 'float32', [1, n, d]);
      const built = g.build();
      expect(built.weights.map((w) => w.tensor).sort()).toEqual(['fc.bias', 'fc.weight', 'ln.bias', 'ln.weight', 'rms.weight']);

      const params: Record<string, Float32Array> = {
        'ln.weight': rand(d, 1), 'ln.bias': rand(d, 2), 'fc.weight': rand(d * d, 3), 'fc.bias': rand(d, 4), 'rms.weight': rand(d, 5),
      };
      const xv = rand(n * d, 6);
      const feeds: Record<string, ReturnType<typeof cpuTensor>> = { x: cpuTensor('float32', xv, [1, n, d]) };
      for (const w of built.weights) {
        let data = params[w.tensor];
        if (w.layout === 'transpose') {
          const [o, i] = w.shape;
          const t = new Float32Array(o * i);
          for (let r = 0; r < o; r++) for (let c = 0; c < i; c++) t[c * o + r] = data[r * i + c];
          data = t;
        }
        feeds[w.input] = cpuTensor('float32', data, built.inputs.find((v) => v.name === w.input)!.shape as number[]);
      }
      const session = await createSession(built, provider);
      const out = await session.run(feeds);
      const got = (await tensorData(out.y)) as Float32Array;
      const err = tensorError(got, cpuBlock(xv, n, d, params));
      expect(err.rel).toBeLessThan(1e-5);
      await session.release();
    });
  });
}

describe('4-bit MatMulNBits layout', () => {
  it('the wasm EP computes x·dequant(Wq)ᵀ for our blocks and scales, and quantization error is half a step', async () => {
    const { quantizeQ4, dequantizeQ4 } = await import('../../src/weights/quantize.ts');
    const { layoutWeight, toHostTensor } = await import('../../src/runtime/weightFeeds.ts');
    await ortReady();
    const n = 24, k = 80, m = 3; // K not a multiple of 32: exercises the padded last block
    const w = rand(n * k, 11);
    const q = quantizeQ4(w, n, k);
    const deq = dequantizeQ4(q);
    for (let r = 0; r < n; r++) for (let i = 0; i < k; i++) {
      const scale = q.scales[r * Math.ceil(k / 32) + Math.floor(i / 32)];
      // Half a step, except where the value lies beyond +7 steps (the scheme maps the block's extreme to −8
      // and clips at +7): there up to one step.
      const clipped = w[r * k + i] / scale > 7.5;
      expect(Math.abs(deq[r * k + i] - w[r * k + i])).toBeLessThanOrEqual(Math.abs(scale) * (clipped ? 1 : 0.5) + 1e-7);
    }
    const g = new Graph('q4');
    const x = g.input('x', 'float32', [1, m, k]);
    g.output(linear(g, x, 'fc', k, n, { quantized: true, bias: false }), 'y', 'float32', [1, m, n]);
    const built = g.build();
    expect(built.bytes.length).toBeGreaterThan(0);
    const xv = rand(m * k, 12);
    const feeds: Record<string, ReturnType<typeof cpuTensor>> = { x: cpuTensor('float32', xv, [1, m, k]) };
    const quantized = new Map();
    for (const b of built.weights) {
      const { data, dims } = layoutWeight(b, w, quantized);
      const t = toHostTensor(b, data, dims);
      feeds[b.input] = cpuTensor(t.dtype, t.data, t.dims);
    }
    const session = await createSession(built, 'wasm');
    const got = (await tensorData((await session.run(feeds)).y)) as Float32Array;
    const want = new Float32Array(m * n);
    for (let r = 0; r < m; r++) for (let o = 0; o < n; o++) {
      let s = 0;
      for (let i = 0; i < k; i++) s += xv[r * k + i] * deq[o * k + i];
      want[r * n + o] = s;
    }
    // accuracy_level 0: the product in fp32 on the dequantized weights (level 4 rounded activations to int8: 2e-2).
    const err = tensorError(got, want);
    console.log(`MatMulNBits on wasm against fp32 on the dequantized weights: ${formatError(err)}`);
    expect(err.rel).toBeLessThan(1e-5);
    await session.release();
  });
});

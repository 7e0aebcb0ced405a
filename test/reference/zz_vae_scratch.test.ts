import { it } from 'vitest';
import * as ort from 'onnxruntime-web/webgpu';
import { Graph } from '../../src/models/graph.ts';
import { ortReady } from '../helpers/ortSetup.ts';

async function time(label: string, g: Graph) {
  const b = g.build();
  const t = performance.now();
  const s = await ort.InferenceSession.create(b.bytes, { executionProviders: ['wasm'], graphOptimizationLevel: 'all' });
  console.log('T', label, (performance.now() - t).toFixed(0));
  await s.release();
}

it('timing', async () => {
  await ortReady();
  { const g = new Graph('warm'); const x = g.input('x', 'float32', [1, 4]); g.output(g.op('Add', [x, x]), 'y', 'float32', [1, 4]); await time('warm', g); }
  for (const n of [100, 200, 400, 800]) for (const kind of ['addsym', 'reduce']) {
    const g = new Graph(kind);
    const sym = kind.endsWith('sym') || kind === 'rangegather' || kind === 'reduce' || kind === 'pad';
    let x = g.input('x', 'float32', sym ? ['t', 8, 'h', 'w'] : [3, 8, 12, 10]);
    const w = g.input('w', 'float32', [8, 8, 3, 3, 3]);
    for (let i = 0; i < n; i++) {
      if (kind.startsWith('add')) x = g.op('Add', [x, x]);
      else if (kind.startsWith('conv')) x = g.op('Conv', [x, g.op('Squeeze', [g.op('Slice', [w, g.ints([0]), g.ints([1]), g.ints([2])]), g.ints([2])])], { pads: [1, 1, 1, 1] });
      else if (kind === 'gatherw') x = g.op('Conv', [x, g.op('Gather', [w, g.constant([1], 'int64', [])], { axis: 2 })], { pads: [1, 1, 1, 1] });
      else if (kind === 'rangegather') {
        const T = g.op('Gather', [g.op('Shape', [x]), g.constant([0], 'int64', [])], { axis: 0 });
        const idx = g.op('Max', [g.op('Add', [g.op('Range', [g.constant([0], 'int64', []), T, g.constant([1], 'int64', [])]), g.constant([i % 3 - 2], 'int64', [])]), g.constant([0], 'int64', [])]);
        x = g.op('Gather', [x, idx], { axis: 0 });
      } else if (kind === 'reduce') x = g.op('Sub', [x, g.op('ReduceMean', [x, g.ints([0, 2, 3])], { keepdims: 1 })]);
      else if (kind === 'pad') x = g.op('Slice', [g.op('Pad', [x, g.ints([0, 0, 1, 1, 0, 0, 1, 1])], { mode: 'edge' }), g.ints([1, 1]), g.ints([-1, -1]), g.ints([2, 3])]);
    }
    g.output(x, 'y', 'float32', sym ? ['t', 8, 'h', 'w'] : [3, 8, 12, 10]);
    await time(kind + n, g);
  }
}, 600000);

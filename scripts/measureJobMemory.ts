// Host memory of a job's weights read from a stored pack, without a GPU: the transformer's 60 blocks (and its
// embedders and head) and Llama's layers read from a pack folder (npm run convert's output) with the job's own
// hostWeights and the DiT's stageWeights, as the runners do — either all kept (what worker/dit.ts's host cache
// does today) or one block at a time (weights streamed and dropped). Prints the peak RSS of each.
// Usage: node scripts/run-node.mjs scripts/measureJobMemory.ts -- PACK_DIR [--keep]

import { join } from 'node:path';
import { buildDiT, parseDiTConfig } from '../src/models/dit.ts';
import { buildLlama, parseLlamaConfig } from '../src/models/llama.ts';
import { hostWeights } from '../src/runtime/weightFeeds.ts';
import type { HostBlock } from '../src/runtime/residency.ts';
import { openCheckpoint } from '../src/weights/checkpoint.ts';
import { nodeFolderSource } from '../src/weights/nodeFileSource.ts';
import { readPackManifest } from '../src/worker/modelStore.ts';
import { stageWeights } from '../src/worker/ditBlocks.ts';

const [dir, ...flags] = process.argv.slice(2).filter((a) => a !== '--');
const keep = flags.includes('--keep');
const manifest = await readPackManifest(nodeFolderSource(dir), dir);
const model = Object.values(manifest.models)[0];
const components = model.components as Record<string, string>;
const gib = (b: number) => `${(b / 2 ** 30).toFixed(2)} GiB`;
const rss = () => process.resourceUsage().maxRSS * 1024;
const held: HostBlock[] = [];
let bytes = 0;
const t0 = performance.now();

const dit = await openCheckpoint(nodeFolderSource(join(dir, components.transformer)), components.transformer, 'diffusion_pytorch_model.safetensors');
const c = parseDiTConfig(dit.config);
const network = buildDiT(c, { dtype: 'float16', quantized: true });
for (const set of [network.embed, network.head]) held.push(await hostWeights(set, dit));
for (const [plan, count] of [[network.blocks.dual, c.layers], [network.blocks.single, c.singleLayers]] as const) {
  for (let i = 0; i < count; i++) {
    const host = await hostWeights(plan.weights, dit, i);
    host.tensors = stageWeights(plan, host);
    for (const t of Object.values(host.tensors)) bytes += t.data.byteLength;
    if (keep) held.push(host);
  }
}
console.log(`transformer: ${gib(bytes)} of block weights read as stored (${keep ? 'all kept' : 'one block at a time'}); peak RSS ${gib(rss())}`);

const llama = await openCheckpoint(nodeFolderSource(join(dir, components.text_encoder)), components.text_encoder, 'model.safetensors');
const g = buildLlama(parseLlamaConfig(llama.config), { dtype: 'float16', quantized: true });
let llamaBytes = 0;
for (let i = 0; i < g.layers; i++) {
  const host = await hostWeights(g.layer, llama, i);
  for (const t of Object.values(host.tensors)) llamaBytes += t.data.byteLength;
  if (keep) held.push(host);
}
console.log(`llama: ${gib(llamaBytes)} of layer weights (${keep ? 'all kept, as the layer stack caches them' : 'one layer at a time'}); peak RSS ${gib(rss())}; ${((performance.now() - t0) / 1000).toFixed(0)} s, ${held.length} sets held`);

// How long the job bench's weights take to produce: reads every stored tensor of each network of the synthetic pack
// (bench/syntheticPack.ts) once, as a job's loaders do, and prints GB and GB/s per network — the part of each stage's
// time in bench/job.ts that a browser reading IndexedDB would spend differently.
//
//   node .gpu-bundle/packRead.mjs [--variant original|f1]

import { openComponent } from '../src/worker/modelPackage.ts';
import { NETWORKS } from '../src/worker/storedFormats.ts';
import { syntheticPack } from './syntheticPack.ts';
import { opt } from './args.ts';

const pack = await syntheticPack(opt('variant', 'original') === 'f1' ? 'framepack-f1' : 'framepack');
for (const component of NETWORKS) {
  const checkpoint = await openComponent(pack.model, component);
  const folder = pack.model.package.components[component];
  const t0 = performance.now();
  let bytes = 0;
  for (const t of checkpoint.tensors.values()) {
    const source = await pack.model.open(`${folder}/${t.file}`);
    bytes += (await source.read(t.begin, t.end - t.begin)).length;
  }
  const s = (performance.now() - t0) / 1000;
  console.log(`${component}: ${(bytes / 1e9).toFixed(2)} GB in ${s.toFixed(1)} s (${(bytes / 1e9 / s).toFixed(2)} GB/s)`);
}

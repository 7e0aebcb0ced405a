// `npm run check-reference -- [DIR] [--provider wasm|webgpu] [--dtype float32|float16] [--q4]`: runs every case in DIR
// through the real code path and prints one line per case with its error and PASS or FAIL. Exits non-zero when a
// case fails or DIR holds no case.

import { fixturesDirIn, listCaseFiles } from './caseFile.ts';
import { runCase, type CaseOptions } from './referenceCases.ts';
import './registerCases.ts';
import { setupOrt } from '../runtime/ort.ts';
import { nodeGpu } from '../runtime/nodeWebgpu.ts';
import { requestGpu } from '../runtime/device.ts';

function parseArgs(argv: string[]): { dir: string; options: CaseOptions; hardware: boolean } {
  const options: CaseOptions = { provider: 'wasm', dtype: 'float32', quantized: false };
  let dir = '';
  let hardware = false;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--provider') options.provider = argv[++i] as CaseOptions['provider'];
    else if (a === '--dtype') options.dtype = argv[++i] as CaseOptions['dtype'];
    else if (a === '--q4') options.quantized = true;
    else if (a === '--hardware') hardware = true;
    else if (!a.startsWith('--')) dir = a;
    else throw new Error(`unknown option ${a}`);
  }
  // Without DIR: the repository's own fixtures (or FRAMEPACK_FIXTURES), as `npm test` runs them.
  return { dir: dir || fixturesDirIn(process.cwd()), options, hardware };
}

async function main(): Promise<number> {
  const { dir, options, hardware } = parseArgs(process.argv.slice(2));
  const gpu = nodeGpu({ software: !hardware, dawnFlags: hardware ? ['enable-dawn-features=allow_unsafe_apis,vulkan_enable_f16_on_nvidia'] : [] });
  if (options.provider === 'webgpu') {
    const { device } = await requestGpu(gpu);
    (globalThis as { navigator?: { gpu?: GPU } }).navigator ??= {};
    (globalThis as unknown as { navigator: { gpu?: GPU } }).navigator.gpu ??= gpu;
    setupOrt({ device });
  } else {
    setupOrt({});
  }
  const files = await listCaseFiles(dir);
  if (files.length === 0) {
    console.error(`No reference cases in ${dir} (a case is a .safetensors file whose metadata has "case").`);
    return 1;
  }
  let failed = 0;
  const label = `${options.provider} ${options.dtype}${options.quantized ? ' q4' : ''}`;
  for (const file of files) {
    const t0 = performance.now();
    const r = await runCase(file, options).catch((e: Error) => ({ file, kind: '?', results: [], bar: 0, pass: false, skipped: e.message }));
    const worst = r.results.reduce((a, b) => (b.rel > a.rel ? b : a), r.results[0] ?? { tensor: '-', rel: 0, abs: 0, scale: 0 });
    const secs = ((performance.now() - t0) / 1000).toFixed(1);
    if (!r.pass) failed++;
    const detail = r.skipped ?? `err ${worst.rel.toExponential(2)} (abs ${worst.abs.toExponential(2)}, worst ${worst.tensor}; bar ${r.bar})`;
    console.log(`${r.pass ? 'PASS' : 'FAIL'}  ${r.file.padEnd(36)} ${r.kind.padEnd(14)} ${label}  ${detail}  ${secs}s`);
  }
  console.log(`${files.length - failed} passed, ${failed} failed`);
  return failed ? 1 : 0;
}

main().then(
  (code) => process.exit(code),
  (e: Error) => {
    console.error(e.message);
    process.exit(2);
  },
);

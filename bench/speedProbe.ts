// `node speedProbe.mjs [--path auto|portable] [--no-f16]`: the page's device speed probe (src/runtime/speedProbe.ts)
// on a real GPU, opened as the browser would open it, so the capability panel's estimate can be checked against the
// measured kernel speeds of bench/RESULTS.md. Prints one JSON line.
import { nodeGpu } from '../src/runtime/nodeWebgpu.ts';
import { requestGpu } from '../src/runtime/device.ts';
import { hardwareDawnFlags } from '../src/cli/nodeRuntime.ts';
import { deviceSpeedProbe } from '../src/runtime/speedProbe.ts';

const args = process.argv.slice(2);
const path = (args.includes('--path') ? args[args.indexOf('--path') + 1] : 'auto') as 'auto' | 'portable';
const noF16 = args.includes('--no-f16');
const software = args.includes('--software');
const { device, capabilities } = await requestGpu(nodeGpu({ software, dawnFlags: software ? [] : hardwareDawnFlags(path, noF16) }));
const t0 = performance.now();
const result = await deviceSpeedProbe(device, capabilities.shaderF16 && !noF16 ? 'f16' : 'f32');
console.log(JSON.stringify({ path, noF16, probeMs: performance.now() - t0, ...result }));
process.exit(0);

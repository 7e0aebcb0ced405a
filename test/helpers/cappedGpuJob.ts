// A real out-of-memory in the middle of a job, for test/unit/outOfMemory.test.ts (SwiftShader, in a child process
// whose data segment bash's `ulimit -d` caps) and for the GPU machine's run (bench/RESULTS.md). SwiftShader's device
// memory is host memory it mallocs and zero-fills, so under the cap its vkAllocateMemory fails with
// VK_ERROR_OUT_OF_DEVICE_MEMORY long before the machine's RAM runs out, as a full GPU's does.
//
// It probes the device's memory (runtime/gpuOutOfMemory.ts), then runs the bundled tiny model's job, two sections.
// Another user of the GPU — here a loop of buffers, as another tab would — takes all but `--leave` MiB of what is
// left at `--hog-at`:
//   - vae-encode: when the job announces its VAE stage. On SwiftShader the room left must also hold the host side's
//     own allocations (its memory is the same), so the job's request must be far larger than that room: the VAE
//     encode at a large --size. The other user takes, without waiting, what the cap (/proc/self/limits) less the
//     data segment now in use (/proc/self/status VmData) leaves.
//   - section-1: at the checkpoint after the first section, taking buffers until the device refuses (a real GPU,
//     whose memory is not the host's), so the second section's requests are refused and the first is kept.
// Prints one JSON line.
//
//   node capped.mjs MODEL_DIR --probe-cap BYTES --hog-at vae-encode|section-1 --leave MIB --size N [--gpu software|hardware]
import { nodeRuntime } from '../../src/cli/nodeRuntime.ts';
import { openLocalModel } from '../../src/cli/modelSources.ts';
import { probeGpuMemory } from '../../src/runtime/gpuOutOfMemory.ts';
import { DEFAULT_SETTINGS, runJob } from '../../src/worker/engine.ts';
import { readFileSync } from 'node:fs';

const argv = process.argv.slice(2);
const opt = (name: string, fallback: string) => (argv.includes(`--${name}`) ? argv[argv.indexOf(`--${name}`) + 1] : fallback);
const { runtime } = await nodeRuntime({ provider: 'webgpu', gpu: opt('gpu', 'software') as 'software' | 'hardware', quantized: true });
const device = runtime.device!;
const probe = await probeGpuMemory(device, Number(opt('probe-cap', '0')), 64 * 2 ** 20);
/** The data segment in use right after the probe (Linux): the probe must have given its memory back. */
const dataAfterProbe = Number(/VmData:\s+(\d+) kB/.exec(readFileSync('/proc/self/status', 'utf8'))?.[1] ?? NaN) * 1024;

/** Takes every buffer the device still gives, in quartering sizes down to 1 MiB, then gives back `leave` bytes. */
async function takeAllBut(leave: number): Promise<number> {
  const held: GPUBuffer[] = [];
  let taken = 0;
  for (let size = 1024 * 2 ** 20; size >= 2 ** 20; size /= 4) {
    for (;;) {
      device.pushErrorScope('out-of-memory');
      const b = device.createBuffer({ label: 'another user of the GPU', size: Math.min(size, device.limits.maxBufferSize / 2), usage: GPUBufferUsage.STORAGE });
      if (await device.popErrorScope()) {
        b.destroy();
        break;
      }
      held.push(b);
      taken += b.size;
    }
  }
  while (leave > 0 && held.length) {
    const b = held.pop()!;
    leave -= b.size;
    taken -= b.size;
    b.destroy();
  }
  device.queue.submit([device.createCommandEncoder().finish()]); // lets Dawn free what was given back
  await device.queue.onSubmittedWorkDone();
  return taken;
}

const model = await openLocalModel(argv[0]);
const size = Number(opt('size', '32'));
const hogAt = opt('hog-at', 'section-1');
const leave = Number(opt('leave', '0')) * 2 ** 20;
const settings = { ...DEFAULT_SETTINGS, prompt: 'a cat', seconds: 0.8, steps: 2, seed: 7, latentWindow: 3, bucket: { width: size, height: size } };
const image = { width: 64, height: 64, data: new Uint8Array(64 * 64 * 3).map((_, i) => (i * 7) % 256) };
const received: { section: number; frames: number }[] = [];
const stages: string[] = [];
let taken = 0;
let error: { name: string; message: string } | null = null;
/** Bytes of the data segment still free under the process's cap (bash's ulimit -d). */
function dataLeft(): number {
  const limit = /Max data size\s+(\d+)/.exec(readFileSync('/proc/self/limits', 'utf8'));
  const used = /VmData:\s+(\d+) kB/.exec(readFileSync('/proc/self/status', 'utf8'));
  if (!limit || !used) throw new Error('--hog-at vae-encode needs a data limit (ulimit -d) and /proc');
  return Number(limit[1]) - Number(used[1]) * 1024;
}

/** Takes what the data cap leaves less `leave`, in 64 MiB buffers, at once: the job's next requests find the rest. */
function takeAtOnce(leave: number): number {
  const chunk = 64 * 2 ** 20;
  const n = Math.max(0, Math.floor((dataLeft() - leave) / chunk));
  for (let i = 0; i < n; i++) device.createBuffer({ label: 'another user of the GPU', size: chunk, usage: GPUBufferUsage.STORAGE });
  return n * chunk;
}

try {
  await runJob(model, { image, settings }, runtime, { frames(final, _held, _p, k) { received.push({ section: k, frames: final.shape[2] }); } }, (e) => {
    if (e.type === 'stage') stages.push(e.stage);
    if (e.type === 'stage' && e.stage === 'vae-encode' && hogAt === 'vae-encode') taken = takeAtOnce(leave);
  }, {
    async onCheckpoint(c) {
      if (hogAt === 'section-1' && c.loop?.sectionsDone === 1) taken = await takeAllBut(leave);
    },
  });
} catch (e) {
  error = { name: (e as Error).name, message: (e as Error).message };
}
console.log(JSON.stringify({ probe, dataAfterProbe, taken, error, received, stages }));
process.exit(0);

// A GPU device lost in the middle of a job, in Node on SwiftShader through the engine (worker/jobRecovery.ts): the
// bundled tiny model at a tiny size (32×32, latent window 3, two sections, two steps), devices destroyed with
// device.destroy() as a GPU reset would. Ground truth is an uninterrupted run with the same seed. One job loses its
// device in the middle of section 0 and goes on on a new one, is killed once section 0 is saved in the CLI's job
// folder (cli/jobFolder.ts: the state and frames a killed process leaves on disk), goes on from that folder in a
// new "process", loses its device in the middle of section 1, and must end with the uninterrupted run's frames and
// Y4M, having run no encoder and no finished section twice; a third loss must end a job with RepeatedDeviceLossError.
import { existsSync, mkdtempSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { jobFolder } from '../../src/cli/jobFolder.ts';
import { openLocalModel } from '../../src/cli/modelSources.ts';
import { y4mSink } from '../../src/cli/y4mSink.ts';
import { RepeatedDeviceLossError } from '../../src/errors/index.ts';
import { videoFramesAfter } from '../../src/pipeline/frameCount.ts';
import type { Tensor } from '../../src/pipeline/tensor.ts';
import { nodeGpu } from '../../src/runtime/nodeWebgpu.ts';
import { requestGpu } from '../../src/runtime/device.ts';
import { setupOrt } from '../../src/runtime/ort.ts';
import { DEFAULT_SETTINGS, runJob, type JobCheckpoint, type JobEvent, type RuntimeChoice } from '../../src/worker/engine.ts';
import { runJobWithRecovery } from '../../src/worker/jobRecovery.ts';
import { decodeJobState, encodeJobState } from '../../src/worker/jobState.ts';
import type { FrameSink } from '../../src/worker/framepackLoop.ts';
import type { ModelSource } from '../../src/worker/modelPackage.ts';
import { collectVideo } from '../../src/worker/videoCollector.ts';
import { ortReady } from '../helpers/ortSetup.ts';

const settings = { ...DEFAULT_SETTINGS, prompt: 'a cat', seconds: 0.8, steps: 2, seed: 7, latentWindow: 3, bucket: { width: 32, height: 32 } };
const image = { width: 64, height: 64, data: new Uint8Array(64 * 64 * 3).map((_, i) => (i * 7) % 256) };

/** A runtime on a new SwiftShader device (each try gets its own, as after a real loss). */
async function freshRuntime(): Promise<{ runtime: RuntimeChoice; device: GPUDevice }> {
  const ctx = await requestGpu(nodeGpu({ software: true }));
  setupOrt({ device: ctx.device });
  return {
    device: ctx.device,
    runtime: {
      provider: 'webgpu', dtype: 'float32', quantized: true, transformerBudgetBytes: Infinity, device: ctx.device,
      maxStorageBufferBindingSize: ctx.capabilities.maxStorageBufferBindingSize, deviceLost: ctx.lost,
    },
  };
}

function psnr(a: Tensor, b: Tensor): number {
  let se = 0;
  for (let i = 0; i < a.data.length; i++) se += (a.data[i] - b.data[i]) ** 2;
  const mse = se / a.data.length;
  return mse === 0 ? Infinity : 10 * Math.log10(4 / mse); // pixels in [−1, 1]: peak-to-peak 2
}

describe('a lost GPU device during a job (Node, SwiftShader)', () => {
  let model: ModelSource;
  const uninterrupted = collectVideo();
  const checkpoints: JobCheckpoint[] = [];

  const uninterruptedY4m = join(mkdtempSync(join(tmpdir(), 'uninterrupted-')), 'video.y4m');

  beforeAll(async () => {
    await ortReady();
    model = await openLocalModel(join(import.meta.dirname, '../../public/models/tiny'));
    const { runtime } = await freshRuntime();
    const y4m = y4mSink(uninterruptedY4m, model.package.fps, `${uninterruptedY4m}.parts`);
    await runJob(model, { image, settings }, runtime, {
      frames(final, held, placement, k) {
        uninterrupted.sink.frames(final, held, placement, k);
        y4m.frames(final, held, placement, k);
      },
    }, () => {}, { onCheckpoint: (c) => { checkpoints.push(c); } });
    y4m.finish();
  }, 600_000);

  it('goes on after a loss, a kill with the state in the CLI\'s job folder, and a second loss, to the uninterrupted run\'s video', async () => {
    const cache = mkdtempSync(join(tmpdir(), 'job-folder-'));
    const video = collectVideo();
    const received: number[][] = [[], []];
    const events: { run: number; attempt: number; e: JobEvent }[] = [];
    let run = 0, attempt = -1;
    let device: GPUDevice | null = null;
    const openRuntime = async (n: number) => {
      attempt = n;
      const r = await freshRuntime();
      device = r.device;
      return r.runtime;
    };
    // Lost after the first step of section `section` on the first device of this run.
    const losing = (section: number) => (e: JobEvent) => {
      events.push({ run, attempt, e });
      if (e.type === 'step' && e.step === 1 && e.section === section && attempt === 0) device!.destroy();
    };
    const sinkFor = (y4m: ReturnType<typeof y4mSink>): FrameSink => ({
      frames(final, held, placement, k) {
        received[run].push(k);
        video.sink.frames(final, held, placement, k);
        y4m.frames(final, held, placement, k);
      },
    });

    // Process 1: its device is lost in section 0; a new one finishes the section; then the process is killed.
    const first = jobFolder(cache, 'job');
    const controller = new AbortController();
    await expect(runJobWithRecovery(model, { image, settings }, sinkFor(y4mSink(join(cache, 'first.y4m'), model.package.fps, first.dir)), losing(0), {
      signal: controller.signal,
      openRuntime,
      onCheckpoint(c) {
        first.save(c);
        if (c.loop?.sectionsDone === 1) controller.abort(new Error('the process was killed'));
      },
    })).rejects.toThrow('the process was killed');
    // What a process killed between the next section's frames and its state would also leave: a later part.
    writeFileSync(join(first.dir, 'section-1.frames'), 'cut short');
    const stateBytes = statSync(join(first.dir, 'state.bin')).size;

    // Process 2: the folder read back from disk; its first device is lost in section 1, a new one finishes.
    run = 1;
    const folder = jobFolder(cache, 'job');
    const resume = folder.saved()!;
    expect(resume.loop?.sectionsDone).toBe(1);
    const out = join(cache, 'continued.y4m');
    const y4m = y4mSink(out, model.package.fps, folder.dir, { sectionsDone: 1, held: resume.loop!.held, placement: 'before' });
    await runJobWithRecovery(model, { image, settings }, sinkFor(y4m), losing(1), { resume, openRuntime, onCheckpoint: (c) => folder.save(c) });
    const frames = y4m.finish();

    const recoveries = events.filter((x) => x.e.type === 'recovery').map((x) => ({ run: x.run, from: (x.e as Extract<JobEvent, { type: 'recovery' }>).fromSection }));
    expect(recoveries).toEqual([{ run: 0, from: 0 }, { run: 1, from: 1 }]);
    // Each finished section reached a sink once; the encoders ran once; the second process ran section 1 only.
    expect(received).toEqual([[0], [1]]);
    expect(events.filter((x) => x.e.type === 'timing' && x.e.what === 'llama')).toHaveLength(1);
    expect(new Set(events.filter((x) => x.run === 1 && x.e.type === 'step').map((x) => (x.e as { section: number }).section))).toEqual(new Set([1]));
    const got = video.whole(), want = uninterrupted.whole();
    expect(frames).toBe(videoFramesAfter('original', 2, 2, 3));
    expect(got.shape[2]).toBe(frames);
    expect(got.shape).toEqual(want.shape);
    const p = psnr(got, want);
    console.log(`two losses and a kill: state.bin ${stateBytes} bytes after section 1; ${frames} frames, PSNR against the uninterrupted run ${p} dB`);
    expect(p).toBe(Infinity); // the same kernels on the same software GPU: bit-identical
    // Byte for byte the Y4M the uninterrupted run wrote; a finished job's folder is deleted (as the CLI does).
    expect(readFileSync(out).equals(readFileSync(uninterruptedY4m))).toBe(true);
    folder.clear();
    expect(existsSync(folder.dir)).toBe(false);
  }, 600_000);

  it('ends with RepeatedDeviceLossError on a third loss, keeping the finished section', async () => {
    const saved = decodeJobState(encodeJobState(checkpoints.find((c) => c.loop?.sectionsDone === 1)!));
    let device: GPUDevice | null = null;
    const received: number[] = [];
    let thrown: unknown = null;
    try {
      // Each device is lost as its try's sampling begins (the losses' place is the two-loss test's business).
      await runJobWithRecovery(model, { image, settings }, { frames(_f, _h, _p, k) { received.push(k); } }, (e) => {
        if (e.type === 'stage' && e.stage === 'sampling') device!.destroy();
      }, {
        resume: saved,
        async openRuntime() {
          const r = await freshRuntime();
          device = r.device;
          return r.runtime;
        },
      });
    } catch (e) {
      thrown = e;
    }
    console.log(`third loss: ${(thrown as Error)?.name}: ${(thrown as Error)?.message}`);
    expect(thrown).toBeInstanceOf(RepeatedDeviceLossError);
    expect((thrown as Error).message).toMatch(/lost 3 times.*the 1 finished section is kept\. Try a smaller resolution/);
    expect(received).toEqual([]);
  }, 600_000);
});

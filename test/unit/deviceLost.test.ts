// A GPU device lost in the middle of a job, in Node on SwiftShader through the engine (worker/engine.ts runJob): the
// bundled tiny model, two sections, the device destroyed once the first section's frames are out. The job must end
// with a DeviceLostError (not whatever the next failing GPU call says) and the first section's frames must have
// reached the sink. The device is this file's own, destroyed for good: nothing else runs on it afterwards.
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { openLocalModel } from '../../src/cli/modelSources.ts';
import { DeviceLostError } from '../../src/errors/index.ts';
import { videoFramesAfter } from '../../src/pipeline/frameCount.ts';
import { DEFAULT_SETTINGS, runJob, type RuntimeChoice } from '../../src/worker/engine.ts';
import type { FrameSink } from '../../src/worker/framepackLoop.ts';
import { ortReady } from '../helpers/ortSetup.ts';
import { testGpu } from '../helpers/webgpu.ts';

describe('a lost GPU device during a job (Node, SwiftShader)', () => {
  it('ends the job with DeviceLostError after the first section, whose frames the sink already has', async () => {
    await ortReady();
    const ctx = await testGpu();
    const model = await openLocalModel(join(import.meta.dirname, '../../public/models/tiny'));
    const runtime: RuntimeChoice = {
      provider: 'webgpu', dtype: 'float32', quantized: true, transformerBudgetBytes: Infinity, device: ctx.device,
      maxStorageBufferBindingSize: ctx.capabilities.maxStorageBufferBindingSize, deviceLost: ctx.lost,
    };
    const received: { section: number; frames: number }[] = [];
    const sink: FrameSink = {
      frames(final, held, _placement, section) {
        received.push({ section, frames: final.shape[2] + held.shape[2] });
        if (section === 0) ctx.device.destroy(); // as a GPU reset would, between two sections' work
      },
    };
    const image = { width: 64, height: 64, data: new Uint8Array(64 * 64 * 3).map((_, i) => (i * 7) % 256) };
    const settings = { ...DEFAULT_SETTINGS, prompt: 'a cat', seconds: 2.4, steps: 1, seed: 7 };
    let thrown: unknown = null;
    try {
      await runJob(model, { image, settings }, runtime, sink, () => {});
    } catch (e) {
      thrown = e;
    }
    console.log(`lost device: ${(thrown as Error)?.name}: ${(thrown as Error)?.message}`);
    expect(thrown).toBeInstanceOf(DeviceLostError);
    expect((thrown as Error).message).toMatch(/GPU device was lost \(destroyed/);
    // The first section's frames were delivered before the loss: what the formula gives for one of two sections.
    expect(received.map((r) => r.section)).toEqual([0]);
    expect(received[0].frames).toBe(videoFramesAfter('original', 1, 2, model.package.latentWindow));
  }, 600_000);
});

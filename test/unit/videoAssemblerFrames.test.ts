// VideoAssembler.addFrames: the app's sink gets frames the generation loop has already joined (FrameSink's final and
// held frames, as runFramePackLoop makes them with the soft-append streaming joins), not the raw decodes. Fed that
// way, section by section, the assembled video must be exactly the reference's video so far (the synthetic sections
// and the reference's soft_append rebuilt by hand in test/helpers/syntheticVideo.ts), in both loop orders.

import { describe, expect, it } from 'vitest';
import type { LoopVariant } from '../../src/pipeline/sectionPlan.ts';
import type { Tensor } from '../../src/pipeline/tensor.ts';
import { overlapFrames } from '../../src/pipeline/frameCount.ts';
import { appendStreaming, prependStreaming, startStreaming, type StreamingJoin } from '../../src/pipeline/softAppend.ts';
import type { EncodedRun } from '../../src/video/mp4Writer.ts';
import { VideoAssembler, type RunEncoder } from '../../src/video/videoAssembler.ts';
import { VideoInputError } from '../../src/errors/index.ts';
import { LATENT_WINDOW, referenceVideo, sectionDecode } from '../helpers/syntheticVideo.ts';

const W = 4, H = 2;

/** Lossless stand-in for WebCodecs: an "MP4" is the RGBA frames back to back. */
const encoder: RunEncoder = {
  async encodeRun(frames) {
    const out = [...frames].map((f, i) => ({ data: f.slice(), key: i === 0 }));
    return { frames: out, byteLength: out.reduce((n, f) => n + f.data.length, 0) } satisfies EncodedRun;
  },
  mux: (runs) => new Blob(runs.flatMap((r) => r.frames).map((f) => f.data as Uint8Array<ArrayBuffer>)),
  close() {},
};

async function rgb(blob: Blob): Promise<number[][]> {
  const bytes = new Uint8Array(await blob.arrayBuffer());
  return Array.from({ length: bytes.length / (W * H * 4) }, (_, t) =>
    Array.from({ length: W * H * 3 }, (_, j) => bytes[(t * W * H + Math.floor(j / 3)) * 4 + (j % 3)]));
}

describe('VideoAssembler.addFrames (frames joined by the loop)', () => {
  for (const variant of ['original', 'f1'] as LoopVariant[]) {
    it(`${variant}, 3 sections: after every section, exactly the reference's video so far`, async () => {
      const sections = 3;
      const assembler = new VideoAssembler(variant, LATENT_WINDOW, async () => encoder);
      const placement = variant === 'f1' ? 'after' : 'before';
      const overlap = overlapFrames(LATENT_WINDOW);
      let held: Tensor | null = null;
      for (let s = 0; s < sections; s++) {
        const pixels = sectionDecode(variant, sections, s, W, H);
        // What runFramePackLoop hands its sink.
        const join: StreamingJoin = held === null ? startStreaming(pixels, overlap, placement) : placement === 'after' ? appendStreaming(held, pixels, overlap) : prependStreaming(pixels, held, overlap);
        held = join.held;
        await assembler.addFrames(join.final, join.held, placement);
        const video = await assembler.video();
        const want = referenceVideo(variant, sections, s + 1, W, H).map((f) => Array.from(f));
        expect(video.frames).toBe(want.length);
        expect(await rgb(video.blob)).toEqual(want);
      }
    });
  }

  it('refuses frames placed against the loop order', async () => {
    const assembler = new VideoAssembler('f1', LATENT_WINDOW, async () => encoder);
    const join = startStreaming(sectionDecode('f1', 2, 0, W, H), overlapFrames(LATENT_WINDOW), 'after');
    await expect(assembler.addFrames(join.final, join.held, 'before')).rejects.toBeInstanceOf(VideoInputError);
  });
});

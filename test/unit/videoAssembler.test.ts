import { describe, expect, it } from 'vitest';
import type { LoopVariant } from '../../src/pipeline/sectionPlan.ts';
import type { EncodedRun } from '../../src/video/mp4Writer.ts';
import { VideoAssembler, type RunEncoder } from '../../src/video/videoAssembler.ts';
import { VideoInputError } from '../../src/errors/index.ts';
import { LATENT_WINDOW, referenceVideo, sectionDecode } from '../helpers/syntheticVideo.ts';

const W = 4, H = 2;

/** A lossless stand-in for WebCodecs: a "frame" is its RGBA bytes, an "MP4" the runs' frames back to back. */
class RecordingEncoder implements RunEncoder {
  encodedFrames = 0;
  async encodeRun(frames: Iterable<Uint8Array>): Promise<EncodedRun> {
    const out = [...frames].map((f, i) => ({ data: f.slice(), key: i === 0 }));
    this.encodedFrames += out.length;
    return { frames: out, byteLength: out.reduce((n, f) => n + f.data.length, 0) };
  }
  mux(runs: readonly EncodedRun[]): Blob {
    const frames = runs.flatMap((r) => r.frames);
    expect(frames[0].key).toBe(true);
    return new Blob(frames.map((f) => f.data as Uint8Array<ArrayBuffer>));
  }
  close(): void {}
}

/** The "MP4" back as rgb24 frames (alpha dropped, and checked to be 255). */
async function rgbFrames(blob: Blob): Promise<Uint8Array[]> {
  const bytes = new Uint8Array(await blob.arrayBuffer());
  const n = bytes.length / (W * H * 4);
  return Array.from({ length: n }, (_, t) => {
    const rgb = new Uint8Array(W * H * 3);
    for (let i = 0; i < W * H; i++) {
      for (let c = 0; c < 3; c++) rgb[3 * i + c] = bytes[(t * W * H + i) * 4 + c];
      expect(bytes[(t * W * H + i) * 4 + 3]).toBe(255);
    }
    return rgb;
  });
}

describe('VideoAssembler (lossless stand-in encoder)', () => {
  for (const variant of ['original', 'f1'] as LoopVariant[]) {
    for (const sections of [1, 2, 4]) {
      it(`${variant}, ${sections} section(s): after every section, exactly the reference's video so far`, async () => {
        const encoder = new RecordingEncoder();
        const assembler = new VideoAssembler(variant, LATENT_WINDOW, async () => encoder);
        for (let s = 0; s < sections; s++) {
          await assembler.addSection(sectionDecode(variant, sections, s, W, H));
          const video = await assembler.video();
          const want = referenceVideo(variant, sections, s + 1, W, H);
          expect(video.frames).toBe(want.length);
          const got = await rgbFrames(video.blob);
          expect(got.length).toBe(want.length);
          got.forEach((f, i) => {
            expect(Array.from(f), `frame ${i} after section ${s + 1}`).toEqual(Array.from(want[i]));
          });
        }
        // Only the 33 held frames are ever encoded twice (once per video() call), everything else once.
        expect(assembler.frames).toBe(36 * sections + 1);
        expect(encoder.encodedFrames).toBe(36 * sections + 1 - 33 + 33 * sections);
      });
    }
  }

  it('counts the reference frames per section: 33/69/105/145 (original) and 37/73/109/145 (F1)', async () => {
    for (const [variant, counts] of [['original', [33, 69, 105, 145]], ['f1', [37, 73, 109, 145]]] as const) {
      const assembler = new VideoAssembler(variant, LATENT_WINDOW, async () => new RecordingEncoder());
      const got: number[] = [];
      for (let s = 0; s < 4; s++) {
        await assembler.addSection(sectionDecode(variant, 4, s, W, H));
        got.push(assembler.frames);
      }
      expect(got).toEqual(counts);
    }
  });

  it('re-encodes the held frames only when a section changed them', async () => {
    const encoder = new RecordingEncoder();
    const assembler = new VideoAssembler('original', LATENT_WINDOW, async () => encoder);
    await assembler.addSection(sectionDecode('original', 2, 0, W, H));
    await assembler.video();
    const before = encoder.encodedFrames;
    await assembler.video();
    expect(encoder.encodedFrames).toBe(before);
  });

  it('says what went wrong on misuse', async () => {
    const assembler = new VideoAssembler('f1', LATENT_WINDOW, async () => new RecordingEncoder());
    await expect(assembler.video()).rejects.toThrow(VideoInputError);
    await assembler.addSection(sectionDecode('f1', 2, 0, W, H));
    await expect(assembler.addSection(sectionDecode('f1', 2, 1, W + 2, H))).rejects.toThrow(/size 4×2/);
    await expect(assembler.addSection({ data: new Float32Array(3 * 10 * W * H), shape: [1, 3, 10, H, W] })).rejects.toThrow(/at least the 33/);
  });
});

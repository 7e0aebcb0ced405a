// A FrameSink that writes a Y4M file in time order without holding the video in memory. Each section's final
// frames are written to a part file as the section finishes (F1 appends at the end of the video, the original loop
// makes the end first), and finish() joins the parts in time order around the held overlap frames. The parts stay
// until the caller deletes their folder, so a job stopped or killed can go on from them (cli/jobFolder.ts).

import { closeSync, mkdirSync, openSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import type { Tensor } from '../pipeline/tensor.ts';
import type { FrameSink } from '../worker/framepackLoop.ts';
import { videoDims } from '../video/frameConvert.ts';
import { y4mFrames, y4mHeader } from '../video/y4m.ts';

export interface Y4mSink extends FrameSink {
  /** Writes the parts so far plus the held overlap frames to the file, and returns the number of frames written. */
  finish(): number;
}

export interface Y4mResume {
  /** Sections whose parts are kept (a part of a later section was written before its state was saved: dropped). */
  sectionsDone: number;
  held: Tensor;
  placement: 'before' | 'after';
}

/** A Y4M sink writing to `path`, its section parts in `partsDir`; `resume` picks up the parts a stopped job left. */
export function y4mSink(path: string, fps: number, partsDir: string, resume?: Y4mResume): Y4mSink {
  mkdirSync(partsDir, { recursive: true });
  const partPath = (k: number) => join(partsDir, `section-${k}.frames`);
  const sectionOf = (name: string) => Number(/^section-(\d+)\.frames$/.exec(name)?.[1] ?? NaN);
  let held: Tensor | null = resume?.held ?? null;
  let placement: 'before' | 'after' = resume?.placement ?? 'after';
  for (const name of readdirSync(partsDir)) {
    const k = sectionOf(name);
    if (!(k < (resume?.sectionsDone ?? 0))) rmSync(join(partsDir, name));
  }
  const writeFrames = (target: number, pixels: Tensor) => {
    for (const chunk of y4mFrames(pixels)) writeSync(target, chunk);
  };
  return {
    frames(final, h, p, k) {
      placement = p;
      held = h;
      // Written whole, then renamed: a part that exists is complete.
      const partial = `${partPath(k)}.partial`;
      const fd = openSync(partial, 'w');
      writeFrames(fd, final);
      closeSync(fd);
      renameSync(partial, partPath(k));
    },
    finish() {
      if (!held) throw new Error('No frames were made.');
      const h: Tensor = held;
      const { width, height } = videoDims(h);
      const frameBytes = 'FRAME\n'.length + (width * height * 3) / 2;
      const parts = readdirSync(partsDir).map(sectionOf).filter((k) => Number.isInteger(k)).sort((a, b) => a - b);
      // Time order: F1's sections follow one another; the original loop's newest section comes first.
      const ordered = placement === 'after' ? parts : [...parts].reverse();
      const out = openSync(path, 'w');
      writeSync(out, y4mHeader(width, height, fps));
      let frames = 0;
      if (placement === 'before') writeFrames(out, h);
      for (const k of ordered) {
        frames += statSync(partPath(k)).size / frameBytes;
        writeSync(out, readFileSync(partPath(k)));
      }
      if (placement === 'after') writeFrames(out, h);
      closeSync(out);
      return frames + h.shape[2];
    },
  };
}

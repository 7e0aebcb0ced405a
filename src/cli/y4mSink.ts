// A FrameSink that writes a Y4M file in time order without holding the video in memory. F1 appends final frames
// straight to the file. The original loop makes the end of the video first, so each section's final frames are
// spilled to a part file and the parts are joined newest-first when the job ends (or is stopped).

import { closeSync, openSync, readFileSync, rmSync, writeSync } from 'node:fs';
import type { Tensor } from '../pipeline/tensor.ts';
import type { FrameSink } from '../worker/framepackLoop.ts';
import { videoDims } from '../video/frameConvert.ts';
import { y4mFrames, y4mHeader } from '../video/y4m.ts';

export interface Y4mSink extends FrameSink {
  /** Writes what is final plus the held overlap frames, and returns the number of frames written. */
  finish(): number;
}

export function y4mSink(path: string, fps: number): Y4mSink {
  let fd: number | null = null;
  let header = '';
  let held: Tensor | null = null;
  let placement: 'before' | 'after' = 'after';
  let written = 0;
  const parts: string[] = [];
  const writeFrames = (target: number, pixels: Tensor) => {
    for (const chunk of y4mFrames(pixels)) writeSync(target, chunk);
  };
  return {
    frames(final, h, p, k) {
      placement = p;
      held = h;
      const { width, height } = videoDims(h);
      header ||= y4mHeader(width, height, fps);
      if (p === 'after') {
        if (fd === null) {
          fd = openSync(path, 'w');
          writeSync(fd, header);
        }
        writeFrames(fd, final);
      } else if (final.shape[2] > 0) {
        const part = `${path}.part${k}`;
        const pfd = openSync(part, 'w');
        writeFrames(pfd, final);
        closeSync(pfd);
        parts.push(part);
      }
      written += final.shape[2];
    },
    finish() {
      if (!held) throw new Error('No frames were made.');
      const h: Tensor = held;
      if (placement === 'after') {
        writeFrames(fd!, h);
        closeSync(fd!);
      } else {
        const out = openSync(path, 'w');
        writeSync(out, header);
        writeFrames(out, h);
        for (const part of [...parts].reverse()) {
          writeSync(out, readFileSync(part));
          rmSync(part);
        }
        closeSync(out);
      }
      return written + h.shape[2];
    },
  };
}

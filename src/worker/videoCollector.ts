// A FrameSink that keeps the whole video as one tensor: for the CLI's Y4M output and for the reference cases,
// which compare every pixel. (The app streams frames to the MP4 encoder instead and keeps only the overlap.)

import type { Tensor } from '../pipeline/tensor.ts';
import { concatFrames } from '../pipeline/history.ts';
import type { FrameSink } from './framepackLoop.ts';

export interface VideoCollector {
  sink: FrameSink;
  /** Every final frame plus the frames still held, in time order, [1, 3, T, H, W]. */
  whole(): Tensor;
}

export function collectVideo(): VideoCollector {
  // Original loop: finals arrive newest-first in time, each preceding the earlier ones; F1: in time order.
  const finals: Tensor[] = [];
  let held: Tensor | null = null;
  let placement: 'before' | 'after' = 'after';
  return {
    sink: {
      frames(final, h, p) {
        placement = p;
        held = h;
        if (final.shape[2] > 0) finals.push(final);
      },
    },
    whole() {
      if (!held) throw new Error('No section has been decoded yet.');
      const parts = placement === 'after' ? [...finals, held] : [held, ...[...finals].reverse()];
      return concatFrames(parts);
    },
  };
}

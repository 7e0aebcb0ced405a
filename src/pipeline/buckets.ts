// Resolution buckets: FramePack never generates at the input's own size but at the listed (height, width) whose
// aspect ratio is nearest, so that latent grids stay multiples of 16 px and token counts stay bounded. The rule
// (diffusers_helper/bucket_tools.py, reference §3.1) has a tie-break that decides where a square image lands, so
// it is reproduced to the letter; the list itself is a parameter because the tiny test model brings its own.

import { BucketError } from '../errors/pipeline.ts';
import { pythonRound } from './pythonRound.ts';

/** One generation size, in pixels. */
export interface Bucket {
  readonly height: number;
  readonly width: number;
}

/** The reference's only bucket family (key 640, ≈ 0.39 MP), in the reference's iteration order. */
export const BUCKETS_640: readonly Bucket[] = [
  [416, 960], [448, 864], [480, 832], [512, 768], [544, 704], [576, 672], [608, 640],
  [640, 608], [672, 576], [704, 544], [768, 512], [832, 480], [864, 448], [960, 416],
].map(([height, width]) => Object.freeze({ height, width }));

/** The resolution the reference list is drawn for; scaled lists are relative to it. */
export const REFERENCE_RESOLUTION = 640;

/**
 * The bucket whose aspect ratio is nearest to h:w, measured as |h·bw − w·bh|. Buckets are visited in order and a
 * candidate replaces the best one when its metric is <= the best, so ties go to the LATER entry: with
 * BUCKETS_640 a square image gets 640 tall × 608 wide. Throws BucketError for an empty list or a size that is
 * not a positive finite number.
 */
export function findNearestBucket(height: number, width: number, buckets: readonly Bucket[]): Bucket {
  if (!(height > 0 && width > 0 && Number.isFinite(height) && Number.isFinite(width))) {
    throw new BucketError(`Image size ${width}×${height} is not a size; the image must have pixels.`);
  }
  if (buckets.length === 0) throw new BucketError('The bucket list is empty; the model config must list at least one bucket.');
  let best = buckets[0];
  let bestMetric = Infinity;
  for (const bucket of buckets) {
    const metric = Math.abs(height * bucket.width - width * bucket.height);
    // <= rather than <: the reference keeps the later of two equally good buckets.
    if (metric <= bestMetric) {
      bestMetric = metric;
      best = bucket;
    }
  }
  return best;
}

/**
 * One 640-family bucket rescaled the way the macOS fork (brandon929/FramePack) does for its resolution setting:
 * each side × resolution/640, rounded (Python's half-to-even round) to a multiple of 16. The expression keeps the
 * fork's operation order, (side · (resolution / 640)) / 16, so that halves fall exactly where they fall there.
 */
export function scaleBucket(bucket: Bucket, resolution: number): Bucket {
  if (!(resolution > 0 && Number.isFinite(resolution))) {
    throw new BucketError(`Resolution ${resolution} is not a positive number of pixels.`);
  }
  if (resolution === REFERENCE_RESOLUTION) return bucket;
  const factor = resolution / REFERENCE_RESOLUTION;
  const height = pythonRound((bucket.height * factor) / 16) * 16;
  const width = pythonRound((bucket.width * factor) / 16) * 16;
  if (height === 0 || width === 0) {
    throw new BucketError(`Resolution ${resolution} is too small: bucket ${bucket.width}×${bucket.height} rounds to an empty size.`);
  }
  return Object.freeze({ height, width });
}

/** The whole 640 list rescaled for a resolution setting (same order; for menus and for lookups by size). */
export function scaledBuckets(resolution: number): Bucket[] {
  return BUCKETS_640.map((bucket) => scaleBucket(bucket, resolution));
}

/**
 * The macOS fork's choice for a resolution setting: the nearest bucket is picked in the 640 list and only then
 * rescaled. (Searching the rescaled list instead can differ near a boundary, because rounding to 16 shifts the
 * rescaled aspect ratios.) The fork iterates a Python set; in CPython's order the square case also lands on
 * 640×608 before scaling, as here.
 */
export function findNearestScaledBucket(height: number, width: number, resolution: number): Bucket {
  return scaleBucket(findNearestBucket(height, width, BUCKETS_640), resolution);
}

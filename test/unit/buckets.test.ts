import { BucketError } from '../../src/errors/index.ts';
import { describe, expect, it } from 'vitest';
import { BUCKETS_640, findNearestBucket, findNearestScaledBucket, scaleBucket, scaledBuckets, type Bucket } from '../../src/pipeline/buckets.ts';

/** framepack-reference.md §3.1, (height, width), in the reference's order. */
const SPEC_640: [number, number][] = [
  [416, 960], [448, 864], [480, 832], [512, 768], [544, 704], [576, 672], [608, 640],
  [640, 608], [672, 576], [704, 544], [768, 512], [832, 480], [864, 448], [960, 416],
];

/** Independent of the code under test: all metrics first, then the LAST index among the minima. */
function bruteForce(h: number, w: number, list: [number, number][]): [number, number] {
  const metrics = list.map(([bh, bw]) => Math.abs(h * bw - w * bh));
  const min = Math.min(...metrics);
  return list[metrics.lastIndexOf(min)];
}

const pair = (b: Bucket): [number, number] => [b.height, b.width];

/** Many aspect ratios: every size pair on a coarse grid, plus phone/photo/video sizes and extreme strips. */
function sizes(): [number, number][] {
  const out: [number, number][] = [];
  for (let h = 16; h <= 2048; h += 37) for (let w = 16; w <= 2048; w += 41) out.push([h, w]);
  out.push([1080, 1920], [1920, 1080], [3024, 4032], [4032, 3024], [720, 1280], [1, 4000], [4000, 1], [333, 334], [512, 512]);
  return out;
}

describe('findNearestBucket with the reference 640 list', () => {
  it('holds exactly the spec table, in order', () => {
    expect(BUCKETS_640.map(pair)).toEqual(SPEC_640);
  });

  it('agrees with a brute-force search (ties to the later entry) for many aspect ratios', () => {
    const all = sizes();
    let mismatches = 0;
    for (const [h, w] of all) {
      if (pair(findNearestBucket(h, w, BUCKETS_640)).join() !== bruteForce(h, w, SPEC_640).join()) mismatches++;
    }
    expect(all.length).toBeGreaterThan(2500);
    expect(mismatches).toBe(0);
  });

  it('puts a square image on 640 tall × 608 wide (the tie with 608×640 goes to the later entry)', () => {
    for (const s of [1, 64, 512, 608, 640, 1024, 4096]) {
      expect(pair(findNearestBucket(s, s, BUCKETS_640))).toEqual([640, 608]);
    }
  });

  it('transposes with the input except at ties, which always go to the later entry', () => {
    let checked = 0;
    for (const [h, w] of sizes()) {
      const metrics = SPEC_640.map(([bh, bw]) => Math.abs(h * bw - w * bh));
      const tie = metrics.filter((m) => m === Math.min(...metrics)).length > 1;
      if (tie) continue;
      const [bh, bw] = pair(findNearestBucket(h, w, BUCKETS_640));
      expect(pair(findNearestBucket(w, h, BUCKETS_640))).toEqual([bw, bh]);
      checked++;
    }
    expect(checked).toBeGreaterThan(2500);
    // The one tie every user meets: a square is not symmetric.
    expect(pair(findNearestBucket(300, 300, BUCKETS_640))).toEqual([640, 608]);
  });

  it('takes any list (the tiny model brings its own) and rejects an empty one or a non-size', () => {
    const tiny: Bucket[] = [{ height: 96, width: 80 }, { height: 80, width: 96 }];
    expect(pair(findNearestBucket(50, 50, tiny))).toEqual([80, 96]);
    expect(pair(findNearestBucket(100, 60, tiny))).toEqual([96, 80]);
    expect(() => findNearestBucket(10, 10, [])).toThrow(BucketError);
    expect(() => findNearestBucket(0, 10, tiny)).toThrow(BucketError);
    expect(() => findNearestBucket(Number.NaN, 10, tiny)).toThrow(BucketError);
  });
});

describe('scaled buckets (brandon929/FramePack macOS fork)', () => {
  /** The fork's rule, written out independently: round(side · (res/640) / 16) · 16 with half-to-even. */
  function forkSide(side: number, resolution: number): number {
    const q = (side * (resolution / 640)) / 16;
    const f = Math.floor(q);
    const rounded = q - f < 0.5 ? f : q - f > 0.5 ? f + 1 : f % 2 === 0 ? f : f + 1;
    return rounded * 16;
  }

  it('rescales the 640 list for 416 by the rule (values as CPython computes them)', () => {
    const expected = SPEC_640.map(([h, w]) => [forkSide(h, 416), forkSide(w, 416)]);
    // Printed by CPython 3.11 from the fork's expression; 480·0.65/16 = 19.5 rounds to the even 20.
    expect(expected).toEqual([
      [272, 624], [288, 560], [320, 544], [336, 496], [352, 464], [368, 432], [400, 416],
      [416, 400], [432, 368], [464, 352], [496, 336], [544, 320], [560, 288], [624, 272],
    ]);
    expect(scaledBuckets(416).map(pair)).toEqual(expected);
  });

  it('rounds halves to even like Python (resolution 480: 608·0.75/16 = 28.5 → 28, not 29)', () => {
    expect(forkSide(608, 480)).toBe(448);
    expect(scaledBuckets(480).map(pair)).toEqual(SPEC_640.map(([h, w]) => [forkSide(h, 480), forkSide(w, 480)]));
    expect(pair(scaleBucket({ height: 608, width: 640 }, 480))).toEqual([448, 480]);
  });

  it('leaves the 640 list as it is at resolution 640 and refuses a resolution that empties a bucket', () => {
    expect(scaledBuckets(640).map(pair)).toEqual(SPEC_640);
    expect(() => scaledBuckets(8)).toThrow(BucketError);
    expect(() => scaledBuckets(0)).toThrow(BucketError);
  });

  it('picks in the 640 list, then rescales (square at 416 → 416 tall × 400 wide)', () => {
    expect(pair(findNearestScaledBucket(500, 500, 416))).toEqual([416, 400]);
    for (const [h, w] of sizes()) {
      const [bh, bw] = bruteForce(h, w, SPEC_640);
      expect(pair(findNearestScaledBucket(h, w, 416))).toEqual([forkSide(bh, 416), forkSide(bw, 416)]);
    }
    // Not the same as searching the rescaled list: rounding to 16 moves the aspect ratios (≈3% of sizes differ).
    expect(pair(findNearestScaledBucket(107, 133, 416))).toEqual([352, 464]);
    expect(pair(findNearestBucket(107, 133, scaledBuckets(416)))).toEqual([368, 432]);
  });
});

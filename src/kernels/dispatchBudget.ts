// How much GPU work one dispatch and one submit may hold. Windows resets a GPU that is busy for 2 s (TDR), and five
// resets in a minute crash the machine; a FramePack step is seconds of GPU work. So every kernel cuts its work into
// dispatches of at most DISPATCH_BUDGET_MS on an H200 — a card ten times slower then takes a quarter of a second —
// and the plan runner submits after at most SUBMIT_BUDGET_MS of H200 work. The budgets are turned into FLOPs with
// each kernel path's H200 throughput as measured by the bench (bench/RESULTS.md), rounded down, so a dispatch's
// estimate errs long and its real time short.

/** The longest one dispatch may run on an H200, in milliseconds (the goal is ≤ 25 ms measured). */
export const DISPATCH_BUDGET_MS = 20;
/** The most H200 work one submit may hold, in milliseconds (the goal is ≤ 250 ms). */
export const SUBMIT_BUDGET_MS = 200;

/** Measured H200 throughput of each kernel path at FramePack's sizes, TFLOP/s (rounded down). */
export const H200_TFLOPS = {
  'q4Matmul/subgroup-matrix': 170,
  'q4Matmul/portable/f16': 30,
  'q4Matmul/portable/f32': 24,
  'matmul/portable': 10,
  'attention/subgroup-matrix': 150,
  'attention/portable/f16': 20,
  'attention/portable/f32': 11,
} as const;

export type KernelPath = keyof typeof H200_TFLOPS;

/** FLOPs one dispatch of `path` may take. */
export function dispatchFlops(path: KernelPath): number {
  return h200Flops(path, DISPATCH_BUDGET_MS);
}

/** FLOPs of `ms` milliseconds of `path` on an H200. */
export function h200Flops(path: KernelPath, ms: number): number {
  return H200_TFLOPS[path] * 1e12 * (ms / 1000);
}

/** Estimated H200 milliseconds of `flops` on `path`. */
export function h200Ms(path: KernelPath, flops: number): number {
  return flops / (H200_TFLOPS[path] * 1e12) * 1000;
}

/**
 * Rows per dispatch for work of `flopsPerRow` per row: as many whole tiles of `tileRows` as the budget allows, at
 * least one tile, and such that a chunk's first row starts its buffers on the device's offset alignment
 * (`rowBytes`, the bytes per row of each buffer bound at an offset).
 */
export function rowsPerDispatch(budgetFlops: number, flopsPerRow: number, tileRows: number, rowBytes: number[], alignment: number): number {
  let tiles = Math.max(1, Math.floor(budgetFlops / (flopsPerRow * tileRows)));
  // Each chunk starts at a multiple of the chunk size: grow the tile count's granularity until every buffer's row
  // offset is aligned (a power of two usually divides after a step or two).
  let step = 1;
  while (step < 1024 && !rowBytes.every((b) => (b * tileRows * step) % alignment === 0)) step *= 2;
  tiles = Math.max(step, Math.floor(tiles / step) * step);
  return tiles * tileRows;
}

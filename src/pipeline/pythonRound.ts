// Python's round(x) with no digits: round half to even, returning an integer. FramePack computes the section
// count with it, and JavaScript's Math.round rounds halves up (round(2.5) is 2 in Python, 3 in JavaScript),
// which would change the number of sections for lengths such as 3.0 s.

import { NotRoundableError } from '../errors/pipeline.ts';

/** round(x) as Python 3 computes it on the exact binary value of x: halves go to the even neighbour. */
export function pythonRound(x: number): number {
  if (!Number.isFinite(x)) throw new NotRoundableError(x);
  // Work on |x| so that x − floor(x) below is exact (it is for any non-negative double).
  if (x < 0) return -pythonRound(-x) || 0;
  const floor = Math.floor(x);
  const fraction = x - floor;
  if (fraction < 0.5) return floor;
  if (fraction > 0.5) return floor + 1;
  return floor % 2 === 0 ? floor : floor + 1;
}

/**
 * Python's f"{x:.{digits}f}" for finite x. JavaScript's toFixed breaks exact ties away from zero (0.125 →
 * "0.13") where Python rounds them to even ("0.12"); every other value formats the same in both.
 */
export function pythonFormatFixed(x: number, digits: number): string {
  if (!Number.isFinite(x)) throw new NotRoundableError(x);
  const js = x.toFixed(digits);
  if (Math.abs(x) >= 1e21) return js; // toFixed switches to exponent form there; no fraction is left anyway
  // A tie needs an exactly representable ...5 at digit digits+1, i.e. a short dyadic fraction: 80 digits show it.
  const exact = Math.abs(x).toFixed(Math.min(100, digits + 80));
  const point = exact.indexOf('.');
  const kept = exact.slice(0, point + 1 + digits);
  const rest = exact.slice(point + 1 + digits);
  if (!/^50*$/.test(rest)) return js;
  const lastDigit = Number(kept[kept.length - 1] === '.' ? kept[kept.length - 2] : kept[kept.length - 1]);
  if (lastDigit % 2 === 1) return js; // toFixed already rounded away from zero onto the even neighbour
  const truncated = digits === 0 ? kept.slice(0, -1) : kept;
  return x < 0 ? `-${truncated}` : truncated;
}

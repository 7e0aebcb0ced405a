// Float32 arithmetic helpers shared by the modules that reproduce torch's float32 results bit for bit
// (seeded noise, sigma tables, the UniPC solve): torch's compiled kernels fuse some multiply-adds into one rounding.

/**
 * a·b + c rounded once to float32 (a fused multiply-add), for float32 inputs. The product of two float32 values is
 * exact in double, so only the sum can round twice; a tie in double is resolved with the sum's exact error.
 */
export function fmaF32(a: number, b: number, c: number): number {
  const product = a * b;
  const sum = product + c;
  const rounded = Math.fround(sum);
  const halfStep = sum - rounded;
  if (halfStep === 0) return rounded; // the double sum is a float: the true sum is within half a double ulp of it
  const otherNeighbour = rounded + 2 * halfStep;
  if (Math.fround(otherNeighbour) !== otherNeighbour) return rounded; // not a tie, so one rounding or two agree
  // A tie in double: the error of the double addition (TwoSum) says on which side the true sum lies.
  const virtualC = sum - product;
  const error = product - (sum - virtualC) + (c - virtualC);
  if (error === 0) return rounded; // a true tie, already rounded to even
  return error > 0 === halfStep > 0 ? otherNeighbour : rounded;
}

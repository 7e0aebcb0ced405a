// Seeded Gaussian noise that equals PyTorch's `torch.randn(shape, generator=torch.Generator('cpu').manual_seed(seed))`
// in float32, value for value. FramePack's results depend on this noise ("next-frame-section prediction models are very
// sensitive to subtle differences in noise"), so a reference seed only reproduces a reference video if the noise is
// the same numbers. Torch's CPU generator is a 32-bit Mersenne Twister (MT19937 seeded with the seed's low 32 bits)
// behind two normal samplers. Below 16 values each sample is a double-precision Box–Muller on 53-bit uniforms whose
// sine half is cached in the generator for the next sample, even across calls. From 16 values up torch fills 24-bit
// float uniforms first and transforms them 16 at a time (pairs j and j+8; when the size is not a multiple of 16 the
// last 16 are drawn again and redone) in float32 with avx_mathfun.h's Cephes `log256_ps`/`sincos256_ps` (not SLEEF),
// compiled with the multiplies that feed adds contracted into FMAs. Both paths are reproduced here operation by
// operation and match the x86-64 (AVX2) recording in test/fixtures/reference bit for bit; without the FMAs it would be off
// by up to 2 ulp, and torch builds without AVX2 (e.g. ARM) use libm's logf/sinf/cosf instead and differ by a few ulp.
// Sources: aten/src/ATen/core/MT19937RNGEngine.h, CPUGeneratorImpl.cpp, TransformationHelper.h,
// DistributionsHelper.h, native/cpu/DistributionTemplates.h (normal_kernel, normal_fill_AVX2), native/cpu/avx_mathfun.h.

import { InvalidNoiseShapeError, InvalidSeedError } from '../errors/pipeline.ts';
import { fmaF32 } from './float32.ts';
import { numel, type Tensor } from './tensor.ts';

const MT_N = 624;
const MT_M = 397;
const MT_MATRIX_A = 0x9908b0df;
/** Torch switches from the per-sample double sampler to the 16-wide float transform at this many values. */
const VECTOR_PATH_MIN_VALUES = 16;
const TWO_POW_M24 = 2 ** -24;
const TWO_POW_M53 = 2 ** -53;
const MAX_VALUES = 2 ** 31 - 1; // typed-array length limit in practice

/** Where a generator is in its stream (torch's get_state): the twister's words, the next index and the cached normal. */
export interface GeneratorPosition {
  seed: bigint;
  state: Uint32Array;
  next: number;
  cachedNormal: number | null;
}

export class TorchGenerator {
  /** The seed as torch stores it (uint64); only its low 32 bits reach the twister. */
  readonly seed: bigint;
  private readonly state = new Uint32Array(MT_N);
  private next = MT_N; // index of the next state word; MT_N means "twist first"
  /** torch's next_double_normal_sample: the sine half of the last double Box–Muller, if not used yet. */
  private cachedNormal: number | null = null;

  /** Throws InvalidSeedError unless seed is a whole number in [-2^63, 2^64). */
  constructor(seed: number | bigint) {
    if (typeof seed === 'number' && !Number.isSafeInteger(seed)) throw new InvalidSeedError(seed);
    const big = BigInt(seed);
    if (big < -(2n ** 63n) || big >= 2n ** 64n) throw new InvalidSeedError(seed);
    // Negative Python ints are reinterpreted as two's-complement uint64, as THPGenerator_manualSeed does.
    this.seed = BigInt.asUintN(64, big);
    const s = this.state;
    s[0] = Number(BigInt.asUintN(32, big));
    for (let j = 1; j < MT_N; j++) {
      const prev = s[j - 1];
      s[j] = Math.imul(1812433253, prev ^ (prev >>> 30)) + j;
    }
  }

  /** One MT19937 output, torch's `random()`: an integer in [0, 2^32). */
  nextUint32(): number {
    if (this.next >= MT_N) this.twist();
    let y = this.state[this.next++];
    y ^= y >>> 11;
    y ^= (y << 7) & 0x9d2c5680;
    y ^= (y << 15) & 0xefc60000;
    y ^= y >>> 18;
    return y >>> 0;
  }

  /** uniform_real_distribution<float>(0, 1): the low 24 bits of one output, times 2^-24 (exact in float32). */
  nextFloatUniform(): number {
    return (this.nextUint32() & 0xffffff) * TWO_POW_M24;
  }

  /** uniform_real_distribution<double>(0, 1): the low 53 bits of random64() = (first << 32 | second), times 2^-53. */
  nextDoubleUniform(): number {
    const hi = this.nextUint32();
    const lo = this.nextUint32();
    return ((hi & 0x1fffff) * 2 ** 32 + lo) * TWO_POW_M53;
  }

  /** normal_distribution<double>(0, 1) as torch draws it, including the cached sine sample. */
  nextDoubleNormal(): number {
    if (this.cachedNormal !== null) {
      const cached = this.cachedNormal;
      this.cachedNormal = null;
      return cached + 0; // transformation::normal adds the mean 0.0, which turns -0 into +0
    }
    const u1 = this.nextDoubleUniform();
    const u2 = this.nextDoubleUniform();
    const radius = Math.sqrt(-2 * Math.log1p(-u2));
    const theta = 2 * Math.PI * u1;
    this.cachedNormal = radius * Math.sin(theta);
    return radius * Math.cos(theta) + 0;
  }

  /**
   * torch.randn(shape, generator=this) in float32; successive calls continue the stream as torch's do.
   * Throws InvalidNoiseShapeError for a negative, fractional or too large shape.
   */
  randn(shape: readonly number[]): Tensor {
    if (!shape.every((d) => Number.isSafeInteger(d) && d >= 0)) throw new InvalidNoiseShapeError(shape);
    const count = numel(shape);
    if (count > MAX_VALUES) throw new InvalidNoiseShapeError(shape);
    const data = new Float32Array(count);
    if (count >= VECTOR_PATH_MIN_VALUES) {
      this.fillFloatUniforms(data, 0, count);
      for (let i = 0; i + 16 <= count; i += 16) boxMuller16(data, i);
      if (count % 16 !== 0) {
        // torch draws fresh uniforms for the last 16 slots and transforms them again, overlapping the block before.
        this.fillFloatUniforms(data, count - 16, 16);
        boxMuller16(data, count - 16);
      }
    } else {
      for (let i = 0; i < count; i++) data[i] = this.nextDoubleNormal();
    }
    return { data, shape: [...shape] };
  }

  /** This generator's position, a copy: a job checkpoint stores it so a resumed job draws the same noise. */
  position(): GeneratorPosition {
    return { seed: this.seed, state: this.state.slice(), next: this.next, cachedNormal: this.cachedNormal };
  }

  /** A generator that continues exactly where `position` was taken. Throws InvalidSeedError on a malformed position. */
  static at(position: GeneratorPosition): TorchGenerator {
    const g = new TorchGenerator(position.seed);
    if (position.state.length !== MT_N || !(position.next >= 0 && position.next <= MT_N)) throw new InvalidSeedError(position.seed);
    g.state.set(position.state);
    g.next = position.next;
    g.cachedNormal = position.cachedNormal;
    return g;
  }

  private fillFloatUniforms(out: Float32Array, offset: number, count: number): void {
    for (let i = offset; i < offset + count; i++) out[i] = (this.nextUint32() & 0xffffff) * TWO_POW_M24;
  }

  /** MT19937's state regeneration (the reference next_state()). */
  private twist(): void {
    const s = this.state;
    for (let k = 0; k < MT_N; k++) {
      const y = (s[k] & 0x80000000) | (s[(k + 1) % MT_N] & 0x7fffffff);
      s[k] = s[(k + MT_M) % MT_N] ^ (y >>> 1) ^ (y & 1 ? MT_MATRIX_A : 0);
    }
    this.next = 0;
  }
}

// ---------------------------------------------------------------------------------------------------------------
// The float32 Box–Muller of normal_fill_16_AVX2, one lane at a time. Every float operation is rounded with
// Math.fround; fmaF32() is a single-rounding fused multiply-add where the compiled torch code has one.

const f32 = Math.fround;
const TWO_PI_F32 = f32(2 * Math.PI); // _mm256_set1_ps(2.0f * c10::pi<double>)

/** Transforms 16 uniforms at data[offset..offset+16) into normals in place: pairs (j, j+8) for j < 8. */
function boxMuller16(data: Float32Array, offset: number): void {
  for (let j = offset; j < offset + 8; j++) {
    const u1 = f32(1 - data[j]); // [0, 1) -> (0, 1] for the log
    const radius = f32(Math.sqrt(f32(-2 * cephesLogf(u1))));
    cephesSincosf(f32(TWO_PI_F32 * data[j + 8]));
    // fmadd(n, std = 1, mean = 0): the product rounds once on store, and + 0 turns -0 into +0 as the add does.
    data[j] = radius * sincosResult.cos + 0;
    data[j + 8] = radius * sincosResult.sin + 0;
  }
}

const bitView = new Float32Array(1);
const bitViewU32 = new Uint32Array(bitView.buffer);

const SQRT_HALF_F32 = f32(0.707106781186547524);
const LOG_P0 = f32(7.0376836292e-2);
const LOG_P1 = f32(-1.151461031e-1);
const LOG_P2 = f32(1.167699874e-1);
const LOG_P3 = f32(-1.2420140846e-1);
const LOG_P4 = f32(1.4249322787e-1);
const LOG_P5 = f32(-1.6668057665e-1);
const LOG_P6 = f32(2.0000714765e-1);
const LOG_P7 = f32(-2.4999993993e-1);
const LOG_P8 = f32(3.3333331174e-1);
const LOG_Q1 = f32(-2.1219444e-4);
const LOG_Q2 = 0.693359375;

/** avx_mathfun's log256_ps for one positive normal float32 x (here always in (0, 1]). */
function cephesLogf(x: number): number {
  bitView[0] = x;
  const bits = bitViewU32[0];
  let exponent = (bits >>> 23) - 126; // biased exponent - 0x7f, then + 1
  bitViewU32[0] = (bits & 0x807fffff) | 0x3f000000; // mantissa with the exponent of 0.5: m in [0.5, 1)
  let m = bitView[0];
  if (m < SQRT_HALF_F32) {
    exponent -= 1;
    m = f32(f32(m - 1) + m);
  } else {
    m = f32(m - 1);
  }
  const z = f32(m * m);
  let y = fmaF32(LOG_P0, m, LOG_P1);
  y = fmaF32(y, m, LOG_P2);
  y = fmaF32(y, m, LOG_P3);
  y = fmaF32(y, m, LOG_P4);
  y = fmaF32(y, m, LOG_P5);
  y = fmaF32(y, m, LOG_P6);
  y = fmaF32(y, m, LOG_P7);
  y = fmaF32(y, m, LOG_P8);
  y = f32(y * m);
  y = fmaF32(y, z, f32(exponent * LOG_Q1));
  y = fmaF32(z, -0.5, y);
  return fmaF32(exponent, LOG_Q2, f32(m + y));
}

const FOUR_OVER_PI_F32 = f32(1.27323954473516);
const MINUS_DP1 = -0.78515625;
const MINUS_DP2 = f32(-2.4187564849853515625e-4);
const MINUS_DP3 = f32(-3.77489497744594108e-8);
const SIN_P0 = f32(-1.9515295891e-4);
const SIN_P1 = f32(8.3321608736e-3);
const SIN_P2 = f32(-1.6666654611e-1);
const COS_P0 = f32(2.443315711809948e-5);
const COS_P1 = f32(-1.388731625493765e-3);
const COS_P2 = f32(4.166664568298827e-2);

/** Written by cephesSincosf, reused so that the hot loop allocates nothing. */
const sincosResult = { sin: 0, cos: 0 };

/** avx_mathfun's sincos256_ps for one float32 x (accurate for |x| < 8192; here always in [0, 2π)). */
function cephesSincosf(theta: number): void {
  const x0 = Math.abs(theta);
  let octant = Math.trunc(f32(x0 * FOUR_OVER_PI_F32)); // cvttps: truncation
  octant = (octant + 1) & ~1;
  // Extended-precision reduction x - octant·π/4 with π/4 split in three parts.
  let x = fmaF32(octant, MINUS_DP1, x0);
  x = fmaF32(octant, MINUS_DP2, x);
  x = fmaF32(octant, MINUS_DP3, x);
  const z = f32(x * x);
  let cosPoly = fmaF32(COS_P0, z, COS_P1);
  cosPoly = fmaF32(cosPoly, z, COS_P2);
  cosPoly = f32(cosPoly * z);
  cosPoly = fmaF32(cosPoly, z, -f32(z * 0.5)); // the compiled code fuses this multiply into the subtraction
  cosPoly = f32(cosPoly + 1);
  let sinPoly = fmaF32(SIN_P0, z, SIN_P1);
  sinPoly = fmaF32(sinPoly, z, SIN_P2);
  sinPoly = f32(sinPoly * z);
  sinPoly = fmaF32(sinPoly, x, x);
  const useSinPolyForSin = (octant & 2) === 0;
  const sinValue = useSinPolyForSin ? sinPoly : cosPoly;
  const cosValue = useSinPolyForSin ? cosPoly : sinPoly;
  // Sign flips are xors of the sign bit in torch, i.e. negations here (-0 included).
  const negateSin = ((octant & 4) !== 0) !== (theta < 0);
  const negateCos = (~(octant - 2) & 4) !== 0;
  sincosResult.sin = negateSin ? -sinValue : sinValue;
  sincosResult.cos = negateCos ? -cosValue : cosValue;
}

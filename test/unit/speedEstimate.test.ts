// The page's path choice and time estimate (src/pipeline/speedEstimate.ts): which of the three kernel paths each
// combination of adapter features and ?dtype= override gets, and the estimate recomputed here from its definition
// (packed tokens counted by hand, the H200 table of bench/RESULTS.md's seventh run, linears ∝ tokens, attention ∝
// tokens², scaled by H200 GEMM TFLOP/s ÷ measured).

import { describe, expect, it } from 'vitest';
import {
  adviceHere, bucketForEstimate, choosePath, CONTEXT_TOKENS, estimateStepSeconds, estimateVideo, formatDuration,
  h200StepSeconds, H200_PATHS, H200_REFERENCE_TOKENS, NVIDIA_F16_FLAG, pathOfKernel, platformFromUserAgent, PLATFORM_ADVICE,
  sectionTokens, speedFactor, UNSAFE_WEBGPU_FLAG, type DtypeOverride, type KernelPathId,
} from '../../src/pipeline/speedEstimate.ts';

/** Tokens of one call counted from FramePack's packing (§5.5): lws + 2 clean frames at 1x, 2 at 2x, 16 at 4x, + context. */
function tokensByHand(height: number, width: number, lws: number): number {
  const h2 = height / 16, w2 = width / 16;
  const oneX = h2 * w2 * (lws + 2);
  const twoX = Math.ceil(2 / 2) * Math.ceil(h2 / 2) * Math.ceil(w2 / 2);
  const fourX = Math.ceil(16 / 4) * Math.ceil(h2 / 4) * Math.ceil(w2 / 4);
  return oneX + twoX + fourX + 729 + 256;
}

const TABLE: Record<KernelPathId, { step: number; attention: number; gemm: number }> = {
  'tensor-cores': { step: 3.07, attention: 0.48, gemm: 192 },
  'portable-f16': { step: 20.3, attention: 0.6, gemm: 40 },
  'portable-f32': { step: 34.4, attention: 0.65, gemm: 30 },
};

function stepByHand(path: KernelPathId, tokens: number, measuredTflops: number): number {
  const t = TABLE[path];
  const r = tokens / 18_485;
  return (t.step * (1 - t.attention) * r + t.step * t.attention * r * r) * (t.gemm / measuredTflops);
}

describe('choosePath', () => {
  const cases: [string, { shaderF16: boolean; subgroups: boolean; subgroupMatrix: boolean }, DtypeOverride, string | null, KernelPathId][] = [
    ['nothing', { shaderF16: false, subgroups: false, subgroupMatrix: false }, null, null, 'portable-f32'],
    ['subgroups only (SwiftShader)', { shaderF16: false, subgroups: true, subgroupMatrix: false }, null, null, 'portable-f32'],
    ['f16', { shaderF16: true, subgroups: false, subgroupMatrix: false }, null, null, 'portable-f16'],
    ['f16 + subgroups (Windows D3D12)', { shaderF16: true, subgroups: true, subgroupMatrix: false }, null, null, 'portable-f16'],
    ['subgroup matrices without f16 (Linux NVIDIA, unsafe flag only)', { shaderF16: false, subgroups: true, subgroupMatrix: true }, null, null, 'portable-f32'],
    ['subgroup matrices without subgroups', { shaderF16: true, subgroups: false, subgroupMatrix: true }, null, null, 'portable-f16'],
    ['everything (both Linux NVIDIA flags)', { shaderF16: true, subgroups: true, subgroupMatrix: true }, null, null, 'tensor-cores'],
    ['everything but only 8×8×8 configurations (Apple)', { shaderF16: true, subgroups: true, subgroupMatrix: true }, null, 'the device offers no f16 × f16 → f32 16×16×16 subgroup-matrix configuration', 'portable-f16'],
    ['everything, ?dtype=float32', { shaderF16: true, subgroups: true, subgroupMatrix: true }, 'float32', null, 'portable-f32'],
    ['f16, ?dtype=float32', { shaderF16: true, subgroups: true, subgroupMatrix: false }, 'float32', null, 'portable-f32'],
    ['everything, ?dtype=float16', { shaderF16: true, subgroups: true, subgroupMatrix: true }, 'float16', null, 'tensor-cores'],
    ['f16, ?dtype=float16', { shaderF16: true, subgroups: true, subgroupMatrix: false }, 'float16', null, 'portable-f16'],
    ['no f16, ?dtype=float16', { shaderF16: false, subgroups: true, subgroupMatrix: false }, 'float16', null, 'portable-f32'],
  ];
  for (const [name, features, dtype, problem, want] of cases) {
    it(`${name} → ${want}`, () => {
      const c = choosePath(features, { dtype, tensorCoreProblem: problem });
      expect(c.path).toBe(want);
      expect(c.dtype).toBe(want === 'portable-f32' ? 'float32' : 'float16');
      expect(c.name).toBe({ 'tensor-cores': 'tensor cores', 'portable-f16': 'portable with half precision', 'portable-f32': 'portable without half precision' }[want]);
      expect(c.forcedSlower).toBe(dtype === 'float32' && features.shaderF16);
      expect(c.overrideProblem !== null).toBe(dtype === 'float16' && !features.shaderF16);
    });
  }

  it('says why ?dtype=float16 cannot run without shader-f16', () => {
    const c = choosePath({ shaderF16: false, subgroups: true, subgroupMatrix: false }, { dtype: 'float16' });
    expect(c.overrideProblem).toMatch(/\?dtype=float16.*no shader-f16/);
  });

  it('maps the probed kernel to its path', () => {
    expect(pathOfKernel('subgroup-matrix', 'f16')).toBe('tensor-cores');
    expect(pathOfKernel('portable', 'f16')).toBe('portable-f16');
    expect(pathOfKernel('portable', 'f32')).toBe('portable-f32');
  });
});

describe('the estimate', () => {
  it('counts the H200 table\'s 18,485 tokens at 640×608, window 9, in both loops and every section', () => {
    expect(tokensByHand(640, 608, 9)).toBe(18_485);
    expect(sectionTokens({ height: 640, width: 608 })).toBe(H200_REFERENCE_TOKENS);
    expect(CONTEXT_TOKENS).toBe(985);
    for (const variant of ['original', 'f1'] as const) {
      for (let order = 0; order < 5; order++) expect(sectionTokens({ height: 640, width: 608 }, variant, 9, order, 5)).toBe(18_485);
    }
  });

  it('counts packed tokens as FramePack packs them at other buckets and windows', () => {
    for (const [h, w] of [[416, 960], [512, 768], [960, 416], [384, 368], [128, 112]]) {
      for (const lws of [9, 5, 1]) expect(sectionTokens({ height: h, width: w }, 'original', lws)).toBe(tokensByHand(h, w, lws));
    }
  });

  it('keeps the H200 table as measured', () => {
    for (const path of Object.keys(TABLE) as KernelPathId[]) {
      expect(H200_PATHS[path]).toEqual({ stepSeconds: TABLE[path].step, attentionShare: TABLE[path].attention, gemmTflops: TABLE[path].gemm });
      expect(h200StepSeconds(path, 18_485)).toBeCloseTo(TABLE[path].step, 12);
    }
  });

  it('scales linears with tokens and attention with tokens², and by the probe', () => {
    for (const path of Object.keys(TABLE) as KernelPathId[]) {
      for (const [h, w] of [[416, 960], [320, 304], [832, 480]]) {
        const tokens = tokensByHand(h, w, 9);
        for (const measured of [TABLE[path].gemm, 4, 0.0006]) {
          const factor = speedFactor(path, measured);
          expect(factor).toBeCloseTo(TABLE[path].gemm / measured, 9);
          expect(estimateStepSeconds(path, tokens, factor) / stepByHand(path, tokens, measured)).toBeCloseTo(1, 12);
        }
      }
    }
    expect(speedFactor('portable-f16', 0)).toBeNull();
    expect(speedFactor('portable-f16', null)).toBeNull();
    expect(estimateStepSeconds('portable-f16', 18_485, null)).toBeCloseTo(20.3, 12);
  });

  it('sums sections × steps for the whole video, twice the calls with CFG', () => {
    // 5 s at window 9: round(150 / 36) = 4 sections; 2.4 s: round(72 / 36) = 2.
    for (const [seconds, sections] of [[5, 4], [2.4, 2], [1, 1], [60, 50]] as const) {
      for (const variant of ['original', 'f1'] as const) {
        const e = estimateVideo({ path: 'portable-f32', factor: 30 / 2, bucket: { height: 512, width: 768 }, seconds, steps: 25, latentWindow: 9, variant });
        const step = stepByHand('portable-f32', tokensByHand(512, 768, 9), 2);
        expect(e.sections).toBe(sections);
        expect(e.tokens).toBe(tokensByHand(512, 768, 9));
        expect(e.stepSeconds / step).toBeCloseTo(1, 12);
        expect(e.transformerSeconds / (sections * 25 * step)).toBeCloseTo(1, 12);
      }
    }
    const cfg = estimateVideo({ path: 'tensor-cores', factor: null, bucket: { height: 640, width: 608 }, seconds: 5, steps: 10, latentWindow: 9, variant: 'original', cfg: 3 });
    expect(cfg.forwardsPerStep).toBe(2);
    expect(cfg.transformerSeconds).toBeCloseTo(4 * 10 * 2 * 3.07, 9);
    expect(() => estimateVideo({ path: 'tensor-cores', factor: null, bucket: { height: 640, width: 608 }, seconds: 0, steps: 10, latentWindow: 9, variant: 'original' })).toThrow();
  });

  it('estimates for the image\'s 640 bucket, scaled by the resolution choice, and 640×608 without an image', () => {
    expect(bucketForEstimate('model', null)).toEqual({ height: 640, width: 608 });
    expect(bucketForEstimate(320, null)).toEqual({ height: 320, width: 304 });
    expect(bucketForEstimate('model', { width: 160, height: 120 })).toEqual({ height: 544, width: 704 });
    expect(bucketForEstimate(384, { width: 160, height: 120 })).toEqual({ height: 320, width: 416 });
  });

  it('formats durations from seconds to days', () => {
    expect(formatDuration(3.07)).toBe('3.1 s');
    expect(formatDuration(49.4)).toBe('49 s');
    expect(formatDuration(41 * 60)).toBe('41 min');
    expect(formatDuration(3 * 3600 + 20 * 60)).toBe('3 h 20 min');
    expect(formatDuration(4.5 * 86400)).toBe('4.5 days');
    expect(formatDuration(1233 * 86400)).toBe('3.4 years');
  });
});

describe('the advice', () => {
  const ua = {
    windows: 'Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/140.0.0.0 Safari/537.36',
    macos: 'Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/140.0.0.0 Safari/537.36',
    linux: 'Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/140.0.0.0 Safari/537.36',
    chromeos: 'Mozilla/5.0 (X11; CrOS x86_64 14541.0.0) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/140.0.0.0 Safari/537.36',
    android: 'Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/140.0.0.0 Mobile Safari/537.36',
  } as const;

  it('reads the system from the user agent', () => {
    for (const [platform, s] of Object.entries(ua)) expect(platformFromUserAgent(s)).toBe(platform);
    expect(platformFromUserAgent('', 'macOS')).toBe('macos');
  });

  it('names the exact flags for Linux and macOS and has no faster path on Windows', () => {
    const text = (p: string) => PLATFORM_ADVICE.find((a) => a.platform === p)!.text;
    expect(text('linux')).toContain(UNSAFE_WEBGPU_FLAG);
    expect(text('linux')).toContain(NVIDIA_F16_FLAG);
    expect(NVIDIA_F16_FLAG).toBe('--enable-dawn-features=vulkan_enable_f16_on_nvidia');
    expect(text('macos')).toContain('--enable-unsafe-webgpu');
    expect(text('macos')).toMatch(/8×8×8/);
    expect(text('windows')).toMatch(/no faster path/);
    expect(text('windows')).not.toContain('--enable');
  });

  it('says what would help here', () => {
    const f32 = choosePath({ shaderF16: false, subgroups: true, subgroupMatrix: false });
    const f16 = choosePath({ shaderF16: true, subgroups: true, subgroupMatrix: false });
    const tc = choosePath({ shaderF16: true, subgroups: true, subgroupMatrix: true });
    expect(adviceHere(f32, { platform: 'linux', vendor: 'nvidia' })).toContain(NVIDIA_F16_FLAG);
    expect(adviceHere(f16, { platform: 'linux', vendor: 'nvidia' })).toContain(UNSAFE_WEBGPU_FLAG);
    expect(adviceHere(f16, { platform: 'windows' })).toMatch(/No faster path in Chrome on Windows/);
    expect(adviceHere(f16, { platform: 'macos' })).toMatch(/fastest path Chrome gives on a Mac/);
    expect(adviceHere(tc, { platform: 'linux' })).toMatch(/fastest path/);
    expect(adviceHere(f32, { platform: 'linux', isSoftware: true })).toMatch(/software GPU/);
    const forced = choosePath({ shaderF16: true, subgroups: true, subgroupMatrix: false }, { dtype: 'float32' });
    expect(adviceHere(forced, { platform: 'windows' })).toMatch(/remove \?dtype=float32/);
  });
});

// Errors crossing the worker boundary: serializeError (worker side) → structured clone (what postMessage does) →
// rebuildError (page side) must give back the same class, the same message, and the figures the UI shows
// (bytes needed, URL, status, tensor) — which comlink alone would drop — and, for programming errors only, the
// stack. Every class in the registry is tried, and the registry must name every error class defined in src/.

import { readdirSync, readFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { describe, expect, it } from 'vitest';
import { serializeError } from '../../src/worker/serializeError.ts';
import { advice, rebuildError } from '../../src/ui/errors.ts';
import * as errors from '../../src/errors/index.ts';
import {
  ERROR_CLASSES, GpuOutOfMemoryError, HttpError, ImageInputError, IntegrityError, NetworkError, NoWebGPUError,
  PROGRAMMING_ERRORS, QuotaError, UnsupportedVideoCodecError, type ErrorName,
} from '../../src/errors/index.ts';

const across = (e: unknown) => rebuildError(structuredClone(serializeError(e)));

const ROOT = join(import.meta.dirname, '../..');
const SRC = join(ROOT, 'src');

/** One instance of every registered class, built with arguments of the kinds its callers pass. */
const SAMPLES: Record<ErrorName, () => Error> = {
  NoWebGPUError: () => new errors.NoWebGPUError(),
  NoAdapterError: () => new errors.NoAdapterError(),
  DeviceLostError: () => new errors.DeviceLostError('unknown', 'the driver reset'),
  RepeatedDeviceLossError: () => new errors.RepeatedDeviceLossError(3, 1),
  GpuOutOfMemoryError: () => new errors.GpuOutOfMemoryError('the VAE decoder', 3 * 2 ** 30, 2 ** 31 - 4),
  KernelCompileError: () => new errors.KernelCompileError('q4 matmul', ['12:3 unknown identifier']),
  MatmulConfigError: () => new errors.MatmulConfigError('k must be a positive integer, got 0.'),
  MatmulShapeError: () => new errors.MatmulShapeError('m must be a positive integer, got 0.'),
  Q4MatmulConfigError: () => new errors.Q4MatmulConfigError('k must be a multiple of 32'),
  Q4MatmulShapeError: () => new errors.Q4MatmulShapeError('the input buffer is too small'),
  Q4GemvConfigError: () => new errors.Q4GemvConfigError('n must be a multiple of 4'),
  Q4GemvShapeError: () => new errors.Q4GemvShapeError('the weight buffer is too small'),
  AttentionConfigError: () => new errors.AttentionConfigError('head size 80 is not supported'),
  AttentionShapeError: () => new errors.AttentionShapeError('q holds 10 rows, k 12'),
  QkvHeadsConfigError: () => new errors.QkvHeadsConfigError('f16 needs shader-f16'),
  QkvHeadsShapeError: () => new errors.QkvHeadsShapeError('the qkv buffer is too small'),
  AdaNormConfigError: () => new errors.AdaNormConfigError('width 3 is odd'),
  AdaNormShapeError: () => new errors.AdaNormShapeError('the shift buffer is too small'),
  VaeKernelConfigError: () => new errors.VaeKernelConfigError('f16 storage needs shader-f16'),
  VaeKernelShapeError: () => new errors.VaeKernelShapeError('the conv input is too small'),
  TeaCacheKernelError: () => new errors.TeaCacheKernelError("TeaCache input 'a' holds 16 bytes but 64 bytes need 64."),
  BucketError: () => new errors.BucketError('The bucket list is empty; the model config must list at least one bucket.'),
  ImageSizeError: () => new errors.ImageSizeError('target size 0×4 is not a positive whole number of pixels.'),
  TokenizerFormatError: () => new errors.TokenizerFormatError('tokenizer.json model type is WordPiece; the Llama-3 tokenizer is BPE.'),
  PromptTemplateError: () => new errors.PromptTemplateError('The prompt template prefix tokenizes to 94 ids.'),
  NotRoundableError: () => new errors.NotRoundableError(Number.NaN),
  SectionPlanError: () => new errors.SectionPlanError('The video length must be a positive number of seconds, got -1.'),
  FrameCountError: () => new errors.FrameCountError('Sections done must be a whole number from 0 to 3, got 4.'),
  HistoryError: () => new errors.HistoryError('Nothing to decode before the first section is appended.'),
  SoftAppendError: () => new errors.SoftAppendError('The overlap must be a whole number ≥ 1, got 0.'),
  LatentPreviewError: () => new errors.LatentPreviewError('The latent preview needs [B, 16, T, h, w] latents, got [1, 4].'),
  RopeTableError: () => new errors.RopeTableError('A RoPE table needs at least one time index.'),
  DenoiserShapeError: () => new errors.DenoiserShapeError(3, 10, 12),
  VelocityShapeError: () => new errors.VelocityShapeError('negative', 10, 12),
  InvalidSeedError: () => new errors.InvalidSeedError(1.5),
  InvalidNoiseShapeError: () => new errors.InvalidNoiseShapeError([1, -2]),
  DiTConfigError: () => new errors.DiTConfigError('mlp_ratio 4.1 does not give a whole feed-forward width.'),
  LlamaConfigError: () => new errors.LlamaConfigError('hidden_act is relu'),
  ClipConfigError: () => new errors.ClipConfigError('hidden_act is relu'),
  SiglipConfigError: () => new errors.SiglipConfigError('patch_size is 16'),
  VaeConfigError: () => new errors.VaeConfigError('latent_channels is 4'),
  DiTInputError: () => new errors.DiTInputError('The RoPE table has 3 rows of 8 for 4 image tokens.'),
  TeaCacheResidualMissing: () => new errors.TeaCacheResidualMissing(8, 16),
  DiTKernelInputError: () => new errors.DiTKernelInputError('latents is a cpu tensor but a kernel needs it on the GPU.'),
  VaeInputError: () => new errors.VaeInputError('VAE decode takes latents [1, 16, T, h, w], got [16].'),
  PixelValuesShapeError: () => new errors.PixelValuesShapeError('SigLIP takes pixel_values of shape [1, 3, 384, 384].'),
  TokenIdsError: () => new errors.TokenIdsError('The CLIP text encoder takes at most 77 tokens, got 80; shorten the prompt.'),
  ModelPackageError: () => new errors.ModelPackageError('framepack.json names no folder for the vae.'),
  JobBusyError: () => new errors.JobBusyError(),
  JobResumeError: () => new errors.JobResumeError('its settings differ from this job\'s'),
  JobStopped: () => new errors.JobStopped('Stopped; the finished sections are kept.'),
  CheckpointFileMissing: () => new errors.CheckpointFileMissing('config.json', '/models/tiny/vae'),
  TensorMissing: () => new errors.TensorMissing('decoder.conv_in.weight', '/models/tiny/vae'),
  HttpError: () => new errors.HttpError('http://x/b', 403, 'x refused access'),
  HttpFileNotFound: () => new errors.HttpFileNotFound('model.safetensors.index.json', 'http://x/model.safetensors.index.json'),
  NetworkError: () => new errors.NetworkError('http://x/a.safetensors', 'connection closed', { cause: new TypeError('terminated') }),
  SafetensorsFormatError: () => new errors.SafetensorsFormatError('vae.safetensors', 'the header length is 0'),
  IntegrityError: () => new errors.IntegrityError('tiny/vae', 'decoder.conv_in.weight', 'checksum 1 where 2 was stored'),
  StoredModelError: () => new errors.StoredModelError('tiny/vae is not (completely) in this browser\'s storage; download it first.'),
  QuotaError: () => new errors.QuotaError(5e9, 1e9, 'The model hf/transformer-original'),
  PackVersionError: () => new errors.PackVersionError('hf/transformer-original', 0, 1),
  PackFormatError: () => new errors.PackFormatError('http://x/pack/', 'manifest.json has no "version"'),
  VideoError: () => new errors.VideoError('the video failed', { frames: 3 }),
  NoVideoEncoderError: () => new errors.NoVideoEncoderError('no WebCodecs', { secure: false }),
  UnsupportedVideoCodecError: () => new errors.UnsupportedVideoCodecError('no codec', { width: 96, height: 80, tried: 'avc1' }),
  VideoEncodeError: () => new errors.VideoEncodeError('the encoder closed', { frame: 12 }),
  VideoInputError: () => new errors.VideoInputError('frame 3 is 64×64, the video 96×80', { frame: 3, width: 64 }),
  FrameConvertError: () => new errors.FrameConvertError('Video frames must have even width and height (YUV 4:2:0), got 95×80.'),
  ImageInputError: () => new errors.ImageInputError('cat.txt is not an image this browser can decode.'),
  WorkerCrashedError: () => new errors.WorkerCrashedError('The worker stopped (out of memory in the tab?).'),
  ImageFileError: () => new errors.ImageFileError('cat.ppm is truncated.'),
};

/** Plain-data own fields of an error (its figures), nested `details` flattened: what the page must get back. */
function figures(e: Error): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(e)) {
    if (k === 'name' || k === 'message' || k === 'stack' || k === 'cause') continue;
    if (k === 'details' && v && typeof v === 'object') Object.assign(out, v);
    else out[k] = v;
  }
  return out;
}

function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((d) => {
    const p = join(dir, d.name);
    if (d.isDirectory()) return sourceFiles(p);
    return /\.(ts|svelte)$/.test(d.name) ? [p] : [];
  });
}

/**
 * Classes that extend Error but may stay out of the registry: private to one file and only ever caught inside it,
 * so they cannot reach the page. Each entry names its file; exporting one makes the test fail.
 */
const PRIVATE_CONTROL_FLOW: Record<string, string> = {
  // retried, then turned into HttpError inside httpFileSource's withRetries
  TransientStatus: 'src/weights/httpSource.ts',
};

describe('errors across the worker boundary', () => {
  it('keep their class, message and details', () => {
    const quota = new QuotaError(123_456_789, null, 'The model tiny/vae');
    const back = across(quota);
    expect(back).toBeInstanceOf(QuotaError);
    expect(back.name).toBe('QuotaError');
    expect(back.message).toBe(quota.message);
    expect(back.details).toEqual({ neededBytes: 123_456_789, availableBytes: null });
    expect((back as QuotaError).neededBytes).toBe(123_456_789);
    expect(advice(back)).toMatch(/Models in this browser/);

    const oom = across(new GpuOutOfMemoryError('the VAE encoder at 496×512 pixels', 4 * 2 ** 20, 2 ** 20));
    expect(oom).toBeInstanceOf(GpuOutOfMemoryError);
    expect(oom.message).toContain('could not allocate 4 MiB for the VAE encoder at 496×512 pixels (this device allows at most 1 MiB in one buffer)');
    expect(advice(oom)).toMatch(/smaller size/);

    const net = across(new NetworkError('http://x/a.safetensors', 'connection closed', { cause: new TypeError('terminated') }));
    expect(net).toBeInstanceOf(NetworkError);
    expect(net.details).toMatchObject({ url: 'http://x/a.safetensors', cause: 'TypeError: terminated' });
    expect(advice(net)).toMatch(/download continues/);

    const http = across(new HttpError('http://x/b', 503, 'failed'));
    expect(http).toBeInstanceOf(HttpError);
    expect((http as HttpError).status).toBe(503);
    expect(advice(http)).toMatch(/download continues/);

    const damaged = across(new IntegrityError('tiny/vae', 'decoder.conv_in.weight', 'checksum 1 where 2 was stored'));
    expect(damaged).toBeInstanceOf(IntegrityError);
    expect(damaged.details).toMatchObject({ model: 'tiny/vae', tensor: 'decoder.conv_in.weight' });
    expect(advice(damaged)).toMatch(/Delete the model/);

    // VideoError keeps its own `details` object: its fields come across flattened.
    const codec = across(new UnsupportedVideoCodecError('no codec', { width: 96, height: 80, tried: 'avc1' }));
    expect(codec).toBeInstanceOf(UnsupportedVideoCodecError);
    expect(codec.details).toMatchObject({ width: 96, height: 80, tried: 'avc1' });

    expect(across(new NoWebGPUError())).toBeInstanceOf(NoWebGPUError);
    expect(advice(across(new NoWebGPUError()))).toMatch(/past results/);
    expect(across(new ImageInputError('bad'))).toBeInstanceOf(ImageInputError);
  });

  it('every registered class comes back as itself, with its message, figures and (programming errors only) stack', () => {
    expect(Object.keys(SAMPLES).sort()).toEqual(Object.keys(ERROR_CLASSES).sort());
    for (const [name, make] of Object.entries(SAMPLES)) {
      const original = make();
      const cls = ERROR_CLASSES[name];
      // The registry key is the class's `name`, and the sample is of that very class.
      expect(original.name, name).toBe(name);
      expect(original.constructor, name).toBe(cls);
      const sent = structuredClone(serializeError(original));
      const back = rebuildError(sent);
      expect(back, name).toBeInstanceOf(cls);
      expect(back.name, name).toBe(name);
      expect(back.message, name).toBe(original.message);
      expect(back.message.length, name).toBeGreaterThan(0);
      const want = figures(original);
      for (const [k, v] of Object.entries(want)) {
        expect(back.details?.[k], `${name}.details.${k}`).toEqual(v);
        if (k !== 'details') expect((back as unknown as Record<string, unknown>)[k], `${name}.${k}`).toEqual(v);
      }
      if (PROGRAMMING_ERRORS.has(name)) {
        expect(original.stack, name).toMatch(/errorRoundTrip\.test\.ts/);
        expect(sent.stack, name).toBe(original.stack);
        expect(back.stack, name).toBe(original.stack);
      } else {
        expect(sent.stack, name).toBeUndefined();
        expect(back.stack, name).toBeUndefined();
      }
    }
  });

  it('the programming errors are registered classes', () => {
    for (const name of PROGRAMMING_ERRORS) expect(ERROR_CLASSES, name).toHaveProperty(name);
    expect(PROGRAMMING_ERRORS.size).toBeGreaterThan(0);
  });

  it('the registry names every error class defined in src/', () => {
    const found = new Map<string, { base: string; file: string; exported: boolean }>();
    for (const file of sourceFiles(SRC)) {
      const text = readFileSync(file, 'utf8');
      for (const m of text.matchAll(/^\s*(export\s+)?(?:abstract\s+)?class\s+(\w+)\s+extends\s+([\w.]+)/gm)) {
        found.set(m[2], { base: m[3], file: relative(ROOT, file), exported: !!m[1] });
      }
    }
    // Errors: classes extending Error, RangeError, TypeError… or, transitively, another error class.
    const isError = new Set<string>();
    for (let grew = true; grew;) {
      grew = false;
      for (const [name, { base }] of found) {
        if (!isError.has(name) && (/^(\w*Error)$/.test(base) && !found.has(base) ? true : isError.has(base))) {
          isError.add(name);
          grew = true;
        }
      }
    }
    expect(isError.size).toBeGreaterThan(50);
    const unregistered = [...isError].filter((n) => !(n in ERROR_CLASSES) && !(n in PRIVATE_CONTROL_FLOW)).map((n) => `${n} (${found.get(n)!.file})`);
    expect(unregistered, 'add these to src/errors/ and ERROR_CLASSES').toEqual([]);
    for (const [name, file] of Object.entries(PRIVATE_CONTROL_FLOW)) {
      const where = found.get(name);
      if (!where) continue; // gone: fine
      expect(where.file, name).toBe(file);
      expect(where.exported, `${name} is exported: it may reach the page, register it`).toBe(false);
    }
  });

  it('the errors modules import nothing but each other', () => {
    const dir = join(SRC, 'errors');
    for (const file of readdirSync(dir)) {
      const text = readFileSync(join(dir, file), 'utf8');
      const specifiers = [...text.matchAll(/^\s*(?:import|export)\b[^;]*?\bfrom\s*['"]([^'"]+)['"]|^\s*import\s*['"]([^'"]+)['"]|\bimport\s*\(\s*['"]([^'"]+)['"]/gm)]
        .map((m) => m[1] ?? m[2] ?? m[3]);
      for (const s of specifiers) expect(s, `${file} imports ${s}`).toMatch(/^\.\/\w+\.ts$/);
      if (file !== 'index.ts') expect(specifiers, file).toEqual([]);
    }
  });

  it('unknown classes stay Errors with their name; non-errors become messages', () => {
    class SomeFutureError extends Error {
      override name = 'SomeFutureError';
    }
    const back = across(new SomeFutureError('framepack.json names no folder for the vae.'));
    expect(back).toBeInstanceOf(Error);
    expect(back.name).toBe('SomeFutureError');
    expect(back.message).toBe('framepack.json names no folder for the vae.');
    expect(back.stack).toBeUndefined();
    expect(across('plain string').message).toBe('plain string');
  });
});

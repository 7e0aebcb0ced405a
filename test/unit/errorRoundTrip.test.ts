// Errors crossing the worker boundary: serializeError (worker side) → structured clone (what postMessage does) →
// rebuildError (page side) must give back the same class, the same message, and the figures the UI shows
// (bytes needed, URL, status, tensor) — which comlink alone would drop.

import { describe, expect, it } from 'vitest';
import { serializeError } from '../../src/worker/serializeError.ts';
import { advice, ImageInputError, rebuildError } from '../../src/ui/errors.ts';
import { GpuOutOfMemoryError, NoWebGPUError } from '../../src/runtime/gpuErrors.ts';
import { QuotaError } from '../../src/weights/weightCache.ts';
import { HttpError, NetworkError } from '../../src/weights/httpSource.ts';
import { IntegrityError } from '../../src/weights/integrity.ts';
import { UnsupportedVideoCodecError } from '../../src/video/videoErrors.ts';

const across = (e: unknown) => rebuildError(structuredClone(serializeError(e)));

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

    const damaged = across(new IntegrityError('tiny/vae', 'decoder.conv_in.weight', 'checksum 1 where 2 was stored'));
    expect(damaged).toBeInstanceOf(IntegrityError);
    expect(damaged.details).toMatchObject({ model: 'tiny/vae', tensor: 'decoder.conv_in.weight' });

    // VideoError keeps its own `details` object: its fields come across flattened.
    const codec = across(new UnsupportedVideoCodecError('no codec', { width: 96, height: 80, tried: 'avc1' }));
    expect(codec).toBeInstanceOf(UnsupportedVideoCodecError);
    expect(codec.details).toMatchObject({ width: 96, height: 80, tried: 'avc1' });

    expect(across(new NoWebGPUError())).toBeInstanceOf(NoWebGPUError);
    expect(across(new ImageInputError('bad'))).toBeInstanceOf(ImageInputError);
  });

  it('unknown classes stay Errors with their name; non-errors become messages', () => {
    class ModelPackageError extends Error {
      override name = 'ModelPackageError';
    }
    const back = across(new ModelPackageError('framepack.json names no folder for the vae.'));
    expect(back).toBeInstanceOf(Error);
    expect(back.name).toBe('ModelPackageError');
    expect(back.message).toBe('framepack.json names no folder for the vae.');
    expect(across('plain string').message).toBe('plain string');
  });
});

import { describe, expect, it } from 'vitest';
import { qualityToEncoderSettings } from '../../src/video/mp4Writer.ts';
import { av1CodecString, avcCodecString, avcLevelFor, chooseEncoder, vp9CodecString } from '../../src/video/videoCodec.ts';
import { NoVideoEncoderError } from '../../src/errors/index.ts';

describe('qualityToEncoderSettings: the MP4 Compression slider (libx264 CRF) as encoder settings', () => {
  it('uses CRF as the H.264 QP and scales it to the 0–63 VP9/AV1 quantizer', () => {
    expect(qualityToEncoderSettings(16, 640, 608)).toMatchObject({ crf: 16, avcQuantizer: 16, vpxQuantizer: 20 }); // 16·63/51 = 19.8
    expect(qualityToEncoderSettings(0, 640, 608)).toMatchObject({ crf: 0, avcQuantizer: 0, vpxQuantizer: 0 });
    expect(qualityToEncoderSettings(51, 640, 608)).toMatchObject({ crf: 51, avcQuantizer: 51, vpxQuantizer: 63 });
  });

  it('treats the slider above 51 as x264 does: as 51', () => {
    expect(qualityToEncoderSettings(100, 640, 608)).toEqual(qualityToEncoderSettings(51, 640, 608));
    expect(qualityToEncoderSettings(77, 1280, 720)).toEqual(qualityToEncoderSettings(51, 1280, 720));
  });

  it('targets 0.1 bit per pixel per frame at CRF 23 and doubles the rate every 6 steps down', () => {
    const pixelsPerSecond = 1920 * 1080 * 30;
    expect(qualityToEncoderSettings(23, 1920, 1080).bitrate).toBe(Math.round(0.1 * pixelsPerSecond)); // 6.2 Mb/s
    expect(qualityToEncoderSettings(17, 1920, 1080).bitrate).toBe(Math.round(0.2 * pixelsPerSecond));
    expect(qualityToEncoderSettings(29, 1920, 1080).bitrate).toBe(Math.round(0.05 * pixelsPerSecond));
    // The default at the reference's square bucket: 0.1·2^(7/6)·640·608·30 ≈ 2.62 Mb/s.
    expect(qualityToEncoderSettings(16, 640, 608).bitrate / 1e6).toBeCloseTo(2.6207, 3);
  });

  it('never asks for less than 100 kb/s, however small the frame', () => {
    expect(qualityToEncoderSettings(16, 96, 80).bitrate).toBe(100_000);
    // CRF 0 is x264's lossless: the raw 4:2:0 rate, 12 bits per pixel per frame.
    expect(qualityToEncoderSettings(0, 112, 80).bitrate).toBe(12 * 112 * 80 * 30);
    expect(qualityToEncoderSettings(51, 640, 608).bitrate).toBe(100_000);
  });

  it('rejects a CRF that is not a number from 0 up', () => {
    expect(() => qualityToEncoderSettings(-1, 64, 64)).toThrow(RangeError);
    expect(() => qualityToEncoderSettings(NaN, 64, 64)).toThrow(RangeError);
  });
});

describe('codec strings and levels', () => {
  it('writes RFC 6381 avc1 strings', () => {
    expect(avcCodecString(0x42, 0xe0, 0x1e)).toBe('avc1.42E01E'); // Constrained Baseline 3.0, the classic string
    expect(avcCodecString(0x64, 0x00, 0x28)).toBe('avc1.640028'); // High 4.0
  });

  it('picks the well-known H.264 levels for common sizes at 30 fps', () => {
    expect(avcLevelFor(1280, 720, 30)).toBe(31); // 720p30 is level 3.1
    expect(avcLevelFor(1920, 1080, 30)).toBe(40); // 1080p30 is level 4.0 (8160 of 8192 macroblocks)
    expect(avcLevelFor(640, 608, 30)).toBe(31); // 1520 MBs × 30 = 45 600 MB/s > level 3's 40 500
    expect(avcLevelFor(96, 80, 30)).toBe(10); // 30 MBs
    expect(avcLevelFor(96, 80, 30, 100_000)).toBe(11); // level 1 allows only 64 kb/s
    expect(avcLevelFor(8192, 8192, 30)).toBeUndefined(); // beyond level 6.2's 139 264 macroblocks
  });

  it('picks VP9 and AV1 levels from picture size and sample rate', () => {
    expect(vp9CodecString(1920, 1080, 30)).toBe('vp09.00.40.08');
    expect(vp9CodecString(640, 608, 30)).toBe('vp09.00.30.08');
    expect(av1CodecString(1920, 1080, 30)).toBe('av01.0.08M.08'); // AV1 level 4.0
    expect(av1CodecString(640, 480, 30)).toBe('av01.0.04M.08'); // level 3.0
  });
});

describe('chooseEncoder without WebCodecs', () => {
  it('throws NoVideoEncoderError naming the browsers that have it (Node has no VideoEncoder)', async () => {
    expect(typeof (globalThis as { VideoEncoder?: unknown }).VideoEncoder).toBe('undefined');
    await expect(chooseEncoder(96, 80, 16)).rejects.toThrow(NoVideoEncoderError);
    await expect(chooseEncoder(96, 80, 16)).rejects.toThrow(/Chrome, Edge or Safari/);
  });
});

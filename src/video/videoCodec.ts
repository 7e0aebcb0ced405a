// Picks how the browser will encode: which codec string (H.264 first, VP9 then AV1 as fallbacks that MP4 also
// carries), which level fits the frame size at 30 fps, and how the reference's "MP4 Compression" slider (libx264
// CRF, default 16) becomes encoder settings. Browsers differ here (Chrome's software H.264 has no per-frame
// quantizer, hardware encoders refuse small frames), so we ask VideoEncoder.isConfigSupported instead of assuming.

import { checkEvenSize } from './frameConvert.ts';
import { NoVideoEncoderError, UnsupportedVideoCodecError } from '../errors/video.ts';
import { qualityToEncoderSettings, VIDEO_FPS, type EncoderQuality } from '../pipeline/videoQuality.ts';

// The frame rate and the MP4 Compression slider's arithmetic live in pipeline/ (the page shows the resulting
// bitrate without loading this module).
export { DEFAULT_CRF, qualityToEncoderSettings, VIDEO_FPS, type EncoderQuality } from '../pipeline/videoQuality.ts';

export type VideoCodecFamily = 'avc' | 'vp9' | 'av1';

interface AvcLevel {
  /** level_idc: 31 for level 3.1. */
  idc: number;
  /** Macroblocks per second, macroblocks per frame, kb/s (Main/Baseline; High allows 1.25×). ITU-T H.264 Table A-1. */
  mbPerSecond: number;
  mbPerFrame: number;
  kbps: number;
}

const AVC_LEVELS: readonly AvcLevel[] = [
  { idc: 10, mbPerSecond: 1485, mbPerFrame: 99, kbps: 64 },
  { idc: 11, mbPerSecond: 3000, mbPerFrame: 396, kbps: 192 },
  { idc: 12, mbPerSecond: 6000, mbPerFrame: 396, kbps: 384 },
  { idc: 13, mbPerSecond: 11880, mbPerFrame: 396, kbps: 768 },
  { idc: 20, mbPerSecond: 11880, mbPerFrame: 396, kbps: 2000 },
  { idc: 21, mbPerSecond: 19800, mbPerFrame: 792, kbps: 4000 },
  { idc: 22, mbPerSecond: 20250, mbPerFrame: 1620, kbps: 4000 },
  { idc: 30, mbPerSecond: 40500, mbPerFrame: 1620, kbps: 10000 },
  { idc: 31, mbPerSecond: 108000, mbPerFrame: 3600, kbps: 14000 },
  { idc: 32, mbPerSecond: 216000, mbPerFrame: 5120, kbps: 20000 },
  { idc: 40, mbPerSecond: 245760, mbPerFrame: 8192, kbps: 20000 },
  { idc: 41, mbPerSecond: 245760, mbPerFrame: 8192, kbps: 50000 },
  { idc: 42, mbPerSecond: 522240, mbPerFrame: 8704, kbps: 50000 },
  { idc: 50, mbPerSecond: 589824, mbPerFrame: 22080, kbps: 135000 },
  { idc: 51, mbPerSecond: 983040, mbPerFrame: 36864, kbps: 240000 },
  { idc: 52, mbPerSecond: 2073600, mbPerFrame: 36864, kbps: 240000 },
  { idc: 60, mbPerSecond: 4177920, mbPerFrame: 139264, kbps: 240000 },
  { idc: 61, mbPerSecond: 8355840, mbPerFrame: 139264, kbps: 480000 },
  { idc: 62, mbPerSecond: 16711680, mbPerFrame: 139264, kbps: 800000 },
];

/** H.264 profiles worth asking for, best compression first: High, Main, Constrained Baseline (profile_idc, constraint flags). */
const AVC_PROFILES = [
  { name: 'High', idc: 0x64, constraints: 0x00, brFactor: 1.25 },
  { name: 'Main', idc: 0x4d, constraints: 0x00, brFactor: 1 },
  { name: 'Constrained Baseline', idc: 0x42, constraints: 0xe0, brFactor: 1 },
] as const;

/**
 * The smallest H.264 level whose frame size, macroblock rate and (for bitrate mode) bit rate hold this video,
 * or undefined past level 6.2. Each side must also stay within √(8·MaxFS) macroblocks (Annex A).
 */
export function avcLevelFor(width: number, height: number, fps: number, bitrate = 0, brFactor = 1): number | undefined {
  const mbW = Math.ceil(width / 16), mbH = Math.ceil(height / 16);
  const mbs = mbW * mbH;
  const level = AVC_LEVELS.find((l) => mbs <= l.mbPerFrame && mbs * fps <= l.mbPerSecond && Math.max(mbW, mbH) <= Math.sqrt(8 * l.mbPerFrame) &&
    bitrate <= l.kbps * 1000 * brFactor);
  return level?.idc;
}

const hex2 = (n: number) => n.toString(16).padStart(2, '0').toUpperCase();

/** 'avc1.PPCCLL' (RFC 6381): profile_idc, constraint flags, level_idc in hex. */
export function avcCodecString(profileIdc: number, constraints: number, levelIdc: number): string {
  return `avc1.${hex2(profileIdc)}${hex2(constraints)}${hex2(levelIdc)}`;
}

/** VP9 profile 0, 8-bit, the smallest level whose picture size and luma sample rate fit (VP9 levels table). */
export function vp9CodecString(width: number, height: number, fps: number): string | undefined {
  const levels = [[10, 36864, 829440], [11, 73728, 2764800], [20, 122880, 4608000], [21, 245760, 9216000], [30, 552960, 20736000],
    [31, 983040, 36864000], [40, 2228224, 83558400], [41, 2228224, 160432128], [50, 8912896, 311951360], [51, 8912896, 588251136],
    [52, 8912896, 1176502272], [60, 35651584, 1176502272], [61, 35651584, 2353004544], [62, 35651584, 4706009088]] as const;
  const samples = width * height;
  const level = levels.find(([, size, rate]) => samples <= size && samples * fps <= rate);
  return level && `vp09.00.${level[0]}.08`;
}

/** AV1 Main profile, 8-bit, Main tier, the smallest seq_level_idx whose picture size and display rate fit (AV1 Annex A). */
export function av1CodecString(width: number, height: number, fps: number): string | undefined {
  const levels = [[0, 147456, 4423680], [1, 278784, 8363520], [4, 665856, 19975680], [5, 1065024, 31950720], [8, 2359296, 70778880],
    [9, 2359296, 141557760], [12, 8912896, 267386880], [13, 8912896, 534773760], [14, 8912896, 1069547520], [16, 35651584, 1069547520]] as const;
  const samples = width * height;
  const level = levels.find(([, size, rate]) => samples <= size && samples * fps <= rate);
  return level && `av01.0.${String(level[0]).padStart(2, '0')}M.08`;
}

/** What the encoder was configured with, and how each frame must be encoded. */
export interface EncoderChoice {
  family: VideoCodecFamily;
  /** Human name for messages and reports: 'H.264 High', 'VP9', … */
  label: string;
  config: VideoEncoderConfig;
  /** Per-frame quantizer when config.bitrateMode is 'quantizer', else undefined (bitrate mode). */
  quantizer: number | undefined;
  quality: EncoderQuality;
}

function candidates(family: VideoCodecFamily, width: number, height: number, quality: EncoderQuality): { label: string; codec: string }[] {
  if (family === 'avc') {
    return AVC_PROFILES.flatMap((p) => {
      const level = avcLevelFor(width, height, VIDEO_FPS, quality.bitrate, p.brFactor) ?? avcLevelFor(width, height, VIDEO_FPS, 0, p.brFactor);
      return level === undefined ? [] : [{ label: `H.264 ${p.name}`, codec: avcCodecString(p.idc, p.constraints, level) }];
    });
  }
  const codec = family === 'vp9' ? vp9CodecString(width, height, VIDEO_FPS) : av1CodecString(width, height, VIDEO_FPS);
  return codec ? [{ label: family === 'vp9' ? 'VP9' : 'AV1', codec }] : [];
}

async function supported(config: VideoEncoderConfig): Promise<boolean> {
  try {
    return (await VideoEncoder.isConfigSupported(config)).supported === true;
  } catch {
    return false; // a TypeError here means "this browser cannot parse that config", i.e. unsupported
  }
}

/**
 * Asks the browser, codec by codec in `preference` order (profile by profile for H.264), for a config it can
 * encode at this size and quality: per-frame quantizer if offered, else variable bitrate.
 * @throws NoVideoEncoderError without WebCodecs; UnsupportedVideoCodecError when nothing fits.
 */
export async function chooseEncoder(width: number, height: number, crf: number,
  preference: readonly VideoCodecFamily[] = ['avc', 'vp9', 'av1']): Promise<EncoderChoice> {
  if (typeof VideoEncoder === 'undefined') {
    throw new NoVideoEncoderError('This browser has no WebCodecs video encoder, so it cannot write MP4 files. Use a current Chrome, Edge or ' +
      'Safari (Firefox 130+), served over https:// or from localhost.', { isSecureContext: typeof isSecureContext === 'boolean' ? isSecureContext : null });
  }
  checkEvenSize(width, height);
  const quality = qualityToEncoderSettings(crf, width, height);
  const tried: string[] = [];
  for (const family of preference) {
    for (const { label, codec } of candidates(family, width, height, quality)) {
      const base: VideoEncoderConfig = { codec, width, height, framerate: VIDEO_FPS, latencyMode: 'quality', hardwareAcceleration: 'no-preference',
        ...(family === 'avc' ? { avc: { format: 'avc' as const } } : {}) };
      const byQuantizer: VideoEncoderConfig = { ...base, bitrateMode: 'quantizer' };
      if (await supported(byQuantizer)) {
        return { family, label, config: byQuantizer, quantizer: family === 'avc' ? quality.avcQuantizer : quality.vpxQuantizer, quality };
      }
      const byBitrate: VideoEncoderConfig = { ...base, bitrateMode: 'variable', bitrate: quality.bitrate };
      if (await supported(byBitrate)) return { family, label, config: byBitrate, quantizer: undefined, quality };
      tried.push(codec);
    }
  }
  throw new UnsupportedVideoCodecError(`This browser cannot encode ${width}×${height} video as ${preference.map((f) => f.toUpperCase()).join(', ')} ` +
    `(tried ${tried.join(', ') || 'nothing that fits this size'}). Try a current Chrome or Edge, or a smaller video size.`, { width, height, tried: tried.join(' ') });
}

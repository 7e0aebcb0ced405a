// The frame rate the reference writes and how its "MP4 Compression" slider (libx264 CRF, default 16) becomes
// encoder settings (framepack-reference.md §11). Pure arithmetic, apart from the encoder choice in
// src/video/videoCodec.ts, so the page can show the resulting bitrate without loading any video code.

/** The reference writes 30 fps (framepack-reference.md §11). */
export const VIDEO_FPS = 30;
/** The slider's default, as in the reference UI. */
export const DEFAULT_CRF = 16;

export interface EncoderQuality {
  /** The CRF libx264 would actually use: the slider goes to 100, x264 clamps anything above 51 to 51. */
  crf: number;
  /** H.264 per-frame QP (0–51) for bitrateMode 'quantizer'. */
  avcQuantizer: number;
  /** VP9/AV1 per-frame quantizer (0–63) for bitrateMode 'quantizer'. */
  vpxQuantizer: number;
  /** Target bits per second for bitrateMode 'variable', where the browser offers no per-frame quantizer. */
  bitrate: number;
}

/**
 * The MP4 Compression slider (libx264 CRF; 0 best, 16 default, 100 = x264's 51) as encoder settings:
 * - quantizer mode: H.264 QP = CRF (CRF is x264's average QP before its adaptive tweaks); VP9/AV1 take CRF·63/51
 *   on their 0–63 scale. WebCodecs' QP 0 is near-lossless, not x264's true lossless.
 * - bitrate mode: 0.1 bit per pixel per frame at CRF 23 (x264's default, ≈ 5 Mb/s for 1080p30), doubling every
 *   6 CRF steps lower (x264's rule of thumb), never under 100 kb/s so tiny test frames stay watchable:
 *   bitrate = max(0.1 · 2^((23 − crf)/6) · width · height · 30, 100 000). CRF 16 at 640×608 → ≈ 2.6 Mb/s.
 *   CRF 0 is lossless in x264 ("0 is uncompressed", says the reference's slider): it gets the raw 4:2:0 frames'
 *   own rate, 12 bits per pixel, which brings any encoder close to lossless (the rule would give only 1.4).
 */
export function qualityToEncoderSettings(crf: number, width: number, height: number): EncoderQuality {
  if (!Number.isFinite(crf) || crf < 0) throw new RangeError(`MP4 compression (CRF) must be a number from 0 to 100, got ${crf}.`);
  if (!(width > 0 && height > 0)) throw new RangeError(`Frame size must be positive, got ${width}×${height}.`);
  const effective = Math.min(Math.round(crf), 51);
  const bitsPerPixel = effective === 0 ? 12 : 0.1 * 2 ** ((23 - effective) / 6);
  return {
    crf: effective,
    avcQuantizer: effective,
    vpxQuantizer: Math.round((effective * 63) / 51),
    bitrate: Math.max(Math.round(bitsPerPixel * width * height * VIDEO_FPS), 100_000),
  };
}

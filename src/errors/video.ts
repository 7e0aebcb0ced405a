// The ways writing the video can fail, one class per thing a person can do something about, plus the two that
// are a caller's bug (frames of the wrong size or order; pixel buffers that do not match their size) and keep
// their stack across the worker boundary. Each VideoError carries plain-data `details` so the worker can send it
// as {name, message, details} and the page can rebuild the same class by name without loading WebCodecs or the
// muxer: this module imports nothing and does nothing when imported.

export type VideoErrorDetails = Record<string, string | number | boolean | null>;

/** Base of the video-writing failures; `details` carries the figures (sizes, codecs tried) the page may show. */
export class VideoError extends Error {
  override name = 'VideoError';
  constructor(message: string, readonly details: VideoErrorDetails = {}) {
    super(message);
  }
}

/** No WebCodecs at all (old browser, or an insecure http:// page other than localhost). */
export class NoVideoEncoderError extends VideoError {
  override name = 'NoVideoEncoderError';
}

/** WebCodecs exists but offers none of H.264, VP9 or AV1 at this frame size. */
export class UnsupportedVideoCodecError extends VideoError {
  override name = 'UnsupportedVideoCodecError';
}

/** The encoder failed while running (driver or hardware encoder error, or it was closed under us). */
export class VideoEncodeError extends VideoError {
  override name = 'VideoEncodeError';
}

/** A frame of the wrong size or order reached the writer: a bug in the caller, not in the browser. */
export class VideoInputError extends VideoError {
  override name = 'VideoInputError';
}

/** Decoded pixels or frame buffers whose layout or size does not match (or an odd frame size): a caller's bug. */
export class FrameConvertError extends RangeError {
  override name = 'FrameConvertError';
}

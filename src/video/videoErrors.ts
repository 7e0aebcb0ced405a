// The ways writing the video can fail, one class per thing a person can do something about. Each carries
// plain-data `details` so the worker can send it across postMessage as {name, message, details} and the UI can
// rebuild the same class on its side.

export type VideoErrorDetails = Record<string, string | number | boolean | null>;

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

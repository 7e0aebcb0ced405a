// Encodes frames as they arrive (WebCodecs VideoEncoder) and muxes them into MP4 (mp4-muxer), so memory grows with
// the compressed size only. Two ways in: Mp4Writer takes frames in time order and streams them into one MP4;
// FrameEncoder encodes "runs" (a keyframe and what follows) kept as bytes, which can be muxed in any order and as
// often as needed — what the back-to-front original loop needs to show a playable video after every section.

import { ArrayBufferTarget, Muxer } from 'mp4-muxer';
import { checkEvenSize, i420Size, rgbaToI420 } from './frameConvert.ts';
import { chooseEncoder, DEFAULT_CRF, VIDEO_FPS, type EncoderChoice, type VideoCodecFamily } from './videoCodec.ts';
import { VideoEncodeError, VideoInputError } from '../errors/video.ts';

export { qualityToEncoderSettings } from './videoCodec.ts';

/** One encoded frame's bytes; `key` frames decode without any earlier frame. */
export interface EncodedFrame {
  data: Uint8Array;
  key: boolean;
}

/** Consecutive frames encoded together, the first a keyframe: decodable with nothing before it. */
export interface EncodedRun {
  frames: EncodedFrame[];
  byteLength: number;
}

export interface EncoderOptions {
  width: number;
  height: number;
  /** The reference's MP4 Compression slider: libx264 CRF 0–100, default 16. */
  crf?: number;
  /** Codec families to try, best first (default H.264, then VP9, then AV1). */
  codecs?: readonly VideoCodecFamily[];
  /** Longest stretch between keyframes, in frames (default 60: 2 s, within the usual 30–60). */
  keyframeInterval?: number;
}

/**
 * The frames we hand over are BT.601 limited-range YUV (frameConvert.ts), tagged SMPTE 170M in all three fields:
 * given BT.709 primaries with the 170M matrix, Chrome's VP9 encoder signalled a BT.709 matrix and decoders then
 * shifted colours by up to 17 levels. Untagged SD video, like the reference's, is read as BT.601 anyway.
 */
const FRAME_COLOR_SPACE: VideoColorSpaceInit = { primaries: 'smpte170m', transfer: 'smpte170m', matrix: 'smpte170m', fullRange: false };
/** Frames waiting inside the encoder before encode() waits: bounds raw-frame memory when decoding outruns encoding. */
const MAX_QUEUED_FRAMES = 4;

const frameMicros = (index: number) => Math.round((index * 1e6) / VIDEO_FPS);

/** Per-frame encode options; vp9/av1 quantizers are in the WebCodecs codec registry but not yet in TypeScript's DOM types. */
type EncodeOptions = VideoEncoderEncodeOptions & { vp9?: { quantizer: number }; av1?: { quantizer: number } };

/** A configured VideoEncoder that hands back encoded frames in order and never lets queued raw frames pile up. */
export class FrameEncoder {
  private readonly output: EncodedFrame[] = [];
  private decoderConfig: VideoDecoderConfig | undefined;
  private failure: VideoEncodeError | undefined;
  private framesIn = 0;
  private sinceKey = Infinity;
  private lastTimestamp = -1;
  private readonly yuv: Uint8Array;
  private readonly encoder: VideoEncoder;

  private constructor(readonly choice: EncoderChoice, readonly width: number, readonly height: number, private readonly keyframeInterval: number) {
    this.yuv = new Uint8Array(i420Size(width, height));
    this.encoder = new VideoEncoder({
      output: (chunk, meta) => this.take(chunk, meta),
      error: (e) => { this.failure ??= new VideoEncodeError(`The ${choice.label} encoder failed: ${e.message}. Reload the page and try again; ` +
        'if it keeps failing, try another browser.', { codec: choice.config.codec }); },
    });
    this.encoder.configure(choice.config);
  }

  /**
   * Probes the codec (H.264 preferred) and configures an encoder for this frame size.
   * @throws NoVideoEncoderError, UnsupportedVideoCodecError (see chooseEncoder), FrameConvertError on odd sizes.
   */
  static async create(options: EncoderOptions): Promise<FrameEncoder> {
    const { width, height, crf = DEFAULT_CRF, codecs, keyframeInterval = 60 } = options;
    checkEvenSize(width, height);
    const choice = await chooseEncoder(width, height, crf, codecs);
    return new FrameEncoder(choice, width, height, keyframeInterval);
  }

  /** Encodes one RGBA frame (width·height·4 bytes); waits while the encoder is more than a few frames behind. */
  async encode(rgba: Uint8Array, keyFrame = false): Promise<void> {
    this.throwIfFailed();
    if (rgba.length !== this.width * this.height * 4) {
      throw new VideoInputError(`A ${this.width}×${this.height} RGBA frame has ${this.width * this.height * 4} bytes, got ${rgba.length}.`);
    }
    while (this.encoder.encodeQueueSize > MAX_QUEUED_FRAMES) {
      await new Promise((resolve) => this.encoder.addEventListener('dequeue', resolve, { once: true }));
      this.throwIfFailed();
    }
    const key = keyFrame || this.sinceKey + 1 >= this.keyframeInterval;
    this.sinceKey = key ? 0 : this.sinceKey + 1;
    const frame = new VideoFrame(rgbaToI420(rgba, this.width, this.height, this.yuv), {
      format: 'I420', codedWidth: this.width, codedHeight: this.height, colorSpace: FRAME_COLOR_SPACE,
      timestamp: frameMicros(this.framesIn), duration: frameMicros(1),
    });
    this.framesIn++;
    const options: EncodeOptions = { keyFrame: key };
    const q = this.choice.quantizer;
    if (q !== undefined) options[this.choice.family] = { quantizer: q };
    try {
      this.encoder.encode(frame, options); // copies the frame, so it can be closed at once
    } finally {
      frame.close();
    }
  }

  /** Waits until every frame given so far has come out. */
  async flush(): Promise<void> {
    this.throwIfFailed();
    try {
      await this.encoder.flush();
    } catch (e) {
      this.throwIfFailed();
      throw new VideoEncodeError(`Finishing the ${this.choice.label} encode failed: ${(e as Error).message}.`, { codec: this.choice.config.codec });
    }
    this.throwIfFailed();
  }

  /** Encoded frames that have come out since the last call, in order. */
  takeOutput(): EncodedFrame[] {
    return this.output.splice(0);
  }

  /** Encodes frames as one run starting with a keyframe (frames produced lazily are converted one at a time). */
  async encodeRun(frames: Iterable<Uint8Array>): Promise<EncodedRun> {
    if (this.output.length) throw new VideoInputError('Collect the encoded frames (takeOutput) before starting a run.');
    let first = true;
    for (const rgba of frames) {
      await this.encode(rgba, first);
      first = false;
    }
    await this.flush();
    const out = this.takeOutput();
    return { frames: out, byteLength: out.reduce((n, f) => n + f.data.byteLength, 0) };
  }

  /** The stream parameters (avcC for H.264) every frame so far was encoded with; available after the first output. */
  streamConfig(): VideoDecoderConfig {
    if (!this.decoderConfig) throw new VideoInputError('Nothing has been encoded yet, so there is no stream to describe.');
    return this.decoderConfig;
  }

  /**
   * Takes the stream parameters of runs an earlier encoder made (a job continued after a reload), so those runs
   * and this encoder's can share one MP4; if this encoder's differ, the first frame it encodes says so.
   */
  adoptStreamConfig(config: VideoDecoderConfig): void {
    this.noteStreamConfig(config);
  }

  /** One MP4 of these runs played back to back at 30 fps, first run first. */
  mux(runs: readonly EncodedRun[]): Blob {
    const muxer = new Mp4Muxing(this);
    for (const run of runs) for (const f of run.frames) muxer.add(f);
    return muxer.finish();
  }

  close(): void {
    if (this.encoder.state !== 'closed') this.encoder.close();
  }

  private take(chunk: EncodedVideoChunk, meta: EncodedVideoChunkMetadata | undefined): void {
    if (chunk.timestamp <= this.lastTimestamp) {
      this.failure ??= new VideoEncodeError(`The ${this.choice.label} encoder reorders frames (B-frames), which this writer does not mux. ` +
        'Try another browser or codec.', { codec: this.choice.config.codec });
    }
    this.lastTimestamp = chunk.timestamp;
    if (meta?.decoderConfig) this.noteStreamConfig(meta.decoderConfig);
    const data = new Uint8Array(chunk.byteLength);
    chunk.copyTo(data);
    this.output.push({ data, key: chunk.type === 'key' });
  }

  /** Runs are muxed under one sample description, so the encoder must never change SPS/PPS midway. */
  private noteStreamConfig(config: VideoDecoderConfig): void {
    const description = config.description ? copyBytes(config.description) : undefined;
    const next: VideoDecoderConfig = { ...config, description, colorSpace: FRAME_COLOR_SPACE };
    const prev = this.decoderConfig;
    if (prev && !sameBytes(prev.description, description)) {
      this.failure ??= new VideoEncodeError(`The ${this.choice.label} encoder changed its stream parameters mid-video, so the pieces cannot be ` +
        'joined into one MP4. Try another browser.', { codec: this.choice.config.codec });
    }
    this.decoderConfig = next;
  }

  private throwIfFailed(): void {
    if (this.failure) throw this.failure;
    if (this.encoder.state === 'closed') throw new VideoEncodeError('The video encoder was closed; start a new video.');
  }
}

function copyBytes(src: AllowSharedBufferSource): Uint8Array {
  const view = ArrayBuffer.isView(src) ? new Uint8Array(src.buffer, src.byteOffset, src.byteLength) : new Uint8Array(src);
  return view.slice();
}

function sameBytes(a: AllowSharedBufferSource | undefined, b: AllowSharedBufferSource | undefined): boolean {
  if (!a || !b) return a === b;
  const x = copyBytes(a), y = copyBytes(b);
  return x.length === y.length && x.every((v, i) => v === y[i]);
}

/** One MP4 being built from encoded frames at consecutive 30 fps timestamps; the first frame must be a keyframe. */
class Mp4Muxing {
  private readonly muxer: Muxer<ArrayBufferTarget>;
  private count = 0;

  constructor(private readonly encoder: FrameEncoder) {
    this.muxer = new Muxer({
      target: new ArrayBufferTarget(),
      video: { codec: encoder.choice.family, width: encoder.width, height: encoder.height, frameRate: VIDEO_FPS },
      fastStart: 'in-memory', // moov first, so a <video> can start before reading the whole file
      firstTimestampBehavior: 'strict',
    });
  }

  add(frame: EncodedFrame): void {
    if (this.count === 0 && !frame.key) throw new VideoInputError('An MP4 must start with a keyframe; start each run with one.');
    const meta = this.count === 0 ? { decoderConfig: this.encoder.streamConfig() } : undefined;
    this.muxer.addVideoChunkRaw(frame.data, frame.key ? 'key' : 'delta', frameMicros(this.count), frameMicros(1), meta);
    this.count++;
  }

  finish(): Blob {
    this.muxer.finalize();
    return new Blob([this.muxer.target.buffer], { type: 'video/mp4' });
  }
}

/** Writes one MP4 from frames given in time order, encoding each as it comes. */
export class Mp4Writer {
  private muxing: Mp4Muxing | undefined;
  private nextIndex = 0;

  private constructor(private readonly encoder: FrameEncoder) {}

  /** @throws NoVideoEncoderError, UnsupportedVideoCodecError, FrameConvertError (odd size). */
  static async create(options: EncoderOptions): Promise<Mp4Writer> {
    return new Mp4Writer(await FrameEncoder.create(options));
  }

  get codec(): EncoderChoice {
    return this.encoder.choice;
  }

  /**
   * Encodes frame `timestampIndex` (0, 1, 2, … with no gaps: the MP4 is constant 30 fps) from packed RGBA.
   * @throws VideoInputError on a wrong size or an out-of-order index; VideoEncodeError if the encoder failed.
   */
  async addFrame(rgba: Uint8Array, width: number, height: number, timestampIndex: number): Promise<void> {
    if (width !== this.encoder.width || height !== this.encoder.height) {
      throw new VideoInputError(`This video is ${this.encoder.width}×${this.encoder.height}; a ${width}×${height} frame cannot join it.`);
    }
    if (timestampIndex !== this.nextIndex) throw new VideoInputError(`Expected frame ${this.nextIndex} next, got frame ${timestampIndex}.`);
    await this.encoder.encode(rgba, timestampIndex === 0);
    this.nextIndex++;
    this.drain();
  }

  /** Flushes the encoder and returns the finished MP4 ('video/mp4'); the writer is closed afterwards. */
  async finish(): Promise<Blob> {
    if (this.nextIndex === 0) throw new VideoInputError('No frames were added, so there is no video to write.');
    try {
      await this.encoder.flush();
      this.drain();
      return this.muxing!.finish();
    } finally {
      this.encoder.close();
    }
  }

  close(): void {
    this.encoder.close();
  }

  private drain(): void {
    for (const frame of this.encoder.takeOutput()) {
      this.muxing ??= new Mp4Muxing(this.encoder);
      this.muxing.add(frame);
    }
  }
}

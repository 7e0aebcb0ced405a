// Builds the job's video section by section without keeping its pixels. Consecutive decodes overlap by
// lws·4 − 3 frames that soft_append cross-fades, so only those frames can still change: F1 appends, and
// everything before its last 33 frames is final; the original loop generates back to front and prepends, and
// everything after its first 33 frames is final (framepack-reference.md §7.1–7.4, §15.2 "Video assembly").
// Final frames are encoded at once into runs that start with a keyframe and are kept as compressed bytes; a
// playable MP4 of everything so far is the held frames encoded as one more run, muxed with the runs in time order.

import { overlapFrames } from '../pipeline/frameCount.ts';
import { framePlacement } from '../pipeline/history.ts';
import type { LoopVariant } from '../pipeline/sectionPlan.ts';
import { appendStreaming, prependStreaming, startStreaming, type StreamingJoin } from '../pipeline/softAppend.ts';
import type { Tensor } from '../pipeline/tensor.ts';
import { framesToRgba, videoDims } from './frameConvert.ts';
import { FrameEncoder, type EncodedRun, type EncoderOptions } from './mp4Writer.ts';
import { VideoInputError } from '../errors/video.ts';

/** What the assembler needs from an encoder; FrameEncoder in the browser, a stand-in in Node tests. */
export interface RunEncoder {
  /** Encodes the frames (RGBA) as one run starting with a keyframe. */
  encodeRun(frames: Iterable<Uint8Array>): Promise<EncodedRun>;
  /** One MP4 of the runs back to back, first run first. */
  mux(runs: readonly EncodedRun[]): Blob;
  close(): void;
  /** The stream parameters of the runs so far, and taking an earlier encoder's (to continue a stored video). */
  streamConfig?(): VideoDecoderConfig;
  adoptStreamConfig?(config: VideoDecoderConfig): void;
}

/** The finished part of a video as a job's state stores it: its encoded runs in time order and how they were encoded. */
export interface StoredVideo {
  runs: EncodedRun[];
  frames: number;
  streamConfig: VideoDecoderConfig | null;
}

export type RunEncoderFactory = (width: number, height: number) => Promise<RunEncoder>;

export interface AssembledVideo {
  blob: Blob;
  /** Frames in the MP4 (at 30 fps). */
  frames: number;
}

export class VideoAssembler {
  private readonly overlap: number;
  private encoder: RunEncoder | undefined;
  private size: { width: number; height: number } | undefined;
  /** The frames that the next section may still blend: the video's last (F1) or first (original) `overlap` frames. */
  private held: Tensor | undefined;
  private heldRun: EncodedRun | undefined;
  /** Encoded final frames in time order. */
  private readonly finalRuns: EncodedRun[] = [];
  private finalFrames = 0;
  private busy: Promise<unknown> = Promise.resolve();

  /**
   * @param variant 'f1' appends each section's decode after the video, 'original' puts it before.
   * @param latentWindow the job's latent window size (9 in the reference); the overlap is lws·4 − 3 frames.
   */
  constructor(readonly variant: LoopVariant, latentWindow: number, private readonly createEncoder: RunEncoderFactory) {
    this.overlap = overlapFrames(latentWindow);
  }

  /** An assembler that encodes with WebCodecs (H.264 preferred; see FrameEncoder.create for what it throws). */
  static withWebCodecs(variant: LoopVariant, latentWindow: number, options: Omit<EncoderOptions, 'width' | 'height'> = {}): VideoAssembler {
    return new VideoAssembler(variant, latentWindow, (width, height) => FrameEncoder.create({ ...options, width, height }));
  }

  /** Frames in the video so far (final and held). */
  get frames(): number {
    return this.finalFrames + (this.held?.shape[2] ?? 0);
  }

  /** Compressed bytes kept for the final frames: all the memory the finished part of the video takes. */
  get encodedBytes(): number {
    return this.finalRuns.reduce((n, r) => n + r.byteLength, 0);
  }

  /**
   * Adds a section's decoded frames [1, 3, T, H, W] in [−1, 1], exactly what the reference passes to soft_append:
   * the first call takes the whole first decode, later calls the re-decoded newest latents (69 or 73 frames at lws 9).
   * @throws VideoInputError on a size change or too short a decode; the encoder's errors (see FrameEncoder).
   */
  addSection(decoded: Tensor): Promise<void> {
    return this.serially(async () => {
      const { width, height } = videoDims(decoded);
      if (this.size && (this.size.width !== width || this.size.height !== height)) {
        throw new VideoInputError(`Every section must have the video's size ${this.size.width}×${this.size.height}, got ${width}×${height}.`);
      }
      if (decoded.shape[2] < this.overlap) {
        throw new VideoInputError(`A section's decode must hold at least the ${this.overlap} overlapping frames, got ${decoded.shape[2]}.`);
      }
      await this.commit(this.join(decoded), width, height);
    });
  }

  /**
   * Adds frames that the generation loop has already joined (FrameSink's arguments): `final` frames are finished
   * and `held` are the overlap frames the next section may still blend. Same result as addSection on the decode.
   * @throws VideoInputError on a size change or a placement that does not match the loop order; the encoder's errors.
   */
  addFrames(final: Tensor, held: Tensor, placement: 'before' | 'after'): Promise<void> {
    return this.serially(async () => {
      if (placement !== framePlacement(this.variant)) {
        throw new VideoInputError(`The ${this.variant} loop places frames ${framePlacement(this.variant)} the video, got '${placement}'.`);
      }
      const { width, height } = videoDims(held);
      if (this.size && (this.size.width !== width || this.size.height !== height)) {
        throw new VideoInputError(`Every section must have the video's size ${this.size.width}×${this.size.height}, got ${width}×${height}.`);
      }
      await this.commit({ final, held }, width, height);
    });
  }

  /** Keeps the held frames and encodes the final ones as one run, in time order with the earlier runs. */
  private async commit(join: Pick<StreamingJoin, 'final' | 'held'>, width: number, height: number): Promise<void> {
    this.encoder ??= await this.createEncoder(width, height);
    this.size = { width, height };
    this.held = join.held;
    this.heldRun = undefined;
    const n = join.final.shape[2];
    if (n === 0) return;
    const run = await this.encoder.encodeRun(framesToRgba(join.final));
    if (this.variant === 'f1') this.finalRuns.push(run);
    else this.finalRuns.unshift(run); // the original loop's final frames come BEFORE everything finalised earlier
    this.finalFrames += n;
  }

  /**
   * A playable MP4 of the whole video so far: after the last section, the finished video. Call it after every
   * section to show progress; a stopped job keeps the last one.
   * @throws VideoInputError before the first section; the encoder's errors.
   */
  video(): Promise<AssembledVideo> {
    return this.serially(async () => {
      if (!this.held || !this.encoder) throw new VideoInputError('No section has been added yet, so there is no video.');
      this.heldRun ??= await this.encoder.encodeRun(framesToRgba(this.held));
      const runs = this.variant === 'f1' ? [...this.finalRuns, this.heldRun] : [this.heldRun, ...this.finalRuns];
      return { blob: this.encoder.mux(runs), frames: this.frames };
    });
  }

  /** The final part of the video so far (the held frames are in the job's checkpoint). */
  stored(): Promise<StoredVideo> {
    return this.serially(async () => ({
      runs: [...this.finalRuns], frames: this.finalFrames, streamConfig: this.finalRuns.length ? this.encoder?.streamConfig?.() ?? null : null,
    }));
  }

  /**
   * Continues a stored video: its final runs, and the frames [1, 3, n, H, W] the next section blends with.
   * @throws VideoInputError when sections were added already; the encoder's errors.
   */
  restore(video: StoredVideo, held: Tensor): Promise<void> {
    return this.serially(async () => {
      if (this.held) throw new VideoInputError('This video has sections already; restore a stored one into a new assembler.');
      const { width, height } = videoDims(held);
      this.encoder = await this.createEncoder(width, height);
      if (video.streamConfig) this.encoder.adoptStreamConfig?.(video.streamConfig);
      this.size = { width, height };
      this.finalRuns.push(...video.runs);
      this.finalFrames = video.frames;
      this.held = held;
    });
  }

  close(): void {
    this.encoder?.close();
    this.held = undefined;
  }

  private join(decoded: Tensor): StreamingJoin {
    if (!this.held) return startStreaming(decoded, this.overlap, this.variant === 'f1' ? 'after' : 'before');
    return this.variant === 'f1' ? appendStreaming(this.held, decoded, this.overlap) : prependStreaming(decoded, this.held, this.overlap);
  }

  /** One encoder, so sections and video requests run one after another even if the caller does not wait. */
  private serially<T>(work: () => Promise<T>): Promise<T> {
    const next = this.busy.then(work);
    this.busy = next.catch(() => undefined);
    return next;
  }
}

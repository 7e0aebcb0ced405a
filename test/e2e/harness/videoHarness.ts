// The page side of test/e2e/video.spec.ts: bundled by esbuild at test time and served through page.route, so the
// real src/video code runs in the real browser without a test entry in the production build. It exposes
// `window.videoHarness`; every result crosses back to Node as plain data (MP4s as base64).

import type { LoopVariant } from '../../../src/pipeline/sectionPlan.ts';
import { frameToRgba } from '../../../src/video/frameConvert.ts';
import { Mp4Writer } from '../../../src/video/mp4Writer.ts';
import { VideoAssembler } from '../../../src/video/videoAssembler.ts';
import { chooseEncoder, type VideoCodecFamily } from '../../../src/video/videoCodec.ts';
import { LATENT_WINDOW, sectionDecode } from '../../helpers/syntheticVideo.ts';

export interface SectionResult {
  frames: number;
  mp4: string;
  /** Milliseconds for addSection (encode the final frames) and for video() (encode the held frames, mux). */
  addMs: number;
  videoMs: number;
  encodedBytes: number;
}

async function base64(blob: Blob): Promise<string> {
  const bytes = new Uint8Array(await blob.arrayBuffer());
  let s = '';
  for (let i = 0; i < bytes.length; i += 0x8000) s += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return btoa(s);
}

const harness = {
  /** What chooseEncoder picks, plus the raw support answers for a few codec strings (for the report). */
  async probe(width: number, height: number, crf: number) {
    const choice = await chooseEncoder(width, height, crf);
    const raw: Record<string, boolean> = {};
    for (const codec of ['avc1.42001E', 'avc1.4D001E', 'avc1.64001E', 'vp09.00.10.08', 'av01.0.00M.08', 'vp8']) {
      raw[codec] = (await VideoEncoder.isConfigSupported({ codec, width, height, bitrate: 500_000, framerate: 30 })).supported === true;
    }
    return { family: choice.family, label: choice.label, codec: choice.config.codec, bitrateMode: choice.config.bitrateMode,
      bitrate: choice.config.bitrate ?? null, quantizer: choice.quantizer ?? null, raw, userAgent: navigator.userAgent };
  },

  /** Runs the first `upTo` of `sections` sections through the assembler, taking a playable MP4 after each. */
  async assemble(variant: LoopVariant, sections: number, upTo: number, width: number, height: number, crf: number, codecs?: VideoCodecFamily[]) {
    const assembler = VideoAssembler.withWebCodecs(variant, LATENT_WINDOW, { crf, codecs });
    const results: SectionResult[] = [];
    try {
      for (let s = 0; s < upTo; s++) {
        const decoded = sectionDecode(variant, sections, s, width, height);
        const t0 = performance.now();
        await assembler.addSection(decoded);
        const t1 = performance.now();
        const video = await assembler.video();
        const t2 = performance.now();
        results.push({ frames: video.frames, mp4: await base64(video.blob), addMs: t1 - t0, videoMs: t2 - t1, encodedBytes: assembler.encodedBytes });
      }
    } finally {
      assembler.close();
    }
    return results;
  },

  /** Streams the first `frames` frames of the final F1 video (section 0's content) through Mp4Writer. */
  async write(frames: number, width: number, height: number, crf: number) {
    const decoded = sectionDecode('f1', 1, 0, width, height);
    const writer = await Mp4Writer.create({ width, height, crf });
    const t0 = performance.now();
    for (let t = 0; t < frames; t++) await writer.addFrame(frameToRgba(decoded, t), width, height, t);
    const blob = await writer.finish();
    return { mp4: await base64(blob), ms: performance.now() - t0, label: writer.codec.label };
  },

  /** The error chooseEncoder gives for a size no codec level holds, as {name, message, details}. */
  async failure(width: number, height: number) {
    try {
      await chooseEncoder(width, height, 16);
      return null;
    } catch (e) {
      const err = e as Error & { details?: unknown };
      return { name: err.name, message: err.message, details: err.details ?? null };
    }
  },

  /** Loads an MP4 into a <video> element: what the app does with each section's video. */
  async play(mp4: string) {
    const bytes = Uint8Array.from(atob(mp4), (ch) => ch.charCodeAt(0));
    const url = URL.createObjectURL(new Blob([bytes], { type: 'video/mp4' }));
    const video = document.createElement('video');
    video.muted = true;
    try {
      await new Promise<void>((resolve, reject) => {
        video.onloadeddata = () => resolve();
        video.onerror = () => reject(new Error(`<video> could not load the MP4: ${video.error?.message ?? video.error?.code}`));
        video.src = url;
      });
      return { duration: video.duration, width: video.videoWidth, height: video.videoHeight };
    } finally {
      URL.revokeObjectURL(url);
    }
  },
};

export type VideoHarness = typeof harness;
(globalThis as unknown as { videoHarness: VideoHarness }).videoHarness = harness;

// YUV4MPEG2 (Y4M) output for the Node CLI, which has no WebCodecs: a header, then one I420 frame after another,
// written as frames become final. The conversion is the one the browser's encoder is fed (BT.601 limited range),
// so the CLI's frames and the app's MP4 can be compared frame by frame.

import { frameToRgba, rgbaToI420, videoDims } from './frameConvert.ts';
import type { Tensor } from '../pipeline/tensor.ts';

export function y4mHeader(width: number, height: number, fps: number): string {
  return `YUV4MPEG2 W${width} H${height} F${fps}:1 Ip A1:1 C420jpeg XCOLORRANGE=LIMITED\n`;
}

/** Bytes of every frame of `pixels` ([1, 3, T, H, W] in [−1, 1]), each preceded by its FRAME marker. */
export function* y4mFrames(pixels: Tensor): Generator<Uint8Array> {
  const { frames, width, height } = videoDims(pixels);
  const marker = new TextEncoder().encode('FRAME\n');
  for (let t = 0; t < frames; t++) {
    yield marker;
    yield rgbaToI420(frameToRgba(pixels, t), width, height);
  }
}

// Reads the CLI's input image as RGB bytes. Node has no image decoders: binary PPM (P6) is read directly, and any
// other format (PNG, JPEG, WebP, …) is decoded by ffmpeg when it is installed.

import { readFileSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { ImageFileError } from '../errors/ui.ts';
import type { RgbImage } from '../pipeline/resize.ts';

function readPpm(bytes: Uint8Array, path: string): RgbImage {
  const text = new TextDecoder('latin1').decode(bytes.subarray(0, 64));
  const m = /^P6\s+(?:#.*\s+)*(\d+)\s+(\d+)\s+(\d+)\s/.exec(text);
  if (!m) throw new ImageFileError(`${path} is not a binary PPM (P6) file.`);
  const [header, w, h, max] = [m[0], Number(m[1]), Number(m[2]), Number(m[3])];
  if (max !== 255) throw new ImageFileError(`${path}: only 8-bit PPM is supported (max value ${max}).`);
  const data = bytes.slice(header.length, header.length + w * h * 3);
  if (data.length !== w * h * 3) throw new ImageFileError(`${path} is truncated.`);
  return { width: w, height: h, data };
}

function probeSize(path: string): { width: number; height: number } {
  const r = spawnSync('ffprobe', ['-v', 'error', '-select_streams', 'v:0', '-show_entries', 'stream=width,height', '-of', 'csv=p=0', path], { encoding: 'utf8' });
  if (r.error) throw new ImageFileError(`Reading ${path} needs ffmpeg (apt-get install ffmpeg), or give a binary PPM image.`);
  const m = /(\d+),(\d+)/.exec(r.stdout);
  if (r.status !== 0 || !m) throw new ImageFileError(`${path} is not an image ffmpeg can read: ${r.stderr.trim() || 'unknown format'}.`);
  return { width: Number(m[1]), height: Number(m[2]) };
}

/** Reads an image file as RGB. Throws ImageFileError with what to do when it cannot. */
export function readImageFile(path: string): RgbImage {
  let bytes: Uint8Array;
  try {
    bytes = readFileSync(path);
  } catch {
    throw new ImageFileError(`Cannot read the image ${path}: the file does not exist or is not readable.`);
  }
  if (bytes[0] === 0x50 && bytes[1] === 0x36) return readPpm(bytes, path);
  const { width, height } = probeSize(path);
  const r = spawnSync('ffmpeg', ['-v', 'error', '-i', path, '-frames:v', '1', '-f', 'rawvideo', '-pix_fmt', 'rgb24', '-'], { maxBuffer: width * height * 3 + 1024 });
  if (r.status !== 0 || r.stdout.length !== width * height * 3) throw new ImageFileError(`ffmpeg could not decode ${path}.`);
  return { width, height, data: new Uint8Array(r.stdout) };
}

// Conversion streams: a shard far larger than the read chunk is converted tensor by tensor (fp32 → fp16 here) with
// the memory it holds bounded by about one tensor plus one read, not by the shard. The store discards what it is
// given, so the measured memory is the converter's own.
import { closeSync, mkdtempSync, openSync, rmSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { downloadCheckpoint } from '../../src/weights/download.ts';
import { nodeFolderSource } from '../../src/weights/nodeFileSource.ts';
import { f32ToF16 } from '../../src/weights/dtypes.ts';
import type { WeightStore } from '../../src/weights/weightCache.ts';

const TENSORS = 24;
const TENSOR_BYTES = 8 * 2 ** 20; // 8 MiB of float32 each: a 192 MiB shard
const READ_BYTES = 4 * 2 ** 20;

function writeShard(path: string): void {
  const header: Record<string, unknown> = {};
  for (let i = 0; i < TENSORS; i++) header[`t${i}`] = { dtype: 'F32', shape: [TENSOR_BYTES / 4], data_offsets: [i * TENSOR_BYTES, (i + 1) * TENSOR_BYTES] };
  const json = new TextEncoder().encode(JSON.stringify(header));
  const len = new Uint8Array(8);
  new DataView(len.buffer).setBigUint64(0, BigInt(json.length), true);
  const fd = openSync(path, 'w');
  writeSync(fd, len);
  writeSync(fd, json);
  const block = new Float32Array(TENSOR_BYTES / 4);
  for (let i = 0; i < TENSORS; i++) {
    block.fill(i + 0.5);
    writeSync(fd, new Uint8Array(block.buffer));
  }
  closeSync(fd);
}

describe('streamed conversion', () => {
  it('converts a 192 MiB shard read in 4 MiB chunks while holding about one tensor', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'convert-'));
    try {
      writeShard(join(dir, 'model.safetensors'));
      if (!global.gc) throw new Error('Run vitest with --expose-gc (vite.config.ts sets it).');
      global.gc();
      const base = process.memoryUsage().arrayBuffers;
      let peak = 0;
      const seen: number[] = [];
      // Collect garbage before each sample so that what is counted is what the converter still holds.
      const sample = () => {
        global.gc!();
        peak = Math.max(peak, process.memoryUsage().arrayBuffers - base);
      };
      // A store that records completion and drops the bytes.
      const done = new Set<string>();
      const store: WeightStore = {
        async beginModel(id: string, fingerprint: string, config: Record<string, unknown>, sources: number) {
          return { id, fingerprint, config, sources, complete: false } as never;
        },
        async getModel() { return undefined; },
        async putConverted(_id: string, source: string) {
          sample();
          done.add(source);
        },
        async finishedSources() { return new Set(done); },
        async finishModel() {},
        async tensors() { return []; },
        async readTensor() { return new Uint8Array(0); },
        async listModels() { return []; },
        async deleteModel() {},
      };
      await downloadCheckpoint({
        folder: nodeFolderSource(dir),
        where: dir,
        weightsFile: 'model.safetensors',
        configFile: null,
        store,
        model: 'memory-test',
        readBytes: READ_BYTES,
        storage: null,
        convert: (info, bytes) => {
          sample();
          const f32 = new Float32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 4);
          seen.push(f32[0]);
          return [{ name: info.name, dtype: 'F16', shape: info.shape, data: new Uint8Array(f32ToF16(f32).buffer) }];
        },
      });
      expect(done.size).toBe(TENSORS);
      expect(seen).toEqual(Array.from({ length: TENSORS }, (_, i) => i + 0.5));
      const shard = TENSORS * TENSOR_BYTES;
      console.log(`conversion of a ${shard / 2 ** 20} MiB shard: peak extra ArrayBuffer memory ${(peak / 2 ** 20).toFixed(1)} MiB (tensor ${TENSOR_BYTES / 2 ** 20} MiB, read ${READ_BYTES / 2 ** 20} MiB)`);
      // One tensor being assembled, one read in flight, one converted output, and garbage not yet collected.
      expect(peak).toBeLessThan(shard / 3);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

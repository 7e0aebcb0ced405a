// The only module that imports onnxruntime-web. It creates sessions from graph bytes on the WebGPU execution
// provider (sharing our GPUDevice, so our kernels and ORT's see the same buffers) or on the wasm EP (the fp32
// CPU reference path), one at a time, and runs them. No settings are changed at import time.

import * as ort from 'onnxruntime-web/webgpu';
import type { BuiltGraph } from '../models/graph.ts';
import type { OnnxDType } from '../models/onnxProto.ts';
import { readGpuBuffer } from './device.ts';

export type ExecutionProvider = 'wasm' | 'webgpu';
export type OrtTensor = ort.Tensor;

export interface OrtSetup {
  /** The device ORT must use on the WebGPU EP (ours, so buffers can be shared). */
  device?: GPUDevice;
  /** Where the ORT wasm files are served from (the browser build copies them); Node finds them itself. */
  wasmPaths?: string;
  /** wasm threads; 1 keeps the CPU path deterministic and works without cross-origin isolation. */
  threads?: number;
}

let configured = false;
let shared: GPUDevice | null = null;

/** The GPUDevice ORT's WebGPU EP runs on (set by setupOrt), for our kernels to share; null before or without one. */
export function sharedDevice(): GPUDevice | null {
  return shared;
}

/**
 * Configures ORT once, before the first session. A later call only changes the device: ORT's native WebGPU EP takes
 * it per session, so after a lost device the next sessions run on the new one (worker/jobRecovery.ts).
 */
export function setupOrt(setup: OrtSetup): void {
  if (setup.device) {
    (ort.env.webgpu as unknown as { device: GPUDevice }).device = setup.device;
    shared = setup.device;
  }
  if (configured) return;
  configured = true;
  ort.env.wasm.numThreads = setup.threads ?? 1;
  if (setup.wasmPaths) ort.env.wasm.wasmPaths = setup.wasmPaths;
  ort.env.logLevel = 'error';
}

export interface GraphSession {
  graph: BuiltGraph;
  provider: ExecutionProvider;
  run(feeds: Record<string, ort.Tensor>, outputsOnGpu?: boolean): Promise<Record<string, ort.Tensor>>;
  release(): Promise<void>;
}

let creating: Promise<unknown> = Promise.resolve();

/** Creates a session for a built graph. Sessions are created one at a time (ORT refuses concurrent creation). */
export async function createSession(graph: BuiltGraph, provider: ExecutionProvider, options: { outputsOnGpu?: boolean } = {}): Promise<GraphSession> {
  const make = async () => {
    const session = await ort.InferenceSession.create(graph.bytes, {
      // The native WebGPU EP takes its device per session; handing it ours lets our kernels share its buffers.
      executionProviders: [provider === 'webgpu' && shared ? ({ name: 'webgpu', device: shared } as const) : provider],
      graphOptimizationLevel: 'all',
      ...(provider === 'webgpu' && options.outputsOnGpu ? { preferredOutputLocation: 'gpu-buffer' as const } : {}),
    });
    return session;
  };
  const next = creating.then(make, make);
  creating = next.catch(() => undefined);
  const session = await next;
  return {
    graph,
    provider,
    run: (feeds) => session.run(feeds),
    release: () => session.release(),
  };
}

const ORT_TYPE: Record<OnnxDType, ort.Tensor.Type> = {
  float32: 'float32', float16: 'float16', int64: 'int64', int32: 'int32', uint8: 'uint8', int8: 'int8', bool: 'bool',
};

/** A CPU tensor for a feed. Float16 data is passed as its Uint16Array bits. */
export function cpuTensor(dtype: OnnxDType, data: Float32Array | Uint16Array | BigInt64Array | Int32Array | Uint8Array | Int8Array, dims: number[]): ort.Tensor {
  return new ort.Tensor(ORT_TYPE[dtype], data as never, dims);
}

const BYTES: Partial<Record<OnnxDType, number>> = { float32: 4, float16: 2, int32: 4, uint8: 1 };

/**
 * Wraps a GPU buffer we own as an ORT tensor (no copy). Its values can be read back (getData) on ORT's device;
 * `dispose` runs when the tensor is disposed (to free or recycle the buffer).
 */
export function gpuTensor(buffer: GPUBuffer, dtype: OnnxDType, dims: number[], options: { dispose?: () => void } = {}): ort.Tensor {
  const device = shared;
  const bytes = dims.reduce((a, b) => a * b, 1) * (BYTES[dtype] ?? 4);
  const download = device
    ? async () => {
        const raw = await readGpuBuffer(device, buffer, bytes);
        return (dtype === 'float16' ? new Uint16Array(raw) : dtype === 'uint8' ? new Uint8Array(raw) : dtype === 'int32' ? new Int32Array(raw) : new Float32Array(raw)) as never;
      }
    : undefined;
  return ort.Tensor.fromGpuBuffer(buffer, { dataType: ORT_TYPE[dtype] as 'float32', dims, download, dispose: options.dispose });
}

/** Reads a tensor's values to the CPU (downloads GPU outputs). */
export async function tensorData(t: ort.Tensor): Promise<Float32Array | Uint16Array | BigInt64Array | Int32Array | Uint8Array> {
  return (await t.getData()) as Float32Array;
}

// Runs the VAE's layer lists (models/vae.ts vaeDecoderLayers / vaeEncoderLayers) on WebGPU through our kernels:
// every conv an implicit-GEMM causal conv (kernels/vaeConv.ts), every GroupNorm a statistics pass whose affine the
// next conv applies on load (kernels/vaeGroupNorm.ts), the mid-block attention a frame-causal flash attention
// (kernels/vaeAttention.ts). One call decodes (or encodes) one tile: the input goes up channels-last in the storage
// dtype, each layer is recorded and submitted in turn, the planar f32 output comes back in the reference's layout.
// Activations live in slots assigned once per plan from the layers' lifetimes (vaeSlots): a value's slot is free
// after its last reader, and later tiles (never larger than the first) reuse the same slots, so the peak is known
// before the first dispatch (vaeGpuPeakBytes) and the tiling can be chosen from a memory budget.

import { VaeInputError } from '../errors/engine.ts';
import type { VaeConvLayer, VaeLayer, VaeLayerPlan } from '../models/vae.ts';
import { VAE_NORM_EPS } from '../models/vae.ts';
import type { Tensor } from '../pipeline/tensor.ts';
import { chooseConvTile, convDispatchRanges, convOutputShape, convWeightToKN, createVaeConv, type ConvGeometry, type VaeConv } from '../kernels/vaeConv.ts';
import { createVaeGroupNorm, groupNormDispatchRanges, groupNormPartialBytes, type VaeGroupNorm } from '../kernels/vaeGroupNorm.ts';
import { createVaeAttention, vaeAttentionDispatchRanges, type VaeAttention } from '../kernels/vaeAttention.ts';
import { DEFAULT_DISPATCH_BYTES, DEFAULT_DISPATCH_FLOPS, dtypeBytes, type VaeDispatch, type VaeDtype } from '../kernels/vaeCommon.ts';
import { readGpuBuffer } from '../runtime/device.ts';
import { f32ToF16 } from '../weights/dtypes.ts';

/** The size of one activation: frames, height, width, channels (channels-last). */
export interface ActShape {
  frames: number;
  height: number;
  width: number;
  channels: number;
}

const elements = (s: ActShape) => s.frames * s.height * s.width * s.channels;

/** The geometry of a conv layer on an input of shape `s` (single-frame plans fold the temporal taps). */
export function convGeometry(layer: VaeConvLayer, s: ActShape, singleFrame: boolean): ConvGeometry {
  return {
    inFrames: s.frames,
    inHeight: s.height,
    inWidth: s.width,
    inChannels: layer.inChannels,
    outChannels: layer.outChannels,
    kernelTime: singleFrame ? 1 : layer.kernel,
    kernelSpace: layer.kernel,
    strideTime: layer.stride?.time ?? 1,
    strideSpace: layer.stride?.space ?? 1,
    upTime: layer.up?.time ?? 1,
    upSpace: layer.up?.space ?? 1,
  };
}

/** Every value's shape for an input of shape `input`, walking the layers. */
export function layerShapes(plan: VaeLayerPlan, input: ActShape): Map<string, ActShape> {
  const shapes = new Map<string, ActShape>([[plan.input, input]]);
  for (const l of plan.layers) {
    const s = shapes.get(l.input)!;
    if (l.op === 'conv') {
      const o = convOutputShape(convGeometry(l, s, plan.singleFrame));
      shapes.set(l.output, { ...o, channels: l.outChannels });
    } else if (l.op === 'attention') {
      shapes.set(l.output, { ...s, channels: l.channels });
    }
  }
  return shapes;
}

export interface SlotPlan {
  /** Slot index of every activation value. */
  slotOf: Map<string, number>;
  /** Bytes of each slot. */
  sizes: number[];
}

/**
 * Assigns activations to reused buffers: walking the layers, a layer's output takes the smallest free slot that
 * holds it (else the largest free one, grown; else a new slot); a value's slot frees after its last reader. A
 * layer's output never shares a slot with its own inputs.
 */
export function vaeSlots(plan: VaeLayerPlan, shapes: Map<string, ActShape>, dtype: VaeDtype): SlotPlan {
  const eb = dtypeBytes(dtype);
  const bytesOf = (v: string, planar: boolean) => elements(shapes.get(v)!) * (planar ? 4 : eb);
  const lastRead = new Map<string, number>();
  plan.layers.forEach((l, i) => {
    for (const v of readsOf(l)) lastRead.set(v, i);
  });
  const slotOf = new Map<string, number>();
  const sizes: number[] = [];
  const busy = new Set<number>();
  const take = (bytes: number) => {
    const free = sizes.map((s, i) => [s, i] as const).filter(([, i]) => !busy.has(i));
    const fitting = free.filter(([s]) => s >= bytes).sort((a, b) => a[0] - b[0]);
    let slot: number;
    if (fitting.length) slot = fitting[0][1];
    else if (free.length) {
      slot = free.sort((a, b) => b[0] - a[0])[0][1];
      sizes[slot] = bytes;
    } else {
      slot = sizes.length;
      sizes.push(bytes);
    }
    busy.add(slot);
    return slot;
  };
  slotOf.set(plan.input, take(bytesOf(plan.input, false)));
  plan.layers.forEach((l, i) => {
    if (l.op !== 'norm') slotOf.set(l.output, take(bytesOf(l.output, l.op === 'conv' && l.planar === true)));
    for (const v of readsOf(l)) if (lastRead.get(v) === i) busy.delete(slotOf.get(v)!);
  });
  return { slotOf, sizes };
}

/** The activation values a layer reads. */
function readsOf(l: VaeLayer): string[] {
  if (l.op === 'conv') return l.residual ? [l.input, l.residual] : [l.input];
  return [l.input];
}

/** Bytes of every weight of a plan on the GPU (convs in the storage dtype, biases and norms f32). */
export function vaeWeightBytes(plan: VaeLayerPlan, dtype: VaeDtype): number {
  let bytes = 0;
  for (const l of plan.layers) {
    if (l.op === 'conv') {
      const taps = plan.singleFrame ? l.kernel * l.kernel : l.kernel ** 3;
      bytes += taps * l.inChannels * l.outChannels * dtypeBytes(dtype) + l.outChannels * 4;
    } else if (l.op === 'norm') bytes += l.channels * 16;
  }
  return bytes;
}

/**
 * Peak GPU bytes one call of `plan` on an input of `input` holds: weights, activation slots, GroupNorm scratch and
 * affines, the readback of the output. What the tiling is chosen by.
 */
export function vaeGpuPeakBytes(plan: VaeLayerPlan, input: ActShape, dtype: VaeDtype): number {
  const shapes = layerShapes(plan, input);
  const slots = vaeSlots(plan, shapes, dtype);
  let partials = 0;
  for (const l of plan.layers) {
    if (l.op === 'norm') {
      const s = shapes.get(l.input)!;
      partials = Math.max(partials, groupNormPartialBytes({ positions: s.frames * s.height * s.width, channels: l.channels, groups: l.groups, eps: VAE_NORM_EPS }));
    }
  }
  const out = elements(shapes.get(plan.output)!) * 4;
  return vaeWeightBytes(plan, dtype) + slots.sizes.reduce((a, b) => a + b, 0) + partials + out;
}

/** The largest single buffer (activation slot) one call of `plan` on `input` needs: it must fit maxBufferSize. */
export function vaeGpuLargestBuffer(plan: VaeLayerPlan, input: ActShape, dtype: VaeDtype): number {
  return Math.max(...vaeSlots(plan, layerShapes(plan, input), dtype).sizes);
}

export interface VaeDispatchCounts {
  conv: number;
  groupNorm: number;
  attention: number;
}

/** What one call of `plan` on `input` dispatches, from the layer list and the kernels' splitting rules. */
export function vaeDispatchCounts(plan: VaeLayerPlan, input: ActShape, dtype: VaeDtype, limits: GPUSupportedLimits | { maxStorageBufferBindingSize: number; maxComputeWorkgroupsPerDimension: number }, software: boolean, maxDispatchFlops = DEFAULT_DISPATCH_FLOPS, maxDispatchBytes = DEFAULT_DISPATCH_BYTES): VaeDispatchCounts {
  const shapes = layerShapes(plan, input);
  const counts: VaeDispatchCounts = { conv: 0, groupNorm: 0, attention: 0 };
  for (const l of plan.layers) {
    const s = shapes.get(l.input)!;
    if (l.op === 'conv') {
      const g = convGeometry(l, s, plan.singleFrame);
      counts.conv += convDispatchRanges(g, chooseConvTile(g, software), dtype, limits, maxDispatchFlops, l.planar === true).length;
    } else if (l.op === 'norm') {
      const shape = { positions: s.frames * s.height * s.width, channels: l.channels, groups: l.groups, eps: VAE_NORM_EPS };
      counts.groupNorm += 2 * (groupNormDispatchRanges(shape, dtype, limits.maxStorageBufferBindingSize, maxDispatchBytes).length + 1);
    } else {
      counts.attention += vaeAttentionDispatchRanges({ tokens: s.frames * s.height * s.width, dim: l.channels, tokensPerFrame: s.height * s.width }, maxDispatchFlops, limits.maxComputeWorkgroupsPerDimension).length;
    }
  }
  return counts;
}

/** A layer's dispatches with their GPU times (timestamp queries), for benches. */
export interface LayerTiming {
  layer: VaeLayer;
  dispatches: VaeDispatch[];
  /** GPU ms of each dispatch; null without timestamp-query. */
  gpuMs: number[] | null;
}

export interface VaeGpuOptions {
  dtype: VaeDtype;
  /** A software rasteriser (SwiftShader): the convs take the barrier-free direct tile. Default: from device.adapterInfo. */
  software?: boolean;
  maxDispatchFlops?: number;
  maxDispatchBytes?: number;
  /** Called after each layer with its dispatches' GPU times: waits for the GPU after every layer (benches only). */
  onLayer?: (t: LayerTiming) => void;
}

/** Reads a checkpoint tensor as f32 (a Checkpoint's f32, or random weights in the bench). */
export type WeightReader = (name: string) => Promise<Float32Array>;

export interface VaeGpuRunner {
  readonly dtype: VaeDtype;
  /** Dispatches made so far, per kernel. */
  readonly dispatches: VaeDispatchCounts;
  /**
   * Runs `plan` on one tile: input in the reference layout [1, C, T, H, W] f32, output planar f32 [1, C', T', H', W'].
   * Weights are uploaded on a plan's first call.
   */
  run(plan: VaeLayerPlan, input: Tensor): Promise<Tensor>;
  release(): void;
}

interface PlanWeights {
  conv: Map<VaeConvLayer, { weight: GPUBuffer; bias: GPUBuffer }>;
  norm: Map<string, { gamma: GPUBuffer; beta: GPUBuffer; affine: GPUBuffer }>;
}

/** Whether the device is a software rasteriser (SwiftShader, llvmpipe), from its adapter info where it has one. */
export function isSoftwareDevice(device: GPUDevice): boolean {
  const info = (device as GPUDevice & { adapterInfo?: GPUAdapterInfo }).adapterInfo;
  return info?.architecture === 'swiftshader' || /swiftshader|llvmpipe|lavapipe/i.test(info?.description ?? '');
}

/** Opens the runner on `device`; kernels compile on first use. */
export function createVaeGpuRunner(device: GPUDevice, readWeight: WeightReader, options: VaeGpuOptions): VaeGpuRunner {
  const { dtype } = options;
  const software = options.software ?? isSoftwareDevice(device);
  const weights = new Map<VaeLayerPlan, Promise<PlanWeights>>();
  const slotBuffers: GPUBuffer[] = [];
  const owned: GPUBuffer[] = [];
  const scratch = { partials: null as GPUBuffer | null, stats: null as GPUBuffer | null };
  const convs = new Map<string, Promise<VaeConv>>();
  let groupNorm: Promise<VaeGroupNorm> | null = null;
  const attentions = new Map<number, Promise<VaeAttention>>();
  const counts: VaeDispatchCounts = { conv: 0, groupNorm: 0, attention: 0 };
  const timestamps = options.onLayer && device.features.has('timestamp-query');

  const buffer = (bytes: number, label: string, usage = GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST | GPUBufferUsage.COPY_SRC) => {
    const b = device.createBuffer({ label, size: Math.max(16, Math.ceil(bytes / 16) * 16), usage });
    owned.push(b);
    return b;
  };
  const upload = (values: Float32Array, as: VaeDtype, label: string) => {
    const data = as === 'f16' ? f32ToF16(values) : values;
    const b = buffer(data.byteLength, label);
    device.queue.writeBuffer(b, 0, data.buffer, data.byteOffset, data.byteLength);
    return b;
  };

  const loadWeights = (plan: VaeLayerPlan) => {
    let w = weights.get(plan);
    if (!w) {
      w = (async () => {
        const conv = new Map<VaeConvLayer, { weight: GPUBuffer; bias: GPUBuffer }>();
        const norm = new Map<string, { gamma: GPUBuffer; beta: GPUBuffer; affine: GPUBuffer }>();
        for (const l of plan.layers) {
          if (l.op === 'conv') {
            const parts: Float32Array[] = [];
            const biases: Float32Array[] = [];
            const per = l.outChannels / l.weights.length;
            const shape = l.kernel === 3 ? [per, l.inChannels, 3, 3, 3] : [per, l.inChannels];
            for (const prefix of l.weights) {
              parts.push(convWeightToKN(await readWeight(`${prefix}.weight`), shape, plan.singleFrame));
              biases.push(await readWeight(`${prefix}.bias`));
            }
            // Stacked linears (q, k, v): [K, per] each, joined along N.
            const K = parts[0].length / per;
            const kn = new Float32Array(K * l.outChannels);
            parts.forEach((p, j) => {
              for (let k = 0; k < K; k++) kn.set(p.subarray(k * per, (k + 1) * per), k * l.outChannels + j * per);
            });
            const bias = new Float32Array(l.outChannels);
            biases.forEach((b, j) => {
              bias.set(b, j * per);
            });
            conv.set(l, { weight: upload(kn, dtype, `${l.weights[0]}.weight`), bias: upload(bias, 'f32', `${l.weights[0]}.bias`) });
          } else if (l.op === 'norm') {
            norm.set(l.name, {
              gamma: upload(await readWeight(`${l.prefix}.weight`), 'f32', `${l.prefix}.weight`),
              beta: upload(await readWeight(`${l.prefix}.bias`), 'f32', `${l.prefix}.bias`),
              affine: buffer(l.channels * 8, `${l.name} affine`),
            });
          }
        }
        return { conv, norm };
      })();
      weights.set(plan, w);
    }
    return w;
  };

  const convKernel = (tile: ReturnType<typeof chooseConvTile>, planar: boolean) => {
    const key = `${tile}/${planar}`;
    let k = convs.get(key);
    if (!k) convs.set(key, (k = createVaeConv(device, { dtype, tile, planarF32: planar })));
    return k;
  };
  const attentionKernel = (dim: number) => {
    let k = attentions.get(dim);
    if (!k) attentions.set(dim, (k = createVaeAttention(device, dtype, dim)));
    return k;
  };

  const ensureSlots = (sizes: number[]) => {
    sizes.forEach((bytes, i) => {
      if (!slotBuffers[i] || slotBuffers[i].size < bytes) {
        slotBuffers[i]?.destroy();
        slotBuffers[i] = device.createBuffer({ label: `vae slot ${i}`, size: Math.max(16, Math.ceil(bytes / 16) * 16), usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST | GPUBufferUsage.COPY_SRC });
      }
    });
  };
  const ensureScratch = (partialBytes: number, groups: number) => {
    if (!scratch.partials || scratch.partials.size < partialBytes) {
      scratch.partials?.destroy();
      scratch.partials = device.createBuffer({ label: 'vae groupNorm partials', size: Math.max(16, Math.ceil(partialBytes / 16) * 16), usage: GPUBufferUsage.STORAGE });
    }
    if (!scratch.stats || scratch.stats.size < groups * 8) {
      scratch.stats?.destroy();
      scratch.stats = device.createBuffer({ label: 'vae groupNorm stats', size: Math.max(16, groups * 8), usage: GPUBufferUsage.STORAGE });
    }
  };

  /** Records a layer's dispatches and submits them; with onLayer, each in a timed pass of its own, then waits. */
  const submit = async (layer: VaeLayer, dispatches: VaeDispatch[]) => {
    for (const d of dispatches) counts[d.kind]++;
    const encoder = device.createCommandEncoder({ label: layer.op });
    let query: GPUQuerySet | null = null;
    let resolve: GPUBuffer | null = null;
    let read: GPUBuffer | null = null;
    if (timestamps) {
      query = device.createQuerySet({ type: 'timestamp', count: 2 * dispatches.length });
      dispatches.forEach((d, i) => {
        const pass = encoder.beginComputePass({ label: d.label, timestampWrites: { querySet: query!, beginningOfPassWriteIndex: 2 * i, endOfPassWriteIndex: 2 * i + 1 } });
        pass.setPipeline(d.pipeline);
        pass.setBindGroup(0, d.bindGroup);
        pass.dispatchWorkgroups(d.x, d.y);
        pass.end();
      });
      resolve = device.createBuffer({ size: 16 * dispatches.length, usage: GPUBufferUsage.QUERY_RESOLVE | GPUBufferUsage.COPY_SRC });
      read = device.createBuffer({ size: 16 * dispatches.length, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
      encoder.resolveQuerySet(query, 0, 2 * dispatches.length, resolve, 0);
      encoder.copyBufferToBuffer(resolve, 0, read, 0, 16 * dispatches.length);
    } else {
      const pass = encoder.beginComputePass({ label: layer.op });
      for (const d of dispatches) {
        pass.setPipeline(d.pipeline);
        pass.setBindGroup(0, d.bindGroup);
        pass.dispatchWorkgroups(d.x, d.y);
      }
      pass.end();
    }
    device.queue.submit([encoder.finish()]);
    if (!options.onLayer) return;
    let gpuMs: number[] | null = null;
    if (read && query && resolve) {
      await read.mapAsync(GPUMapMode.READ);
      const t = new BigInt64Array(read.getMappedRange().slice(0));
      read.unmap();
      gpuMs = dispatches.map((_, i) => Number(t[2 * i + 1] - t[2 * i]) / 1e6);
      read.destroy();
      resolve.destroy();
      query.destroy();
    } else {
      await device.queue.onSubmittedWorkDone();
    }
    options.onLayer({ layer, dispatches, gpuMs });
  };

  return {
    dtype,
    dispatches: counts,
    async run(plan, input) {
      const [b, c, frames, height, width] = input.shape;
      if (input.shape.length !== 5 || b !== 1 || c !== plan.inChannels) throw new VaeInputError(`The VAE ${plan.name} takes [1, ${plan.inChannels}, T, H, W], got [${input.shape}].`);
      if (plan.singleFrame && frames !== 1) throw new VaeInputError(`The VAE encoder takes one frame, got ${frames}.`);
      const w = await loadWeights(plan);
      const shapes = layerShapes(plan, { frames, height, width, channels: c });
      const slots = vaeSlots(plan, shapes, dtype);
      ensureSlots(slots.sizes);
      const valueBuffer = (v: string) => slotBuffers[slots.slotOf.get(v)!];
      // Input: reference layout [C, T·H·W] → channels-last [T·H·W, C] in the storage dtype.
      const plane = frames * height * width;
      const cl = new Float32Array(plane * c);
      for (let ch = 0; ch < c; ch++) for (let p = 0; p < plane; p++) cl[p * c + ch] = input.data[ch * plane + p];
      const inData = dtype === 'f16' ? f32ToF16(cl) : cl;
      device.queue.writeBuffer(valueBuffer(plan.input), 0, inData.buffer, inData.byteOffset, inData.byteLength);
      const flops = options.maxDispatchFlops ?? DEFAULT_DISPATCH_FLOPS;
      for (const l of plan.layers) {
        const s = shapes.get(l.input)!;
        if (l.op === 'norm') {
          const shape = { positions: s.frames * s.height * s.width, channels: l.channels, groups: l.groups, eps: VAE_NORM_EPS };
          ensureScratch(groupNormPartialBytes(shape), l.groups);
          const nw = w.norm.get(l.name)!;
          groupNorm ??= createVaeGroupNorm(device, dtype);
          await submit(l, (await groupNorm).dispatches(shape, { x: valueBuffer(l.input), gamma: nw.gamma, beta: nw.beta, affine: nw.affine, partials: scratch.partials!, stats: scratch.stats! }, options.maxDispatchBytes));
        } else if (l.op === 'conv') {
          const g = convGeometry(l, s, plan.singleFrame);
          const kernel = await convKernel(chooseConvTile(g, software), l.planar === true);
          const cw = w.conv.get(l)!;
          const io = {
            x: valueBuffer(l.input), weight: cw.weight, bias: cw.bias, out: valueBuffer(l.output),
            norm: l.norm ? { affine: w.norm.get(l.norm)!.affine, silu: l.silu === true } : undefined,
            residual: l.residual ? valueBuffer(l.residual) : undefined,
          };
          await submit(l, kernel.dispatches(g, io, flops));
        } else {
          const kernel = await attentionKernel(l.channels);
          await submit(l, kernel.dispatches({ tokens: s.frames * s.height * s.width, dim: l.channels, tokensPerFrame: s.height * s.width }, { qkv: valueBuffer(l.input), out: valueBuffer(l.output) }, flops));
        }
      }
      const o = shapes.get(plan.output)!;
      const count = elements(o);
      const raw = await readGpuBuffer(device, valueBuffer(plan.output), count * 4);
      return { data: new Float32Array(raw), shape: [1, o.channels, o.frames, o.height, o.width] };
    },
    release() {
      for (const b of [...owned, ...slotBuffers, scratch.partials, scratch.stats]) b?.destroy();
      owned.length = 0;
      slotBuffers.length = 0;
      weights.clear();
    },
  };
}

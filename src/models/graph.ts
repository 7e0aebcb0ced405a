// A small graph-building API over onnxProto: values are names, ops return their output names, and weights are
// declared as graph inputs bound to checkpoint tensors (so one compiled session serves every block of a kind,
// and the runtime decides where each weight lives). Describing a graph never runs it. The same declarations serve
// weight sets that are not graphs (WeightList: the DiT's block plans, run by our kernels).

import { encodeModel, type AttributeValue, type Dim, type NodeDef, type OnnxDType, type TensorValue, type ValueInfo } from './onnxProto.ts';
export type { NodeDef };

/** How a checkpoint tensor becomes the bytes a graph input takes. */
export type WeightLayout =
  | 'asis' // same shape as stored
  | 'transpose' // [out, in] Linear weight → [in, out] for MatMul
  | 'q4'; // [out, in] → MatMulNBits 4-bit blocks of 32 (B uint8 [out, in/32, 16] plus scales [out, in/32])

export interface WeightBinding {
  /** Graph input name. */
  input: string;
  /** Checkpoint tensor name; `{i}` stands for the block index when one graph serves many blocks. */
  tensor: string;
  /** Shape of the stored checkpoint tensor. */
  shape: number[];
  layout: WeightLayout;
  /** For 'q4': which part of the quantized weight this input takes. */
  part?: 'blocks' | 'scales';
  /** Stored in the activation dtype (fp16 on the f16 path) unless the graph needs fp32 here. */
  dtype: OnnxDType;
}

/** Checkpoint-bound weights under a name: a graph's weight inputs, or the weights of a kernel plan (which is no graph). */
export interface WeightSet {
  name: string;
  weights: WeightBinding[];
}

/** The binding for a weight input and the input's own shape and dtype (4-bit blocks are bytes; scales take `dtype`). */
function declareWeight(input: string, tensor: string, storedShape: number[], layout: WeightLayout, dtype: OnnxDType, part?: 'blocks' | 'scales'): { binding: WeightBinding; info: ValueInfo } {
  const blocks = Math.ceil((storedShape[1] ?? 0) / 32);
  if (part === 'scales') return { binding: { input, tensor, shape: storedShape, layout: 'q4', part, dtype }, info: { name: input, dtype, shape: [storedShape[0] * blocks] } };
  const shape = layout === 'transpose' ? [storedShape[1], storedShape[0]] : layout === 'q4' ? [storedShape[0], blocks, 16] : storedShape;
  const stored = layout === 'q4' ? 'uint8' : dtype;
  return { binding: { input, tensor, shape: storedShape, layout, dtype: stored, ...(layout === 'q4' ? { part: 'blocks' as const } : {}) }, info: { name: input, dtype: stored, shape } };
}

/** Declares checkpoint-bound weights the way Graph declares its weight inputs, for a weight set that is not a graph. */
export class WeightList implements WeightSet {
  readonly weights: WeightBinding[] = [];

  constructor(readonly name: string, readonly dtype: OnnxDType) {}

  /** A weight bound to a checkpoint tensor; returns its name. */
  weight(input: string, tensor: string, storedShape: number[], layout: WeightLayout = 'asis', dtype: OnnxDType = this.dtype): string {
    this.weights.push(declareWeight(input, tensor, storedShape, layout, dtype).binding);
    return input;
  }

  /** The scales that go with a 'q4' weight, in the activation dtype. */
  weightScales(input: string, tensor: string, storedShape: number[]): string {
    this.weights.push(declareWeight(input, tensor, storedShape, 'q4', this.dtype, 'scales').binding);
    return input;
  }
}

export interface BuiltGraph extends WeightSet {
  name: string;
  bytes: Uint8Array;
  inputs: ValueInfo[];
  outputs: ValueInfo[];
  weights: WeightBinding[];
  /** The graph's nodes, for tests that check which operator serves which weight. */
  nodes: NodeDef[];
}

export class Graph {
  private nodes: NodeDef[] = [];
  private inputs: ValueInfo[] = [];
  private outputs: ValueInfo[] = [];
  private initializers: TensorValue[] = [];
  private weights: WeightBinding[] = [];
  private counter = 0;
  private constants = new Map<string, string>();
  readonly opsets: Record<string, number> = { '': 21, 'com.microsoft': 1 };

  constructor(readonly name: string, readonly dtype: OnnxDType = 'float32') {}

  private fresh(hint: string): string {
    return `${hint}_${this.counter++}`;
  }

  input(name: string, dtype: OnnxDType, shape: Dim[]): string {
    this.inputs.push({ name, dtype, shape });
    return name;
  }

  /** Declares a weight input bound to a checkpoint tensor; returns the graph value name. */
  weight(input: string, tensor: string, storedShape: number[], layout: WeightLayout = 'asis', dtype: OnnxDType = this.dtype): string {
    const { binding, info } = declareWeight(input, tensor, storedShape, layout, dtype);
    this.inputs.push(info);
    this.weights.push(binding);
    return input;
  }

  /** The scales input that goes with a 'q4' weight, in the activation dtype. */
  weightScales(input: string, tensor: string, storedShape: number[]): string {
    const { binding, info } = declareWeight(input, tensor, storedShape, 'q4', this.dtype, 'scales');
    this.inputs.push(info);
    this.weights.push(binding);
    return input;
  }

  output(value: string, name: string, dtype: OnnxDType, shape: Dim[]): void {
    if (value !== name) this.op('Identity', [value], {}, { name });
    this.outputs.push({ name, dtype, shape });
  }

  /** A constant tensor; identical constants are shared. */
  constant(values: number[] | Float32Array, dtype: OnnxDType = 'float32', dims?: number[]): string {
    const key = `${dtype}:${dims?.join('x') ?? 'v'}:${Array.from(values).join(',')}`;
    const cached = this.constants.get(key);
    if (cached) return cached;
    const name = this.fresh('const');
    let raw: Uint8Array;
    if (dtype === 'int64') raw = new Uint8Array(BigInt64Array.from(Array.from(values, (v) => BigInt(v))).buffer);
    else if (dtype === 'float32') raw = new Uint8Array(Float32Array.from(values).buffer);
    else if (dtype === 'int32') raw = new Uint8Array(Int32Array.from(values).buffer);
    else throw new Error(`constant: dtype ${dtype} not supported`);
    this.initializers.push({ name, dtype, dims: dims ?? [values.length], raw });
    this.constants.set(key, name);
    return name;
  }

  scalar(value: number, dtype: OnnxDType = 'float32'): string {
    if (dtype === 'float16') return this.op('Cast', [this.constant([value], 'float32', [])], { to: 10 });
    return this.constant([value], dtype, []);
  }

  ints(values: number[]): string {
    return this.constant(values, 'int64');
  }

  op(opType: string, inputs: string[], attributes: Record<string, AttributeValue> = {}, options: { domain?: string; name?: string } = {}): string {
    return this.opN(opType, inputs, 1, attributes, options)[0];
  }

  opN(opType: string, inputs: string[], outputs: number, attributes: Record<string, AttributeValue> = {}, options: { domain?: string; name?: string } = {}): string[] {
    const base = options.name ?? this.fresh(opType.toLowerCase());
    const outs = Array.from({ length: outputs }, (_, i) => (outputs === 1 ? base : `${base}_${i}`));
    this.nodes.push({ opType, domain: options.domain, name: `${base}_node`, inputs, outputs: outs, attributes });
    return outs;
  }

  build(): BuiltGraph {
    const bytes = encodeModel({
      name: this.name,
      inputs: this.inputs,
      outputs: this.outputs,
      nodes: this.nodes,
      initializers: this.initializers,
      opsets: this.opsets,
    });
    return { name: this.name, bytes, inputs: this.inputs, outputs: this.outputs, weights: this.weights, nodes: this.nodes };
  }
}

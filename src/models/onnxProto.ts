// A minimal protobuf writer for ONNX's ModelProto. The project builds its graphs in TypeScript (no ONNX export
// of FramePack exists), and the handful of messages a graph needs is small enough that writing their wire format
// directly (field numbers from onnx.proto) is shorter and faster than loading a schema into protobufjs.

export enum WireType { Varint = 0, Fixed64 = 1, Bytes = 2, Fixed32 = 5 }

/** Element types of TensorProto.DataType used here. */
export const ONNX_DTYPE = { float32: 1, uint8: 2, int8: 3, int32: 6, int64: 7, bool: 9, float16: 10 } as const;
export type OnnxDType = keyof typeof ONNX_DTYPE;

class ProtoWriter {
  private chunks: Uint8Array[] = [];
  private length = 0;

  private push(bytes: Uint8Array): void {
    this.chunks.push(bytes);
    this.length += bytes.length;
  }

  private varint(value: number | bigint): void {
    let v = BigInt.asUintN(64, BigInt(value));
    const out: number[] = [];
    do {
      let byte = Number(v & 0x7fn);
      v >>= 7n;
      if (v) byte |= 0x80;
      out.push(byte);
    } while (v);
    this.push(Uint8Array.from(out));
  }

  private tag(field: number, wire: WireType): void {
    this.varint((field << 3) | wire);
  }

  int(field: number, value: number | bigint): this {
    this.tag(field, WireType.Varint);
    this.varint(value);
    return this;
  }

  float(field: number, value: number): this {
    this.tag(field, WireType.Fixed32);
    const b = new Uint8Array(4);
    new DataView(b.buffer).setFloat32(0, value, true);
    this.push(b);
    return this;
  }

  bytes(field: number, value: Uint8Array): this {
    this.tag(field, WireType.Bytes);
    this.varint(value.length);
    this.push(value);
    return this;
  }

  string(field: number, value: string): this {
    return this.bytes(field, new TextEncoder().encode(value));
  }

  message(field: number, build: (w: ProtoWriter) => void): this {
    const inner = new ProtoWriter();
    build(inner);
    return this.bytes(field, inner.finish());
  }

  finish(): Uint8Array {
    const out = new Uint8Array(this.length);
    let off = 0;
    for (const c of this.chunks) {
      out.set(c, off);
      off += c.length;
    }
    return out;
  }
}

export type Dim = number | string;

export interface ValueInfo {
  name: string;
  dtype: OnnxDType;
  /** Fixed sizes or symbolic names. */
  shape: Dim[];
}

export type AttributeValue = number | string | number[] | { floats: number[] } | { tensor: TensorValue };

export interface TensorValue {
  name: string;
  dtype: OnnxDType;
  dims: number[];
  raw: Uint8Array;
}

export interface NodeDef {
  opType: string;
  domain?: string;
  name: string;
  inputs: string[];
  outputs: string[];
  /** Integers are written as INT/INTS; use `{floats}` or a non-integer number for FLOAT(S). */
  attributes?: Record<string, AttributeValue>;
}

export interface ModelDef {
  name: string;
  inputs: ValueInfo[];
  outputs: ValueInfo[];
  nodes: NodeDef[];
  initializers: TensorValue[];
  opsets: Record<string, number>;
}

const AttributeType = { FLOAT: 1, INT: 2, STRING: 3, TENSOR: 4, FLOATS: 6, INTS: 7 } as const;

function writeTensor(w: ProtoWriter, t: TensorValue): void {
  for (const d of t.dims) w.int(1, d);
  w.int(2, ONNX_DTYPE[t.dtype]);
  w.string(8, t.name);
  w.bytes(9, t.raw);
}

function writeValueInfo(w: ProtoWriter, v: ValueInfo): void {
  w.string(1, v.name);
  w.message(2, (type) =>
    type.message(1, (tt) => {
      tt.int(1, ONNX_DTYPE[v.dtype]);
      tt.message(2, (shape) => {
        for (const d of v.shape) shape.message(1, (dim) => (typeof d === 'number' ? dim.int(1, d) : dim.string(2, d)));
      });
    }),
  );
}

function writeAttribute(w: ProtoWriter, name: string, value: AttributeValue): void {
  w.string(1, name);
  if (typeof value === 'string') {
    w.string(4, value).int(20, AttributeType.STRING);
  } else if (typeof value === 'number') {
    if (Number.isInteger(value)) w.int(3, value).int(20, AttributeType.INT);
    else w.float(2, value).int(20, AttributeType.FLOAT);
  } else if (Array.isArray(value)) {
    for (const v of value) w.int(8, v);
    w.int(20, AttributeType.INTS);
  } else if ('floats' in value) {
    for (const v of value.floats) w.float(7, v);
    w.int(20, AttributeType.FLOATS);
  } else {
    w.message(5, (t) => writeTensor(t, value.tensor)).int(20, AttributeType.TENSOR);
  }
}

/** Serialises a model to ONNX bytes (IR version 10). */
export function encodeModel(model: ModelDef): Uint8Array {
  const w = new ProtoWriter();
  w.int(1, 10); // ir_version
  w.string(2, 'framepack-web');
  for (const [domain, version] of Object.entries(model.opsets)) {
    w.message(8, (o) => {
      if (domain) o.string(1, domain);
      o.int(2, version);
    });
  }
  w.message(7, (g) => {
    for (const n of model.nodes) {
      g.message(1, (nw) => {
        for (const i of n.inputs) nw.string(1, i);
        for (const o of n.outputs) nw.string(2, o);
        nw.string(3, n.name);
        nw.string(4, n.opType);
        for (const [k, v] of Object.entries(n.attributes ?? {})) nw.message(5, (a) => writeAttribute(a, k, v));
        if (n.domain) nw.string(7, n.domain);
      });
    }
    g.string(2, model.name);
    for (const t of model.initializers) g.message(5, (tw) => writeTensor(tw, t));
    for (const v of model.inputs) g.message(11, (vw) => writeValueInfo(vw, v));
    for (const v of model.outputs) g.message(12, (vw) => writeValueInfo(vw, v));
  });
  return w.finish();
}

//! A minimal ONNX (protobuf) writer for the messages a model needs.
//!
//! Hand-written rather than generated: the converter only ever writes, the
//! field numbers below are those of onnx.proto (onnx 1.19), and writing by hand
//! lets large initializers stream from the checkpoint straight to the file
//! (their lengths are known in advance), so converting never holds a second
//! copy of the weights. Output is deterministic: same graph, same bytes.

use std::borrow::Cow;
use std::io::Write;

/// ONNX `TensorProto.DataType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ElemType {
    Float = 1,
    Uint8 = 2,
    Int64 = 7,
    Bool = 9,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Attr {
    Int(i64),
    Float(f32),
    Str(String),
    Ints(Vec<i64>),
    Floats(Vec<f32>),
}

#[derive(Debug, Clone)]
pub struct Node {
    pub op: String,
    pub name: String,
    pub inputs: Vec<String>,
    pub outputs: Vec<String>,
    pub attrs: Vec<(String, Attr)>,
}

/// Initializer contents. `Scaled` multiplies each of the `rows` of a borrowed
/// f32 weight by its own factor while writing (a norm folded into a conv).
#[derive(Debug, Clone)]
pub enum Data<'a> {
    F32(Vec<f32>),
    I64(Vec<i64>),
    /// Little-endian f32 bytes, as stored in the checkpoint.
    RawF32(Cow<'a, [u8]>),
    Scaled { raw: Cow<'a, [u8]>, scale: Vec<f64> },
}

impl Data<'_> {
    fn elem(&self) -> ElemType {
        match self {
            Data::I64(_) => ElemType::Int64,
            _ => ElemType::Float,
        }
    }

    fn byte_len(&self) -> usize {
        match self {
            Data::F32(v) => v.len() * 4,
            Data::I64(v) => v.len() * 8,
            Data::RawF32(b) => b.len(),
            Data::Scaled { raw, .. } => raw.len(),
        }
    }

    fn write_to(&self, w: &mut impl Write) -> std::io::Result<()> {
        match self {
            Data::F32(v) => {
                for x in v {
                    w.write_all(&x.to_le_bytes())?;
                }
            }
            Data::I64(v) => {
                for x in v {
                    w.write_all(&x.to_le_bytes())?;
                }
            }
            Data::RawF32(b) => w.write_all(b)?,
            Data::Scaled { raw, scale } => {
                let row = raw.len() / scale.len();
                let mut buf = Vec::with_capacity(row);
                for (chunk, s) in raw.chunks_exact(row).zip(scale) {
                    buf.clear();
                    for c in chunk.chunks_exact(4) {
                        let x = f32::from_le_bytes([c[0], c[1], c[2], c[3]]);
                        buf.extend_from_slice(&((x as f64 * s) as f32).to_le_bytes());
                    }
                    w.write_all(&buf)?;
                }
            }
        }
        Ok(())
    }

    /// Values as f32 (for constant folding and tests).
    pub fn to_f32(&self) -> Vec<f32> {
        let mut out = Vec::new();
        self.write_to(&mut out).expect("writing to a Vec cannot fail");
        match self {
            Data::I64(v) => v.iter().map(|&x| x as f32).collect(),
            _ => out
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Initializer<'a> {
    pub name: String,
    pub dims: Vec<i64>,
    pub data: Data<'a>,
}

/// A graph input or output: element type and dims (a string is symbolic).
#[derive(Debug, Clone)]
pub struct ValueInfo {
    pub name: String,
    pub elem: ElemType,
    pub dims: Vec<Dim>,
}

#[derive(Debug, Clone)]
pub enum Dim {
    Fixed(i64),
    Named(String),
}

pub struct Model<'a> {
    pub ir_version: i64,
    pub opset: i64,
    pub producer: String,
    pub producer_version: String,
    pub graph_name: String,
    pub doc: String,
    pub nodes: Vec<Node>,
    pub initializers: Vec<Initializer<'a>>,
    pub inputs: Vec<ValueInfo>,
    pub outputs: Vec<ValueInfo>,
    pub metadata: Vec<(String, String)>,
}

// ---- protobuf wire encoding ----

fn varint(buf: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        buf.push((v as u8) | 0x80);
        v >>= 7;
    }
    buf.push(v as u8);
}

fn varint_len(mut v: u64) -> usize {
    let mut n = 1;
    while v >= 0x80 {
        v >>= 7;
        n += 1;
    }
    n
}

fn tag(buf: &mut Vec<u8>, field: u32, wire: u32) {
    varint(buf, ((field << 3) | wire) as u64);
}

fn field_varint(buf: &mut Vec<u8>, field: u32, v: i64) {
    tag(buf, field, 0);
    varint(buf, v as u64);
}

fn field_bytes(buf: &mut Vec<u8>, field: u32, b: &[u8]) {
    tag(buf, field, 2);
    varint(buf, b.len() as u64);
    buf.extend_from_slice(b);
}

fn field_str(buf: &mut Vec<u8>, field: u32, s: &str) {
    field_bytes(buf, field, s.as_bytes());
}

fn field_f32(buf: &mut Vec<u8>, field: u32, v: f32) {
    tag(buf, field, 5);
    buf.extend_from_slice(&v.to_le_bytes());
}

fn encode_attr(name: &str, a: &Attr) -> Vec<u8> {
    // AttributeProto: name=1, f=2, i=3, s=4, floats=7, ints=8, type=20.
    let mut b = Vec::new();
    field_str(&mut b, 1, name);
    let ty = match a {
        Attr::Float(v) => {
            field_f32(&mut b, 2, *v);
            1
        }
        Attr::Int(v) => {
            field_varint(&mut b, 3, *v);
            2
        }
        Attr::Str(s) => {
            field_str(&mut b, 4, s);
            3
        }
        Attr::Floats(v) => {
            for x in v {
                field_f32(&mut b, 7, *x);
            }
            6
        }
        Attr::Ints(v) => {
            for x in v {
                field_varint(&mut b, 8, *x);
            }
            7
        }
    };
    field_varint(&mut b, 20, ty);
    b
}

fn encode_node(n: &Node) -> Vec<u8> {
    // NodeProto: input=1, output=2, name=3, op_type=4, attribute=5.
    let mut b = Vec::new();
    for i in &n.inputs {
        field_str(&mut b, 1, i);
    }
    for o in &n.outputs {
        field_str(&mut b, 2, o);
    }
    field_str(&mut b, 3, &n.name);
    field_str(&mut b, 4, &n.op);
    for (k, v) in &n.attrs {
        field_bytes(&mut b, 5, &encode_attr(k, v));
    }
    b
}

fn encode_value_info(v: &ValueInfo) -> Vec<u8> {
    // ValueInfoProto: name=1, type=2. TypeProto: tensor_type=1. Tensor: elem_type=1, shape=2.
    // TensorShapeProto: dim=1. Dimension: dim_value=1, dim_param=2.
    let mut shape = Vec::new();
    for d in &v.dims {
        let mut dim = Vec::new();
        match d {
            Dim::Fixed(n) => field_varint(&mut dim, 1, *n),
            Dim::Named(s) => field_str(&mut dim, 2, s),
        }
        field_bytes(&mut shape, 1, &dim);
    }
    let mut tensor = Vec::new();
    field_varint(&mut tensor, 1, v.elem as i64);
    field_bytes(&mut tensor, 2, &shape);
    let mut ty = Vec::new();
    field_bytes(&mut ty, 1, &tensor);
    let mut b = Vec::new();
    field_str(&mut b, 1, &v.name);
    field_bytes(&mut b, 2, &ty);
    b
}

/// TensorProto without its raw_data payload: dims=1, data_type=2, name=8, then
/// the raw_data (9) tag and length. The payload follows.
fn encode_tensor_head(t: &Initializer<'_>) -> Vec<u8> {
    let mut b = Vec::new();
    for d in &t.dims {
        field_varint(&mut b, 1, *d);
    }
    field_varint(&mut b, 2, t.data.elem() as i64);
    field_str(&mut b, 8, &t.name);
    tag(&mut b, 9, 2);
    varint(&mut b, t.data.byte_len() as u64);
    b
}

impl Model<'_> {
    /// Write the model as ONNX protobuf, streaming initializer payloads.
    pub fn write(&self, w: &mut impl Write) -> std::io::Result<()> {
        // Graph: node=1, name=2, initializer=5, doc_string=10, input=11, output=12.
        let mut graph_head = Vec::new();
        for n in &self.nodes {
            field_bytes(&mut graph_head, 1, &encode_node(n));
        }
        field_str(&mut graph_head, 2, &self.graph_name);
        let heads: Vec<Vec<u8>> = self.initializers.iter().map(encode_tensor_head).collect();
        let mut init_len = 0usize;
        for (h, t) in heads.iter().zip(&self.initializers) {
            let tensor_len = h.len() + t.data.byte_len();
            init_len += 1 + varint_len(tensor_len as u64) + tensor_len;
        }
        let mut graph_tail = Vec::new();
        field_str(&mut graph_tail, 10, &self.doc);
        for v in &self.inputs {
            field_bytes(&mut graph_tail, 11, &encode_value_info(v));
        }
        for v in &self.outputs {
            field_bytes(&mut graph_tail, 12, &encode_value_info(v));
        }
        let graph_len = graph_head.len() + init_len + graph_tail.len();

        // Model: ir_version=1, producer_name=2, producer_version=3, graph=7, opset_import=8, metadata_props=14.
        let mut head = Vec::new();
        field_varint(&mut head, 1, self.ir_version);
        field_str(&mut head, 2, &self.producer);
        field_str(&mut head, 3, &self.producer_version);
        let mut opset = Vec::new();
        field_str(&mut opset, 1, "");
        field_varint(&mut opset, 2, self.opset);
        field_bytes(&mut head, 8, &opset);
        for (k, v) in &self.metadata {
            let mut e = Vec::new();
            field_str(&mut e, 1, k);
            field_str(&mut e, 2, v);
            field_bytes(&mut head, 14, &e);
        }
        tag(&mut head, 7, 2);
        varint(&mut head, graph_len as u64);
        w.write_all(&head)?;
        w.write_all(&graph_head)?;
        for (h, t) in heads.iter().zip(&self.initializers) {
            let mut pre = Vec::new();
            tag(&mut pre, 5, 2);
            varint(&mut pre, (h.len() + t.data.byte_len()) as u64);
            w.write_all(&pre)?;
            w.write_all(h)?;
            t.data.write_to(w)?;
        }
        w.write_all(&graph_tail)?;
        Ok(())
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut v = Vec::new();
        self.write(&mut v).expect("writing to a Vec cannot fail");
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_encode_like_protobuf() {
        let mut b = Vec::new();
        varint(&mut b, 300);
        assert_eq!(b, [0xac, 0x02]);
        assert_eq!(varint_len(300), 2);
        assert_eq!(varint_len(127), 1);
        let mut b = Vec::new();
        varint(&mut b, (-1i64) as u64);
        assert_eq!(b.len(), 10);
    }

    #[test]
    fn scaled_data_multiplies_rows() {
        let raw: Vec<u8> = [1.0f32, 2.0, 3.0, 4.0].iter().flat_map(|x| x.to_le_bytes()).collect();
        let d = Data::Scaled { raw: Cow::Owned(raw), scale: vec![2.0, 10.0] };
        assert_eq!(d.to_f32(), vec![2.0, 4.0, 30.0, 40.0]);
    }
}

//! The shared graph builder every architecture module adds nodes to, and the
//! checkpoint weights it draws from (each weight must be used exactly once).

use std::borrow::Cow;
use std::collections::{BTreeSet, HashMap};

use crate::ConvertError;
use crate::onnx::{Attr, Data, Initializer, Node};
use crate::pickle::{Array, Checkpoint, DType};

/// Eps of every Detectron2 norm layer (FrozenBN, BN, GN).
pub const NORM_EPS: f32 = 1e-5;

/// Checkpoint tensors by name, tracking which ones the graph used.
pub struct Weights<'a> {
    tensors: HashMap<String, Array<'a>>,
    used: BTreeSet<String>,
    /// Names present in checkpoints that Detectron2 itself ignores on load.
    ignorable: Vec<&'static str>,
}

impl<'a> Weights<'a> {
    pub fn new(ckpt: Checkpoint<'a>) -> Self {
        Self {
            tensors: ckpt.tensors.into_iter().collect(),
            used: BTreeSet::new(),
            ignorable: vec![
                "proposal_generator.anchor_generator.cell_anchors.",
                "pixel_mean",
                "pixel_std",
                ".num_batches_tracked",
            ],
        }
    }

    pub fn has(&self, name: &str) -> bool {
        self.tensors.contains_key(name)
    }

    /// Take a weight, checking its rank and any known dims (`None` = any).
    pub fn take(&mut self, name: &str, shape: &[Option<usize>]) -> Result<Array<'a>, ConvertError> {
        let a = self
            .tensors
            .get(name)
            .ok_or_else(|| ConvertError::MissingWeight(name.to_string()))?;
        let ok = a.shape.len() == shape.len()
            && a.shape.iter().zip(shape).all(|(d, e)| e.is_none_or(|e| e == *d));
        if !ok {
            return Err(ConvertError::WeightShape {
                name: name.to_string(),
                found: a.shape.clone(),
                expected: shape
                    .iter()
                    .map(|d| d.map_or("?".to_string(), |v| v.to_string()))
                    .collect(),
            });
        }
        if !matches!(a.dtype, DType::F32 | DType::F64 | DType::F16) {
            return Err(ConvertError::WeightType {
                name: name.to_string(),
                dtype: a.dtype.name(),
            });
        }
        self.used.insert(name.to_string());
        Ok(a.clone())
    }

    /// Weights no part of the graph used (other than the ones Detectron2 ignores).
    pub fn unused(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .tensors
            .keys()
            .filter(|k| !self.used.contains(*k))
            .filter(|k| !self.ignorable.iter().any(|p| k.starts_with(p) || k.ends_with(p) || k == p))
            .cloned()
            .collect();
        v.sort();
        v
    }
}

/// f32 contents of an array, borrowing when it already is f32.
pub fn f32_bytes<'a>(a: &Array<'a>) -> Cow<'a, [u8]> {
    match a.dtype {
        DType::F32 => a.data.clone(),
        _ => Cow::Owned(a.to_f32().iter().flat_map(|x| x.to_le_bytes()).collect()),
    }
}

pub struct GraphBuilder<'a> {
    pub nodes: Vec<Node>,
    pub initializers: Vec<Initializer<'a>>,
    names: HashMap<String, usize>,
    consts_i64: HashMap<Vec<i64>, String>,
    consts_f32: HashMap<Vec<u32>, String>,
}

impl Default for GraphBuilder<'_> {
    fn default() -> Self {
        Self::new()
    }
}

impl<'a> GraphBuilder<'a> {
    pub fn new() -> Self {
        Self {
            nodes: Vec::new(),
            initializers: Vec::new(),
            names: HashMap::new(),
            consts_i64: HashMap::new(),
            consts_f32: HashMap::new(),
        }
    }

    /// A fresh value name based on `hint`.
    pub fn fresh(&mut self, hint: &str) -> String {
        let n = self.names.entry(hint.to_string()).or_insert(0);
        *n += 1;
        if *n == 1 {
            hint.to_string()
        } else {
            format!("{hint}__{}", *n - 1)
        }
    }

    /// Add a node with outputs named after `name`; returns the output names.
    pub fn op_n(&mut self, op: &str, name: &str, inputs: &[&str], n_out: usize, attrs: Vec<(&str, Attr)>) -> Vec<String> {
        let node_name = self.fresh(name);
        let outputs: Vec<String> = if n_out == 1 {
            vec![node_name.clone()]
        } else {
            (0..n_out).map(|i| format!("{node_name}:{i}")).collect()
        };
        self.nodes.push(Node {
            op: op.to_string(),
            name: node_name,
            inputs: inputs.iter().map(|s| s.to_string()).collect(),
            outputs: outputs.clone(),
            attrs: attrs.into_iter().map(|(k, v)| (k.to_string(), v)).collect(),
        });
        outputs
    }

    /// Add a single-output node.
    pub fn op(&mut self, op: &str, name: &str, inputs: &[&str], attrs: Vec<(&str, Attr)>) -> String {
        self.op_n(op, name, inputs, 1, attrs).pop().expect("one output")
    }

    /// Rename the output of the last node (for graph outputs with fixed names).
    pub fn name_last_output(&mut self, name: &str) -> String {
        let node = self.nodes.last_mut().expect("a node was added");
        node.outputs[0] = name.to_string();
        name.to_string()
    }

    pub fn init(&mut self, name: &str, dims: Vec<i64>, data: Data<'a>) -> String {
        let name = self.fresh(name);
        self.initializers.push(Initializer { name: name.clone(), dims, data });
        name
    }

    /// A checkpoint weight as an initializer.
    pub fn weight(&mut self, name: &str, a: &Array<'a>) -> String {
        let dims = a.shape.iter().map(|&d| d as i64).collect();
        self.init(name, dims, Data::RawF32(f32_bytes(a)))
    }

    /// An int64 constant (shared between uses).
    pub fn const_i64(&mut self, values: &[i64]) -> String {
        if let Some(n) = self.consts_i64.get(values) {
            return n.clone();
        }
        let n = self.init("const_i64", vec![values.len() as i64], Data::I64(values.to_vec()));
        self.consts_i64.insert(values.to_vec(), n.clone());
        n
    }

    /// A 0-d int64 constant.
    pub fn scalar_i64(&mut self, v: i64) -> String {
        let key = vec![v, i64::MIN];
        if let Some(n) = self.consts_i64.get(&key) {
            return n.clone();
        }
        let n = self.init("scalar_i64", vec![], Data::I64(vec![v]));
        self.consts_i64.insert(key, n.clone());
        n
    }

    /// An f32 constant of the given shape (shared between uses).
    pub fn const_f32(&mut self, dims: &[i64], values: &[f32]) -> String {
        let mut key: Vec<u32> = values.iter().map(|v| v.to_bits()).collect();
        key.extend(dims.iter().map(|&d| d as u32 | 0x8000_0000));
        key.push(dims.len() as u32);
        if let Some(n) = self.consts_f32.get(&key) {
            return n.clone();
        }
        let n = self.init("const_f32", dims.to_vec(), Data::F32(values.to_vec()));
        self.consts_f32.insert(key, n.clone());
        n
    }

    pub fn scalar_f32(&mut self, v: f32) -> String {
        self.const_f32(&[], &[v])
    }
}

/// Borrow a list of value names as `&str`s (node inputs).
pub fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

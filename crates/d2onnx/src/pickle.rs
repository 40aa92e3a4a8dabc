//! A pickle reader for Detectron2 checkpoints: dicts of numpy arrays.
//!
//! In Python, unpickling can run arbitrary code. This reader only recognises
//! data: the opcodes of protocols 2–5 that build containers and scalars, and
//! the handful of globals numpy uses to rebuild arrays. Any other global (a
//! torch tensor, an arbitrary callable) is refused with a clear error. Every
//! length is checked against the bytes actually present, so a hostile or
//! truncated file costs at most a copy of itself in memory and never panics.
//!
//! The same machine has a second mode for the `data.pkl` of `torch.save`
//! files ([`crate::torch`]): there the allow-list is modelled on torch's own
//! `weights_only` unpickler (storages, `_rebuild_tensor_v2`, `OrderedDict`),
//! storages arrive as persistent ids, and tensors stay lazy descriptions
//! until the torch reader decides which ones it needs.

use std::borrow::Cow;
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum PickleError {
    #[error("the file ends early (at byte {0}): it is truncated")]
    Truncated(usize),
    #[error("unsupported pickle opcode 0x{op:02x} at byte {pos}: {why}")]
    Opcode { op: u8, pos: usize, why: &'static str },
    #[error("refusing global `{module}.{name}` at byte {pos}: {why}")]
    Global {
        module: String,
        name: String,
        pos: usize,
        why: &'static str,
    },
    #[error("malformed pickle at byte {pos}: {why}")]
    Malformed { pos: usize, why: String },
    #[error("not a Detectron2 checkpoint: {0}")]
    Layout(String),
    #[error("not a readable torch.save zip archive: {0}")]
    Zip(String),
    #[error("not a readable legacy torch.save file: {0}")]
    Legacy(String),
    /// An error inside one record of a zip archive; positions are relative to that record.
    #[error("in record `{record}`: {source}")]
    Record { record: String, source: Box<PickleError> },
    #[error("tensor `{name}`: {why}")]
    Tensor { name: String, why: String },
    #[error("not supported: {0}")]
    Unsupported(String),
}

/// Element type of a stored array.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DType {
    F16,
    F32,
    F64,
    I32,
    I64,
    U8,
    Bool,
}

impl DType {
    fn from_code(code: &str) -> Option<Self> {
        Some(match code {
            "f2" => Self::F16,
            "f4" => Self::F32,
            "f8" => Self::F64,
            "i4" => Self::I32,
            "i8" => Self::I64,
            "u1" => Self::U8,
            "b1" => Self::Bool,
            _ => return None,
        })
    }

    pub fn size(self) -> usize {
        match self {
            Self::F16 => 2,
            Self::F32 | Self::I32 => 4,
            Self::F64 | Self::I64 => 8,
            Self::U8 | Self::Bool => 1,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::F16 => "float16",
            Self::F32 => "float32",
            Self::F64 => "float64",
            Self::I32 => "int32",
            Self::I64 => "int64",
            Self::U8 => "uint8",
            Self::Bool => "bool",
        }
    }
}

/// One array of the checkpoint, in C order, little-endian.
#[derive(Debug, Clone, PartialEq)]
pub struct Array<'a> {
    pub dtype: DType,
    pub shape: Vec<usize>,
    pub data: Cow<'a, [u8]>,
}

impl Array<'_> {
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }

    /// The values as f32 (f16/f64/integers converted).
    pub fn to_f32(&self) -> Vec<f32> {
        let d = &self.data;
        match self.dtype {
            DType::F32 => d.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect(),
            DType::F64 => d
                .chunks_exact(8)
                .map(|c| f64::from_le_bytes(c.try_into().unwrap()) as f32)
                .collect(),
            DType::F16 => d
                .chunks_exact(2)
                .map(|c| f16_to_f32(u16::from_le_bytes([c[0], c[1]])))
                .collect(),
            DType::I32 => d.chunks_exact(4).map(|c| i32::from_le_bytes(c.try_into().unwrap()) as f32).collect(),
            DType::I64 => d.chunks_exact(8).map(|c| i64::from_le_bytes(c.try_into().unwrap()) as f32).collect(),
            DType::U8 | DType::Bool => d.iter().map(|&b| b as f32).collect(),
        }
    }
}

pub(crate) fn f16_to_f32(h: u16) -> f32 {
    let sign = ((h >> 15) as u32) << 31;
    let exp = ((h >> 10) & 0x1f) as u32;
    let frac = (h & 0x3ff) as u32;
    let bits = match (exp, frac) {
        (0, 0) => sign,
        (0, f) => {
            // Subnormal: normalise.
            let mut e = 127 - 15 + 1;
            let mut f = f;
            while f & 0x400 == 0 {
                f <<= 1;
                e -= 1;
            }
            sign | (e << 23) | ((f & 0x3ff) << 13)
        }
        (0x1f, f) => sign | 0x7f80_0000 | (f << 13),
        (e, f) => sign | ((e + 127 - 15) << 23) | (f << 13),
    };
    f32::from_bits(bits)
}

/// Which container a checkpoint was read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckpointFormat {
    /// A Detectron2 model-zoo `.pkl`: a plain pickle of numpy arrays.
    ZooPickle,
    /// A `torch.save` zip archive (the default since PyTorch 1.6).
    TorchZip,
    /// A `torch.save(..., _use_new_zipfile_serialization=False)` stream of pickles.
    TorchLegacy,
}

impl CheckpointFormat {
    /// A short stable identifier, for logs and manifests.
    pub fn name(self) -> &'static str {
        match self {
            Self::ZooPickle => "zoo-pickle",
            Self::TorchZip => "torch-zip",
            Self::TorchLegacy => "torch-legacy",
        }
    }
}

/// A Detectron2 checkpoint: the `model` dict of a zoo `.pkl` or of a
/// `torch.save` file (its state dict).
#[derive(Debug)]
pub struct Checkpoint<'a> {
    pub author: Option<String>,
    pub format: CheckpointFormat,
    /// In file order.
    pub tensors: Vec<(String, Array<'a>)>,
}

impl<'a> Checkpoint<'a> {
    pub fn get(&self, name: &str) -> Option<&Array<'a>> {
        self.tensors.iter().find(|(n, _)| n == name).map(|(_, a)| a)
    }
}

/// How the pickle machine treats globals and persistent ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Detectron2 zoo `.pkl`: numpy arrays; anything torch is refused.
    Zoo,
    /// `data.pkl` of a `torch.save` file: storages as persistent ids, lazy tensors.
    Torch,
}

/// Element type of a torch storage (`torch.FloatStorage` …).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StorageDType {
    F32,
    F16,
    BF16,
    F64,
    I64,
    I32,
    I16,
    I8,
    U8,
    Bool,
}

impl StorageDType {
    fn from_class(name: &str) -> Option<Self> {
        Some(match name {
            "FloatStorage" => Self::F32,
            "HalfStorage" => Self::F16,
            "BFloat16Storage" => Self::BF16,
            "DoubleStorage" => Self::F64,
            "LongStorage" => Self::I64,
            "IntStorage" => Self::I32,
            "ShortStorage" => Self::I16,
            "CharStorage" => Self::I8,
            "ByteStorage" => Self::U8,
            "BoolStorage" => Self::Bool,
            _ => return None,
        })
    }

    pub(crate) fn size(self) -> usize {
        match self {
            Self::F64 | Self::I64 => 8,
            Self::F32 | Self::I32 => 4,
            Self::F16 | Self::BF16 | Self::I16 => 2,
            Self::I8 | Self::U8 | Self::Bool => 1,
        }
    }

    pub(crate) fn class_name(self) -> &'static str {
        match self {
            Self::F32 => "FloatStorage",
            Self::F16 => "HalfStorage",
            Self::BF16 => "BFloat16Storage",
            Self::F64 => "DoubleStorage",
            Self::I64 => "LongStorage",
            Self::I32 => "IntStorage",
            Self::I16 => "ShortStorage",
            Self::I8 => "CharStorage",
            Self::U8 => "ByteStorage",
            Self::Bool => "BoolStorage",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Global {
    Reconstruct,
    NdarrayType,
    DtypeType,
    CodecsEncode,
    FromBuffer,
    OrderedDict,
    // Torch mode only (classify_torch_global is the only producer).
    Counter,
    RebuildTensorV2,
    RebuildParameter,
    Storage(StorageDType),
}

/// A storage named by a `torch.save` persistent id; its bytes live elsewhere
/// in the file (a zip record or a legacy trailer), found by `key`.
#[derive(Debug)]
pub(crate) struct StorageRef {
    pub(crate) key: Rc<str>,
    pub(crate) dtype: StorageDType,
}

/// A tensor as `_rebuild_tensor_v2` describes it: a view of a storage, in
/// elements. Nothing is read until the torch reader materialises it, so
/// optimizer state costs no more than its pickle.
#[derive(Debug)]
pub(crate) struct TensorRef {
    pub(crate) storage: Rc<StorageRef>,
    pub(crate) offset: i64,
    pub(crate) size: Vec<i64>,
    pub(crate) stride: Vec<i64>,
}

#[derive(Debug)]
pub(crate) struct DtypeObj {
    code: String,
    order: u8,
}

#[derive(Debug, Default)]
pub(crate) struct ArrayObj<'a> {
    built: Option<Array<'a>>,
}

/// The items of a tuple or list. Dropping one dismantles its contents with
/// a work list, so a hostile pickle of a million nested lists cannot
/// overflow the stack through recursive drops.
#[derive(Debug, Default)]
pub(crate) struct Items<'a>(pub(crate) Vec<Value<'a>>);

/// The entries of a dict, in insertion order; dropped like [`Items`].
#[derive(Debug, Default)]
pub(crate) struct Pairs<'a>(pub(crate) Vec<(Value<'a>, Value<'a>)>);

impl Drop for Items<'_> {
    fn drop(&mut self) {
        dismantle(std::mem::take(&mut self.0));
    }
}

impl Drop for Pairs<'_> {
    fn drop(&mut self) {
        let pairs = std::mem::take(&mut self.0);
        dismantle(pairs.into_iter().flat_map(|(k, v)| [k, v]).collect());
    }
}

impl<'a> std::ops::Deref for Items<'a> {
    type Target = Vec<Value<'a>>;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl std::ops::DerefMut for Items<'_> {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.0
    }
}

impl<'a> std::ops::Deref for Pairs<'a> {
    type Target = Vec<(Value<'a>, Value<'a>)>;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl std::ops::DerefMut for Pairs<'_> {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.0
    }
}

/// Drop values without recursion: a container whose last reference this is
/// hands its contents to the work list, then drops empty. Containers still
/// shared (memo, other parents) are only decremented.
fn dismantle(mut work: Vec<Value<'_>>) {
    while let Some(v) = work.pop() {
        match v {
            Value::Tuple(rc) => {
                if let Ok(mut items) = Rc::try_unwrap(rc) {
                    work.append(&mut items.0);
                }
            }
            Value::List(rc) => {
                if let Ok(cell) = Rc::try_unwrap(rc) {
                    work.append(&mut cell.into_inner().0);
                }
            }
            Value::Dict(rc) => {
                if let Ok(cell) = Rc::try_unwrap(rc) {
                    let mut pairs = cell.into_inner();
                    for (k, v) in std::mem::take(&mut pairs.0) {
                        work.push(k);
                        work.push(v);
                    }
                }
            }
            _ => {}
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) enum Value<'a> {
    None,
    Bool(bool),
    Int(i64),
    /// Floats occur in pickles (e.g. metadata) but never matter to the weights.
    Float,
    Str(Rc<str>),
    Bytes(Rc<Cow<'a, [u8]>>),
    Tuple(Rc<Items<'a>>),
    List(Rc<RefCell<Items<'a>>>),
    Dict(Rc<RefCell<Pairs<'a>>>),
    Global(Global),
    Dtype(Rc<RefCell<DtypeObj>>),
    Array(Rc<RefCell<ArrayObj<'a>>>),
    /// Torch mode: a persistent-id storage.
    Storage(Rc<StorageRef>),
    /// Torch mode: a lazy tensor.
    Tensor(Rc<TensorRef>),
}

impl Value<'_> {
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Value::None => "None",
            Value::Bool(_) => "bool",
            Value::Int(_) => "int",
            Value::Float => "float",
            Value::Str(_) => "str",
            Value::Bytes(_) => "bytes",
            Value::Tuple(_) => "tuple",
            Value::List(_) => "list",
            Value::Dict(_) => "dict",
            Value::Global(_) => "global",
            Value::Dtype(_) => "dtype",
            Value::Array(_) => "ndarray",
            Value::Storage(_) => "storage",
            Value::Tensor(_) => "tensor",
        }
    }
}

struct Vm<'a> {
    buf: &'a [u8],
    pos: usize,
    stack: Vec<Value<'a>>,
    marks: Vec<usize>,
    memo: HashMap<u32, Value<'a>>,
    mode: Mode,
    /// Torch mode: every storage key a persistent id named, with its dtype.
    storages: HashMap<Rc<str>, StorageDType>,
}

impl Drop for Vm<'_> {
    fn drop(&mut self) {
        let mut rest = std::mem::take(&mut self.stack);
        rest.extend(self.memo.drain().map(|(_, v)| v));
        dismantle(rest);
    }
}

/// One pickle of a torch file, unpickled in torch mode.
pub(crate) struct Unpickled<'a> {
    pub(crate) root: Value<'a>,
    /// The byte after its STOP opcode: where the next pickle of a legacy file starts.
    pub(crate) end: usize,
    pub(crate) storages: HashMap<Rc<str>, StorageDType>,
}

impl Drop for Unpickled<'_> {
    fn drop(&mut self) {
        dismantle(vec![std::mem::replace(&mut self.root, Value::None)]);
    }
}

/// Run one pickle that starts at `start` in `buf`, in torch mode.
pub(crate) fn unpickle_torch(buf: &[u8], start: usize) -> Result<Unpickled<'_>, PickleError> {
    let mut vm = Vm::new(buf, start, Mode::Torch);
    let root = vm.run()?;
    Ok(Unpickled {
        root,
        end: vm.pos,
        storages: std::mem::take(&mut vm.storages),
    })
}

/// Why a global is refused in torch mode: the message should tell a user
/// what they saved and what to save instead.
fn torch_refusal(module: &str, name: &str) -> &'static str {
    let top = module.split('.').next().unwrap_or(module);
    match (module, name) {
        _ if matches!(
            top,
            "os" | "posix" | "nt" | "sys" | "subprocess" | "builtins" | "__builtin__" | "shutil" | "socket"
                | "importlib" | "runpy" | "pickle" | "marshal" | "ctypes" | "pty" | "webbrowser" | "code"
                | "commands" | "types" | "functools" | "operator"
        ) =>
        {
            "loading it would call this function: a weights file holds only tensors, dicts and numbers, so this file is refused as potentially malicious"
        }
        ("torch._utils", "_rebuild_tensor_v3") | ("torch", "UntypedStorage") => {
            "new-style storages (float8 and other new dtypes) are not supported; save float32/float16 weights"
        }
        ("torch._tensor", "_rebuild_from_type_v2") => {
            "tensor subclasses are not read; save plain tensors (model.state_dict())"
        }
        ("torch._utils", "_rebuild_qtensor") => "quantized tensors are not supported",
        ("torch._utils", _) => "sparse, meta and device-specific tensors are not supported",
        _ if top == "numpy" => {
            "numpy objects inside a torch.save file are not read (torch.load(weights_only=True) refuses them too)"
        }
        _ if top == "detectron2" || module.starts_with("torch.nn") || top == "__main__"
            || name.starts_with(|c: char| c.is_ascii_uppercase()) =>
        {
            "this is a whole pickled object (torch.save(model)?); a pickled nn.Module cannot be read without running its code: save the state_dict instead, e.g. torch.save({\"model\": model.state_dict()}, path)"
        }
        _ => "only tensors, dicts, lists and numbers are read from torch.save checkpoints (the torch.load(weights_only=True) subset)",
    }
}

/// The torch-mode allow-list: the part of `torch/_weights_only_unpickler.py`
/// that Detectron2 checkpoints use.
fn classify_torch_global(module: &str, name: &str, pos: usize) -> Result<Global, PickleError> {
    if module == "torch"
        && let Some(dt) = StorageDType::from_class(name)
    {
        return Ok(Global::Storage(dt));
    }
    Ok(match (module, name) {
        ("collections", "OrderedDict") => Global::OrderedDict,
        // torch LR schedulers keep milestones in a Counter.
        ("collections", "Counter") => Global::Counter,
        ("_codecs", "encode") => Global::CodecsEncode,
        ("torch._utils", "_rebuild_tensor_v2") => Global::RebuildTensorV2,
        ("torch._utils", "_rebuild_parameter" | "_rebuild_parameter_with_state") => Global::RebuildParameter,
        _ => {
            return Err(PickleError::Global {
                module: module.to_string(),
                name: name.to_string(),
                pos,
                why: torch_refusal(module, name),
            });
        }
    })
}

fn classify_global(mode: Mode, module: &str, name: &str, pos: usize) -> Result<Global, PickleError> {
    if mode == Mode::Torch {
        return classify_torch_global(module, name, pos);
    }
    let g = match (module, name) {
        ("numpy.core.multiarray" | "numpy._core.multiarray", "_reconstruct") => Global::Reconstruct,
        ("numpy", "ndarray") => Global::NdarrayType,
        ("numpy", "dtype") => Global::DtypeType,
        ("_codecs", "encode") => Global::CodecsEncode,
        ("numpy.core.numeric" | "numpy._core.numeric", "_frombuffer") => Global::FromBuffer,
        ("collections", "OrderedDict") => Global::OrderedDict,
        _ => {
            let why = if module.starts_with("torch") {
                "this is a torch.save/pickled-tensor file; d2serve reads Detectron2 zoo .pkl files (numpy arrays)"
            } else {
                "only numpy arrays, dicts and scalars are read from checkpoints"
            };
            return Err(PickleError::Global {
                module: module.to_string(),
                name: name.to_string(),
                pos,
                why,
            });
        }
    };
    Ok(g)
}

impl<'a> Vm<'a> {
    fn new(buf: &'a [u8], start: usize, mode: Mode) -> Self {
        Vm {
            buf,
            pos: start,
            stack: Vec::new(),
            marks: Vec::new(),
            memo: HashMap::new(),
            mode,
            storages: HashMap::new(),
        }
    }

    fn malformed<T>(&self, why: impl Into<String>) -> Result<T, PickleError> {
        Err(PickleError::Malformed {
            pos: self.pos,
            why: why.into(),
        })
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], PickleError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.buf.len())
            .ok_or(PickleError::Truncated(self.buf.len()))?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn u8(&mut self) -> Result<u8, PickleError> {
        Ok(self.take(1)?[0])
    }

    fn u32(&mut self) -> Result<u32, PickleError> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().unwrap()))
    }

    fn u64_len(&mut self) -> Result<usize, PickleError> {
        let v = u64::from_le_bytes(self.take(8)?.try_into().unwrap());
        usize::try_from(v).map_err(|_| PickleError::Truncated(self.buf.len()))
    }

    fn line(&mut self) -> Result<&'a str, PickleError> {
        let rest = &self.buf[self.pos..];
        let n = rest
            .iter()
            .position(|&b| b == b'\n')
            .ok_or(PickleError::Truncated(self.buf.len()))?;
        let s = std::str::from_utf8(&rest[..n]).or_else(|_| self.malformed("global name is not UTF-8"))?;
        self.pos += n + 1;
        Ok(s)
    }

    fn pop(&mut self) -> Result<Value<'a>, PickleError> {
        if self.marks.last().is_some_and(|&m| m >= self.stack.len()) {
            return self.malformed("pop across a mark");
        }
        match self.stack.pop() {
            Some(v) => Ok(v),
            None => self.malformed("stack underflow"),
        }
    }

    fn top(&self) -> Result<&Value<'a>, PickleError> {
        match self.stack.last() {
            Some(v) => Ok(v),
            None => self.malformed("stack underflow"),
        }
    }

    fn pop_mark(&mut self) -> Result<Vec<Value<'a>>, PickleError> {
        let Some(m) = self.marks.pop() else {
            return self.malformed("no mark on the stack");
        };
        if m > self.stack.len() {
            return self.malformed("mark above the stack");
        }
        Ok(self.stack.split_off(m))
    }

    fn str_value(&mut self, bytes: &'a [u8]) -> Result<Value<'a>, PickleError> {
        match std::str::from_utf8(bytes) {
            Ok(s) => Ok(Value::Str(Rc::from(s))),
            Err(_) => self.malformed("string is not UTF-8"),
        }
    }

    fn run(&mut self) -> Result<Value<'a>, PickleError> {
        loop {
            let at = self.pos;
            let op = self.u8()?;
            match op {
                0x80 => {
                    let proto = self.u8()?;
                    if !(2..=5).contains(&proto) {
                        return Err(PickleError::Opcode { op, pos: at, why: "only pickle protocols 2 to 5 are read" });
                    }
                }
                0x95 => {
                    self.take(8)?;
                }
                b'.' => {
                    let v = self.pop()?;
                    return Ok(v);
                }
                b'(' => self.marks.push(self.stack.len()),
                b'}' => self.stack.push(Value::Dict(Rc::default())),
                b']' => self.stack.push(Value::List(Rc::default())),
                b')' => self.stack.push(Value::Tuple(Rc::default())),
                b't' => {
                    let items = self.pop_mark()?;
                    self.stack.push(Value::Tuple(Rc::new(Items(items))));
                }
                b'l' => {
                    let items = self.pop_mark()?;
                    self.stack.push(Value::List(Rc::new(RefCell::new(Items(items)))));
                }
                b'd' => {
                    let items = self.pop_mark()?;
                    let pairs = self.pairs(items)?;
                    self.stack.push(Value::Dict(Rc::new(RefCell::new(Pairs(pairs)))));
                }
                // Sets only occur outside the weights (torch's unpickler allows
                // them); a list is a cheap stand-in that keeps the bytes parsing.
                0x8f if self.mode == Mode::Torch => self.stack.push(Value::List(Rc::default())),
                0x90 if self.mode == Mode::Torch => {
                    let items = self.pop_mark()?;
                    self.append(items)?;
                }
                0x91 if self.mode == Mode::Torch => {
                    let items = self.pop_mark()?;
                    self.stack.push(Value::Tuple(Rc::new(Items(items))));
                }
                0x85..=0x87 => {
                    let n = (op - 0x84) as usize;
                    if self.stack.len() < n || self.marks.last().is_some_and(|&m| m > self.stack.len() - n) {
                        return self.malformed("tuple needs more items");
                    }
                    let items = self.stack.split_off(self.stack.len() - n);
                    self.stack.push(Value::Tuple(Rc::new(Items(items))));
                }
                b's' => {
                    let v = self.pop()?;
                    let k = self.pop()?;
                    self.set_items(vec![(k, v)])?;
                }
                b'u' => {
                    let items = self.pop_mark()?;
                    let pairs = self.pairs(items)?;
                    self.set_items(pairs)?;
                }
                b'a' => {
                    let v = self.pop()?;
                    self.append(vec![v])?;
                }
                b'e' => {
                    let items = self.pop_mark()?;
                    self.append(items)?;
                }
                b'J' => {
                    let v = i32::from_le_bytes(self.take(4)?.try_into().unwrap());
                    self.stack.push(Value::Int(v as i64));
                }
                b'K' => {
                    let v = self.u8()?;
                    self.stack.push(Value::Int(v as i64));
                }
                b'M' => {
                    let b = self.take(2)?;
                    self.stack.push(Value::Int(u16::from_le_bytes([b[0], b[1]]) as i64));
                }
                0x8a => {
                    let n = self.u8()? as usize;
                    if n > 8 {
                        return Err(PickleError::Opcode { op, pos: at, why: "integers wider than 64 bits" });
                    }
                    let b = self.take(n)?;
                    let mut v: i64 = 0;
                    for (i, &byte) in b.iter().enumerate() {
                        v |= (byte as i64) << (8 * i);
                    }
                    if n > 0 && n < 8 && b[n - 1] & 0x80 != 0 {
                        v -= 1i64 << (8 * n);
                    }
                    self.stack.push(Value::Int(v));
                }
                b'N' => self.stack.push(Value::None),
                0x88 => self.stack.push(Value::Bool(true)),
                0x89 => self.stack.push(Value::Bool(false)),
                b'G' => {
                    self.take(8)?;
                    self.stack.push(Value::Float);
                }
                b'X' => {
                    let n = self.u32()? as usize;
                    let b = self.take(n)?;
                    let v = self.str_value(b)?;
                    self.stack.push(v);
                }
                0x8c => {
                    let n = self.u8()? as usize;
                    let b = self.take(n)?;
                    let v = self.str_value(b)?;
                    self.stack.push(v);
                }
                0x8d => {
                    let n = self.u64_len()?;
                    let b = self.take(n)?;
                    let v = self.str_value(b)?;
                    self.stack.push(v);
                }
                // Python 2 str: bytes, read as latin1 like detectron2's pickle.load(encoding="latin1").
                b'T' | b'B' => {
                    let n = self.u32()? as usize;
                    let b = self.take(n)?;
                    self.stack.push(Value::Bytes(Rc::new(Cow::Borrowed(b))));
                }
                b'U' | b'C' => {
                    let n = self.u8()? as usize;
                    let b = self.take(n)?;
                    self.stack.push(Value::Bytes(Rc::new(Cow::Borrowed(b))));
                }
                0x8e | 0x96 => {
                    let n = self.u64_len()?;
                    let b = self.take(n)?;
                    self.stack.push(Value::Bytes(Rc::new(Cow::Borrowed(b))));
                }
                b'q' => {
                    let i = self.u8()? as u32;
                    let v = self.top()?.clone();
                    self.memo.insert(i, v);
                }
                b'r' => {
                    let i = self.u32()?;
                    let v = self.top()?.clone();
                    self.memo.insert(i, v);
                }
                0x94 => {
                    let i = self.memo.len() as u32;
                    let v = self.top()?.clone();
                    self.memo.insert(i, v);
                }
                b'h' | b'j' => {
                    let i = if op == b'h' { self.u8()? as u32 } else { self.u32()? };
                    match self.memo.get(&i) {
                        Some(v) => self.stack.push(v.clone()),
                        None => return self.malformed(format!("memo entry {i} was never stored")),
                    }
                }
                b'c' => {
                    let module = self.line()?;
                    let name = self.line()?;
                    let g = classify_global(self.mode, module, name, at)?;
                    self.stack.push(Value::Global(g));
                }
                0x93 => {
                    let name = self.pop()?;
                    let module = self.pop()?;
                    let (Value::Str(m), Value::Str(n)) = (&module, &name) else {
                        return self.malformed("STACK_GLOBAL needs two strings");
                    };
                    let g = classify_global(self.mode, m, n, at)?;
                    self.stack.push(Value::Global(g));
                }
                b'R' => {
                    let args = self.pop()?;
                    let callable = self.pop()?;
                    let v = self.reduce(callable, args)?;
                    self.stack.push(v);
                }
                0x81 => {
                    let args = self.pop()?;
                    let cls = self.pop()?;
                    match (&cls, &args) {
                        (Value::Global(Global::OrderedDict), Value::Tuple(t)) if t.is_empty() => {
                            self.stack.push(Value::Dict(Rc::default()))
                        }
                        _ => return Err(PickleError::Opcode { op, pos: at, why: "NEWOBJ of anything but OrderedDict" }),
                    }
                }
                b'b' => {
                    let state = self.pop()?;
                    let obj = self.top()?.clone();
                    self.build(obj, state)?;
                }
                b'0' => {
                    self.pop()?;
                }
                b'1' => {
                    self.pop_mark()?;
                }
                b'2' => {
                    let v = self.top()?.clone();
                    self.stack.push(v);
                }
                b'Q' if self.mode == Mode::Torch => {
                    let pid = self.pop()?;
                    let v = self.persistent_load(pid)?;
                    self.stack.push(v);
                }
                b'P' if self.mode == Mode::Torch => {
                    return Err(PickleError::Opcode {
                        op,
                        pos: at,
                        why: "text persistent ids (PERSID) are not torch.save storages",
                    });
                }
                b'P' | b'Q' => {
                    return Err(PickleError::Opcode {
                        op,
                        pos: at,
                        why: "persistent references (torch.save storages); d2serve reads Detectron2 zoo .pkl files",
                    });
                }
                _ => return Err(PickleError::Opcode { op, pos: at, why: "not used by checkpoint pickles" }),
            }
        }
    }

    fn pairs(&self, items: Vec<Value<'a>>) -> Result<Vec<(Value<'a>, Value<'a>)>, PickleError> {
        if !items.len().is_multiple_of(2) {
            return self.malformed("odd number of dict items");
        }
        let mut it = items.into_iter();
        let mut out = Vec::new();
        while let (Some(k), Some(v)) = (it.next(), it.next()) {
            out.push((k, v));
        }
        Ok(out)
    }

    fn set_items(&mut self, pairs: Vec<(Value<'a>, Value<'a>)>) -> Result<(), PickleError> {
        let torch = self.mode == Mode::Torch;
        match self.top()? {
            Value::Dict(d) => {
                let mut d = d.borrow_mut();
                for (k, v) in pairs {
                    // Torch mode also meets optimizer and scheduler state, whose
                    // keys may be any hashable scalar; only weight names must be strings.
                    let key_ok = match k {
                        Value::Str(_) | Value::Bytes(_) | Value::Int(_) => true,
                        Value::None | Value::Bool(_) | Value::Float | Value::Tuple(_) => torch,
                        _ => false,
                    };
                    if key_ok {
                        d.push((k, v));
                    } else {
                        return self.malformed("dict keys must be strings or ints");
                    }
                }
                Ok(())
            }
            other => self.malformed(format!("SETITEM on a {}", other.kind())),
        }
    }

    fn append(&mut self, items: Vec<Value<'a>>) -> Result<(), PickleError> {
        match self.top()? {
            Value::List(l) => {
                l.borrow_mut().extend(items);
                Ok(())
            }
            other => self.malformed(format!("APPEND on a {}", other.kind())),
        }
    }

    fn reduce(&self, callable: Value<'a>, args: Value<'a>) -> Result<Value<'a>, PickleError> {
        let Value::Global(g) = callable else {
            return self.malformed(format!("REDUCE calls a {}", callable.kind()));
        };
        let Value::Tuple(args) = args else {
            return self.malformed("REDUCE arguments are not a tuple");
        };
        match (g, args.as_slice()) {
            (Global::Reconstruct, [Value::Global(Global::NdarrayType), ..]) => {
                Ok(Value::Array(Rc::default()))
            }
            (Global::DtypeType, [Value::Str(code), ..]) => Ok(Value::Dtype(Rc::new(RefCell::new(DtypeObj {
                code: code.to_string(),
                order: b'=',
            })))),
            (Global::DtypeType, [Value::Bytes(code), ..]) => Ok(Value::Dtype(Rc::new(RefCell::new(DtypeObj {
                code: String::from_utf8_lossy(code).into_owned(),
                order: b'=',
            })))),
            (Global::CodecsEncode, [Value::Str(s), Value::Str(enc)]) if &**enc == "latin1" || &**enc == "latin-1" => {
                // Protocol 2 from Python 3 stores bytes as text whose code points are the byte values.
                let mut out = Vec::with_capacity(s.len());
                for c in s.chars() {
                    match u8::try_from(c as u32) {
                        Ok(b) => out.push(b),
                        Err(_) => return self.malformed("latin1 data holds a character above U+00FF"),
                    }
                }
                Ok(Value::Bytes(Rc::new(Cow::Owned(out))))
            }
            (Global::FromBuffer, [Value::Bytes(buf), Value::Dtype(dt), Value::Tuple(shape), Value::Str(order)]) => {
                let fortran = match &**order {
                    "C" => false,
                    "F" => true,
                    _ => return self.malformed("array order must be C or F"),
                };
                let arr = self.make_array(shape, &dt.borrow(), fortran, buf)?;
                Ok(Value::Array(Rc::new(RefCell::new(ArrayObj { built: Some(arr) }))))
            }
            (Global::OrderedDict, []) => Ok(Value::Dict(Rc::default())),
            (Global::Counter, []) => Ok(Value::Dict(Rc::default())),
            (Global::Counter, [Value::Dict(d)]) => Ok(Value::Dict(d.clone())),
            // _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad, backward_hooks, metadata=None)
            (
                Global::RebuildTensorV2,
                [Value::Storage(storage), Value::Int(offset), Value::Tuple(size), Value::Tuple(stride), Value::Bool(_), hooks, rest @ ..],
            ) if rest.len() <= 1 => {
                if !matches!(hooks, Value::Dict(_) | Value::None)
                    || !matches!(rest.first(), None | Some(Value::Dict(_) | Value::None))
                {
                    return self.malformed("_rebuild_tensor_v2 hooks or metadata are not dicts");
                }
                let size = self.ints(size, "tensor size")?;
                let stride = self.ints(stride, "tensor stride")?;
                Ok(Value::Tensor(Rc::new(TensorRef {
                    storage: storage.clone(),
                    offset: *offset,
                    size,
                    stride,
                })))
            }
            // Parameter(tensor, requires_grad, hooks[, state]) is just its tensor here.
            (Global::RebuildParameter, [t @ Value::Tensor(_), Value::Bool(_), _, rest @ ..]) if rest.len() <= 1 => {
                Ok(t.clone())
            }
            (g, _) => self.malformed(format!("unexpected arguments for {g:?}")),
        }
    }

    fn ints(&self, items: &[Value<'a>], what: &str) -> Result<Vec<i64>, PickleError> {
        items
            .iter()
            .map(|v| match v {
                Value::Int(n) => Ok(*n),
                other => self.malformed(format!("{what} holds a {}", other.kind())),
            })
            .collect()
    }

    /// BINPERSID: torch.save replaces each storage by
    /// `('storage', <torch.XStorage>, key, location, numel)` (zip) or the same
    /// with a sixth `view_metadata` element that is None (legacy).
    fn persistent_load(&mut self, pid: Value<'a>) -> Result<Value<'a>, PickleError> {
        let Value::Tuple(t) = &pid else {
            return self.malformed(format!("persistent id is a {}, not a tuple", pid.kind()));
        };
        let (dtype, key) = match t.as_slice() {
            [Value::Str(tag), rest @ ..] if &**tag == "storage" => match rest {
                [Value::Global(Global::Storage(dt)), Value::Str(key), Value::Str(_location), Value::Int(numel)]
                | [Value::Global(Global::Storage(dt)), Value::Str(key), Value::Str(_location), Value::Int(numel), Value::None]
                    if *numel >= 0 =>
                {
                    (*dt, key.clone())
                }
                [_, _, _, _, Value::Tuple(_)] => {
                    return Err(PickleError::Unsupported(
                        "storage views (view_metadata of pre-1.0 legacy torch.save files); re-save the checkpoint with a recent torch"
                            .into(),
                    ));
                }
                _ => return self.malformed("storage persistent id is not ('storage', <torch.XStorage>, key, location, numel)"),
            },
            [Value::Str(tag), ..] if &**tag == "module" => {
                return Err(PickleError::Unsupported(
                    "a whole pickled nn.Module (torch.save(model)) cannot be read; save the state_dict instead, e.g. torch.save({\"model\": model.state_dict()}, path)"
                        .into(),
                ));
            }
            _ => return self.malformed("only ('storage', …) persistent ids are read"),
        };
        match self.storages.get(&key) {
            Some(&seen) if seen != dtype => {
                return self.malformed(format!(
                    "storage `{key}` is named both as {} and as {}",
                    seen.class_name(),
                    dtype.class_name()
                ));
            }
            Some(_) => {}
            None => {
                self.storages.insert(key.clone(), dtype);
            }
        }
        Ok(Value::Storage(Rc::new(StorageRef { key, dtype })))
    }

    fn build(&self, obj: Value<'a>, state: Value<'a>) -> Result<(), PickleError> {
        match (obj, state) {
            (Value::Dtype(d), Value::Tuple(st)) => {
                let order = match st.get(1) {
                    Some(Value::Str(s)) => s.as_bytes().first().copied(),
                    Some(Value::Bytes(b)) => b.first().copied(),
                    _ => None,
                };
                match order {
                    Some(o @ (b'<' | b'>' | b'|' | b'=')) => {
                        d.borrow_mut().order = o;
                        Ok(())
                    }
                    _ => self.malformed("dtype state has no byte order"),
                }
            }
            (Value::Array(a), Value::Tuple(st)) => {
                let [Value::Int(_), Value::Tuple(shape), Value::Dtype(dt), Value::Bool(fortran), data] = st.as_slice()
                else {
                    return self.malformed("ndarray state is not (version, shape, dtype, fortran, data)");
                };
                let data = match data {
                    Value::Bytes(b) => b,
                    Value::List(_) => return self.malformed("object arrays are not weights"),
                    other => return self.malformed(format!("ndarray data is a {}", other.kind())),
                };
                let arr = self.make_array(shape, &dt.borrow(), *fortran, data)?;
                a.borrow_mut().built = Some(arr);
                Ok(())
            }
            (Value::Dict(_), Value::None) => Ok(()),
            // A state_dict is an OrderedDict with a `_metadata` attribute
            // (per-module versions); the weights do not depend on it.
            (Value::Dict(_), Value::Dict(_)) if self.mode == Mode::Torch => Ok(()),
            (o, s) => self.malformed(format!("BUILD of a {} with a {}", o.kind(), s.kind())),
        }
    }

    fn make_array(
        &self,
        shape: &[Value<'a>],
        dt: &DtypeObj,
        fortran: bool,
        data: &Rc<Cow<'a, [u8]>>,
    ) -> Result<Array<'a>, PickleError> {
        let Some(dtype) = DType::from_code(dt.code.trim_start_matches(['<', '|', '='])) else {
            return self.malformed(format!("unsupported array dtype `{}`", dt.code));
        };
        if dt.order == b'>' && dtype.size() > 1 {
            return self.malformed("big-endian arrays are not supported");
        }
        let mut dims = Vec::with_capacity(shape.len());
        let mut numel: usize = 1;
        for d in shape {
            let Value::Int(n) = d else {
                return self.malformed("array shape holds a non-integer");
            };
            let n = usize::try_from(*n).or_else(|_| self.malformed("negative array dimension"))?;
            numel = numel.checked_mul(n).ok_or(()).or_else(|_| self.malformed("array size overflows"))?;
            dims.push(n);
        }
        let bytes = numel.checked_mul(dtype.size()).ok_or(()).or_else(|_| self.malformed("array size overflows"))?;
        if data.len() != bytes {
            return self.malformed(format!(
                "array of shape {dims:?} ({}) needs {bytes} bytes but holds {}",
                dtype.name(),
                data.len()
            ));
        }
        let data: Cow<'a, [u8]> = if fortran && dims.len() > 1 {
            Cow::Owned(fortran_to_c(data, &dims, dtype.size()))
        } else {
            match &**data {
                Cow::Borrowed(b) => Cow::Borrowed(*b),
                Cow::Owned(v) => Cow::Owned(v.clone()),
            }
        };
        Ok(Array { dtype, shape: dims, data })
    }
}

/// Reorder a column-major array into row-major.
fn fortran_to_c(data: &[u8], dims: &[usize], item: usize) -> Vec<u8> {
    let numel: usize = dims.iter().product();
    let mut out = vec![0u8; data.len()];
    // Fortran strides: dim 0 fastest.
    let mut fstrides = vec![1usize; dims.len()];
    for i in 1..dims.len() {
        fstrides[i] = fstrides[i - 1] * dims[i - 1];
    }
    let mut idx = vec![0usize; dims.len()];
    for c in 0..numel {
        let f: usize = idx.iter().zip(&fstrides).map(|(i, s)| i * s).sum();
        out[c * item..(c + 1) * item].copy_from_slice(&data[f * item..(f + 1) * item]);
        for d in (0..dims.len()).rev() {
            idx[d] += 1;
            if idx[d] < dims[d] {
                break;
            }
            idx[d] = 0;
        }
    }
    out
}

pub(crate) fn key_string(k: &Value<'_>) -> Option<String> {
    match k {
        Value::Str(s) => Some(s.to_string()),
        Value::Bytes(b) => Some(b.iter().map(|&c| c as char).collect()),
        _ => None,
    }
}

/// Read a Detectron2 zoo checkpoint (`{"model": {name: ndarray}, "__author__": …}`).
pub fn read_checkpoint(buf: &[u8]) -> Result<Checkpoint<'_>, PickleError> {
    let mut vm = Vm::new(buf, 0, Mode::Zoo);
    let root = vm.run()?;
    drop(vm);
    let out = zoo_checkpoint(&root);
    dismantle(vec![root]);
    out
}

fn zoo_checkpoint<'a>(root: &Value<'a>) -> Result<Checkpoint<'a>, PickleError> {
    let Value::Dict(root) = root else {
        return Err(PickleError::Layout(format!("the top level is a {}, not a dict", root.kind())));
    };
    let root = root.borrow();
    let find = |name: &str| root.iter().find(|(k, _)| key_string(k).as_deref() == Some(name)).map(|(_, v)| v);
    let Some(model) = find("model") else {
        let hint = if find("blobs").is_some() {
            "it is a Detectron1/Caffe2 blob file (\"blobs\"), not a Detectron2 zoo checkpoint"
        } else {
            "it has no \"model\" entry"
        };
        return Err(PickleError::Layout(hint.to_string()));
    };
    let author = match find("__author__") {
        Some(Value::Str(s)) => Some(s.to_string()),
        Some(Value::Bytes(b)) => Some(b.iter().map(|&c| c as char).collect()),
        _ => None,
    };
    let Value::Dict(model) = model else {
        return Err(PickleError::Layout(format!("\"model\" is a {}, not a dict", model.kind())));
    };
    let mut tensors = Vec::new();
    for (k, v) in model.borrow().iter() {
        let Some(name) = key_string(k) else {
            return Err(PickleError::Layout("a weight name is not a string".into()));
        };
        let arr = match v {
            Value::Array(a) => a.borrow().built.clone(),
            _ => None,
        };
        match arr {
            Some(a) => tensors.push((name, a)),
            None => {
                return Err(PickleError::Layout(format!(
                    "weight `{name}` is a {}, not a numpy array",
                    v.kind()
                )));
            }
        }
    }
    Ok(Checkpoint {
        author,
        format: CheckpointFormat::ZooPickle,
        tensors,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fortran_order_is_transposed() {
        // 2x3 array [[0,1,2],[3,4,5]] stored column-major: 0,3,1,4,2,5 (u8).
        let f = [0u8, 3, 1, 4, 2, 5];
        assert_eq!(fortran_to_c(&f, &[2, 3], 1), vec![0, 1, 2, 3, 4, 5]);
    }

    #[test]
    fn half_floats_convert() {
        assert_eq!(f16_to_f32(0x3c00), 1.0);
        assert_eq!(f16_to_f32(0xc000), -2.0);
        assert_eq!(f16_to_f32(0x0001), 5.960_464_5e-8);
    }
}

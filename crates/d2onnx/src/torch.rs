//! A reader for PyTorch `torch.save` checkpoints (`.pth`), without Python.
//!
//! Two containers exist (docs/custom-models.md §1.2–1.4):
//! - the zip archive every torch ≥ 1.6 writes: `<archive>/data.pkl` (the
//!   pickled object, storages replaced by persistent ids) plus one
//!   uncompressed record `<archive>/data/<key>` per storage;
//! - the legacy stream of consecutive pickles (`_use_new_zipfile_serialization=False`),
//!   with the storages' raw bytes after the last pickle.
//!
//! The pickle runs in the torch mode of [`crate::pickle`]: data only, an
//! allow-list modelled on `torch.load(weights_only=True)`. Tensors stay lazy
//! descriptions until we know which ones are weights: only the tensors of the
//! root's `"model"` entry are read, so optimizer and scheduler state in a
//! training checkpoint cost nothing but their pickle.
//!
//! Every offset and length is checked against the buffer. The zip reader
//! accepts only *stored* records, which is what torch writes, and which rules
//! out decompression bombs. Materialising a tensor never allocates more than
//! a small multiple of the file size in total.

use std::borrow::Cow;
use std::collections::HashMap;
use std::collections::hash_map::Entry;

use crate::pickle::{
    self, Array, Checkpoint, CheckpointFormat, DType, PickleError, StorageDType, TensorRef, Value, key_string,
    read_checkpoint,
};

/// The first pickle of a legacy file: protocol 2, then `LONG1` of 10 bytes
/// holding torch's magic number 0x1950a86a20f9469cfc6c, little-endian.
const LEGACY_MAGIC: [u8; 14] = [0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19];

/// Read a checkpoint in any supported format, recognised by its first bytes:
/// a torch zip archive, a legacy torch file, or else a Detectron2 zoo pickle.
pub fn read_any_checkpoint(buf: &[u8]) -> Result<Checkpoint<'_>, PickleError> {
    if buf.starts_with(b"PK\x03\x04") {
        read_torch_zip(buf)
    } else if buf.starts_with(&LEGACY_MAGIC) {
        read_torch_legacy(buf)
    } else {
        read_checkpoint(buf)
    }
}

/// Read a `torch.save` zip archive (PyTorch ≥ 1.6).
pub fn read_torch_zip(buf: &[u8]) -> Result<Checkpoint<'_>, PickleError> {
    let entries = zip_entries(buf)?;
    let mut by_name: HashMap<&[u8], &ZipEntry<'_>> = HashMap::with_capacity(entries.len());
    for e in &entries {
        if by_name.insert(e.name, e).is_some() {
            return Err(PickleError::Zip(format!("record `{}` appears twice", e.display_name())));
        }
    }

    // torch takes the archive name from the first record; any folder name is
    // legal (`archive` for file objects, the file stem for paths), so find it
    // from the one record that must exist.
    let pkls: Vec<&ZipEntry<'_>> = entries
        .iter()
        .filter(|e| {
            e.name
                .strip_suffix(b"/data.pkl")
                .is_some_and(|top| !top.is_empty() && !top.contains(&b'/'))
        })
        .collect();
    let data_pkl = match pkls.as_slice() {
        [one] => *one,
        [] => {
            let torchscript = entries
                .iter()
                .any(|e| e.name.ends_with(b"/constants.pkl") || e.name.windows(6).any(|w| w == b"/code/"));
            let why = if torchscript {
                "it is a TorchScript archive (torch.jit.save); save the eager model's state_dict with torch.save instead"
            } else {
                "it has no `<archive>/data.pkl` record, so it is not a torch.save checkpoint"
            };
            return Err(PickleError::Zip(why.into()));
        }
        _ => return Err(PickleError::Zip("it holds more than one `<archive>/data.pkl` record".into())),
    };
    let top = String::from_utf8_lossy(&data_pkl.name[..data_pkl.name.len() - b"/data.pkl".len()]).into_owned();

    // Missing `byteorder` means little-endian (torch < 2.1 never wrote it).
    if let Some(e) = by_name.get(format!("{top}/byteorder").as_bytes()) {
        let order = e.payload(buf)?;
        match order.trim_ascii() {
            b"little" => {}
            b"big" => return Err(PickleError::Unsupported("big-endian torch.save files".into())),
            other => {
                return Err(PickleError::Zip(format!(
                    "record `{top}/byteorder` holds {:?}, not \"little\" or \"big\"",
                    String::from_utf8_lossy(other)
                )));
            }
        }
    }

    let pkl_bytes = data_pkl.payload(buf)?;
    let unpickled = pickle::unpickle_torch(pkl_bytes, 0).map_err(|e| PickleError::Record {
        record: data_pkl.display_name(),
        source: Box::new(e),
    })?;

    let storage = |key: &str| -> Result<&[u8], String> {
        let record = format!("{top}/data/{key}");
        match by_name.get(record.as_bytes()) {
            Some(e) => e.payload(buf).map_err(|e| e.to_string()),
            None => Err(format!("record `{record}` is missing from the archive")),
        }
    };
    let tensors = state_dict(&unpickled.root, &storage, budget(buf.len()))?;
    Ok(Checkpoint {
        author: None,
        format: CheckpointFormat::TorchZip,
        tensors,
    })
}

/// Read a legacy `torch.save` file: magic number, protocol version,
/// system info, the object, the list of storage keys, then per key an int64
/// element count and the storage's raw bytes.
pub fn read_torch_legacy(buf: &[u8]) -> Result<Checkpoint<'_>, PickleError> {
    if !buf.starts_with(&LEGACY_MAGIC) {
        return Err(PickleError::Legacy("it does not start with torch's magic number".into()));
    }
    // The magic is a 10-byte LONG1, wider than the pickle machine reads, so
    // its pickle is checked by bytes.
    match buf.get(LEGACY_MAGIC.len()) {
        Some(b'.') => {}
        Some(_) => return Err(PickleError::Legacy("the magic-number pickle does not end after the number".into())),
        None => return Err(PickleError::Truncated(buf.len())),
    }
    let protocol = pickle::unpickle_torch(buf, LEGACY_MAGIC.len() + 1)?;
    match protocol.root {
        Value::Int(1001) => {}
        ref other => {
            let found = match other {
                Value::Int(n) => n.to_string(),
                v => format!("a {}", v.kind()),
            };
            return Err(PickleError::Legacy(format!("protocol version is {found}, expected 1001")));
        }
    }
    let sys_info = pickle::unpickle_torch(buf, protocol.end)?;
    let little = match &sys_info.root {
        Value::Dict(d) => d
            .borrow()
            .iter()
            .find(|(k, _)| key_string(k).as_deref() == Some("little_endian"))
            .map(|(_, v)| matches!(v, Value::Bool(true))),
        _ => None,
    };
    match little {
        Some(true) => {}
        Some(false) => return Err(PickleError::Unsupported("big-endian legacy torch.save files".into())),
        None => return Err(PickleError::Legacy("the system-info pickle has no little_endian entry".into())),
    }
    let object = pickle::unpickle_torch(buf, sys_info.end)?;
    let keys = pickle::unpickle_torch(buf, object.end)?;
    let Value::List(keys_list) = &keys.root else {
        return Err(PickleError::Legacy(format!("the storage-key pickle is a {}, not a list", keys.root.kind())));
    };

    // The storages follow back to back in key-list order; each one's size
    // is only known from its dtype, which the object's persistent ids gave.
    let mut storages: HashMap<String, &[u8]> = HashMap::new();
    let mut pos = keys.end;
    for k in keys_list.borrow().iter() {
        let Value::Str(key) = k else {
            return Err(PickleError::Legacy(format!("a storage key is a {}, not a string", k.kind())));
        };
        let Some(dtype) = object.storages.get(key) else {
            return Err(PickleError::Legacy(format!("storage `{key}` is listed but no tensor refers to it")));
        };
        let count = buf
            .get(pos..pos.saturating_add(8))
            .map(|b| i64::from_le_bytes(b.try_into().expect("8 bytes")))
            .ok_or_else(|| PickleError::Legacy(format!("the file ends before storage `{key}`: it is truncated")))?;
        let bytes = usize::try_from(count)
            .ok()
            .and_then(|n| n.checked_mul(dtype.size()))
            .ok_or_else(|| PickleError::Legacy(format!("storage `{key}` claims {count} elements")))?;
        let start = pos + 8;
        let data = start
            .checked_add(bytes)
            .and_then(|end| buf.get(start..end))
            .ok_or_else(|| {
                PickleError::Legacy(format!(
                    "storage `{key}` ({count} × {}) runs past the end of the file: it is truncated",
                    dtype.class_name()
                ))
            })?;
        match storages.entry(key.to_string()) {
            Entry::Occupied(_) => return Err(PickleError::Legacy(format!("storage `{key}` is listed twice"))),
            Entry::Vacant(v) => {
                v.insert(data);
            }
        }
        pos = start + bytes;
    }

    let storage = |key: &str| -> Result<&[u8], String> {
        storages
            .get(key)
            .copied()
            .ok_or_else(|| "it is not among the storages the file lists".to_string())
    };
    let tensors = state_dict(&object.root, &storage, budget(buf.len()))?;
    Ok(Checkpoint {
        author: None,
        format: CheckpointFormat::TorchLegacy,
        tensors,
    })
}

/// How many bytes materialising may allocate in total (beyond borrowing):
/// widening float16 doubles a file's weights and a transposed view costs a
/// copy, so a few times the file is plenty; a hostile stride-0 view claiming
/// terabytes is refused instead of allocated.
fn budget(file_len: usize) -> usize {
    file_len.saturating_mul(4).saturating_add(64 << 20)
}

/// Find the state dict in the unpickled object and read its tensors.
fn state_dict<'a>(
    root: &Value<'a>,
    storage: &dyn Fn(&str) -> Result<&'a [u8], String>,
    mut budget: usize,
) -> Result<Vec<(String, Array<'a>)>, PickleError> {
    let Value::Dict(root_rc) = root else {
        return Err(PickleError::Layout(format!(
            "the saved object is a {}, not a dict (expected {{\"model\": state_dict, …}} or a state_dict)",
            root.kind()
        )));
    };
    let root_dict = root_rc.borrow();
    let model = root_dict
        .iter()
        .find(|(k, _)| key_string(k).as_deref() == Some("model"))
        .map(|(_, v)| v);
    // Detectron2 treats a file without "model" as a bare state dict.
    let (entries, bare) = match model {
        Some(Value::Dict(d)) => (d.clone(), false),
        Some(other) => {
            return Err(PickleError::Layout(format!("\"model\" is a {}, not a state dict", other.kind())));
        }
        None => (root_rc.clone(), true),
    };
    let entries = entries.borrow();

    // Python dict semantics: a repeated key keeps its first position and last value.
    let mut order: Vec<(String, &TensorRef)> = Vec::with_capacity(entries.len());
    let mut index: HashMap<String, usize> = HashMap::with_capacity(entries.len());
    for (k, v) in entries.iter() {
        let Some(name) = key_string(k) else {
            return Err(PickleError::Layout(format!("a weight name is a {}, not a string", k.kind())));
        };
        let Value::Tensor(t) = v else {
            let why = if bare {
                format!(
                    "it has no \"model\" entry, and its entry `{name}` is a {}: it is neither a training checkpoint nor a state dict",
                    v.kind()
                )
            } else {
                format!("weight `{name}` is a {}, not a tensor", v.kind())
            };
            return Err(PickleError::Layout(why));
        };
        match index.entry(name.clone()) {
            Entry::Occupied(o) => order[*o.get()].1 = t,
            Entry::Vacant(slot) => {
                slot.insert(order.len());
                order.push((name, t));
            }
        }
    }

    // fvcore strips `module.` (DataParallel) only when every key has it.
    let strip = !order.is_empty() && order.iter().all(|(n, _)| n.starts_with("module."));
    let mut tensors = Vec::with_capacity(order.len());
    for (name, t) in order {
        let name = if strip { name["module.".len()..].to_string() } else { name };
        let bytes = storage(&t.storage.key).map_err(|why| PickleError::Tensor {
            name: name.clone(),
            why: format!("its storage `{}`: {why}", t.storage.key),
        })?;
        let arr = materialise(t, bytes, &mut budget).map_err(|why| PickleError::Tensor {
            name: name.clone(),
            why: format!("its storage `data/{}`: {why}", t.storage.key),
        })?;
        tensors.push((name, arr));
    }
    Ok(tensors)
}

/// Whether a view with these sizes and strides (in elements) is the
/// row-major layout, so its bytes are one run of the storage.
fn is_c_contiguous(shape: &[usize], strides: &[usize]) -> bool {
    let mut expected = 1usize;
    for (&d, &s) in shape.iter().zip(strides).rev() {
        if d != 1 && s != expected {
            return false;
        }
        expected = expected.saturating_mul(d);
    }
    true
}

/// The dtype an Array gets for a storage dtype: half floats are widened to
/// float32 (what the converter computes in), narrow integers to int32.
fn out_dtype(dt: StorageDType) -> DType {
    match dt {
        StorageDType::F32 | StorageDType::F16 | StorageDType::BF16 => DType::F32,
        StorageDType::F64 => DType::F64,
        StorageDType::I64 => DType::I64,
        StorageDType::I32 | StorageDType::I16 | StorageDType::I8 => DType::I32,
        StorageDType::U8 => DType::U8,
        StorageDType::Bool => DType::Bool,
    }
}

/// Append one element, converted to its output dtype, little-endian.
fn push_element(dt: StorageDType, src: &[u8], out: &mut Vec<u8>) {
    match dt {
        StorageDType::F16 => {
            out.extend_from_slice(&pickle::f16_to_f32(u16::from_le_bytes([src[0], src[1]])).to_le_bytes())
        }
        // bfloat16 is the top half of a float32.
        StorageDType::BF16 => out.extend_from_slice(&((u16::from_le_bytes([src[0], src[1]]) as u32) << 16).to_le_bytes()),
        StorageDType::I16 => out.extend_from_slice(&(i16::from_le_bytes([src[0], src[1]]) as i32).to_le_bytes()),
        StorageDType::I8 => out.extend_from_slice(&(src[0] as i8 as i32).to_le_bytes()),
        _ => out.extend_from_slice(src),
    }
}

/// Read one tensor out of its storage, honouring offset and strides.
/// A row-major view that needs no conversion borrows the file's bytes.
fn materialise<'a>(t: &TensorRef, storage: &'a [u8], budget: &mut usize) -> Result<Array<'a>, String> {
    let dt = t.storage.dtype;
    let elem = dt.size();
    if t.size.len() != t.stride.len() {
        return Err(format!("its size has {} dimensions but its stride {}", t.size.len(), t.stride.len()));
    }
    let offset = usize::try_from(t.offset).map_err(|_| format!("negative storage offset {}", t.offset))?;
    let mut shape = Vec::with_capacity(t.size.len());
    let mut strides = Vec::with_capacity(t.size.len());
    for (&d, &s) in t.size.iter().zip(&t.stride) {
        shape.push(usize::try_from(d).map_err(|_| format!("negative dimension in size {:?}", t.size))?);
        strides.push(usize::try_from(s).map_err(|_| format!("negative stride in {:?}", t.stride))?);
    }
    let numel = shape
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| format!("its size {shape:?} overflows"))?;
    let dtype = out_dtype(dt);
    if numel == 0 {
        return Ok(Array { dtype, shape, data: Cow::Owned(Vec::new()) });
    }

    // The highest element the view touches must lie inside the storage.
    let last = shape
        .iter()
        .zip(&strides)
        .try_fold(offset, |acc, (&d, &s)| (d - 1).checked_mul(s).and_then(|x| acc.checked_add(x)));
    let end_byte = last.and_then(|l| l.checked_add(1)).and_then(|n| n.checked_mul(elem));
    match end_byte {
        Some(end) if end <= storage.len() => {}
        _ => {
            return Err(format!(
                "its storage holds {} bytes ({} elements of {}), too few for offset {offset}, size {shape:?}, stride {strides:?}",
                storage.len(),
                storage.len() / elem,
                dt.class_name()
            ));
        }
    }

    let contiguous = is_c_contiguous(&shape, &strides);
    if contiguous && dtype.size() == elem {
        // In bounds: checked above, and numel ≤ last - offset + 1 for a contiguous view.
        let start = offset * elem;
        return Ok(Array { dtype, shape, data: Cow::Borrowed(&storage[start..start + numel * elem]) });
    }

    let out_bytes = numel
        .checked_mul(dtype.size())
        .filter(|&n| n <= *budget)
        .ok_or_else(|| {
            format!(
                "reading its {numel} elements (size {shape:?}, stride {strides:?}) would allocate more than this file can justify; refused"
            )
        })?;
    *budget -= out_bytes;
    let mut out = Vec::with_capacity(out_bytes);
    if contiguous {
        for src in storage[offset * elem..(offset + numel) * elem].chunks_exact(elem) {
            push_element(dt, src, &mut out);
        }
    } else {
        // Walk the view in row-major order with an odometer. Stepping past the
        // end of a dimension may leave `cur` out of range (or wrap, for a huge
        // stride on a size-1 dimension) before it is rewound; it is only read
        // at valid indices, all bounded by `last` above.
        let mut idx = vec![0usize; shape.len()];
        let mut cur = offset;
        for _ in 0..numel {
            push_element(dt, &storage[cur * elem..cur * elem + elem], &mut out);
            for d in (0..shape.len()).rev() {
                idx[d] += 1;
                cur = cur.wrapping_add(strides[d]);
                if idx[d] < shape[d] {
                    break;
                }
                cur = cur.wrapping_sub(strides[d].wrapping_mul(shape[d]));
                idx[d] = 0;
            }
        }
    }
    Ok(Array { dtype, shape, data: Cow::Owned(out) })
}

// ---------------------------------------------------------------------------
// A minimal zip reader: central directory, ZIP64, stored records only.
// ---------------------------------------------------------------------------

const EOCD_SIG: &[u8; 4] = b"PK\x05\x06";
const ZIP64_LOCATOR_SIG: &[u8; 4] = b"PK\x06\x07";
const ZIP64_EOCD_SIG: &[u8; 4] = b"PK\x06\x06";
const CENTRAL_SIG: &[u8; 4] = b"PK\x01\x02";
const LOCAL_SIG: &[u8; 4] = b"PK\x03\x04";
const EOCD_LEN: usize = 22;
const CENTRAL_LEN: usize = 46;
const LOCAL_LEN: usize = 30;

/// One record as the central directory describes it.
#[derive(Debug)]
struct ZipEntry<'a> {
    name: &'a [u8],
    flags: u16,
    method: u16,
    compressed_size: u64,
    size: u64,
    local_offset: u64,
}

fn le16(b: &[u8], at: usize) -> Option<u16> {
    b.get(at..at.checked_add(2)?).map(|s| u16::from_le_bytes([s[0], s[1]]))
}

fn le32(b: &[u8], at: usize) -> Option<u32> {
    b.get(at..at.checked_add(4)?).map(|s| u32::from_le_bytes(s.try_into().expect("4 bytes")))
}

fn le64(b: &[u8], at: usize) -> Option<u64> {
    b.get(at..at.checked_add(8)?).map(|s| u64::from_le_bytes(s.try_into().expect("8 bytes")))
}

fn zip_err<T>(why: impl Into<String>) -> Result<T, PickleError> {
    Err(PickleError::Zip(why.into()))
}

fn method_name(m: u16) -> &'static str {
    match m {
        8 => "deflate",
        9 => "deflate64",
        12 => "bzip2",
        14 => "lzma",
        93 => "zstd",
        95 => "xz",
        _ => "unknown",
    }
}

impl ZipEntry<'_> {
    fn display_name(&self) -> String {
        String::from_utf8_lossy(self.name).into_owned()
    }

    /// The record's bytes, located through its local header (whose extra
    /// field, torch's alignment padding, may differ from the central one).
    fn payload<'b>(&self, buf: &'b [u8]) -> Result<&'b [u8], PickleError> {
        let name = self.display_name();
        if self.flags & 1 != 0 {
            return zip_err(format!("record `{name}` is encrypted"));
        }
        if self.method != 0 {
            return zip_err(format!(
                "record `{name}` is compressed (method {}, {}); torch.save writes uncompressed records, so this archive \
                 was re-packed by another tool. Only stored records are read (which also rules out zip bombs): \
                 re-save it with torch.save",
                self.method,
                method_name(self.method)
            ));
        }
        if self.compressed_size != self.size {
            return zip_err(format!("stored record `{name}` has differing sizes {} and {}", self.compressed_size, self.size));
        }
        let past_end = || PickleError::Zip(format!("record `{name}` lies past the end of the file: it is truncated"));
        let lho = usize::try_from(self.local_offset).map_err(|_| past_end())?;
        let header = lho
            .checked_add(LOCAL_LEN)
            .and_then(|end| buf.get(lho..end))
            .ok_or_else(past_end)?;
        if &header[..4] != LOCAL_SIG {
            return zip_err(format!("record `{name}` has no local header at byte {lho}"));
        }
        let local_method = le16(header, 8).expect("in header");
        let name_len = le16(header, 26).expect("in header") as usize;
        let extra_len = le16(header, 28).expect("in header") as usize;
        if local_method != 0 {
            return zip_err(format!("record `{name}` is compressed (local header method {local_method})"));
        }
        let name_start = lho + LOCAL_LEN;
        if buf.get(name_start..name_start + name_len) != Some(self.name) {
            return zip_err(format!("record `{name}`: local and central headers disagree on its name"));
        }
        let start = name_start + name_len + extra_len;
        let size = usize::try_from(self.size).map_err(|_| past_end())?;
        start.checked_add(size).and_then(|end| buf.get(start..end)).ok_or_else(past_end)
    }
}

/// Walk the central directory. Only offsets are read here; a record's bytes
/// are located (and its compression refused) when it is actually needed.
fn zip_entries(buf: &[u8]) -> Result<Vec<ZipEntry<'_>>, PickleError> {
    let no_eocd = "no end-of-central-directory record: the file is truncated or not a zip archive";
    if buf.len() < EOCD_LEN {
        return zip_err(no_eocd);
    }
    // The EOCD is the last 22 bytes plus a comment of at most 65535 bytes;
    // take the last signature whose comment fits the file.
    let lowest = buf.len().saturating_sub(EOCD_LEN + 0xffff);
    let eocd = (lowest..=buf.len() - EOCD_LEN)
        .rev()
        .find(|&i| {
            &buf[i..i + 4] == EOCD_SIG
                && le16(buf, i + 20).is_some_and(|c| i + EOCD_LEN + c as usize <= buf.len())
        })
        .ok_or_else(|| PickleError::Zip(no_eocd.into()))?;
    let f16 = |at: usize| le16(buf, eocd + at).expect("in EOCD");
    let f32_ = |at: usize| le32(buf, eocd + at).expect("in EOCD");
    let (mut disk, mut cd_disk) = (f16(4) as u32, f16(6) as u32);
    let (mut on_disk, mut total) = (f16(8) as u64, f16(10) as u64);
    let (mut cd_size, mut cd_offset) = (f32_(12) as u64, f32_(16) as u64);

    // torch always writes ZIP64: a locator just before the EOCD points at the
    // ZIP64 EOCD record, whose 64-bit fields take precedence.
    let locator = eocd.checked_sub(20).filter(|&l| &buf[l..l + 4] == ZIP64_LOCATOR_SIG);
    if let Some(l) = locator {
        let at = le64(buf, l + 8).expect("in locator");
        let rec = usize::try_from(at)
            .ok()
            .filter(|&r| r.checked_add(56).is_some_and(|end| end <= l))
            .ok_or_else(|| PickleError::Zip(format!("the ZIP64 locator points outside the file (byte {at})")))?;
        if &buf[rec..rec + 4] != ZIP64_EOCD_SIG {
            return zip_err(format!("no ZIP64 end-of-central-directory record at byte {rec}"));
        }
        disk = le32(buf, rec + 16).expect("in record");
        cd_disk = le32(buf, rec + 20).expect("in record");
        on_disk = le64(buf, rec + 24).expect("in record");
        total = le64(buf, rec + 32).expect("in record");
        cd_size = le64(buf, rec + 40).expect("in record");
        cd_offset = le64(buf, rec + 48).expect("in record");
    } else if total == 0xffff || cd_size == 0xffff_ffff || cd_offset == 0xffff_ffff {
        return zip_err("the archive needs ZIP64 fields but has no ZIP64 locator: it is truncated or corrupt");
    }
    if disk != 0 || cd_disk != 0 || on_disk != total {
        return zip_err("multi-disk (split) zip archives are not supported");
    }
    let cd = usize::try_from(cd_offset)
        .ok()
        .zip(usize::try_from(cd_size).ok())
        .and_then(|(o, s)| buf.get(o..o.checked_add(s)?))
        .ok_or_else(|| {
            PickleError::Zip(format!(
                "the central directory (byte {cd_offset}, {cd_size} bytes) lies outside the file: it is truncated"
            ))
        })?;
    // Each entry takes at least 46 bytes, which bounds a hostile count.
    if total > (cd.len() / CENTRAL_LEN) as u64 {
        return zip_err(format!("the central directory claims {total} records but has room for {}", cd.len() / CENTRAL_LEN));
    }

    let mut entries = Vec::with_capacity(total as usize);
    let mut p = 0usize;
    for i in 0..total {
        let bad = |why: &str| PickleError::Zip(format!("central directory entry {i}: {why}"));
        let h = cd.get(p..p + CENTRAL_LEN).ok_or_else(|| bad("runs past the directory"))?;
        if &h[..4] != CENTRAL_SIG {
            return Err(bad("bad signature"));
        }
        let flags = le16(h, 8).expect("in header");
        let method = le16(h, 10).expect("in header");
        let mut compressed_size = le32(h, 20).expect("in header") as u64;
        let mut size = le32(h, 24).expect("in header") as u64;
        let name_len = le16(h, 28).expect("in header") as usize;
        let extra_len = le16(h, 30).expect("in header") as usize;
        let comment_len = le16(h, 32).expect("in header") as usize;
        let disk_start = le16(h, 34).expect("in header");
        let mut local_offset = le32(h, 42).expect("in header") as u64;
        let name_at = p + CENTRAL_LEN;
        let name = cd.get(name_at..name_at + name_len).ok_or_else(|| bad("its name runs past the directory"))?;
        let extra_at = name_at + name_len;
        let extra = cd.get(extra_at..extra_at + extra_len).ok_or_else(|| bad("its extra field runs past the directory"))?;
        let next = extra_at + extra_len + comment_len;
        if next > cd.len() {
            return Err(bad("its comment runs past the directory"));
        }

        // ZIP64 extended information (id 1) holds, in this order, exactly
        // those fields that the header saturated.
        let mut e = 0usize;
        while e + 4 <= extra.len() {
            let id = le16(extra, e).expect("checked");
            let len = le16(extra, e + 2).expect("checked") as usize;
            let field = extra.get(e + 4..e + 4 + len).ok_or_else(|| bad("an extra field runs past its entry"))?;
            if id == 1 {
                let mut q = 0usize;
                let mut next_u64 = |v: &mut u64| -> Result<(), PickleError> {
                    if *v == 0xffff_ffff {
                        *v = le64(field, q).ok_or_else(|| bad("its ZIP64 field is too short"))?;
                        q += 8;
                    }
                    Ok(())
                };
                next_u64(&mut size)?;
                next_u64(&mut compressed_size)?;
                next_u64(&mut local_offset)?;
            }
            e += 4 + len;
        }
        if disk_start != 0 && disk_start != 0xffff {
            return Err(bad("it starts on another disk"));
        }
        entries.push(ZipEntry { name, flags, method, compressed_size, size, local_offset });
        p = next;
    }
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stored zip record: (name, payload, method, local extra).
    struct Rec<'a> {
        name: &'a str,
        data: &'a [u8],
        method: u16,
    }

    /// Build a zip archive by hand; `zip64` adds the ZIP64 EOCD and locator
    /// and a ZIP64 extra field for the local offset, the way miniz does for torch.
    fn build_zip(recs: &[Rec<'_>], zip64: bool) -> Vec<u8> {
        let mut out = Vec::new();
        let mut central = Vec::new();
        for r in recs {
            let lho = out.len() as u64;
            // Pad the local extra so the payload starts on a 64-byte boundary, like torch.
            let base = out.len() + LOCAL_LEN + r.name.len() + 4;
            let pad = (64 - base % 64) % 64;
            out.extend_from_slice(LOCAL_SIG);
            out.extend_from_slice(&[20, 0, 0, 0]);
            out.extend_from_slice(&r.method.to_le_bytes());
            out.extend_from_slice(&[0; 8]); // time, date, crc (unchecked)
            out.extend_from_slice(&(r.data.len() as u32).to_le_bytes());
            out.extend_from_slice(&(r.data.len() as u32).to_le_bytes());
            out.extend_from_slice(&(r.name.len() as u16).to_le_bytes());
            out.extend_from_slice(&((4 + pad) as u16).to_le_bytes());
            out.extend_from_slice(r.name.as_bytes());
            out.extend_from_slice(b"FB");
            out.extend_from_slice(&(pad as u16).to_le_bytes());
            out.extend(std::iter::repeat_n(b'Z', pad));
            assert_eq!(out.len() % 64, 0);
            out.extend_from_slice(r.data);

            central.extend_from_slice(CENTRAL_SIG);
            central.extend_from_slice(&[20, 0, 20, 0, 0, 0]);
            central.extend_from_slice(&r.method.to_le_bytes());
            central.extend_from_slice(&[0; 8]);
            central.extend_from_slice(&(r.data.len() as u32).to_le_bytes());
            central.extend_from_slice(&(r.data.len() as u32).to_le_bytes());
            central.extend_from_slice(&(r.name.len() as u16).to_le_bytes());
            central.extend_from_slice(&(if zip64 { 12u16 } else { 0 }).to_le_bytes());
            central.extend_from_slice(&[0; 6]); // comment len, disk, internal attrs
            central.extend_from_slice(&[0; 4]); // external attrs
            central.extend_from_slice(&(if zip64 { 0xffff_ffffu32 } else { lho as u32 }).to_le_bytes());
            central.extend_from_slice(r.name.as_bytes());
            if zip64 {
                central.extend_from_slice(&[1, 0, 8, 0]);
                central.extend_from_slice(&lho.to_le_bytes());
            }
        }
        let cd_offset = out.len() as u64;
        out.extend_from_slice(&central);
        let n = recs.len() as u64;
        if zip64 {
            let rec = out.len() as u64;
            out.extend_from_slice(ZIP64_EOCD_SIG);
            out.extend_from_slice(&44u64.to_le_bytes());
            out.extend_from_slice(&[45, 0, 45, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
            out.extend_from_slice(&n.to_le_bytes());
            out.extend_from_slice(&n.to_le_bytes());
            out.extend_from_slice(&(central.len() as u64).to_le_bytes());
            out.extend_from_slice(&cd_offset.to_le_bytes());
            out.extend_from_slice(ZIP64_LOCATOR_SIG);
            out.extend_from_slice(&0u32.to_le_bytes());
            out.extend_from_slice(&rec.to_le_bytes());
            out.extend_from_slice(&1u32.to_le_bytes());
        }
        out.extend_from_slice(EOCD_SIG);
        out.extend_from_slice(&[0; 4]);
        let (n16, size32, off32) = if zip64 {
            (0xffffu16, 0xffff_ffffu32, 0xffff_ffffu32)
        } else {
            (n as u16, central.len() as u32, cd_offset as u32)
        };
        out.extend_from_slice(&n16.to_le_bytes());
        out.extend_from_slice(&n16.to_le_bytes());
        out.extend_from_slice(&size32.to_le_bytes());
        out.extend_from_slice(&off32.to_le_bytes());
        out.extend_from_slice(&0u16.to_le_bytes());
        out
    }

    /// data.pkl of `{"w": tensor}` with one FloatStorage `0`, written as
    /// torch does (protocol 2, GLOBAL, BINPERSID, REDUCE).
    fn pickle_one_tensor(numel: u8, size: &[u8], stride: &[u8], offset: u8) -> Vec<u8> {
        let mut p = b"\x80\x02}(X\x01\x00\x00\x00wctorch._utils\n_rebuild_tensor_v2\n((X\x07\x00\x00\x00storagectorch\nFloatStorage\nX\x01\x00\x00\x000X\x03\x00\x00\x00cpuK".to_vec();
        p.push(numel);
        p.extend_from_slice(b"tQK");
        p.push(offset);
        p.push(b'(');
        for &d in size {
            p.extend_from_slice(&[b'K', d]);
        }
        p.extend_from_slice(b"t(");
        for &s in stride {
            p.extend_from_slice(&[b'K', s]);
        }
        p.extend_from_slice(b"t\x89ccollections\nOrderedDict\n)RtRu.");
        p
    }

    fn floats(v: &[f32]) -> Vec<u8> {
        v.iter().flat_map(|f| f.to_le_bytes()).collect()
    }

    #[test]
    fn reads_zip64_and_plain_archives_with_any_top_folder() {
        let data = floats(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
        let pkl = pickle_one_tensor(6, &[2, 3], &[3, 1], 0);
        for zip64 in [true, false] {
            let z = build_zip(
                &[
                    Rec { name: "my_model/data.pkl", data: &pkl, method: 0 },
                    Rec { name: "my_model/byteorder", data: b"little", method: 0 },
                    Rec { name: "my_model/data/0", data: &data, method: 0 },
                    Rec { name: "my_model/version", data: b"3\n", method: 0 },
                ],
                zip64,
            );
            let ck = read_any_checkpoint(&z).unwrap();
            assert_eq!(ck.format, CheckpointFormat::TorchZip);
            assert_eq!(ck.tensors.len(), 1);
            let w = ck.get("w").unwrap();
            assert_eq!(w.shape, vec![2, 3]);
            assert!(matches!(w.data, Cow::Borrowed(_)), "a contiguous float32 tensor borrows the file");
            assert_eq!(w.to_f32(), vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
        }
    }

    #[test]
    fn strided_views_are_gathered() {
        let data = floats(&[0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
        // Transposed 2x3 starting at element 1: rows are [1,4],[2,5],[3,6].
        let pkl = pickle_one_tensor(7, &[3, 2], &[1, 3], 1);
        let z = build_zip(&[Rec { name: "a/data.pkl", data: &pkl, method: 0 }, Rec { name: "a/data/0", data: &data, method: 0 }], true);
        let ck = read_torch_zip(&z).unwrap();
        assert_eq!(ck.tensors[0].1.to_f32(), vec![1.0, 4.0, 2.0, 5.0, 3.0, 6.0]);
        assert!(matches!(ck.tensors[0].1.data, Cow::Owned(_)));
    }

    #[test]
    fn storage_problems_are_named() {
        let pkl = pickle_one_tensor(6, &[2, 3], &[3, 1], 0);
        let z = build_zip(&[Rec { name: "a/data.pkl", data: &pkl, method: 0 }], true);
        let err = read_torch_zip(&z).unwrap_err().to_string();
        assert!(err.contains("`w`") && err.contains("a/data/0") && err.contains("missing"), "{err}");

        let short = floats(&[1.0, 2.0]);
        let z = build_zip(&[Rec { name: "a/data.pkl", data: &pkl, method: 0 }, Rec { name: "a/data/0", data: &short, method: 0 }], true);
        let err = read_torch_zip(&z).unwrap_err().to_string();
        assert!(err.contains("`w`") && err.contains("8 bytes") && err.contains("too few"), "{err}");

        // A stride-0 view of one element claiming 250^4 elements: refused, not allocated.
        let pkl = pickle_one_tensor(1, &[250, 250, 250, 250], &[0, 0, 0, 0], 0);
        let one = floats(&[1.0]);
        let z = build_zip(&[Rec { name: "a/data.pkl", data: &pkl, method: 0 }, Rec { name: "a/data/0", data: &one, method: 0 }], true);
        let err = read_torch_zip(&z).unwrap_err().to_string();
        assert!(err.contains("more than this file can justify"), "{err}");
    }

    #[test]
    fn compressed_encrypted_and_odd_archives_are_refused() {
        let pkl = pickle_one_tensor(1, &[], &[], 0);
        let z = build_zip(&[Rec { name: "a/data.pkl", data: &pkl, method: 8 }], true);
        let err = read_torch_zip(&z).unwrap_err().to_string();
        assert!(err.contains("compressed") && err.contains("deflate"), "{err}");

        let z = build_zip(&[Rec { name: "a/other.pkl", data: &pkl, method: 0 }], false);
        assert!(read_torch_zip(&z).unwrap_err().to_string().contains("no `<archive>/data.pkl`"));

        let z = build_zip(&[Rec { name: "m/constants.pkl", data: &pkl, method: 0 }, Rec { name: "m/code/m.py", data: b"", method: 0 }], false);
        assert!(read_torch_zip(&z).unwrap_err().to_string().contains("TorchScript"));

        let z = build_zip(&[Rec { name: "a/data.pkl", data: &pkl, method: 0 }, Rec { name: "b/data.pkl", data: &pkl, method: 0 }], false);
        assert!(read_torch_zip(&z).unwrap_err().to_string().contains("more than one"));

        let z = build_zip(&[Rec { name: "a/data.pkl", data: &pkl, method: 0 }, Rec { name: "a/data.pkl", data: &pkl, method: 0 }], false);
        assert!(read_torch_zip(&z).unwrap_err().to_string().contains("twice"));

        let z = build_zip(&[Rec { name: "a/data.pkl", data: &pkl, method: 0 }, Rec { name: "a/byteorder", data: b"big", method: 0 }], true);
        assert!(matches!(read_torch_zip(&z), Err(PickleError::Unsupported(m)) if m.contains("big-endian")));

        // Encryption flag (bit 0) in the central directory.
        let mut z = build_zip(&[Rec { name: "a/data.pkl", data: &pkl, method: 0 }], false);
        let cd = z.windows(4).position(|w| w == CENTRAL_SIG).unwrap();
        z[cd + 8] |= 1;
        assert!(read_torch_zip(&z).unwrap_err().to_string().contains("encrypted"));
    }

    #[test]
    fn hostile_directory_fields_are_bounds_checked() {
        let data = floats(&[1.0]);
        let pkl = pickle_one_tensor(1, &[], &[], 0);
        let good = build_zip(&[Rec { name: "a/data.pkl", data: &pkl, method: 0 }, Rec { name: "a/data/0", data: &data, method: 0 }], true);
        assert_eq!(read_torch_zip(&good).unwrap().tensors[0].1.shape, Vec::<usize>::new());

        // Every byte of the directory and end records set to 0xff, one at a time:
        // read or refused, never a panic.
        let cd = good.windows(4).position(|w| w == CENTRAL_SIG).unwrap();
        for i in cd..good.len() {
            let mut z = good.clone();
            z[i] = 0xff;
            let _ = read_any_checkpoint(&z);
            z[i] = 0x00;
            let _ = read_any_checkpoint(&z);
        }
        // A record count far beyond the directory's size.
        let mut z = good.clone();
        let rec = z.windows(4).position(|w| w == ZIP64_EOCD_SIG).unwrap();
        z[rec + 32..rec + 40].copy_from_slice(&u64::MAX.to_le_bytes());
        z[rec + 24..rec + 32].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(read_torch_zip(&z).unwrap_err().to_string().contains("room for"));
        // A local offset beyond the file, through the ZIP64 extra field.
        let mut z = good.clone();
        let extra = cd + CENTRAL_LEN + "a/data.pkl".len() + 4;
        z[extra..extra + 8].copy_from_slice(&(1u64 << 62).to_le_bytes());
        assert!(read_torch_zip(&z).unwrap_err().to_string().contains("past the end"));
        // Truncations anywhere lose the end record.
        for cut in [good.len() - 1, good.len() - 22, good.len() / 2, 30, 4] {
            let err = read_torch_zip(&good[..cut]).unwrap_err();
            assert!(matches!(err, PickleError::Zip(_)), "cut {cut}: {err}");
        }
    }

    #[test]
    fn contiguity() {
        assert!(is_c_contiguous(&[2, 3], &[3, 1]));
        assert!(is_c_contiguous(&[1, 3], &[99, 1]));
        assert!(is_c_contiguous(&[], &[]));
        assert!(!is_c_contiguous(&[3, 2], &[1, 3]));
        assert!(!is_c_contiguous(&[4], &[0]));
    }

    #[test]
    fn widening() {
        let mut out = Vec::new();
        push_element(StorageDType::BF16, &0x3f80u16.to_le_bytes(), &mut out);
        push_element(StorageDType::F16, &0xc000u16.to_le_bytes(), &mut out);
        push_element(StorageDType::I8, &[0xff], &mut out);
        assert_eq!(f32::from_le_bytes(out[0..4].try_into().unwrap()), 1.0);
        assert_eq!(f32::from_le_bytes(out[4..8].try_into().unwrap()), -2.0);
        assert_eq!(i32::from_le_bytes(out[8..12].try_into().unwrap()), -1);
    }
}

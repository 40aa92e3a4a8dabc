//! The d2serve converter: a Detectron2 zoo checkpoint (`.pkl`) in, one
//! self-contained ONNX graph out (image in; boxes, scores, classes and mask
//! probabilities out; standard ONNX ops only).
//!
//! One module per architecture piece, each adding nodes to a shared
//! [`builder::GraphBuilder`]: `preprocess`, `resnet` / `regnet`, `fpn`, `rpn`,
//! `roi_heads` / `res5_head` (C4) / `cascade`;
//! [`model`] assembles them per catalog entry.

pub mod boxes;
pub mod builder;
pub mod cascade;
pub mod config;
pub mod convert;
pub mod fpn;
pub mod import;
pub mod layers;
pub mod model;
pub mod onnx;
pub mod pickle;
pub mod preprocess;
pub mod regnet;
pub mod res5_head;
pub mod resnet;
pub mod roi_heads;
pub mod rpn;
pub mod synth;
pub mod torch;
pub mod yacs;

pub use convert::{ConvertOptions, ModelDescription, Origin, convert_checkpoint, write_artifact};
pub use pickle::{Checkpoint, CheckpointFormat, PickleError, read_checkpoint};
pub use torch::read_any_checkpoint;

#[derive(Debug, thiserror::Error)]
pub enum ConvertError {
    #[error("cannot read the checkpoint: {0}")]
    Pickle(#[from] PickleError),
    #[error("the checkpoint lacks weight `{0}`: is it the checkpoint of this catalog entry?")]
    MissingWeight(String),
    #[error("weight `{name}` has shape {found:?}, expected [{}]", expected.join(", "))]
    WeightShape {
        name: String,
        found: Vec<usize>,
        expected: Vec<String>,
    },
    #[error("weight `{name}` is {dtype}, expected floating point")]
    WeightType { name: String, dtype: &'static str },
    #[error("the checkpoint has {} weight(s) this architecture does not use (first: {}): is it the checkpoint of this catalog entry?", .0.len(), .0.iter().take(3).cloned().collect::<Vec<_>>().join(", "))]
    ExtraWeights(Vec<String>),
    #[error("checkpoint and catalog disagree: {0}")]
    Mismatch(String),
    #[error("not supported: {0}")]
    Unsupported(String),
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },
}

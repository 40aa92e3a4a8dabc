//! d2serve's batch function: annotate every image under an input prefix (an S3
//! prefix or a local folder) with one Supervisely annotation JSON per image,
//! skipping images already annotated, within a deadline, resumable.
//!
//! The binary (`batch`) is thin: it reads flags or Lambda events and calls
//! [`job::run`]. Storage sits behind [`storage::Storage`] and inference behind
//! [`annotate::Annotator`], so the job logic is tested without AWS or ONNX Runtime.

pub mod annotate;
pub mod deadline;
pub mod error;
pub mod event;
pub mod job;
pub mod location;
pub mod runner;
pub mod storage;

pub use annotate::{Annotator, EngineAnnotator};
pub use deadline::Deadline;
pub use error::BatchError;
pub use event::{JobRequest, Source, parse_event};
pub use job::{JobOptions, Summary, run};
pub use location::Location;
pub use runner::Runner;
pub use storage::{LocalDir, S3Prefix, Storage, StorageError};

//! d2serve's inference engine: ONNX Runtime sessions of converted graphs,
//! Detectron2-exact preprocessing (decode, Pillow-exact resize) and
//! postprocessing (box rescale, mask paste), the model cache, and Supervisely output.

pub mod bench;
pub mod cache;
pub mod coco;
#[cfg(feature = "cli")]
pub mod cli;
pub mod decode;
pub mod overlay;
pub mod paste;
pub mod pipeline;
pub mod resize;
pub mod openvino;
pub mod runtime;
pub mod runtimes;
pub mod supervisely;
pub mod tracker;
pub mod windows;
#[doc(hidden)]
pub mod testing;

pub use cache::{CacheLimits, LoadError, ModelCache};
pub use decode::{DecodeError, RgbImage, decode};
pub use pipeline::{Instance, LoadedModel, PredictError, Prediction, Roi, Settings};

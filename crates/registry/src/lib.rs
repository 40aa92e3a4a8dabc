//! d2serve's model registry: the catalog of zoo checkpoints, their download
//! cache, content hashing, and the artifact registry that serving reads from
//! (a local folder or an S3 bucket).

pub mod atomic;
pub mod catalog;
pub mod classes;
pub mod download;
pub mod hashing;
pub mod manifest;
pub mod registry;
pub mod report;
pub mod spec;
pub mod store;
pub mod supervisely_app;
pub mod testing;

pub use catalog::{Catalog, CatalogError, ModelEntry};
pub use spec::ModelSpec;
pub use classes::{ClassInfo, ClassList};
pub use manifest::Manifest;
pub use registry::{Index, IndexEntry, Registry, RegistryError};
pub use store::{ObjectStore, S3Config, StoreError, open_store};

//! Errors that stop a whole run (per-image problems are recorded in the
//! summary instead). Each names what the user can do about it.

use crate::storage::StorageError;

#[derive(Debug, thiserror::Error)]
pub enum BatchError {
    #[error("bad event: {0}")]
    BadEvent(String),
    #[error("{0}")]
    BadLocation(String),
    #[error("bad settings: {0}")]
    BadSettings(String),
    #[error("{0}")]
    UnknownModel(String),
    #[error("cannot load the model: {0}")]
    ModelLoad(String),
    #[error(transparent)]
    Storage(#[from] StorageError),
}

impl BatchError {
    /// The Lambda `errorType`: stable names a Step Functions `Retry` or `Catch` can match.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::BadEvent(_) => "BadEvent",
            Self::BadLocation(_) => "BadLocation",
            Self::BadSettings(_) => "BadSettings",
            Self::UnknownModel(_) => "UnknownModel",
            Self::ModelLoad(_) => "ModelLoad",
            Self::Storage(_) => "Storage",
        }
    }

    /// Errors the caller caused (fix the input rather than retry).
    pub fn is_user_error(&self) -> bool {
        matches!(self, Self::BadEvent(_) | Self::BadLocation(_) | Self::BadSettings(_) | Self::UnknownModel(_))
    }
}

impl From<BatchError> for lambda_runtime::Diagnostic {
    fn from(e: BatchError) -> Self {
        Self { error_type: e.kind().into(), error_message: e.to_string() }
    }
}

//! Errors every backend maps its driver errors into.

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// No such row in this tenant. Another tenant's row is also "not found".
    #[error("not found")]
    NotFound,
    /// The change conflicts with what is stored (a taken email, the last owner).
    #[error("conflict: {message}")]
    Conflict { code: &'static str, message: String },
    /// The database cannot be reached or is overloaded; worth retrying.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// Anything else: a bug or corrupt data. Details are for the log only.
    #[error("store error: {0}")]
    Internal(String),
}

impl StoreError {
    pub fn conflict(code: &'static str, message: impl Into<String>) -> Self {
        Self::Conflict {
            code,
            message: message.into(),
        }
    }
}

pub type StoreResult<T> = Result<T, StoreError>;

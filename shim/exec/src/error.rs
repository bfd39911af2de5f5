//! The helper's one error type: what the shim does next depends only on its variant.

/// Why an exec did not start.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The spec asks for something this helper does not implement. Nothing was changed: the
    /// shim runs `runc exec` for this process instead.
    #[error("needs the OCI runtime: {0}")]
    Unsupported(String),
    /// The exec failed where runc's would fail; the message says why, in runc's words where it
    /// has them.
    #[error("{0}")]
    Failed(String),
}

pub type Result<T> = std::result::Result<T, Error>;

/// Maps an OS error of step `what` to a failure.
pub fn os(what: impl std::fmt::Display) -> impl FnOnce(std::io::Error) -> Error {
    move |e| Error::Failed(format!("{what}: {e}"))
}

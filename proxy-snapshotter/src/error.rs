//! Errors of the snapshotter core. They are converted to gRPC `Status` exactly once, at the
//! service edge (`service.rs`), with the codes containerd's proxy maps back to errdefs; a full
//! disk is ResourceExhausted there (the same request may succeed once there is room).

use std::io;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("snapshot {0:?}: not found")]
    NotFound(String),
    #[error("snapshot {0:?}: already exists")]
    AlreadyExists(String),
    #[error("failed precondition: {0}")]
    FailedPrecondition(String),
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    #[error("metadata store: {0}")]
    Store(Box<redb::Error>),
    #[error("metadata record of {key:?} is corrupt: {source}")]
    Corrupt {
        key: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: io::Error,
    },
}

impl Error {
    pub fn io(context: impl Into<String>, source: io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }

    /// The disk (or the quota) the error met is full.
    pub fn is_disk_full(&self) -> bool {
        let source = match self {
            Error::Io { source, .. } => Some(source),
            Error::Store(e) => podshim_common::store::io_error(e),
            _ => None,
        };
        source.is_some_and(podshim_common::store::is_disk_full)
    }
}

podshim_common::from_redb!(Error, Error::Store);

/// Attaches a context string to `std::io` results.
pub trait IoContext<T> {
    fn ctx(self, context: impl FnOnce() -> String) -> Result<T>;
}

impl<T> IoContext<T> for io::Result<T> {
    fn ctx(self, context: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|e| Error::io(context(), e))
    }
}

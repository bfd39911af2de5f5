//! The shim's one error type, mapped to a ttrpc status once, at the service edge.

use containerd_shim_protos::ttrpc::{self, Code};

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    InvalidArgument(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    AlreadyExists(String),
    #[error("{0}")]
    FailedPrecondition(String),
    #[error("{0}")]
    Unimplemented(String),
    /// A bound of the shim's (execs per container); the same request may succeed later.
    #[error("{0}")]
    ResourceExhausted(String),
    /// The OCI runtime binary refused or failed; the message is its own.
    #[error("{binary} {command} failed: {message}")]
    Runtime {
        binary: String,
        command: &'static str,
        message: String,
    },
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{context}: {source}")]
    Sys {
        context: String,
        #[source]
        source: nix::Error,
    },
    /// Refused as the OCI runtime refuses it for a pause container, with its message; code
    /// UNKNOWN, as CRI answers that refusal.
    #[error("{0}")]
    Refused(String),
    #[error("{0}")]
    Other(String),
}

impl Error {
    pub fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
        let context = context.into();
        move |source| Error::Io { context, source }
    }

    pub fn sys(context: impl Into<String>) -> impl FnOnce(nix::Error) -> Error {
        let context = context.into();
        move |source| Error::Sys { context, source }
    }

    pub fn code(&self) -> Code {
        match self {
            Error::InvalidArgument(_) => Code::INVALID_ARGUMENT,
            Error::NotFound(_) => Code::NOT_FOUND,
            Error::AlreadyExists(_) => Code::ALREADY_EXISTS,
            Error::FailedPrecondition(_) => Code::FAILED_PRECONDITION,
            Error::Unimplemented(_) => Code::UNIMPLEMENTED,
            Error::ResourceExhausted(_) => Code::RESOURCE_EXHAUSTED,
            Error::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
                Code::NOT_FOUND
            }
            Error::Runtime { .. }
            | Error::Io { .. }
            | Error::Sys { .. }
            | Error::Refused(_)
            | Error::Other(_) => Code::UNKNOWN,
        }
    }
}

impl From<podshim_common::id::InvalidId> for Error {
    fn from(e: podshim_common::id::InvalidId) -> Self {
        Error::InvalidArgument(e.to_string())
    }
}

impl From<Error> for ttrpc::Error {
    fn from(e: Error) -> Self {
        ttrpc::Error::RpcStatus(ttrpc::get_status(e.code(), e.to_string()))
    }
}

impl From<containerd_shim::Error> for Error {
    fn from(e: containerd_shim::Error) -> Self {
        use containerd_shim::Error as E;
        match e {
            E::InvalidArgument(m) => Error::InvalidArgument(m),
            E::NotFoundError(m) => Error::NotFound(m),
            E::FailedPreconditionError(m) => Error::FailedPrecondition(m),
            E::Unimplemented(m) => Error::Unimplemented(m),
            other => Error::Other(other.to_string()),
        }
    }
}

impl From<containerd_shim_protos::protobuf::Error> for Error {
    fn from(e: containerd_shim_protos::protobuf::Error) -> Self {
        Error::InvalidArgument(format!("malformed protobuf: {e}"))
    }
}

//! podshim-sandboxer's one error type. It becomes a gRPC status exactly once, at the edge
//! (`controller.rs`), with the codes containerd's proxy turns back into errdefs: CRI ignores
//! NotFound on Stop/Shutdown and containerd retries Wait on Unavailable. A full disk is
//! ResourceExhausted: the same request may succeed once there is room.

use std::io;

use containerd_shim_protos::ttrpc;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    AlreadyExists(String),
    #[error("{0}")]
    InvalidArgument(String),
    #[error("{0}")]
    FailedPrecondition(String),
    /// The pod's shim predates what was asked (containerd tolerates this code on Update).
    #[error("{0}")]
    Unimplemented(String),
    /// The pod's shim does not answer (yet): a condition, not a verdict.
    #[error("{0}")]
    Unavailable(String),
    /// The pod's shim answered with an error, or the connection to it broke mid-request.
    #[error("{op} of sandbox {sandbox}: {}", shim_says(source))]
    Shim {
        op: &'static str,
        sandbox: String,
        #[source]
        source: ttrpc::Error,
    },
    #[error("starting a pod shim: {0}")]
    Launch(String),
    #[error("config {0}")]
    Config(String),
    #[error("sandbox store: {0}")]
    Store(Box<redb::Error>),
    #[error("sandbox store record {key:?} is corrupt: {source}")]
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

/// What the shim said, for people: a status's message (its code is carried as ours, see
/// `Error::code`), not ttrpc's Debug form of the whole status.
fn shim_says(e: &ttrpc::Error) -> String {
    match e {
        ttrpc::Error::RpcStatus(s) => s.message.clone(),
        other => other.to_string(),
    }
}

impl Error {
    pub fn io(context: impl Into<String>, source: io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }

    /// The gRPC code of this error as the shim (or we) meant it.
    pub fn code(&self) -> tonic::Code {
        match self {
            Error::NotFound(_) => tonic::Code::NotFound,
            Error::AlreadyExists(_) => tonic::Code::AlreadyExists,
            Error::InvalidArgument(_) => tonic::Code::InvalidArgument,
            Error::FailedPrecondition(_) => tonic::Code::FailedPrecondition,
            Error::Unavailable(_) => tonic::Code::Unavailable,
            Error::Unimplemented(_) => tonic::Code::Unimplemented,
            // ttrpc status codes are gRPC's.
            Error::Shim {
                source: ttrpc::Error::RpcStatus(s),
                ..
            } => tonic::Code::from_i32(s.code.value()),
            Error::Shim { .. } => tonic::Code::Unavailable,
            e if e.is_disk_full() => tonic::Code::ResourceExhausted,
            Error::Launch(_)
            | Error::Config(_)
            | Error::Store(_)
            | Error::Corrupt { .. }
            | Error::Io { .. } => tonic::Code::Internal,
        }
    }

    /// The disk (or the quota) the error met is full.
    fn is_disk_full(&self) -> bool {
        let source = match self {
            Error::Io { source, .. } => Some(source),
            Error::Store(e) => podshim_common::store::io_error(e),
            _ => None,
        };
        source.is_some_and(podshim_common::store::is_disk_full)
    }

    /// The shim is not there to answer: its process is gone or its socket is closed.
    pub fn is_unreachable(&self) -> bool {
        self.code() == tonic::Code::Unavailable
    }

    pub fn is_not_found(&self) -> bool {
        self.code() == tonic::Code::NotFound
    }
}

podshim_common::from_redb!(Error, Error::Store);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shim_status_reads_as_its_message_and_keeps_its_code() {
        let status = ttrpc::get_status(ttrpc::Code::FAILED_PRECONDITION, "sandbox holder failed");
        let e = Error::Shim {
            op: "StartSandbox",
            sandbox: "pod1".into(),
            source: ttrpc::Error::RpcStatus(status),
        };
        assert_eq!(
            e.to_string(),
            "StartSandbox of sandbox pod1: sandbox holder failed"
        );
        assert_eq!(e.code(), tonic::Code::FailedPrecondition);
    }
}

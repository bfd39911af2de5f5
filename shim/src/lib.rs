//! containerd-shim-podshim-v1: one runtime v2 shim process per Kubernetes pod.
//!
//! containerd starts the shim for a pod's first task; every other container of the pod is
//! routed to the same process. Each container is launched through an OCI runtime binary.
#![deny(unsafe_code)]

mod bundle_sweep;
mod cgroup;
mod completion;
mod config;
mod connections;
mod container;
mod error;
mod events;
mod exec_helper;
mod group;
mod info;
mod kills;
mod let_go;
mod log_scope;
mod pod;
mod process;
mod readiness;
mod reaper;
mod rootfs;
mod runtime;
mod sandbox;
mod server;
mod service;
mod spec;
mod stdio;
#[allow(unsafe_code)]
mod sys;
mod task;
mod userns;

// What the binary (main.rs) runs; nothing else of the shim is another crate's business.
pub use sandbox::holder::{holder_main, HOLDER_ARG};
pub use server::serve;
pub use service::Service;

//! containerd-shim-podshim-v1: one runtime v2 shim process per Kubernetes pod.
//!
//! containerd starts the shim for a pod's first task; every other container of the pod is
//! routed to the same process. Each container is launched through an OCI runtime binary.

pub mod cgroup;
pub mod config;
pub mod connections;
pub mod container;
pub mod error;
pub mod events;
pub mod info;
pub mod pod;
pub mod process;
pub mod reaper;
pub mod runtime;
pub mod sandbox;
pub mod server;
pub mod service;
pub mod spec;
pub mod stdio;
pub(crate) mod sys;
pub mod task;

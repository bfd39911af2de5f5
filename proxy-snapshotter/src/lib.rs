//! podshim-snapshotter: an out-of-process overlayfs snapshotter for containerd 2.x.
//!
//! containerd talks to it through `[proxy_plugins.<name>] type = "snapshot"` over a unix socket
//! (gRPC service `containerd.services.snapshots.v1.Snapshots`).
#![deny(unsafe_code)]

pub mod check;
pub mod crash_point;
pub mod error;
pub mod filter;
pub mod layout;
pub mod metrics;
pub mod removals;
pub mod service;
pub mod size_limit;
pub mod snapshotter;
pub mod spares;
pub mod store;
#[allow(unsafe_code)]
pub mod sys;
pub mod trash;
pub mod usage;
pub mod worker;

pub use error::{Error, Result};
pub use snapshotter::{Config, Mount, Snapshotter};

//! What podshim's host daemons (podshim-snapshotter, podshim-sandboxer) and the pod shim share:
//! containerd reaches each daemon as a proxy plugin over a unix socket that only root may open;
//! podshim-sandboxer reaches a pod shim through `pod_api`; every id they turn into a path obeys `id`;
//! the daemons' stores map redb's errors through `store`; the daemons' Prometheus
//! endpoint is `metrics`; `--version` is `version`.
#![deny(unsafe_code)]

pub mod fuzz;
pub mod id;
pub mod logger;
#[cfg(feature = "metrics")]
pub mod metrics;
pub mod pod_api;
pub mod socket;
#[cfg(feature = "redb")]
pub mod store;
#[allow(unsafe_code)]
mod sys;
pub mod time;
pub mod version;

//! podshim-sandboxer: containerd's sandbox controller (`[proxy_plugins.<name>] type =
//! "sandbox"`) for pause-less pods. It starts one podshim shim per pod, optionally from a warm
//! pool, drives it through the shim's Sandbox API and hands containerd the shim's task API
//! address, so every container of the pod goes straight to that shim.
#![deny(unsafe_code)]

pub mod check;
pub mod config;
pub mod containerd;
pub mod controller;
pub mod crash;
pub mod cri_info;
pub mod error;
pub mod launch;
pub mod metrics;
pub mod pool;
pub mod refill;
pub mod sandboxes;
pub mod shim;
pub mod shim_log;
pub mod store;
pub mod wire;

pub use config::Config;
pub use error::{Error, Result};

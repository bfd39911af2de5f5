//! Connect: containerd's liveness check after it restarts, also for ids this shim never had.

use std::sync::Arc;

use containerd_shim::api::{ConnectRequest, ConnectResponse};

use crate::pod::Pod;

pub fn connect(pod: &Arc<Pod>, req: &ConnectRequest) -> ConnectResponse {
    ConnectResponse {
        shim_pid: std::process::id(),
        task_pid: pod.container(&req.id).map_or(0, |c| c.init.pid()),
        version: env!("CARGO_PKG_VERSION").to_string(),
        ..Default::default()
    }
}

//! Wait: blocks until the process exits. CRI learns container exits from this, not events.

use std::sync::Arc;

use containerd_shim::api::{WaitRequest, WaitResponse};

use crate::{error::Result, events::timestamp, pod::Pod};

pub async fn wait(pod: &Arc<Pod>, req: &WaitRequest) -> Result<WaitResponse> {
    let process = pod.container(&req.id)?.process(&req.exec_id)?;
    let exit = process.wait().await;
    Ok(WaitResponse {
        exit_status: exit.status,
        exited_at: Some(timestamp(exit.at)).into(),
        ..Default::default()
    })
}

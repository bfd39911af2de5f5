//! ResizePty and CloseIO.

use std::sync::Arc;

use containerd_shim::api::{CloseIORequest, ResizePtyRequest};

use crate::{error::Result, pod::Pod};

pub async fn resize_pty(pod: &Arc<Pod>, req: &ResizePtyRequest) -> Result<()> {
    let process = pod.container(&req.id)?.process(&req.exec_id)?;
    process.resize(req.width, req.height).await
}

pub async fn close_io(pod: &Arc<Pod>, req: &CloseIORequest) -> Result<()> {
    let process = pod.container(&req.id)?.process(&req.exec_id)?;
    if req.stdin {
        process.close_stdin().await;
    }
    Ok(())
}

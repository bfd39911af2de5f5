//! Start: the container's init (`runtime start`) or one of its exec processes (`runtime exec`).

use std::sync::Arc;

use containerd_shim::api::{StartRequest, StartResponse};
use containerd_shim_protos::events::task::{TaskExecStarted, TaskStart};

use crate::{
    error::{Error, Result},
    pod::Pod,
    process::ProcessStatus,
};

pub async fn start(pod: &Arc<Pod>, req: &StartRequest) -> Result<StartResponse> {
    let container = pod.container(&req.id)?;
    let process = container.process(&req.exec_id)?;
    if process.status() != ProcessStatus::Created {
        return Err(Error::FailedPrecondition(format!(
            "process {} of container {} is not in created state",
            crate::process::display_name(&req.exec_id),
            req.id
        )));
    }
    if !req.exec_id.is_empty() {
        let pid = super::exec::start_exec(pod, &container, &process).await?;
        pod.events.send(TaskExecStarted {
            container_id: req.id.clone(),
            exec_id: req.exec_id.clone(),
            pid,
            ..Default::default()
        });
        return Ok(StartResponse {
            pid,
            ..Default::default()
        });
    }

    pod.runtime.start(&req.id).await?;
    process.set_status(ProcessStatus::Running);
    let pid = process.pid();
    pod.events.send(TaskStart {
        container_id: req.id.clone(),
        pid,
        ..Default::default()
    });
    Ok(StartResponse {
        pid,
        ..Default::default()
    })
}

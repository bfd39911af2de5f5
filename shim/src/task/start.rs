//! Start: the container's init (`runtime start`) or one of its exec processes (`runtime exec`).

use std::sync::Arc;

use containerd_shim::api::{StartRequest, StartResponse};
use containerd_shim_protos::events::task::{TaskExecStarted, TaskStart};

use crate::{error::Result, pod::Pod, process::Transition};

pub async fn start(pod: &Arc<Pod>, req: &StartRequest) -> Result<StartResponse> {
    let container = pod.container(&req.id)?;
    let process = container.process(&req.exec_id)?;
    // Its exit, however early, is reported after this start is.
    let _reporting = process.reporting_for_start().await?;
    if !req.exec_id.is_empty() {
        // Once init was reaped, its exit report waits for the execs it knows of; none joins.
        container.init.check_exec()?;
    }
    process.apply(Transition::Start)?;
    if !req.exec_id.is_empty() {
        let pid = super::exec::start_exec(pod, &container, &process)
            .await
            .inspect_err(|_| {
                let _ = process.apply(Transition::StartFailed);
            })?;
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

    if let Err(e) = pod.runtime.start(&req.id).await {
        let _ = process.apply(Transition::StartFailed);
        return Err(e);
    }
    process.apply(Transition::Started)?;
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

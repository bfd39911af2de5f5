//! Pause, Resume (the runtime's freezer) and Checkpoint.

use std::sync::Arc;

use containerd_shim_protos::events::task::{TaskPaused, TaskResumed};

use crate::{
    error::{Error, Result},
    pod::Pod,
    process::ProcessStatus,
};

pub async fn pause(pod: &Arc<Pod>, id: &str) -> Result<()> {
    let container = pod.container(id)?;
    if container.init.status() != ProcessStatus::Running {
        return Err(Error::FailedPrecondition(format!(
            "container {id} is not running"
        )));
    }
    pod.runtime.pause(id).await?;
    container.init.set_status(ProcessStatus::Paused);
    pod.events.send(TaskPaused {
        container_id: id.to_string(),
        ..Default::default()
    });
    Ok(())
}

pub async fn resume(pod: &Arc<Pod>, id: &str) -> Result<()> {
    let container = pod.container(id)?;
    if container.init.status() != ProcessStatus::Paused {
        return Err(Error::FailedPrecondition(format!(
            "container {id} is not paused"
        )));
    }
    pod.runtime.resume(id).await?;
    container.init.set_status(ProcessStatus::Running);
    pod.events.send(TaskResumed {
        container_id: id.to_string(),
        ..Default::default()
    });
    Ok(())
}

pub fn checkpoint(pod: &Arc<Pod>, id: &str) -> Result<()> {
    pod.container(id)?;
    Err(Error::Unimplemented(
        "checkpoint needs criu, which podshim does not drive yet".into(),
    ))
}

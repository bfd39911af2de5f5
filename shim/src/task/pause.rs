//! Pause, Resume (the runtime's freezer) and Checkpoint.

use std::sync::Arc;

use containerd_shim_protos::events::task::{TaskPaused, TaskResumed};

use crate::{
    error::{Error, Result},
    pod::Pod,
    process::Transition,
};

pub async fn pause(pod: &Arc<Pod>, id: &str) -> Result<()> {
    let container = pod.container(id)?;
    container.init.check(Transition::Pause)?;
    pod.runtime.pause(id).await?;
    container.init.apply(Transition::Pause)?;
    pod.events.send(TaskPaused {
        container_id: id.to_string(),
        ..Default::default()
    });
    Ok(())
}

pub async fn resume(pod: &Arc<Pod>, id: &str) -> Result<()> {
    let container = pod.container(id)?;
    container.init.check(Transition::Resume)?;
    pod.runtime.resume(id).await?;
    container.init.apply(Transition::Resume)?;
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

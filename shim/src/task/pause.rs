//! Pause, Resume (the runtime's freezer) and Checkpoint.

use std::{path::Path, sync::Arc};

use containerd_shim_protos::events::task::{TaskPaused, TaskResumed};

use crate::{
    error::{Error, Result},
    pod::Pod,
    process::Transition,
    runtime::CheckpointOpts,
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

/// Dumps a running container's processes with CRIU into `image_path` (through the OCI
/// runtime), leaving it running. CRIU's own log is kept as `<bundle>/criu-dump.log` when the
/// dump fails, as containerd's runc shim does.
pub async fn checkpoint(pod: &Arc<Pod>, id: &str, image_path: &str) -> Result<()> {
    let container = pod.container(id)?;
    container.init.check_checkpoint()?;
    if image_path.is_empty() {
        return Err(Error::InvalidArgument(
            "checkpoint without an image path".into(),
        ));
    }
    let work = container.bundle.join("criu-work");
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).map_err(Error::io(format!("create {}", work.display())))?;
    let dumped = pod
        .runtime
        .checkpoint(CheckpointOpts {
            id,
            image_path: Path::new(image_path),
            work_path: &work,
        })
        .await;
    if dumped.is_err() {
        let _ = std::fs::rename(
            work.join("dump.log"),
            container.bundle.join("criu-dump.log"),
        );
    }
    let _ = std::fs::remove_dir_all(&work);
    dumped
}

//! Delete: forget an exited process; for a container's init, also the runtime's state, the
//! stdio and the rootfs mount.

use std::{sync::Arc, time::Duration};

use containerd_shim::api::{DeleteRequest, DeleteResponse};
use containerd_shim_protos::events::task::TaskDelete;

use crate::{
    error::Result,
    events::timestamp,
    pod::Pod,
    process::{Process, ProcessStatus, Transition},
    reaper::Exit,
};

/// After a forced delete of a never-started init, how long to wait for the reaper to see it go.
const KILLED_EXIT_WAIT: Duration = Duration::from_secs(2);

/// How long a Delete waits for a Create of the same container in flight (containerd's own
/// cleanup gives up after 5 s; runc's create takes well under a second).
const CREATE_WAIT: Duration = Duration::from_secs(10);

pub async fn delete(pod: &Arc<Pod>, req: &DeleteRequest) -> Result<DeleteResponse> {
    let container = pod.settled_container(&req.id, CREATE_WAIT).await?;
    if !req.exec_id.is_empty() {
        let process = container.process(&req.exec_id)?;
        process.apply(Transition::Delete)?;
        container.remove_exec(&req.exec_id);
        process.close_io().await;
        return Ok(response(&process, process.exit()));
    }

    let init = container.init.clone();
    let never_started = init.apply(Transition::Delete)? == ProcessStatus::Created;
    pod.runtime.delete(&req.id, never_started).await?;
    let exit = match init.exit() {
        Some(exit) => Some(exit),
        None if never_started => tokio::time::timeout(KILLED_EXIT_WAIT, init.wait())
            .await
            .ok(),
        None => None,
    };
    init.close_io().await;
    for exec in container.exec_processes() {
        exec.close_io().await;
    }
    container.unmount_rootfs();
    pod.remove(&req.id);
    pod.bundle_sweep.sweep();

    let resp = response(&init, exit);
    pod.events.send(TaskDelete {
        container_id: req.id.clone(),
        id: req.id.clone(),
        pid: resp.pid,
        exit_status: resp.exit_status,
        exited_at: resp.exited_at.clone(),
        ..Default::default()
    });
    Ok(resp)
}

fn response(process: &Process, exit: Option<Exit>) -> DeleteResponse {
    DeleteResponse {
        pid: process.pid(),
        exit_status: exit.map_or(0, |e| e.status),
        exited_at: exit.map(|e| timestamp(e.at)).into(),
        ..Default::default()
    }
}

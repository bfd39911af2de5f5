//! What happens when a container's process exits.

use std::sync::Arc;
use std::time::Duration;

use containerd_shim_protos::events::task::{TaskExit, TaskOOM};
use log::warn;
use tokio::sync::oneshot;

use crate::{container::Container, events::timestamp, pod::Pod, process::Process, reaper::Exit};

/// How long init's exit report waits for a Kill in flight to answer (`runc kill` takes
/// milliseconds; under load, hundreds).
const KILL_ANSWER_BOUND: Duration = Duration::from_secs(2);

/// Waits for `process` to exit, lets its last output reach containerd's FIFOs, records the
/// exit (which releases Wait) and tells containerd.
pub fn watch_exit(
    pod: Arc<Pod>,
    container: Arc<Container>,
    process: Arc<Process>,
    exit: oneshot::Receiver<Exit>,
) {
    crate::log_scope::spawn(async move {
        let Ok(exit) = exit.await else { return };
        process.set_reaped();
        let is_init = process.exec_id.is_empty();
        if is_init && !container.own_pid_namespace {
            // Sharing the pod's pid namespace, the container's other processes outlive init (and
            // keep its output open): they go first, as with containerd's runc shim.
            if let Err(e) = pod
                .runtime
                .kill(&container.id, libc::SIGKILL as u32, true)
                .await
            {
                warn!("kill remaining processes of {}: {e}", container.id);
            }
        }
        process.wait_output_closed().await;
        if is_init {
            container.kills.settled(KILL_ANSWER_BOUND).await;
        }
        process.set_exited(exit);
        if is_init {
            report_missed_oom(&pod, &container);
        }
        pod.events.send(TaskExit {
            container_id: container.id.clone(),
            id: if is_init {
                container.id.clone()
            } else {
                process.exec_id.clone()
            },
            pid: process.pid(),
            exit_status: exit.status,
            exited_at: Some(timestamp(exit.at)).into(),
            ..Default::default()
        });
    });
}

/// A kill the watcher could not report (it raced the exit, or the notification was lost) still
/// reaches containerd before the exit does: CRI's OOMKilled reason depends on it. A duplicate of
/// an event the watcher did send only sets the same reason again.
fn report_missed_oom(pod: &Pod, container: &Container) {
    let kills = container.cgroup().map(|cg| cg.oom_kills());
    if let Some(Ok(kills)) = kills {
        if kills > 0 {
            pod.events.send(TaskOOM {
                container_id: container.id.clone(),
                ..Default::default()
            });
        }
    }
}

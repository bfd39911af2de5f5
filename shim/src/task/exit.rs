//! What happens when a container's process exits.

use std::sync::Arc;
use std::time::Duration;

use containerd_shim_protos::events::task::{TaskExit, TaskOOM};
use log::warn;
use tokio::sync::oneshot;

use crate::{
    container::Container,
    events::timestamp,
    pod::Pod,
    process::{Process, ProcessStatus, OUTPUT_CLOSE_TIMEOUT},
    reaper::Exit,
};

/// How long init's exit report waits for a Kill in flight to answer (`runc kill` takes
/// milliseconds; under load, hundreds).
const KILL_ANSWER_BOUND: Duration = Duration::from_secs(2);
/// How long init's exit report waits for its execs' reports: they die with init (its pid
/// namespace, or the kill of the rest above) and are reported once their output closed.
const EXEC_REPORTS_BOUND: Duration = Duration::from_secs(3 * OUTPUT_CLOSE_TIMEOUT.as_secs());

/// Waits for `process` to exit, lets its last output reach containerd's FIFOs, records the
/// exit (which releases Wait) and tells containerd. containerd hears of a process's exit after
/// its start, and of init's after those of the execs it had, as from runc's shim: CRI deletes a
/// task on its init's exit.
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
        if is_init && process.status() == ProcessStatus::Paused {
            // The rest of a frozen container cannot die until it is thawed.
            if let Err(e) = pod.runtime.resume(&container.id).await {
                warn!("thaw {} after its init exited: {e}", container.id);
            }
        }
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
            execs_reported(&container).await;
        }
        let _reporting = process.reporting().await;
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

/// Until every exec of the container that was started has had its exit reported (bounded: a
/// report held up longer is logged, and init's goes ahead).
async fn execs_reported(container: &Container) {
    let all = async {
        for exec in container.exec_processes() {
            // A start in flight ends first; one that never gave a pid has no exit to report.
            drop(exec.reporting().await);
            if exec.pid() != 0 {
                exec.wait().await;
                drop(exec.reporting().await);
            }
        }
    };
    if tokio::time::timeout(EXEC_REPORTS_BOUND, all).await.is_err() {
        warn!(
            "{}: an exec's exit is not reported {EXEC_REPORTS_BOUND:?} after init's; init's goes first",
            container.id
        );
    }
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

//! One process of a container: its init or an exec, with its status, exit and stdio.

use std::{sync::Mutex, time::Duration};

use containerd_shim_protos::api::Status;
use tokio::sync::{watch, Mutex as AsyncMutex, MutexGuard as AsyncMutexGuard};

use crate::{
    error::{Error, Result},
    reaper::Exit,
    stdio::{ProcessIo, StdioPaths},
};

/// How long an exited process's output may stay open (a daemonised grandchild holding the
/// pipe) before its exit is reported anyway.
pub const OUTPUT_CLOSE_TIMEOUT: Duration = Duration::from_secs(2);
/// How long Delete waits for buffered output to reach containerd.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Where a process is in its life. Every change goes through [`Process::apply`]:
///
/// ```text
/// Created --Start--> Starting --Started--> Running --Pause--> Paused --Resume--> Running
///    ^                   |
///    +---StartFailed-----+
/// any --Exited--> Stopped        Created | Stopped --Delete--> Deleted
/// ```
///
/// An exit wins every race: a process that exited while its Start was in flight stays
/// Stopped, and one deleted before its exit was seen stays Deleted (its exit is still kept).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProcessStatus {
    Created,
    /// The OCI runtime's start or exec is in flight: a second Start, a Delete or a signal to
    /// an exec (which has no pid yet) is refused.
    Starting,
    Running,
    Paused,
    Stopped,
    Deleted,
}

/// What is asked of, or happens to, a process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    Start,
    Started,
    StartFailed,
    Pause,
    Resume,
    Exited,
    Delete,
}

impl ProcessStatus {
    /// The status after `t`, or None where `t` is not allowed.
    fn after(self, t: Transition) -> Option<ProcessStatus> {
        use ProcessStatus::*;
        use Transition::*;
        match (self, t) {
            (Created, Start) => Some(Starting),
            (Starting, Started) => Some(Running),
            (Starting, StartFailed) => Some(Created),
            (Stopped, Started | StartFailed) => Some(Stopped),
            (Running, Pause) => Some(Paused),
            (Paused, Resume) => Some(Running),
            (Deleted, Exited) => Some(Deleted),
            (_, Exited) => Some(Stopped),
            // A Delete that failed in the runtime may be tried again.
            (Created | Stopped | Deleted, Delete) => Some(Deleted),
            _ => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            ProcessStatus::Created => "created",
            ProcessStatus::Starting => "starting",
            ProcessStatus::Running => "running",
            ProcessStatus::Paused => "paused",
            ProcessStatus::Stopped => "stopped",
            ProcessStatus::Deleted => "deleted",
        }
    }
}

impl From<ProcessStatus> for Status {
    fn from(s: ProcessStatus) -> Status {
        match s {
            ProcessStatus::Created | ProcessStatus::Starting => Status::CREATED,
            ProcessStatus::Running => Status::RUNNING,
            ProcessStatus::Paused => Status::PAUSED,
            ProcessStatus::Stopped | ProcessStatus::Deleted => Status::STOPPED,
        }
    }
}

pub struct Process {
    pub container_id: String,
    /// Empty for a container's init process.
    pub exec_id: String,
    pub stdio: StdioPaths,
    state: Mutex<State>,
    exit: watch::Sender<Option<Exit>>,
    io: AsyncMutex<Option<ProcessIo>>,
    /// Held by a Start from its transition until containerd was told (TaskStart,
    /// TaskExecStarted), and by the exit report from recording the exit until TaskExit is sent:
    /// containerd hears a process start before it hears it exit, as from runc's shim.
    reporting: AsyncMutex<()>,
    /// For an exec: the OCI process JSON, kept from Exec until Start.
    exec_spec: Option<Vec<u8>>,
}

struct State {
    pid: u32,
    status: ProcessStatus,
    /// The process was reaped: its pid may already be another process's, even while its exit
    /// is not reported yet (its output still draining).
    reaped: bool,
}

impl Process {
    pub fn new(
        container_id: impl Into<String>,
        exec_id: impl Into<String>,
        stdio: StdioPaths,
    ) -> Process {
        Process {
            container_id: container_id.into(),
            exec_id: exec_id.into(),
            stdio,
            state: Mutex::new(State {
                pid: 0,
                status: ProcessStatus::Created,
                reaped: false,
            }),
            exit: watch::Sender::new(None),
            io: AsyncMutex::new(None),
            reporting: AsyncMutex::new(()),
            exec_spec: None,
        }
    }

    pub fn with_exec_spec(mut self, spec: Vec<u8>) -> Process {
        self.exec_spec = Some(spec);
        self
    }

    pub fn exec_spec(&self) -> Option<Vec<u8>> {
        self.exec_spec.clone()
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn pid(&self) -> u32 {
        self.state().pid
    }

    pub fn status(&self) -> ProcessStatus {
        self.state().status
    }

    pub fn exit(&self) -> Option<Exit> {
        *self.exit.borrow()
    }

    pub fn set_pid(&self, pid: u32) {
        self.state().pid = pid;
    }

    /// Moves the process on by `t`, or refuses with FailedPrecondition (the process's status
    /// is not changed). Returns the status it left.
    pub fn apply(&self, t: Transition) -> Result<ProcessStatus> {
        let mut st = self.state();
        let from = st.status;
        match from.after(t) {
            Some(to) => {
                st.status = to;
                Ok(from)
            }
            None => Err(self.refusal(from, t)),
        }
    }

    /// Whether `t` would be allowed now, for a caller that must do its part first (the runtime's
    /// pause, before the process counts as paused).
    pub fn check(&self, t: Transition) -> Result<()> {
        let from = self.status();
        match from.after(t) {
            Some(_) => Ok(()),
            None => Err(self.refusal(from, t)),
        }
    }

    /// Start and exit reports of this process, one at a time (see `reporting`).
    pub async fn reporting(&self) -> AsyncMutexGuard<'_, ()> {
        self.reporting.lock().await
    }

    /// For a Start: the reporting lock, or, while another Start holds it, that Start's refusal
    /// at once (an exit report holds it only to record and send the exit).
    pub async fn reporting_for_start(&self) -> Result<AsyncMutexGuard<'_, ()>> {
        if let Ok(guard) = self.reporting.try_lock() {
            return Ok(guard);
        }
        self.check(Transition::Start)?;
        Ok(self.reporting.lock().await)
    }

    /// An exec may be added to a container whose init is neither paused (runc's shim refuses
    /// that too) nor gone; it is started only while init was not reaped.
    pub fn check_exec(&self) -> Result<()> {
        let (status, reaped) = {
            let st = self.state();
            (st.status, st.reaped)
        };
        match status {
            ProcessStatus::Paused => Err(Error::FailedPrecondition(format!(
                "container {} is paused: resume it before exec",
                self.container_id
            ))),
            ProcessStatus::Stopped | ProcessStatus::Deleted => Err(Error::FailedPrecondition(
                format!("container {} is not running", self.container_id),
            )),
            _ if reaped => Err(Error::FailedPrecondition(format!(
                "container {} init process is not running",
                self.container_id
            ))),
            _ => Ok(()),
        }
    }

    /// New resources apply to a container that has not stopped.
    pub fn check_update(&self) -> Result<()> {
        match self.status() {
            ProcessStatus::Stopped | ProcessStatus::Deleted => {
                Err(Error::FailedPrecondition(format!(
                    "container {} is stopped: nothing to update",
                    self.container_id
                )))
            }
            _ => Ok(()),
        }
    }

    /// A checkpoint dumps a live container: its init running, or paused (containerd's client
    /// pauses it around the checkpoint).
    pub fn check_checkpoint(&self) -> Result<()> {
        match self.status() {
            ProcessStatus::Running | ProcessStatus::Paused => Ok(()),
            other => Err(Error::FailedPrecondition(format!(
                "container {} is {}: only a running or paused container can be checkpointed",
                self.container_id,
                other.name()
            ))),
        }
    }

    /// A signal reaches a process that has a pid and has not exited; `all` (init only) still
    /// reaches the container's other processes after init is gone. NotFound is what containerd
    /// and CRI read as "already stopped".
    pub fn check_kill(&self, all: bool) -> Result<()> {
        let (status, reaped) = {
            let st = self.state();
            (st.status, st.reaped)
        };
        match status {
            ProcessStatus::Stopped | ProcessStatus::Deleted if !all => {
                Err(Error::NotFound("process already finished".into()))
            }
            // An exec is signalled by pid, which its exit freed for reuse.
            _ if reaped && !self.exec_id.is_empty() => {
                Err(Error::NotFound("process already finished".into()))
            }
            ProcessStatus::Created | ProcessStatus::Starting if !self.exec_id.is_empty() => Err(
                Error::NotFound(format!("exec {} has not been started", self.exec_id)),
            ),
            _ => Ok(()),
        }
    }

    fn refusal(&self, from: ProcessStatus, t: Transition) -> Error {
        let process = format!(
            "process {} of container {}",
            display_name(&self.exec_id),
            self.container_id
        );
        let state = from.name();
        Error::FailedPrecondition(match t {
            Transition::Start => format!("{process} is {state}, not created"),
            Transition::Pause => format!("container {} is {state}, not running", self.container_id),
            Transition::Resume => format!("container {} is {state}, not paused", self.container_id),
            Transition::Delete => {
                format!("{process} is {state}: kill it before deleting")
            }
            other => format!("{process} is {state}: {other:?} is not possible"),
        })
    }

    /// Whether the kernel reaped it (its exit may not be reported yet: Stopped comes once its
    /// output was handed over).
    pub fn is_reaped(&self) -> bool {
        self.state().reaped
    }

    /// The kernel has reaped the process: from now on its pid names no process of ours.
    pub fn set_reaped(&self) {
        self.state().reaped = true;
    }

    /// Records the exit (which releases every Wait) and moves the process to Stopped.
    pub fn set_exited(&self, exit: Exit) {
        // Allowed from every status.
        let _ = self.apply(Transition::Exited);
        self.exit.send_replace(Some(exit));
    }

    pub async fn wait(&self) -> Exit {
        let mut rx = self.exit.subscribe();
        loop {
            if let Some(exit) = *rx.borrow_and_update() {
                return exit;
            }
            if rx.changed().await.is_err() {
                // The sender lives as long as self; this is unreachable while we borrow self.
                continue;
            }
        }
    }

    pub async fn set_io(&self, io: ProcessIo) {
        *self.io.lock().await = Some(io);
    }

    /// A process without a terminal has nothing to resize: done, as with runc's shim.
    pub async fn resize(&self, width: u32, height: u32) -> Result<()> {
        match self.io.lock().await.as_ref() {
            Some(io) if self.stdio.terminal => io.resize(width, height),
            _ => Ok(()),
        }
    }

    pub async fn close_stdin(&self) {
        if let Some(io) = self.io.lock().await.as_ref() {
            io.close_stdin();
        }
    }

    pub async fn wait_output_closed(&self) {
        if let Some(io) = self.io.lock().await.as_ref() {
            io.wait_output_closed(OUTPUT_CLOSE_TIMEOUT).await;
        }
    }

    /// Hands every buffered byte to containerd (bounded), then closes the stdio.
    pub async fn close_io(&self) {
        let io = self.io.lock().await.take();
        if let Some(io) = io {
            io.drain(DRAIN_TIMEOUT).await;
            io.shutdown().await;
        }
    }
}

/// How messages name a process: `init`, or its exec id.
pub fn display_name(exec_id: &str) -> &str {
    if exec_id.is_empty() {
        "init"
    } else {
        exec_id
    }
}

#[cfg(test)]
mod tests {
    use super::{ProcessStatus::*, Transition::*, *};

    const ALL: [ProcessStatus; 6] = [Created, Starting, Running, Paused, Stopped, Deleted];

    #[test]
    fn an_exit_is_taken_in_every_status() {
        for s in ALL {
            let want = if s == Deleted { Deleted } else { Stopped };
            assert_eq!(s.after(Exited), Some(want), "{s:?}");
        }
    }

    #[test]
    fn only_a_process_that_is_not_running_is_deleted() {
        for s in ALL {
            let allowed = matches!(s, Created | Stopped | Deleted);
            assert_eq!(s.after(Delete).is_some(), allowed, "{s:?}");
        }
    }

    #[test]
    fn start_only_from_created_and_once() {
        let allowed: Vec<_> = ALL
            .into_iter()
            .filter(|s| s.after(Start).is_some())
            .collect();
        assert_eq!(allowed, [Created]);
        assert_eq!(Starting.after(Started), Some(Running));
        assert_eq!(Starting.after(StartFailed), Some(Created));
        assert_eq!(Stopped.after(Started), Some(Stopped));
        assert_eq!(Created.after(Started), None);
    }

    #[test]
    fn a_refused_transition_changes_nothing_and_says_why() {
        let p = Process::new("c1", "e1", StdioPaths::default());
        let e = p.apply(Pause).unwrap_err();
        assert!(matches!(e, Error::FailedPrecondition(_)));
        assert_eq!(e.to_string(), "container c1 is created, not running");
        assert_eq!(p.status(), Created);
        assert_eq!(p.apply(Start).unwrap(), Created);
        assert_eq!(p.status(), Starting);
    }
}

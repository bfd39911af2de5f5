//! One process of a container: its init or an exec, with its status, exit and stdio.

use std::{sync::Mutex, time::Duration};

use containerd_shim_protos::api::Status;
use tokio::sync::{watch, Mutex as AsyncMutex};

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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProcessStatus {
    Created,
    Running,
    Paused,
    Stopped,
}

impl From<ProcessStatus> for Status {
    fn from(s: ProcessStatus) -> Status {
        match s {
            ProcessStatus::Created => Status::CREATED,
            ProcessStatus::Running => Status::RUNNING,
            ProcessStatus::Paused => Status::PAUSED,
            ProcessStatus::Stopped => Status::STOPPED,
        }
    }
}

pub struct Process {
    /// Empty for a container's init process.
    pub exec_id: String,
    pub stdio: StdioPaths,
    state: Mutex<State>,
    exit: watch::Sender<Option<Exit>>,
    io: AsyncMutex<Option<ProcessIo>>,
    /// For an exec: the OCI process JSON, kept from Exec until Start.
    exec_spec: Option<Vec<u8>>,
}

struct State {
    pid: u32,
    status: ProcessStatus,
}

impl Process {
    pub fn new(exec_id: impl Into<String>, stdio: StdioPaths) -> Process {
        Process {
            exec_id: exec_id.into(),
            stdio,
            state: Mutex::new(State {
                pid: 0,
                status: ProcessStatus::Created,
            }),
            exit: watch::Sender::new(None),
            io: AsyncMutex::new(None),
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

    /// Moves between Created/Running/Paused; a stopped process stays stopped.
    pub fn set_status(&self, status: ProcessStatus) {
        let mut st = self.state();
        if st.status != ProcessStatus::Stopped {
            st.status = status;
        }
    }

    pub fn set_exited(&self, exit: Exit) {
        self.state().status = ProcessStatus::Stopped;
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

    pub async fn resize(&self, width: u32, height: u32) -> Result<()> {
        match self.io.lock().await.as_ref() {
            Some(io) if self.stdio.terminal => io.resize(width, height),
            _ => Err(Error::FailedPrecondition(
                "process has no terminal to resize".into(),
            )),
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

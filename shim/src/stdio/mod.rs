//! A process's stdio: containerd's FIFOs on one side, the process's pipes or pty on the other.
//!
//! INTERFACE CONTRACT (the rest of the shim calls exactly this; the stdio helper fills the bodies).

use std::{os::fd::OwnedFd, path::Path, time::Duration};

use crate::error::Result;

/// What containerd sent in CreateTaskRequest / ExecProcessRequest.
#[derive(Debug, Clone, Default)]
pub struct StdioPaths {
    pub stdin: String,
    pub stdout: String,
    pub stderr: String,
    pub terminal: bool,
}

/// Bounds of what the shim holds for a reader that is not reading (containerd restarting).
#[derive(Debug, Clone, Copy)]
pub struct IoLimits {
    /// Bytes held in memory per output stream before spilling to the bundle.
    pub memory_bytes: usize,
    /// Bytes held in the spill file per output stream; past this, the process is back-pressured.
    pub spill_bytes: u64,
}

/// The ends the OCI runtime hands to the process as fds 0/1/2 (non-terminal processes only).
#[derive(Debug, Default)]
pub struct ChildStdio {
    pub stdin: Option<OwnedFd>,
    pub stdout: Option<OwnedFd>,
    pub stderr: Option<OwnedFd>,
}

pub struct ProcessIo {
    _todo: (),
}

impl ProcessIo {
    pub fn open(
        _paths: &StdioPaths,
        _spill_dir: &Path,
        _spill_prefix: &str,
        _limits: IoLimits,
    ) -> Result<(ProcessIo, ChildStdio)> {
        todo!("stdio helper")
    }
    pub fn attach_console(&mut self, _master: OwnedFd) -> Result<()> {
        todo!("stdio helper")
    }
    pub fn start(&mut self) {
        todo!("stdio helper")
    }
    pub fn resize(&self, _width: u32, _height: u32) -> Result<()> {
        todo!("stdio helper")
    }
    pub fn close_stdin(&self) {
        todo!("stdio helper")
    }
    pub async fn wait_output_closed(&self, _timeout: Duration) {
        todo!("stdio helper")
    }
    pub async fn drain(&self, _timeout: Duration) {
        todo!("stdio helper")
    }
    pub async fn shutdown(self) {
        todo!("stdio helper")
    }
}

pub struct ConsoleSocket {
    _todo: (),
}

impl ConsoleSocket {
    pub fn bind(_dir: &Path) -> Result<ConsoleSocket> {
        todo!("stdio helper")
    }
    pub fn path(&self) -> &Path {
        todo!("stdio helper")
    }
    pub async fn receive_master(&self) -> Result<OwnedFd> {
        todo!("stdio helper")
    }
}

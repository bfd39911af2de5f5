//! A logging binary (`binary://`, `binary-v2://`), run as containerd's runc shim runs one: the
//! process's stdout and stderr pipes are its descriptors 3 and 4, it closes descriptor 5 once
//! it is ready (`binary-v2`: after writing a byte) and only then may the process start; its
//! environment is `CONTAINER_ID` and `CONTAINER_NAMESPACE` alone, its standard streams
//! /dev/null. It is stopped with the process's stdio: SIGTERM, then SIGKILL after `STOP_GRACE`.
//! Invariant: a logger that was spawned is either handed out with its exit subscribed, or killed
//! and reaped before `start` returns.

use std::{
    os::fd::OwnedFd,
    path::PathBuf,
    process::{Command, Stdio},
    time::Duration,
};

use log::warn;
use nix::{
    sys::signal::{kill, Signal},
    unistd::Pid,
};
use tokio::sync::oneshot::{self, error::TryRecvError};

use super::{fifo::process_pipe, uri::LoggerCommand, IoOwner};
use crate::{
    error::{Error, Result},
    reaper::Exit,
};

/// containerd's runc shim gives a logger 12 s after SIGTERM to flush.
const STOP_GRACE: Duration = Duration::from_secs(12);
/// containerd waits for readiness without a bound; a create does not wait forever here.
const READY_BOUND: Duration = Duration::from_secs(if cfg!(test) { 2 } else { 60 });

pub struct Logger {
    pid: i32,
    program: PathBuf,
    exit: oneshot::Receiver<Exit>,
}

/// The ends of the logger's pipes that the process writes into.
pub struct ProcessEnds {
    pub stdout: OwnedFd,
    pub stderr: OwnedFd,
}

impl Logger {
    /// Spawns the logger and waits until it is ready.
    pub async fn start(
        command: &LoggerCommand,
        owner: &IoOwner<'_>,
    ) -> Result<(Logger, ProcessEnds)> {
        let (stdout_r, stdout_w) = pipe()?;
        let (stderr_r, stderr_w) = pipe()?;
        let (ready_r, ready_w) = process_pipe(false)?;
        let mut cmd = Command::new(&command.program);
        cmd.args(&command.args)
            .env_clear()
            .env("CONTAINER_ID", owner.id)
            .env("CONTAINER_NAMESPACE", owner.namespace)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let child =
            crate::sys::spawn_with_fds(&mut cmd, &[stdout_r, stderr_r, ready_w]).map_err(|e| {
                let what = format!("start logging binary {}", command.program.display());
                match e.kind() {
                    std::io::ErrorKind::NotFound => Error::NotFound(format!("{what}: {e}")),
                    _ => Error::io(what)(e),
                }
            })?;
        let pid = child.id() as i32;
        let logger = Logger {
            pid,
            program: command.program.clone(),
            exit: owner.exits.subscribe(pid),
        };
        // Our copies of its ends are gone with `cmd`: its exit ends the ready pipe.
        drop(cmd);
        match ready(ready_r, command.ready_byte).await {
            Ok(()) => Ok((
                logger,
                ProcessEnds {
                    stdout: stdout_w,
                    stderr: stderr_w,
                },
            )),
            Err(why) => {
                logger.kill().await;
                Err(Error::FailedPrecondition(format!(
                    "logging binary {}: {why}",
                    command.program.display()
                )))
            }
        }
    }

    /// SIGTERM, and SIGKILL if it is still there after `STOP_GRACE`. One that already exited
    /// (its exit is ours, so its pid was not reused) is left alone.
    pub async fn stop(mut self) {
        if !matches!(self.exit.try_recv(), Err(TryRecvError::Empty)) {
            return;
        }
        let _ = kill(Pid::from_raw(self.pid), Signal::SIGTERM);
        if tokio::time::timeout(STOP_GRACE, &mut self.exit)
            .await
            .is_err()
        {
            warn!(
                "logging binary {} (pid {}) still runs {STOP_GRACE:?} after SIGTERM; killing it",
                self.program.display(),
                self.pid
            );
            self.kill().await;
        }
    }

    async fn kill(self) {
        let _ = kill(Pid::from_raw(self.pid), Signal::SIGKILL);
        let _ = self.exit.await;
    }
}

fn pipe() -> Result<(OwnedFd, OwnedFd)> {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(Error::sys("create pipe"))
}

/// Until the logger closes its end of the ready pipe (or exits).
async fn ready(ready: OwnedFd, byte_required: bool) -> std::result::Result<(), String> {
    let ready = crate::sys::register(ready).map_err(|e| e.to_string())?;
    let mut b = [0u8; 1];
    match tokio::time::timeout(READY_BOUND, super::copy::read(&ready, &mut b)).await {
        Err(_) => Err(format!("not ready after {READY_BOUND:?}")),
        Ok(Err(e)) => Err(format!("read its ready pipe: {e}")),
        Ok(Ok(0)) if byte_required => {
            Err("closed its ready pipe without writing (binary-v2 asks for a byte)".into())
        }
        Ok(Ok(_)) => Ok(()),
    }
}

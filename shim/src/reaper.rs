//! The only place the shim reaps children.
//!
//! The shim is a child subreaper: container init and exec processes are re-parented to it when
//! the OCI runtime exits, so it must `waitpid(-1)`. Anything else waiting on a child (tokio's
//! process driver, `std::process::Child::wait`) would race with that loop and get ECHILD, so every
//! child of a serving shim is awaited through [`Reaper::subscribe`]. The task handlers reach it
//! through [`Exits`], which unit tests replace with exits they script.

use std::{
    collections::HashMap,
    sync::{Mutex, OnceLock},
    time::{Duration, Instant, SystemTime},
};

use log::{debug, warn};
use nix::{
    errno::Errno,
    sys::wait::{waitpid, WaitPidFlag, WaitStatus},
    unistd::Pid,
};
use tokio::{
    signal::unix::{signal, SignalKind},
    sync::oneshot,
};

use crate::error::{Error, Result};

/// How a process ended: its code, or 128+signal as shells and containerd report it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exit {
    pub status: u32,
    pub at: SystemTime,
}

/// Exits of processes nobody subscribed to yet are kept briefly: an exec'd process can exit
/// before `runc exec` has told us its pid.
const UNCLAIMED_TTL: Duration = Duration::from_secs(30);
const UNCLAIMED_MAX: usize = 4096;

#[derive(Default)]
pub struct Reaper {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    waiters: HashMap<i32, oneshot::Sender<Exit>>,
    unclaimed: HashMap<i32, (Exit, Instant)>,
}

/// Where a container's processes' exits come from.
pub trait Exits: Send + Sync {
    /// Resolves when `pid` exits. Subscribe right after the pid is known, with no await in
    /// between: an exit that came first is kept for a while (see `UNCLAIMED_TTL`).
    fn subscribe(&self, pid: i32) -> oneshot::Receiver<Exit>;
}

/// The process-wide reaper, as `Exits`.
pub struct SystemExits;

impl Exits for SystemExits {
    fn subscribe(&self, pid: i32) -> oneshot::Receiver<Exit> {
        reaper().subscribe(pid)
    }
}

static REAPER: OnceLock<Reaper> = OnceLock::new();

/// The process-wide reaper; `start` must have run before any child is spawned.
pub fn reaper() -> &'static Reaper {
    REAPER.get_or_init(Reaper::default)
}

/// Installs the SIGCHLD handler and the reaping task on the current runtime.
pub fn start() -> Result<()> {
    let mut sigchld = signal(SignalKind::child()).map_err(Error::io("install SIGCHLD handler"))?;
    // Children that exited before the handler existed are collected on the first pass.
    reaper().reap_all();
    tokio::spawn(async move {
        while sigchld.recv().await.is_some() {
            reaper().reap_all();
        }
    });
    Ok(())
}

impl Reaper {
    /// Resolves when `pid` exits. Subscribe right after spawning, with no await in between.
    pub fn subscribe(&self, pid: i32) -> oneshot::Receiver<Exit> {
        let (tx, rx) = oneshot::channel();
        let mut inner = self.lock();
        if let Some((exit, _)) = inner.unclaimed.remove(&pid) {
            let _ = tx.send(exit);
        } else {
            inner.waiters.insert(pid, tx);
        }
        rx
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A poisoned lock only means a panic elsewhere; the maps themselves stay coherent.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn reap_all(&self) {
        loop {
            let (pid, status) = match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(pid, code)) => (pid.as_raw(), code as u32),
                Ok(WaitStatus::Signaled(pid, sig, _)) => (pid.as_raw(), 128 + sig as u32),
                Ok(WaitStatus::StillAlive) | Err(Errno::ECHILD) => return,
                Ok(_) => continue,
                Err(Errno::EINTR) => continue,
                Err(e) => {
                    warn!("waitpid: {e}");
                    return;
                }
            };
            self.deliver(
                pid,
                Exit {
                    status,
                    at: SystemTime::now(),
                },
            );
        }
    }

    fn deliver(&self, pid: i32, exit: Exit) {
        let mut inner = self.lock();
        match inner.waiters.remove(&pid) {
            Some(tx) => {
                let _ = tx.send(exit);
            }
            None => {
                debug!("reaped unclaimed pid {pid} with status {}", exit.status);
                let now = Instant::now();
                inner
                    .unclaimed
                    .retain(|_, (_, at)| now.duration_since(*at) < UNCLAIMED_TTL);
                if inner.unclaimed.len() < UNCLAIMED_MAX {
                    inner.unclaimed.insert(pid, (exit, now));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_before_subscribe_is_kept() {
        let r = Reaper::default();
        let exit = Exit {
            status: 3,
            at: SystemTime::now(),
        };
        r.deliver(4242, exit);
        let mut rx = r.subscribe(4242);
        assert_eq!(rx.try_recv().unwrap().status, 3);
    }

    #[test]
    fn subscriber_gets_exit() {
        let r = Reaper::default();
        let mut rx = r.subscribe(77);
        assert!(rx.try_recv().is_err());
        r.deliver(
            77,
            Exit {
                status: 137,
                at: SystemTime::now(),
            },
        );
        assert_eq!(rx.try_recv().unwrap().status, 137);
        assert!(r.lock().waiters.is_empty());
    }
}

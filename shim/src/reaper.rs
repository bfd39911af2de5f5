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
/// before `runc exec` has told us its pid. Most are never claimed (orphans the shim reaps as
/// subreaper); past the bound the oldest go. An unclaimed exit is handed to a subscriber only
/// while no process holds its pid: once one does, the pid was reused and the exit was its
/// earlier holder's.
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
        // Reaping happens under the same lock, so a process that holds `pid` now cannot have
        // been reaped in between: its exit would already be the one in `unclaimed`.
        let mut inner = self.lock();
        match inner.unclaimed.remove(&pid) {
            Some((exit, _)) if !pid_in_use(pid) => {
                let _ = tx.send(exit);
            }
            stale => {
                if stale.is_some() {
                    debug!("pid {pid} was reused: its unclaimed exit was the earlier holder's");
                }
                inner.waiters.insert(pid, tx);
            }
        }
        rx
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A poisoned lock only means a panic elsewhere; the maps themselves stay coherent.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn reap_all(&self) {
        let mut inner = self.lock();
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
            let exit = Exit {
                status,
                at: SystemTime::now(),
            };
            Self::deliver_locked(&mut inner, pid, exit);
        }
    }

    #[cfg(test)]
    fn deliver(&self, pid: i32, exit: Exit) {
        Self::deliver_locked(&mut self.lock(), pid, exit);
    }

    fn deliver_locked(inner: &mut Inner, pid: i32, exit: Exit) {
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
                if inner.unclaimed.len() >= UNCLAIMED_MAX {
                    let oldest = inner.unclaimed.iter().min_by_key(|(_, (_, at))| *at);
                    if let Some(&oldest) = oldest.map(|(pid, _)| pid) {
                        inner.unclaimed.remove(&oldest);
                    }
                }
                inner.unclaimed.insert(pid, (exit, now));
            }
        }
    }
}

/// Whether a process (alive or a zombie not yet reaped) holds `pid`.
fn pid_in_use(pid: i32) -> bool {
    std::path::Path::new("/proc").join(pid.to_string()).exists()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exit(status: u32) -> Exit {
        Exit {
            status,
            at: SystemTime::now(),
        }
    }

    #[test]
    fn exit_before_subscribe_is_kept() {
        let r = Reaper::default();
        // A pid no process holds (above the kernel's limit of 2^22).
        r.deliver(5_000_001, exit(3));
        let mut rx = r.subscribe(5_000_001);
        assert_eq!(rx.try_recv().unwrap().status, 3);
    }

    #[test]
    fn subscriber_gets_exit() {
        let r = Reaper::default();
        let mut rx = r.subscribe(77);
        assert!(rx.try_recv().is_err());
        r.deliver(77, exit(137));
        assert_eq!(rx.try_recv().unwrap().status, 137);
        assert!(r.lock().waiters.is_empty());
    }

    /// Pid reuse: an exit nobody claimed belongs to the pid's earlier holder when a process
    /// holds that pid now, and must not end the new one at once.
    #[test]
    fn an_unclaimed_exit_is_not_handed_to_the_pids_next_holder() {
        let mut child = std::process::Command::new("sleep")
            .arg("10")
            .spawn()
            .unwrap();
        let pid = child.id() as i32;
        let r = Reaper::default();
        r.deliver(pid, exit(0));
        let mut rx = r.subscribe(pid);
        let phantom = rx.try_recv();
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(
            phantom.is_err(),
            "a live process was reported exited: {phantom:?}"
        );
        r.deliver(pid, exit(137));
        assert_eq!(rx.try_recv().unwrap().status, 137);
    }

    /// Exits nobody claims (orphans the shim reaped as subreaper) must not crowd out the exit
    /// of a process whose pid is about to be learned: the oldest go first.
    #[test]
    fn a_full_table_keeps_the_newest_exit() {
        let r = Reaper::default();
        for i in 0..UNCLAIMED_MAX as i32 {
            r.deliver(5_000_000 + i, exit(0));
        }
        r.deliver(4_999_999, exit(7));
        assert_eq!(r.lock().unclaimed.len(), UNCLAIMED_MAX);
        assert_eq!(r.subscribe(4_999_999).try_recv().unwrap().status, 7);
    }
}

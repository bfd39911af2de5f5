//! OOM-kill watchers: a task per container that reports each kill the kernel makes in
//! the container's cgroup and ends with the cgroup.

use std::{
    fs::{File, OpenOptions},
    io::{ErrorKind, Write},
    os::fd::{AsRawFd, OwnedFd, RawFd},
    path::Path,
};

use nix::sys::{
    eventfd::{EfdFlags, EventFd},
    inotify::{AddWatchFlags, InitFlags, Inotify},
};
use tokio::{io::unix::AsyncFd, sync::mpsc::UnboundedSender};

use super::read::{gone, Content};
use crate::error::{Error, Result};
use crate::readiness::wait_and_drain;

/// The watchers only run as tasks: fail instead of letting tokio panic outside a runtime.
fn ensure_runtime() -> Result<()> {
    tokio::runtime::Handle::try_current()
        .map(|_| ())
        .map_err(|e| Error::Other(format!("OOM watcher needs a tokio runtime: {e}")))
}

/// v1: the memory controller signals an eventfd registered against memory.oom_control
/// through cgroup.event_control. It signals it once more when the cgroup is removed,
/// which is told apart by the directory being gone.
pub(super) fn watch_v1(
    memory_dir: &Path,
    container_id: String,
    tx: UnboundedSender<String>,
) -> Result<()> {
    ensure_runtime()?;
    let eventfd = EventFd::from_flags(EfdFlags::EFD_CLOEXEC | EfdFlags::EFD_NONBLOCK)
        .map_err(Error::sys("create eventfd"))?;
    register_oom_eventfd(memory_dir, eventfd.as_raw_fd())?;
    let eventfd = register(OwnedFd::from(eventfd))?;
    let dir = memory_dir.to_path_buf();
    let what = format!("OOM watcher for {container_id}");
    tokio::spawn(async move {
        // Each wakeup may sum several notifications in the counter; containerd also
        // reports one.
        while wait_and_drain(&eventfd, &what).await {
            if !dir.exists() {
                return;
            }
            if tx.send(container_id.clone()).is_err() {
                return;
            }
        }
    });
    Ok(())
}

fn register_oom_eventfd(memory_dir: &Path, eventfd: RawFd) -> Result<()> {
    let open_failed = |name: &str, e: std::io::Error| {
        if e.kind() == ErrorKind::NotFound && !memory_dir.is_dir() {
            gone(memory_dir)
        } else {
            Error::io(format!("open {}", memory_dir.join(name).display()))(e)
        }
    };
    // Only needed while registering: the kernel keeps its own reference.
    let oom_control = File::open(memory_dir.join("memory.oom_control"))
        .map_err(|e| open_failed("memory.oom_control", e))?;
    // Not fs::write: creating the file if missing would be wrong on any filesystem.
    let mut control = OpenOptions::new()
        .write(true)
        .open(memory_dir.join("cgroup.event_control"))
        .map_err(|e| open_failed("cgroup.event_control", e))?;
    control
        .write_all(format!("{} {}", eventfd, oom_control.as_raw_fd()).as_bytes())
        .map_err(Error::io(format!(
            "register OOM eventfd in {}",
            memory_dir.display()
        )))
}

/// v2: memory.events is rewritten (IN_MODIFY) whenever one of its counters moves; a kill
/// is an increase of `oom_kill`. cgroup.events is watched too because kernfs may not
/// report the removal of memory.events itself, while `populated 0` says no process is
/// left that could be killed.
pub(super) fn watch_v2(
    dir: &Path,
    container_id: String,
    tx: UnboundedSender<String>,
) -> Result<()> {
    ensure_runtime()?;
    let inotify = Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC)
        .map_err(Error::sys("inotify_init"))?;
    let memory_events = dir.join("memory.events");
    inotify
        .add_watch(&memory_events, AddWatchFlags::IN_MODIFY)
        .map_err(|e| match e {
            nix::Error::ENOENT if !dir.is_dir() => gone(dir),
            nix::Error::ENOENT => Error::NotFound(format!(
                "{} missing: memory controller not enabled",
                memory_events.display()
            )),
            e => Error::sys(format!("watch {}", memory_events.display()))(e),
        })?;
    let cgroup_events = dir.join("cgroup.events");
    match inotify.add_watch(&cgroup_events, AddWatchFlags::IN_MODIFY) {
        Ok(_) | Err(nix::Error::ENOENT) => {}
        Err(e) => return Err(Error::sys(format!("watch {}", cgroup_events.display()))(e)),
    }
    // Kills before the watch started are not news.
    let mut last = oom_kills(dir)?.unwrap_or(0);
    let inotify = register(OwnedFd::from(inotify))?;
    let dir = dir.to_path_buf();
    let what = format!("OOM watcher for {container_id}");
    tokio::spawn(async move {
        // The events themselves don't matter: the files are reread either way, and once
        // memory.events is gone (IN_IGNORED) rereading it fails, which ends the loop.
        while wait_and_drain(&inotify, &what).await {
            let step = step(&dir, &mut last);
            for _ in 0..step.kills {
                if tx.send(container_id.clone()).is_err() {
                    return;
                }
            }
            if step.done {
                return;
            }
        }
    });
    Ok(())
}

fn register(fd: OwnedFd) -> Result<AsyncFd<OwnedFd>> {
    crate::sys::register(fd).map_err(Error::io("register with the event loop"))
}

struct Step {
    /// New kills since the last read: several can land between two wakeups.
    kills: u64,
    done: bool,
}

/// Reads memory.events before looking at whether the cgroup emptied, so that a kill of
/// the last process is still reported.
fn step(dir: &Path, last: &mut u64) -> Step {
    let kills = match oom_kills(dir) {
        Ok(Some(kills)) => kills,
        // A plain file caught mid-rewrite (only fixtures are rewritten non-atomically):
        // the write's own event brings a reread.
        Ok(None) | Err(Error::Other(_)) => *last,
        Err(e) => {
            let gone = match &e {
                Error::NotFound(_) => true,
                Error::Io { source, .. } => source.kind() == ErrorKind::NotFound,
                _ => false,
            };
            if !gone {
                log::warn!("OOM watcher stops: {e}");
            }
            return Step {
                kills: 0,
                done: true,
            };
        }
    };
    // Counters only grow; saturating/max keep a torn read from re-reporting a kill.
    let new = kills.saturating_sub(*last);
    *last = kills.max(*last);
    Step {
        kills: new,
        done: !populated(dir),
    }
}

pub(super) fn oom_kills(dir: &Path) -> Result<Option<u64>> {
    let content = Content::required(dir, "memory.events")?;
    Ok(content.flat_keyed()?.get("oom_kill").copied())
}

/// Whether processes remain; without a readable cgroup.events (fixtures), assume so.
fn populated(dir: &Path) -> bool {
    let Ok(Some(events)) = Content::optional(dir, "cgroup.events") else {
        return true;
    };
    match events.flat_keyed() {
        Ok(events) => events.get("populated") != Some(&0),
        Err(_) => true,
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::{
        sync::mpsc::{error::TryRecvError, unbounded_channel, UnboundedReceiver},
        time::{sleep, timeout},
    };

    use super::*;
    use crate::cgroup::test_util::write;

    fn events(high: u64, kills: u64) -> String {
        format!("low 0\nhigh {high}\nmax 0\noom {kills}\noom_kill {kills}\noom_group_kill 0\n")
    }

    async fn next(rx: &mut UnboundedReceiver<String>) -> Option<String> {
        timeout(Duration::from_secs(5), rx.recv())
            .await
            .expect("OOM watcher neither reported nor ended")
    }

    /// Lets the watcher task consume what was written.
    async fn settle() {
        sleep(Duration::from_millis(100)).await;
    }

    #[tokio::test]
    async fn v2_reports_kills_and_ends_with_the_file() {
        let tmp = tempfile::tempdir().unwrap();
        write(tmp.path(), &[("memory.events", &events(0, 3))]);
        let (tx, mut rx) = unbounded_channel();
        watch_v2(tmp.path(), "ctr".into(), tx).unwrap();

        // Other counters moving is not a kill, nor are kills from before the watch.
        write(tmp.path(), &[("memory.events", &events(1, 3))]);
        settle().await;
        assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));

        write(tmp.path(), &[("memory.events", &events(1, 4))]);
        assert_eq!(next(&mut rx).await.as_deref(), Some("ctr"));
        settle().await;
        assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));

        // Two kills between wakeups are two reports.
        write(tmp.path(), &[("memory.events", &events(1, 6))]);
        assert_eq!(next(&mut rx).await.as_deref(), Some("ctr"));
        assert_eq!(next(&mut rx).await.as_deref(), Some("ctr"));

        // A torn rewrite must not make the next kill count twice.
        write(tmp.path(), &[("memory.events", "low 0\n")]);
        settle().await;
        write(tmp.path(), &[("memory.events", &events(1, 7))]);
        assert_eq!(next(&mut rx).await.as_deref(), Some("ctr"));
        settle().await;
        assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));

        std::fs::remove_file(tmp.path().join("memory.events")).unwrap();
        assert_eq!(next(&mut rx).await, None, "watcher should end");
    }

    #[tokio::test]
    async fn v2_reports_the_last_kill_then_stops_when_unpopulated() {
        let tmp = tempfile::tempdir().unwrap();
        write(
            tmp.path(),
            &[
                ("memory.events", &events(0, 0)),
                ("cgroup.events", "populated 1\nfrozen 0\n"),
            ],
        );
        let (tx, mut rx) = unbounded_channel();
        watch_v2(tmp.path(), "ctr".into(), tx).unwrap();
        write(
            tmp.path(),
            &[
                ("memory.events", &events(0, 1)),
                ("cgroup.events", "populated 0\nfrozen 0\n"),
            ],
        );
        assert_eq!(next(&mut rx).await.as_deref(), Some("ctr"));
        assert_eq!(next(&mut rx).await, None, "watcher should end");
    }

    #[tokio::test]
    async fn v2_needs_memory_events() {
        let tmp = tempfile::tempdir().unwrap();
        let (tx, _rx) = unbounded_channel();
        let err = watch_v2(tmp.path(), "ctr".into(), tx.clone()).unwrap_err();
        assert!(
            matches!(&err, Error::NotFound(m) if m.contains("memory.events")),
            "{err:?}"
        );
        let err = watch_v2(&tmp.path().join("gone"), "ctr".into(), tx).unwrap_err();
        assert!(
            matches!(&err, Error::NotFound(m) if m.contains("no longer exists")),
            "{err:?}"
        );
    }

    #[tokio::test]
    async fn v1_registers_oom_control_with_an_eventfd() {
        let tmp = tempfile::tempdir().unwrap();
        write(
            tmp.path(),
            &[
                ("memory.oom_control", "oom_kill 0\n"),
                ("cgroup.event_control", ""),
            ],
        );
        let (tx, _rx) = unbounded_channel();
        watch_v1(tmp.path(), "ctr".into(), tx.clone()).unwrap();
        let line = std::fs::read_to_string(tmp.path().join("cgroup.event_control")).unwrap();
        let fds: Vec<i32> = line.split(' ').map(|fd| fd.parse().unwrap()).collect();
        assert_eq!(fds.len(), 2, "{line:?}");

        let err = watch_v1(&tmp.path().join("gone"), "ctr".into(), tx).unwrap_err();
        assert!(matches!(err, Error::NotFound(_)), "{err:?}");
    }

    #[test]
    fn outside_a_runtime_is_an_error() {
        let tmp = tempfile::tempdir().unwrap();
        write(tmp.path(), &[("memory.events", &events(0, 0))]);
        let (tx, _rx) = unbounded_channel();
        let err = watch_v2(tmp.path(), "ctr".into(), tx).unwrap_err();
        assert!(matches!(err, Error::Other(_)), "{err:?}");
    }
}

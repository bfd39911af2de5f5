//! OOM-kill notifications: the v1 eventfd on memory.oom_control, or inotify on v2 memory.events.

use std::{
    fs::File,
    os::fd::{AsFd, AsRawFd, OwnedFd},
    path::Path,
};

use log::{debug, warn};
use nix::sys::{
    eventfd::{EfdFlags, EventFd},
    inotify::{AddWatchFlags, InitFlags, Inotify},
};
use tokio::{io::unix::AsyncFd, sync::mpsc::UnboundedSender};

use super::read_keyed;
use crate::error::{Error, Result};

pub fn watch_v1(dir: &Path, container_id: String, tx: UnboundedSender<String>) -> Result<()> {
    let control_path = dir.join("memory.oom_control");
    let control =
        File::open(&control_path).map_err(Error::io(format!("open {}", control_path.display())))?;
    let efd = EventFd::from_value_and_flags(0, EfdFlags::EFD_CLOEXEC | EfdFlags::EFD_NONBLOCK)
        .map_err(Error::sys("eventfd"))?;
    let registration = format!("{} {}", efd.as_raw_fd(), control.as_raw_fd());
    std::fs::write(dir.join("cgroup.event_control"), registration).map_err(Error::io(format!(
        "register OOM event for {}",
        dir.display()
    )))?;
    // The kernel holds its own reference to memory.oom_control once registered.
    drop(control);
    let efd = register(OwnedFd::from(efd))?;
    let dir = dir.to_path_buf();
    tokio::spawn(async move {
        loop {
            if wait_and_drain(&efd).await.is_err() {
                return;
            }
            // Removing the cgroup also signals the eventfd.
            if !dir.is_dir() {
                debug!("memory cgroup {} removed; OOM watch ends", dir.display());
                return;
            }
            if tx.send(container_id.clone()).is_err() {
                return;
            }
        }
    });
    Ok(())
}

pub fn watch_v2(dir: &Path, container_id: String, tx: UnboundedSender<String>) -> Result<()> {
    let events = dir.join("memory.events");
    let inotify = Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC)
        .map_err(Error::sys("inotify"))?;
    inotify
        .add_watch(&events, AddWatchFlags::IN_MODIFY)
        .map_err(Error::sys(format!("watch {}", events.display())))?;
    let fd = register(OwnedFd::from(inotify))?;
    let mut seen = oom_kills(&events).unwrap_or(0);
    tokio::spawn(async move {
        loop {
            if wait_and_drain(&fd).await.is_err() {
                return;
            }
            let Some(now) = oom_kills(&events) else {
                debug!("{} removed; OOM watch ends", events.display());
                return;
            };
            for _ in seen..now {
                if tx.send(container_id.clone()).is_err() {
                    return;
                }
            }
            seen = seen.max(now);
        }
    });
    Ok(())
}

/// The `oom_kill` counter of a v2 memory.events file; None once the cgroup is gone.
pub fn oom_kills(events: &Path) -> Option<u64> {
    if !events.exists() {
        return None;
    }
    Some(
        read_keyed(events)
            .into_iter()
            .find(|(k, _)| k == "oom_kill")
            .map_or(0, |(_, v)| v),
    )
}

fn register(fd: OwnedFd) -> Result<AsyncFd<OwnedFd>> {
    crate::sys::register(fd).map_err(Error::io("register with the event loop"))
}

/// Waits until the descriptor is readable and reads everything pending (counter or events).
async fn wait_and_drain(fd: &AsyncFd<OwnedFd>) -> std::io::Result<()> {
    let mut buf = [0u8; 4096];
    loop {
        let mut guard = fd.readable().await?;
        match guard.try_io(|fd| {
            nix::unistd::read(fd.get_ref().as_fd(), &mut buf).map_err(std::io::Error::from)
        }) {
            Ok(Ok(_)) => return Ok(()),
            Ok(Err(e)) => {
                warn!("read OOM notification: {e}");
                return Err(e);
            }
            Err(_would_block) => continue,
        }
    }
}

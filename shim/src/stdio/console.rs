//! The console socket: the OCI runtime creates a terminal process's pty and sends us its master.
//!
//! It lives in a fresh directory of its own, 0700, made for it and removed with it: in a
//! world-writable directory a predictable socket name could be taken first, or connected to by
//! another user before the runtime.

use std::{
    io::IoSliceMut,
    os::fd::{AsRawFd, OwnedFd},
    os::unix::fs::DirBuilderExt,
    path::{Path, PathBuf},
    sync::atomic::{AtomicU64, Ordering},
};

use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
use tokio::net::UnixListener;

use crate::error::{Error, Result};
use crate::sys::own_received_fd;

pub struct ConsoleSocket {
    /// The socket's private directory.
    dir: PathBuf,
    path: PathBuf,
    listener: UnixListener,
}

static NEXT: AtomicU64 = AtomicU64::new(0);

impl ConsoleSocket {
    /// Binds a fresh socket in a new private directory under `parent`; keep `parent` short,
    /// unix socket paths end at 108 bytes. A directory that exists already (someone else's) is
    /// never used: the next name is tried.
    pub fn bind(parent: &Path) -> Result<ConsoleSocket> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let mut tries = 0;
        let dir = loop {
            let dir = parent.join(format!(
                "podshim-pty-{}-{}-{nanos:x}",
                std::process::id(),
                NEXT.fetch_add(1, Ordering::Relaxed)
            ));
            match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
                Ok(()) => break dir,
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && tries < 16 => tries += 1,
                Err(e) => return Err(Error::io(format!("create {}", dir.display()))(e)),
            }
        };
        let path = dir.join("pty.sock");
        match UnixListener::bind(&path) {
            Ok(listener) => Ok(ConsoleSocket {
                dir,
                path,
                listener,
            }),
            Err(e) => {
                let _ = std::fs::remove_dir(&dir);
                Err(Error::io(format!("bind {}", path.display()))(e))
            }
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub async fn receive_master(&self) -> Result<OwnedFd> {
        let (stream, _) = self
            .listener
            .accept()
            .await
            .map_err(Error::io("accept console connection"))?;
        loop {
            stream
                .readable()
                .await
                .map_err(Error::io("wait for console fd"))?;
            let received = stream.try_io(tokio::io::Interest::READABLE, || {
                let mut data = [0u8; 256];
                let mut iov = [IoSliceMut::new(&mut data)];
                let mut cmsg = nix::cmsg_space!([std::os::fd::RawFd; 1]);
                let msg = recvmsg::<()>(
                    stream.as_raw_fd(),
                    &mut iov,
                    Some(&mut cmsg),
                    MsgFlags::MSG_CMSG_CLOEXEC,
                )
                .map_err(std::io::Error::from)?;
                let mut fds = Vec::new();
                for c in msg.cmsgs().map_err(std::io::Error::from)? {
                    if let ControlMessageOwned::ScmRights(received) = c {
                        fds.extend(received.into_iter().map(own_received_fd));
                    }
                }
                Ok(fds)
            });
            match received {
                Ok(mut fds) if !fds.is_empty() => return Ok(fds.swap_remove(0)),
                Ok(_) => {
                    return Err(Error::Other(
                        "the OCI runtime closed the console socket without sending a pty".into(),
                    ))
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                Err(e) => return Err(Error::io("receive console fd")(e)),
            }
        }
    }
}

impl Drop for ConsoleSocket {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
        let _ = std::fs::remove_dir(&self.dir);
    }
}

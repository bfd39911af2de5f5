//! The console socket: the OCI runtime creates a terminal process's pty and sends us its master.

use std::{
    io::IoSliceMut,
    os::fd::{AsRawFd, OwnedFd},
    path::{Path, PathBuf},
    sync::atomic::{AtomicU64, Ordering},
};

use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
use tokio::net::UnixListener;

use crate::error::{Error, Result};
use crate::sys::own_received_fd;

pub struct ConsoleSocket {
    path: PathBuf,
    listener: UnixListener,
}

static NEXT: AtomicU64 = AtomicU64::new(0);

impl ConsoleSocket {
    /// Binds a fresh socket in `dir`; keep `dir` short, unix socket paths end at 108 bytes.
    pub fn bind(dir: &Path) -> Result<ConsoleSocket> {
        let name = format!(
            "podshim-pty-{}-{}.sock",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let path = dir.join(name);
        let _ = std::fs::remove_file(&path);
        let listener =
            UnixListener::bind(&path).map_err(Error::io(format!("bind {}", path.display())))?;
        Ok(ConsoleSocket { path, listener })
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
    }
}

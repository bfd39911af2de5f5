//! Kernel notification descriptors (eventfd, inotify) on the shim's event loop.

use std::os::fd::{AsFd, OwnedFd};

use tokio::io::unix::AsyncFd;

/// Waits for the descriptor to be readable and consumes what is pending; false when it can no
/// longer be waited on (logged as `what`'s failure).
pub async fn wait_and_drain(fd: &AsyncFd<OwnedFd>, what: &str) -> bool {
    // Large enough for a batch of inotify events; an eventfd read takes 8 bytes.
    let mut buf = [0u8; 4096];
    loop {
        let mut ready = match fd.readable().await {
            Ok(ready) => ready,
            Err(e) => {
                log::warn!("{what}: {e}");
                return false;
            }
        };
        match ready.try_io(|fd| {
            nix::unistd::read(fd.get_ref().as_fd(), &mut buf).map_err(std::io::Error::from)
        }) {
            Ok(Ok(_)) => return true,
            Ok(Err(e)) => {
                log::warn!("{what}: read: {e}");
                return false;
            }
            Err(_would_block) => continue,
        }
    }
}

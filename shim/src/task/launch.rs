//! What starting an init and an exec process share: where their output spills, and taking the
//! pty master the OCI runtime sends over the console socket while it runs.

use std::{
    future::Future,
    os::fd::OwnedFd,
    path::{Path, PathBuf},
    time::Duration,
};

use crate::{
    error::{Error, Result},
    stdio::ConsoleSocket,
};

/// A console socket the runtime never connects to must not hang Create forever.
const CONSOLE_TIMEOUT: Duration = Duration::from_secs(30);

/// Runs the runtime's create while taking the pty master it sends over the console socket.
pub(super) async fn with_console<F>(
    create: F,
    console: Option<&ConsoleSocket>,
) -> Result<(u32, Option<OwnedFd>)>
where
    F: Future<Output = Result<u32>>,
{
    let Some(console) = console else {
        return Ok((create.await?, None));
    };
    let receive = tokio::time::timeout(CONSOLE_TIMEOUT, console.receive_master());
    tokio::pin!(create, receive);
    tokio::select! {
        created = &mut create => {
            // The runtime connects before it exits, so on success the fd is already waiting.
            let pid = created?;
            let master = receive.await.map_err(|_| {
                Error::Other("the OCI runtime sent no console".into())
            })??;
            Ok((pid, Some(master)))
        }
        master = &mut receive => {
            let master = master.map_err(|_| Error::Other("the OCI runtime sent no console".into()))??;
            Ok((create.await?, Some(master)))
        }
    }
}

/// Spilled output goes to disk: containerd 2.x links `<bundle>/work` to a directory under its
/// root (the bundle itself is on tmpfs, where spilling would cost memory after all).
pub(super) fn spill_dir(bundle: &Path) -> PathBuf {
    let work = bundle.join("work");
    if work.is_dir() {
        work
    } else {
        bundle.to_path_buf()
    }
}

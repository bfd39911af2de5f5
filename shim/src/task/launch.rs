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

/// What the runtime started: its pid, and the pty master it sent over the console socket (none
/// without a terminal). A console that failed leaves a started process the caller must undo.
pub(super) struct Launched {
    pub pid: u32,
    pub console: Result<Option<OwnedFd>>,
}

/// Runs the runtime's create (or exec) while taking the pty master it sends over the console
/// socket. Err: the runtime failed, and started nothing.
pub(super) async fn with_console<F>(create: F, console: Option<&ConsoleSocket>) -> Result<Launched>
where
    F: Future<Output = Result<u32>>,
{
    let no_console = |_| Error::Other("the OCI runtime sent no console".into());
    let Some(console) = console else {
        let pid = create.await?;
        return Ok(Launched {
            pid,
            console: Ok(None),
        });
    };
    let receive = tokio::time::timeout(CONSOLE_TIMEOUT, console.receive_master());
    tokio::pin!(create, receive);
    tokio::select! {
        created = &mut create => {
            // The runtime connects before it exits, so on success the fd is already waiting.
            let pid = created?;
            let master = receive.await.map_err(no_console).and_then(|m| m);
            Ok(Launched { pid, console: master.map(Some) })
        }
        master = &mut receive => {
            let pid = create.await?;
            Ok(Launched { pid, console: master.map_err(no_console).and_then(|m| m).map(Some) })
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

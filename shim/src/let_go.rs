//! containerd lets go of a shim by moving its bundle away: every 2.x release renames a bundle
//! to `.<id>` before removing it, and no containerd path leads to the shim after that. It does
//! so after ShutdownSandbox or a task's Delete, and also when a restarted containerd cannot load
//! a pause-less pod's sandbox: killed inside `shim start`, containerd had not yet written
//! `shim-binary-path`, and it looks a runtime up by container, which a sandbox is not. It then
//! calls the sandbox exited and deletes its bundle while the shim serves on.
//!
//! Invariant: a shim whose bundle is gone does what ShutdownSandbox does (its holder killed,
//! its pod files removed) and leaves once its last task is deleted, as after a Shutdown.
//! Tasks are left to their callers: containerd still reaches them through their own bundles.

use std::{os::fd::OwnedFd, path::Path, sync::Arc};

use log::{info, warn};
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};

use crate::{
    error::{Error, Result},
    readiness::wait_and_drain,
    sandbox::SandboxService,
};

/// Watches `bundle` (the shim's own) from a task on the event loop.
pub fn watch(bundle: &Path, sandbox: Arc<SandboxService>) -> Result<()> {
    let inotify = Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC)
        .map_err(Error::sys("inotify_init"))?;
    // The rename shows at once; a deletion only once no process has its cwd there.
    inotify
        .add_watch(
            bundle,
            AddWatchFlags::IN_MOVE_SELF | AddWatchFlags::IN_DELETE_SELF,
        )
        .map_err(Error::sys(format!("watch {}", bundle.display())))?;
    let inotify = crate::sys::register(OwnedFd::from(inotify))
        .map_err(Error::io("register with the event loop"))?;
    let what = format!("watch of bundle {}", bundle.display());
    crate::log_scope::spawn(async move {
        if wait_and_drain(&inotify, &what).await {
            info!("the shim's bundle is gone: containerd let go of it; shutting its sandbox down");
            sandbox.let_go().await;
        } else {
            warn!("{what} ended; the shim leaves only when asked to");
        }
    });
    Ok(())
}

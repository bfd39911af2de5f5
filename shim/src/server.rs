//! Serving: the daemon half of the shim binary, started by `start` with `-socket`.
//!
//! The shim library's own serve loop registers only the task service; podshim owns this part
//! so the pod's services (task and sandbox) share one ttrpc server.

use std::{
    os::unix::net::{UnixListener, UnixStream},
    path::Path,
    sync::Arc,
    time::Duration,
};

use containerd_shim::{Flags, Shim};
use containerd_shim_protos::{
    sandbox_async::create_sandbox, shim_async::create_task, ttrpc::r#async::Server,
};
use log::{info, warn};
use tokio::signal::unix::{signal, SignalKind};

use crate::{
    connections::OpenConnections,
    error::{Error, Result},
    let_go,
    sandbox::{pod_api, SandboxService},
    service::Service,
    sys,
};

/// How long a shim with nothing left to serve waits for its callers to close their connections.
const CALLERS_HANG_UP: Duration = Duration::from_secs(2);

pub async fn serve(runtime_id: &str, flags: Flags) -> Result<()> {
    let socket = flags
        .socket
        .strip_prefix("unix://")
        .unwrap_or(&flags.socket)
        .to_string();
    if socket.is_empty() {
        return Err(Error::InvalidArgument(
            "-socket is required to serve".into(),
        ));
    }
    // Container processes are re-parented to the shim when the OCI runtime exits.
    nix::sys::prctl::set_child_subreaper(true).map_err(Error::sys("become child subreaper"))?;
    crate::log_scope::init(flags.debug, &flags.namespace, &flags.id)
        .map_err(Error::io("open the shim log"))?;
    ignore_termination()?;

    let Some(listener) = listen(&socket)? else {
        // Another shim already serves this group (a race between two `start`s): hand its
        // address back, as containerd's runc shim does.
        std::fs::write("address", &flags.socket).map_err(Error::io("write address"))?;
        sys::signal_server_started().map_err(Error::io("signal start"))?;
        return Ok(());
    };
    let ttrpc_address = std::env::var("TTRPC_ADDRESS")
        .map_err(|_| Error::InvalidArgument("TTRPC_ADDRESS is not set".into()))?;
    let mut config = containerd_shim::Config::default();
    let mut service = Service::new(runtime_id, &flags, &mut config).await;
    let task = service.task_service(ttrpc_address);
    let sandbox = Arc::new(SandboxService::new(task.pod()));
    // The daemon runs in its bundle (containerd starts `start` there).
    let bundle = std::env::current_dir().map_err(Error::io("read the shim's bundle path"))?;
    if let Err(e) = let_go::watch(&bundle, sandbox.clone()) {
        warn!("{e}; the shim leaves only when asked to");
    }
    let connections = OpenConnections::default();
    let listener = connections
        .listener(listener)
        .map_err(Error::io("ttrpc listener"))?;
    let mut server = Server::new()
        .add_listener(listener)
        .register_service(create_task(Arc::new(task)))
        .register_service(create_sandbox(sandbox.clone()))
        .register_service(pod_api::service(sandbox));
    server
        .start()
        .await
        .map_err(|e| Error::Other(format!("start ttrpc server: {e}")))?;
    sys::signal_server_started().map_err(Error::io("signal start"))?;
    info!("podshim serving on {socket}");

    service.wait().await;
    info!("podshim shutting down");
    // Answers first, then the close: see connections.rs.
    server.stop_listen().await;
    if !connections.all_closed(CALLERS_HANG_UP).await {
        info!(
            "{} connection(s) still open after {CALLERS_HANG_UP:?}; closing them",
            connections.count()
        );
    }
    if let Err(e) = server.shutdown().await {
        warn!("ttrpc shutdown: {e}");
    }
    Ok(())
}

/// Binds the pod's socket; `None` when a live shim already listens on it.
fn listen(path: &str) -> Result<Option<UnixListener>> {
    if let Some(dir) = Path::new(path).parent() {
        std::fs::create_dir_all(dir).map_err(Error::io(format!("create {}", dir.display())))?;
    }
    match bind_owner_only(path) {
        Ok(l) => Ok(Some(l)),
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
            if UnixStream::connect(path).is_ok() {
                return Ok(None);
            }
            // A socket file left by a shim that died: nobody answers on it.
            std::fs::remove_file(path).map_err(Error::io(format!("remove stale {path}")))?;
            bind_owner_only(path)
                .map(Some)
                .map_err(Error::io(format!("bind {path}")))
        }
        Err(e) => Err(Error::io(format!("bind {path}"))(e)),
    }
}

/// Binds `path` as a socket only its owner (containerd's user) can connect to, whatever umask
/// the shim inherited: under umask 177, so that the file is 0600 from its first moment (a chmod
/// after the bind would leave a window). The daemon runs one thread at this point.
fn bind_owner_only(path: &str) -> std::io::Result<UnixListener> {
    use nix::sys::stat::{umask, Mode};
    let inherited = umask(Mode::from_bits_truncate(0o177));
    let bound = UnixListener::bind(path);
    umask(inherited);
    bound
}

/// A pod's shim outlives signals meant for its parent's process group: only its last
/// container's deletion (or SIGKILL) ends it.
fn ignore_termination() -> Result<()> {
    for kind in [SignalKind::terminate(), SignalKind::interrupt()] {
        let mut s = signal(kind).map_err(Error::io("install signal handler"))?;
        tokio::spawn(async move {
            while s.recv().await.is_some() {
                info!("ignoring termination signal; the shim exits when its pod is gone");
            }
        });
    }
    Ok(())
}

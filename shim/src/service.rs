//! The shim's lifecycle as containerd drives it: `start` (find or spawn the pod's shim),
//! serve, and `delete` (clean up after a shim that is gone).

use std::{
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, SystemTime},
};

use async_trait::async_trait;
use containerd_shim::{
    api::DeleteResponse, publisher::RemotePublisher, util::write_str_to_file, ExitSignal, Flags,
    Shim, StartOpts,
};
use containerd_shim_protos::{
    protobuf::well_known_types::any::Any, types::introspection::RuntimeInfo,
};
use log::{error, warn};

use crate::{
    cgroup,
    config::Config,
    events::{timestamp, Events},
    exec_helper::ExecHelper,
    group::grouping,
    pod::Pod,
    reaper, rootfs,
    runtime::RuncCli,
    sandbox::{
        files::{PodFiles, Record},
        holder::kill_orphan,
        remains::delete_pod_containers,
    },
    task::TaskService,
};

pub struct Service {
    id: String,
    namespace: String,
    bundle: String,
    socket: String,
    exit: Arc<ExitSignal>,
}

#[async_trait]
impl Shim for Service {
    type T = TaskService;

    async fn new(_runtime_id: &str, args: &Flags, _config: &mut containerd_shim::Config) -> Self {
        Service {
            id: args.id.clone(),
            namespace: args.namespace.clone(),
            bundle: args.bundle.clone(),
            socket: args.socket.clone(),
            exit: Arc::new(ExitSignal::default()),
        }
    }

    async fn start_shim(&mut self, opts: StartOpts) -> containerd_shim::Result<String> {
        // A broken config must fail here, where containerd shows the error, not in the daemon.
        let config =
            Config::load().map_err(|e| containerd_shim::Error::InvalidArgument(e.to_string()))?;
        if let Some(helper) = exec_helper(&config) {
            helper
                .check()
                .map_err(|e| containerd_shim::Error::InvalidArgument(e.to_string()))?;
        }
        let grouping = grouping(&opts.id, Path::new("config.json"));
        // containerd's shim manager `env = ["SCHED_CORE=1"]`: the shim and every process it
        // starts share one core-scheduling cookie, as with containerd's runc shim.
        if std::env::var_os("SCHED_CORE").is_some_and(|v| !v.is_empty()) {
            crate::sys::sched_core_create().map_err(|e| {
                containerd_shim::Error::Other(format!("enable sched core support: {e}"))
            })?;
        }
        // The library's spawn honours runc options' ShimCgroup; shim.toml's, moved into last,
        // is where the shim ends up when both name one.
        let address = containerd_shim::spawn(opts, &grouping, Vec::new()).await?;
        if !config.runtime.shim_cgroup.is_empty() {
            confine(&address, &config.runtime.shim_cgroup)
                .map_err(|e| containerd_shim::Error::Other(e.to_string()))?;
        }
        // containerd 1.7 reads this on restart; 2.x keeps its own bootstrap.json.
        write_str_to_file("address", &address).await?;
        Ok(address)
    }

    async fn delete_shim(&mut self) -> containerd_shim::Result<DeleteResponse> {
        let bundle = match self.bundle.is_empty() {
            true => std::env::current_dir().unwrap_or_default(),
            false => PathBuf::from(&self.bundle),
        };
        let config = Config::load().unwrap_or_else(|e| {
            warn!("{e}; deleting with the default runtime");
            Config::default()
        });
        let runtime = runtime_for(&config, &self.namespace);
        if let Err(e) = runtime.force_delete_blocking(&self.id) {
            warn!("delete {}: {e}", self.id);
        }
        rootfs::unmount(&bundle);
        let socket = shim_socket(&bundle);
        let serving = socket.as_deref().is_some_and(still_serving);
        if let (Some(socket), false) = (&socket, serving) {
            // A killed shim could not remove it.
            if let Err(e) = std::fs::remove_file(socket) {
                if e.kind() != std::io::ErrorKind::NotFound {
                    warn!("remove {}: {e}", socket.display());
                }
            }
        }
        // A pause-less pod's shim that died leaves its containers, holder and pod files: the
        // bundle's record names them; a shim that still serves keeps them.
        match Record::load(&bundle) {
            Some(record) if serving => {
                warn!(
                    "pod {}: its shim still serves; nothing of it deleted",
                    record.sandbox_id
                );
            }
            Some(record) => {
                delete_pod_containers(&runtime, &record.sandbox_id);
                kill_orphan(record.holder_pid, &record.sandbox_id);
                if let Ok(files) = PodFiles::new(&record.dirs, &record.sandbox_id) {
                    files.remove();
                }
                Record::remove(&bundle);
            }
            None => {}
        }
        Ok(DeleteResponse {
            pid: 0,
            exit_status: 128 + libc::SIGKILL as u32,
            exited_at: Some(timestamp(SystemTime::now())).into(),
            ..Default::default()
        })
    }

    fn runtime_info(
        runtime_id: &str,
        _options: Option<&Any>,
    ) -> containerd_shim::Result<RuntimeInfo> {
        let config = Config::load().map_err(|e| containerd_shim::Error::Other(e.to_string()))?;
        crate::info::runtime_info(runtime_id, &config)
            .map_err(|e| containerd_shim::Error::Other(e.to_string()))
    }

    async fn wait(&mut self) {
        self.exit.wait().await;
        // The library removes the socket named in the first task's `address` file, but by now
        // containerd may have deleted that bundle: remove the socket we were started with.
        let path = self.socket.strip_prefix("unix://").unwrap_or(&self.socket);
        if !path.is_empty() {
            let _ = std::fs::remove_file(path);
        }
    }

    /// Only the library's own serve loop calls this; podshim serves through `server.rs`.
    async fn create_task_service(&self, publisher: RemotePublisher) -> TaskService {
        self.task_service(publisher.address.clone())
    }
}

impl Service {
    /// The pod's task service, publishing events to containerd's ttrpc address.
    pub fn task_service(&self, ttrpc_address: String) -> TaskService {
        if let Err(e) = reaper::start() {
            error!("{e}: container exits will not be seen");
        }
        let config = Config::load().unwrap_or_else(|e| {
            error!("{e}; serving with defaults");
            Config::default()
        });
        let runtime = Arc::new(runtime_for(&config, &self.namespace));
        let events = Events::forward_to(ttrpc_address, self.namespace.clone());
        let pod = Pod::new(
            self.namespace.clone(),
            config,
            runtime,
            Arc::new(reaper::SystemExits),
            events,
            self.exit.clone(),
        );
        TaskService::new(Arc::new(pod))
    }
}

/// The socket the group's shim was started on, as `start` noted it in the bundle.
/// Moves the shim serving at `address` into the node's shim cgroup. One this `start` spawned
/// that cannot be moved is killed and its socket removed (a failed start leaves nothing, as with
/// containerd's runc shim); one already serving the pod's other containers is left serving.
fn confine(address: &str, cgroup: &str) -> crate::error::Result<()> {
    let pid = podshim_common::socket::peer_pid(address).map_err(crate::error::Error::io(
        format!("find the shim serving {address}"),
    ))?;
    let Err(e) = cgroup::move_into(pid, cgroup) else {
        return Ok(());
    };
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let parent = stat
        .rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().nth(1))
        .and_then(|p| p.parse::<u32>().ok());
    if parent == Some(std::process::id()) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid as i32),
            nix::sys::signal::Signal::SIGKILL,
        );
        let _ = std::fs::remove_file(podshim_common::socket::socket_path(address));
    }
    Err(e)
}

fn shim_socket(bundle: &Path) -> Option<PathBuf> {
    let address = std::fs::read_to_string(bundle.join("address")).ok()?;
    let path = address.trim();
    let path = path.strip_prefix("unix://").unwrap_or(path);
    (!path.is_empty()).then(|| PathBuf::from(path))
}

/// How long a connection to a live shim stays quiet before `delete` believes it serves.
const SERVING_QUIET: Duration = Duration::from_millis(200);

/// containerd runs `delete` when its connection to a shim closes, which is not proof that the
/// shim died; a pod's shim that still accepts on its socket serves other tasks and keeps them.
/// A connection that stays quiet, or an error other than a refusal or a missing socket, counts
/// as serving.
fn still_serving(socket: &Path) -> bool {
    use std::io::{ErrorKind, Read};
    match std::os::unix::net::UnixStream::connect(socket) {
        // A connect alone does not tell: the kernel completes it against the listener of a
        // process being killed until its descriptors are closed, which resets the connection.
        // A ttrpc server never speaks first, so a live one leaves the connection quiet.
        Ok(mut conn) => {
            let quiet = conn
                .set_read_timeout(Some(SERVING_QUIET))
                .and_then(|()| conn.read(&mut [0u8; 1]));
            match quiet {
                Ok(n) => n > 0,
                Err(e) => matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut),
            }
        }
        Err(e) => e.kind() != ErrorKind::ConnectionRefused && e.kind() != ErrorKind::NotFound,
    }
}

fn exec_helper(config: &Config) -> Option<ExecHelper> {
    ExecHelper::new(&config.runtime.exec_helper, config.runtime.no_new_keyring)
}

fn runtime_for(config: &Config, namespace: &str) -> RuncCli {
    RuncCli::new(
        config.runtime.binary.clone(),
        config.runtime.root.join(namespace),
    )
    .with_exec_helper(exec_helper(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dead_shims_socket_is_told_from_a_serving_one() {
        let dir = tempfile::tempdir().unwrap();
        let bundle = dir.path();
        assert_eq!(shim_socket(bundle), None);
        let sock = bundle.join("s.sock");
        std::fs::write(
            bundle.join("address"),
            format!("unix://{}\n", sock.display()),
        )
        .unwrap();
        assert_eq!(shim_socket(bundle), Some(sock.clone()));
        assert!(!still_serving(&sock), "no socket file yet");
        let listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
        assert!(still_serving(&sock));
        // What a SIGKILL leaves: the file, with nobody accepting.
        drop(listener);
        assert!(sock.exists());
        assert!(!still_serving(&sock));
    }

    /// containerd runs `delete` as soon as the killed shim's connection drops, which can be
    /// before the dying process has closed its listener: the kernel still completes a connect
    /// then. The connection is reset once the listener closes; that is a dead shim too.
    #[test]
    fn a_shim_being_killed_is_not_serving() {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("s.sock");
        let listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
        let dying = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(20));
            drop(listener);
        });
        assert!(!still_serving(&sock));
        dying.join().unwrap();
    }
}

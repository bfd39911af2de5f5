//! The shim's lifecycle as containerd drives it: `start` (find or spawn the pod's shim),
//! serve, and `delete` (clean up after a shim that is gone).

use std::{
    path::{Path, PathBuf},
    sync::Arc,
    time::SystemTime,
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
    config::Config,
    container::unmount_all,
    events::{timestamp, Events},
    pod::Pod,
    reaper,
    runtime::RuncCli,
    sandbox::{
        files::{PodFiles, Record},
        holder::kill_orphan,
    },
    task::TaskService,
};

/// Annotations that put containers into one shim: containerd's explicit group, then the pod.
const GROUP_LABELS: [&str; 2] = [
    "io.containerd.runc.v2.group",
    "io.kubernetes.cri.sandbox-id",
];

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
        Config::load().map_err(|e| containerd_shim::Error::InvalidArgument(e.to_string()))?;
        let grouping = grouping(&opts.id, Path::new("config.json"));
        let address = containerd_shim::spawn(opts, &grouping, Vec::new()).await?;
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
        unmount_all(&bundle.join("rootfs"));
        // A pause-less pod's shim that died leaves its holder and pod files: the bundle's record
        // names them.
        if let Some(record) = Record::load(&bundle) {
            kill_orphan(record.holder_pid, &record.sandbox_id);
            if let Ok(files) = PodFiles::new(&record.dirs, &record.sandbox_id) {
                files.remove();
            }
            Record::remove(&bundle);
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
            events,
            self.exit.clone(),
        );
        TaskService::new(Arc::new(pod))
    }
}

fn runtime_for(config: &Config, namespace: &str) -> RuncCli {
    RuncCli::new(
        config.runtime.binary.clone(),
        config.runtime.root.join(namespace),
    )
}

/// The shim a task joins: its pod's, when the spec names one, else its own.
fn grouping(id: &str, spec: &Path) -> String {
    let annotations = std::fs::read(spec)
        .ok()
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .and_then(|v| v.get("annotations").cloned());
    GROUP_LABELS
        .iter()
        .find_map(|label| {
            annotations
                .as_ref()
                .and_then(|a| a.get(label))
                .and_then(|v| v.as_str())
                .filter(|v| !v.is_empty())
                .map(str::to_string)
        })
        .unwrap_or_else(|| id.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn containers_group_by_pod() {
        let dir = tempfile::tempdir().unwrap();
        let spec = dir.path().join("config.json");
        std::fs::write(
            &spec,
            r#"{"annotations":{"io.kubernetes.cri.sandbox-id":"pod1","io.kubernetes.cri.container-type":"container"}}"#,
        )
        .unwrap();
        assert_eq!(grouping("ctr1", &spec), "pod1");
        std::fs::write(
            &spec,
            r#"{"annotations":{"io.containerd.runc.v2.group":"g","io.kubernetes.cri.sandbox-id":"pod1"}}"#,
        )
        .unwrap();
        assert_eq!(grouping("ctr1", &spec), "g");
        std::fs::write(&spec, r#"{"annotations":{}}"#).unwrap();
        assert_eq!(grouping("ctr1", &spec), "ctr1");
        assert_eq!(grouping("ctr2", &dir.path().join("missing.json")), "ctr2");
    }
}

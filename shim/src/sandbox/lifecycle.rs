//! One pause-less pod's sandbox: CreateSandbox → StartSandbox → StopSandbox → ShutdownSandbox.

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::{Duration, SystemTime},
};

use log::{info, warn};
use tokio::sync::watch;

use crate::{
    error::{Error, Result},
    pod::Pod,
    reaper::Exit,
    sandbox::{
        files::{ContainerdDirs, PodFiles, Record},
        holder::{Holder, HolderSpec},
        pod_config::{NamespaceMode, PodSandboxConfig},
    },
};

/// How long StopSandbox waits for the killed holder to be reaped.
const STOP_WAIT: Duration = Duration::from_secs(10);

pub struct PodSandbox {
    pub id: String,
    pub bundle: PathBuf,
    pub config: PodSandboxConfig,
    pub netns: Option<PathBuf>,
    pub files: PodFiles,
    pub created_at: SystemTime,
    record: Mutex<Record>,
    holder: tokio::sync::Mutex<Option<Holder>>,
    /// The sandbox's exit: the holder's, or a stop before it ever ran.
    exit_tx: watch::Sender<Option<Exit>>,
}

pub struct Status {
    pub pid: u32,
    pub ready: bool,
    pub exited_at: Option<SystemTime>,
}

pub struct CreateRequest<'a> {
    pub sandbox_id: &'a str,
    pub bundle: &'a Path,
    pub options_type_url: &'a str,
    pub options: &'a [u8],
    pub netns_path: &'a str,
    pub annotations: &'a HashMap<String, String>,
}

impl PodSandbox {
    /// Prepares the pod (its files, noted durably first) without starting anything.
    pub fn create(req: CreateRequest<'_>) -> Result<PodSandbox> {
        if req.bundle.as_os_str().is_empty() {
            return Err(Error::InvalidArgument(
                "CreateSandbox without a bundle path".into(),
            ));
        }
        let config = PodSandboxConfig::from_any(req.options_type_url, req.options)?;
        if config.user_namespace {
            return Err(Error::Unimplemented(
                "user-namespaced pods (hostUsers: false) are not supported by podshim's \
                 pause-less sandboxes yet; use the classic `podshim` handler"
                    .into(),
            ));
        }
        let netns = match (config.network, req.netns_path) {
            (NamespaceMode::Node, _) | (_, "") => None,
            (_, path) => Some(PathBuf::from(path)),
        };
        if let Some(ns) = &netns {
            if !ns.exists() {
                return Err(Error::NotFound(format!(
                    "network namespace {} does not exist",
                    ns.display()
                )));
            }
        }
        let dirs = ContainerdDirs::find(req.annotations, req.bundle);
        let files = PodFiles::new(&dirs, req.sandbox_id)?;
        let record = Record {
            sandbox_id: req.sandbox_id.to_string(),
            dirs,
            holder_pid: 0,
        };
        record.save(req.bundle)?;
        if let Err(e) = files.create(&config) {
            Record::remove(req.bundle);
            return Err(e);
        }
        Ok(PodSandbox {
            id: req.sandbox_id.to_string(),
            bundle: req.bundle.to_path_buf(),
            config,
            netns,
            files,
            created_at: SystemTime::now(),
            record: Mutex::new(record),
            holder: tokio::sync::Mutex::new(None),
            exit_tx: watch::channel(None).0,
        })
    }

    fn holder_spec(&self) -> HolderSpec {
        let c = &self.config;
        // As podsandbox does for the pause container: a hostNetwork pod keeps the host's UTS
        // namespace and hostname.
        let new_uts = c.network != NamespaceMode::Node;
        HolderSpec {
            sandbox_id: self.id.clone(),
            netns: self.netns.clone(),
            new_ipc: c.ipc != NamespaceMode::Node,
            new_uts,
            new_pid: c.pid == NamespaceMode::Pod,
            hostname: if new_uts {
                c.hostname.clone()
            } else {
                String::new()
            },
            sysctls: c
                .sysctls
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        }
    }

    /// Starts the namespace holder; a second call answers with the same pid.
    pub async fn start(&self) -> Result<u32> {
        let mut holder = self.holder.lock().await;
        if let Some(h) = holder.as_ref() {
            return Ok(h.pid);
        }
        if self.exit_tx.borrow().is_some() {
            return Err(Error::FailedPrecondition(format!(
                "sandbox {} was stopped before it started",
                self.id
            )));
        }
        let h = Holder::spawn(&self.holder_spec()).await?;
        let pid = h.pid;
        {
            let mut record = self.record.lock().unwrap_or_else(|e| e.into_inner());
            record.holder_pid = pid;
            if let Err(e) = record.save(&self.bundle) {
                h.kill();
                return Err(e);
            }
        }
        let mut exit = h.exit.clone();
        let tx = self.exit_tx.clone();
        let id = self.id.clone();
        tokio::spawn(async move {
            while exit.borrow_and_update().is_none() {
                if exit.changed().await.is_err() {
                    return;
                }
            }
            let e = *exit.borrow();
            info!("sandbox {id}: holder exited ({:?})", e.map(|e| e.status));
            tx.send_replace(e);
        });
        *holder = Some(h);
        info!("sandbox {}: holder {pid} started", self.id);
        Ok(pid)
    }

    pub fn status(&self) -> Status {
        let exit = *self.exit_tx.borrow();
        let pid = self
            .record
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .holder_pid;
        Status {
            pid,
            ready: pid != 0 && exit.is_none(),
            exited_at: exit.map(|e| e.at),
        }
    }

    pub async fn wait(&self) -> Exit {
        let mut rx = self.exit_tx.subscribe();
        loop {
            if let Some(e) = *rx.borrow_and_update() {
                return e;
            }
            if rx.changed().await.is_err() {
                return Exit {
                    status: 255,
                    at: SystemTime::now(),
                };
            }
        }
    }

    /// Kills the holder and unmounts the pod's shm; the pod files stay until shutdown.
    pub async fn stop(&self) {
        let holder = self.holder.lock().await;
        match holder.as_ref() {
            Some(h) => {
                h.kill();
                if tokio::time::timeout(STOP_WAIT, h.wait()).await.is_err() {
                    warn!(
                        "sandbox {}: holder {} not reaped after SIGKILL",
                        self.id, h.pid
                    );
                }
            }
            None => {
                self.exit_tx.send_if_modified(|e| {
                    let first = e.is_none();
                    if first {
                        *e = Some(Exit {
                            status: 0,
                            at: SystemTime::now(),
                        });
                    }
                    first
                });
            }
        }
        self.files.unmount_shm();
    }

    /// Stops the sandbox and removes every trace of it.
    pub async fn shutdown(&self) {
        self.stop().await;
        self.files.remove();
        Record::remove(&self.bundle);
    }
}

/// The sandbox a pod shim serves (one at most), and the shim's lifetime around it.
pub struct Sandboxes {
    pod: Arc<Pod>,
    current: Mutex<Option<Arc<PodSandbox>>>,
}

impl Sandboxes {
    pub fn new(pod: Arc<Pod>) -> Self {
        Sandboxes {
            pod,
            current: Mutex::new(None),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Arc<PodSandbox>>> {
        self.current.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn get(&self, id: &str) -> Result<Arc<PodSandbox>> {
        match self.lock().as_ref() {
            Some(s) if s.id == id => Ok(s.clone()),
            _ => Err(Error::NotFound(format!("sandbox {id} not found"))),
        }
    }

    pub fn create(&self, req: CreateRequest<'_>) -> Result<()> {
        // Held across create: a second CreateSandbox for this shim must not interleave.
        let mut current = self.lock();
        if let Some(s) = current.as_ref() {
            return Err(match s.id == req.sandbox_id {
                true => Error::AlreadyExists(format!("sandbox {} already exists", s.id)),
                false => {
                    Error::FailedPrecondition(format!("this shim already serves sandbox {}", s.id))
                }
            });
        }
        let sandbox = PodSandbox::create(req)?;
        self.pod.hold_for_sandbox(true);
        *current = Some(Arc::new(sandbox));
        Ok(())
    }

    /// ShutdownSandbox: the shim leaves once the pod's tasks are gone. A shim that never got a
    /// sandbox (an idle one from a warm pool) leaves at once.
    pub async fn shutdown(&self, id: &str) -> Result<()> {
        let current = self.lock().clone();
        match current {
            Some(s) if s.id == id => {
                s.shutdown().await;
                *self.lock() = None;
            }
            Some(_) => return Err(Error::NotFound(format!("sandbox {id} not found"))),
            None => {}
        }
        self.pod.hold_for_sandbox(false);
        self.pod.request_shutdown();
        Ok(())
    }
}

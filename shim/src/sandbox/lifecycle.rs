//! One pause-less pod's sandbox: CreateSandbox → StartSandbox → StopSandbox → ShutdownSandbox.
//!
//! A sandbox created but never started is collected by the shim itself: containerd 2.3 can fail
//! RunPodSandbox between CreateSandbox and StartSandbox (pulling the pause image,
//! containerd#12849) and then never calls the sandbox again. What CRI undoes when it gives up,
//! the shim watches: the pod's network namespace file. A pod without one (hostNetwork) is given
//! up after the configured start deadline (`[sandbox] start_deadline_secs`) without a
//! StartSandbox.

use std::{
    collections::HashMap,
    os::fd::{AsRawFd, OwnedFd},
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::{Duration, SystemTime},
};

use log::{info, warn};
use tokio::sync::watch;

use crate::{
    config::SandboxConfig,
    error::{Error, Result},
    pod::Pod,
    reaper::Exit,
    sandbox::{
        files::{ContainerdDirs, PodFiles, Record},
        holder::{Holder, HolderSpec},
        pod_config::{NamespaceMode, PodSandboxConfig},
        spec::SandboxView,
        validate::{holder_sysctls, validate},
    },
    userns,
};

/// How long StopSandbox waits for the killed holder to be reaped.
const STOP_WAIT: Duration = Duration::from_secs(10);
/// How often a created sandbox checks whether CRI still wants it, until it starts.
const ABANDON_POLL: Duration = Duration::from_secs(1);

/// Whether CRI gave up on a sandbox created `age` ago that has not started: its network
/// namespace is gone, or, without one, no start came within `deadline`.
fn abandoned(netns: Option<&Path>, age: Duration, deadline: Duration) -> bool {
    match netns {
        Some(path) => !path.exists(),
        None => age >= deadline,
    }
}

pub struct PodSandbox {
    pub id: String,
    pub bundle: PathBuf,
    pub config: PodSandboxConfig,
    /// What the holder sets: the pod's sysctls and CRI's defaults (see validate.rs).
    pub sysctls: std::collections::BTreeMap<String, String>,
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
    pub fn create(req: CreateRequest<'_>, defaults: &SandboxConfig) -> Result<PodSandbox> {
        if req.bundle.as_os_str().is_empty() {
            return Err(Error::InvalidArgument(
                "CreateSandbox without a bundle path".into(),
            ));
        }
        let config = PodSandboxConfig::from_any(req.options_type_url, req.options)?;
        validate(&config)?;
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
        // A pod on the node's network gets a user namespace made from its mappings (the others
        // have the one CRI made their network namespace in).
        if config.user_namespace() && netns.is_none() && config.id_map().is_none() {
            return Err(Error::InvalidArgument(
                "a hostNetwork pod with hostUsers: false needs exactly one uid and one gid \
                 mapping"
                    .into(),
            ));
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
            sysctls: holder_sysctls(&config, defaults),
            config,
            netns,
            files,
            created_at: SystemTime::now(),
            record: Mutex::new(record),
            holder: tokio::sync::Mutex::new(None),
            exit_tx: watch::channel(None).0,
        })
    }

    /// What the pod's spec and verbose status show of it.
    pub fn view(&self) -> SandboxView<'_> {
        SandboxView {
            id: &self.id,
            config: &self.config,
            netns: self.netns.as_deref(),
            sysctls: &self.sysctls,
            pod_files: &self.files.root_dir,
        }
    }

    fn holder_spec(&self) -> HolderSpec {
        let c = &self.config;
        // As podsandbox does for the pause container: a hostNetwork pod keeps the host's UTS
        // namespace and hostname.
        let new_uts = c.network != NamespaceMode::Node;
        HolderSpec {
            sandbox_id: self.id.clone(),
            netns: self.netns.clone(),
            userns: None,
            new_ipc: c.ipc != NamespaceMode::Node,
            new_uts,
            new_pid: c.pid == NamespaceMode::Pod,
            hostname: if new_uts {
                c.hostname.clone()
            } else {
                String::new()
            },
            sysctls: self.sysctls.clone().into_iter().collect(),
        }
    }

    /// A `hostUsers: false` pod's user namespace: the one CRI made its network namespace in, or,
    /// on the node's network, a new one with its mappings.
    fn user_namespace(&self) -> Result<Option<OwnedFd>> {
        if !self.config.user_namespace() {
            return Ok(None);
        }
        let found = match (&self.netns, self.config.id_map()) {
            (Some(netns), _) => userns::owner_of(netns).map_err(Error::io(format!(
                "the user namespace of {}",
                netns.display()
            ))),
            (None, Some(map)) => map
                .user_namespace()
                .map_err(Error::io("a user namespace for the pod")),
            (None, None) => Err(Error::InvalidArgument(
                "a hostNetwork pod with hostUsers: false needs its id mappings".into(),
            )),
        };
        found.map(Some)
    }

    /// Starts the namespace holder; a second call answers with the same pid. While it runs,
    /// `pod` answers `Pids` of the sandbox id with its pid.
    pub async fn start(&self, pod: &Arc<Pod>) -> Result<u32> {
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
        let userns = self.user_namespace()?;
        let mut spec = self.holder_spec();
        // The holder opens it through our descriptor, which stays open until it has joined.
        spec.userns = userns
            .as_ref()
            .map(|fd| format!("/proc/{}/fd/{}", std::process::id(), fd.as_raw_fd()).into());
        let h = Holder::spawn(&spec).await?;
        drop(userns);
        let pid = h.pid;
        if let Err(e) = Record::note_holder(&self.bundle, pid) {
            h.kill();
            return Err(e);
        }
        self.record
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .holder_pid = pid;
        pod.set_sandbox_process(Some((self.id.clone(), pid)));
        let mut exit = h.exit.clone();
        let tx = self.exit_tx.clone();
        let id = self.id.clone();
        let pod = pod.clone();
        crate::log_scope::spawn(async move {
            while exit.borrow_and_update().is_none() {
                if exit.changed().await.is_err() {
                    return;
                }
            }
            let e = *exit.borrow();
            info!("sandbox {id}: holder exited ({:?})", e.map(|e| e.status));
            pod.set_sandbox_process(None);
            tx.send_replace(e);
        });
        *holder = Some(h);
        info!("sandbox {}: holder {pid} started", self.id);
        Ok(pid)
    }

    /// Whether the holder was started or the sandbox stopped: CRI went past CreateSandbox.
    fn settled(&self) -> bool {
        self.record
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .holder_pid
            != 0
            || self.exit_tx.borrow().is_some()
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
    current: Arc<Mutex<Option<Arc<PodSandbox>>>>,
}

fn lock(
    current: &Mutex<Option<Arc<PodSandbox>>>,
) -> std::sync::MutexGuard<'_, Option<Arc<PodSandbox>>> {
    current.lock().unwrap_or_else(|e| e.into_inner())
}

impl Sandboxes {
    pub fn new(pod: Arc<Pod>) -> Self {
        Sandboxes {
            pod,
            current: Default::default(),
        }
    }

    pub fn get(&self, id: &str) -> Result<Arc<PodSandbox>> {
        match lock(&self.current).as_ref() {
            Some(s) if s.id == id => Ok(s.clone()),
            _ => Err(Error::NotFound(format!("sandbox {id} not found"))),
        }
    }

    pub fn create(&self, req: CreateRequest<'_>) -> Result<()> {
        // Held across create: a second CreateSandbox for this shim must not interleave.
        let mut current = lock(&self.current);
        if let Some(s) = current.as_ref() {
            return Err(match s.id == req.sandbox_id {
                true => Error::AlreadyExists(format!("sandbox {} already exists", s.id)),
                false => {
                    Error::FailedPrecondition(format!("this shim already serves sandbox {}", s.id))
                }
            });
        }
        let sandbox = Arc::new(PodSandbox::create(req, &self.pod.config.sandbox)?);
        self.pod.hold_for_sandbox(true);
        *current = Some(sandbox.clone());
        let deadline = Duration::from_secs(self.pod.config.sandbox.start_deadline_secs);
        crate::log_scope::spawn(collect_if_abandoned(
            sandbox,
            self.pod.clone(),
            self.current.clone(),
            deadline,
        ));
        Ok(())
    }

    /// StartSandbox: the sandbox and its holder's pid.
    pub async fn start(&self, id: &str) -> Result<(Arc<PodSandbox>, u32)> {
        let sandbox = self.get(id)?;
        let pid = sandbox.start(&self.pod).await?;
        Ok((sandbox, pid))
    }

    /// ShutdownSandbox: the shim leaves once the pod's tasks are gone. A shim that never got a
    /// sandbox (an idle one from a warm pool) leaves at once.
    pub async fn shutdown(&self, id: &str) -> Result<()> {
        shut_down(&self.pod, &self.current, id).await
    }

    /// containerd let go of the shim (see let_go.rs): ShutdownSandbox for whatever sandbox it
    /// serves, or for none.
    pub async fn let_go(&self) {
        let id = lock(&self.current).as_ref().map(|s| s.id.clone());
        if let Err(e) = shut_down(&self.pod, &self.current, id.as_deref().unwrap_or("")).await {
            warn!("letting go: {e}");
        }
    }
}

async fn shut_down(pod: &Pod, current: &Mutex<Option<Arc<PodSandbox>>>, id: &str) -> Result<()> {
    let sandbox = lock(current).clone();
    match sandbox {
        Some(s) if s.id == id => {
            s.shutdown().await;
            *lock(current) = None;
        }
        Some(_) => return Err(Error::NotFound(format!("sandbox {id} not found"))),
        None => {}
    }
    pod.bundle_sweep.sweep();
    pod.hold_for_sandbox(false);
    pod.request_shutdown();
    Ok(())
}

/// Until the sandbox starts or stops, checks whether CRI gave up on it; then shuts it down as
/// ShutdownSandbox would, and the shim leaves.
async fn collect_if_abandoned(
    sandbox: Arc<PodSandbox>,
    pod: Arc<Pod>,
    current: Arc<Mutex<Option<Arc<PodSandbox>>>>,
    deadline: Duration,
) {
    let created = std::time::Instant::now();
    loop {
        tokio::time::sleep(ABANDON_POLL).await;
        if sandbox.settled()
            || !lock(&current)
                .as_ref()
                .is_some_and(|s| Arc::ptr_eq(s, &sandbox))
        {
            return;
        }
        if abandoned(sandbox.netns.as_deref(), created.elapsed(), deadline) {
            break;
        }
    }
    warn!(
        "sandbox {}: abandoned before StartSandbox (its network namespace is gone, or no start \
         within {deadline:?}); shutting it down",
        sandbox.id
    );
    if let Err(e) = shut_down(&pod, &current, &sandbox.id).await {
        warn!("sandbox {}: {e}", sandbox.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn abandoned_when_the_netns_is_gone_or_no_start_came_in_time() {
        let dir = tempfile::tempdir().unwrap();
        let netns = dir.path().join("cni-1");
        std::fs::write(&netns, "").unwrap();
        let deadline = Duration::from_secs(600);
        assert!(!abandoned(Some(&netns), deadline * 2, deadline));
        std::fs::remove_file(&netns).unwrap();
        assert!(abandoned(Some(&netns), Duration::ZERO, deadline));
        assert!(!abandoned(
            None,
            deadline - Duration::from_secs(1),
            deadline
        ));
        assert!(abandoned(None, deadline, deadline));
    }
}

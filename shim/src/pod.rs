//! The pod this shim serves: every container it hosts, and when the shim may exit.

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
};

use containerd_shim::ExitSignal;
use containerd_shim_protos::events::task::TaskOOM;
use tokio::sync::{mpsc, Notify};

use crate::{
    bundle_sweep::BundleSweep,
    config::Config,
    container::Container,
    error::{Error, Result},
    events::Events,
    reaper::Exits,
    runtime::OciRuntime,
    stdio::{IoLimits, SpillBudget},
};

enum Entry {
    /// Create is in flight: the id is taken, but the container is not usable yet. No lock is
    /// held across the OCI runtime's create, so containers of one pod start concurrently.
    Creating,
    Ready(Arc<Container>),
}

pub struct Pod {
    pub namespace: String,
    pub config: Config,
    pub runtime: Arc<dyn OciRuntime>,
    /// Exits of the containers' init and exec processes.
    pub exits: Arc<dyn Exits>,
    pub events: Events,
    containers: Mutex<HashMap<String, Entry>>,
    /// Woken whenever a Create in flight ends, made or not.
    created: Notify,
    exit: Arc<ExitSignal>,
    shutdown_requested: AtomicBool,
    /// A sandbox served over the Sandbox API keeps the shim alive until ShutdownSandbox.
    sandbox_held: AtomicBool,
    /// The running sandbox process of a pause-less pod (its namespace holder), by sandbox id:
    /// what `Pids` answers for the sandbox's id.
    sandbox_process: Mutex<Option<(String, u32)>>,
    oom: mpsc::UnboundedSender<String>,
    /// What the pod's spill files hold together.
    spill_budget: SpillBudget,
    /// The bundles of the pod's containers, for what containerd leaves of them.
    pub bundle_sweep: BundleSweep,
}

/// An id reserved for a Create in flight; dropping it without `commit` frees the id.
pub struct Reservation<'a> {
    pod: &'a Pod,
    id: String,
    committed: bool,
}

impl Reservation<'_> {
    pub fn commit(mut self, container: Arc<Container>) {
        self.committed = true;
        self.pod
            .lock()
            .insert(self.id.clone(), Entry::Ready(container));
        self.pod.created.notify_waiters();
    }
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        if !self.committed {
            self.pod.lock().remove(&self.id);
            self.pod.created.notify_waiters();
        }
    }
}

impl Pod {
    pub fn new(
        namespace: String,
        config: Config,
        runtime: Arc<dyn OciRuntime>,
        exits: Arc<dyn Exits>,
        events: Events,
        exit: Arc<ExitSignal>,
    ) -> Pod {
        let spill_total = config.io.spill_total_bytes;
        let (oom, mut oom_rx) = mpsc::unbounded_channel::<String>();
        let oom_events = events.clone();
        tokio::spawn(async move {
            while let Some(container_id) = oom_rx.recv().await {
                oom_events.send(TaskOOM {
                    container_id,
                    ..Default::default()
                });
            }
        });
        Pod {
            namespace,
            config,
            runtime,
            exits,
            events,
            containers: Mutex::new(HashMap::new()),
            created: Notify::new(),
            exit,
            shutdown_requested: AtomicBool::new(false),
            sandbox_held: AtomicBool::new(false),
            sandbox_process: Mutex::new(None),
            oom,
            spill_budget: SpillBudget::new(spill_total),
            bundle_sweep: BundleSweep::default(),
        }
    }

    /// The bounds of a new process's output while nobody reads it.
    pub fn io_limits(&self) -> IoLimits {
        IoLimits {
            memory_bytes: self.config.io.memory_bytes,
            spill_bytes: self.config.io.spill_bytes,
            spill_budget: self.spill_budget.clone(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        self.containers.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Where cgroup OOM watchers report the containers whose processes the kernel OOM-killed.
    pub fn oom_sender(&self) -> mpsc::UnboundedSender<String> {
        self.oom.clone()
    }

    pub fn reserve(&self, id: &str) -> Result<Reservation<'_>> {
        let mut containers = self.lock();
        if containers.contains_key(id) {
            return Err(Error::AlreadyExists(format!(
                "container {id} already exists"
            )));
        }
        containers.insert(id.to_string(), Entry::Creating);
        Ok(Reservation {
            pod: self,
            id: id.to_string(),
            committed: false,
        })
    }

    pub fn container(&self, id: &str) -> Result<Arc<Container>> {
        match self.lock().get(id) {
            Some(Entry::Ready(c)) => Ok(c.clone()),
            Some(Entry::Creating) => Err(Error::FailedPrecondition(format!(
                "container {id} is still being created"
            ))),
            None => Err(Error::NotFound(format!("container {id} does not exist"))),
        }
    }

    /// Container `id` once a Create of it in flight has ended, made or not (NotFound then).
    /// containerd deletes a task whose CreateTask failed and then removes its bundle: waiting
    /// keeps that removal behind the OCI runtime's create. Bounded by the caller's deadline,
    /// and by `within`.
    pub async fn settled_container(
        &self,
        id: &str,
        within: std::time::Duration,
    ) -> Result<Arc<Container>> {
        let wait = async {
            loop {
                let created = self.created.notified();
                tokio::pin!(created);
                created.as_mut().enable();
                if !matches!(self.lock().get(id), Some(Entry::Creating)) {
                    return;
                }
                created.await;
            }
        };
        let _ = tokio::time::timeout(within, wait).await;
        self.container(id)
    }

    pub fn containers(&self) -> Vec<Arc<Container>> {
        self.lock()
            .values()
            .filter_map(|e| match e {
                Entry::Ready(c) => Some(c.clone()),
                Entry::Creating => None,
            })
            .collect()
    }

    /// Forgets a deleted container; the shim exits once it hosts nothing and was asked to.
    pub fn remove(&self, id: &str) {
        let empty = {
            let mut containers = self.lock();
            containers.remove(id);
            containers.is_empty()
        };
        if empty {
            self.exit_if_done();
        }
    }

    fn exit_if_done(&self) {
        if self.shutdown_requested.load(Ordering::SeqCst)
            && !self.sandbox_held.load(Ordering::SeqCst)
            && self.lock().is_empty()
        {
            self.exit.signal();
        }
    }

    /// Notes the sandbox's running process (`None`: it exited).
    pub fn set_sandbox_process(&self, process: Option<(String, u32)>) {
        *self
            .sandbox_process
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = process;
    }

    /// The pid of sandbox `id`'s running process, if this shim serves that sandbox.
    pub fn sandbox_process(&self, id: &str) -> Option<u32> {
        self.sandbox_process
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .filter(|(sandbox, _)| sandbox == id)
            .map(|(_, pid)| *pid)
    }

    pub fn hold_for_sandbox(&self, held: bool) {
        self.sandbox_held.store(held, Ordering::SeqCst);
    }

    /// containerd sends Shutdown after deleting a task, including one of several in the pod:
    /// the shim leaves only when its last container is gone.
    pub fn request_shutdown(&self) {
        self.shutdown_requested.store(true, Ordering::SeqCst);
        self.exit_if_done();
    }
}

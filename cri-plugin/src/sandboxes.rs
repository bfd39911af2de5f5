//! The sandboxes podshim-sandboxer controls: each is one pod shim, started here (or adopted
//! from the warm pool) and driven through its Sandbox API. This is containerd's sandbox
//! Controller contract without the wire: `controller.rs` is the gRPC edge.
//!
//! The store is written before anything is started and before any answer that containerd will
//! rely on; memory only caches it (records and shim connections), but for what CRI gave Create
//! for the verbose status.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use log::{info, warn};
use podshim_common::{
    id, logger,
    pod_api::{ANNOTATION_CONTAINERD_ROOT, ANNOTATION_CONTAINERD_STATE, STATE_NOTREADY},
};

use crate::config::Config;
use crate::containerd::{Containerd, Known};
use crate::crash;
use crate::cri_info::CriInfo;
use crate::error::{Error, Result};
use crate::launch::{self, Launcher};
use crate::pool::Pool;
use crate::refill::Adoption;
use crate::shim::{Exit, Metric, PodShim, RawAny};
use crate::store::{SandboxRecord, State, Store, Timestamp};

/// The task API version of a pod shim's socket: containerd then sends every container of the
/// pod straight to it.
pub const TASK_API_VERSION: u32 = 3;
/// How long a shim may take to leave after ShutdownSandbox before it is killed.
const SHUTDOWN_WAIT: Duration = Duration::from_secs(10);
/// The exit status containerd reports for a shim that died (its `cleanupAfterDeadShim`).
const DEAD_SHIM_EXIT: u32 = 255;
/// Between WaitSandbox attempts on a shim that is alive but whose connection broke.
const WAIT_RETRY: Duration = Duration::from_millis(500);
/// How often a sandbox created but not started is checked: its shim, and containerd's record.
const UNSTARTED_POLL: Duration = Duration::from_secs(1);
/// How often every started sandbox is looked for in containerd's store.
const SWEEP_EVERY: Duration = Duration::from_secs(30);

/// What a sandbox's log lines are about (see `podshim_common::logger`).
fn subject(key: &Key) -> String {
    format!("sandbox {}", key.1)
}

type Key = (String, String);

struct Entry {
    record: Mutex<SandboxRecord>,
    /// The open connection to the shim, dropped when it broke.
    shim: Mutex<Option<PodShim>>,
    /// Create, Start and Shutdown of one sandbox do not interleave; a sandbox is removed, and
    /// its record written, only under it.
    lifecycle: tokio::sync::Mutex<()>,
    /// What CRI gave Create for the verbose status; kept in memory only, so a sandbox recovered
    /// after a restart has none.
    cri: Option<CriInfo>,
    /// The pool shim it adopted, until its Start has ended or it is undone: the pool starts
    /// that shim's replacement then.
    adoption: Mutex<Option<Adoption>>,
}

impl Entry {
    fn new(r: SandboxRecord, cri: Option<CriInfo>) -> Arc<Entry> {
        Arc::new(Entry {
            record: Mutex::new(r),
            shim: Mutex::new(None),
            lifecycle: tokio::sync::Mutex::new(()),
            cri,
            adoption: Mutex::new(None),
        })
    }

    fn record(&self) -> SandboxRecord {
        self.record
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn set_record(&self, r: SandboxRecord) {
        *self.record.lock().unwrap_or_else(|e| e.into_inner()) = r;
    }

    /// The sandbox is answered: the pool may replace the shim it adopted.
    fn answered(&self) -> Option<Adoption> {
        self.adoption
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
    }

    fn forget_connection(&self) {
        *self.shim.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }
}

pub struct CreateRequest {
    pub namespace: String,
    pub sandbox_id: String,
    pub options: Option<RawAny>,
    pub netns_path: String,
    pub annotations: HashMap<String, String>,
    pub cri: Option<CriInfo>,
}

pub struct Started {
    pub pid: u32,
    pub created_at: Timestamp,
    /// `ttrpc+unix:///…`: the form containerd's shim manager splits into protocol and address.
    pub address: String,
    pub version: u32,
    /// The sandbox's OCI runtime spec, as the shim encoded it.
    pub spec: Option<RawAny>,
}

pub struct Status {
    pub sandbox_id: String,
    pub pid: u32,
    pub state: String,
    pub info: HashMap<String, String>,
    pub created_at: Option<Timestamp>,
    pub exited_at: Option<Timestamp>,
    pub address: String,
    pub version: u32,
}

pub struct Sandboxes {
    store: Arc<Store>,
    launcher: Arc<Launcher>,
    pool: Arc<Pool>,
    containerd: Containerd,
    containerd_root: PathBuf,
    containerd_state: PathBuf,
    entries: Mutex<HashMap<Key, Arc<Entry>>>,
    /// Pool shims adopted by a sandbox (their store transaction committed) since the start.
    adoptions: AtomicU64,
}

fn task_address(shim_address: &str) -> String {
    format!("ttrpc+{shim_address}")
}

impl Sandboxes {
    pub fn new(cfg: &Config, store: Arc<Store>, launcher: Arc<Launcher>, pool: Arc<Pool>) -> Self {
        Sandboxes {
            store,
            launcher,
            pool,
            containerd: Containerd::new(&cfg.containerd.address),
            containerd_root: cfg.containerd.root.clone(),
            containerd_state: cfg.containerd.state.clone(),
            entries: Mutex::new(HashMap::new()),
            adoptions: AtomicU64::new(0),
        }
    }

    fn entries(&self) -> std::sync::MutexGuard<'_, HashMap<Key, Arc<Entry>>> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn get(&self, namespace: &str, id: &str) -> Result<Arc<Entry>> {
        self.entries()
            .get(&(namespace.to_string(), id.to_string()))
            .cloned()
            .ok_or_else(|| {
                Error::NotFound(format!("sandbox {id} not found in namespace {namespace}"))
            })
    }

    pub fn exists(&self, namespace: &str, id: &str) -> bool {
        self.get(namespace, id).is_ok()
    }

    pub fn count(&self) -> usize {
        self.entries().len()
    }

    /// How many sandboxes are in each state of their record: `creating`, `created`, `started`,
    /// or `exited` once their shim was seen gone.
    pub fn states(&self) -> BTreeMap<&'static str, usize> {
        let mut n = BTreeMap::new();
        for e in self.entries().values() {
            let r = e.record();
            let state = match (r.exited_at, r.state) {
                (Some(_), _) => "exited",
                (None, State::Creating) => "creating",
                (None, State::Created) => "created",
                (None, State::Started) => "started",
            };
            *n.entry(state).or_insert(0) += 1;
        }
        n
    }

    /// Pool shims adopted by a sandbox since the daemon started.
    pub fn adoptions(&self) -> u64 {
        self.adoptions.load(Ordering::Relaxed)
    }

    /// After a restart: sandboxes containerd knows are served again (their shims reconnected
    /// on first use); those whose Create never answered are torn down; bundle directories
    /// nobody records are removed.
    ///
    /// One bad record does not keep the others from being served: a record that cannot be
    /// decoded, and a sandbox whose teardown fails, are logged with their key and skipped, and
    /// their records kept for an operator to look at (a failed teardown is tried again at the
    /// next start). Invariant: a record is removed only once nothing it names is left
    /// (`teardown` removes it last); what an unreadable record names cannot be known, so it is
    /// never removed, nor, while it is there, any bundle it might name.
    pub async fn recover(self: &Arc<Self>) -> Result<()> {
        for r in self.store.each_sandbox()? {
            let r = match r {
                Ok(r) => r,
                Err(e) => {
                    warn!("{e}: skipped, its record kept");
                    continue;
                }
            };
            let key = (r.namespace.clone(), r.sandbox_id.clone());
            logger::scope(subject(&key), self.recover_one(key, r)).await;
        }
        self.pool.recover().await?;
        self.remove_unrecorded_bundles()
    }

    fn remove_unrecorded_bundles(&self) -> Result<()> {
        let pool = self.store.each_pool()?.into_iter();
        let sandboxes = self.store.each_sandbox()?.into_iter();
        let known: Result<Vec<PathBuf>> = pool
            .map(|r| r.map(|s| s.bundle))
            .chain(sandboxes.map(|r| r.map(|s| s.shim.bundle)))
            .collect();
        let Ok(known) = known else {
            warn!("unreadable records in the sandbox store: no unrecorded bundle removed");
            return Ok(());
        };
        let Ok(namespaces) = std::fs::read_dir(self.launcher.bundles()) else {
            return Ok(());
        };
        for ns in namespaces.flatten() {
            for b in std::fs::read_dir(ns.path()).into_iter().flatten().flatten() {
                if !known.contains(&b.path()) {
                    warn!("removing unrecorded bundle {}", b.path().display());
                    let _ = std::fs::remove_dir_all(b.path());
                }
            }
        }
        Ok(())
    }

    /// A connection to the sandbox's shim; a cached one that broke is replaced once.
    async fn call<T, F, Fut>(&self, entry: &Entry, f: F) -> Result<T>
    where
        F: Fn(PodShim) -> Fut,
        Fut: std::future::Future<Output = Result<T>>,
    {
        let cached = entry.shim.lock().unwrap_or_else(|e| e.into_inner()).clone();
        if let Some(shim) = cached {
            match f(shim).await {
                Err(e) if e.is_unreachable() => entry.forget_connection(),
                r => return r,
            }
        }
        let address = entry.record().shim.address;
        let shim = PodShim::connect(&address).await?;
        *entry.shim.lock().unwrap_or_else(|e| e.into_inner()) = Some(shim.clone());
        let r = f(shim).await;
        if r.as_ref().is_err_and(Error::is_unreachable) {
            entry.forget_connection();
        }
        r
    }

    /// Whether `entry` is still the sandbox `key` names (not removed, nor replaced).
    fn is_current(&self, key: &Key, entry: &Arc<Entry>) -> bool {
        self.entries()
            .get(key)
            .is_some_and(|e| Arc::ptr_eq(e, entry))
    }

    /// [`recover`](Self::recover) of one readable record.
    async fn recover_one(self: &Arc<Self>, key: Key, r: SandboxRecord) {
        let entry = Entry::new(r.clone(), None);
        if r.state == State::Creating {
            info!("its Create never answered, tearing down");
            if let Err(e) = self.teardown(&entry).await {
                warn!(
                    "not torn down (namespace {}), its record kept: {e}",
                    r.namespace
                );
            }
            return;
        }
        info!(
            "recovered (namespace {}), shim {}",
            r.namespace, r.shim.address
        );
        self.launcher.reattach(&r.shim);
        self.entries().insert(key.clone(), entry.clone());
        if r.state == State::Created {
            self.watch_unstarted(key, entry);
        }
    }

    /// Runs a Create or Start of `entry` to its end under its lifecycle lock, even when
    /// containerd hangs up meanwhile (its deadline passed). CRI calls nothing after a failed
    /// Create or Start, so whatever failed, or succeeded for nobody, is undone here: the
    /// sandbox's shim, bundle, record and entry are gone before the error is answered.
    async fn run_or_undo<T, F, Fut>(
        self: &Arc<Self>,
        key: Key,
        entry: Arc<Entry>,
        op: &'static str,
        work: F,
    ) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(Arc<Self>, Arc<Entry>) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = Result<T>> + Send,
    {
        let this = self.clone();
        let id = key.1.clone();
        let (tx, rx) = tokio::sync::oneshot::channel();
        tokio::spawn(logger::scope(subject(&key), async move {
            let _lifecycle = entry.lifecycle.lock().await;
            // A Shutdown got here first.
            if !this.is_current(&key, &entry) {
                let _ = tx.send(Err(Error::NotFound(format!("sandbox {} not found", key.1))));
                return;
            }
            let r = work(this.clone(), entry.clone()).await;
            if let Err(e) = &r {
                warn!("{op} failed, undoing it: {e}");
                this.undo(&key, &entry).await;
            }
            if let Err(Ok(_)) = tx.send(r) {
                warn!("containerd gave up on its {op}, undoing it");
                this.undo(&key, &entry).await;
            }
        }));
        rx.await.unwrap_or_else(|_| {
            Err(Error::Unavailable(format!(
                "{op} of sandbox {id} was interrupted"
            )))
        })
    }

    /// Tears the sandbox down and forgets it. Called with its lifecycle lock held.
    async fn undo(&self, key: &Key, entry: &Arc<Entry>) {
        drop(entry.answered());
        if !self.is_current(key, entry) {
            return;
        }
        if let Err(e) = self.teardown(entry).await {
            warn!("tearing down: {e}");
        }
        self.entries().remove(key);
    }

    /// A sandbox created but not started is containerd's only until its RunPodSandbox fails
    /// (the pause image pull on 2.3, containerd#12849), after which nothing calls here about it
    /// again. Once its shim is gone (it watches the pod's network namespace) or containerd's
    /// store no longer has it (a hostNetwork pod has no namespace to watch), it is torn down
    /// and forgotten without waiting for a call.
    fn watch_unstarted(self: &Arc<Self>, key: Key, entry: Arc<Entry>) {
        let this = self.clone();
        tokio::spawn(logger::scope(subject(&key), async move {
            let unstarted = |this: &Sandboxes| {
                this.is_current(&key, &entry) && entry.record().state == State::Created
            };
            loop {
                tokio::time::sleep(UNSTARTED_POLL).await;
                if !unstarted(&this) {
                    return;
                }
                let why = if !launch::is_running(&entry.record().shim) {
                    "its shim left before it started"
                } else if this.containerd.knows(&key.0, &key.1).await == Known::No {
                    "containerd no longer has it, and it never started"
                } else {
                    continue;
                };
                let _lifecycle = entry.lifecycle.lock().await;
                if unstarted(&this) {
                    info!("{why}: tearing it down");
                    this.undo(&key, &entry).await;
                }
                return;
            }
        }));
    }

    /// Started sandboxes containerd no longer has are torn down: nobody would stop them (CRI
    /// 2.1 and 2.2 drop a sandbox whose RunPodSandbox fails after Start without a Shutdown).
    /// containerd's record is written before Create is called here and removed after Shutdown
    /// answered, so a started sandbox it lacks is one it gave up on. Runs for the daemon's life.
    pub async fn sweep(self: Arc<Self>) {
        loop {
            tokio::time::sleep(SWEEP_EVERY).await;
            let started: Vec<(Key, Arc<Entry>)> = self
                .entries()
                .iter()
                .filter(|(_, e)| e.record().state == State::Started)
                .map(|(k, e)| (k.clone(), e.clone()))
                .collect();
            for (key, entry) in started {
                logger::scope(subject(&key), async {
                    match self.containerd.knows(&key.0, &key.1).await {
                        Known::Yes => {}
                        Known::Unsure(e) => log::debug!("containerd not asked: {e}"),
                        Known::No => {
                            let _lifecycle = entry.lifecycle.lock().await;
                            if self.is_current(&key, &entry) {
                                info!("containerd no longer has it: tearing it down");
                                self.undo(&key, &entry).await;
                            }
                        }
                    }
                })
                .await;
            }
        }
    }

    pub async fn create(self: &Arc<Self>, req: CreateRequest) -> Result<()> {
        for (what, v) in [
            ("namespace", &req.namespace),
            ("sandbox id", &req.sandbox_id),
        ] {
            // They also name directories and sockets here.
            id::validate(what, v).map_err(|e| Error::InvalidArgument(e.to_string()))?;
        }
        let key = (req.namespace.clone(), req.sandbox_id.clone());
        let planned = SandboxRecord {
            namespace: req.namespace.clone(),
            sandbox_id: req.sandbox_id.clone(),
            shim: self.launcher.plan(&req.namespace, &req.sandbox_id),
            state: State::Creating,
            pid: 0,
            created_at: Timestamp::now(),
            exited_at: None,
        };
        let entry = {
            let mut entries = self.entries();
            if entries.contains_key(&key) {
                return Err(Error::AlreadyExists(format!(
                    "sandbox {} already exists",
                    req.sandbox_id
                )));
            }
            let e = Entry::new(planned.clone(), req.cri.clone());
            entries.insert(key.clone(), e.clone());
            e
        };
        let watched = key.clone();
        self.run_or_undo(key, entry, "create", |this, entry| async move {
            this.create_locked(&entry, planned, req).await?;
            this.watch_unstarted(watched, entry);
            Ok(())
        })
        .await
    }

    /// The entry's record always names what may exist, so that a failure anywhere can be
    /// undone from it.
    async fn create_locked(
        &self,
        entry: &Entry,
        mut record: SandboxRecord,
        req: CreateRequest,
    ) -> Result<()> {
        match self.pool.take(&req.namespace).await {
            Some((shim, adoption)) => {
                info!("adopting pool shim {}", shim.id);
                *entry.adoption.lock().unwrap_or_else(|e| e.into_inner()) = Some(adoption);
                record.shim = shim;
                entry.set_record(record.clone());
                let r = record.clone();
                self.store.off_thread(move |s| s.adopt(&r)).await?;
                self.adoptions.fetch_add(1, Ordering::Relaxed);
            }
            None => {
                let r = record.clone();
                self.store.off_thread(move |s| s.put_sandbox(&r)).await?;
                crash::at(crash::CREATE_RECORDED);
                record.shim = self.launcher.start(record.shim.clone()).await?;
                entry.set_record(record.clone());
                let r = record.clone();
                self.store.off_thread(move |s| s.put_sandbox(&r)).await?;
            }
        }
        let mut annotations = req.annotations;
        annotations.insert(
            ANNOTATION_CONTAINERD_ROOT.to_string(),
            self.containerd_root.to_string_lossy().into_owned(),
        );
        annotations.insert(
            ANNOTATION_CONTAINERD_STATE.to_string(),
            self.containerd_state.to_string_lossy().into_owned(),
        );
        let bundle = record.shim.bundle.clone();
        self.call(entry, |s| {
            let (id, bundle, netns) = (&req.sandbox_id, &bundle, &req.netns_path);
            let options = req.options.as_ref().map(|o| RawAny {
                type_url: o.type_url.clone(),
                value: o.value.clone(),
            });
            let annotations = annotations.clone();
            async move { s.create(id, bundle, options, netns, annotations).await }
        })
        .await?;
        record.state = State::Created;
        let r = record.clone();
        self.store.off_thread(move |s| s.put_sandbox(&r)).await?;
        entry.set_record(record);
        crash::at(crash::CREATE_ANSWERING);
        Ok(())
    }

    pub async fn start(self: &Arc<Self>, namespace: &str, id: &str) -> Result<Started> {
        let entry = self.get(namespace, id)?;
        let key = (namespace.to_string(), id.to_string());
        // Under the lifecycle lock: the sandbox's Create has ended, and succeeded if the
        // sandbox is still there.
        self.run_or_undo(key, entry, "start", |this, entry| async move {
            this.start_locked(&entry).await
        })
        .await
    }

    async fn start_locked(&self, entry: &Entry) -> Result<Started> {
        // Dropped when this returns, whatever the outcome.
        let _answered = entry.answered();
        let mut record = entry.record();
        let id = record.sandbox_id.as_str();
        let started = self
            .call(entry, |s| async move { s.start(id).await })
            .await?;
        crash::at(crash::START_STARTED);
        record.state = State::Started;
        record.pid = started.pid;
        record.created_at = started.created_at.unwrap_or(record.created_at);
        let r = record.clone();
        self.store.off_thread(move |s| s.put_sandbox(&r)).await?;
        entry.set_record(record.clone());
        Ok(Started {
            pid: started.pid,
            created_at: record.created_at,
            address: task_address(&record.shim.address),
            version: TASK_API_VERSION,
            spec: started.spec,
        })
    }

    /// Stopping a sandbox that is gone, or whose shim is, is done already.
    pub async fn stop(&self, namespace: &str, id: &str, timeout_secs: u32) -> Result<()> {
        let entry = match self.get(namespace, id) {
            Ok(e) => e,
            Err(_) => return Ok(()),
        };
        match self
            .call(&entry, |s| async move { s.stop(id, timeout_secs).await })
            .await
        {
            Err(e) if !(e.is_not_found() || e.is_unreachable()) => Err(e),
            _ => Ok(()),
        }
    }

    /// Blocks until the sandbox exits. The sandbox of a shim that died has exited, and what the
    /// shim left is cleaned at once (its `delete`, as containerd does for shims it started):
    /// its containers must not run on until the pod is removed.
    pub async fn wait(&self, namespace: &str, id: &str) -> Result<Exit> {
        let entry = self.get(namespace, id)?;
        loop {
            match self.call(&entry, |s| async move { s.wait(id).await }).await {
                Ok(exit) => return Ok(exit),
                Err(e) if e.is_unreachable() => {
                    let shim = entry.record().shim;
                    if !launch::is_running(&shim) {
                        let _lifecycle = entry.lifecycle.lock().await;
                        self.launcher.delete(&shim, id).await;
                        return Ok(Exit {
                            status: DEAD_SHIM_EXIT,
                            at: self.note_exit(&entry).await,
                        });
                    }
                    tokio::time::sleep(WAIT_RETRY).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// When the sandbox of a dead shim was first found gone (noted once, durably, and only
    /// while the sandbox is there: a removed sandbox's record is not written back). Called with
    /// the lifecycle lock held.
    async fn note_exit(&self, entry: &Arc<Entry>) -> Timestamp {
        let mut r = entry.record();
        if let Some(t) = r.exited_at {
            return t;
        }
        let t = Timestamp::now();
        if !self.is_current(&(r.namespace.clone(), r.sandbox_id.clone()), entry) {
            return t;
        }
        r.exited_at = Some(t);
        let saved = r.clone();
        if let Err(e) = self.store.off_thread(move |s| s.put_sandbox(&saved)).await {
            warn!("recording its exit: {e}");
        }
        entry.set_record(r);
        t
    }

    pub async fn status(&self, namespace: &str, id: &str, verbose: bool) -> Result<Status> {
        let entry = self.get(namespace, id)?;
        let record = entry.record();
        let address = task_address(&record.shim.address);
        let mut status = match self
            .call(&entry, |s| async move { s.status(id, verbose).await })
            .await
        {
            Ok(st) => Status {
                // CRI attaches containers to the id echoed here.
                sandbox_id: id.to_string(),
                pid: st.pid,
                state: st.state,
                info: st.info,
                created_at: st.created_at.or(Some(record.created_at)),
                exited_at: st.exited_at,
                address,
                version: TASK_API_VERSION,
            },
            // The shim is gone, or (a Create still under way) does not serve the sandbox yet.
            Err(e) if e.is_unreachable() || e.is_not_found() => {
                let gone = record.state != State::Creating && !launch::is_running(&record.shim);
                let exited_at = match gone {
                    true => {
                        let _lifecycle = entry.lifecycle.lock().await;
                        Some(self.note_exit(&entry).await)
                    }
                    false => None,
                };
                Status {
                    sandbox_id: id.to_string(),
                    pid: record.pid,
                    state: STATE_NOTREADY.to_string(),
                    info: HashMap::new(),
                    created_at: Some(record.created_at),
                    exited_at,
                    address,
                    version: TASK_API_VERSION,
                }
            }
            Err(e) => return Err(e),
        };
        if let (true, Some(cri)) = (verbose, &entry.cri) {
            cri.add_to(&mut status.info);
        }
        Ok(status)
    }

    /// containerd 2.4 lists every pod's stats through here and fails the whole list on any
    /// error but NotFound and Unavailable (which skip the pod): a sandbox that is not running,
    /// or whose stats cannot be read, answers Unavailable.
    pub async fn metrics(&self, namespace: &str, id: &str) -> Result<Metric> {
        let entry = self.get(namespace, id)?;
        if entry.record().state != State::Started {
            return Err(Error::Unavailable(format!("sandbox {id} is not started")));
        }
        match self
            .call(&entry, |s| async move { s.metrics(id).await })
            .await
        {
            Err(e) if !(e.is_not_found() || e.is_unreachable()) => {
                if e.code() != tonic::Code::FailedPrecondition {
                    warn!("metrics: {e}");
                }
                Err(Error::Unavailable(e.to_string()))
            }
            r => r,
        }
    }

    /// In-place pod resize: the pod's shim sets its cgroup to `resources`. Only a started pod
    /// has a cgroup its shim can find.
    pub async fn update(&self, namespace: &str, id: &str, resources: RawAny) -> Result<()> {
        let entry = self.get(namespace, id)?;
        if entry.record().state != State::Started {
            return Err(Error::FailedPrecondition(format!(
                "sandbox {id} is not started"
            )));
        }
        self.call(&entry, |s| {
            let resources = resources.clone();
            async move { s.update(id, resources).await }
        })
        .await
    }

    /// Removes the sandbox: its shim leaves, its bundle and record go.
    pub async fn shutdown(&self, namespace: &str, id: &str) -> Result<()> {
        let entry = self.get(namespace, id)?;
        let _lifecycle = entry.lifecycle.lock().await;
        let key = (namespace.to_string(), id.to_string());
        // A concurrent Shutdown got here first.
        if !self.is_current(&key, &entry) {
            return Err(Error::NotFound(format!("sandbox {id} not found")));
        }
        self.teardown(&entry).await?;
        self.entries().remove(&key);
        Ok(())
    }

    /// ShutdownSandbox and a bounded wait for the shim to leave; a shim that died, failed or
    /// would not leave gets its `delete` run (killed first if needed). Then the bundle and the
    /// record go, in that order: a record never outlives what it names unnoticed.
    async fn teardown(&self, entry: &Entry) -> Result<()> {
        let record = entry.record();
        let id = record.sandbox_id.as_str();
        let shim = &record.shim;
        let answered = self
            .call(entry, |s| async move { s.shutdown(id).await })
            .await;
        // The shim leaves once its callers have hung up: this one too.
        entry.forget_connection();
        let clean = match answered {
            Ok(()) => launch::wait_gone(shim, SHUTDOWN_WAIT).await,
            Err(e) => {
                if !e.is_unreachable() {
                    warn!("shutdown: {e}");
                }
                false
            }
        };
        if !clean {
            if launch::is_running(shim) {
                launch::kill(shim);
                launch::wait_gone(shim, SHUTDOWN_WAIT).await;
            }
            self.launcher.delete(shim, id).await;
        }
        crash::at(crash::TEARDOWN_SHIM_GONE);
        self.launcher.remove_leftovers(shim)?;
        let (namespace, sandbox_id) = (record.namespace.clone(), id.to_string());
        self.store
            .off_thread(move |s| s.remove_sandbox(&namespace, &sandbox_id))
            .await?;
        info!("shim {} gone, record removed", shim.id);
        Ok(())
    }
}

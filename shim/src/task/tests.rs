//! The task service driven through the `Task` trait, as containerd calls it, with a scripted
//! OCI runtime: the bad-input paths must answer with the right code and leave nothing behind.
//! The scripted runtime and exits here serve lifecycle_tests.rs too.

use std::{
    collections::HashMap,
    path::Path,
    sync::{
        atomic::{AtomicU32, Ordering},
        Arc, Mutex,
    },
    time::SystemTime,
};

use async_trait::async_trait;
use containerd_shim::{api::*, ExitSignal, Task};
use containerd_shim_protos::ttrpc::{self, Code};
use tokio::sync::{mpsc, oneshot, Semaphore};

use super::TaskService;
use crate::{
    config::Config,
    error::{Error, Result},
    events::{Event, Events},
    pod::Pod,
    reaper::{Exit, Exits},
    runtime::{CheckpointOpts, CreateOpts, ExecOpts, OciRuntime},
};

/// Records calls; `create` fails with the runtime's own message when told to.
#[derive(Default)]
pub(super) struct ScriptedRuntime {
    pub fail_create: Option<String>,
    /// The next pid `create` and `exec` hand out; without one they fail "not scripted". Pids
    /// above the kernel's limit (2^22), so that no /proc entry answers for them.
    pub next_pid: Option<AtomicU32>,
    /// When set, `start` and `exec` wait for a permit: a Start in flight.
    pub start_gate: Option<Semaphore>,
    /// When set, `create` waits for a permit: a Create in flight.
    pub create_gate: Option<Semaphore>,
    /// The stdio an exec was given, kept open as a grandchild of the process would.
    pub exec_stdio: Mutex<Vec<crate::stdio::ChildStdio>>,
    /// The pid the next exec gets, in place of `next_pid`.
    pub exec_pid: Mutex<Option<u32>>,
    /// What `ps` lists.
    pub ps: Mutex<Vec<u32>>,
    /// When set, `ps` fails with this message.
    pub fail_ps: Option<String>,
    /// `ps` says it does not know the container.
    pub ps_unknown: bool,
    pub calls: Mutex<Vec<String>>,
}

impl ScriptedRuntime {
    /// A runtime whose creates and execs succeed.
    pub fn working() -> ScriptedRuntime {
        ScriptedRuntime {
            next_pid: Some(AtomicU32::new(5_000_000)),
            ..Default::default()
        }
    }
    fn record(&self, call: String) {
        self.calls.lock().unwrap().push(call);
    }
    pub fn calls(&self) -> Vec<String> {
        self.calls.lock().unwrap().clone()
    }
    fn pid(&self) -> Result<u32> {
        match &self.next_pid {
            Some(n) => Ok(n.fetch_add(1, Ordering::SeqCst)),
            None => Err(Error::Other("not scripted".into())),
        }
    }
}

/// Waits for a permit of `gate`, if there is one.
async fn pass(gate: &Option<Semaphore>) {
    if let Some(g) = gate {
        g.acquire().await.unwrap().forget();
    }
}

/// The runtime's own failure of `command`, as `RuncCli` reports it.
fn runtime_error(command: &'static str, message: &str) -> Error {
    Error::Runtime {
        binary: "runc".into(),
        command,
        message: message.into(),
    }
}

/// Exits the test delivers itself, in place of the reaper.
#[derive(Default)]
pub(super) struct ScriptedExits {
    waiting: Mutex<HashMap<i32, oneshot::Sender<Exit>>>,
    /// Exits that came before the shim subscribed (the reaper keeps those too).
    early: Mutex<HashMap<i32, Exit>>,
}

impl Exits for ScriptedExits {
    fn subscribe(&self, pid: i32) -> oneshot::Receiver<Exit> {
        let (tx, rx) = oneshot::channel();
        match self.early.lock().unwrap().remove(&pid) {
            Some(exit) => {
                let _ = tx.send(exit);
            }
            None => {
                self.waiting.lock().unwrap().insert(pid, tx);
            }
        }
        rx
    }
}

impl ScriptedExits {
    /// `pid` exits before the shim subscribed to it: before its start even returned.
    pub fn exit_early(&self, pid: u32, status: u32) {
        self.early.lock().unwrap().insert(
            pid as i32,
            Exit {
                status,
                at: SystemTime::now(),
            },
        );
    }

    /// `pid` exits with `status`; panics if the shim never subscribed to it.
    pub fn exit(&self, pid: u32, status: u32) {
        let tx = self.waiting.lock().unwrap().remove(&(pid as i32));
        let tx = tx.unwrap_or_else(|| panic!("nobody waits on pid {pid}"));
        let _ = tx.send(Exit {
            status,
            at: SystemTime::now(),
        });
    }
}

#[async_trait]
impl OciRuntime for ScriptedRuntime {
    async fn create(&self, opts: CreateOpts<'_>) -> Result<u32> {
        self.record(format!("create {}", opts.id));
        pass(&self.create_gate).await;
        match &self.fail_create {
            Some(msg) => Err(runtime_error("create", msg)),
            None => self.pid(),
        }
    }
    async fn start(&self, id: &str) -> Result<()> {
        self.record(format!("start {id}"));
        pass(&self.start_gate).await;
        Ok(())
    }
    async fn exec(&self, opts: ExecOpts<'_>) -> Result<u32> {
        self.record(format!("exec {}", opts.id));
        pass(&self.start_gate).await;
        self.exec_stdio.lock().unwrap().push(opts.stdio);
        match self.exec_pid.lock().unwrap().take() {
            Some(pid) => Ok(pid),
            None => self.pid(),
        }
    }
    async fn kill(&self, id: &str, signal: u32, all: bool) -> Result<()> {
        self.record(format!("kill {id} {signal} {all}"));
        Ok(())
    }
    async fn delete(&self, id: &str, force: bool) -> Result<()> {
        self.record(format!("delete {id} {force}"));
        Ok(())
    }
    async fn pause(&self, id: &str) -> Result<()> {
        self.record(format!("pause {id}"));
        Ok(())
    }
    async fn resume(&self, id: &str) -> Result<()> {
        self.record(format!("resume {id}"));
        Ok(())
    }
    async fn update(&self, id: &str, _resources: &[u8]) -> Result<()> {
        self.record(format!("update {id}"));
        Ok(())
    }
    async fn ps(&self, id: &str) -> Result<Vec<u32>> {
        self.record(format!("ps {id}"));
        if self.ps_unknown {
            return Err(Error::NotFound(format!("container {id} does not exist")));
        }
        match &self.fail_ps {
            Some(msg) => Err(runtime_error("ps", msg)),
            None => Ok(self.ps.lock().unwrap().clone()),
        }
    }
    async fn checkpoint(&self, opts: CheckpointOpts<'_>) -> Result<()> {
        self.record(format!(
            "checkpoint {} {} {}",
            opts.id,
            opts.image_path.display(),
            opts.work_path.file_name().unwrap().to_string_lossy()
        ));
        std::fs::write(opts.work_path.join("dump.log"), "criu said no").unwrap();
        Err(Error::FailedPrecondition("checkpoint needs CRIU".into()))
    }
}

fn service(runtime: Arc<ScriptedRuntime>) -> (TaskService, Arc<Pod>) {
    let (svc, pod, _) = scripted(runtime, Arc::default());
    (svc, pod)
}

/// A task service on a scripted runtime and scripted exits, with its event queue.
pub(super) fn scripted(
    runtime: Arc<ScriptedRuntime>,
    exits: Arc<ScriptedExits>,
) -> (TaskService, Arc<Pod>, mpsc::Receiver<Event>) {
    let (events, rx) = Events::channel();
    let pod = Arc::new(Pod::new(
        "test".into(),
        Config::default(),
        runtime,
        exits,
        events,
        Arc::new(ExitSignal::default()),
    ));
    (TaskService::new(pod.clone()), pod, rx)
}

pub(super) fn ctx() -> containerd_shim::TtrpcContext {
    containerd_shim::TtrpcContext {
        mh: ttrpc::MessageHeader::default(),
        metadata: Default::default(),
        timeout_nano: 0,
        connection_data: Default::default(),
    }
}

pub(super) fn code<T: std::fmt::Debug>(r: ttrpc::Result<T>) -> (Code, String) {
    match r {
        Err(ttrpc::Error::RpcStatus(s)) => (s.code(), s.message.clone()),
        other => panic!("expected an rpc status, got {other:?}"),
    }
}

pub(super) fn bundle_with(dir: &Path, spec: &str, rootfs: bool) -> String {
    std::fs::write(dir.join("config.json"), spec).unwrap();
    if rootfs {
        std::fs::create_dir_all(dir.join("rootfs")).unwrap();
    }
    dir.display().to_string()
}

pub(super) const SPEC: &str = r#"{"ociVersion":"1.0.2","root":{"path":"rootfs"},"process":{"cwd":"/","args":["true"],"user":{"uid":0,"gid":0}}}"#;

pub(super) fn create_req(id: &str, bundle: String) -> CreateTaskRequest {
    CreateTaskRequest {
        id: id.into(),
        bundle,
        ..Default::default()
    }
}

#[tokio::test(flavor = "current_thread")]
async fn unknown_container_is_not_found_everywhere() {
    let (svc, _) = service(Arc::default());
    let (c, m) = code(
        svc.state(
            &ctx(),
            StateRequest {
                id: "nope".into(),
                ..Default::default()
            },
        )
        .await,
    );
    assert_eq!(c, Code::NOT_FOUND);
    assert!(m.contains("nope"), "{m}");
    let kill = KillRequest {
        id: "nope".into(),
        signal: 9,
        ..Default::default()
    };
    assert_eq!(code(svc.kill(&ctx(), kill).await).0, Code::NOT_FOUND);
    let del = DeleteRequest {
        id: "nope".into(),
        ..Default::default()
    };
    assert_eq!(code(svc.delete(&ctx(), del).await).0, Code::NOT_FOUND);
    let wait = WaitRequest {
        id: "nope".into(),
        ..Default::default()
    };
    assert_eq!(code(svc.wait(&ctx(), wait).await).0, Code::NOT_FOUND);
}

#[tokio::test(flavor = "current_thread")]
async fn invalid_ids_and_specs_are_rejected_before_the_runtime_runs() {
    let runtime = Arc::new(ScriptedRuntime::default());
    let (svc, pod) = service(runtime.clone());
    let dir = tempfile::tempdir().unwrap();

    for bad in ["../escape", "a..b", "c1-"] {
        let bundle = bundle_with(dir.path(), SPEC, true);
        let (c, m) = code(svc.create(&ctx(), create_req(bad, bundle)).await);
        assert_eq!(c, Code::INVALID_ARGUMENT, "{bad}: {m}");
        assert!(m.contains("invalid container id"), "{m}");
    }

    let bundle = bundle_with(dir.path(), "{not json", true);
    let (c, m) = code(svc.create(&ctx(), create_req("c1", bundle)).await);
    assert_eq!(c, Code::INVALID_ARGUMENT);
    assert!(m.contains("invalid OCI spec"), "{m}");

    let empty = tempfile::tempdir().unwrap();
    let (c, m) = code(
        svc.create(&ctx(), create_req("c1", empty.path().display().to_string()))
            .await,
    );
    assert_eq!(c, Code::NOT_FOUND);
    assert!(m.contains("config.json"), "{m}");

    let norootfs = tempfile::tempdir().unwrap();
    let bundle = bundle_with(norootfs.path(), SPEC, false);
    let (c, m) = code(svc.create(&ctx(), create_req("c1", bundle)).await);
    assert_eq!(c, Code::NOT_FOUND, "{m}");
    assert!(m.contains("rootfs"), "{m}");

    assert!(runtime.calls().is_empty(), "{:?}", runtime.calls());
    assert!(pod.containers().is_empty());
}

#[tokio::test(flavor = "current_thread")]
async fn failing_runtime_names_the_cause_and_frees_the_id() {
    let runtime = Arc::new(ScriptedRuntime {
        fail_create: Some("exec: \"nope\": executable file not found in $PATH".into()),
        ..Default::default()
    });
    let (svc, pod) = service(runtime.clone());
    let dir = tempfile::tempdir().unwrap();
    let bundle = bundle_with(dir.path(), SPEC, true);
    let before = std::fs::read_dir(dir.path()).unwrap().count();

    let (c, m) = code(svc.create(&ctx(), create_req("c1", bundle.clone())).await);
    assert_eq!(c, Code::UNKNOWN);
    assert!(m.contains("executable file not found"), "{m}");
    // The runtime is asked to forget whatever it created, and the id is free again.
    assert_eq!(runtime.calls(), ["create c1", "delete c1 true"]);
    assert!(pod.containers().is_empty());
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), before);
    let (c, _) = code(svc.create(&ctx(), create_req("c1", bundle)).await);
    assert_eq!(c, Code::UNKNOWN);
    assert_eq!(runtime.calls().len(), 4);
}

#[tokio::test(flavor = "current_thread")]
async fn checkpoint_restore_is_unimplemented() {
    let (svc, _) = service(Arc::default());
    let dir = tempfile::tempdir().unwrap();
    let mut req = create_req("c1", bundle_with(dir.path(), SPEC, true));
    req.checkpoint = "/some/image".into();
    assert_eq!(code(svc.create(&ctx(), req).await).0, Code::UNIMPLEMENTED);
}

#[tokio::test(flavor = "current_thread")]
async fn connect_answers_for_unknown_ids_and_shutdown_waits_for_containers() {
    let (svc, _) = service(Arc::default());
    let resp = svc
        .connect(
            &ctx(),
            ConnectRequest {
                id: "sandbox".into(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(resp.shim_pid, std::process::id());
    assert_eq!(resp.task_pid, 0);
}

/// containerd 2.3.4 asks for the pause-less sandbox's own id at restart and takes NotFound or an
/// empty list for a leaked shim: while the holder runs, the id answers with its pid.
#[tokio::test(flavor = "current_thread")]
async fn sandbox_id_answers_pids_with_its_process() {
    let (svc, pod) = service(Arc::default());
    let req = |id: &str| PidsRequest {
        id: id.into(),
        ..Default::default()
    };
    assert_eq!(code(svc.pids(&ctx(), req("sb1")).await).0, Code::NOT_FOUND);
    pod.set_sandbox_process(Some(("sb1".into(), 4242)));
    let got: Vec<u32> = svc
        .pids(&ctx(), req("sb1"))
        .await
        .unwrap()
        .processes
        .iter()
        .map(|p| p.pid)
        .collect();
    assert_eq!(got, [4242]);
    assert_eq!(
        code(svc.pids(&ctx(), req("other")).await).0,
        Code::NOT_FOUND
    );
    pod.set_sandbox_process(None);
    assert_eq!(code(svc.pids(&ctx(), req("sb1")).await).0, Code::NOT_FOUND);
}

/// containerd 2.4 sends Shutdown after every task deletion (containerd#13958), also while the
/// pod has other containers or its sandbox: the shim leaves only once neither holds it.
#[tokio::test(flavor = "current_thread")]
async fn shutdown_leaves_only_when_no_sandbox_or_container_holds_the_shim() {
    let (events, _rx) = Events::channel();
    let exit = Arc::new(ExitSignal::default());
    let pod = Arc::new(Pod::new(
        "test".into(),
        Config::default(),
        Arc::new(ScriptedRuntime::default()),
        Arc::new(ScriptedExits::default()),
        events,
        exit.clone(),
    ));
    let svc = TaskService::new(pod.clone());
    let exited = || async {
        tokio::time::timeout(std::time::Duration::from_millis(50), exit.wait())
            .await
            .is_ok()
    };
    pod.hold_for_sandbox(true);
    let reservation = pod.reserve("app").unwrap();
    svc.shutdown(&ctx(), ShutdownRequest::default())
        .await
        .unwrap();
    assert!(
        !exited().await,
        "left while its sandbox and a container held it"
    );
    pod.hold_for_sandbox(false);
    svc.shutdown(&ctx(), ShutdownRequest::default())
        .await
        .unwrap();
    assert!(!exited().await, "left while a container held it");
    drop(reservation);
    svc.shutdown(&ctx(), ShutdownRequest::default())
        .await
        .unwrap();
    assert!(exited().await, "stayed with nothing holding it");
}

//! Whole lifecycles through the `Task` trait on a scripted OCI runtime and scripted exits (no
//! root, no runc, no child process): create → start → exec → exit → wait → delete, and the
//! races the process state machine settles (two Starts, an exit during Start, a Delete of a
//! process that never started).

use std::sync::Arc;

use containerd_shim::{api::*, Task};
use containerd_shim_protos::{
    protobuf::{well_known_types::any::Any, EnumOrUnknown},
    topics,
    ttrpc::Code,
};
use tokio::sync::{mpsc, Semaphore};

use super::{
    tests::{bundle_with, code, create_req, ctx, scripted, ScriptedExits, ScriptedRuntime, SPEC},
    TaskService,
};
use crate::events::Event;

struct Harness {
    svc: Arc<TaskService>,
    runtime: Arc<ScriptedRuntime>,
    exits: Arc<ScriptedExits>,
    events: mpsc::Receiver<Event>,
    pod: Arc<crate::pod::Pod>,
    _dir: tempfile::TempDir,
    bundle: String,
}

impl Harness {
    fn new(runtime: ScriptedRuntime) -> Harness {
        let runtime = Arc::new(runtime);
        let exits = Arc::new(ScriptedExits::default());
        let (svc, pod, events) = scripted(runtime.clone(), exits.clone());
        let dir = tempfile::tempdir().unwrap();
        let bundle = bundle_with(dir.path(), SPEC, true);
        Harness {
            svc: Arc::new(svc),
            runtime,
            exits,
            events,
            pod,
            _dir: dir,
            bundle,
        }
    }

    async fn create(&self, id: &str) -> u32 {
        let req = create_req(id, self.bundle.clone());
        self.svc.create(&ctx(), req).await.unwrap().pid
    }

    async fn start(&self, id: &str, exec_id: &str) -> ttrpc_result::R<StartResponse> {
        let req = StartRequest {
            id: id.into(),
            exec_id: exec_id.into(),
            ..Default::default()
        };
        self.svc.start(&ctx(), req).await
    }

    async fn status(&self, id: &str, exec_id: &str) -> (Status, u32) {
        let req = StateRequest {
            id: id.into(),
            exec_id: exec_id.into(),
            ..Default::default()
        };
        let st = self.svc.state(&ctx(), req).await.unwrap();
        (st.status.enum_value().unwrap(), st.exit_status)
    }

    async fn delete(&self, id: &str, exec_id: &str) -> ttrpc_result::R<DeleteResponse> {
        let req = DeleteRequest {
            id: id.into(),
            exec_id: exec_id.into(),
            ..Default::default()
        };
        self.svc.delete(&ctx(), req).await
    }

    async fn kill(&self, id: &str, exec_id: &str, all: bool) -> ttrpc_result::R<Empty> {
        let req = KillRequest {
            id: id.into(),
            exec_id: exec_id.into(),
            signal: 15,
            all,
            ..Default::default()
        };
        self.svc.kill(&ctx(), req).await
    }

    async fn wait(&self, id: &str, exec_id: &str) -> u32 {
        let req = WaitRequest {
            id: id.into(),
            exec_id: exec_id.into(),
            ..Default::default()
        };
        self.svc.wait(&ctx(), req).await.unwrap().exit_status
    }

    /// Wait on a process from another task, to see whether it answered yet.
    fn spawn_wait(&self, id: &str, exec_id: &str) -> tokio::task::JoinHandle<u32> {
        let svc = self.svc.clone();
        let req = WaitRequest {
            id: id.into(),
            exec_id: exec_id.into(),
            ..Default::default()
        };
        tokio::spawn(async move { svc.wait(&ctx(), req).await.unwrap().exit_status })
    }

    async fn exec(&self, id: &str, exec_id: &str) -> ttrpc_result::R<Empty> {
        self.exec_with_stdout(id, exec_id, "").await
    }

    async fn exec_with_stdout(
        &self,
        id: &str,
        exec_id: &str,
        stdout: &str,
    ) -> ttrpc_result::R<Empty> {
        let req = ExecProcessRequest {
            id: id.into(),
            exec_id: exec_id.into(),
            stdout: stdout.into(),
            spec: Some(Any {
                type_url: "types.containerd.io/opencontainers/runtime-spec/1/Process".into(),
                value: br#"{"args":["true"],"cwd":"/"}"#.to_vec(),
                ..Default::default()
            })
            .into(),
            ..Default::default()
        };
        self.svc.exec(&ctx(), req).await
    }

    /// The pids `Pids` answers for container `id`.
    async fn pids(&self, id: &str) -> ttrpc_result::R<Vec<u32>> {
        let req = PidsRequest {
            id: id.into(),
            ..Default::default()
        };
        let r = self.svc.pids(&ctx(), req).await?;
        Ok(r.processes.iter().map(|p| p.pid).collect())
    }

    /// The topics of the events queued so far.
    fn topics(&mut self) -> Vec<&'static str> {
        let mut t = Vec::new();
        while let Ok(e) = self.events.try_recv() {
            t.push(e.topic);
        }
        t
    }
}

/// `ttrpc::Result`, named once.
mod ttrpc_result {
    pub type R<T> = containerd_shim_protos::ttrpc::Result<T>;
}

fn refused<T: std::fmt::Debug>(r: ttrpc_result::R<T>, code_want: Code, words: &str) {
    let (c, m) = code(r);
    assert_eq!(c, code_want, "{m}");
    assert!(m.contains(words), "{m:?} does not say {words:?}");
}

/// Lets spawned tasks run up to their next wait.
async fn settle() {
    for _ in 0..20 {
        tokio::task::yield_now().await;
    }
}

#[tokio::test(flavor = "current_thread")]
async fn init_from_create_to_delete() {
    let mut h = Harness::new(ScriptedRuntime::working());
    let pid = h.create("c1").await;
    assert_eq!(h.status("c1", "").await, (Status::CREATED, 0));

    assert_eq!(h.start("c1", "").await.unwrap().pid, pid);
    assert_eq!(h.status("c1", "").await, (Status::RUNNING, 0));
    refused(
        h.start("c1", "").await,
        Code::FAILED_PRECONDITION,
        "is running, not created",
    );
    refused(
        h.delete("c1", "").await,
        Code::FAILED_PRECONDITION,
        "kill it before deleting",
    );

    let svc = h.svc.clone();
    let waiter = tokio::spawn(async move {
        let req = WaitRequest {
            id: "c1".into(),
            ..Default::default()
        };
        svc.wait(&ctx(), req).await.unwrap().exit_status
    });
    settle().await;
    assert!(!waiter.is_finished(), "Wait returned before the exit");
    h.exits.exit(pid, 3);
    assert_eq!(waiter.await.unwrap(), 3);
    assert_eq!(h.status("c1", "").await, (Status::STOPPED, 3));
    // Sharing the pod's pid namespace, init's exit takes the container's other processes.
    assert!(h.runtime.calls().contains(&"kill c1 9 true".to_string()));
    refused(
        h.kill("c1", "", false).await,
        Code::NOT_FOUND,
        "already finished",
    );
    h.kill("c1", "", true).await.unwrap();

    let deleted = h.delete("c1", "").await.unwrap();
    assert_eq!((deleted.pid, deleted.exit_status), (pid, 3));
    assert!(h.pod.containers().is_empty());
    refused(h.delete("c1", "").await, Code::NOT_FOUND, "c1");
    assert_eq!(
        h.topics(),
        [
            topics::TASK_CREATE_EVENT_TOPIC,
            topics::TASK_START_EVENT_TOPIC,
            topics::TASK_EXIT_EVENT_TOPIC,
            topics::TASK_DELETE_EVENT_TOPIC,
        ]
    );
}

#[tokio::test(flavor = "current_thread")]
async fn two_starts_at_once_one_runs_and_the_other_is_refused() {
    let h = Harness::new(ScriptedRuntime {
        start_gate: Some(Semaphore::new(0)),
        ..ScriptedRuntime::working()
    });
    h.create("c1").await;
    let svc = h.svc.clone();
    let first = tokio::spawn(async move {
        let req = StartRequest {
            id: "c1".into(),
            ..Default::default()
        };
        svc.start(&ctx(), req).await
    });
    settle().await;
    assert_eq!(
        h.status("c1", "").await.0,
        Status::CREATED,
        "starting reads as created"
    );
    refused(
        h.start("c1", "").await,
        Code::FAILED_PRECONDITION,
        "is starting",
    );
    refused(
        h.delete("c1", "").await,
        Code::FAILED_PRECONDITION,
        "is starting",
    );
    h.runtime.start_gate.as_ref().unwrap().add_permits(1);
    first.await.unwrap().unwrap();
    assert_eq!(h.status("c1", "").await.0, Status::RUNNING);
    let starts = h
        .runtime
        .calls()
        .iter()
        .filter(|c| c.starts_with("start"))
        .count();
    assert_eq!(starts, 1, "{:?}", h.runtime.calls());
}

/// The same for an exec: one `runc exec`, and no signal while it has no pid (pid 0 would be the
/// shim's own process group).
#[tokio::test(flavor = "current_thread")]
async fn two_starts_of_one_exec_run_it_once() {
    let h = Harness::new(ScriptedRuntime {
        start_gate: Some(Semaphore::new(1)),
        ..ScriptedRuntime::working()
    });
    h.create("c1").await;
    h.start("c1", "").await.unwrap();
    h.exec("c1", "e1").await.unwrap();
    let svc = h.svc.clone();
    let first = tokio::spawn(async move {
        let req = StartRequest {
            id: "c1".into(),
            exec_id: "e1".into(),
            ..Default::default()
        };
        svc.start(&ctx(), req).await
    });
    settle().await;
    refused(
        h.start("c1", "e1").await,
        Code::FAILED_PRECONDITION,
        "is starting",
    );
    refused(
        h.kill("c1", "e1", false).await,
        Code::NOT_FOUND,
        "has not been started",
    );
    h.runtime.start_gate.as_ref().unwrap().add_permits(1);
    first.await.unwrap().unwrap();
    let execs = h
        .runtime
        .calls()
        .iter()
        .filter(|c| c.starts_with("exec"))
        .count();
    assert_eq!(execs, 1, "{:?}", h.runtime.calls());
}

/// An init that exits while its `runc start` is in flight: the exit still wins (Stopped), and
/// containerd hears TaskStart before TaskExit, with Wait answering only after Start did, as
/// from runc's shim.
#[tokio::test(flavor = "current_thread")]
async fn an_exit_during_start_wins_and_is_reported_after_it() {
    let mut h = Harness::new(ScriptedRuntime {
        start_gate: Some(Semaphore::new(0)),
        ..ScriptedRuntime::working()
    });
    let pid = h.create("c1").await;
    let svc = h.svc.clone();
    let start = tokio::spawn(async move {
        let req = StartRequest {
            id: "c1".into(),
            ..Default::default()
        };
        svc.start(&ctx(), req).await
    });
    settle().await;
    h.exits.exit(pid, 1);
    let waiter = h.spawn_wait("c1", "");
    settle().await;
    assert!(!waiter.is_finished(), "Wait answered before Start did");
    h.runtime.start_gate.as_ref().unwrap().add_permits(1);
    start.await.unwrap().unwrap();
    assert_eq!(waiter.await.unwrap(), 1);
    assert_eq!(h.status("c1", "").await, (Status::STOPPED, 1));
    assert_eq!(
        h.topics()[1..],
        [
            topics::TASK_START_EVENT_TOPIC,
            topics::TASK_EXIT_EVENT_TOPIC
        ]
    );
    h.delete("c1", "").await.unwrap();
}

/// The same for an exec that exits before its `runc exec` returned: TaskExecStarted first.
#[tokio::test(flavor = "current_thread")]
async fn an_exec_exiting_during_its_start_is_reported_after_it() {
    let mut h = Harness::new(ScriptedRuntime::working());
    h.create("c1").await;
    h.start("c1", "").await.unwrap();
    h.exec("c1", "e1").await.unwrap();
    h.topics();
    *h.runtime.exec_pid.lock().unwrap() = Some(6_000_000);
    h.exits.exit_early(6_000_000, 7);
    assert_eq!(h.start("c1", "e1").await.unwrap().pid, 6_000_000);
    assert_eq!(h.wait("c1", "e1").await, 7);
    assert_eq!(
        h.topics(),
        [
            topics::TASK_EXEC_STARTED_EVENT_TOPIC,
            topics::TASK_EXIT_EVENT_TOPIC
        ]
    );
}

/// containerd hears init's exit after the exits of the execs it had (CRI deletes the task on
/// init's exit); once init was reaped no exec starts, and a paused container takes none.
#[tokio::test(flavor = "current_thread")]
async fn init_s_exit_is_reported_after_its_execs() {
    let mut h = Harness::new(ScriptedRuntime::working());
    let init = h.create("c1").await;
    h.start("c1", "").await.unwrap();
    h.exec("c1", "e1").await.unwrap();
    h.exec("c1", "e2").await.unwrap();
    let e1 = h.start("c1", "e1").await.unwrap().pid;
    h.topics();

    h.exits.exit(init, 137);
    let init_waiter = h.spawn_wait("c1", "");
    settle().await;
    assert!(
        !init_waiter.is_finished(),
        "init's exit reported while its exec runs"
    );
    assert!(h.topics().is_empty(), "no exit is reported yet");
    refused(
        h.start("c1", "e2").await,
        Code::FAILED_PRECONDITION,
        "init process is not running",
    );
    h.exits.exit(e1, 137);
    assert_eq!(init_waiter.await.unwrap(), 137);
    let events: Vec<_> = std::iter::from_fn(|| h.events.try_recv().ok()).collect();
    let exits: Vec<String> = events
        .iter()
        .filter(|e| e.topic == topics::TASK_EXIT_EVENT_TOPIC)
        .map(|e| {
            let exit: containerd_shim_protos::events::task::TaskExit =
                containerd_shim_protos::protobuf::Message::parse_from_bytes(&e.payload.value)
                    .unwrap();
            exit.id
        })
        .collect();
    assert_eq!(exits, ["e1", "c1"]);
    // e2 never started: nothing of it was waited for, and it can still be deleted.
    h.delete("c1", "e2").await.unwrap();
    h.delete("c1", "").await.unwrap();
}

#[tokio::test(flavor = "current_thread")]
async fn a_paused_container_takes_no_exec_and_is_thawed_when_its_init_exits() {
    let h = Harness::new(ScriptedRuntime::working());
    let init = h.create("c1").await;
    h.start("c1", "").await.unwrap();
    let pause = PauseRequest {
        id: "c1".into(),
        ..Default::default()
    };
    h.svc.pause(&ctx(), pause).await.unwrap();
    refused(
        h.exec("c1", "e1").await,
        Code::FAILED_PRECONDITION,
        "paused: resume it before exec",
    );
    h.exits.exit(init, 137);
    assert_eq!(h.wait("c1", "").await, 137);
    let calls = h.runtime.calls();
    assert!(calls.contains(&"resume c1".to_string()), "{calls:?}");
    h.delete("c1", "").await.unwrap();
}

/// `Pids` names each exec's process (`containerd.runc.v1.ProcessDetails`, as runc's shim does),
/// and `State` of an exec of a paused container says paused, under the exec's own id.
#[tokio::test(flavor = "current_thread")]
async fn pids_name_execs_and_an_exec_is_paused_with_its_container() {
    let h = Harness::new(ScriptedRuntime::working());
    let init = h.create("c1").await;
    h.start("c1", "").await.unwrap();
    h.exec("c1", "e1").await.unwrap();
    let e1 = h.start("c1", "e1").await.unwrap().pid;
    *h.runtime.ps.lock().unwrap() = vec![init, e1];
    let req = PidsRequest {
        id: "c1".into(),
        ..Default::default()
    };
    let listed = h.svc.pids(&ctx(), req).await.unwrap().processes;
    assert_eq!(listed.len(), 2);
    assert_eq!((listed[0].pid, listed[0].info.is_some()), (init, false));
    let info = listed[1].info.as_ref().unwrap();
    assert_eq!(info.type_url, "containerd.runc.v1.ProcessDetails");
    let details: containerd_shim_protos::shim::oci::ProcessDetails =
        containerd_shim_protos::protobuf::Message::parse_from_bytes(&info.value).unwrap();
    assert_eq!((listed[1].pid, details.exec_id.as_str()), (e1, "e1"));

    let pause = PauseRequest {
        id: "c1".into(),
        ..Default::default()
    };
    h.svc.pause(&ctx(), pause).await.unwrap();
    let req = StateRequest {
        id: "c1".into(),
        exec_id: "e1".into(),
        ..Default::default()
    };
    let st = h.svc.state(&ctx(), req).await.unwrap();
    assert_eq!(
        (st.id.as_str(), st.status.enum_value()),
        ("e1", Ok(Status::PAUSED))
    );
}

/// Update reaches the runtime for a container that has not stopped, and is refused after;
/// ResizePty of a process without a terminal does nothing and succeeds, as with runc's shim.
#[tokio::test(flavor = "current_thread")]
async fn update_until_stopped_and_resize_without_a_terminal() {
    let h = Harness::new(ScriptedRuntime::working());
    let init = h.create("c1").await;
    let update = || UpdateTaskRequest {
        id: "c1".into(),
        resources: Some(Any {
            type_url: "types.containerd.io/opencontainers/runtime-spec/1/LinuxResources".into(),
            value: br#"{"memory":{"limit":1048576}}"#.to_vec(),
            ..Default::default()
        })
        .into(),
        ..Default::default()
    };
    h.svc.update(&ctx(), update()).await.unwrap();
    h.start("c1", "").await.unwrap();
    h.svc.update(&ctx(), update()).await.unwrap();
    let not_json = UpdateTaskRequest {
        resources: Some(Any {
            value: b"memory".to_vec(),
            ..Default::default()
        })
        .into(),
        ..update()
    };
    refused(
        h.svc.update(&ctx(), not_json).await,
        Code::INVALID_ARGUMENT,
        "linux resources",
    );
    let resize = ResizePtyRequest {
        id: "c1".into(),
        width: 80,
        height: 24,
        ..Default::default()
    };
    h.svc.resize_pty(&ctx(), resize).await.unwrap();
    h.exits.exit(init, 0);
    h.wait("c1", "").await;
    refused(
        h.svc.update(&ctx(), update()).await,
        Code::FAILED_PRECONDITION,
        "is stopped",
    );
    let calls = h.runtime.calls();
    assert_eq!(
        calls.iter().filter(|c| c.starts_with("update c1")).count(),
        2,
        "{calls:?}"
    );
}

#[tokio::test(flavor = "current_thread")]
async fn a_never_started_init_is_deleted_with_its_exit() {
    let h = Harness::new(ScriptedRuntime::working());
    let pid = h.create("c1").await;
    let svc = h.svc.clone();
    let delete = tokio::spawn(async move {
        let req = DeleteRequest {
            id: "c1".into(),
            ..Default::default()
        };
        svc.delete(&ctx(), req).await
    });
    settle().await;
    // The forced delete killed it; its exit arrives after the process counts as deleted.
    assert!(h.runtime.calls().contains(&"delete c1 true".to_string()));
    h.exits.exit(pid, 137);
    let deleted = delete.await.unwrap().unwrap();
    assert_eq!((deleted.pid, deleted.exit_status), (pid, 137));
    assert!(h.pod.containers().is_empty());
}

#[tokio::test(flavor = "current_thread")]
async fn exec_from_add_to_delete() {
    let mut h = Harness::new(ScriptedRuntime::working());
    let init = h.create("c1").await;
    h.start("c1", "").await.unwrap();
    h.exec("c1", "e1").await.unwrap();
    refused(h.exec("c1", "e1").await, Code::ALREADY_EXISTS, "e1");
    assert_eq!(h.status("c1", "e1").await, (Status::CREATED, 0));
    // No pid yet: a signal must not reach pid 0 (the shim's own process group).
    refused(
        h.kill("c1", "e1", false).await,
        Code::NOT_FOUND,
        "has not been started",
    );

    let pid = h.start("c1", "e1").await.unwrap().pid;
    assert_ne!(pid, init);
    assert_eq!(h.status("c1", "e1").await, (Status::RUNNING, 0));
    refused(
        h.start("c1", "e1").await,
        Code::FAILED_PRECONDITION,
        "is running, not created",
    );
    refused(
        h.delete("c1", "e1").await,
        Code::FAILED_PRECONDITION,
        "process e1 of container c1",
    );
    h.exits.exit(pid, 0);
    assert_eq!(h.wait("c1", "e1").await, 0);
    assert_eq!(h.delete("c1", "e1").await.unwrap().pid, pid);
    refused(h.delete("c1", "e1").await, Code::NOT_FOUND, "e1");

    // Once init has stopped, no exec joins the container.
    h.exits.exit(init, 0);
    h.wait("c1", "").await;
    refused(
        h.exec("c1", "e2").await,
        Code::FAILED_PRECONDITION,
        "container c1 is not running",
    );
    assert_eq!(
        h.topics(),
        [
            topics::TASK_CREATE_EVENT_TOPIC,
            topics::TASK_START_EVENT_TOPIC,
            topics::TASK_EXEC_ADDED_EVENT_TOPIC,
            topics::TASK_EXEC_STARTED_EVENT_TOPIC,
            topics::TASK_EXIT_EVENT_TOPIC,
            topics::TASK_EXIT_EVENT_TOPIC,
        ]
    );
}

/// Between an exec's exit and its exit report (held up to 2 s while something still holds its
/// output open), its pid may already belong to another process: a Kill must not signal it.
#[tokio::test(flavor = "current_thread")]
async fn a_kill_after_an_exec_exited_signals_nothing() {
    let h = Harness::new(ScriptedRuntime::working());
    h.create("c1").await;
    h.start("c1", "").await.unwrap();
    let out = h._dir.path().join("e1-out");
    nix::unistd::mkfifo(&out, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    let reader = std::thread::spawn({
        let out = out.clone();
        move || std::io::Read::read_to_end(&mut std::fs::File::open(out).unwrap(), &mut Vec::new())
    });
    h.exec_with_stdout("c1", "e1", out.to_str().unwrap())
        .await
        .unwrap();
    // The exec's pid, exited and reaped, now belongs to another process: a live one of ours.
    let mut other = std::process::Command::new("sleep")
        .arg("10")
        .spawn()
        .unwrap();
    *h.runtime.exec_pid.lock().unwrap() = Some(other.id());
    let pid = h.start("c1", "e1").await.unwrap().pid;
    assert_eq!(pid, other.id());
    h.exits.exit(pid, 0);
    settle().await;
    assert_eq!(
        h.status("c1", "e1").await.0,
        Status::RUNNING,
        "exit not reported yet"
    );
    refused(
        h.kill("c1", "e1", false).await,
        Code::NOT_FOUND,
        "already finished",
    );
    assert!(
        other.try_wait().unwrap().is_none(),
        "a signal reached another process"
    );
    other.kill().unwrap();
    other.wait().unwrap();
    h.runtime.exec_stdio.lock().unwrap().clear();
    assert_eq!(h.wait("c1", "e1").await, 0);
    reader.join().unwrap().unwrap();
}

/// A container's execs are bounded: a client that adds execs and never deletes them gets
/// ResourceExhausted, not a shim that grows until the pod's memory limit kills it; one deleted
/// makes room again. An exec's process spec is bounded too.
#[tokio::test(flavor = "current_thread")]
async fn execs_are_bounded_in_number_and_size() {
    let h = Harness::new(ScriptedRuntime::working());
    h.create("c1").await;
    h.start("c1", "").await.unwrap();
    for i in 0..crate::container::MAX_EXECS {
        h.exec("c1", &format!("e{i}")).await.unwrap();
    }
    refused(
        h.exec("c1", "one-more").await,
        Code::RESOURCE_EXHAUSTED,
        "execs",
    );
    h.delete("c1", "e0").await.unwrap();
    h.exec("c1", "one-more").await.unwrap();

    let huge = format!(r#"{{"args":["true"],"env":["X={}"]}}"#, "x".repeat(2 << 20));
    let req = ExecProcessRequest {
        id: "c1".into(),
        exec_id: "huge".into(),
        spec: Some(Any {
            value: huge.into_bytes(),
            ..Default::default()
        })
        .into(),
        ..Default::default()
    };
    refused(
        h.svc.exec(&ctx(), req).await,
        Code::INVALID_ARGUMENT,
        "bytes",
    );
}

#[tokio::test(flavor = "current_thread")]
async fn pause_and_resume_only_where_they_apply() {
    let h = Harness::new(ScriptedRuntime::working());
    h.create("c1").await;
    let pause = || PauseRequest {
        id: "c1".into(),
        ..Default::default()
    };
    let resume = || ResumeRequest {
        id: "c1".into(),
        ..Default::default()
    };
    refused(
        h.svc.pause(&ctx(), pause()).await,
        Code::FAILED_PRECONDITION,
        "is created, not running",
    );
    h.start("c1", "").await.unwrap();
    refused(
        h.svc.resume(&ctx(), resume()).await,
        Code::FAILED_PRECONDITION,
        "is running, not paused",
    );
    h.svc.pause(&ctx(), pause()).await.unwrap();
    assert_eq!(h.status("c1", "").await.0, Status::PAUSED);
    refused(
        h.svc.pause(&ctx(), pause()).await,
        Code::FAILED_PRECONDITION,
        "is paused, not running",
    );
    refused(
        h.delete("c1", "").await,
        Code::FAILED_PRECONDITION,
        "is paused",
    );
    h.svc.resume(&ctx(), resume()).await.unwrap();
    assert_eq!(h.status("c1", "").await.0, Status::RUNNING);
    let calls = h.runtime.calls();
    assert_eq!(
        calls
            .iter()
            .filter(|c| c.starts_with("pause") || c.starts_with("resume"))
            .count(),
        2,
        "{calls:?}"
    );
}

/// Checkpoint dumps a running or paused container (containerd pauses it around the call), and
/// a failed dump leaves CRIU's log beside the bundle and no work directory.
#[tokio::test(flavor = "current_thread")]
async fn checkpoint_only_of_a_live_container_and_a_failed_one_keeps_criu_s_log() {
    let h = Harness::new(ScriptedRuntime::working());
    h.create("c1").await;
    let checkpoint = |path: &str| CheckpointTaskRequest {
        id: "c1".into(),
        path: path.into(),
        ..Default::default()
    };
    refused(
        h.svc.checkpoint(&ctx(), checkpoint("/img")).await,
        Code::FAILED_PRECONDITION,
        "is created: only a running or paused container can be checkpointed",
    );
    h.start("c1", "").await.unwrap();
    refused(
        h.svc.checkpoint(&ctx(), checkpoint("")).await,
        Code::INVALID_ARGUMENT,
        "without an image path",
    );
    refused(
        h.svc.checkpoint(&ctx(), checkpoint("/img")).await,
        Code::FAILED_PRECONDITION,
        "needs CRIU",
    );
    let bundle = std::path::Path::new(&h.bundle);
    let log = std::fs::read_to_string(bundle.join("criu-dump.log")).unwrap();
    assert_eq!(log, "criu said no");
    assert!(!bundle.join("criu-work").exists());
    assert!(h
        .runtime
        .calls()
        .contains(&"checkpoint c1 /img criu-work".to_string()));
    assert_eq!(h.status("c1", "").await.0, Status::RUNNING);
}

#[test]
fn the_status_containerd_sees() {
    use crate::process::ProcessStatus::*;
    let seen = |s: crate::process::ProcessStatus| EnumOrUnknown::new(Status::from(s));
    assert_eq!(seen(Starting), EnumOrUnknown::new(Status::CREATED));
    assert_eq!(seen(Deleted), EnumOrUnknown::new(Status::STOPPED));
}

/// containerd's loader, back after a restart, deletes a task whose shim answers `Pids` with an
/// empty list as a leaked shim (containerd#6860), losing its exit and its kept output. A
/// stopped container that was not deleted answers with its init's pid (runc's `ps` lists
/// nothing once init exited); once deleted, NotFound.
#[tokio::test(flavor = "current_thread")]
async fn a_stopped_container_answers_pids_until_deleted() {
    let h = Harness::new(ScriptedRuntime::working());
    let pid = h.create("c1").await;
    h.start("c1", "").await.unwrap();
    h.exits.exit(pid, 3);
    assert_eq!(h.wait("c1", "").await, 3);
    assert_eq!(h.pids("c1").await.unwrap(), [pid]);
    h.delete("c1", "").await.unwrap();
    refused(h.pids("c1").await, Code::NOT_FOUND, "c1");
}

/// An init reaped while its output is still being handed over (containerd away, or slow to
/// read) is not Stopped yet, and runc's `ps` lists nothing: containerd, back, must still get
/// its pid, or it takes the shim for a leaked one and deletes the task with its exit.
#[tokio::test(flavor = "current_thread")]
async fn a_reaped_init_not_yet_stopped_answers_pids_with_its_pid() {
    let h = Harness::new(ScriptedRuntime::working());
    let pid = h.create("c1").await;
    h.start("c1", "").await.unwrap();
    let init = &h.pod.container("c1").unwrap().init;
    init.set_reaped();
    assert_eq!(init.status(), crate::process::ProcessStatus::Running);
    assert_eq!(h.pids("c1").await.unwrap(), [pid]);
}

/// containerd's loader deletes the task of a shim whose `Pids` fails or lists nothing, whatever
/// the error (2.1's `len(pInfo) == 0 || NotFound`). The OCI runtime's `ps` failing or listing
/// nothing (runc's state or cgroup read under load) must not cost a live container its task:
/// the shim answers with the init it has not reaped, created or running. A container the
/// runtime does not know answers NotFound.
#[tokio::test(flavor = "current_thread")]
async fn a_live_container_answers_pids_with_its_init_whatever_ps_says() {
    let h = Harness::new(ScriptedRuntime::working());
    let created = h.create("c1").await;
    assert_eq!(h.pids("c1").await.unwrap(), [created]);
    let running = h.create("c2").await;
    h.start("c2", "").await.unwrap();
    assert_eq!(h.pids("c2").await.unwrap(), [running]);

    let h = Harness::new(ScriptedRuntime {
        fail_ps: Some("state.json: resource temporarily unavailable".into()),
        ..ScriptedRuntime::working()
    });
    let running = h.create("c1").await;
    h.start("c1", "").await.unwrap();
    assert_eq!(h.pids("c1").await.unwrap(), [running]);

    // A container the runtime does not know: containerd is to clean up after it.
    let h = Harness::new(ScriptedRuntime {
        ps_unknown: true,
        ..ScriptedRuntime::working()
    });
    h.create("c1").await;
    h.start("c1", "").await.unwrap();
    refused(h.pids("c1").await, Code::NOT_FOUND, "c1 does not exist");
}

/// containerd's failed CreateTask (its caller gone: containerd stopping) deletes the task and
/// then removes the bundle, rootfs mount first. A Delete that arrives while the OCI runtime's
/// create runs waits for it and deletes what it made; refused, it let containerd unmount the
/// rootfs under the create, and runc made its mount points in the bare directory.
#[tokio::test(flavor = "current_thread")]
async fn a_delete_during_create_waits_for_it_and_deletes_the_container() {
    let h = Harness::new(ScriptedRuntime {
        create_gate: Some(Semaphore::new(0)),
        ..ScriptedRuntime::working()
    });
    let svc = h.svc.clone();
    let req = create_req("c1", h.bundle.clone());
    let creating = tokio::spawn(async move { svc.create(&ctx(), req).await });
    settle().await;
    let svc = h.svc.clone();
    let req = DeleteRequest {
        id: "c1".into(),
        ..Default::default()
    };
    let deleting = tokio::spawn(async move { svc.delete(&ctx(), req).await });
    settle().await;
    assert!(
        !deleting.is_finished(),
        "Delete did not wait for the create"
    );
    // The never-started init dies with the forced delete.
    h.exits.exit_early(5_000_000, 137);
    h.runtime.create_gate.as_ref().unwrap().add_permits(1);
    let pid = creating.await.unwrap().unwrap().pid;
    let deleted = deleting.await.unwrap().unwrap();
    assert_eq!((deleted.pid, deleted.exit_status), (pid, 137));
    assert!(h.runtime.calls().contains(&"delete c1 true".to_string()));
    refused(h.pids("c1").await, Code::NOT_FOUND, "c1");
}

/// A Delete during a create that fails answers NotFound once the create has failed.
#[tokio::test(flavor = "current_thread")]
async fn a_delete_during_a_failing_create_answers_not_found() {
    let h = Harness::new(ScriptedRuntime {
        create_gate: Some(Semaphore::new(0)),
        fail_create: Some("no".into()),
        ..ScriptedRuntime::working()
    });
    let svc = h.svc.clone();
    let req = create_req("c1", h.bundle.clone());
    let creating = tokio::spawn(async move { svc.create(&ctx(), req).await });
    settle().await;
    let deleting = tokio::spawn({
        let svc = h.svc.clone();
        async move {
            let req = DeleteRequest {
                id: "c1".into(),
                ..Default::default()
            };
            svc.delete(&ctx(), req).await
        }
    });
    settle().await;
    h.runtime.create_gate.as_ref().unwrap().add_permits(1);
    assert!(creating.await.unwrap().is_err());
    refused(deleting.await.unwrap(), Code::NOT_FOUND, "c1");
}

/// ttrpc drops a request's handler when containerd's connection goes (containerd killed or
/// restarted): an operation under way still completes, so that the container it concerns is
/// neither forgotten half-made nor stuck in Starting. containerd, back, finds it as it is.
#[tokio::test(flavor = "current_thread")]
async fn a_start_whose_caller_went_away_completes() {
    let h = Harness::new(ScriptedRuntime {
        start_gate: Some(Semaphore::new(0)),
        ..ScriptedRuntime::working()
    });
    h.create("c1").await;
    let svc = h.svc.clone();
    let caller = tokio::spawn(async move {
        let req = StartRequest {
            id: "c1".into(),
            ..Default::default()
        };
        svc.start(&ctx(), req).await
    });
    settle().await;
    caller.abort();
    assert!(caller.await.unwrap_err().is_cancelled());
    h.runtime.start_gate.as_ref().unwrap().add_permits(1);
    settle().await;
    assert_eq!(h.status("c1", "").await.0, Status::RUNNING);
}

/// An exec with a terminal whose console never arrives (or cannot be attached) is killed, not
/// left running with nobody reading its terminal or reporting its exit; the exec stays
/// startable-never and can be deleted.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn an_exec_whose_console_fails_is_killed() {
    let h = Harness::new(ScriptedRuntime::working());
    h.create("c1").await;
    h.start("c1", "").await.unwrap();
    let req = ExecProcessRequest {
        id: "c1".into(),
        exec_id: "tty".into(),
        terminal: true,
        spec: Some(Any {
            type_url: "types.containerd.io/opencontainers/runtime-spec/1/Process".into(),
            value: br#"{"args":["sh"],"cwd":"/","terminal":true}"#.to_vec(),
            ..Default::default()
        })
        .into(),
        ..Default::default()
    };
    h.svc.exec(&ctx(), req).await.unwrap();
    // What `runc exec -d` started: a live process of ours. The scripted runtime sends no console.
    let mut started = std::process::Command::new("sleep")
        .arg("20")
        .spawn()
        .unwrap();
    *h.runtime.exec_pid.lock().unwrap() = Some(started.id());
    refused(h.start("c1", "tty").await, Code::UNKNOWN, "no console");
    let status = started.wait().unwrap();
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(9),
        "the exec ran on: {status}"
    );
    h.runtime.exec_stdio.lock().unwrap().clear();
    h.delete("c1", "tty").await.unwrap();
}

/// containerd removes a deleted task's bundle by renaming `<id>` to `.<id>` and removing that;
/// stopped in between (it rolls back a CreateTask its own shutdown cancelled), it leaves the
/// hidden directory for good. The pod's next Delete removes what is left of every bundle the
/// pod's containers had, and nothing else: not a bundle containerd still has, not a hidden
/// directory of a container this shim never created.
#[tokio::test(flavor = "current_thread")]
async fn a_bundle_containerd_left_half_removed_goes_at_the_next_delete() {
    let h = Harness::new(ScriptedRuntime::working());
    let ns = h._dir.path().join("k8s.io");
    let bundle = |id: &str| {
        let b = ns.join(id);
        std::fs::create_dir_all(&b).unwrap();
        bundle_with(&b, SPEC, true)
    };
    let mut pids = Vec::new();
    for id in ["c1", "c2"] {
        let req = create_req(id, bundle(id));
        pids.push(h.svc.create(&ctx(), req).await.unwrap().pid);
    }
    // A never-started init dies with the forced delete.
    let delete = |id: &'static str, pid: u32| {
        let (svc, exits) = (h.svc.clone(), h.exits.clone());
        async move {
            let req = DeleteRequest {
                id: id.into(),
                ..Default::default()
            };
            let deleting = tokio::spawn(async move { svc.delete(&ctx(), req).await });
            settle().await;
            exits.exit(pid, 137);
            deleting.await.unwrap().unwrap();
        }
    };
    delete("c1", pids[0]).await;
    // containerd's atomicDelete of c1's bundle, cut short after its rename.
    std::fs::write(ns.join("c1").join("init.pid"), "1").unwrap();
    std::fs::rename(ns.join("c1"), ns.join(".c1")).unwrap();
    std::fs::create_dir_all(ns.join(".other")).unwrap();

    delete("c2", pids[1]).await;
    assert!(
        !ns.join(".c1").exists(),
        "c1's half-removed bundle is still there"
    );
    assert!(
        ns.join("c2").exists(),
        "c2's bundle is containerd's to remove"
    );
    assert!(
        ns.join(".other").exists(),
        "a directory of no container of this pod went"
    );
}

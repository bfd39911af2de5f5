//! The real `podshim-sandboxer` binary driving real pod shims (built from this workspace) through
//! containerd's Controller API, as containerd's proxy client calls it; no containerd is needed
//! at this level (the shims' event address points at nothing). Run as root.
#![deny(unsafe_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::Duration;

use containerd_client::services::v1::sandbox::controller_client::ControllerClient;
use containerd_client::services::v1::sandbox::*;
use containerd_client::tonic::{transport::Channel, Code, Request};
use k8s_cri::v1::{
    LinuxPodSandboxConfig, LinuxSandboxSecurityContext, NamespaceMode, NamespaceOption,
    PodSandboxConfig, PodSandboxMetadata,
};
use podshim_sandboxer::store::{self, SandboxRecord, ShimRecord, State, Store, Timestamp};
use podshim_sandboxer::wire;
use prost::Message;

const NS: &str = "k8s.io";
const SHIM: &str = "containerd-shim-podshim-v1";

/// The shim built from this workspace, next to this test's own target directory.
fn shim_binary() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let debug = exe.parent().unwrap().parent().unwrap();
    let bin = debug.join(SHIM);
    if !bin.exists() {
        let st = Command::new(env!("CARGO"))
            .args(["build", "-p", "podshim-shim", "--bin", SHIM])
            .env("CARGO_TARGET_DIR", debug.parent().unwrap())
            .status()
            .unwrap();
        assert!(st.success(), "building {SHIM}");
    }
    bin
}

/// An executable `sh` script.
fn write_script(path: &Path, body: &str) {
    std::fs::write(path, format!("#!/bin/sh\n{body}")).unwrap();
    let mut perm = std::fs::metadata(path).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perm, 0o755);
    std::fs::set_permissions(path, perm).unwrap();
}

struct Daemon {
    dir: tempfile::TempDir,
    config: PathBuf,
    child: Option<Child>,
    /// The crash point (`podshim_sandboxer::crash`) the next spawn is armed with.
    crash: Option<&'static str>,
}

/// Every process whose command line names this test's directory: shims (their `-address`) and
/// the daemon.
fn processes_mentioning(needle: &str) -> Vec<(i32, String)> {
    let mut v = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let zombie = stat
            .rsplit_once(')')
            .is_some_and(|(_, r)| r.trim_start().starts_with('Z'));
        if cmd.contains(needle) && !zombie {
            v.push((pid, cmd));
        }
    }
    v
}

fn holders(sandbox_id: &str) -> Vec<i32> {
    processes_mentioning(&format!("-podshim-sandbox-holder {sandbox_id}"))
        .into_iter()
        .map(|p| p.0)
        .collect()
}

impl Daemon {
    fn new(pool: usize) -> Daemon {
        Daemon::with_start_delay(pool, None)
    }

    /// A daemon whose shims take `delay` more to `start` (a wrapper sleeps, then runs the shim).
    fn with_start_delay(pool: usize, delay: Option<Duration>) -> Daemon {
        Daemon::build(pool, delay, None, None)
    }

    /// A daemon whose shims' sandbox holders take `delay` more to start: the shim, linked into
    /// the case's directory, finds a `podshim-holder` there that sleeps, then runs the holder.
    fn with_slow_holder(delay: Duration) -> Daemon {
        Daemon::build(0, None, Some(delay), None)
    }

    /// A daemon whose shim binary is its own file (a link in the case's directory), as an
    /// install keeps it: an upgrade can replace it.
    fn with_own_shim(pool: usize) -> Daemon {
        Daemon::build(pool, None, Some(Duration::ZERO), None)
    }

    /// A daemon armed with a crash point (`podshim_sandboxer::crash`).
    fn with_crash_point(point: &'static str) -> Daemon {
        Daemon::build(0, None, None, Some(point))
    }

    fn build(
        pool: usize,
        delay: Option<Duration>,
        holder_delay: Option<Duration>,
        crash: Option<&'static str>,
    ) -> Daemon {
        Daemon::build_with(pool, delay, holder_delay, crash, "")
    }

    /// A daemon serving its metrics on a port of its choosing (logged as `metrics on ADDR`).
    fn with_metrics(pool: usize) -> Daemon {
        let top_level = "metrics_address = \"127.0.0.1:0\"\n";
        Daemon::build_with(pool, None, None, None, top_level)
    }

    /// `top_level`: keys put first in the daemon's configuration.
    fn build_with(
        pool: usize,
        delay: Option<Duration>,
        holder_delay: Option<Duration>,
        crash: Option<&'static str>,
        top_level: &str,
    ) -> Daemon {
        let dir = tempfile::Builder::new()
            .prefix("pssb-")
            .tempdir_in("/tmp")
            .unwrap();
        let d = dir.path();
        let shim = match (delay, holder_delay) {
            (None, None) => shim_binary(),
            (None, Some(holder_delay)) => {
                let shim = d.join(SHIM);
                std::fs::hard_link(shim_binary(), &shim).unwrap();
                write_script(
                    &d.join("podshim-holder"),
                    &format!(
                        "sleep {}\nexec {} \"$@\"\n",
                        holder_delay.as_secs_f64(),
                        shim.display()
                    ),
                );
                shim
            }
            (Some(delay), _) => {
                let wrapper = d.join(format!("slow-{SHIM}"));
                write_script(
                    &wrapper,
                    &format!(
                        "case \" $* \" in *\" start \"*) sleep {};; esac\nexec {} \"$@\"\n",
                        delay.as_secs_f64(),
                        shim_binary().display()
                    ),
                );
                wrapper
            }
        };
        std::fs::write(
            d.join("shim.toml"),
            format!("[runtime]\nroot = \"{}/runc\"\n", d.display()),
        )
        .unwrap();
        let config = d.join("sandboxer.toml");
        std::fs::write(
            &config,
            format!(
                r#"{top_level}address = "{d}/sandboxer.sock"
state_dir = "{d}/state"
log_level = "debug"
[shim]
binary = "{shim}"
[containerd]
address = "{d}/containerd.sock"
binary = "/bin/true"
root = "{d}/root"
state = "{d}/cstate"
[pool]
size = {pool}
"#,
                d = d.display(),
                shim = shim.display(),
            ),
        )
        .unwrap();
        let mut daemon = Daemon {
            dir,
            config,
            child: None,
            crash,
        };
        daemon.spawn();
        daemon
    }

    /// Sandbox ids carry the test's directory name: a failed case kills only its own holders.
    fn id(&self, name: &str) -> String {
        format!(
            "{}-{name}",
            self.path().file_name().unwrap().to_string_lossy()
        )
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.path().join("sandboxer.log"))
            .unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_podshim-sandboxer"));
        cmd.env("PODSHIM_SANDBOXER_CONFIG", &self.config)
            .env("PODSHIM_CONFIG", self.path().join("shim.toml"))
            .stderr(log);
        if let Some(point) = self.crash {
            cmd.env(podshim_sandboxer::crash::ENV, point);
        }
        self.child = Some(cmd.spawn().unwrap());
    }

    /// The daemon killed itself at its crash point: reaped, and started again unarmed.
    async fn restart_after_crash(&mut self) {
        let mut c = self.child.take().unwrap();
        for _ in 0..500 {
            if let Some(st) = c.try_wait().unwrap() {
                use std::os::unix::process::ExitStatusExt;
                assert_eq!(
                    st.signal(),
                    Some(9),
                    "daemon exited with {st}\n{}",
                    self.log()
                );
                self.crash = None;
                self.spawn();
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("the daemon did not crash\n{}", self.log());
    }

    fn kill9(&mut self) {
        let mut c = self.child.take().unwrap();
        c.kill().unwrap();
        c.wait().unwrap();
    }

    /// SIGTERM, the way systemd stops it.
    fn terminate(&mut self) {
        let mut c = self.child.take().unwrap();
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(c.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        )
        .unwrap();
        let st = c.wait().unwrap();
        assert!(st.success(), "daemon exited with {st}");
    }

    async fn client(&mut self) -> Client {
        let sock = self.path().join("sandboxer.sock");
        loop {
            if let Some(st) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("daemon exited: {st}\n{}", self.log());
            }
            if sock.exists() {
                if let Ok(ch) = containerd_client::connect(&sock).await {
                    return Client {
                        ctl: ControllerClient::new(ch.clone()),
                        channel: ch,
                    };
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.path().join("sandboxer.log")).unwrap_or_default()
    }

    fn shims(&self) -> Vec<(i32, String)> {
        processes_mentioning(&format!("{}/containerd.sock", self.path().display()))
            .into_iter()
            .filter(|(_, c)| c.contains(SHIM) && !c.contains("-podshim-sandbox-holder"))
            .collect()
    }

    fn pool_shims(&self) -> Vec<i32> {
        self.shims()
            .into_iter()
            .filter(|(_, c)| c.contains("-id podshim-pool-"))
            .map(|p| p.0)
            .collect()
    }

    /// Pool shims the daemon has reported ready to adopt, from its log.
    fn pool_shims_ready(&self) -> usize {
        self.log()
            .lines()
            .filter(|l| l.contains("pool shim podshim-pool-") && l.ends_with(") ready"))
            .count()
    }

    async fn until(&self, what: &str, f: impl Fn(&Daemon) -> bool) {
        for _ in 0..1500 {
            if f(self) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("never happened: {what}\n{}", self.log());
    }

    /// After everything is removed and the daemon stopped: no shim, no holder, no bundle, no
    /// record, no pod files.
    fn assert_nothing_left(&self) {
        assert!(self.child.is_none());
        assert_eq!(self.shims(), vec![], "shims left");
        let bundles: Vec<_> = std::fs::read_dir(self.path().join("state/bundles"))
            .map(|rd| {
                rd.flatten()
                    .flat_map(|ns| std::fs::read_dir(ns.path()).unwrap())
                    .flatten()
                    .map(|e| e.path())
                    .collect()
            })
            .unwrap_or_default();
        assert_eq!(bundles, Vec::<PathBuf>::new(), "bundles left");
        let store = Store::open(&self.path().join("state")).unwrap();
        assert_eq!(store.sandboxes().unwrap(), vec![], "sandbox records left");
        assert_eq!(store.pool().unwrap(), vec![], "pool records left");
        let cri = self.path().join("root/io.containerd.grpc.v1.cri/sandboxes");
        let files: Vec<_> = std::fs::read_dir(&cri)
            .map(|rd| rd.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        assert_eq!(files, Vec::<PathBuf>::new(), "pod files left");
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        // A failed case must not leave shims, holders, sockets or mounts behind.
        for (pid, cmd) in processes_mentioning(&self.path().display().to_string()) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
            if let Some(sock) = cmd.split(' ').skip_while(|a| *a != "-socket").nth(1) {
                std::thread::sleep(Duration::from_millis(100));
                let _ = std::fs::remove_file(sock.trim_start_matches("unix://"));
            }
        }
        let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
        let dir = self.path().display().to_string();
        for m in mounts.lines().filter_map(|l| l.split(' ').nth(1)).rev() {
            if m.starts_with(&dir) {
                let _ = nix::mount::umount2(m, nix::mount::MntFlags::MNT_DETACH);
            }
        }
        for (pid, _) in processes_mentioning(&format!("-podshim-sandbox-holder {}", self.id(""))) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

/// containerd-client's Controller client, and the channel under it for what containerd-client
/// cannot decode (Start's spec).
#[derive(Clone)]
struct Client {
    ctl: ControllerClient<Channel>,
    channel: Channel,
}

impl std::ops::Deref for Client {
    type Target = ControllerClient<Channel>;
    fn deref(&self) -> &Self::Target {
        &self.ctl
    }
}

impl std::ops::DerefMut for Client {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.ctl
    }
}

fn req<T>(msg: T) -> Request<T> {
    let mut r = Request::new(msg);
    r.metadata_mut()
        .insert("containerd-namespace", NS.parse().unwrap());
    r
}

fn pod_options(name: &str) -> prost_types::Any {
    // No CNI here: the pod keeps the host's network.
    pod_options_in(name, NamespaceMode::Node)
}

fn pod_options_in(name: &str, network: NamespaceMode) -> prost_types::Any {
    let cfg = PodSandboxConfig {
        metadata: Some(PodSandboxMetadata {
            name: name.into(),
            uid: format!("uid-{name}"),
            namespace: "default".into(),
            attempt: 0,
        }),
        // As kubelet: a hostNetwork pod has the node's hostname (runc refuses another).
        hostname: match network {
            NamespaceMode::Node => String::new(),
            _ => name.into(),
        },
        linux: Some(LinuxPodSandboxConfig {
            security_context: Some(LinuxSandboxSecurityContext {
                namespace_options: Some(NamespaceOption {
                    network: network as i32,
                    pid: NamespaceMode::Container as i32,
                    ipc: NamespaceMode::Pod as i32,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    prost_types::Any {
        type_url: "runtime.v1.PodSandboxConfig".into(),
        value: cfg.encode_to_vec(),
    }
}

async fn create(c: &mut ControllerClient<Channel>, id: &str) -> Result<(), Code> {
    c.create(req(ControllerCreateRequest {
        sandbox_id: id.into(),
        options: Some(pod_options(id)),
        sandboxer: "podshim".into(),
        ..Default::default()
    }))
    .await
    .map(|_| ())
    .map_err(|s| s.code())
}

async fn start(c: &mut Client, id: &str) -> wire::ControllerStartResponse {
    try_start(c, id).await.unwrap()
}

/// Start, decoded as containerd 2.3+ decodes it (with the spec).
async fn try_start(
    c: &mut Client,
    id: &str,
) -> Result<wire::ControllerStartResponse, containerd_client::tonic::Status> {
    let mut grpc = containerd_client::tonic::client::Grpc::new(c.channel.clone());
    grpc.ready().await.unwrap();
    grpc.unary(
        req(ControllerStartRequest {
            sandbox_id: id.into(),
            sandboxer: "podshim".into(),
        }),
        containerd_client::tonic::codegen::http::uri::PathAndQuery::from_static(
            "/containerd.services.sandbox.v1.Controller/Start",
        ),
        tonic_prost::ProstCodec::default(),
    )
    .await
    .map(|r| r.into_inner())
}

async fn metrics(c: &mut ControllerClient<Channel>, id: &str) -> Result<(), Code> {
    c.metrics(req(ControllerMetricsRequest {
        sandbox_id: id.into(),
        ..Default::default()
    }))
    .await
    .map(|_| ())
    .map_err(|s| s.code())
}

async fn status(
    c: &mut ControllerClient<Channel>,
    id: &str,
) -> Result<ControllerStatusResponse, Code> {
    c.status(req(ControllerStatusRequest {
        sandbox_id: id.into(),
        verbose: false,
        sandboxer: "podshim".into(),
    }))
    .await
    .map(|r| r.into_inner())
    .map_err(|s| s.code())
}

async fn stop(c: &mut ControllerClient<Channel>, id: &str) -> Result<(), Code> {
    c.stop(req(ControllerStopRequest {
        sandbox_id: id.into(),
        ..Default::default()
    }))
    .await
    .map(|_| ())
    .map_err(|s| s.code())
}

async fn wait(c: &mut ControllerClient<Channel>, id: &str) -> Result<ControllerWaitResponse, Code> {
    c.wait(req(ControllerWaitRequest {
        sandbox_id: id.into(),
        ..Default::default()
    }))
    .await
    .map(|r| r.into_inner())
    .map_err(|s| s.code())
}

async fn shutdown(c: &mut ControllerClient<Channel>, id: &str) -> Result<(), Code> {
    c.shutdown(req(ControllerShutdownRequest {
        sandbox_id: id.into(),
        ..Default::default()
    }))
    .await
    .map(|_| ())
    .map_err(|s| s.code())
}

async fn bounded<F: std::future::Future>(f: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(120), f)
        .await
        .expect("case hung")
}

#[tokio::test]
async fn pod_lifecycle_through_its_shim() {
    bounded(async {
        let mut d = Daemon::new(0);
        let mut c = d.client().await;
        let id = d.id("life");
        create(&mut c, &id).await.unwrap();
        assert_eq!(create(&mut c, &id).await, Err(Code::AlreadyExists));
        assert_eq!(d.shims().len(), 1, "one shim per pod");
        let s = start(&mut c, &id).await;
        assert!(
            s.address.starts_with("ttrpc+unix:///run/containerd/s/"),
            "{}",
            s.address
        );
        assert_eq!(s.version, 3);
        // The shim's spec, if it gives one, reaches containerd as its NRI reads it.
        if let Some(spec) = &s.spec {
            assert_eq!(
                spec.type_url,
                "types.containerd.io/opencontainers/runtime-spec/1/Spec"
            );
            let v: serde_json::Value = serde_json::from_slice(&spec.value).unwrap();
            assert!(v.get("ociVersion").is_some(), "{v}");
        }
        assert_eq!(holders(&id), vec![s.pid as i32], "the pid is the holder");
        let st = status(&mut c, &id).await.unwrap();
        assert_eq!(st.sandbox_id, id);
        assert_eq!(st.state, "SANDBOX_READY");
        assert_eq!((st.pid, &st.address, st.version), (s.pid, &s.address, 3));
        let p = c
            .platform(req(ControllerPlatformRequest {
                sandbox_id: id.clone(),
                ..Default::default()
            }))
            .await
            .unwrap()
            .into_inner()
            .platform
            .unwrap();
        assert_eq!(p.os, "linux");
        // The pod's files CRI bind-mounts, under the configured containerd root.
        let files = d
            .path()
            .join("root/io.containerd.grpc.v1.cri/sandboxes")
            .join(&id);
        assert!(files.join("hostname").exists());

        let mut waiter = c.clone();
        let waited = tokio::spawn({
            let id = id.clone();
            async move { wait(&mut waiter, &id).await }
        });
        stop(&mut c, &id).await.unwrap();
        let w = waited.await.unwrap().unwrap();
        assert!(w.exited_at.is_some());
        assert_eq!(status(&mut c, &id).await.unwrap().state, "SANDBOX_NOTREADY");
        assert_eq!(holders(&id), Vec::<i32>::new());

        shutdown(&mut c, &id).await.unwrap();
        assert_eq!(status(&mut c, &id).await, Err(Code::NotFound));
        // What CRI does again on a removed pod: Stop succeeds, Shutdown says NotFound.
        assert_eq!(stop(&mut c, &id).await, Ok(()));
        assert_eq!(shutdown(&mut c, &id).await, Err(Code::NotFound));
        assert!(!files.exists());
        d.terminate();
        d.assert_nothing_left();
        // The daemon's own lines about this pod name it, once, as their subject.
        let log = d.log();
        let about = format!("podshim-sandboxer DEBUG sandbox {id}: create in ");
        assert!(log.contains(&about), "{log}");
        assert!(
            !log.contains(&format!("sandbox {id}: sandbox {id}")),
            "{log}"
        );
    })
    .await
}

/// kill -9 of the daemon with a running pod and an idle pool shim: after the restart the pod is
/// found again (same holder, same shim) and the idle shim is reused, not leaked.
#[tokio::test]
async fn restart_keeps_pods_and_pool() {
    bounded(async {
        let mut d = Daemon::new(1);
        let mut c = d.client().await;
        // Ready, not merely started: a shim still starting is not handed out.
        d.until("a pool shim ready", |d| d.pool_shims_ready() == 1)
            .await;
        let pooled = d.pool_shims()[0];
        let id = d.id("restart");
        create(&mut c, &id).await.unwrap();
        // The pod got the warm shim; the pool starts another.
        let pod_shim: Vec<i32> = d.shims().iter().map(|p| p.0).collect();
        assert!(pod_shim.contains(&pooled));
        d.until("the pool refilled", |d| d.pool_shims().len() == 2)
            .await;
        let s = start(&mut c, &id).await;
        let idle: Vec<i32> = d
            .pool_shims()
            .into_iter()
            .filter(|p| *p != pooled)
            .collect();

        let mut waiter = c.clone();
        let cut = tokio::spawn({
            let id = id.clone();
            async move { wait(&mut waiter, &id).await }
        });
        d.kill9();
        // grpc-go (containerd) sees Unavailable here and retries; tonic says Unknown.
        let cut = cut.await.unwrap().unwrap_err();
        assert!(matches!(cut, Code::Unavailable | Code::Unknown), "{cut:?}");
        d.spawn();
        let mut c = d.client().await;
        let st = status(&mut c, &id).await.unwrap();
        assert_eq!((st.state.as_str(), st.pid), ("SANDBOX_READY", s.pid));
        assert_eq!(st.address, s.address);
        let now: Vec<i32> = d
            .pool_shims()
            .into_iter()
            .filter(|p| *p != pooled)
            .collect();
        assert_eq!(now, idle, "the idle shim is kept, not replaced");

        let mut waiter = c.clone();
        let waited = tokio::spawn({
            let id = id.clone();
            async move { wait(&mut waiter, &id).await }
        });
        stop(&mut c, &id).await.unwrap();
        waited.await.unwrap().unwrap();
        shutdown(&mut c, &id).await.unwrap();
        assert!(
            !d.shims().iter().any(|p| p.0 == pooled),
            "the pod's shim left"
        );
        d.terminate();
        d.assert_nothing_left();
    })
    .await
}

/// A pod whose shim died: NOTREADY, and Wait returns once it ran the shim's `delete` (holder,
/// pod files, socket); Shutdown still removes the sandbox.
#[tokio::test]
async fn dead_shim_is_cleaned_up() {
    bounded(async {
        let mut d = Daemon::new(0);
        let mut c = d.client().await;
        let id = d.id("dead");
        create(&mut c, &id).await.unwrap();
        let s = start(&mut c, &id).await;
        let (shim, cmd) = d.shims().remove(0);
        let sock = cmd
            .split(' ')
            .skip_while(|a| *a != "-socket")
            .nth(1)
            .unwrap()
            .trim_start_matches("unix://")
            .to_string();
        kill9(shim);
        d.until("the shim is gone", |d| d.shims().is_empty()).await;
        let st = status(&mut c, &id).await.unwrap();
        assert_eq!(st.state, "SANDBOX_NOTREADY");
        assert!(st.exited_at.is_some());
        // The holder outlived its shim until Wait saw the shim gone and ran its `delete`.
        assert_eq!(holders(&id), vec![s.pid as i32]);
        assert_eq!(wait(&mut c, &id).await.unwrap().exit_status, 255);
        assert_eq!(holders(&id), Vec::<i32>::new());
        assert!(!Path::new(&sock).exists(), "socket {sock} left");
        shutdown(&mut c, &id).await.unwrap();
        d.terminate();
        d.assert_nothing_left();
    })
    .await
}

#[tokio::test]
async fn bad_requests() {
    bounded(async {
        let mut d = Daemon::new(0);
        let mut c = d.client().await;
        assert_eq!(create(&mut c, "../x").await, Err(Code::InvalidArgument));
        assert_eq!(status(&mut c, "nope").await, Err(Code::NotFound));
        let no_ns = c
            .status(ControllerStatusRequest {
                sandbox_id: "x".into(),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(no_ns.code(), Code::FailedPrecondition);
        // Options the shim cannot read: Create fails and leaves nothing.
        let e = c
            .create(req(ControllerCreateRequest {
                sandbox_id: d.id("bad"),
                options: Some(prost_types::Any {
                    type_url: "something.Else".into(),
                    value: vec![1, 2, 3],
                }),
                ..Default::default()
            }))
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
        assert_eq!(status(&mut c, &d.id("bad")).await, Err(Code::NotFound));
        d.terminate();
        d.assert_nothing_left();
    })
    .await
}

/// CRI calls nothing after a failed Start (no Shutdown): the sandbox must be gone by then.
#[tokio::test]
async fn failed_start_leaves_nothing() {
    bounded(async {
        let mut d = Daemon::new(0);
        let mut c = d.client().await;
        let id = d.id("nostart");
        // A file, not a network namespace: Create finds it, the holder cannot join it.
        let netns = d.path().join("not-a-netns");
        std::fs::write(&netns, "").unwrap();
        c.create(req(ControllerCreateRequest {
            sandbox_id: id.clone(),
            options: Some(pod_options_in(&id, NamespaceMode::Pod)),
            netns_path: netns.display().to_string(),
            ..Default::default()
        }))
        .await
        .unwrap();
        let e = try_start(&mut c, &id).await.unwrap_err();
        assert_ne!(e.code(), Code::NotFound, "{e:?}");
        assert_eq!(status(&mut c, &id).await, Err(Code::NotFound));
        assert_eq!(d.shims(), vec![], "shims left");
        assert_eq!(holders(&id), Vec::<i32>::new());
        d.terminate();
        d.assert_nothing_left();
        // The failure, logged where the Start ran to its end (a task of its own), names the pod.
        let log = d.log();
        let about = format!("podshim-sandboxer WARN sandbox {id}: start failed, undoing it: ");
        assert!(log.contains(&about), "{log}");
    })
    .await
}

/// containerd gives up on a Create while the shim starts (its caller's deadline passed): the
/// Create is finished here all the same, then undone, since nothing will ask for it again.
#[tokio::test]
async fn abandoned_create_leaves_nothing() {
    bounded(async {
        let mut d = Daemon::with_start_delay(0, Some(Duration::from_secs(1)));
        let mut c = d.client().await;
        let id = d.id("abandoned");
        let mut r = req(ControllerCreateRequest {
            sandbox_id: id.clone(),
            options: Some(pod_options(&id)),
            ..Default::default()
        });
        r.set_timeout(Duration::from_millis(300));
        c.create(r).await.unwrap_err();
        let started = format!("started shim {id} ");
        d.until("the shim started after all", |d| d.log().contains(&started))
            .await;
        d.until("the shim gone again", |d| d.shims().is_empty())
            .await;
        while status(&mut c, &id).await != Err(Code::NotFound) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        d.terminate();
        d.assert_nothing_left();
    })
    .await
}

/// containerd 2.3 can fail RunPodSandbox between Create and Start (the pause image pull) and
/// then never calls again; the pod's shim then leaves. With no further call, the sandbox is
/// forgotten: no record, no bundle, no pod files.
#[tokio::test]
async fn unstarted_sandbox_whose_shim_left_is_forgotten() {
    bounded(async {
        let mut d = Daemon::new(0);
        let mut c = d.client().await;
        let id = d.id("unstarted");
        create(&mut c, &id).await.unwrap();
        let (shim, _) = d.shims().remove(0);
        kill9(shim);
        let forgotten = format!("sandbox {id}: shim {id} gone, record removed");
        d.until("the sandbox forgotten", |d| d.log().contains(&forgotten))
            .await;
        d.terminate();
        d.assert_nothing_left();
    })
    .await
}

/// containerd 2.4 lists pod stats through Metrics and fails the whole list on any error but
/// NotFound and Unavailable: a sandbox that is not ready answers one of those.
#[tokio::test]
async fn metrics_never_fail_the_nodes_stats() {
    bounded(async {
        let skipped = |r: Result<(), Code>| matches!(r, Err(Code::NotFound | Code::Unavailable));
        let mut d = Daemon::new(0);
        let mut c = d.client().await;
        assert_eq!(metrics(&mut c, "nope").await, Err(Code::NotFound));

        let id = d.id("metrics");
        create(&mut c, &id).await.unwrap();
        let r = metrics(&mut c, &id).await;
        assert!(skipped(r), "created, not started: {r:?}");
        start(&mut c, &id).await;
        let r = metrics(&mut c, &id).await;
        assert!(r.is_ok() || skipped(r), "started: {r:?}");
        let mut waiter = c.clone();
        let waited = tokio::spawn({
            let id = id.clone();
            async move { wait(&mut waiter, &id).await }
        });
        stop(&mut c, &id).await.unwrap();
        waited.await.unwrap().unwrap();
        let r = metrics(&mut c, &id).await;
        assert!(skipped(r), "stopped: {r:?}");
        shutdown(&mut c, &id).await.unwrap();
        assert_eq!(metrics(&mut c, &id).await, Err(Code::NotFound));

        let dead = d.id("metrics-dead");
        create(&mut c, &dead).await.unwrap();
        start(&mut c, &dead).await;
        let (shim, _) = d.shims().remove(0);
        kill9(shim);
        d.until("the shim is gone", |d| d.shims().is_empty()).await;
        let r = metrics(&mut c, &dead).await;
        assert!(skipped(r), "shim gone: {r:?}");
        assert_eq!(wait(&mut c, &dead).await.unwrap().exit_status, 255);
        shutdown(&mut c, &dead).await.unwrap();
        d.terminate();
        d.assert_nothing_left();
    })
    .await
}

/// CRI 2.3+ re-reads `info["info"]` as its SandboxInfo: the `config`, `cniResult` and
/// `sandboxMetadata` it shows come from the `metadata` extension it gave Create.
#[tokio::test]
async fn verbose_status_has_cris_metadata() {
    bounded(async {
        let mut d = Daemon::new(0);
        let mut c = d.client().await;
        let id = d.id("verbose");
        let metadata = serde_json::json!({
            "Version": "v1",
            "Metadata": {
                "ID": id,
                "Config": {"metadata": {"name": "verbose", "uid": "uid-verbose"}},
                "CNIResult": {"Interfaces": {}},
            }
        });
        c.create(req(ControllerCreateRequest {
            sandbox_id: id.clone(),
            options: Some(pod_options(&id)),
            sandbox: Some(containerd_client::types::Sandbox {
                sandbox_id: id.clone(),
                extensions: [(
                    "metadata".to_string(),
                    prost_types::Any {
                        type_url: "github.com/containerd/cri/pkg/store/sandbox/Metadata".into(),
                        value: metadata.to_string().into_bytes(),
                    },
                )]
                .into(),
                ..Default::default()
            }),
            ..Default::default()
        }))
        .await
        .unwrap();
        start(&mut c, &id).await;
        let st = c
            .status(req(ControllerStatusRequest {
                sandbox_id: id.clone(),
                verbose: true,
                ..Default::default()
            }))
            .await
            .unwrap()
            .into_inner();
        let info: serde_json::Value = serde_json::from_str(&st.info["info"]).unwrap();
        assert_eq!(info["config"], metadata["Metadata"]["Config"], "{info}");
        assert_eq!(
            info["cniResult"], metadata["Metadata"]["CNIResult"],
            "{info}"
        );
        assert_eq!(info["sandboxMetadata"], metadata, "{info}");
        // Not verbose: nothing added.
        assert!(!status(&mut c, &id).await.unwrap().info.contains_key("info"));
        stop(&mut c, &id).await.unwrap();
        shutdown(&mut c, &id).await.unwrap();
        d.terminate();
        d.assert_nothing_left();
    })
    .await
}

/// A started pod, then the daemon killed (as a crash would) so that its store can be written as a
/// fault leaves it. Returns the pod's id and pid.
async fn started_pod_of_a_killed_daemon(d: &mut Daemon) -> (String, u32) {
    let mut c = d.client().await;
    let id = d.id("good");
    create(&mut c, &id).await.unwrap();
    let pid = start(&mut c, &id).await.pid;
    d.kill9();
    (id, pid)
}

/// The restarted daemon serves, and the pod `id` is the one it served before.
async fn assert_serves(d: &mut Daemon, id: &str, pid: u32) -> Client {
    let mut c = d.client().await;
    let st = status(&mut c, id).await.unwrap();
    assert_eq!((st.state.as_str(), st.pid), ("SANDBOX_READY", pid));
    c
}

/// `chattr +i`, undone when dropped (also by a failing test).
struct Immutable(PathBuf);

impl Immutable {
    fn new(p: &Path) -> Immutable {
        let st = Command::new("chattr").arg("+i").arg(p).status().unwrap();
        assert!(st.success(), "chattr +i {}", p.display());
        Immutable(p.to_path_buf())
    }
}

impl Drop for Immutable {
    fn drop(&mut self) {
        let _ = Command::new("chattr").arg("-i").arg(&self.0).status();
    }
}

/// Records that cannot be decoded (a sandbox's and a pool shim's) do not stop the daemon: it
/// serves every other sandbox, names them in its log and keeps them, and no bundle they may
/// name is removed.
#[tokio::test]
async fn recovery_skips_records_it_cannot_decode() {
    bounded(async {
        let mut d = Daemon::new(0);
        let (id, pid) = started_pod_of_a_killed_daemon(&mut d).await;
        let bad = d.id("corrupt");
        let bad_pool = d.id("pool-corrupt");
        {
            let db = redb::Database::create(d.path().join("state").join(store::FILE_NAME)).unwrap();
            let tx = db.begin_write().unwrap();
            let sandboxes: redb::TableDefinition<(&str, &str), &[u8]> =
                redb::TableDefinition::new("sandboxes");
            let pool: redb::TableDefinition<&str, &[u8]> = redb::TableDefinition::new("pool");
            tx.open_table(sandboxes)
                .unwrap()
                .insert((NS, bad.as_str()), b"{".as_slice())
                .unwrap();
            tx.open_table(pool)
                .unwrap()
                .insert(bad_pool.as_str(), b"{\"id\":".as_slice())
                .unwrap();
            tx.commit().unwrap();
        }
        // What the sandbox record would name, were it readable.
        let bundle = d.path().join("state/bundles").join(NS).join(&bad);
        std::fs::create_dir_all(&bundle).unwrap();

        d.spawn();
        let mut c = assert_serves(&mut d, &id, pid).await;
        for key in [format!("{NS}/{bad}"), bad_pool.clone()] {
            assert!(d.log().contains(&key), "{key} not logged:\n{}", d.log());
        }
        assert!(
            bundle.is_dir(),
            "a bundle an unreadable record may name was removed"
        );
        stop(&mut c, &id).await.unwrap();
        shutdown(&mut c, &id).await.unwrap();
        d.terminate();
        let s = Store::open(&d.path().join("state")).unwrap();
        let e = s.sandboxes().unwrap_err().to_string();
        assert!(e.contains(&bad), "{e}");
        let e = s.pool().unwrap_err().to_string();
        assert!(e.contains(&bad_pool), "{e}");
    })
    .await
}

/// A sandbox whose teardown at start-up fails (its bundle cannot be removed) does not stop the
/// daemon: it serves every other sandbox and keeps the record, and the next start, once the
/// bundle can go, tears it down.
#[tokio::test]
async fn recovery_survives_a_sandbox_it_cannot_tear_down() {
    bounded(async {
        let mut d = Daemon::new(0);
        let (id, pid) = started_pod_of_a_killed_daemon(&mut d).await;
        // A Create that never answered: torn down at start-up.
        let stuck = d.id("stuck");
        let bundle = d.path().join("state/bundles").join(NS).join(&stuck);
        let record = SandboxRecord {
            namespace: NS.into(),
            sandbox_id: stuck.clone(),
            shim: ShimRecord {
                id: stuck.clone(),
                namespace: NS.into(),
                bundle: bundle.clone(),
                address: format!("unix://{}/stuck.sock", d.path().display()),
                pid: 0,
            },
            state: State::Creating,
            pid: 0,
            created_at: Timestamp::now(),
            exited_at: None,
        };
        Store::open(&d.path().join("state"))
            .unwrap()
            .put_sandbox(&record)
            .unwrap();
        std::fs::create_dir_all(&bundle).unwrap();
        std::fs::write(bundle.join("left"), "").unwrap();
        let immutable = Immutable::new(&bundle);

        d.spawn();
        assert_serves(&mut d, &id, pid).await;
        let key = format!("{NS}/{stuck}");
        assert!(d.log().contains(&key), "{key} not logged:\n{}", d.log());
        d.terminate();
        let s = Store::open(&d.path().join("state")).unwrap();
        assert!(s.sandboxes().unwrap().contains(&record), "record not kept");
        drop(s);

        drop(immutable);
        d.spawn();
        let mut c = assert_serves(&mut d, &id, pid).await;
        assert!(!bundle.exists(), "not torn down at the next start");
        stop(&mut c, &id).await.unwrap();
        shutdown(&mut c, &id).await.unwrap();
        d.terminate();
        d.assert_nothing_left();
    })
    .await
}

/// SIGKILL, as a crash or the OOM killer ends a process.
fn kill9(pid: i32) {
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
}

/// containerd's sandbox store as the daemon asks it: the sandboxes in `gone` are NotFound, every
/// other question fails with Unavailable (which must never be taken for an answer).
#[derive(Clone)]
struct FakeStore {
    gone: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl tonic::server::NamedService for FakeStore {
    const NAME: &'static str = "containerd.services.sandbox.v1.Store";
}

type HttpRequest = tonic::codegen::http::Request<tonic::body::Body>;
type HttpResponse = tonic::codegen::http::Response<tonic::body::Body>;

impl tower::Service<HttpRequest> for FakeStore {
    type Response = HttpResponse;
    type Error = std::convert::Infallible;
    type Future = std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<HttpResponse, Self::Error>> + Send>,
    >;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: HttpRequest) -> Self::Future {
        let gone = self.gone.clone();
        Box::pin(async move {
            use http_body_util::BodyExt;
            let body = req.into_body().collect().await.unwrap().to_bytes();
            // One gRPC message: a flag byte and a 4-byte length, then the request.
            let asked = StoreGetRequest::decode(&body[5..]).unwrap().sandbox_id;
            let status = match gone.lock().unwrap().contains(&asked) {
                true => tonic::Status::not_found(format!("sandbox {asked}: not found")),
                false => tonic::Status::unavailable("this containerd answers nothing else"),
            };
            Ok(status.into_http())
        })
    }
}

impl FakeStore {
    /// Serves on the socket the daemon's config names as containerd's.
    fn serve(d: &Daemon) -> FakeStore {
        let store = FakeStore {
            gone: Default::default(),
        };
        let listener = tokio::net::UnixListener::bind(d.path().join("containerd.sock")).unwrap();
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(store.clone())
                .serve_with_incoming(tokio_stream::wrappers::UnixListenerStream::new(listener)),
        );
        store
    }

    fn drop_sandbox(&self, id: &str) {
        self.gone.lock().unwrap().push(id.to_string());
    }
}

/// A sandbox containerd's store no longer has is one CRI gave up on without telling its
/// controller (2.3: the pause image pull failed after Create; 2.1, 2.2: a failure after Start):
/// it is torn down, created or started, without a call. A containerd that cannot answer proves
/// nothing: those sandboxes stay.
#[tokio::test]
async fn sandboxes_containerd_no_longer_has_are_torn_down() {
    bounded(async {
        let mut d = Daemon::new(0);
        let containerd = FakeStore::serve(&d);
        let mut c = d.client().await;
        let (kept, started, unstarted) = (d.id("kept"), d.id("started"), d.id("unstarted"));
        for id in [&kept, &started, &unstarted] {
            create(&mut c, id).await.unwrap();
        }
        for id in [&kept, &started] {
            start(&mut c, id).await;
        }
        containerd.drop_sandbox(&started);
        containerd.drop_sandbox(&unstarted);
        for id in [&unstarted, &started] {
            let torn_down = format!("sandbox {id}: shim {id} gone, record removed");
            // The started one waits for the sweep (every 30 s).
            for _ in 0..45 * 50 {
                if d.log().contains(&torn_down) {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            assert!(d.log().contains(&torn_down), "{id} kept\n{}", d.log());
            assert_eq!(status(&mut c, id).await, Err(Code::NotFound));
            assert_eq!(holders(id), Vec::<i32>::new());
        }
        assert_eq!(status(&mut c, &kept).await.unwrap().state, "SANDBOX_READY");
        shutdown(&mut c, &kept).await.unwrap();
        d.terminate();
        d.assert_nothing_left();
    })
    .await
}

/// The caller of a pod shim's StartSandbox hangs up while the holder starts (containerd, whose
/// `shim` sandboxer calls the shim directly, killed: ttrpc cancels the handlers of a connection
/// that breaks): the start completes and is recorded all the same, so the next Start finds the
/// one holder instead of starting a second, and Shutdown leaves none.
#[tokio::test]
async fn a_start_whose_caller_went_away_completes() {
    bounded(async {
        let mut d = Daemon::with_slow_holder(Duration::from_millis(500));
        let mut c = d.client().await;
        let id = d.id("hungup");
        create(&mut c, &id).await.unwrap();
        let address = status(&mut c, &id).await.unwrap().address;
        // A caller of its own, on a runtime of its own that goes away while the holder starts:
        // dropping the runtime closes the connection under the pending request.
        let caller = {
            let (address, id) = (address.clone(), id.clone());
            std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                rt.block_on(async {
                    let shim = podshim_sandboxer::shim::PodShim::connect(
                        address.trim_start_matches("ttrpc+"),
                    )
                    .await
                    .unwrap();
                    tokio::time::timeout(Duration::from_millis(100), shim.start(&id))
                        .await
                        .is_err()
                })
            })
        };
        assert!(
            caller.join().unwrap(),
            "the start answered before its holder could start"
        );
        let s = start(&mut c, &id).await;
        assert_eq!(
            holders(&id),
            vec![s.pid as i32],
            "one holder, the one Start answered"
        );
        shutdown(&mut c, &id).await.unwrap();
        assert_eq!(holders(&id), Vec::<i32>::new());
        d.terminate();
        d.assert_nothing_left();
    })
    .await
}

/// A pod shim killed while its holder starts, before it could record the holder's pid: the
/// sandbox's teardown (the shim's `delete`, run for a dead shim) still finds that holder, by
/// its arguments, and removes it.
#[tokio::test]
async fn a_holder_its_dead_shim_never_recorded_is_removed() {
    bounded(async {
        let mut d = Daemon::with_slow_holder(Duration::from_millis(300));
        let mut c = d.client().await;
        let id = d.id("unrecorded");
        create(&mut c, &id).await.unwrap();
        let address = status(&mut c, &id).await.unwrap().address;
        let (shim_pid, _) = d.shims().remove(0);
        let caller = {
            let id = id.clone();
            tokio::spawn(async move {
                let shim =
                    podshim_sandboxer::shim::PodShim::connect(address.trim_start_matches("ttrpc+"))
                        .await
                        .unwrap();
                shim.start(&id).await.map(|_| ())
            })
        };
        d.until("the holder on its way", |_| !holders(&id).is_empty())
            .await;
        kill9(shim_pid);
        assert!(caller.await.unwrap().is_err(), "the dead shim answered");
        // The holder itself: no longer the sleeping script, and forked into the background.
        let up = |id: &str| {
            holders(id)
                .into_iter()
                .any(|pid| !cmdline(pid).starts_with("/bin/sh"))
        };
        d.until("the holder up", |_| up(&id)).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        // containerd's next call finds the shim dead: the sandbox is torn down.
        assert!(try_start(&mut c, &id).await.is_err());
        d.until("no holder left", |_| holders(&id).is_empty()).await;
        assert_eq!(status(&mut c, &id).await, Err(Code::NotFound));
        d.terminate();
        d.assert_nothing_left();
    })
    .await
}

fn cmdline(pid: i32) -> String {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
        .unwrap_or_default()
}

/// podshim-sandboxer killed at each step of a pod's Create, Start and teardown
/// (`podshim_sandboxer::crash`), then restarted as systemd does, and containerd doing what it
/// does then: a RunPodSandbox that failed is dropped from containerd's store without a call (the
/// daemon notices), a RemovePodSandbox that failed is retried. Nothing is left behind.
#[tokio::test]
async fn killed_at_every_step_of_a_pods_life_it_leaves_nothing() {
    use podshim_sandboxer::crash;
    bounded(async {
        for point in crash::POINTS {
            eprintln!("crash point {point}");
            let mut d = Daemon::with_crash_point(point);
            let containerd = FakeStore::serve(&d);
            let mut c = d.client().await;
            let id = d.id("crash");
            match point {
                crash::CREATE_RECORDED | crash::CREATE_ANSWERING => {
                    assert!(create(&mut c, &id).await.is_err());
                }
                crash::START_STARTED => {
                    create(&mut c, &id).await.unwrap();
                    assert!(try_start(&mut c, &id).await.is_err());
                }
                _ => {
                    create(&mut c, &id).await.unwrap();
                    start(&mut c, &id).await;
                    assert!(shutdown(&mut c, &id).await.is_err());
                }
            }
            d.restart_after_crash().await;
            let mut c = d.client().await;
            match point {
                crash::TEARDOWN_SHIM_GONE => shutdown(&mut c, &id).await.unwrap(),
                _ => containerd.drop_sandbox(&id),
            }
            d.until("the sandbox gone", |d| {
                d.shims().is_empty() && holders(&id).is_empty()
            })
            .await;
            while status(&mut c, &id).await != Err(Code::NotFound) {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            d.terminate();
            d.assert_nothing_left();
        }
    })
    .await
}

/// The shim binary upgraded (a new file renamed over the path) while the daemon was down with an
/// idle pool shim: the restarted daemon shuts that shim of the old build down and starts one of
/// the new, so no pod is handed the old build. (A SIGTERM stop already drains the pool.)
#[tokio::test]
async fn an_idle_shim_of_a_replaced_build_is_not_kept() {
    use std::os::unix::fs::MetadataExt;
    bounded(async {
        let mut d = Daemon::with_own_shim(1);
        d.client().await;
        d.until("an idle pool shim", |d| d.pool_shims_ready() == 1)
            .await;
        let old = d.pool_shims()[0];
        d.kill9();
        let shim = d.path().join(SHIM);
        let new = d.path().join(format!("{SHIM}.new"));
        std::fs::copy(&shim, &new).unwrap();
        std::fs::rename(&new, &shim).unwrap();
        let installed = std::fs::metadata(&shim).unwrap().ino();
        d.spawn();
        d.client().await;
        d.until("the old idle shim gone, a new one idle", |d| {
            let idle = d.pool_shims();
            idle.len() == 1 && idle[0] != old
        })
        .await;
        let running = std::fs::metadata(format!("/proc/{}/exe", d.pool_shims()[0]))
            .unwrap()
            .ino();
        assert_eq!(running, installed, "the new idle shim runs the new build");
        assert!(d.log().contains("runs a replaced"), "{}", d.log());
        d.terminate();
        d.assert_nothing_left();
    })
    .await
}

/// The daemon killed while a pool shim starts: after the restart the pool is full again.
#[tokio::test]
async fn killed_while_a_pool_shim_starts_the_pool_refills() {
    bounded(async {
        let mut d = Daemon::with_start_delay(1, Some(Duration::from_secs(1)));
        d.client().await;
        d.until("a pool shim starting", |d| !d.pool_shims().is_empty())
            .await;
        d.kill9();
        d.spawn();
        d.client().await;
        d.until("a pool shim ready after the restart", |d| {
            d.pool_shims_ready() >= 1
        })
        .await;
        d.terminate();
        d.assert_nothing_left();
    })
    .await
}

/// `GET /metrics` over plain TCP: the answer's head and its body.
async fn scrape(addr: &str) -> (String, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: podshim\r\n\r\n")
        .await
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    let (head, body) = out.split_once("\r\n\r\n").unwrap();
    (head.to_string(), body.to_string())
}

/// Requests are counted by method and code as containerd would see them answered, and what is
/// state (sandboxes, the pool, the store) is read at the scrape.
#[tokio::test]
async fn metrics_count_requests_and_show_the_pods() {
    bounded(async {
        let mut d = Daemon::with_metrics(1);
        let mut c = d.client().await;
        d.until("metrics served", |d| d.log().contains("metrics on "))
            .await;
        let log = d.log();
        let addr = log
            .lines()
            .find_map(|l| l.split_once("metrics on ").map(|(_, a)| a.trim()))
            .unwrap()
            .to_string();
        d.until("a pool shim ready", |d| d.pool_shims_ready() == 1)
            .await;
        let id = d.id("metrics");
        create(&mut c, &id).await.unwrap();
        assert_eq!(create(&mut c, "../x").await, Err(Code::InvalidArgument));
        start(&mut c, &id).await;
        status(&mut c, &id).await.unwrap();
        assert_eq!(status(&mut c, "nope").await, Err(Code::NotFound));
        // The pool refilled behind the adoption.
        d.until("the pool refilled", |d| d.pool_shims_ready() == 2)
            .await;

        let (head, body) = scrape(&addr).await;
        assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
        assert!(
            head.contains("\r\nContent-Type: text/plain; version=0.0.4\r\n"),
            "{head}"
        );
        let m = podshim_common::metrics::parse(&body).unwrap_or_else(|e| panic!("{e}\n{body}"));
        let get = |k: &str| *m.get(k).unwrap_or_else(|| panic!("no {k} in\n{body}"));
        let requests = |method: &str, code: &str| {
            get(&format!(
                "podshim_sandboxer_requests_total{{method=\"{method}\",code=\"{code}\"}}"
            ))
        };
        assert_eq!(requests("Create", "OK"), 1.0);
        assert_eq!(requests("Create", "InvalidArgument"), 1.0);
        assert_eq!(requests("Start", "OK"), 1.0);
        assert_eq!(requests("Status", "OK"), 1.0);
        assert_eq!(requests("Status", "NotFound"), 1.0);
        let total: f64 = m
            .iter()
            .filter(|(k, _)| k.starts_with("podshim_sandboxer_requests_total{"))
            .map(|(_, v)| v)
            .sum();
        assert_eq!(total, 5.0, "{body}");
        assert_eq!(
            get("podshim_sandboxer_request_seconds_count{method=\"Create\"}"),
            2.0
        );
        assert_eq!(
            get("podshim_sandboxer_request_seconds_bucket{method=\"Status\",le=\"+Inf\"}"),
            2.0
        );
        assert_eq!(get("podshim_sandboxer_sandboxes{state=\"started\"}"), 1.0);
        assert_eq!(get("podshim_sandboxer_pool_idle"), 1.0);
        assert_eq!(get("podshim_sandboxer_pool_adoptions_total"), 1.0);
        assert!(get("podshim_sandboxer_store_bytes") > 0.0);

        stop(&mut c, &id).await.unwrap();
        shutdown(&mut c, &id).await.unwrap();
        let (_, body) = scrape(&addr).await;
        let m = podshim_common::metrics::parse(&body).unwrap();
        assert!(
            !m.keys()
                .any(|k| k.starts_with("podshim_sandboxer_sandboxes{")),
            "{body}"
        );
        assert_eq!(
            m["podshim_sandboxer_requests_total{method=\"Shutdown\",code=\"OK\"}"],
            1.0
        );
        d.terminate();
        d.assert_nothing_left();
    })
    .await
}

/// `podshim-sandboxer check` on this case's configuration: exit code and what it printed.
fn check(d: &Daemon) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_podshim-sandboxer"))
        .arg("check")
        .arg("--config")
        .arg(&d.config)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    (out.status.code().unwrap_or(-1), text)
}

/// `check` reports what a restart would find, beside a live daemon or without one: records
/// without shims, shims without records, bundles without records; and changes nothing.
#[tokio::test]
async fn check_reports_what_a_restart_would_find() {
    bounded(async {
        let mut d = Daemon::new(1);
        let mut c = d.client().await;
        d.until("a pool shim ready", |d| d.pool_shims_ready() == 1)
            .await;
        let id = d.id("check");
        create(&mut c, &id).await.unwrap();
        start(&mut c, &id).await;
        d.until("the pool refilled", |d| d.pool_shims_ready() == 2)
            .await;
        // Beside the running daemon, which holds the store open.
        let (code, out) = check(&d);
        assert_eq!(code, 0, "{out}");
        assert!(out.contains("nothing to report"), "{out}");

        d.kill9();
        let stray = d.path().join("state/bundles").join(NS).join("stray");
        std::fs::create_dir_all(&stray).unwrap();
        let store = Store::open(&d.path().join("state")).unwrap();
        let record = store
            .sandboxes()
            .unwrap()
            .into_iter()
            .find(|r| r.sandbox_id == id)
            .unwrap();
        store.remove_sandbox(NS, &id).unwrap();
        drop(store);
        let (code, out) = check(&d);
        assert_eq!(code, 1, "{out}");
        let bundle = record.shim.bundle.display().to_string();
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 3, "{out}");
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with("shim pid ") && l.contains(&bundle)),
            "{out}"
        );
        assert!(
            lines.contains(&format!("bundle {bundle}: no record names it").as_str()),
            "{out}"
        );
        assert!(
            lines.contains(&format!("bundle {}: no record names it", stray.display()).as_str()),
            "{out}"
        );

        // The record back, its shim killed.
        Store::open(&d.path().join("state"))
            .unwrap()
            .put_sandbox(&record)
            .unwrap();
        std::fs::remove_dir(&stray).unwrap();
        // (Adopted from the pool: its command line names the pool id, not the sandbox.)
        assert!(d.shims().iter().any(|p| p.0 == record.shim.pid as i32));
        kill9(record.shim.pid as i32);
        d.until("the pod's shim gone", |d| {
            !d.shims().iter().any(|p| p.0 == record.shim.pid as i32)
        })
        .await;
        let (code, out) = check(&d);
        assert_eq!(code, 1, "{out}");
        assert_eq!(
            out,
            format!(
                "sandbox {NS}/{id}: recorded, its shim (pid {}, {}) is not running\n",
                record.shim.pid, record.shim.address
            )
        );
        // Nothing was changed: the restarted daemon finds the same (and cleans the pod up).
        d.spawn();
        let mut c = d.client().await;
        assert_eq!(status(&mut c, &id).await.unwrap().state, "SANDBOX_NOTREADY");
        shutdown(&mut c, &id).await.unwrap();
        d.terminate();
        d.assert_nothing_left();
    })
    .await
}

//! The OCI runtime binary (runc by default, crun or any runc-compatible binary by config).
//!
//! The trait is the seam the task service is tested through; [`RuncCli`] is the real thing.

use std::{
    ffi::OsString,
    os::fd::OwnedFd,
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use async_trait::async_trait;
use log::debug;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::unix::pipe,
};

use crate::{
    error::{Error, Result},
    exec_helper::{ExecHelper, Helped, HelperExec},
    reaper::reaper,
    stdio::ChildStdio,
};

/// A runtime's answer larger than this is cut: `ps` of a huge container is the only big one.
const MAX_OUTPUT: u64 = 16 * 1024 * 1024;

pub struct CreateOpts<'a> {
    pub id: &'a str,
    pub bundle: &'a Path,
    pub stdio: ChildStdio,
    pub console_socket: Option<&'a Path>,
    pub systemd_cgroup: bool,
    pub no_pivot_root: bool,
    pub no_new_keyring: bool,
}

pub struct ExecOpts<'a> {
    pub id: &'a str,
    pub exec_id: &'a str,
    pub bundle: &'a Path,
    /// The OCI `Process` JSON containerd sent.
    pub process: &'a [u8],
    pub stdio: ChildStdio,
    pub console_socket: Option<&'a Path>,
    /// The container's init, which the exec helper finds the namespaces and cgroups through.
    pub init_pid: u32,
}

/// `runtime checkpoint` of a running container, which keeps running (CRI's and containerd's
/// default): CRIU's images go to `image_path`, its logs (`dump.log`) to `work_path`.
pub struct CheckpointOpts<'a> {
    pub id: &'a str,
    pub image_path: &'a Path,
    pub work_path: &'a Path,
}

#[async_trait]
pub trait OciRuntime: Send + Sync {
    /// Creates the container and returns its init pid (blocked until `start`).
    async fn create(&self, opts: CreateOpts<'_>) -> Result<u32>;
    async fn start(&self, id: &str) -> Result<()>;
    /// Starts an extra process in the container and returns its pid.
    async fn exec(&self, opts: ExecOpts<'_>) -> Result<u32>;
    async fn kill(&self, id: &str, signal: u32, all: bool) -> Result<()>;
    async fn delete(&self, id: &str, force: bool) -> Result<()>;
    async fn pause(&self, id: &str) -> Result<()>;
    async fn resume(&self, id: &str) -> Result<()>;
    /// `resources` is the OCI `LinuxResources` JSON.
    async fn update(&self, id: &str, resources: &[u8]) -> Result<()>;
    async fn ps(&self, id: &str) -> Result<Vec<u32>>;
    async fn checkpoint(&self, opts: CheckpointOpts<'_>) -> Result<()>;
}

pub struct RuncCli {
    binary: String,
    root: PathBuf,
    /// Execs go to this helper first, and to `binary` where it declines.
    exec_helper: Option<ExecHelper>,
}

struct Output {
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    status: u32,
}

impl RuncCli {
    /// `root` already includes the containerd namespace.
    pub fn new(binary: impl Into<String>, root: impl Into<PathBuf>) -> Self {
        Self {
            binary: binary.into(),
            root: root.into(),
            exec_helper: None,
        }
    }

    pub fn with_exec_helper(mut self, helper: Option<ExecHelper>) -> Self {
        self.exec_helper = helper;
        self
    }

    /// Every runtime command dies with the shim: a `create` that went on without it would make
    /// a container nobody manages, in a bundle containerd is removing (runc makes its mount
    /// points in the bare rootfs directory, and the bundle then cannot be removed).
    fn command(&self, log: Option<&Path>) -> Command {
        let mut cmd = Command::new(&self.binary);
        crate::sys::kill_with_parent(&mut cmd);
        cmd.arg("--root").arg(&self.root);
        if let Some(log) = log {
            cmd.arg("--log").arg(log).args(["--log-format", "json"]);
        }
        cmd
    }

    fn fail(&self, command: &'static str, message: impl Into<String>) -> Error {
        Error::Runtime {
            binary: self.binary.clone(),
            command,
            message: message.into(),
        }
    }

    fn spawn(&self, command: &'static str, cmd: &mut Command) -> Result<std::process::Child> {
        debug!("{} {:?}", self.binary, cmd.get_args().collect::<Vec<_>>());
        cmd.spawn().map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                Error::FailedPrecondition(format!(
                    "OCI runtime binary {:?} not found in PATH",
                    self.binary
                ))
            } else {
                self.fail(command, e.to_string())
            }
        })
    }

    /// Runs a command whose own stdio the shim reads, e.g. `kill`, `ps`, `update`.
    async fn run(
        &self,
        command: &'static str,
        args: &[OsString],
        input: Option<&[u8]>,
    ) -> Result<Output> {
        let mut cmd = self.command(None);
        cmd.args(args)
            .stdin(if input.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let child = self.spawn(command, &mut cmd)?;
        collect(child, input)
            .await
            .map_err(|e| self.fail(command, e.to_string()))
    }

    async fn run_ok(
        &self,
        command: &'static str,
        args: &[OsString],
        input: Option<&[u8]>,
    ) -> Result<Vec<u8>> {
        let out = self.run(command, args, input).await?;
        if out.status != 0 {
            return Err(self.fail(command, runtime_message(&out.stderr, out.status)));
        }
        Ok(out.stdout)
    }

    /// Runs `create`/`exec`, whose stdio belongs to the container: errors come from `--log`.
    async fn run_with_container_stdio(
        &self,
        command: &'static str,
        log: &Path,
        args: Vec<OsString>,
        stdio: ChildStdio,
    ) -> Result<()> {
        // Stale lines from an earlier call must not be reported as this call's error.
        let _ = std::fs::remove_file(log);
        let mut cmd = self.command(Some(log));
        cmd.args(args);
        stdio.set_on(&mut cmd);
        let child = self.spawn(command, &mut cmd)?;
        let exit = reaper().subscribe(child.id() as i32);
        // The container's ends now live in the runtime (and the process); ours must close so
        // the shim sees EOF when the process is done.
        drop(cmd);
        let exit = exit
            .await
            .map_err(|_| self.fail(command, "reaper dropped the exit"))?;
        if exit.status != 0 {
            let log_text = std::fs::read(log).unwrap_or_default();
            return Err(self.fail(command, log_error(&log_text, exit.status)));
        }
        Ok(())
    }

    /// Starts the exec through the helper, or through `runtime exec --detach` where there is
    /// none or the helper declines; its pid is then in `pid_file`.
    async fn exec_started(
        &self,
        opts: ExecOpts<'_>,
        process_file: &Path,
        pid_file: &Path,
        log: &Path,
    ) -> Result<()> {
        let mut stdio = opts.stdio;
        if let Some(helper) = &self.exec_helper {
            let helped = helper
                .exec(HelperExec {
                    id: opts.id,
                    bundle: opts.bundle,
                    process_file,
                    pid_file,
                    log,
                    init_pid: opts.init_pid,
                    console_socket: opts.console_socket,
                    stdio,
                })
                .await?;
            match helped {
                Helped::Started => return Ok(()),
                Helped::NeedsRuntime(back) => stdio = back,
            }
        }
        let mut args = vec![
            OsString::from("exec"),
            "--detach".into(),
            "--process".into(),
            process_file.into(),
            "--pid-file".into(),
            pid_file.into(),
        ];
        if let Some(sock) = opts.console_socket {
            args.extend(["--console-socket".into(), sock.into()]);
        }
        args.push(opts.id.into());
        self.run_with_container_stdio("exec", log, args, stdio)
            .await
    }

    /// `list`, outside a serving shim (the `delete` action): every container of this runtime
    /// root, with its bundle.
    pub fn list_blocking(&self) -> Result<Vec<ListedContainer>> {
        let out = self
            .command(None)
            .args(["list", "--format", "json"])
            .stdin(Stdio::null())
            .output()
            .map_err(|e| self.fail("list", e.to_string()))?;
        if !out.status.success() {
            let status = out.status.code().unwrap_or(1) as u32;
            return Err(self.fail("list", runtime_message(&out.stderr, status)));
        }
        parse_list(&out.stdout).map_err(|e| self.fail("list", e))
    }

    /// `delete --force` outside a serving shim (the `delete` action), where nothing else reaps.
    pub fn force_delete_blocking(&self, id: &str) -> Result<()> {
        let out = self
            .command(None)
            .args(["delete", "--force", id])
            .stdin(Stdio::null())
            .output()
            .map_err(|e| self.fail("delete", e.to_string()))?;
        if out.status.success() || is_not_exist(&out.stderr) {
            Ok(())
        } else {
            let status = out.status.code().unwrap_or(1) as u32;
            Err(self.fail("delete", runtime_message(&out.stderr, status)))
        }
    }
}

/// One entry of `runc list --format json`.
#[derive(Debug, PartialEq, Eq, serde::Deserialize)]
pub struct ListedContainer {
    pub id: String,
    pub bundle: PathBuf,
    /// The spec's annotations as the runtime stored them at create (runc has them; a runtime
    /// that omits them leaves this empty).
    #[serde(default)]
    pub annotations: std::collections::HashMap<String, String>,
}

/// `[--systemd-cgroup] create --bundle B --pid-file P [--console-socket S] [--no-pivot]
/// [--no-new-keyring] ID`, as containerd's runc shim builds it.
fn create_args(opts: &CreateOpts<'_>, pid_file: &Path) -> Vec<OsString> {
    let mut args = Vec::new();
    if opts.systemd_cgroup {
        args.push("--systemd-cgroup".into());
    }
    args.extend([
        OsString::from("create"),
        "--bundle".into(),
        opts.bundle.into(),
        "--pid-file".into(),
        pid_file.into(),
    ]);
    if let Some(sock) = opts.console_socket {
        args.extend(["--console-socket".into(), sock.into()]);
    }
    if opts.no_pivot_root {
        args.push("--no-pivot".into());
    }
    if opts.no_new_keyring {
        args.push("--no-new-keyring".into());
    }
    args.push(opts.id.into());
    args
}

/// Feeds `input` to a child, reads its stdout and stderr (each up to `MAX_OUTPUT`) and waits for
/// its exit through the reaper.
async fn collect(mut child: std::process::Child, input: Option<&[u8]>) -> std::io::Result<Output> {
    let exit = reaper().subscribe(child.id() as i32);
    let stdin = child.stdin.take().map(OwnedFd::from);
    let stdout = child.stdout.take().map(OwnedFd::from);
    let stderr = child.stderr.take().map(OwnedFd::from);
    let write_input = async {
        if let (Some(fd), Some(data)) = (stdin, input) {
            let mut tx = pipe::Sender::from_owned_fd(fd)?;
            tx.write_all(data).await?;
        }
        Ok::<_, std::io::Error>(())
    };
    let read = |fd: Option<OwnedFd>| async move {
        let mut buf = Vec::new();
        if let Some(fd) = fd {
            let rx = pipe::Receiver::from_owned_fd(fd)?;
            rx.take(MAX_OUTPUT).read_to_end(&mut buf).await?;
        }
        Ok::<_, std::io::Error>(buf)
    };
    let (written, out, err) = tokio::join!(write_input, read(stdout), read(stderr));
    let exit = exit
        .await
        .map_err(|_| std::io::Error::other("reaper dropped the exit"))?;
    written?;
    Ok(Output {
        stdout: out?,
        stderr: err?,
        status: exit.status,
    })
}

/// `ps`'s answer: the pids, NotFound for a container the runtime does not know (containerd's
/// loader cleans up after a task whose `Pids` says so, and on 2.3 keeps it on any other
/// error), or the runtime's message. runc prints `null` for an empty list.
fn ps_answer(id: &str, out: &Output, fail: impl FnOnce(String) -> Error) -> Result<Vec<u32>> {
    if out.status != 0 {
        if is_not_exist(&out.stderr) {
            return Err(Error::NotFound(format!("container {id} does not exist")));
        }
        return Err(fail(runtime_message(&out.stderr, out.status)));
    }
    let pids: Option<Vec<u32>> =
        serde_json::from_slice(&out.stdout).map_err(|e| fail(format!("unreadable output: {e}")))?;
    Ok(pids.unwrap_or_default())
}

/// runc prints `null` for an empty root.
fn parse_list(stdout: &[u8]) -> std::result::Result<Vec<ListedContainer>, String> {
    let listed: Option<Vec<ListedContainer>> =
        serde_json::from_slice(stdout).map_err(|e| format!("unreadable answer: {e}"))?;
    Ok(listed.unwrap_or_default())
}

fn read_pid(path: &Path) -> Result<u32> {
    let text =
        std::fs::read_to_string(path).map_err(Error::io(format!("read {}", path.display())))?;
    text.trim()
        .parse()
        .map_err(|_| Error::Other(format!("{} holds no pid: {text:?}", path.display())))
}

/// runc writes `does not exist` (crun: `No such file`) for an unknown container.
fn is_not_exist(stderr: &[u8]) -> bool {
    let s = String::from_utf8_lossy(stderr);
    s.contains("does not exist") || s.contains("No such file") || s.contains("not found")
}

fn runtime_message(stderr: &[u8], status: u32) -> String {
    let text = String::from_utf8_lossy(stderr);
    let text = text.trim();
    if text.is_empty() {
        format!("exit status {status}")
    } else {
        // runc prints logrus lines; the msg="..." part is what a person wants to read.
        text.lines()
            .rev()
            .find_map(|l| {
                l.split_once("msg=\"")
                    .map(|(_, m)| m.trim_end_matches('"').replace("\\\"", "\""))
            })
            .unwrap_or_else(|| text.to_string())
    }
}

/// The last error-level message of a runtime's JSON log (`--log-format json`).
fn log_error(log: &[u8], status: u32) -> String {
    #[derive(serde::Deserialize)]
    struct Line {
        level: String,
        msg: String,
    }
    String::from_utf8_lossy(log)
        .lines()
        .rev()
        .filter_map(|l| serde_json::from_str::<Line>(l).ok())
        .find(|l| l.level == "error" || l.level == "fatal")
        .map(|l| l.msg)
        .unwrap_or_else(|| format!("exit status {status}"))
}

fn os(args: &[&str]) -> Vec<OsString> {
    args.iter().map(OsString::from).collect()
}

#[async_trait]
impl OciRuntime for RuncCli {
    async fn create(&self, opts: CreateOpts<'_>) -> Result<u32> {
        let pid_file = opts.bundle.join("init.pid");
        let args = create_args(&opts, &pid_file);
        let log = opts.bundle.join("log.json");
        self.run_with_container_stdio("create", &log, args, opts.stdio)
            .await?;
        read_pid(&pid_file)
    }

    async fn start(&self, id: &str) -> Result<()> {
        self.run_ok("start", &os(&["start", id]), None)
            .await
            .map(drop)
    }

    async fn exec(&self, opts: ExecOpts<'_>) -> Result<u32> {
        let process_file = opts.bundle.join(format!("{}.process.json", opts.exec_id));
        let pid_file = opts.bundle.join(format!("{}.pid", opts.exec_id));
        let log = opts.bundle.join(format!("{}.log.json", opts.exec_id));
        std::fs::write(&process_file, opts.process)
            .map_err(Error::io(format!("write {}", process_file.display())))?;
        let result = self
            .exec_started(opts, &process_file, &pid_file, &log)
            .await;
        let pid = result.and_then(|()| read_pid(&pid_file));
        for f in [&process_file, &pid_file, &log] {
            let _ = std::fs::remove_file(f);
        }
        pid
    }

    async fn kill(&self, id: &str, signal: u32, all: bool) -> Result<()> {
        let sig = signal.to_string();
        let mut args = vec!["kill"];
        if all {
            args.push("--all");
        }
        args.extend([id, sig.as_str()]);
        let out = self.run("kill", &os(&args), None).await?;
        if out.status == 0 {
            return Ok(());
        }
        let msg = runtime_message(&out.stderr, out.status);
        if msg.contains("not running") || msg.contains("process already finished") {
            return Err(Error::NotFound(format!("process already finished: {msg}")));
        }
        if is_not_exist(&out.stderr) {
            return Err(Error::NotFound(format!("container {id} does not exist")));
        }
        Err(self.fail("kill", msg))
    }

    async fn delete(&self, id: &str, force: bool) -> Result<()> {
        let mut args = vec!["delete"];
        if force {
            args.push("--force");
        }
        args.push(id);
        let out = self.run("delete", &os(&args), None).await?;
        if out.status == 0 || is_not_exist(&out.stderr) {
            Ok(())
        } else {
            Err(self.fail("delete", runtime_message(&out.stderr, out.status)))
        }
    }

    async fn pause(&self, id: &str) -> Result<()> {
        self.run_ok("pause", &os(&["pause", id]), None)
            .await
            .map(drop)
    }

    async fn resume(&self, id: &str) -> Result<()> {
        self.run_ok("resume", &os(&["resume", id]), None)
            .await
            .map(drop)
    }

    async fn update(&self, id: &str, resources: &[u8]) -> Result<()> {
        self.run_ok(
            "update",
            &os(&["update", "--resources", "-", id]),
            Some(resources),
        )
        .await
        .map(drop)
    }

    async fn ps(&self, id: &str) -> Result<Vec<u32>> {
        let out = self
            .run("ps", &os(&["ps", "--format", "json", id]), None)
            .await?;
        ps_answer(id, &out, |m| self.fail("ps", m))
    }

    async fn checkpoint(&self, opts: CheckpointOpts<'_>) -> Result<()> {
        let mut args: Vec<OsString> = os(&["checkpoint", "--image-path"]);
        args.push(opts.image_path.into());
        args.push("--work-path".into());
        args.push(opts.work_path.into());
        args.extend(os(&["--leave-running", opts.id]));
        let out = self.run("checkpoint", &args, None).await?;
        if out.status == 0 {
            return Ok(());
        }
        let said = runtime_message(&out.stderr, out.status);
        // runc only passes on what CRIU wrote; whether CRIU can work here at all says why.
        match self.criu_refusal().await {
            Some(why) => Err(Error::FailedPrecondition(format!(
                "checkpoint of {} needs CRIU, and {why} ({} said: {said})",
                opts.id, self.binary
            ))),
            None => Err(self.fail("checkpoint", said)),
        }
    }
}

impl RuncCli {
    /// Why CRIU cannot checkpoint on this node, if it cannot: not on PATH, or `criu check`
    /// failing (a CRIU older than the kernel, a kernel without what it needs); its last error
    /// line says which.
    #[cold]
    async fn criu_refusal(&self) -> Option<String> {
        let mut cmd = Command::new("criu");
        cmd.arg("check")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let child = match cmd.spawn() {
            Ok(child) => child,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Some("`criu` is not on PATH (Debian: apt install criu)".into())
            }
            Err(e) => return Some(format!("`criu check` could not run: {e}")),
        };
        let out = collect(child, None).await.ok()?;
        if out.status == 0 {
            return None;
        }
        let text = String::from_utf8_lossy(&out.stderr) + String::from_utf8_lossy(&out.stdout);
        let last = text
            .lines()
            .rev()
            .find(|l| l.contains("Error"))
            .unwrap_or("");
        Some(format!(
            "`criu check` fails on this kernel (exit {}): {}",
            out.status,
            last.trim()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A runtime's log is its own output, any bytes: the message is found or the status named.
    #[test]
    fn fuzz_the_runtime_log_reader() {
        let seed = br#"{"level":"warning","msg":"x","time":"t"}
{"level":"error","msg":"container_linux.go:380: starting container process caused: exec: \"nope\"","time":"t"}"#;
        podshim_common::fuzz::run("runc_log", &[seed], |b| {
            assert!(!log_error(b, 1).is_empty());
        });
    }

    #[test]
    fn create_passes_the_node_s_runtime_options() {
        let mut opts = CreateOpts {
            id: "c1",
            bundle: Path::new("/b"),
            stdio: ChildStdio::default(),
            console_socket: None,
            systemd_cgroup: false,
            no_pivot_root: false,
            no_new_keyring: false,
        };
        let words = |opts: &CreateOpts<'_>| {
            create_args(opts, Path::new("/b/init.pid"))
                .iter()
                .map(|a| a.to_string_lossy().into_owned())
                .collect::<Vec<_>>()
                .join(" ")
        };
        assert_eq!(words(&opts), "create --bundle /b --pid-file /b/init.pid c1");
        opts.systemd_cgroup = true;
        opts.no_pivot_root = true;
        opts.no_new_keyring = true;
        opts.console_socket = Some(Path::new("/s"));
        assert_eq!(
            words(&opts),
            "--systemd-cgroup create --bundle /b --pid-file /b/init.pid --console-socket /s \
             --no-pivot --no-new-keyring c1"
        );
    }

    #[test]
    fn list_reads_ids_and_bundles() {
        let out = br#"[{"ociVersion":"1.0.2","id":"c1","pid":42,"status":"running","bundle":"/run/containerd/io.containerd.runtime.v2.task/k8s.io/c1","rootfs":"/x","created":"2026-12-03T07:00:00Z","annotations":{"io.kubernetes.cri.sandbox-id":"p1"},"owner":"root"},
{"id":"c2","pid":43,"status":"running","bundle":"/b/c2"}]"#;
        assert_eq!(
            parse_list(out).unwrap(),
            [
                ListedContainer {
                    id: "c1".into(),
                    bundle: "/run/containerd/io.containerd.runtime.v2.task/k8s.io/c1".into(),
                    annotations: [("io.kubernetes.cri.sandbox-id".to_string(), "p1".to_string())]
                        .into(),
                },
                ListedContainer {
                    id: "c2".into(),
                    bundle: "/b/c2".into(),
                    annotations: Default::default(),
                },
            ]
        );
        assert_eq!(parse_list(b"null\n").unwrap(), []);
        assert!(parse_list(b"runc: oops").is_err());
    }

    #[test]
    fn log_error_picks_last_error_line() {
        let log = br#"{"level":"warning","msg":"w","time":"t"}
{"level":"error","msg":"runc create failed: unable to start container process: exec: \"nope\": executable file not found in $PATH","time":"t"}
"#;
        assert!(log_error(log, 1).contains("executable file not found"));
        assert_eq!(log_error(b"", 2), "exit status 2");
    }

    #[test]
    fn runtime_message_extracts_msg() {
        let err =
            br#"time="2026-01-01T00:00:00Z" level=error msg="container \"x\" does not exist""#;
        assert_eq!(runtime_message(err, 1), "container \"x\" does not exist");
        assert_eq!(runtime_message(b"plain failure\n", 1), "plain failure");
        assert!(is_not_exist(err));
    }

    /// containerd's loader cleans up after a task whose `Pids` answers NotFound and (2.3) keeps
    /// it on any other error: `ps` tells "does not know the container" from "could not tell".
    #[test]
    fn ps_tells_an_unknown_container_from_a_failure() {
        let answer = |status: u32, stdout: &[u8], stderr: &[u8]| {
            let out = Output {
                stdout: stdout.to_vec(),
                stderr: stderr.to_vec(),
                status,
            };
            ps_answer("c1", &out, Error::Other)
        };
        let unknown = br#"level=error msg="container \"c1\" does not exist""#;
        assert!(matches!(answer(1, b"", unknown), Err(Error::NotFound(_))));
        assert!(matches!(
            answer(1, b"", b"resource temporarily unavailable"),
            Err(Error::Other(m)) if m == "resource temporarily unavailable"
        ));
        assert_eq!(answer(0, b"[7,8]\n", b"").unwrap(), [7, 8]);
        assert!(answer(0, b"null\n", b"").unwrap().is_empty());
        assert!(matches!(answer(0, b"oops", b""), Err(Error::Other(_))));
    }
}

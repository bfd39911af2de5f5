//! The pod's namespace holder: the one process of a pause-less pod that is not a container.
//!
//! CRI builds every container's spec from `/proc/<sandbox pid>/ns/{net,ipc,uts[,pid]}`, so the
//! pid StartSandbox returns must be a live process sitting in the pod's network namespace and
//! holding its IPC and UTS (and, for shareProcessNamespace, PID) namespaces. The shim starts
//! `podshim-holder`, a small static binary installed next to it (or re-executes itself where that
//! is missing): no image, no OCI runtime call. The holder sets the pod's hostname and sysctls
//! inside those namespaces, then sleeps in `sigwait`, reaping orphans when it is the pod's PID 1.

use std::{
    ffi::OsString,
    fs::File,
    io::Write,
    os::{fd::OwnedFd, unix::process::CommandExt},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::SystemTime,
};

use log::warn;
use nix::{
    errno::Errno,
    sched::{setns, unshare, CloneFlags},
    sys::{
        signal::{kill, SigSet, Signal},
        wait::{waitpid, WaitPidFlag, WaitStatus},
    },
    unistd::{dup2_stderr, dup2_stdin, dup2_stdout, sethostname, ForkResult, Pid},
};
use tokio::{io::AsyncReadExt, net::unix::pipe, sync::watch};

use crate::{
    error::{Error, Result},
    reaper::{reaper, Exit},
    sys,
};

/// First argument of a holder process, whichever binary runs it (see main.rs); with the sandbox
/// id after it, it tells a holder from a process that reused its pid.
pub const HOLDER_ARG: &str = "-podshim-sandbox-holder";
/// The holder binary's file name, beside the shim's; also what `ps` shows for a holder.
pub const HOLDER_BIN: &str = "podshim-holder";

/// The namespaces and settings a holder applies before it sleeps.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HolderSpec {
    pub sandbox_id: String,
    /// The network namespace CRI made for the pod; `None` for a hostNetwork pod.
    pub netns: Option<PathBuf>,
    pub new_ipc: bool,
    pub new_uts: bool,
    pub new_pid: bool,
    pub hostname: String,
    pub sysctls: Vec<(String, String)>,
}

impl HolderSpec {
    fn to_args(&self) -> Vec<OsString> {
        let mut a: Vec<OsString> = vec![HOLDER_ARG.into(), self.sandbox_id.clone().into()];
        if let Some(ns) = &self.netns {
            a.extend(["--netns".into(), ns.clone().into_os_string()]);
        }
        for (flag, on) in [
            ("--ipc", self.new_ipc),
            ("--uts", self.new_uts),
            ("--pid", self.new_pid),
        ] {
            if on {
                a.push(flag.into());
            }
        }
        if !self.hostname.is_empty() {
            a.extend(["--hostname".into(), self.hostname.clone().into()]);
        }
        for (k, v) in &self.sysctls {
            a.extend(["--sysctl".into(), format!("{k}={v}").into()]);
        }
        a
    }

    /// Parses what `to_args` wrote (after the program name).
    pub fn from_args(args: &[OsString]) -> Result<Self> {
        let bad = |m: &str| Error::InvalidArgument(format!("holder arguments: {m}"));
        let mut it = args.iter().map(|a| a.to_string_lossy().into_owned());
        if it.next().as_deref() != Some(HOLDER_ARG) {
            return Err(bad("missing marker"));
        }
        let mut spec = HolderSpec {
            sandbox_id: it.next().ok_or_else(|| bad("missing sandbox id"))?,
            ..Default::default()
        };
        while let Some(a) = it.next() {
            let mut value = || it.next().ok_or_else(|| bad(&format!("{a} needs a value")));
            match a.as_str() {
                "--netns" => spec.netns = Some(PathBuf::from(value()?)),
                "--ipc" => spec.new_ipc = true,
                "--uts" => spec.new_uts = true,
                "--pid" => spec.new_pid = true,
                "--hostname" => spec.hostname = value()?,
                "--sysctl" => {
                    let kv = value()?;
                    let (k, v) = kv
                        .split_once('=')
                        .ok_or_else(|| bad("sysctl without '='"))?;
                    spec.sysctls.push((k.to_string(), v.to_string()));
                }
                other => return Err(bad(&format!("unknown argument {other}"))),
            }
        }
        Ok(spec)
    }
}

/// The file under /proc/sys that a sysctl name names (runc's rule: dots become slashes).
pub fn sysctl_path(name: &str) -> Result<PathBuf> {
    let rel = name.replace('.', "/");
    let ok = !rel.split('/').any(|seg| seg.is_empty() || seg == "..");
    if !ok {
        return Err(Error::InvalidArgument(format!(
            "invalid sysctl name {name:?}"
        )));
    }
    Ok(Path::new("/proc/sys").join(rel))
}

// ---------------------------------------------------------------------------------------------
// The holder process (runs before any async runtime or thread exists).

/// Entry point of `containerd-shim-podshim-v1 -podshim-sandbox-holder …`; never returns.
pub fn holder_main(args: &[OsString]) -> ! {
    sys::close_inherited_fds();
    match HolderSpec::from_args(args).and_then(|spec| hold(&spec)) {
        Ok(never) => match never {},
        Err(e) => {
            // The shim reads this from our stderr and names it in CreateSandbox's error.
            eprintln!("{e}");
            std::process::exit(1)
        }
    }
}

fn hold(spec: &HolderSpec) -> Result<std::convert::Infallible> {
    if let Some(path) = &spec.netns {
        let ns = File::open(path).map_err(Error::io(format!("open netns {}", path.display())))?;
        setns(ns, CloneFlags::CLONE_NEWNET)
            .map_err(Error::sys(format!("join netns {}", path.display())))?;
    }
    let mut flags = CloneFlags::empty();
    flags.set(CloneFlags::CLONE_NEWIPC, spec.new_ipc);
    flags.set(CloneFlags::CLONE_NEWUTS, spec.new_uts);
    flags.set(CloneFlags::CLONE_NEWPID, spec.new_pid);
    unshare(flags).map_err(Error::sys("unshare the pod's namespaces"))?;
    if spec.new_uts && !spec.hostname.is_empty() {
        sethostname(&spec.hostname).map_err(Error::sys("set the pod's hostname"))?;
    }
    // net.* and IPC sysctls are per namespace: /proc/sys resolves them for the writer's.
    for (name, value) in &spec.sysctls {
        let path = sysctl_path(name)?;
        std::fs::write(&path, value).map_err(Error::io(format!("sysctl {name}={value}")))?;
    }
    // Blocked before the fork so that no signal is lost between fork and sigwait.
    let mut signals = SigSet::empty();
    for s in [Signal::SIGTERM, Signal::SIGINT, Signal::SIGCHLD] {
        signals.add(s);
    }
    signals
        .thread_block()
        .map_err(Error::sys("block signals"))?;
    // The fork puts the holder into the new PID namespace (unshare moves only children there)
    // and lets the parent report its pid and exit, which re-parents it to the shim.
    match sys::fork_single_threaded().map_err(Error::sys("fork"))? {
        ForkResult::Parent { child } => {
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "{child}");
            let _ = out.flush();
            std::process::exit(0)
        }
        ForkResult::Child => {}
    }
    // Let go of the shim's pipes so that it sees EOF once the parent has reported.
    if let Ok(null) = File::options().read(true).write(true).open("/dev/null") {
        let _ = dup2_stdin(&null);
        let _ = dup2_stdout(&null);
        let _ = dup2_stderr(&null);
    }
    loop {
        match signals.wait() {
            Ok(Signal::SIGCHLD) => reap_orphans(),
            Ok(_) => std::process::exit(0),
            Err(_) => continue,
        }
    }
}

/// As the pod's PID 1 (shareProcessNamespace), orphans of every container end up here.
fn reap_orphans() {
    loop {
        match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) | Err(Errno::ECHILD) => return,
            Ok(_) | Err(Errno::EINTR) => continue,
            Err(_) => return,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The shim's side.

/// A running holder and its exit, once the reaper has seen it.
pub struct Holder {
    pub pid: u32,
    pub exit: watch::Receiver<Option<Exit>>,
}

impl Holder {
    /// Starts a holder for `spec`; returns when it sits in the pod's namespaces.
    pub async fn spawn(spec: &HolderSpec) -> Result<Holder> {
        let mut cmd = Command::new(holder_program(std::env::current_exe().ok()));
        cmd.arg0(HOLDER_BIN)
            .args(spec.to_args())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().map_err(Error::io("start the sandbox holder"))?;
        let parent_exit = reaper().subscribe(child.id() as i32);
        let out = child.stdout.take().map(OwnedFd::from);
        let err = child.stderr.take().map(OwnedFd::from);
        let (stdout, stderr) = tokio::try_join!(read_all(out), read_all(err))?;
        let status = parent_exit
            .await
            .map_err(|_| Error::Other("sandbox holder: exit not reported".into()))?
            .status;
        let stderr = String::from_utf8_lossy(&stderr).trim().to_string();
        if status != 0 {
            return Err(Error::FailedPrecondition(format!(
                "sandbox holder failed (status {status}): {stderr}"
            )));
        }
        let pid: u32 = std::str::from_utf8(&stdout)
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .ok_or_else(|| Error::Other(format!("sandbox holder reported no pid: {stderr}")))?;
        let exited = reaper().subscribe(pid as i32);
        let (tx, exit) = watch::channel(None);
        tokio::spawn(async move {
            let e = exited.await.unwrap_or(Exit {
                status: 255,
                at: SystemTime::now(),
            });
            let _ = tx.send(Some(e));
        });
        Ok(Holder { pid, exit })
    }

    pub fn exited(&self) -> Option<Exit> {
        *self.exit.borrow()
    }

    /// The holder keeps nothing worth a grace period: stop is a SIGKILL.
    pub fn kill(&self) {
        if self.exited().is_none() {
            if let Err(e) = kill(Pid::from_raw(self.pid as i32), Signal::SIGKILL) {
                if e != Errno::ESRCH {
                    warn!("kill sandbox holder {}: {e}", self.pid);
                }
            }
        }
    }

    pub async fn wait(&self) -> Exit {
        let mut rx = self.exit.clone();
        loop {
            if let Some(e) = *rx.borrow_and_update() {
                return e;
            }
            if rx.changed().await.is_err() {
                return rx.borrow().unwrap_or(Exit {
                    status: 255,
                    at: SystemTime::now(),
                });
            }
        }
    }
}

/// `podshim-holder` beside the shim's binary; else the shim itself, whose main turns into a
/// holder on HOLDER_ARG: a pod still starts, at ~600 kB more resident memory.
fn holder_program(shim_exe: Option<PathBuf>) -> PathBuf {
    // A shim whose binary was replaced on disk reads "<path> (deleted)"; the directory holds.
    if let Some(lean) = shim_exe.map(|exe| exe.with_file_name(HOLDER_BIN)) {
        if lean.is_file() {
            return lean;
        }
        warn!(
            "{} not found: the sandbox holder runs the shim's own binary",
            lean.display()
        );
    }
    PathBuf::from("/proc/self/exe")
}

async fn read_all(fd: Option<OwnedFd>) -> Result<Vec<u8>> {
    let mut buf = Vec::new();
    if let Some(fd) = fd {
        let mut rx = pipe::Receiver::from_owned_fd(fd).map_err(Error::io("holder pipe"))?;
        // A pid line or an error message; more is a holder gone wrong.
        (&mut rx)
            .take(64 * 1024)
            .read_to_end(&mut buf)
            .await
            .map_err(Error::io("read from the sandbox holder"))?;
    }
    Ok(buf)
}

/// True if `pid` is a holder of `sandbox_id` (not a process that reused its pid).
pub fn is_holder_of(pid: u32, sandbox_id: &str) -> bool {
    let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
        return false;
    };
    let mut args = cmdline.split(|&b| b == 0).skip(1);
    args.next() == Some(HOLDER_ARG.as_bytes()) && args.next() == Some(sandbox_id.as_bytes())
}

/// For `delete` after a shim died: the holder is the shim's orphan now, so just kill it.
pub fn kill_orphan(pid: u32, sandbox_id: &str) {
    if pid != 0 && is_holder_of(pid, sandbox_id) {
        let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn args_round_trip() {
        let spec = HolderSpec {
            sandbox_id: "pod1".into(),
            netns: Some("/var/run/netns/cni-1".into()),
            new_ipc: true,
            new_uts: true,
            new_pid: false,
            hostname: "web-0".into(),
            sysctls: vec![("net.ipv4.ip_forward".into(), "1".into())],
        };
        let mut args = spec.to_args();
        assert_eq!(HolderSpec::from_args(&args).unwrap(), spec);
        args.push("--bogus".into());
        assert!(HolderSpec::from_args(&args).is_err());
        assert!(HolderSpec::from_args(&[OsString::from("x")]).is_err());
    }

    #[test]
    fn holder_program_is_beside_the_shim_if_installed() {
        let dir = tempfile::tempdir().unwrap();
        let shim = dir.path().join("containerd-shim-podshim-v1");
        let fallback = PathBuf::from("/proc/self/exe");
        assert_eq!(holder_program(Some(shim.clone())), fallback);
        assert_eq!(holder_program(None), fallback);
        std::fs::write(dir.path().join(HOLDER_BIN), b"").unwrap();
        assert_eq!(holder_program(Some(shim)), dir.path().join(HOLDER_BIN));
        let replaced = dir.path().join("containerd-shim-podshim-v1 (deleted)");
        assert_eq!(holder_program(Some(replaced)), dir.path().join(HOLDER_BIN));
    }

    #[test]
    fn sysctl_names_stay_under_proc_sys() {
        assert_eq!(
            sysctl_path("net.ipv4.ip_unprivileged_port_start").unwrap(),
            Path::new("/proc/sys/net/ipv4/ip_unprivileged_port_start")
        );
        for bad in ["", "..", "net...x", "/etc/passwd", "net./..", "a..b"] {
            assert!(sysctl_path(bad).is_err(), "{bad:?} accepted");
        }
    }
}

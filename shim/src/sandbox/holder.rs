//! The shim's side of a pause-less pod's namespace holder (the holder itself is the
//! `podshim-holder` crate): the arguments it gets, starting it, its exit, killing it.

use std::{
    ffi::{CString, OsString},
    os::{
        fd::OwnedFd,
        unix::{ffi::OsStrExt, process::CommandExt},
    },
    path::PathBuf,
    process::{Command, Stdio},
    time::SystemTime,
};

use log::warn;
use nix::{
    errno::Errno,
    sys::signal::{kill, Signal},
    unistd::Pid,
};
use podshim_holder::args as holder_args;
use tokio::{io::AsyncReadExt, net::unix::pipe, sync::watch};

use crate::{
    error::{Error, Result},
    reaper::{reaper, Exit},
};

/// First argument of a holder process, whichever binary runs it (see main.rs); with the sandbox
/// id after it, it tells a holder from a process that reused its pid.
pub const HOLDER_ARG: &str = holder_args::MARKER;
/// The holder binary's file name, beside the shim's; also what `ps` shows for a holder.
pub const HOLDER_BIN: &str = podshim_holder::BINARY;

/// The namespaces and settings a holder applies before it sleeps.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HolderSpec {
    pub sandbox_id: String,
    /// The network namespace CRI made for the pod; `None` for a hostNetwork pod.
    pub netns: Option<PathBuf>,
    /// The user namespace of a `hostUsers: false` pod, joined first.
    pub userns: Option<PathBuf>,
    pub new_ipc: bool,
    pub new_uts: bool,
    pub new_pid: bool,
    pub hostname: String,
    pub sysctls: Vec<(String, String)>,
}

impl HolderSpec {
    fn to_args(&self) -> Vec<OsString> {
        let mut a: Vec<OsString> = vec![HOLDER_ARG.into(), self.sandbox_id.clone().into()];
        if let Some(ns) = &self.userns {
            a.extend([holder_args::USERNS.into(), ns.clone().into_os_string()]);
        }
        if let Some(ns) = &self.netns {
            a.extend([holder_args::NETNS.into(), ns.clone().into_os_string()]);
        }
        for (flag, on) in [
            (holder_args::IPC, self.new_ipc),
            (holder_args::UTS, self.new_uts),
            (holder_args::PID, self.new_pid),
        ] {
            if on {
                a.push(flag.into());
            }
        }
        if !self.hostname.is_empty() {
            a.extend([holder_args::HOSTNAME.into(), self.hostname.clone().into()]);
        }
        for (k, v) in &self.sysctls {
            a.extend([holder_args::SYSCTL.into(), format!("{k}={v}").into()]);
        }
        a
    }
}

/// Entry point of `containerd-shim-podshim-v1 -podshim-sandbox-holder …` (a shim run without
/// `podshim-holder` beside it); must be called before any thread exists. Never returns.
pub fn holder_main(args: &[OsString]) -> ! {
    // Arguments come from the C runtime's NUL-terminated argv: none holds a NUL.
    let owned: Vec<CString> = args
        .iter()
        .filter_map(|a| CString::new(a.as_bytes()).ok())
        .collect();
    let args: Vec<&std::ffi::CStr> = owned.iter().map(CString::as_c_str).collect();
    podshim_holder::hold(&args)
}

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
        crate::log_scope::spawn(async move {
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

/// Every holder of `sandbox_id` running now.
fn holders_of(sandbox_id: &str) -> Vec<u32> {
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    procs
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .filter(|&pid| is_holder_of(pid, sandbox_id))
        .collect()
}

/// True if `pid` is a holder of `sandbox_id` (not a process that reused its pid).
pub fn is_holder_of(pid: u32, sandbox_id: &str) -> bool {
    let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
        return false;
    };
    let mut args = cmdline.split(|&b| b == 0).skip(1);
    args.next() == Some(HOLDER_ARG.as_bytes()) && args.next() == Some(sandbox_id.as_bytes())
}

/// For `delete` after a shim died: the holder is the shim's orphan now, so just kill it. A shim
/// that died between starting its holder and recording its pid left `pid` 0: that holder is
/// found by its arguments, which name the sandbox.
pub fn kill_orphan(pid: u32, sandbox_id: &str) {
    let pids = match pid != 0 && is_holder_of(pid, sandbox_id) {
        true => vec![pid],
        false => holders_of(sandbox_id),
    };
    for pid in pids {
        let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The holder reads what the shim writes: one protocol, one parser (podshim-holder's).
    #[test]
    fn the_holder_parses_the_shims_arguments() {
        let spec = HolderSpec {
            sandbox_id: "pod1".into(),
            netns: Some("/var/run/netns/cni-1".into()),
            userns: Some("/proc/1/fd/7".into()),
            new_ipc: true,
            new_uts: true,
            new_pid: false,
            hostname: "web-0".into(),
            sysctls: vec![
                ("net.ipv4.ip_forward".into(), "1".into()),
                ("kernel.shm_rmid_forced".into(), "0".into()),
            ],
        };
        let owned: Vec<CString> = spec
            .to_args()
            .iter()
            .map(|a| CString::new(a.as_bytes()).unwrap())
            .collect();
        let args: Vec<&std::ffi::CStr> = owned.iter().map(CString::as_c_str).collect();
        let parsed = holder_args::Spec::parse(&args).unwrap();
        assert_eq!(parsed.sandbox_id.to_bytes(), b"pod1");
        assert_eq!(parsed.netns.unwrap().to_bytes(), b"/var/run/netns/cni-1");
        assert_eq!(parsed.userns.unwrap().to_bytes(), b"/proc/1/fd/7");
        assert!(parsed.new_ipc && parsed.new_uts && !parsed.new_pid);
        assert_eq!(parsed.hostname.unwrap().to_bytes(), b"web-0");
        let sysctls: Vec<(String, String)> = parsed
            .sysctls()
            .map(|(k, v)| {
                (
                    String::from_utf8_lossy(k).into_owned(),
                    String::from_utf8_lossy(v).into_owned(),
                )
            })
            .collect();
        assert_eq!(sysctls, spec.sysctls);
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
}

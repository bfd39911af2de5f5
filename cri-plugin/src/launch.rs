//! Starting a pod shim exactly as containerd starts one (`<shim> … -id <id> start` in the bundle
//! directory, `TTRPC_ADDRESS` in its environment, nothing on stdin), and running its `delete`
//! after one that died.

use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use log::{info, warn};
use tokio::process::Command;

use podshim_common::socket::{peer_pid, socket_path};

use crate::config::Config;
use crate::error::{Error, Result};
use crate::shim_log::ShimLogs;
use crate::store::ShimRecord;

/// How long `start` may take: it forks the daemon and returns once the daemon serves.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long `delete` may take: it force-deletes with the OCI runtime and unmounts.
const DELETE_TIMEOUT: Duration = Duration::from_secs(30);

pub struct Launcher {
    binary: PathBuf,
    debug: bool,
    containerd_address: String,
    ttrpc_address: PathBuf,
    containerd_binary: PathBuf,
    bundles: PathBuf,
    logs: ShimLogs,
}

impl Launcher {
    /// The shim binary new shims run.
    pub fn binary(&self) -> &Path {
        &self.binary
    }

    pub fn new(cfg: &Config) -> Launcher {
        Launcher {
            binary: cfg.shim.binary.clone(),
            debug: cfg.shim.debug,
            containerd_address: cfg.containerd.address.to_string_lossy().into_owned(),
            ttrpc_address: cfg.containerd.ttrpc_address(),
            containerd_binary: cfg.containerd.binary.clone(),
            bundles: cfg.state_dir.join("bundles"),
            logs: ShimLogs::default(),
        }
    }

    /// Where a shim will live and listen: known before it is started, so that it can be
    /// recorded first.
    pub fn plan(&self, namespace: &str, id: &str) -> ShimRecord {
        ShimRecord {
            id: id.to_string(),
            namespace: namespace.to_string(),
            bundle: self.bundles.join(namespace).join(id),
            address: containerd_shim::socket_address(&self.containerd_address, namespace, id),
            pid: 0,
        }
    }

    pub fn bundles(&self) -> &Path {
        &self.bundles
    }

    fn command(&self, shim: &ShimRecord) -> Command {
        let mut c = Command::new(&self.binary);
        c.arg("-namespace")
            .arg(&shim.namespace)
            .arg("-address")
            .arg(&self.containerd_address)
            .arg("-publish-binary")
            .arg(&self.containerd_binary)
            .arg("-id")
            .arg(&shim.id);
        if self.debug {
            c.arg("-debug");
        }
        c.env("TTRPC_ADDRESS", &self.ttrpc_address)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        c
    }

    /// Runs the shim's `start` in a fresh bundle directory (no config.json: the shim groups by
    /// `-id`) and returns the record completed with the address it printed and its pid.
    pub async fn start(&self, mut shim: ShimRecord) -> Result<ShimRecord> {
        std::fs::create_dir_all(&shim.bundle)
            .map_err(|e| Error::io(format!("create bundle {}", shim.bundle.display()), e))?;
        // Like containerd's bundles: only root may look inside.
        std::fs::set_permissions(&shim.bundle, std::fs::Permissions::from_mode(0o711))
            .map_err(|e| Error::io(format!("chmod {}", shim.bundle.display()), e))?;
        self.logs.follow(&shim.id, &shim.bundle)?;
        let mut cmd = self.command(&shim);
        cmd.current_dir(&shim.bundle).arg("start");
        let out = tokio::time::timeout(START_TIMEOUT, cmd.output())
            .await
            .map_err(|_| Error::Launch(format!("{} start timed out", self.binary.display())))?
            .map_err(|e| Error::Launch(format!("run {}: {e}", self.binary.display())))?;
        if !out.status.success() {
            return Err(Error::Launch(format!(
                "{} start: {}: {}",
                self.binary.display(),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        let printed = String::from_utf8_lossy(&out.stdout);
        shim.address = parse_start_output(&printed)?;
        shim.pid = peer_pid(&shim.address)
            .map_err(|e| Error::Launch(format!("shim {} at {}: {e}", shim.id, shim.address)))?;
        info!(
            "started shim {} (pid {}) at {}",
            shim.id, shim.pid, shim.address
        );
        Ok(shim)
    }

    /// `<shim> … -id <sandbox id> -bundle <bundle> delete`: what containerd runs after a shim
    /// that died. It kills what the shim left (the namespace holder, the OCI runtime's state),
    /// unmounts and removes the pod's files.
    pub async fn delete(&self, shim: &ShimRecord, sandbox_id: &str) {
        let mut cmd = self.command(&ShimRecord {
            id: sandbox_id.to_string(),
            ..shim.clone()
        });
        cmd.arg("-bundle").arg(&shim.bundle).arg("delete");
        if shim.bundle.is_dir() {
            cmd.current_dir(&shim.bundle);
        }
        match tokio::time::timeout(DELETE_TIMEOUT, cmd.output()).await {
            Ok(Ok(o)) if o.status.success() => {}
            Ok(Ok(o)) => warn!(
                "shim delete of {sandbox_id}: {}: {}",
                o.status,
                String::from_utf8_lossy(&o.stderr).trim()
            ),
            Ok(Err(e)) => warn!("shim delete of {sandbox_id}: {e}"),
            Err(_) => warn!("shim delete of {sandbox_id} timed out"),
        }
    }
}

/// `start` prints either the socket address (`unix:///run/containerd/s/<hash>`) or, for
/// containerd 2.x's bootstrap protocol, `{"version":3,"address":…,"protocol":"ttrpc"}`.
pub fn parse_start_output(out: &str) -> Result<String> {
    let out = out.trim();
    let address = if out.starts_with('{') {
        let v: serde_json::Value = serde_json::from_str(out)
            .map_err(|e| Error::Launch(format!("shim bootstrap {out:?}: {e}")))?;
        if let Some(p) = v.get("protocol").and_then(|p| p.as_str()) {
            if p != "ttrpc" {
                return Err(Error::Launch(format!(
                    "shim serves {p:?}, not ttrpc: {out:?}"
                )));
            }
        }
        v.get("address")
            .and_then(|a| a.as_str())
            .unwrap_or_default()
            .to_string()
    } else {
        out.to_string()
    };
    match address.strip_prefix("unix://") {
        Some(p) if p.starts_with('/') => Ok(address),
        _ => Err(Error::Launch(format!(
            "shim printed {out:?}, not a unix socket address"
        ))),
    }
}

/// Whether process `pid` runs the shim binary as it is on disk now; false once an upgrade
/// replaced the file (a new inode at the path). Unknown counts as current.
pub fn runs_binary(pid: u32, binary: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    let id = |m: std::fs::Metadata| (m.dev(), m.ino());
    match (
        std::fs::metadata(format!("/proc/{pid}/exe")).map(id),
        std::fs::metadata(binary).map(id),
    ) {
        (Ok(running), Ok(installed)) => running == installed,
        _ => true,
    }
}

/// Whether the shim of `shim` is still there: its socket answers, or its recorded process still
/// runs (it may be between closing its socket and exiting).
pub fn is_running(shim: &ShimRecord) -> bool {
    UnixStream::connect(socket_path(&shim.address)).is_ok() || process_runs(shim)
}

/// `/proc/<pid>` is the recorded shim, not a zombie and not a process that reused the pid: the
/// daemon's command line carries its `-socket` address.
fn process_runs(shim: &ShimRecord) -> bool {
    if shim.pid == 0 || !is_live(shim.pid) {
        return false;
    }
    let cmdline = std::fs::read(format!("/proc/{}/cmdline", shim.pid)).unwrap_or_default();
    String::from_utf8_lossy(&cmdline).contains(&shim.address)
}

/// `/proc/<pid>` exists and is neither a zombie nor dead.
pub fn is_live(pid: u32) -> bool {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let state = stat
        .rsplit_once(')')
        .and_then(|(_, r)| r.trim_start().chars().next());
    !matches!(state, None | Some('Z') | Some('X'))
}

/// Waits up to `bound` for the shim to be gone.
pub async fn wait_gone(shim: &ShimRecord, bound: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + bound;
    loop {
        if !is_running(shim) {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// SIGKILL for a shim that would not leave; only ever the recorded process.
pub fn kill(shim: &ShimRecord) {
    if process_runs(shim) {
        warn!("killing shim {} (pid {})", shim.id, shim.pid);
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(shim.pid as i32),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
}

impl Launcher {
    /// Reads the log of a shim that outlived an earlier run of this daemon.
    pub fn reattach(&self, shim: &ShimRecord) {
        if let Err(e) = self.logs.follow(&shim.id, &shim.bundle) {
            warn!("shim {}: {e}", shim.id);
        }
    }

    /// What a gone shim leaves outside its bundle's contents: its socket file (a killed shim
    /// cannot remove it), the bundle directory itself and our reader of its log.
    pub fn remove_leftovers(&self, shim: &ShimRecord) -> Result<()> {
        self.logs.forget(&shim.id);
        remove_leftovers(shim)
    }
}

fn remove_leftovers(shim: &ShimRecord) -> Result<()> {
    let sock = socket_path(&shim.address);
    if UnixStream::connect(sock).is_err() {
        match std::fs::remove_file(sock) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                warn!("remove socket {}: {e}", sock.display())
            }
            _ => {}
        }
    }
    match std::fs::remove_dir_all(&shim.bundle) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(Error::io(
            format!("remove bundle {}", shim.bundle.display()),
            e,
        )),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_output_in_both_forms() {
        assert_eq!(
            parse_start_output("unix:///run/containerd/s/abc\n").unwrap(),
            "unix:///run/containerd/s/abc"
        );
        assert_eq!(
            parse_start_output(
                r#"{"version":3,"address":"unix:///run/containerd/s/abc","protocol":"ttrpc"}"#
            )
            .unwrap(),
            "unix:///run/containerd/s/abc"
        );
        assert!(parse_start_output("").is_err());
        assert!(parse_start_output("vsock://3:1024").is_err());
        assert!(
            parse_start_output(r#"{"version":3,"address":"unix:///s","protocol":"grpc"}"#).is_err()
        );
    }

    #[test]
    fn planned_address_is_containerds() {
        let l = Launcher::new(&Config {
            state_dir: "/var/lib/x".into(),
            ..Default::default()
        });
        let s = l.plan("k8s.io", "abc");
        assert_eq!(s.bundle, Path::new("/var/lib/x/bundles/k8s.io/abc"));
        assert!(s.address.starts_with("unix:///run/containerd/s/"));
        assert_eq!(s.address, l.plan("k8s.io", "abc").address);
        assert_ne!(s.address, l.plan("default", "abc").address);
    }
}

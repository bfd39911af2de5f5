//! `podshim-snapshotter` run for one test (proxy plugin `podsnap` of its containerd), and a
//! snapshots API client for it or for containerd's own snapshots service.

use std::collections::HashMap;
use std::fs::{self, OpenOptions};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use containerd_client::services::v1::snapshots::snapshots_client::SnapshotsClient;
use containerd_client::services::v1::snapshots::{Info, ListSnapshotsRequest};
use tokio::net::UnixStream;
use tonic::transport::Channel;

use crate::{images, sys};

/// The proxy plugin name the config snippet registers.
pub const SNAPSHOTTER: &str = "podsnap";
const BIN: &str = "podshim-snapshotter";

/// Where the daemon binary is: `$PODSHIM_SNAPSHOTTER_BIN`, else `<cargo target dir>/debug`,
/// else `<cargo target dir>/release`.
pub fn bin_path() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os("PODSHIM_SNAPSHOTTER_BIN") {
        return Ok(PathBuf::from(p));
    }
    let target = images::cache_dir()
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| images::repo_root().join("target"));
    for profile in ["debug", "release"] {
        let p = target.join(profile).join(BIN);
        if p.exists() {
            return Ok(p);
        }
    }
    bail!(
        "{BIN} not found under {} (build it: `cargo build -p podshim-snapshotter`, or set PODSHIM_SNAPSHOTTER_BIN)",
        target.display()
    )
}

/// One running `podshim-snapshotter`.
pub struct Daemon {
    pub bin: PathBuf,
    pub root: PathBuf,
    pub sock: PathBuf,
    pub log_path: PathBuf,
    pub usage_refresh_secs: u64,
    /// `--log-level debug`: a line per request (a Commit's parent, say) for cases to read; off
    /// where figures are measured.
    pub debug: bool,
    child: Option<Child>,
}

impl Daemon {
    /// Starts the daemon and waits until its socket accepts connections.
    pub async fn start(root: &Path, sock: &Path, usage_refresh_secs: u64) -> Result<Daemon> {
        Daemon::start_bin(bin_path()?, root, sock, usage_refresh_secs, false).await
    }

    /// [`Daemon::start`] from the binary at `bin` (every restart runs what is at that path then).
    pub async fn start_bin(
        bin: PathBuf,
        root: &Path,
        sock: &Path,
        usage_refresh_secs: u64,
        debug: bool,
    ) -> Result<Daemon> {
        let mut d = Daemon {
            bin,
            root: root.to_path_buf(),
            sock: sock.to_path_buf(),
            log_path: root.with_extension("log"),
            usage_refresh_secs,
            debug,
            child: None,
        };
        d.spawn().await?;
        Ok(d)
    }

    async fn spawn(&mut self) -> Result<()> {
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)?;
        let child = Command::new(&self.bin)
            .arg("--root")
            .arg(&self.root)
            .arg("--address")
            .arg(&self.sock)
            .arg("--usage-refresh")
            .arg(self.usage_refresh_secs.to_string())
            .args(["--log-level", if self.debug { "debug" } else { "info" }])
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("spawning {}", self.bin.display()))?;
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(st) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                bail!(
                    "{BIN} exited early ({st}): {}",
                    fs::read_to_string(&self.log_path).unwrap_or_default()
                );
            }
            if UnixStream::connect(&self.sock).await.is_ok() {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("{BIN} socket {} not ready after 20 s", self.sock.display());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// SIGTERM and wait (SIGKILL after 10 s). The daemon owns no mounts, only directories, so
    /// containers on its snapshots keep running.
    pub fn stop(&mut self) -> Result<()> {
        let Some(mut c) = self.child.take() else {
            return Ok(());
        };
        if c.try_wait()?.is_none() {
            sys::kill(c.id() as i32, libc::SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(10);
            while c.try_wait()?.is_none() {
                if Instant::now() > deadline {
                    let _ = c.kill();
                    let _ = c.wait();
                    bail!("{BIN} did not exit within 10 s of SIGTERM (killed)");
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        Ok(())
    }

    /// Stops the daemon, keeps its root, starts it again.
    pub async fn restart(&mut self) -> Result<()> {
        self.stop()?;
        self.spawn().await
    }

    /// A snapshots API client on the daemon's own socket.
    pub fn client(&self) -> Result<Snapshots> {
        Snapshots::connect(&self.sock, SNAPSHOTTER, "")
    }

    /// Directories of the snapshots the daemon holds (`<root>/snapshots/<id>`).
    pub fn snapshot_dirs(&self) -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = fs::read_dir(self.root.join("snapshots"))
            .map(|rd| rd.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        v.sort();
        v
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Err(e) = self.stop() {
            eprintln!("podshim-e2e: {e:#}");
        }
    }
}

/// containerd's snapshots API (`containerd.services.snapshots.v1.Snapshots`) on a unix socket:
/// containerd's own (any snapshotter by name, in a namespace) or the daemon's.
#[derive(Clone)]
pub struct Snapshots {
    pub client: SnapshotsClient<Channel>,
    pub snapshotter: String,
    pub namespace: String,
}

impl Snapshots {
    pub fn connect(sock: &Path, snapshotter: &str, namespace: &str) -> Result<Snapshots> {
        let ch = crate::cri::unix_channel(sock.to_path_buf(), Duration::from_secs(120))?;
        Ok(Snapshots {
            client: SnapshotsClient::new(ch),
            snapshotter: snapshotter.into(),
            namespace: namespace.into(),
        })
    }

    /// Wraps a request with containerd's namespace header.
    pub fn req<T>(&self, msg: T) -> tonic::Request<T> {
        in_namespace(&self.namespace, msg)
    }

    pub async fn list(&self) -> Result<Vec<Info>> {
        let mut s = self
            .client
            .clone()
            .list(self.req(ListSnapshotsRequest {
                snapshotter: self.snapshotter.clone(),
                filters: vec![],
            }))
            .await
            .context("snapshots List")?
            .into_inner();
        let mut out = Vec::new();
        while let Some(m) = s.message().await.context("snapshots List stream")? {
            out.extend(m.info);
        }
        Ok(out)
    }
}

/// A request carrying containerd's namespace header (none for an empty namespace).
pub(crate) fn in_namespace<T>(namespace: &str, msg: T) -> tonic::Request<T> {
    let mut r = tonic::Request::new(msg);
    if !namespace.is_empty() {
        if let Ok(v) = namespace.parse() {
            r.metadata_mut().insert("containerd-namespace", v);
        }
    }
    r
}

/// Labels map helper.
pub fn labels(kv: &[(&str, &str)]) -> HashMap<String, String> {
    kv.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

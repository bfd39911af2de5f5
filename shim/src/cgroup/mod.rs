//! A container's cgroup: containerd's Metrics (cgroup v1 and v2) and OOM notifications.
//!
//! Paths are read from `/proc/<pid>/cgroup` of the container's init, so it does not matter which
//! cgroup driver (cgroupfs or systemd) placed the container. A hybrid host (v1 controllers, v2
//! mounted without controllers) is a v1 host for metrics.

mod oom;
mod v1;
mod v2;

use std::path::{Path, PathBuf};

use containerd_shim_protos::protobuf::{well_known_types::any::Any, MessageFull};
use tokio::sync::mpsc::UnboundedSender;

use crate::error::{Error, Result};

pub const CGROUP_ROOT: &str = "/sys/fs/cgroup";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ContainerCgroup {
    /// Controller name → directory, for the v1 controllers podshim reads.
    V1(v1::Paths),
    /// The unified directory.
    V2(PathBuf),
}

impl ContainerCgroup {
    /// The cgroup of a live process, from /proc/<pid>/cgroup and the host's cgroup mode.
    pub fn for_pid(pid: u32) -> Result<ContainerCgroup> {
        let unified = nix::sys::statfs::statfs(CGROUP_ROOT)
            .map(|s| s.filesystem_type() == nix::sys::statfs::CGROUP2_SUPER_MAGIC)
            .unwrap_or(false);
        let proc_file = PathBuf::from(format!("/proc/{pid}/cgroup"));
        let text = std::fs::read_to_string(&proc_file).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => Error::NotFound(format!("process {pid} is gone")),
            _ => Error::io(format!("read {}", proc_file.display()))(e),
        })?;
        Self::parse(&text, Path::new(CGROUP_ROOT), unified)
    }

    /// Reads `/proc/<pid>/cgroup` content against a cgroup mount root.
    pub fn parse(proc_cgroup: &str, root: &Path, unified: bool) -> Result<ContainerCgroup> {
        if unified {
            let path = proc_cgroup
                .lines()
                .find_map(|l| l.strip_prefix("0::"))
                .ok_or_else(|| Error::NotFound("process has no cgroup v2 path".into()))?;
            return Ok(ContainerCgroup::V2(join(root, path)));
        }
        Ok(ContainerCgroup::V1(v1::Paths::parse(proc_cgroup, root)?))
    }

    /// `io.containerd.cgroups.v1.Metrics` or `io.containerd.cgroups.v2.Metrics`, packed as Any.
    pub fn metrics(&self) -> Result<Any> {
        match self {
            ContainerCgroup::V1(paths) => pack(&v1::metrics(paths)?),
            ContainerCgroup::V2(dir) => pack(&v2::metrics(dir)?),
        }
    }

    /// Sends `container_id` on `tx` each time the kernel OOM-kills a process in this cgroup,
    /// until the cgroup goes away. Runs as a task on the current runtime.
    pub fn watch_oom(&self, container_id: String, tx: UnboundedSender<String>) -> Result<()> {
        match self {
            ContainerCgroup::V1(paths) => {
                let dir = paths
                    .memory
                    .as_ref()
                    .ok_or_else(|| Error::NotFound("no memory cgroup to watch for OOM".into()))?;
                oom::watch_v1(dir, container_id, tx)
            }
            ContainerCgroup::V2(dir) => oom::watch_v2(dir, container_id, tx),
        }
    }
}

fn join(root: &Path, cgroup_path: &str) -> PathBuf {
    root.join(cgroup_path.trim_start_matches('/'))
}

/// containerd decodes these by the message's full name, e.g. `io.containerd.cgroups.v1.Metrics`.
fn pack<M: MessageFull>(m: &M) -> Result<Any> {
    Ok(Any {
        type_url: M::descriptor().full_name().to_string(),
        value: m.write_to_bytes()?,
        ..Default::default()
    })
}

/// A cgroup file with one number; `max` is "no limit".
fn read_u64(path: &Path) -> Option<u64> {
    let s = std::fs::read_to_string(path).ok()?;
    let s = s.trim();
    if s == "max" {
        return Some(u64::MAX);
    }
    s.parse().ok()
}

/// A flat-keyed cgroup file (`key value` per line), e.g. memory.stat, cpu.stat.
fn read_keyed(path: &Path) -> Vec<(String, u64)> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let (k, v) = l.split_once(' ')?;
            Some((k.to_string(), v.trim().parse().ok()?))
        })
        .collect()
}

#[cfg(test)]
mod tests;

//! What a run leaves and how it goes: the leftovers a case must not leave, and the forced
//! cleanup that runs whatever happened (at Drop, and for runs whose process died).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::{Duration, Instant};

use super::{Containerd, TMP_PREFIX};
use crate::sys;
use crate::sys::open_lock;

/// Remove what crashed earlier runs (whose owner process is gone) left behind.
pub(super) fn reap_stale_runs() {
    let Ok(rd) = fs::read_dir("/tmp") else { return };
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if !name.starts_with(TMP_PREFIX) {
            continue;
        }
        let dir = e.path();
        let Ok(lock) = open_lock(&dir.join("owner.lock")) else {
            continue;
        };
        if !crate::sys::flock_nb(&lock) {
            continue; // a live run owns it
        }
        eprintln!("podshim-e2e: cleaning up stale run {}", dir.display());
        let bridge = fs::read_to_string(dir.join("bridge")).unwrap_or_default();
        force_cleanup(
            &dir,
            &dir.join("containerd.sock"),
            None,
            bridge.trim(),
            &format!("/{name}"),
        );
    }
}

/// Best-effort synchronous teardown (used by Drop and for stale runs). Returns what it found.
pub(super) fn force_cleanup(
    dir: &Path,
    sock: &Path,
    child: Option<&mut Child>,
    bridge: &str,
    cgroup_root: &str,
) -> Vec<String> {
    let mut found = Vec::new();
    if let Some(c) = child {
        if c.try_wait().ok().flatten().is_none() {
            sys::kill(c.id() as i32, libc::SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(10);
            while c.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
    let d = format!("{}/", dir.display());
    let s = sock.to_string_lossy().to_string();
    let mut sockets = Vec::new();
    for _ in 0..3 {
        let procs = sys::processes_mentioning(&[&d, &s]);
        if procs.is_empty() {
            break;
        }
        for p in procs {
            found.push(format!("process {} {}", p.pid, p.cmdline_str()));
            // A killed shim cannot remove its socket under /run/containerd/s: do it for it.
            if let (Some(ns), Some(id)) = (p.arg_after("-namespace"), p.arg_after("-id")) {
                sockets.push(shim_socket_path(sock, ns, id));
            }
            sys::kill(p.pid, libc::SIGKILL);
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    for sp in sockets {
        let _ = fs::remove_file(sp);
    }
    if !cgroup_root.trim_matches('/').is_empty() {
        for pid in sys::kill_and_remove_cgroup(cgroup_root) {
            found.push(format!("process {pid} in cgroup {cgroup_root}"));
        }
    }
    for m in sys::umount_all_under(dir) {
        found.push(format!("mount {}", m.display()));
    }
    if !bridge.is_empty() && sys::link_exists(bridge) {
        let _ = sys::link_delete(bridge);
    }
    remove_cni_cache(dir);
    remove_foreign_runtime_state(dir);
    let _ = fs::remove_dir_all(dir);
    found
}

/// The socket path containerd's shim helpers (Go and Rust alike) derive for (ns, id):
/// `/run/containerd/s/<sha256("<containerd address>/<ns>/<id>")>`.
pub fn shim_socket_path(sock: &Path, ns: &str, id: &str) -> PathBuf {
    use sha2::{Digest, Sha256};
    let key = format!("{}/{ns}/{id}", sock.display());
    let h = Sha256::digest(key.as_bytes());
    let hex: String = h.iter().map(|b| format!("{b:02x}")).collect();
    PathBuf::from("/run/containerd/s").join(hex)
}

/// OCI runtime state of containers of this run kept in a runtime's default root (e.g. when a
/// shim was started without our `Root`): removed if its state.json mentions our directory.
fn remove_foreign_runtime_state(dir: &Path) {
    let needle = format!("{}/", dir.display());
    for root in [
        "/run/containerd/runc",
        "/run/runc",
        "/run/crun",
        "/run/containerd/podshim",
    ] {
        let Ok(nss) = fs::read_dir(root) else {
            continue;
        };
        for ns in nss.flatten() {
            let Ok(ids) = fs::read_dir(ns.path()) else {
                continue;
            };
            for id in ids.flatten() {
                let state = id.path().join("state.json");
                let mentions = fs::read_to_string(&state)
                    .map(|s| s.contains(&needle))
                    .unwrap_or(false);
                if mentions {
                    let _ = fs::remove_dir_all(id.path());
                }
            }
        }
    }
}

/// libcni caches results under /var/lib/cni/results/<network>-<container>-<ifname>; a pod whose
/// CNI DEL never ran (containerd killed) leaves its entries, which name our netns path.
fn remove_cni_cache(dir: &Path) {
    let needle = format!("{}/", dir.display());
    let net = fs::read_to_string(dir.join("network-name"))
        .unwrap_or_default()
        .trim()
        .to_string();
    if let Ok(rd) = fs::read_dir("/var/lib/cni/results") {
        for e in rd.flatten() {
            let ours = (!net.is_empty()
                && e.file_name()
                    .to_string_lossy()
                    .starts_with(&format!("{net}-")))
                || fs::read_to_string(e.path())
                    .map(|s| s.contains(&needle))
                    .unwrap_or(false);
            if ours {
                let _ = fs::remove_file(e.path());
            }
        }
    }
}

impl Containerd {
    /// For a failure report: containerd, its shims and daemons, the processes of its pods and
    /// everything they started (helpers, the OCI runtime, exec'd processes), a line each
    /// (`sys::describe`), by pid.
    pub fn process_table(&self) -> Vec<String> {
        let dir = format!("{}/", self.dir.display());
        let sock = self.sock.to_string_lossy().to_string();
        let mut roots: std::collections::BTreeSet<i32> = sys::processes_mentioning(&[&dir, &sock])
            .into_iter()
            .map(|p| p.pid)
            .chain(sys::cgroup_pids(&self.cgroup_root))
            .chain(self.pid().map(|p| p as i32))
            .collect();
        let parents = sys::parents();
        let mut order: Vec<i32> = Vec::new();
        let mut next: Vec<i32> = roots.iter().copied().collect();
        while let Some(pid) = next.pop() {
            order.push(pid);
            for &(child, parent) in &parents {
                if parent == pid && roots.insert(child) {
                    next.push(child);
                }
            }
        }
        order.sort_unstable();
        order.into_iter().filter_map(sys::describe).collect()
    }

    /// Everything still present that belongs to this containerd: shims, container processes,
    /// mounts under our directories, netns files, bridge ports.
    pub fn leftovers(&self) -> Vec<String> {
        let mut v = Vec::new();
        for p in self.all_shims() {
            v.push(format!("shim process {} ({})", p.pid, p.cmdline_str()));
        }
        for pid in sys::cgroup_pids(&self.cgroup_root) {
            let cmd = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            v.push(format!(
                "process {pid} in {} ({})",
                self.cgroup_root,
                String::from_utf8_lossy(&cmd).replace('\0', " ")
            ));
        }
        for m in sys::mounts_under(&self.dir) {
            // The snapshotter's own filesystem, unmounted after it stops.
            if self.opts.snapshotter_btrfs && m == self.podsnap_btrfs() {
                continue;
            }
            v.push(format!("mount {}", m.display()));
        }
        if let Ok(rd) = fs::read_dir(self.state.join("netns")) {
            for e in rd.flatten() {
                v.push(format!("netns file {}", e.path().display()));
            }
        }
        for port in sys::bridge_ports(&self.bridge) {
            v.push(format!("interface {port} on bridge {}", self.bridge));
        }
        // A pod's files (CRI's, or a pause-less shim's at CRI's paths) and bundles.
        let cri = "io.containerd.grpc.v1.cri/sandboxes";
        for dir in [self.root.join(cri), self.state.join(cri)] {
            for e in fs::read_dir(&dir).into_iter().flatten().flatten() {
                v.push(format!("pod directory {}", e.path().display()));
            }
        }
        for kind in [
            "io.containerd.runtime.v2.shim",
            "io.containerd.runtime.v2.task",
        ] {
            for ns in fs::read_dir(self.state.join(kind))
                .into_iter()
                .flatten()
                .flatten()
            {
                for e in fs::read_dir(ns.path()).into_iter().flatten().flatten() {
                    let inside = sys::list_tree(&e.path(), 20);
                    v.push(format!(
                        "bundle {} holding [{}]",
                        e.path().display(),
                        inside.join(", ")
                    ));
                }
            }
        }
        v
    }
}

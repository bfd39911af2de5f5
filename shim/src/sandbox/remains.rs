//! A dead pause-less pod's containers. containerd runs the shim's `delete` action for the
//! sandbox alone: the pod's containers were tasks of the same process, reached through the
//! sandbox's address, and containerd 2.1 runs nothing for them (containerd#9727). Left alone they
//! would run on with nobody reading their output or reporting their exit, so the sandbox's
//! `delete` takes them down, found by their pod annotation.
//!
//! A shim killed while its runtime's `create` runs leaves that command running: it makes its
//! container after the shim is gone. So a dead shim's `delete` first waits for the `create`s
//! under its runtime root to finish (boundedly: containerd gives the whole action 5 s), and
//! only then asks the runtime what there is to delete.

use std::{
    path::Path,
    time::{Duration, Instant},
};

use log::{info, warn};

use crate::{
    group::{group_of, grouping},
    rootfs,
    runtime::{ListedContainer, RuncCli},
};

/// Force-deletes (kills) every container of `sandbox_id` the runtime knows, then unmounts its
/// rootfs.
pub fn delete_pod_containers(runtime: &RuncCli, sandbox_id: &str) {
    let listed = match runtime.list_blocking() {
        Ok(l) => l,
        Err(e) => {
            warn!("pod {sandbox_id}: listing its containers: {e}");
            return;
        }
    };
    for c in listed.iter().filter(|c| of_pod(c, sandbox_id)) {
        info!(
            "pod {sandbox_id}: its shim is gone, deleting container {}",
            c.id
        );
        if let Err(e) = runtime.force_delete_blocking(&c.id) {
            warn!("delete {}: {e}", c.id);
            continue;
        }
        rootfs::unmount(&c.bundle);
    }
}

/// How long a dead shim's `delete` waits for its runtime's `create`s.
const CREATES_WITHIN: Duration = Duration::from_secs(2);

/// Waits until no `create` of `runtime`'s root runs, or [`CREATES_WITHIN`] has passed.
pub fn wait_for_creates(runtime: &RuncCli) {
    let deadline = Instant::now() + CREATES_WITHIN;
    loop {
        let running = creates_in_flight(runtime.root());
        if running.is_empty() {
            return;
        }
        if Instant::now() >= deadline {
            warn!("runtime create(s) {running:?} still running after {CREATES_WITHIN:?}; deleting what is there");
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Live (not zombie) processes running the runtime's `create` under `root`.
fn creates_in_flight(root: &Path) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let args: Vec<&[u8]> = cmdline.split(|&b| b == 0).collect();
            is_create_under(&args, root) && !is_zombie(*pid)
        })
        .collect()
}

/// `… --root ROOT … create …`.
fn is_create_under(args: &[&[u8]], root: &Path) -> bool {
    let root = root.as_os_str().as_encoded_bytes();
    args.windows(2).any(|w| w[0] == b"--root" && w[1] == root)
        && args.iter().any(|a| *a == b"create")
}

fn is_zombie(pid: u32) -> bool {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The state follows the parenthesised command name, which may hold anything.
    stat.rsplit_once(')')
        .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'))
}

/// containerd may already have removed a dead task's bundle, so the runtime's copy of the
/// annotations comes first; the bundle's spec serves a runtime that keeps none.
fn of_pod(c: &ListedContainer, sandbox_id: &str) -> bool {
    let pod = match c.annotations.is_empty() {
        true => grouping(&c.id, &c.bundle.join("config.json")),
        false => group_of(&c.id, &c.annotations),
    };
    c.id != sandbox_id && pod == sandbox_id
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listed(id: &str, bundle: &std::path::Path, pod: Option<&str>) -> ListedContainer {
        ListedContainer {
            id: id.into(),
            bundle: bundle.into(),
            annotations: pod
                .map(|p| [("io.kubernetes.cri.sandbox-id".to_string(), p.to_string())].into())
                .unwrap_or_default(),
        }
    }

    #[test]
    fn a_create_is_known_by_its_root_and_verb() {
        let root = std::path::Path::new("/run/containerd/podshim/k8s.io");
        let args =
            |s: &'static str| -> Vec<&'static [u8]> { s.split(' ').map(str::as_bytes).collect() };
        assert!(is_create_under(
            &args("runc --root /run/containerd/podshim/k8s.io --log l create --bundle b c1"),
            root
        ));
        // A wrapper script that runs the runtime: the arguments are what count.
        assert!(is_create_under(
            &args("/bin/sh /usr/local/bin/runc --root /run/containerd/podshim/k8s.io create c1"),
            root
        ));
        assert!(!is_create_under(
            &args("runc --root /run/containerd/podshim/k8s.io start c1"),
            root
        ));
        assert!(!is_create_under(
            &args("runc --root /run/containerd/podshim/other create c1"),
            root
        ));
        assert!(!is_create_under(&args("runc create --root"), root));
    }

    #[test]
    fn this_process_is_no_zombie() {
        assert!(!is_zombie(std::process::id()));
    }

    #[test]
    fn containers_are_the_pods_by_annotation_or_spec() {
        let dir = tempfile::tempdir().unwrap();
        let gone = dir.path().join("gone");
        assert!(of_pod(&listed("c1", &gone, Some("pod")), "pod"));
        assert!(!of_pod(&listed("c2", &gone, Some("other")), "pod"));
        // No annotations from the runtime: the bundle's spec says, or nothing does.
        assert!(!of_pod(&listed("c3", &gone, None), "pod"));
        std::fs::write(
            dir.path().join("config.json"),
            r#"{"annotations":{"io.kubernetes.cri.sandbox-id":"pod"}}"#,
        )
        .unwrap();
        assert!(of_pod(&listed("c4", dir.path(), None), "pod"));
        // The sandbox id itself (a classic pod's pause container) is not one of its containers.
        assert!(!of_pod(&listed("pod", &gone, Some("pod")), "pod"));
    }
}

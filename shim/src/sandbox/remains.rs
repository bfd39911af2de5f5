//! A dead pause-less pod's containers. containerd runs the shim's `delete` action for the
//! sandbox alone: the pod's containers were tasks of the same process, reached through the
//! sandbox's address, and containerd 2.1 runs nothing for them (containerd#9727). Left alone they
//! would run on with nobody reading their output or reporting their exit, so the sandbox's
//! `delete` takes them down, found by their pod annotation.
//!
//! No runtime command outlives the shim (`sys::kill_with_parent`), so what the runtime lists
//! when containerd runs `delete` is all there will be.

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

//! A dead pause-less pod's containers. containerd runs the shim's `delete` action for the
//! sandbox alone: the pod's containers were tasks of the same process, reached through the
//! sandbox's address, and containerd 2.1 runs nothing for them (containerd#9727). Left alone they
//! would run on with nobody reading their output or reporting their exit, so the sandbox's
//! `delete` takes them down, found by their pod annotation.

use log::{info, warn};

use crate::{
    container::unmount_all,
    runtime::RuncCli,
    service::{group_of, grouping},
};

/// Force-deletes (kills) every container of `sandbox_id` the runtime knows, then unmounts its
/// rootfs. Returns the ids it took down.
pub fn delete_pod_containers(runtime: &RuncCli, sandbox_id: &str) -> Vec<String> {
    let listed = match runtime.list_blocking() {
        Ok(l) => l,
        Err(e) => {
            warn!("pod {sandbox_id}: listing its containers: {e}");
            return Vec::new();
        }
    };
    let mut deleted = Vec::new();
    for c in listed {
        // containerd may already have removed the bundle (it deletes a dead task's), so the
        // runtime's copy of the annotations comes first.
        let pod = match c.annotations.is_empty() {
            true => grouping(&c.id, &c.bundle.join("config.json")),
            false => group_of(&c.id, &c.annotations),
        };
        if c.id == sandbox_id || pod != sandbox_id {
            continue;
        }
        info!(
            "pod {sandbox_id}: its shim is gone, deleting container {}",
            c.id
        );
        if let Err(e) = runtime.force_delete_blocking(&c.id) {
            warn!("delete {}: {e}", c.id);
            continue;
        }
        unmount_all(&c.bundle.join("rootfs"));
        deleted.push(c.id);
    }
    deleted
}

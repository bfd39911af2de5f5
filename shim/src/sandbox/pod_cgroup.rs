//! The pod's cgroup (the pod config's `cgroup_parent`), found through the hierarchies its
//! holder is attached to: the pod's Metrics, and its limits after an in-place resize.

use containerd_shim_protos::protobuf::well_known_types::any::Any;

use super::{lifecycle::PodSandbox, resize};
use crate::{
    cgroup::ContainerCgroup,
    error::{Error, Result},
};

/// The running pod's cgroup. A pod whose holder has gone has no cgroup to speak for.
fn pod_cgroup(sandbox: &PodSandbox) -> Result<ContainerCgroup> {
    let st = sandbox.status();
    if !st.ready {
        return Err(Error::FailedPrecondition(format!(
            "sandbox {} is not running",
            sandbox.id
        )));
    }
    ContainerCgroup::for_pid_at(st.pid, &sandbox.config.cgroup_parent)
}

/// `io.containerd.cgroups.v1.Metrics` or `v2.Metrics` of the pod's cgroup.
pub fn metrics(sandbox: &PodSandbox) -> Result<Any> {
    pod_cgroup(sandbox)?.metrics()
}

/// Sets the pod cgroup to the resources of an UpdateSandbox request. A pod without a cgroup
/// parent shares its holder's cgroup with whatever else is there: that is not the pod's to
/// resize.
pub fn resize(sandbox: &PodSandbox, type_url: &str, value: &[u8]) -> Result<()> {
    let limits = resize::pod_limits(type_url, value)?;
    if sandbox.config.cgroup_parent.is_empty() {
        return Err(Error::FailedPrecondition(format!(
            "sandbox {} has no cgroup parent to resize",
            sandbox.id
        )));
    }
    if limits.is_empty() {
        return Ok(());
    }
    log::info!(
        "sandbox {}: pod cgroup {} to {limits:?}",
        sandbox.id,
        sandbox.config.cgroup_parent
    );
    pod_cgroup(sandbox)?.set_limits(&limits)
}

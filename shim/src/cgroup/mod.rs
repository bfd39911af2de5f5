//! A container's cgroup: containerd's Metrics (cgroup v1 and v2) and OOM notifications.
//!
//! INTERFACE CONTRACT (the rest of the shim calls exactly this; the cgroup helper fills the bodies).

use containerd_shim_protos::protobuf::well_known_types::any::Any;
use tokio::sync::mpsc::UnboundedSender;

use crate::error::Result;

pub struct ContainerCgroup {
    _todo: (),
}

impl ContainerCgroup {
    /// The cgroup of a live process, from /proc/<pid>/cgroup and the host's cgroup mode.
    pub fn for_pid(_pid: u32) -> Result<ContainerCgroup> {
        todo!("cgroup helper")
    }
    /// `io.containerd.cgroups.v1.Metrics` or `io.containerd.cgroups.v2.Metrics`, packed as Any.
    pub fn metrics(&self) -> Result<Any> {
        todo!("cgroup helper")
    }
    /// Sends `container_id` on `tx` each time the kernel OOM-kills a process in this cgroup,
    /// until the cgroup goes away. Runs as a task on the current runtime.
    pub fn watch_oom(&self, _container_id: String, _tx: UnboundedSender<String>) -> Result<()> {
        todo!("cgroup helper")
    }
}

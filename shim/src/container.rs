//! One container of the pod: its bundle, its init process and its exec processes.

use std::{
    collections::HashMap,
    path::PathBuf,
    sync::{Arc, Mutex},
};

use crate::{
    cgroup::ContainerCgroup,
    error::{Error, Result},
    kills::KillsInFlight,
    process::Process,
    rootfs,
};

/// Execs one container may hold at once (created and not yet deleted). An exec probe holds one
/// for its run; a client that never deletes its execs is refused past this.
pub const MAX_EXECS: usize = 256;

pub struct Container {
    pub id: String,
    pub bundle: PathBuf,
    pub init: Arc<Process>,
    /// Without its own pid namespace the kernel does not kill a container's other processes
    /// when init exits; the shim must.
    pub own_pid_namespace: bool,
    /// The shim mounted the rootfs containerd sent, so it must unmount it.
    pub rootfs_mounted: bool,
    /// The host uid and gid that own the stdio pipes of its processes (a user-namespaced
    /// container: `Spec::io_owner`).
    pub io_owner: Option<(u32, u32)>,
    /// Kill calls on init not yet answered (init's exit is reported after them).
    pub kills: KillsInFlight,
    execs: Mutex<HashMap<String, Arc<Process>>>,
    cgroup: Mutex<Option<Arc<ContainerCgroup>>>,
}

impl Container {
    pub fn new(
        id: String,
        bundle: PathBuf,
        init: Process,
        own_pid_namespace: bool,
        rootfs_mounted: bool,
        io_owner: Option<(u32, u32)>,
    ) -> Container {
        Container {
            id,
            bundle,
            init: Arc::new(init),
            own_pid_namespace,
            rootfs_mounted,
            io_owner,
            kills: KillsInFlight::default(),
            execs: Mutex::new(HashMap::new()),
            cgroup: Mutex::new(None),
        }
    }

    fn execs(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Process>>> {
        self.execs.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The init process for an empty exec id, else that exec.
    pub fn process(&self, exec_id: &str) -> Result<Arc<Process>> {
        if exec_id.is_empty() {
            return Ok(self.init.clone());
        }
        self.execs().get(exec_id).cloned().ok_or_else(|| {
            Error::NotFound(format!(
                "exec {exec_id} of container {} does not exist",
                self.id
            ))
        })
    }

    pub fn add_exec(&self, process: Process) -> Result<Arc<Process>> {
        let mut execs = self.execs();
        if execs.contains_key(&process.exec_id) {
            return Err(Error::AlreadyExists(format!(
                "exec {} of container {} already exists",
                process.exec_id, self.id
            )));
        }
        if execs.len() >= MAX_EXECS {
            return Err(Error::ResourceExhausted(format!(
                "container {} holds {MAX_EXECS} execs: delete one before adding another",
                self.id
            )));
        }
        let process = Arc::new(process);
        execs.insert(process.exec_id.clone(), process.clone());
        Ok(process)
    }

    pub fn remove_exec(&self, exec_id: &str) -> Option<Arc<Process>> {
        self.execs().remove(exec_id)
    }

    pub fn exec_processes(&self) -> Vec<Arc<Process>> {
        self.execs().values().cloned().collect()
    }

    pub fn set_cgroup(&self, cgroup: ContainerCgroup) -> Arc<ContainerCgroup> {
        let cgroup = Arc::new(cgroup);
        *self.cgroup.lock().unwrap_or_else(|e| e.into_inner()) = Some(cgroup.clone());
        cgroup
    }

    pub fn cgroup(&self) -> Option<Arc<ContainerCgroup>> {
        self.cgroup
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn rootfs(&self) -> PathBuf {
        self.bundle.join("rootfs")
    }

    pub fn unmount_rootfs(&self) {
        if self.rootfs_mounted {
            rootfs::unmount(&self.bundle);
        }
    }
}

//! Create: mount the rootfs, wire the stdio, `runtime create`, and start watching for the exit.

use std::{
    path::{Path, PathBuf},
    sync::Arc,
};

use containerd_shim::api::{CreateTaskRequest, CreateTaskResponse};
use containerd_shim_protos::events::task::TaskCreate;

use log::warn;

use crate::{
    cgroup::ContainerCgroup,
    container::Container,
    error::{Error, Result},
    pod::Pod,
    process::Process,
    rootfs,
    runtime::CreateOpts,
    spec::Spec,
    stdio::{ConsoleSocket, IoOwner, ProcessIo, StdioPaths},
    task::{launch, watch_exit},
};

pub async fn create(pod: &Arc<Pod>, req: CreateTaskRequest) -> Result<CreateTaskResponse> {
    podshim_common::id::validate("container id", &req.id)?;
    if !req.checkpoint.is_empty() {
        return Err(Error::Unimplemented(
            "podshim does not restore tasks from a checkpoint (CRI's restore through \
             CreateContainer is off by default and deprecated from containerd 2.2)"
                .into(),
        ));
    }
    let reservation = pod.reserve(&req.id)?;
    let bundle = PathBuf::from(&req.bundle);
    pod.bundle_sweep.note(&bundle);
    let (spec, io_owner) = load_spec(&bundle)?;
    let rootfs_mounted = rootfs::mount(&bundle, &req.rootfs).await?;
    let unmount = scopeguard(rootfs_mounted, &bundle);
    check_root(&bundle, &spec)?;

    let stdio = StdioPaths {
        stdin: req.stdin.clone(),
        stdout: req.stdout.clone(),
        stderr: req.stderr.clone(),
        terminal: req.terminal,
    };
    let owner = IoOwner {
        namespace: &pod.namespace,
        id: &req.id,
        exits: pod.exits.as_ref(),
    };
    let (mut io, child_stdio) = ProcessIo::open(
        &stdio,
        &owner,
        &launch::spill_dir(&bundle),
        "init",
        pod.io_limits(),
    )
    .await?;
    child_stdio.give_to(io_owner)?;
    let console = match req.terminal {
        true => Some(ConsoleSocket::bind(&std::env::temp_dir())?),
        false => None,
    };
    let systemd_cgroup = pod
        .config
        .runtime
        .systemd_cgroup
        .unwrap_or_else(|| spec.is_systemd_cgroup_path());
    let created = launch::with_console(
        pod.runtime.create(CreateOpts {
            id: &req.id,
            bundle: &bundle,
            stdio: child_stdio,
            console_socket: console.as_ref().map(|c| c.path()),
            systemd_cgroup,
            no_pivot_root: pod.config.runtime.no_pivot_root,
            no_new_keyring: pod.config.runtime.no_new_keyring,
        }),
        console.as_ref(),
    )
    .await;
    let attached = created.and_then(|l| {
        let pid = l.pid;
        l.console
            .and_then(|m| m.map_or(Ok(()), |m| io.attach_console(m)))
            .map(|()| pid)
    });
    let pid = match attached {
        Ok(pid) => pid,
        Err(e) => {
            io.shutdown().await;
            // The runtime may have got as far as leaving state behind, or a created container.
            let _ = pod.runtime.delete(&req.id, true).await;
            return Err(e);
        }
    };
    io.start();
    // Subscribed before anything else can await: an init killed before Start is still seen.
    let exit = pod.exits.subscribe(pid as i32);

    let process = Process::new(req.id.clone(), "", stdio);
    process.set_pid(pid);
    process.set_io(io).await;
    let container = Arc::new(Container::new(
        req.id.clone(),
        bundle,
        process,
        spec.has_own_pid_namespace(),
        rootfs_mounted,
        io_owner,
    ));
    unmount.disarm();
    // Armed before Start, while init still waits in the runtime: an allocation in the
    // process's first instant must not OOM before anyone listens.
    match ContainerCgroup::for_pid(pid) {
        Ok(cgroup) => {
            let cgroup = container.set_cgroup(cgroup);
            if let Err(e) = cgroup.watch_oom(req.id.clone(), pod.oom_sender()) {
                warn!("no OOM notifications for {}: {e}", req.id);
            }
        }
        Err(e) => warn!("cgroup of {} (pid {pid}): {e}", req.id),
    }
    watch_exit(pod.clone(), container.clone(), container.init.clone(), exit);
    reservation.commit(container);

    pod.events.send(TaskCreate {
        container_id: req.id,
        bundle: req.bundle,
        rootfs: req.rootfs,
        io: Some(containerd_shim_protos::events::task::TaskIO {
            stdin: req.stdin,
            stdout: req.stdout,
            stderr: req.stderr,
            terminal: req.terminal,
            ..Default::default()
        })
        .into(),
        pid,
        ..Default::default()
    });
    Ok(CreateTaskResponse {
        pid,
        ..Default::default()
    })
}

/// The bundle's OCI spec, and who owns its processes' stdio (`spec::io_owner`).
fn load_spec(bundle: &Path) -> Result<(Spec, Option<(u32, u32)>)> {
    let path = bundle.join("config.json");
    if !path.exists() {
        return Err(Error::NotFound(format!(
            "bundle {} has no config.json",
            bundle.display()
        )));
    }
    let bytes = std::fs::read(&path).map_err(Error::io(format!("read {}", path.display())))?;
    let spec = Spec::parse(&bytes)
        .map_err(|e| Error::InvalidArgument(format!("invalid OCI spec {}: {e}", path.display())))?;
    let io_owner = crate::spec::io_owner(&spec, &bytes);
    Ok((spec, io_owner))
}

fn check_root(bundle: &Path, spec: &Spec) -> Result<()> {
    let root = spec
        .root
        .as_ref()
        .ok_or_else(|| Error::InvalidArgument("OCI spec has no root".into()))?;
    let path = bundle.join(&root.path);
    if !path.is_dir() {
        return Err(Error::NotFound(format!(
            "container rootfs {} does not exist",
            path.display()
        )));
    }
    Ok(())
}

/// Unmounts the rootfs when Create fails after mounting it.
struct Unmount {
    bundle: Option<PathBuf>,
}

fn scopeguard(mounted: bool, bundle: &Path) -> Unmount {
    Unmount {
        bundle: mounted.then(|| bundle.to_path_buf()),
    }
}

impl Unmount {
    fn disarm(mut self) {
        self.bundle = None;
    }
}

impl Drop for Unmount {
    fn drop(&mut self) {
        if let Some(bundle) = &self.bundle {
            rootfs::unmount(bundle);
        }
    }
}

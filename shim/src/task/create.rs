//! Create: mount the rootfs, wire the stdio, `runtime create`, and start watching for the exit.

use std::{
    path::{Path, PathBuf},
    sync::Arc,
};

use containerd_shim::api::{CreateTaskRequest, CreateTaskResponse};
use containerd_shim_protos::events::task::TaskCreate;
use containerd_shim_protos::types::mount::Mount;

use log::warn;

use crate::{
    cgroup::ContainerCgroup,
    container::{unmount_all, Container},
    error::{Error, Result},
    pod::Pod,
    process::Process,
    runtime::CreateOpts,
    spec::Spec,
    stdio::{ConsoleSocket, ProcessIo, StdioPaths},
    task::{launch, watch_exit},
};

pub async fn create(pod: &Arc<Pod>, req: CreateTaskRequest) -> Result<CreateTaskResponse> {
    podshim_common::id::validate("container id", &req.id)?;
    if !req.checkpoint.is_empty() {
        return Err(Error::Unimplemented(
            "restoring a task from a checkpoint needs criu, which podshim does not drive".into(),
        ));
    }
    let reservation = pod.reserve(&req.id)?;
    let bundle = PathBuf::from(&req.bundle);
    let spec = load_spec(&bundle)?;
    let rootfs_mounted = mount_rootfs(&bundle, &req.rootfs).await?;
    let unmount = scopeguard(rootfs_mounted, &bundle);
    check_root(&bundle, &spec)?;

    let stdio = StdioPaths {
        stdin: req.stdin.clone(),
        stdout: req.stdout.clone(),
        stderr: req.stderr.clone(),
        terminal: req.terminal,
    };
    let (mut io, child_stdio) =
        ProcessIo::open(&stdio, &launch::spill_dir(&bundle), "init", pod.io_limits())?;
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

/// The bundle's OCI spec.
fn load_spec(bundle: &Path) -> Result<Spec> {
    let path = bundle.join("config.json");
    if !path.exists() {
        return Err(Error::NotFound(format!(
            "bundle {} has no config.json",
            bundle.display()
        )));
    }
    let bytes = std::fs::read(&path).map_err(Error::io(format!("read {}", path.display())))?;
    Spec::parse(&bytes)
        .map_err(|e| Error::InvalidArgument(format!("invalid OCI spec {}: {e}", path.display())))
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

/// Mounts containerd's rootfs mounts on `<bundle>/rootfs`. Returns whether anything was mounted.
async fn mount_rootfs(bundle: &Path, mounts: &[Mount]) -> Result<bool> {
    if mounts.is_empty() {
        return Ok(false);
    }
    let target = bundle.join("rootfs");
    let mounts = mounts.to_vec();
    // The library may unshare CLONE_FS and chdir to shorten long overlay options: a short-lived
    // thread keeps that away from the runtime's thread and its working directory.
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let mut result = Ok(());
        for m in &mounts {
            if let Err(e) = containerd_shim::mount::mount_rootfs(
                Some(m.type_.as_str()),
                Some(m.source.as_str()),
                &m.options,
                &target,
            ) {
                unmount_all(&target);
                result = Err(Error::Other(format!(
                    "mount {} {} on {}: {e}",
                    m.type_,
                    m.source,
                    target.display()
                )));
                break;
            }
        }
        let _ = tx.send(result);
    });
    rx.await
        .map_err(|_| Error::Other("rootfs mount thread died".into()))??;
    Ok(true)
}

/// Unmounts the rootfs when Create fails after mounting it.
struct Unmount {
    target: Option<PathBuf>,
}

fn scopeguard(mounted: bool, bundle: &Path) -> Unmount {
    Unmount {
        target: mounted.then(|| bundle.join("rootfs")),
    }
}

impl Unmount {
    fn disarm(mut self) {
        self.target = None;
    }
}

impl Drop for Unmount {
    fn drop(&mut self) {
        if let Some(target) = &self.target {
            unmount_all(target);
        }
    }
}

//! Exec: an extra process in a running container, registered by Exec and started by Start.

use std::sync::Arc;

use containerd_shim::api::ExecProcessRequest;
use containerd_shim_protos::events::task::TaskExecAdded;

use crate::{
    container::Container,
    error::{Error, Result},
    pod::Pod,
    process::{Process, Transition},
    runtime::ExecOpts,
    stdio::{ConsoleSocket, IoOwner, ProcessIo, StdioPaths},
    task::watch_exit,
};

/// An exec's OCI process (args, env, capabilities, rlimits) is kept until its Start: 1 MiB is
/// far more than any real one and bounds what one request can make the shim hold.
const MAX_EXEC_SPEC: usize = 1 << 20;

pub async fn exec(pod: &Arc<Pod>, req: ExecProcessRequest) -> Result<()> {
    let container = pod.container(&req.id)?;
    podshim_common::id::validate("exec id", &req.exec_id)?;
    container.init.check_exec()?;
    let spec = req
        .spec
        .as_ref()
        .ok_or_else(|| Error::InvalidArgument("exec request has no process spec".into()))?;
    if spec.value.len() > MAX_EXEC_SPEC {
        return Err(Error::InvalidArgument(format!(
            "exec process spec is {} bytes, the limit is {MAX_EXEC_SPEC}",
            spec.value.len()
        )));
    }
    // Checked now so a malformed spec fails Exec, not the later Start.
    crate::spec::check_json_object(&spec.value, "exec process spec")?;
    let process = Process::new(
        req.id.clone(),
        req.exec_id.clone(),
        StdioPaths {
            stdin: req.stdin.clone(),
            stdout: req.stdout.clone(),
            stderr: req.stderr.clone(),
            terminal: req.terminal,
        },
    )
    .with_exec_spec(spec.value.clone());
    container.add_exec(process)?;
    pod.events.send(TaskExecAdded {
        container_id: req.id,
        exec_id: req.exec_id,
        ..Default::default()
    });
    Ok(())
}

pub(super) async fn start_exec(
    pod: &Arc<Pod>,
    container: &Arc<Container>,
    process: &Arc<Process>,
) -> Result<u32> {
    let spec = process
        .exec_spec()
        .ok_or_else(|| Error::FailedPrecondition("exec process has no spec".into()))?;
    let spill_prefix = format!("exec-{}", process.exec_id);
    let owner = IoOwner {
        namespace: &pod.namespace,
        id: &process.exec_id,
        exits: pod.exits.as_ref(),
    };
    let (mut io, child_stdio) = ProcessIo::open(
        &process.stdio,
        &owner,
        &super::launch::spill_dir(&container.bundle),
        &spill_prefix,
        pod.io_limits(),
    )
    .await?;
    child_stdio.give_to(container.io_owner)?;
    let console = match process.stdio.terminal {
        true => Some(ConsoleSocket::bind(&std::env::temp_dir())?),
        false => None,
    };
    let started = super::launch::with_console(
        pod.runtime.exec(ExecOpts {
            id: &container.id,
            exec_id: &process.exec_id,
            bundle: &container.bundle,
            process: &spec,
            stdio: child_stdio,
            console_socket: console.as_ref().map(|c| c.path()),
            init_pid: container.init.pid(),
        }),
        console.as_ref(),
    )
    .await;
    let (pid, console) = match started {
        Ok(l) => (l.pid, l.console),
        Err(e) => {
            io.shutdown().await;
            return Err(e);
        }
    };
    // The process may already be gone; the reaper kept its exit for us.
    let exit = pod.exits.subscribe(pid as i32);
    let attached = console.and_then(|m| m.map_or(Ok(()), |m| io.attach_console(m)));
    if let Err(e) = attached {
        // It runs, but nothing could carry its terminal: it must not run on untracked. Its exit
        // is ours (subscribed above), so its pid cannot have been reused yet.
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid as i32),
            nix::sys::signal::Signal::SIGKILL,
        );
        drop(exit);
        io.shutdown().await;
        return Err(e);
    }
    io.start();
    process.set_pid(pid);
    process.apply(Transition::Started)?;
    process.set_io(io).await;
    watch_exit(pod.clone(), container.clone(), process.clone(), exit);
    Ok(pid)
}

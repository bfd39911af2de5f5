//! State and Pids.

use std::sync::Arc;

use containerd_shim::api::{PidsRequest, PidsResponse, StateRequest, StateResponse};
use containerd_shim_protos::{
    protobuf::{well_known_types::any::Any, Message},
    shim::oci::ProcessDetails,
    types::task::ProcessInfo,
};

use crate::{
    error::{Error, Result},
    events::timestamp,
    pod::Pod,
    process::ProcessStatus,
};

/// How `Pids` names an exec's process, as runc's shim does (`ctr task ps` shows it).
const PROCESS_DETAILS_TYPE_URL: &str = "containerd.runc.v1.ProcessDetails";

/// A process's state; an exec of a paused container is paused with it.
pub fn state(pod: &Arc<Pod>, req: &StateRequest) -> Result<StateResponse> {
    let container = pod.container(&req.id)?;
    let process = container.process(&req.exec_id)?;
    let exit = process.exit();
    let status = match process.status() {
        ProcessStatus::Running if container.init.status() == ProcessStatus::Paused => {
            ProcessStatus::Paused
        }
        own => own,
    };
    Ok(StateResponse {
        id: match req.exec_id.is_empty() {
            true => req.id.clone(),
            false => req.exec_id.clone(),
        },
        bundle: container.bundle.display().to_string(),
        pid: process.pid(),
        status: containerd_shim_protos::protobuf::EnumOrUnknown::new(status.into()),
        stdin: process.stdio.stdin.clone(),
        stdout: process.stdio.stdout.clone(),
        stderr: process.stdio.stderr.clone(),
        terminal: process.stdio.terminal,
        exit_status: exit.map_or(0, |e| e.status),
        exited_at: exit.map(|e| timestamp(e.at)).into(),
        exec_id: req.exec_id.clone(),
        ..Default::default()
    })
}

/// A container's processes, or a pause-less sandbox's one process. containerd, back after a
/// restart, takes a failed or empty answer for a leaked shim (containerd#6860: 2.1 deletes on
/// `len == 0 || NotFound`; 2.3.4 asks for the sandbox id too) and deletes the task before CRI
/// looks at it, its exit and kept output lost and its shim never told to go. So a container
/// whose init the shim has not reaped answers at least that init's pid, whatever the OCI
/// runtime's `ps` says short of not knowing the container; a reaped init (its exit is reported
/// once its output was handed over) answers with its pid, Stopped or not yet. A container the
/// OCI runtime does not know answers NotFound, so that containerd cleans up after it.
pub async fn pids(pod: &Arc<Pod>, req: &PidsRequest) -> Result<PidsResponse> {
    let (pids, execs) = match pod.sandbox_process(&req.id) {
        Some(pid) => (vec![pid], Vec::new()),
        None => {
            let container = pod.container(&req.id)?;
            let init = &container.init;
            let pids = if init.status() == ProcessStatus::Stopped || init.is_reaped() {
                vec![init.pid()]
            } else {
                match pod.runtime.ps(&req.id).await {
                    Err(e @ Error::NotFound(_)) => return Err(e),
                    Ok(listed) if !listed.is_empty() || init.pid() == 0 => listed,
                    other => {
                        log::warn!(
                            "Pids of {}: the runtime answered {:?} while init {} is {:?}; answering with init",
                            req.id,
                            other.map_err(|e| e.to_string()),
                            init.pid(),
                            init.status()
                        );
                        vec![init.pid()]
                    }
                }
            };
            (pids, container.exec_processes())
        }
    };
    let details = |pid: u32| {
        let exec = execs.iter().find(|e| e.pid() == pid && !e.is_reaped())?;
        let details = ProcessDetails {
            exec_id: exec.exec_id.clone(),
            ..Default::default()
        };
        Some(Any {
            type_url: PROCESS_DETAILS_TYPE_URL.into(),
            value: details.write_to_bytes().ok()?,
            ..Default::default()
        })
    };
    Ok(PidsResponse {
        processes: pids
            .into_iter()
            .map(|pid| ProcessInfo {
                pid,
                info: details(pid).into(),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    })
}

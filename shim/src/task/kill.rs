//! Kill: a signal to the container's init (through the runtime, which knows `--all`) or to
//! one exec process.

use std::sync::Arc;

use containerd_shim::api::KillRequest;
use nix::{errno::Errno, sys::signal::Signal, unistd::Pid};

use crate::{
    error::{Error, Result},
    pod::Pod,
};

pub async fn kill(pod: &Arc<Pod>, req: &KillRequest) -> Result<()> {
    let container = pod.container(&req.id)?;
    let process = container.process(&req.exec_id)?;
    process.check_kill(req.all)?;
    if req.exec_id.is_empty() {
        let _in_flight = container.kills.enter();
        return pod.runtime.kill(&req.id, req.signal, req.all).await;
    }
    let signal = Signal::try_from(req.signal as i32)
        .map_err(|_| Error::InvalidArgument(format!("invalid signal {}", req.signal)))?;
    match nix::sys::signal::kill(Pid::from_raw(process.pid() as i32), signal) {
        Ok(()) => Ok(()),
        Err(Errno::ESRCH) => Err(Error::NotFound("process already finished".into())),
        Err(e) => Err(Error::sys(format!("signal exec {}", req.exec_id))(e)),
    }
}

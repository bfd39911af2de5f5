//! Stats (containerd's cgroup Metrics) and Update (new resource limits).

use std::sync::Arc;

use containerd_shim::api::{StatsRequest, StatsResponse, UpdateTaskRequest};

use crate::{
    cgroup::ContainerCgroup,
    error::{Error, Result},
    pod::Pod,
};

pub fn stats(pod: &Arc<Pod>, req: &StatsRequest) -> Result<StatsResponse> {
    let container = pod.container(&req.id)?;
    let metrics = match container.cgroup() {
        Some(cgroup) => cgroup.metrics()?,
        // Created but not started: runc's init already sits in the container's cgroup.
        None => ContainerCgroup::for_pid(container.init.pid())?.metrics()?,
    };
    Ok(StatsResponse {
        stats: Some(metrics).into(),
        ..Default::default()
    })
}

pub async fn update(pod: &Arc<Pod>, req: &UpdateTaskRequest) -> Result<()> {
    pod.container(&req.id)?.init.check_update()?;
    let resources = req
        .resources
        .as_ref()
        .ok_or_else(|| Error::InvalidArgument("update request has no resources".into()))?;
    crate::spec::check_json_object(&resources.value, "linux resources")?;
    pod.runtime.update(&req.id, &resources.value).await
}

//! containerd's Sandbox API (`containerd.runtime.sandbox.v1.Sandbox`): a pause-less pod whose
//! sandbox is the shim itself. Served next to the task API on the pod shim's socket, for
//! containerd's built-in `shim` sandboxer and for podshim-sandboxer. This file routes and maps
//! errors; the pod's lifecycle is in lifecycle.rs. Create, Start, Stop and Shutdown run through
//! `completion::to_completion`: a caller that hangs up never leaves a holder nobody recorded.

pub mod files;
pub mod holder;
pub mod lifecycle;
pub mod pod_api;
pub mod pod_cgroup;
pub mod pod_config;
pub mod remains;
pub mod resize;
pub mod spec;
pub mod validate;

use std::{path::Path, sync::Arc, time::SystemTime};

use async_trait::async_trait;
use containerd_shim_protos::{
    protobuf::well_known_types::any::Any,
    sandbox_api::*,
    sandbox_async::Sandbox,
    ttrpc::{self, r#async::TtrpcContext},
    types::platform::Platform,
};

use crate::{
    completion::to_completion, error::Result, events::timestamp, log_scope::Ids, pod::Pod,
};

use lifecycle::{CreateRequest, Sandboxes};
use podshim_common::pod_api::{architecture, STATE_NOTREADY, STATE_READY};

pub struct SandboxService {
    sandboxes: Arc<Sandboxes>,
}

impl SandboxService {
    pub fn new(pod: Arc<Pod>) -> Self {
        SandboxService {
            sandboxes: Arc::new(Sandboxes::new(pod)),
        }
    }
}

impl SandboxService {
    /// containerd let go of the shim: see let_go.rs.
    pub async fn let_go(&self) {
        self.sandboxes.let_go().await
    }

    /// In-place pod resize, from podshim-sandboxer (`pod_api`; containerd's own `shim` sandboxer
    /// does not pass it on): the pod cgroup takes the new resources.
    pub async fn update_sandbox(
        &self,
        _: &TtrpcContext,
        req: UpdateSandboxRequest,
    ) -> ttrpc::Result<UpdateSandboxResponse> {
        let sandbox = edge(self.sandboxes.get(&req.sandbox_id))?;
        if let Some(r) = req.resources.as_ref() {
            edge(pod_cgroup::resize(&sandbox, &r.type_url, &r.value))?;
        }
        Ok(UpdateSandboxResponse::new())
    }
}

fn edge<T>(r: Result<T>) -> ttrpc::Result<T> {
    r.map_err(|e| {
        log::warn!("sandbox request failed: {e}");
        e.into()
    })
}

#[async_trait]
impl Sandbox for SandboxService {
    async fn create_sandbox(
        &self,
        _: &TtrpcContext,
        req: CreateSandboxRequest,
    ) -> ttrpc::Result<CreateSandboxResponse> {
        edge(
            to_completion(
                &self.sandboxes,
                Ids::of(&req.sandbox_id, ""),
                |s| async move {
                    let (type_url, value) = req
                        .options
                        .as_ref()
                        .map_or(("", &[][..]), |a| (a.type_url.as_str(), a.value.as_slice()));
                    s.create(CreateRequest {
                        sandbox_id: &req.sandbox_id,
                        bundle: Path::new(&req.bundle_path),
                        options_type_url: type_url,
                        options: value,
                        netns_path: &req.netns_path,
                        annotations: &req.annotations,
                    })
                },
            )
            .await,
        )?;
        Ok(CreateSandboxResponse::new())
    }

    async fn start_sandbox(
        &self,
        _: &TtrpcContext,
        req: StartSandboxRequest,
    ) -> ttrpc::Result<StartSandboxResponse> {
        let (sandbox, pid) = edge(
            to_completion(
                &self.sandboxes,
                Ids::of(&req.sandbox_id, ""),
                |s| async move { s.start(&req.sandbox_id).await },
            )
            .await,
        )?;
        let spec = spec::runtime_spec(&sandbox.view(), pid);
        Ok(StartSandboxResponse {
            pid,
            created_at: Some(timestamp(sandbox.created_at)).into(),
            spec: Some(Any {
                type_url: spec::SPEC_TYPE_URL.into(),
                value: spec.to_string().into_bytes(),
                ..Default::default()
            })
            .into(),
            ..Default::default()
        })
    }

    async fn platform(
        &self,
        _: &TtrpcContext,
        _: PlatformRequest,
    ) -> ttrpc::Result<PlatformResponse> {
        Ok(PlatformResponse {
            platform: Some(Platform {
                os: "linux".into(),
                architecture: architecture().into(),
                ..Default::default()
            })
            .into(),
            ..Default::default()
        })
    }

    async fn stop_sandbox(
        &self,
        _: &TtrpcContext,
        req: StopSandboxRequest,
    ) -> ttrpc::Result<StopSandboxResponse> {
        let sandbox = edge(self.sandboxes.get(&req.sandbox_id))?;
        edge(
            to_completion(
                &sandbox,
                Ids::of(&req.sandbox_id, ""),
                |sandbox| async move {
                    sandbox.stop().await;
                    Ok(())
                },
            )
            .await,
        )?;
        Ok(StopSandboxResponse::new())
    }

    async fn wait_sandbox(
        &self,
        _: &TtrpcContext,
        req: WaitSandboxRequest,
    ) -> ttrpc::Result<WaitSandboxResponse> {
        let sandbox = edge(self.sandboxes.get(&req.sandbox_id))?;
        let exit = sandbox.wait().await;
        Ok(WaitSandboxResponse {
            exit_status: exit.status,
            exited_at: Some(timestamp(exit.at)).into(),
            ..Default::default()
        })
    }

    async fn sandbox_status(
        &self,
        _: &TtrpcContext,
        req: SandboxStatusRequest,
    ) -> ttrpc::Result<SandboxStatusResponse> {
        let sandbox = edge(self.sandboxes.get(&req.sandbox_id))?;
        let st = sandbox.status();
        let info = match req.verbose {
            true => spec::verbose_info(&sandbox.view(), st.pid, st.ready),
            false => Default::default(),
        };
        Ok(SandboxStatusResponse {
            // CRI attaches containers to the id echoed here: never leave it empty.
            sandbox_id: sandbox.id.clone(),
            pid: st.pid,
            state: if st.ready {
                STATE_READY
            } else {
                STATE_NOTREADY
            }
            .into(),
            info,
            created_at: Some(timestamp(sandbox.created_at)).into(),
            exited_at: st.exited_at.map(timestamp).into(),
            ..Default::default()
        })
    }

    async fn ping_sandbox(
        &self,
        _: &TtrpcContext,
        req: PingRequest,
    ) -> ttrpc::Result<PingResponse> {
        edge(self.sandboxes.get(&req.sandbox_id))?;
        Ok(PingResponse::new())
    }

    async fn shutdown_sandbox(
        &self,
        _: &TtrpcContext,
        req: ShutdownSandboxRequest,
    ) -> ttrpc::Result<ShutdownSandboxResponse> {
        edge(
            to_completion(
                &self.sandboxes,
                Ids::of(&req.sandbox_id, ""),
                |s| async move { s.shutdown(&req.sandbox_id).await },
            )
            .await,
        )?;
        Ok(ShutdownSandboxResponse::new())
    }

    async fn sandbox_metrics(
        &self,
        _: &TtrpcContext,
        req: SandboxMetricsRequest,
    ) -> ttrpc::Result<SandboxMetricsResponse> {
        let sandbox = edge(self.sandboxes.get(&req.sandbox_id))?;
        let data = edge(pod_cgroup::metrics(&sandbox))?;
        let mut resp = SandboxMetricsResponse::new();
        // The Metric type is not exported by containerd-shim-protos; fill it in place.
        let m = resp.metrics.mut_or_insert_default();
        m.timestamp = Some(timestamp(SystemTime::now())).into();
        m.id = sandbox.id.clone();
        m.data = Some(data).into();
        Ok(resp)
    }
}

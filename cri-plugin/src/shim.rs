//! A connection to one pod shim's Sandbox API (`containerd.runtime.sandbox.v1.Sandbox`, ttrpc,
//! on the socket it also serves the task API on). The shim's protobuf types stop here.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use containerd_shim_protos::{
    protobuf::{well_known_types::any::Any, well_known_types::timestamp::Timestamp as PbTimestamp},
    sandbox_api as api,
    sandbox_async::SandboxClient,
    ttrpc::{self, context},
};

use podshim_common::pod_api;

use crate::error::{Error, Result};
use crate::store::Timestamp;

/// Bounds every request but WaitSandbox (which lasts as long as the pod).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Clone)]
pub struct PodShim {
    client: SandboxClient,
    pod: PodApiClient,
}

/// `podshim_common::pod_api` on the shim's connection.
#[derive(Clone)]
struct PodApiClient {
    client: ttrpc::r#async::Client,
}

impl PodApiClient {
    async fn update_sandbox(
        &self,
        ctx: context::Context,
        req: &api::UpdateSandboxRequest,
    ) -> ttrpc::Result<api::UpdateSandboxResponse> {
        let mut cres = api::UpdateSandboxResponse::new();
        ttrpc::async_client_request!(
            self,
            ctx,
            req,
            pod_api::SERVICE,
            pod_api::UPDATE_SANDBOX,
            cres
        );
    }
}

/// SandboxStatus as the shim answers it.
pub struct ShimStatus {
    pub pid: u32,
    pub state: String,
    pub info: HashMap<String, String>,
    pub created_at: Option<Timestamp>,
    pub exited_at: Option<Timestamp>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Exit {
    pub status: u32,
    pub at: Timestamp,
}

/// StartSandbox as the shim answers it.
#[derive(Debug, PartialEq)]
pub struct ShimStarted {
    /// The namespace holder's.
    pub pid: u32,
    pub created_at: Option<Timestamp>,
    /// The sandbox's OCI runtime spec, as the shim encoded it (none from an older shim).
    pub spec: Option<RawAny>,
}

/// A protobuf `Any` as bytes on either side of podshim-sandboxer.
#[derive(Clone, Debug, PartialEq)]
pub struct RawAny {
    pub type_url: String,
    pub value: Vec<u8>,
}

pub struct Metric {
    pub id: String,
    pub timestamp: Option<Timestamp>,
    pub data: Option<RawAny>,
}

fn ts(t: &containerd_shim_protos::protobuf::MessageField<PbTimestamp>) -> Option<Timestamp> {
    t.as_ref().map(|t| Timestamp {
        secs: t.seconds,
        nanos: t.nanos,
    })
}

fn raw(a: Any) -> RawAny {
    RawAny {
        type_url: a.type_url,
        value: a.value,
    }
}

fn ctx() -> context::Context {
    context::with_duration(REQUEST_TIMEOUT)
}

impl PodShim {
    /// Unavailable when nobody listens at `address` any more.
    pub async fn connect(address: &str) -> Result<PodShim> {
        let client =
            tokio::time::timeout(CONNECT_TIMEOUT, ttrpc::r#async::Client::connect(address))
                .await
                .map_err(|_| Error::Unavailable(format!("connect to shim {address}: timed out")))?
                .map_err(|e| Error::Unavailable(format!("connect to shim {address}: {e}")))?;
        Ok(PodShim {
            client: SandboxClient::new(client.clone()),
            pod: PodApiClient { client },
        })
    }

    fn err(op: &'static str, sandbox: &str) -> impl FnOnce(ttrpc::Error) -> Error {
        let sandbox = sandbox.to_string();
        move |source| Error::Shim {
            op,
            sandbox,
            source,
        }
    }

    pub async fn create(
        &self,
        sandbox_id: &str,
        bundle: &Path,
        options: Option<RawAny>,
        netns_path: &str,
        annotations: HashMap<String, String>,
    ) -> Result<()> {
        let req = api::CreateSandboxRequest {
            sandbox_id: sandbox_id.to_string(),
            bundle_path: bundle.to_string_lossy().into_owned(),
            options: options
                .map(|o| Any {
                    type_url: o.type_url,
                    value: o.value,
                    ..Default::default()
                })
                .into(),
            netns_path: netns_path.to_string(),
            annotations,
            ..Default::default()
        };
        self.client
            .create_sandbox(ctx(), &req)
            .await
            .map_err(Self::err("CreateSandbox", sandbox_id))?;
        Ok(())
    }

    pub async fn start(&self, sandbox_id: &str) -> Result<ShimStarted> {
        let req = api::StartSandboxRequest {
            sandbox_id: sandbox_id.to_string(),
            ..Default::default()
        };
        let r = self
            .client
            .start_sandbox(ctx(), &req)
            .await
            .map_err(Self::err("StartSandbox", sandbox_id))?;
        Ok(ShimStarted {
            pid: r.pid,
            created_at: ts(&r.created_at),
            spec: r.spec.into_option().map(raw),
        })
    }

    pub async fn stop(&self, sandbox_id: &str, timeout_secs: u32) -> Result<()> {
        let req = api::StopSandboxRequest {
            sandbox_id: sandbox_id.to_string(),
            timeout_secs,
            ..Default::default()
        };
        self.client
            .stop_sandbox(ctx(), &req)
            .await
            .map_err(Self::err("StopSandbox", sandbox_id))?;
        Ok(())
    }

    pub async fn wait(&self, sandbox_id: &str) -> Result<Exit> {
        let req = api::WaitSandboxRequest {
            sandbox_id: sandbox_id.to_string(),
            ..Default::default()
        };
        let r = self
            .client
            .wait_sandbox(context::Context::default(), &req)
            .await
            .map_err(Self::err("WaitSandbox", sandbox_id))?;
        Ok(Exit {
            status: r.exit_status,
            at: ts(&r.exited_at).unwrap_or_else(Timestamp::now),
        })
    }

    pub async fn status(&self, sandbox_id: &str, verbose: bool) -> Result<ShimStatus> {
        let req = api::SandboxStatusRequest {
            sandbox_id: sandbox_id.to_string(),
            verbose,
            ..Default::default()
        };
        let r = self
            .client
            .sandbox_status(ctx(), &req)
            .await
            .map_err(Self::err("SandboxStatus", sandbox_id))?;
        Ok(ShimStatus {
            pid: r.pid,
            state: r.state,
            info: r.info,
            created_at: ts(&r.created_at),
            exited_at: ts(&r.exited_at),
        })
    }

    /// The shim leaves once its tasks are gone (at once when it serves no sandbox).
    pub async fn shutdown(&self, sandbox_id: &str) -> Result<()> {
        let req = api::ShutdownSandboxRequest {
            sandbox_id: sandbox_id.to_string(),
            ..Default::default()
        };
        self.client
            .shutdown_sandbox(ctx(), &req)
            .await
            .map_err(Self::err("ShutdownSandbox", sandbox_id))?;
        Ok(())
    }

    /// In-place pod resize: the shim sets the pod cgroup to `resources` (containerd's
    /// `updated-resources` extension, passed on as CRI wrote it).
    pub async fn update(&self, sandbox_id: &str, resources: RawAny) -> Result<()> {
        let req = api::UpdateSandboxRequest {
            sandbox_id: sandbox_id.to_string(),
            resources: Some(Any {
                type_url: resources.type_url,
                value: resources.value,
                ..Default::default()
            })
            .into(),
            ..Default::default()
        };
        match self.pod.update_sandbox(ctx(), &req).await {
            Ok(_) => Ok(()),
            // ttrpc's answer for a service the server does not have.
            Err(ttrpc::Error::RpcStatus(s)) if s.message.ends_with("service does not exist") => {
                Err(Error::Unimplemented(format!(
                    "the shim of sandbox {sandbox_id} cannot resize its pod (a podshim before {})",
                    pod_api::SERVICE
                )))
            }
            Err(e) => Err(Self::err("UpdateSandbox", sandbox_id)(e)),
        }
    }

    pub async fn metrics(&self, sandbox_id: &str) -> Result<Metric> {
        let req = api::SandboxMetricsRequest {
            sandbox_id: sandbox_id.to_string(),
            ..Default::default()
        };
        let r = self
            .client
            .sandbox_metrics(ctx(), &req)
            .await
            .map_err(Self::err("SandboxMetrics", sandbox_id))?;
        let m = r.metrics.into_option().unwrap_or_default();
        Ok(Metric {
            timestamp: ts(&m.timestamp),
            data: m.data.into_option().map(raw),
            id: m.id,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use containerd_shim_protos::sandbox_async::{create_sandbox, Sandbox};
    use containerd_shim_protos::ttrpc::r#async::{Server, TtrpcContext};

    use super::*;

    /// A shim whose StartSandbox answers with `spec`.
    struct FakeShim {
        spec: Option<Any>,
    }

    #[async_trait::async_trait]
    impl Sandbox for FakeShim {
        async fn start_sandbox(
            &self,
            _: &TtrpcContext,
            _: api::StartSandboxRequest,
        ) -> ttrpc::Result<api::StartSandboxResponse> {
            Ok(api::StartSandboxResponse {
                pid: 42,
                spec: self.spec.clone().into(),
                ..Default::default()
            })
        }
    }

    async fn started_by(spec: Option<Any>) -> ShimStarted {
        let dir = tempfile::tempdir().unwrap();
        let address = format!("unix://{}/shim.sock", dir.path().display());
        let mut server = Server::new()
            .bind(&address)
            .unwrap()
            .register_service(create_sandbox(Arc::new(FakeShim { spec })));
        server.start().await.unwrap();
        let started = PodShim::connect(&address)
            .await
            .unwrap()
            .start("pod1")
            .await
            .unwrap();
        server.shutdown().await.unwrap();
        started
    }

    #[tokio::test]
    async fn start_carries_the_shims_spec_unchanged() {
        let spec = Any {
            type_url: "types.containerd.io/opencontainers/runtime-spec/1/Spec".into(),
            value: br#"{"ociVersion":"1.2.0","hostname":"pod1"}"#.to_vec(),
            ..Default::default()
        };
        let s = started_by(Some(spec.clone())).await;
        assert_eq!(s.pid, 42);
        assert_eq!(
            s.spec,
            Some(RawAny {
                type_url: spec.type_url,
                value: spec.value
            })
        );
    }

    #[tokio::test]
    async fn start_without_a_spec_has_none() {
        assert_eq!(started_by(None).await.spec, None);
    }

    /// Answers pod_api's UpdateSandbox by sending what it got on `tx`.
    struct FakeUpdate {
        tx: std::sync::mpsc::Sender<api::UpdateSandboxRequest>,
    }

    #[async_trait::async_trait]
    impl ttrpc::r#async::MethodHandler for FakeUpdate {
        async fn handler(
            &self,
            _: TtrpcContext,
            req: ttrpc::Request,
        ) -> ttrpc::Result<ttrpc::Response> {
            use containerd_shim_protos::protobuf::Message;
            let r = api::UpdateSandboxRequest::parse_from_bytes(&req.payload).unwrap();
            self.tx.send(r).unwrap();
            let mut res = ttrpc::Response::new();
            res.set_status(ttrpc::get_status(ttrpc::Code::OK, ""));
            res.payload = api::UpdateSandboxResponse::new().write_to_bytes().unwrap();
            Ok(res)
        }
    }

    async fn update_on(server: Server, address: &str) -> Result<()> {
        let mut server = server.bind(address).unwrap();
        server.start().await.unwrap();
        let resources = RawAny {
            type_url: "io.containerd.cri.v1/UpdatedResources".into(),
            value: br#"{"Resources":{"cpu_shares":512}}"#.to_vec(),
        };
        let r = PodShim::connect(address)
            .await
            .unwrap()
            .update("pod1", resources)
            .await;
        server.shutdown().await.unwrap();
        r
    }

    #[tokio::test]
    async fn update_reaches_the_pod_api_with_the_resources_as_given() {
        let dir = tempfile::tempdir().unwrap();
        let address = format!("unix://{}/shim.sock", dir.path().display());
        let (tx, rx) = std::sync::mpsc::channel();
        let mut methods: HashMap<String, Box<dyn ttrpc::r#async::MethodHandler + Send + Sync>> =
            HashMap::new();
        methods.insert(pod_api::UPDATE_SANDBOX.into(), Box::new(FakeUpdate { tx }));
        let service = ttrpc::r#async::Service {
            methods,
            streams: HashMap::new(),
        };
        let server =
            Server::new().register_service(HashMap::from([(pod_api::SERVICE.into(), service)]));
        update_on(server, &address).await.unwrap();
        let got = rx.try_recv().unwrap();
        assert_eq!(got.sandbox_id, "pod1");
        assert_eq!(
            got.resources.type_url,
            "io.containerd.cri.v1/UpdatedResources"
        );
        assert_eq!(got.resources.value, br#"{"Resources":{"cpu_shares":512}}"#);
    }

    #[tokio::test]
    async fn update_on_a_shim_without_the_pod_api_is_unimplemented() {
        let dir = tempfile::tempdir().unwrap();
        let address = format!("unix://{}/shim.sock", dir.path().display());
        let server =
            Server::new().register_service(create_sandbox(Arc::new(FakeShim { spec: None })));
        let e = update_on(server, &address).await.unwrap_err();
        assert_eq!(e.code(), tonic::Code::Unimplemented, "{e}");
    }
}

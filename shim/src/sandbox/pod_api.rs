//! podshim's own addition to the Sandbox API (`podshim_common::pod_api`): UpdateSandbox, which
//! containerd's proto defines the messages of but serves no RPC for.

use std::{collections::HashMap, sync::Arc};

use async_trait::async_trait;
use containerd_shim_protos::sandbox_api::UpdateSandboxRequest;
use podshim_common::pod_api;
use ttrpc::r#async::{MethodHandler, Service, TtrpcContext};

use super::SandboxService;

struct UpdateSandbox {
    service: Arc<SandboxService>,
}

#[async_trait]
impl MethodHandler for UpdateSandbox {
    async fn handler(
        &self,
        ctx: TtrpcContext,
        req: ttrpc::Request,
    ) -> ttrpc::Result<ttrpc::Response> {
        ttrpc::async_request_handler!(self, ctx, req, UpdateSandboxRequest, update_sandbox);
    }
}

/// The service to register next to containerd's Sandbox service.
pub fn service(sandbox: Arc<SandboxService>) -> HashMap<String, Service> {
    let mut methods: HashMap<String, Box<dyn MethodHandler + Send + Sync>> = HashMap::new();
    methods.insert(
        pod_api::UPDATE_SANDBOX.to_string(),
        Box::new(UpdateSandbox { service: sandbox }),
    );
    let service = Service {
        methods,
        streams: HashMap::new(),
    };
    HashMap::from([(pod_api::SERVICE.to_string(), service)])
}

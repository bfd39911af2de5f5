//! What podshim-sandboxer asks containerd itself, on containerd's own socket: whether a sandbox
//! is still in containerd's sandbox store.
//!
//! CRI writes a sandbox into that store before it calls the controller's Create, and deletes it
//! only after Shutdown answered or after giving up on a RunPodSandbox; in the second case it
//! does not always tell the controller (a failed pause image pull after Create on 2.3, a failure
//! after Start on 2.1 and 2.2, an answer lost with a restart). A sandbox containerd does not
//! have is one nobody will ever call about again.

use std::path::Path;
use std::time::Duration;

use containerd_client::services::v1::sandbox::{store_client::StoreClient, StoreGetRequest};
use hyper_util::rt::TokioIo;
use tokio::net::UnixStream;
use tonic::transport::{Channel, Endpoint, Uri};

/// The gRPC metadata containerd's namespaces travel in.
const NAMESPACE_KEY: &str = "containerd-namespace";
/// One question must not hold up the sweep when containerd hangs.
const ASK_TIMEOUT: Duration = Duration::from_secs(10);

/// What containerd answered about a sandbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Known {
    Yes,
    No,
    /// containerd could not be asked or did not answer clearly: nothing may be concluded.
    Unsure(String),
}

#[derive(Clone)]
pub struct Containerd {
    channel: Channel,
}

impl Containerd {
    /// Connects lazily, and again after every failure: containerd restarts under us.
    pub fn new(address: &Path) -> Containerd {
        let path = address.to_path_buf();
        let channel =
            Endpoint::from_static("http://containerd")
                .connect_timeout(ASK_TIMEOUT)
                .timeout(ASK_TIMEOUT)
                .connect_with_connector_lazy(tower::service_fn(move |_: Uri| {
                    let path = path.clone();
                    async move {
                        Ok::<_, std::io::Error>(TokioIo::new(UnixStream::connect(path).await?))
                    }
                }));
        Containerd { channel }
    }

    pub async fn knows(&self, namespace: &str, sandbox_id: &str) -> Known {
        let mut req = tonic::Request::new(StoreGetRequest {
            sandbox_id: sandbox_id.to_string(),
        });
        match namespace.parse() {
            Ok(ns) => req.metadata_mut().insert(NAMESPACE_KEY, ns),
            Err(e) => return Known::Unsure(format!("namespace {namespace:?}: {e}")),
        };
        match StoreClient::new(self.channel.clone()).get(req).await {
            Ok(_) => Known::Yes,
            Err(s) if s.code() == tonic::Code::NotFound => Known::No,
            Err(s) => Known::Unsure(format!("{:?}: {}", s.code(), s.message())),
        }
    }
}

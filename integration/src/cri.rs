//! Thin CRI (runtime.v1) client over containerd's unix socket, as kubelet drives it.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use hyper_util::rt::TokioIo;
use k8s_cri::v1::image_service_client::ImageServiceClient;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use k8s_cri::v1::*;
use tokio::net::UnixStream;
use tonic::transport::{Channel, Endpoint, Uri};

#[derive(Clone)]
pub struct Cri {
    pub rt: RuntimeServiceClient<Channel>,
    pub img: ImageServiceClient<Channel>,
    /// For calls the generated clients lack.
    channel: Channel,
}

/// A gRPC channel to a unix socket, connected on first use; `timeout` bounds each call.
pub(crate) fn unix_channel(path: PathBuf, timeout: Duration) -> Result<Channel> {
    Ok(Endpoint::try_from("http://[::1]:50051")?
        .connect_timeout(Duration::from_secs(5))
        .timeout(timeout)
        .connect_with_connector_lazy(tower::service_fn(move |_: Uri| {
            let path = path.clone();
            async move { Ok::<_, std::io::Error>(TokioIo::new(UnixStream::connect(path).await?)) }
        })))
}

/// `runtime.v1.UpdatePodSandboxResourcesRequest`, field for field.
#[derive(Clone, PartialEq, prost::Message)]
struct UpdatePodSandboxResourcesRequest {
    #[prost(string, tag = "1")]
    pod_sandbox_id: String,
    #[prost(message, optional, tag = "2")]
    overhead: Option<LinuxContainerResources>,
    #[prost(message, optional, tag = "3")]
    resources: Option<LinuxContainerResources>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct UpdatePodSandboxResourcesResponse {}

fn st(e: tonic::Status) -> anyhow::Error {
    anyhow!("{:?}: {}", e.code(), e.message())
}

impl Cri {
    /// A client whose connection is made on first use.
    pub async fn connect(sock: &Path) -> Result<Cri> {
        let ch = unix_channel(sock.to_path_buf(), Duration::from_secs(45))?;
        Ok(Cri {
            rt: RuntimeServiceClient::new(ch.clone()),
            img: ImageServiceClient::new(ch.clone()),
            channel: ch,
        })
    }

    /// A client to nowhere, replaced once containerd is up.
    pub fn placeholder() -> Cri {
        let ch = unix_channel(
            PathBuf::from("/nonexistent/podshim-e2e.sock"),
            Duration::from_secs(45),
        )
        .expect("static endpoint");
        Cri {
            rt: RuntimeServiceClient::new(ch.clone()),
            img: ImageServiceClient::new(ch.clone()),
            channel: ch,
        }
    }

    pub async fn version(&self) -> Result<VersionResponse> {
        Ok(self
            .rt
            .clone()
            .version(VersionRequest {
                version: "v1".into(),
            })
            .await
            .map_err(st)?
            .into_inner())
    }

    /// The runtime's Status: conditions, and each handler's features.
    pub async fn status(&self) -> Result<StatusResponse> {
        Ok(self
            .rt
            .clone()
            .status(StatusRequest { verbose: false })
            .await
            .map_err(st)
            .context("Status")?
            .into_inner())
    }

    pub async fn image_present(&self, image: &str) -> Result<bool> {
        let r = self
            .img
            .clone()
            .image_status(ImageStatusRequest {
                image: Some(ImageSpec {
                    image: image.into(),
                    ..Default::default()
                }),
                verbose: false,
            })
            .await
            .map_err(st)?
            .into_inner();
        Ok(r.image.is_some())
    }

    /// PullImage as kubelet sends it for a pod: the pod's config, and the runtime handler both in
    /// the image spec (containerd 2.2+) and the pod annotation containerd 2.1 reads.
    pub async fn pull_image(
        &self,
        image: &str,
        pod_config: &PodSandboxConfig,
        handler: &str,
    ) -> Result<String> {
        let mut cfg = pod_config.clone();
        cfg.annotations
            .insert("io.containerd.cri.runtime-handler".into(), handler.into());
        let r = self
            .img
            .clone()
            .pull_image(PullImageRequest {
                image: Some(ImageSpec {
                    image: image.into(),
                    runtime_handler: handler.into(),
                    ..Default::default()
                }),
                auth: None,
                sandbox_config: Some(cfg),
            })
            .await
            .map_err(st)
            .with_context(|| format!("PullImage {image}"))?;
        Ok(r.into_inner().image_ref)
    }

    pub async fn remove_image(&self, image: &str) -> Result<()> {
        self.img
            .clone()
            .remove_image(RemoveImageRequest {
                image: Some(ImageSpec {
                    image: image.into(),
                    ..Default::default()
                }),
            })
            .await
            .map_err(st)
            .with_context(|| format!("RemoveImage {image}"))?;
        Ok(())
    }

    pub async fn image_fs_info(&self) -> Result<ImageFsInfoResponse> {
        Ok(self
            .img
            .clone()
            .image_fs_info(ImageFsInfoRequest {})
            .await
            .map_err(st)
            .context("ImageFsInfo")?
            .into_inner())
    }

    pub async fn list_pods(&self) -> Result<Vec<String>> {
        let r = self
            .rt
            .clone()
            .list_pod_sandbox(ListPodSandboxRequest { filter: None })
            .await
            .map_err(st)?;
        Ok(r.into_inner().items.into_iter().map(|p| p.id).collect())
    }

    pub async fn run_pod(&self, config: PodSandboxConfig, handler: &str) -> Result<String> {
        let r = self
            .rt
            .clone()
            .run_pod_sandbox(RunPodSandboxRequest {
                config: Some(config),
                runtime_handler: handler.into(),
            })
            .await
            .map_err(st)
            .context("RunPodSandbox")?;
        Ok(r.into_inner().pod_sandbox_id)
    }

    pub async fn pod_status(&self, id: &str, verbose: bool) -> Result<PodSandboxStatusResponse> {
        Ok(self
            .rt
            .clone()
            .pod_sandbox_status(PodSandboxStatusRequest {
                pod_sandbox_id: id.into(),
                verbose,
            })
            .await
            .map_err(st)
            .context("PodSandboxStatus")?
            .into_inner())
    }

    pub async fn stop_pod(&self, id: &str) -> Result<()> {
        self.rt
            .clone()
            .stop_pod_sandbox(StopPodSandboxRequest {
                pod_sandbox_id: id.into(),
            })
            .await
            .map_err(st)
            .context("StopPodSandbox")?;
        Ok(())
    }

    pub async fn remove_pod(&self, id: &str) -> Result<()> {
        self.rt
            .clone()
            .remove_pod_sandbox(RemovePodSandboxRequest {
                pod_sandbox_id: id.into(),
            })
            .await
            .map_err(st)
            .context("RemovePodSandbox")?;
        Ok(())
    }

    pub async fn create_container(
        &self,
        pod_id: &str,
        pod_config: &PodSandboxConfig,
        config: ContainerConfig,
    ) -> Result<String> {
        let r = self
            .rt
            .clone()
            .create_container(CreateContainerRequest {
                pod_sandbox_id: pod_id.into(),
                config: Some(config),
                sandbox_config: Some(pod_config.clone()),
            })
            .await
            .map_err(st)
            .context("CreateContainer")?;
        Ok(r.into_inner().container_id)
    }

    pub async fn start_container(&self, id: &str) -> Result<()> {
        self.rt
            .clone()
            .start_container(StartContainerRequest {
                container_id: id.into(),
            })
            .await
            .map_err(st)
            .context("StartContainer")?;
        Ok(())
    }

    pub async fn stop_container(&self, id: &str, timeout_s: i64) -> Result<()> {
        self.rt
            .clone()
            .stop_container(StopContainerRequest {
                container_id: id.into(),
                timeout: timeout_s,
            })
            .await
            .map_err(st)
            .context("StopContainer")?;
        Ok(())
    }

    pub async fn remove_container(&self, id: &str) -> Result<()> {
        self.rt
            .clone()
            .remove_container(RemoveContainerRequest {
                container_id: id.into(),
            })
            .await
            .map_err(st)
            .context("RemoveContainer")?;
        Ok(())
    }

    pub async fn container_status(&self, id: &str) -> Result<ContainerStatus> {
        self.rt
            .clone()
            .container_status(ContainerStatusRequest {
                container_id: id.into(),
                verbose: false,
            })
            .await
            .map_err(st)
            .context("ContainerStatus")?
            .into_inner()
            .status
            .ok_or_else(|| anyhow!("ContainerStatus returned no status"))
    }

    pub async fn list_containers(&self, pod_id: &str) -> Result<Vec<Container>> {
        let r = self
            .rt
            .clone()
            .list_containers(ListContainersRequest {
                filter: Some(ContainerFilter {
                    pod_sandbox_id: pod_id.into(),
                    ..Default::default()
                }),
            })
            .await
            .map_err(st)?;
        Ok(r.into_inner().containers)
    }

    /// Poll ContainerStatus until the container has exited.
    pub async fn wait_exited(&self, id: &str, timeout: Duration) -> Result<ContainerStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            let s = self.container_status(id).await?;
            if s.state == ContainerState::ContainerExited as i32 {
                return Ok(s);
            }
            if Instant::now() > deadline {
                bail!(
                    "container {id} did not exit within {timeout:?}; state {:?}",
                    ContainerState::try_from(s.state)
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub async fn exec_sync(
        &self,
        id: &str,
        cmd: &[&str],
        timeout_s: i64,
    ) -> Result<ExecSyncResponse> {
        Ok(self
            .rt
            .clone()
            .exec_sync(ExecSyncRequest {
                container_id: id.into(),
                cmd: cmd.iter().map(|s| s.to_string()).collect(),
                timeout: timeout_s,
            })
            .await
            .map_err(st)
            .with_context(|| format!("ExecSync {cmd:?}"))?
            .into_inner())
    }

    /// UpdateContainerResources: new Linux resources for a running container.
    pub async fn update_container_resources(
        &self,
        id: &str,
        linux: LinuxContainerResources,
    ) -> Result<()> {
        self.rt
            .clone()
            .update_container_resources(UpdateContainerResourcesRequest {
                container_id: id.into(),
                linux: Some(linux),
                ..Default::default()
            })
            .await
            .map_err(st)
            .with_context(|| format!("UpdateContainerResources {id}"))?;
        Ok(())
    }

    /// CheckpointContainer into the archive `location`.
    pub async fn checkpoint_container(&self, id: &str, location: &Path) -> Result<()> {
        self.rt
            .clone()
            .checkpoint_container(CheckpointContainerRequest {
                container_id: id.into(),
                location: location.to_string_lossy().into_owned(),
                timeout: 60,
            })
            .await
            .map_err(st)
            .context("CheckpointContainer")?;
        Ok(())
    }

    pub async fn container_stats(&self, id: &str) -> Result<ContainerStats> {
        self.rt
            .clone()
            .container_stats(ContainerStatsRequest {
                container_id: id.into(),
            })
            .await
            .map_err(st)
            .context("ContainerStats")?
            .into_inner()
            .stats
            .ok_or_else(|| anyhow!("ContainerStats returned no stats"))
    }

    pub async fn pod_stats(&self, id: &str) -> Result<PodSandboxStats> {
        self.rt
            .clone()
            .pod_sandbox_stats(PodSandboxStatsRequest {
                pod_sandbox_id: id.into(),
            })
            .await
            .map_err(st)
            .context("PodSandboxStats")?
            .into_inner()
            .stats
            .ok_or_else(|| anyhow!("PodSandboxStats returned no stats"))
    }

    /// UpdatePodSandboxResources (CRI 1.33, containerd 2.3): the kubelet tells the runtime a pod's
    /// new resources after it resized the pod's cgroup.
    pub async fn update_pod_resources(
        &self,
        pod_sandbox_id: &str,
        overhead: Option<LinuxContainerResources>,
        resources: LinuxContainerResources,
    ) -> Result<()> {
        let mut grpc = tonic::client::Grpc::new(self.channel.clone());
        grpc.ready()
            .await
            .map_err(|e| anyhow!("UpdatePodSandboxResources: {e}"))?;
        let path = tonic::codegen::http::uri::PathAndQuery::from_static(
            "/runtime.v1.RuntimeService/UpdatePodSandboxResources",
        );
        let req = UpdatePodSandboxResourcesRequest {
            pod_sandbox_id: pod_sandbox_id.into(),
            overhead,
            resources: Some(resources),
        };
        grpc.unary::<_, UpdatePodSandboxResourcesResponse, _>(
            tonic::Request::new(req),
            path,
            tonic_prost::ProstCodec::default(),
        )
        .await
        .map_err(st)
        .context("UpdatePodSandboxResources")?;
        Ok(())
    }

    /// ListPodSandboxStats of every pod, as the kubelet asks with `PodAndContainerStatsFromCRI`.
    pub async fn list_pod_stats(&self) -> Result<Vec<PodSandboxStats>> {
        Ok(self
            .rt
            .clone()
            .list_pod_sandbox_stats(ListPodSandboxStatsRequest { filter: None })
            .await
            .map_err(st)
            .context("ListPodSandboxStats")?
            .into_inner()
            .stats)
    }

    pub async fn exec_url(&self, req: ExecRequest) -> Result<String> {
        Ok(self
            .rt
            .clone()
            .exec(req)
            .await
            .map_err(st)
            .context("Exec")?
            .into_inner()
            .url)
    }

    pub async fn attach_url(&self, req: AttachRequest) -> Result<String> {
        Ok(self
            .rt
            .clone()
            .attach(req)
            .await
            .map_err(st)
            .context("Attach")?
            .into_inner()
            .url)
    }

    pub async fn port_forward_url(&self, pod_id: &str, ports: &[i32]) -> Result<String> {
        Ok(self
            .rt
            .clone()
            .port_forward(PortForwardRequest {
                pod_sandbox_id: pod_id.into(),
                port: ports.to_vec(),
            })
            .await
            .map_err(st)
            .context("PortForward")?
            .into_inner()
            .url)
    }
}

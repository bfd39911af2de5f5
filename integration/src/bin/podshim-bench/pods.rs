//! Starting and removing the pods every phase measures.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use k8s_cri::v1::{ContainerConfig, ContainerState, PodSandboxConfig};
use podshim_integration::{sh, Containerd, Pod};

pub(crate) async fn remove_all_pods(c: &Containerd) {
    if let Ok(pods) = c.cri.list_pods().await {
        let futs = pods.iter().map(|p| async move {
            let _ = c.cri.stop_pod(p).await;
            let _ = c.cri.remove_pod(p).await;
        });
        futures_util::future::join_all(futs).await;
    }
}

/// A long-running container that exits at once on SIGTERM (sleep as pid 1 would ignore it).
pub(crate) fn sleeper(name: &str) -> ContainerConfig {
    sh(name, "trap 'exit 0' TERM; sleep 1000000 & wait")
}

pub(crate) struct Started {
    pub(crate) pod: Pod,
    pub(crate) run_pod: Duration,
    pub(crate) total: Duration,
    pub(crate) containers: Vec<String>,
}

/// RunPodSandbox, then `n` containers created and started; `total` runs until ContainerStatus
/// reports the first container RUNNING.
pub(crate) async fn start_pod(
    c: &Containerd,
    handler: &str,
    name: String,
    n: usize,
) -> Result<Started> {
    let cfg: PodSandboxConfig = c.pod_config(&name);
    let log_dir = PathBuf::from(&cfg.log_directory);
    std::fs::create_dir_all(&log_dir)?;
    let cgroup_parent = cfg
        .linux
        .as_ref()
        .map(|l| l.cgroup_parent.clone())
        .unwrap_or_default();
    let t0 = Instant::now();
    let id = c
        .cri
        .run_pod(cfg.clone(), handler)
        .await
        .with_context(|| format!("pod {name} ({handler})"))?;
    let run_pod = t0.elapsed();
    let pod = Pod {
        id,
        name,
        config: cfg,
        log_dir,
        cgroup_parent,
        netns: None,
        ip: String::new(),
    };
    let mut containers = Vec::new();
    let mut total = Duration::ZERO;
    for i in 0..n {
        let cid = c
            .create_container(&pod, sleeper(&format!("app{i}")))
            .await?;
        c.cri.start_container(&cid).await?;
        if i == 0 {
            let st = c.cri.container_status(&cid).await?;
            if st.state != ContainerState::ContainerRunning as i32 {
                bail!(
                    "container {cid} not running after StartContainer: state {}",
                    st.state
                );
            }
            total = t0.elapsed();
        }
        containers.push(cid);
    }
    Ok(Started {
        pod,
        run_pod,
        total,
        containers,
    })
}

//! What only the podshim-sandboxer daemon has: its own restarts and its warm pool.

use std::time::Duration;

use anyhow::{ensure, Result};
use k8s_cri::v1::PodSandboxState;
use podshim_integration::{sh, Containerd, Options};

use crate::lifecycle::assert_pod_gone;

pub fn pool_of_two(o: Options) -> Options {
    Options {
        sandboxer_pool: 2,
        ..o
    }
}

/// Idle pool shims of this run (not yet adopted ones carry the same `-id`, so compare pids).
pub fn pool_shims(c: &Containerd) -> Vec<i32> {
    c.all_shims()
        .into_iter()
        .filter(|p| {
            p.arg_after("-id")
                .is_some_and(|id| id.starts_with("podshim-pool-"))
        })
        .map(|p| p.pid)
        .collect()
}

pub async fn until(what: &str, mut f: impl FnMut() -> bool) -> Result<()> {
    for _ in 0..300 {
        if f() {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    anyhow::bail!("never happened: {what}")
}

async fn pod_ready(c: &Containerd, id: &str) -> Result<bool> {
    let st = c
        .cri
        .pod_status(id, false)
        .await?
        .status
        .unwrap_or_default();
    Ok(st.state == PodSandboxState::SandboxReady as i32)
}

/// `kill -9` of the sandboxer while a pod runs (with an idle pool shim beside it): containers
/// keep running and containerd keeps reaching the pod's shim directly; after the restart the
/// pod is READY, exec works, Stop/RemovePodSandbox clean up everything (the teardown checks
/// the sandboxer's records, bundles and pool).
pub async fn sandboxer_restart_mid_pod(c: &mut Containerd) -> Result<()> {
    let pod = c.run_pod("sbrestart").await?;
    let ctr = c.run_container(&pod, sh("app", "exec sleep 1000")).await?;
    let shim = crate::util::ppid(pod.container_init_pid(&ctr)?)?;
    until("the pool refilled", || {
        pool_shims(c).iter().filter(|p| **p != shim).count() == 2
    })
    .await?;
    let idle: Vec<i32> = pool_shims(c).into_iter().filter(|p| *p != shim).collect();

    c.kill9_sandboxer()?;
    // containerd does not need the sandboxer for the pod's containers.
    let r = c.cri.exec_sync(&ctr, &["echo", "down"], 10).await?;
    ensure!(r.exit_code == 0, "exec while the sandboxer is down: {r:?}");
    c.spawn_sandboxer().await?;

    // containerd's gRPC client to the plugin reconnects with backoff (at most 3 s): until then
    // its calls fail with Unavailable, which kubelet retries. So do we, a bounded number of times.
    let mut ready = pod_ready(c, &pod.id).await;
    for _ in 0..50 {
        if ready.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        ready = pod_ready(c, &pod.id).await;
    }
    ensure!(ready?, "pod not READY after the sandboxer's restart");
    let r = c.cri.exec_sync(&ctr, &["echo", "up"], 10).await?;
    ensure!(
        r.exit_code == 0 && String::from_utf8_lossy(&r.stdout).trim() == "up",
        "exec after the sandboxer's restart: {r:?}"
    );
    ensure!(
        crate::util::ppid(pod.container_init_pid(&ctr)?)? == shim,
        "the pod's container moved to another shim"
    );
    let now: Vec<i32> = pool_shims(c).into_iter().filter(|p| *p != shim).collect();
    ensure!(
        now == idle,
        "idle pool shims {idle:?} became {now:?}: replaced or leaked"
    );

    // A container started after the restart goes to the same shim.
    let ctr2 = c.run_container(&pod, sh("late", "exec sleep 1000")).await?;
    ensure!(
        crate::util::ppid(pod.container_init_pid(&ctr2)?)? == shim,
        "second container in another shim"
    );
    c.remove_pod(&pod).await?;
    assert_pod_gone(c, &pod, &[ctr, ctr2]).await?;
    ensure!(
        !c.all_shims().iter().any(|p| p.pid == shim),
        "the pod's shim {shim} is still running"
    );
    Ok(())
}

/// RunPodSandbox adopts idle pool shims (no shim start on the pod's path) and the pool refills;
/// the pods work like any other.
pub async fn sandboxer_warm_pool(c: &mut Containerd) -> Result<()> {
    until("two idle pool shims", || pool_shims(c).len() == 2).await?;
    let warm = pool_shims(c);
    let mut pods = Vec::new();
    for i in 0..3 {
        let pod = c.run_pod(&format!("warm{i}")).await?;
        let ctr = c.run_container(&pod, sh("app", "exec sleep 1000")).await?;
        let shim = crate::util::ppid(pod.container_init_pid(&ctr)?)?;
        let r = c.cri.exec_sync(&ctr, &["true"], 10).await?;
        ensure!(r.exit_code == 0, "exec in pod {i}: {r:?}");
        pods.push((pod, ctr, shim));
    }
    ensure!(
        warm.iter().all(|w| pods.iter().any(|p| p.2 == *w)),
        "pool shims {warm:?} were not adopted by the pods' shims {:?}",
        pods.iter().map(|p| p.2).collect::<Vec<_>>()
    );
    let shims: std::collections::BTreeSet<i32> = pods.iter().map(|p| p.2).collect();
    ensure!(shims.len() == 3, "pods share shims: {shims:?}");
    until("the pool refilled", || {
        pool_shims(c).iter().filter(|p| !shims.contains(p)).count() == 2
    })
    .await?;
    for (pod, ctr, shim) in pods {
        c.remove_pod(&pod).await?;
        assert_pod_gone(c, &pod, &[ctr]).await?;
        ensure!(
            !c.all_shims().iter().any(|p| p.pid == shim),
            "shim {shim} left"
        );
    }
    Ok(())
}

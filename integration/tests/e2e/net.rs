//! Pod networking through CNI (bridge + portmap, loopback by containerd).

use std::time::Duration;

use anyhow::{ensure, Result};
use k8s_cri::v1::PodSandboxState;
use podshim_integration::{sh, Containerd};

use crate::util::http_get;

/// RunPodSandbox gives the pod an IP on our bridge; a server in the pod answers from the host.
pub async fn pod_ip_reachable(c: &mut Containerd) -> Result<()> {
    let pod = c.run_pod("net").await?;
    ensure!(
        pod.ip.starts_with(&format!("{}.", c.subnet_prefix)),
        "pod IP {:?} is not in the CNI subnet {}.0/24",
        pod.ip,
        c.subnet_prefix
    );
    let st = c
        .cri
        .pod_status(&pod.id, false)
        .await?
        .status
        .unwrap_or_default();
    ensure!(
        st.state == PodSandboxState::SandboxReady as i32,
        "pod not READY: {st:?}"
    );
    ensure!(
        st.runtime_handler == c.opts.handler,
        "runtime_handler {:?}",
        st.runtime_handler
    );
    c.run_container(
        &pod,
        sh(
            "web",
            "mkdir -p /www && echo podshim-ok > /www/index.html && exec httpd -f -p 8080 -h /www",
        ),
    )
    .await?;
    let resp = http_get(
        &format!("{}:8080", pod.ip),
        "/index.html",
        Duration::from_secs(15),
    )
    .await?;
    ensure!(
        resp.contains(" 200 ") && resp.contains("podshim-ok"),
        "unexpected response: {resp:?}"
    );
    Ok(())
}

/// Two containers of one pod share the network namespace (loopback) and IPC (/dev/shm, ipc ns),
/// and see the pod's hostname.
pub async fn two_containers_share_net_ipc(c: &mut Containerd) -> Result<()> {
    let pod = c.run_pod("shared").await?;
    let a = c
        .run_container(
            &pod,
            sh("server", "mkdir -p /www && echo from-server > /www/index.html && exec httpd -f -p 127.0.0.1:9000 -h /www"),
        )
        .await?;
    let b = c
        .run_container(&pod, sh("client", "exec sleep 1000"))
        .await?;

    // The client reaches the server on 127.0.0.1: same network namespace.
    let mut got = None;
    for _ in 0..50 {
        let r = c
            .cri
            .exec_sync(
                &b,
                &["wget", "-q", "-O", "-", "http://127.0.0.1:9000/index.html"],
                5,
            )
            .await?;
        if r.exit_code == 0 {
            got = Some(String::from_utf8_lossy(&r.stdout).into_owned());
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    ensure!(
        got.as_deref() == Some("from-server\n"),
        "client could not fetch from server on 127.0.0.1: {got:?}"
    );
    // ...and the server is bound to loopback only: not reachable on the pod IP from the host.
    let from_host = tokio::time::timeout(
        Duration::from_secs(2),
        tokio::net::TcpStream::connect(format!("{}:9000", pod.ip)),
    )
    .await;
    ensure!(
        !matches!(from_host, Ok(Ok(_))),
        "server bound to 127.0.0.1 is reachable on the pod IP from the host"
    );

    // Same net/ipc/uts namespaces, different from the host's.
    for ns in ["net", "ipc", "uts"] {
        let path = format!("/proc/self/ns/{ns}");
        let ra = c.cri.exec_sync(&a, &["readlink", &path], 5).await?;
        let rb = c.cri.exec_sync(&b, &["readlink", &path], 5).await?;
        let (na, nb) = (
            String::from_utf8_lossy(&ra.stdout).trim().to_string(),
            String::from_utf8_lossy(&rb.stdout).trim().to_string(),
        );
        let host = std::fs::read_link(&path)?.to_string_lossy().into_owned();
        ensure!(
            !na.is_empty() && na == nb,
            "{ns} namespace differs between containers: {na:?} vs {nb:?}"
        );
        ensure!(
            na != host,
            "{ns} namespace of the pod is the host's ({host})"
        );
    }
    // POSIX shared memory through the pod's /dev/shm.
    let w = c
        .cri
        .exec_sync(&a, &["sh", "-c", "echo shm-data > /dev/shm/podshim-e2e"], 5)
        .await?;
    ensure!(w.exit_code == 0, "writing /dev/shm failed: {w:?}");
    let r = c
        .cri
        .exec_sync(&b, &["cat", "/dev/shm/podshim-e2e"], 5)
        .await?;
    ensure!(r.stdout == b"shm-data\n", "IPC: /dev/shm not shared: {r:?}");
    // Hostname from the pod config.
    let h = c.cri.exec_sync(&b, &["hostname"], 5).await?;
    ensure!(
        h.stdout == b"shared\n",
        "hostname {:?}",
        String::from_utf8_lossy(&h.stdout)
    );
    Ok(())
}

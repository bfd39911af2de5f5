//! Small helpers shared by the cases.

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// HTTP/1.0 GET from `addr` (host:port), retried for up to `within` (bounded, 200 ms apart).
pub async fn http_get(addr: &str, path: &str, within: Duration) -> Result<String> {
    let deadline = Instant::now() + within;
    loop {
        let last = match try_http_get(addr, path).await {
            Ok(b) => return Ok(b),
            Err(e) => format!("{e:#}"),
        };
        if Instant::now() > deadline {
            bail!("GET http://{addr}{path} failed for {within:?}: {last}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn try_http_get(addr: &str, path: &str) -> Result<String> {
    let mut s = tokio::time::timeout(Duration::from_secs(2), TcpStream::connect(addr))
        .await
        .context("connect timeout")??;
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes())
        .await?;
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut buf))
        .await
        .context("read timeout")??;
    let text = String::from_utf8_lossy(&buf).into_owned();
    anyhow::ensure!(
        text.starts_with("HTTP/1."),
        "not an HTTP response: {text:?}"
    );
    Ok(text)
}

/// The parent of a process that must exist.
pub fn ppid(pid: i32) -> Result<i32> {
    podshim_integration::sys::ppid(pid).with_context(|| format!("no process {pid}"))
}

/// A pod named `name` whose RunPodSandbox must fail (`why`: what should have stopped it): the
/// error, whole.
pub async fn run_pod_fails(
    c: &mut podshim_integration::Containerd,
    name: &str,
    why: &str,
) -> Result<String> {
    let cfg = c.pod_config(name);
    match c.run_pod_with(cfg).await {
        Ok(p) => bail!("RunPodSandbox succeeded {why}: pod {}", p.id),
        Err(e) => Ok(format!("{e:#}")),
    }
}

/// After a RunPodSandbox that failed: no pod is listed, and within 10 s (shims leave
/// asynchronously after containerd's cleanup) nothing of this containerd's is left, nor a
/// sandbox podshim-sandboxer keeps (the cases run it without a warm pool).
pub async fn assert_failed_pod_left_nothing(c: &podshim_integration::Containerd) -> Result<()> {
    if !c.cri.list_pods().await?.is_empty() {
        bail!("a failed RunPodSandbox left a pod listed");
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut left = c.leftovers();
        left.extend(c.sandboxer_bundles());
        if left.is_empty() {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("after a failed RunPodSandbox, still present: {left:?}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Polls `f` until it returns Ok(true), for at most `within`; the last state is in the error.
pub async fn eventually<F, Fut>(within: Duration, what: &str, mut f: F) -> Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(bool, String)>>,
{
    let deadline = Instant::now() + within;
    loop {
        let (ok, state) = f().await?;
        if ok {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("{what}: not within {within:?}; last state: {state}");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Writes an executable shell script `name` into the run's directory.
pub fn write_script(c: &podshim_integration::Containerd, name: &str, body: &str) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let path = c.dir.join(name);
    std::fs::write(&path, format!("#!/bin/sh\n{body}"))?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))?;
    Ok(())
}

/// `<dir>/oci-runtime`, the OCI runtime a case's shim config names: runs `record` (shell lines
/// that see the runtime's arguments), then the run's runc.
pub fn install_runtime_wrapper(c: &podshim_integration::Containerd, record: &str) -> Result<()> {
    let runc = c
        .opts
        .oci_runtime
        .as_ref()
        .map_or("runc".into(), |r| r.display().to_string());
    write_script(c, "oci-runtime", &format!("{record}exec {runc} \"$@\"\n"))
}

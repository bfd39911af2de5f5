//! Exec, Attach and PortForward through containerd's streaming server (WebSocket, v4 channels).

use std::time::Duration;

use anyhow::{ensure, Result};
use k8s_cri::v1::{AttachRequest, ContainerState, ExecRequest};
use podshim_integration::streaming::{self, exit_code_from_status, show, ChannelConn, PROTOCOL_V4};
use podshim_integration::{logs, sh, Containerd};

const T: Duration = Duration::from_secs(20);

fn text(m: &std::collections::BTreeMap<u8, Vec<u8>>, ch: u8) -> String {
    m.get(&ch)
        .map(|d| String::from_utf8_lossy(d).into_owned())
        .unwrap_or_default()
}

fn exec_req(id: &str, cmd: &[&str], tty: bool, stdin: bool) -> ExecRequest {
    ExecRequest {
        container_id: id.into(),
        cmd: cmd.iter().map(|s| s.to_string()).collect(),
        tty,
        stdin,
        stdout: true,
        stderr: !tty,
    }
}

/// Streaming exec: separate stdout/stderr and the exit status; stdin; a TTY with resize.
pub async fn exec_stream(c: &mut Containerd) -> Result<()> {
    let pod = c.run_pod("stream-exec").await?;
    let id = c.run_container(&pod, sh("app", "exec sleep 1000")).await?;

    let url = c
        .cri
        .exec_url(exec_req(
            &id,
            &["sh", "-c", "echo out; echo err >&2; exit 3"],
            false,
            false,
        ))
        .await?;
    let conn = ChannelConn::connect(&url, PROTOCOL_V4).await?;
    let got = conn.collect(T).await?;
    ensure!(
        text(&got, streaming::STDOUT) == "out\n",
        "stdout: {}",
        show(&got)
    );
    ensure!(
        text(&got, streaming::STDERR) == "err\n",
        "stderr: {}",
        show(&got)
    );
    ensure!(
        exit_code_from_status(&got[&streaming::ERROR])? == 3,
        "status: {}",
        show(&got)
    );

    let url = c
        .cri
        .exec_url(exec_req(
            &id,
            &["sh", "-c", "read x; echo got:$x"],
            false,
            true,
        ))
        .await?;
    let mut conn = ChannelConn::connect(&url, PROTOCOL_V4).await?;
    conn.send(streaming::STDIN, b"hello\n").await?;
    let got = conn.collect(T).await?;
    ensure!(
        text(&got, streaming::STDOUT) == "got:hello\n",
        "stdin exec: {}",
        show(&got)
    );
    ensure!(
        exit_code_from_status(&got[&streaming::ERROR])? == 0,
        "status: {}",
        show(&got)
    );

    // TTY: resize, then a line on stdin; stty reports the new size.
    let url = c
        .cri
        .exec_url(exec_req(
            &id,
            &["sh", "-c", "read x; stty size; tty; echo done-$x"],
            true,
            true,
        ))
        .await?;
    let mut conn = ChannelConn::connect(&url, PROTOCOL_V4).await?;
    conn.resize(123, 45).await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    conn.send(streaming::STDIN, b"go\n").await?;
    let got = conn.collect(T).await?;
    let out = text(&got, streaming::STDOUT);
    ensure!(
        out.contains("45 123"),
        "stty size after resize 123x45: {}",
        show(&got)
    );
    ensure!(out.contains("/dev/pts/"), "no tty in exec: {}", show(&got));
    ensure!(out.contains("done-go"), "tty exec output: {}", show(&got));
    ensure!(
        exit_code_from_status(&got[&streaming::ERROR])? == 0,
        "status: {}",
        show(&got)
    );

    let st = c.cri.container_status(&id).await?;
    ensure!(
        st.state == ContainerState::ContainerRunning as i32,
        "container after execs: {st:?}"
    );
    Ok(())
}

/// Streaming attach to a container with stdin: input reaches it, stdout and stderr come back
/// (and also reach the CRI log).
pub async fn attach_stream(c: &mut Containerd) -> Result<()> {
    let pod = c.run_pod("stream-attach").await?;
    let mut cfg = sh(
        "echo",
        "echo attached-ready; while read l; do echo \"echo:$l\"; echo \"err:$l\" >&2; done",
    );
    cfg.stdin = true;
    let log = pod.log_file(&cfg);
    let id = c.run_container(&pod, cfg).await?;
    logs::wait_for(&log, T, |l| l.iter().any(|x| x.msg == "attached-ready")).await?;

    let url = c
        .cri
        .attach_url(AttachRequest {
            container_id: id.clone(),
            stdin: true,
            tty: false,
            stdout: true,
            stderr: true,
        })
        .await?;
    let mut conn = ChannelConn::connect(&url, PROTOCOL_V4).await?;
    // The streaming server may attach the container's output a moment after the WebSocket is
    // up, and stdout and stderr each on their own (seen with containerd's own runc shim on a
    // loaded node): a line written before its stream is attached reaches only the log. Ping
    // until both streams have carried one back.
    let mut got: std::collections::BTreeMap<u8, Vec<u8>> = Default::default();
    let both = |g: &std::collections::BTreeMap<u8, Vec<u8>>| {
        text(g, streaming::STDOUT).contains("echo:ping")
            && text(g, streaming::STDERR).contains("err:ping")
    };
    for _ in 0..10 {
        conn.send(streaming::STDIN, b"ping\n").await?;
        let deadline = tokio::time::Instant::now() + T / 10;
        while !both(&got) {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match conn.recv(left).await {
                Ok(Some((ch, data))) => got.entry(ch).or_default().extend(data),
                Ok(None) => anyhow::bail!("attach stream closed; got: {}", show(&got)),
                // Nothing more within this ping's share of the time: ping again.
                Err(_) => break,
            }
        }
        if both(&got) {
            break;
        }
    }
    ensure!(
        both(&got),
        "no echo:ping and err:ping on the attach stream within {T:?}: {}",
        show(&got)
    );
    conn.send(streaming::STDIN, b"second\n").await?;
    conn.read_until(streaming::STDOUT, "echo:second", T).await?;
    conn.close().await;

    logs::wait_for(&log, T, |l| {
        l.iter()
            .any(|x| x.stream == "stdout" && x.msg == "echo:second")
            && l.iter()
                .any(|x| x.stream == "stderr" && x.msg == "err:ping")
    })
    .await?;
    let st = c.cri.container_status(&id).await?;
    ensure!(
        st.state == ContainerState::ContainerRunning as i32,
        "container after attach: {st:?}"
    );
    Ok(())
}

/// PortForward to a server bound to the pod's 127.0.0.1.
pub async fn port_forward(c: &mut Containerd) -> Result<()> {
    let pod = c.run_pod("stream-pf").await?;
    let id = c
        .run_container(&pod, sh("web", "mkdir -p /www && echo podshim-pf > /www/index.html && exec httpd -f -p 127.0.0.1:8080 -h /www"))
        .await?;
    // Wait until the server listens.
    let mut up = false;
    for _ in 0..50 {
        let r = c
            .cri
            .exec_sync(
                &id,
                &[
                    "wget",
                    "-q",
                    "-O",
                    "/dev/null",
                    "http://127.0.0.1:8080/index.html",
                ],
                5,
            )
            .await?;
        if r.exit_code == 0 {
            up = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    ensure!(up, "httpd in the pod did not come up");

    let url = c.cri.port_forward_url(&pod.id, &[8080]).await?;
    let mut conn = ChannelConn::connect(&url, PROTOCOL_V4).await?;
    // The server first announces the port on the data and error channels.
    let mut announced = Vec::new();
    for _ in 0..2 {
        if let Some((ch, data)) = conn.recv(T).await? {
            announced.push((ch, data));
        }
    }
    announced.sort();
    ensure!(
        announced
            == vec![
                (0, 8080u16.to_le_bytes().to_vec()),
                (1, 8080u16.to_le_bytes().to_vec())
            ],
        "port announcement {announced:?}"
    );
    conn.send(0, b"GET /index.html HTTP/1.0\r\n\r\n").await?;
    let got = conn.read_until(0, "podshim-pf", T).await?;
    ensure!(
        text(&got, 0).starts_with("HTTP/1."),
        "response: {}",
        show(&got)
    );
    conn.close().await;
    Ok(())
}

//! containerd restarts while pods run: shims and containers survive, containerd reconnects.

use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use k8s_cri::v1::{ContainerState, PodSandboxState};
use podshim_integration::{logs, sh, sys, Containerd, Pod};

/// The counter file inside the container, read through its init's root (no exec: containerd is
/// down when this is called). The shell truncates the file before it writes the next number:
/// an empty read is that moment, read again.
fn read_count(pod: &Pod, id: &str) -> Result<u64> {
    let pid = pod.container_init_pid(id)?;
    let p = std::path::PathBuf::from(format!("/proc/{pid}/root/tmp/count"));
    let mut s = String::new();
    for _ in 0..50 {
        s = std::fs::read_to_string(&p).with_context(|| format!("reading {}", p.display()))?;
        if !s.trim().is_empty() {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    s.trim().parse().with_context(|| format!("parsing {s:?}"))
}

fn numbers(lines: &[logs::LogLine]) -> Result<Vec<u64>> {
    logs::full_lines(lines, "stdout")
        .iter()
        .map(|l| {
            l.strip_prefix("line ")
                .and_then(|n| n.split(' ').next())
                .and_then(|n| n.parse().ok())
                .with_context(|| format!("unexpected log line {l:?}"))
        })
        .collect()
}

/// A container writes a numbered line every 100 ms; containerd is stopped for 3 s and started
/// again. Every number appears in the CRI log exactly once and in order, including those written
/// while containerd was down; exec, stop and remove still work; the shim is the same process.
pub async fn containerd_restart(c: &mut Containerd) -> Result<()> {
    restart_with_writer(c, 1, 0, 15).await
}

/// Like `containerd_restart`, but the container writes bursts of 50 lines of ~1 KB every 100 ms
/// (roughly 150-500 KB/s with busybox sh), far more than the pipe and FIFO buffers hold while
/// containerd is down: the shim must keep draining (memory buffer, then spill file) so the
/// container never blocks, and replay everything in order afterwards. podshim only: containerd's
/// runc shim blocks the writer once ~128 KB are buffered (measured: 50 lines in 3 s).
pub async fn containerd_restart_backlog(c: &mut Containerd) -> Result<()> {
    restart_with_writer(c, 50, 1000, 400).await
}

/// `burst` lines of `pad` extra bytes every 100 ms; at least `min_progress` lines must be written
/// during the 3 s downtime.
async fn restart_with_writer(
    c: &mut Containerd,
    burst: u32,
    pad: usize,
    min_progress: u64,
) -> Result<()> {
    let pod = c.run_pod("restart").await?;
    let script = format!(
        "trap 'exit 0' TERM; PAD=$(head -c {pad} /dev/zero | tr '\\0' p); i=0; \
         while true; do j=0; while [ $j -lt {burst} ]; do echo \"line $i $PAD\"; i=$((i+1)); j=$((j+1)); done; \
         echo $i > /tmp/count; sleep 0.1; done"
    );
    let cfg = sh("counter", &script);
    let log = pod.log_file(&cfg);
    let id = c.run_container(&pod, cfg).await?;
    let idle = c.run_container(&pod, sh("idle", "exec sleep 1000")).await?;
    logs::wait_for(&log, Duration::from_secs(10), |l| {
        logs::full_lines(l, "stdout").len() >= 5
    })
    .await?;
    let shims_before: Vec<i32> = c.settled_shims().await.iter().map(|p| p.pid).collect();
    ensure!(
        shims_before.len() == 1,
        "expected one shim before restart: {shims_before:?}"
    );

    c.kill_containerd().await?;
    let down_from = read_count(&pod, &id)?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let down_to = read_count(&pod, &id)?;
    ensure!(
        down_to >= down_from + min_progress,
        "the container made little progress while containerd was down ({down_from} -> {down_to} in 3s): blocked on stdout?"
    );
    ensure!(
        sys::pid_alive(shims_before[0]),
        "shim {} died with containerd",
        shims_before[0]
    );
    c.respawn().await?;

    // CRI reattaches to the running container and its output continues.
    logs::wait_for(&log, Duration::from_secs(20), |l| {
        numbers(l)
            .map(|n| n.last().copied().unwrap_or(0) >= down_to + 10 * burst as u64)
            .unwrap_or(false)
    })
    .await?;
    let st = c
        .cri
        .pod_status(&pod.id, false)
        .await?
        .status
        .unwrap_or_default();
    ensure!(
        st.state == PodSandboxState::SandboxReady as i32,
        "pod not READY after restart: {st:?}"
    );
    let cs = c.cri.container_status(&id).await?;
    ensure!(
        cs.state == ContainerState::ContainerRunning as i32,
        "counter not RUNNING after restart: {cs:?}"
    );

    let r = c
        .cri
        .exec_sync(&idle, &["sh", "-c", "echo exec-ok"], 10)
        .await?;
    ensure!(
        r.exit_code == 0 && r.stdout == b"exec-ok\n",
        "ExecSync after restart: {r:?}"
    );
    let r = c.cri.exec_sync(&id, &["cat", "/tmp/count"], 10).await?;
    ensure!(r.exit_code == 0, "ExecSync in counter after restart: {r:?}");

    let before_stop = read_count(&pod, &id)?;
    let t = Instant::now();
    c.cri.stop_container(&id, 10).await?;
    ensure!(
        t.elapsed() < Duration::from_secs(8),
        "StopContainer after restart took {:?}",
        t.elapsed()
    );
    let cs = c.cri.container_status(&id).await?;
    ensure!(
        cs.state == ContainerState::ContainerExited as i32 && cs.exit_code == 0,
        "counter after stop: {cs:?}"
    );

    // Every number exactly once, in order.
    let lines = logs::read(&log)?;
    let nums = numbers(&lines)?;
    ensure!(!nums.is_empty(), "no lines");
    for (i, n) in nums.iter().enumerate() {
        if *n != i as u64 {
            bail!(
                "log numbers not contiguous at index {i}: got {n} (down {down_from}..{down_to}); around: {:?}",
                &nums[i.saturating_sub(3)..(i + 3).min(nums.len())]
            );
        }
    }
    ensure!(
        *nums.last().unwrap() + 1 >= before_stop,
        "log ends at {} but the container had written {before_stop} lines before StopContainer",
        nums.last().unwrap()
    );
    c.cri.remove_container(&id).await?;
    c.cri.stop_container(&idle, 2).await?;
    c.cri.remove_container(&idle).await?;
    ensure!(
        c.cri.list_containers(&pod.id).await?.is_empty(),
        "containers left after removal"
    );
    let shims_after: Vec<i32> = c.settled_shims().await.iter().map(|p| p.pid).collect();
    ensure!(
        shims_after == shims_before,
        "shim changed across restart: {shims_before:?} -> {shims_after:?}"
    );
    Ok(())
}

/// A container writes 3000 numbered lines and exits 3 while containerd is down. containerd,
/// back, must learn the exit (code 3, not 255 `Unknown`) and CRI must reattach the output the
/// shim kept: every line in the CRI log, in order. containerd's loader deletes a task whose shim
/// answers `Pids` with an empty list as a leaked shim (containerd#6860) before CRI looks at it;
/// containerd's runc shim loses both the exit and the lines this way, so the case runs for
/// podshim's handlers only.
pub async fn exit_while_containerd_down(c: &mut Containerd) -> Result<()> {
    const LINES: u64 = 3000;
    let pod = c.run_pod("exit-down").await?;
    let cfg = sh(
        "writer",
        &format!(
            "echo ready; sleep 2; i=0; while [ $i -lt {LINES} ]; do echo \"line $i\"; \
             i=$((i+1)); done; exit 3"
        ),
    );
    let log = pod.log_file(&cfg);
    let id = c.run_container(&pod, cfg).await?;
    logs::wait_for(&log, Duration::from_secs(10), |l| {
        logs::full_lines(l, "stdout").iter().any(|s| s == "ready")
    })
    .await?;
    let init = pod.container_init_pid(&id)?;
    c.kill_containerd().await?;
    let deadline = Instant::now() + Duration::from_secs(30);
    while sys::pid_alive(init) {
        ensure!(
            Instant::now() < deadline,
            "the writer (pid {init}) still runs 30 s after containerd went down"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Its exit is reaped and held by the shim; containerd learns it only when back.
    tokio::time::sleep(Duration::from_millis(500)).await;
    c.respawn().await?;

    let deadline = Instant::now() + Duration::from_secs(20);
    let cs = loop {
        let cs = c.cri.container_status(&id).await?;
        if cs.state == ContainerState::ContainerExited as i32 {
            break cs;
        }
        ensure!(
            Instant::now() < deadline,
            "writer not EXITED 20 s after containerd came back: {cs:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    ensure!(
        cs.exit_code == 3,
        "exit code {} reason {:?} (want 3): containerd lost the exit that happened while it was down",
        cs.exit_code,
        cs.reason
    );
    let lines = logs::read(&log)?;
    let out = logs::full_lines(&lines, "stdout");
    let want: Vec<String> = std::iter::once("ready".to_string())
        .chain((0..LINES).map(|i| format!("line {i}")))
        .collect();
    if out != want {
        let at = out.iter().zip(&want).take_while(|(a, b)| a == b).count();
        bail!(
            "{} lines in the CRI log, want {}; first difference at line {at}: {:?}",
            out.len(),
            want.len(),
            out.get(at)
        );
    }
    c.cri.remove_container(&id).await?;
    c.remove_pod(&pod).await?;
    Ok(())
}

/// containerd stopped (SIGTERM, as `kill_containerd` does) right after StartContainer returned,
/// while the pod's second container starts (chaos saw containerd's loader, back, take such a
/// running container's task for a leaked shim and delete it): after the restart the first
/// container still runs, as CRI reports it, and keeps writing to its log. A containerd stopped
/// inside its removal of the second container's bundle leaves it renamed `.<id>`: the pod's
/// removal takes it away.
pub async fn containerd_killed_right_after_start(c: &mut Containerd) -> Result<()> {
    let tasks = c.bundle_dir("k8s.io", "x").with_file_name("");
    let half_removed = || -> Vec<String> {
        std::fs::read_dir(&tasks)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with('.'))
            .collect()
    };
    for round in 0..5 {
        let pod = c.run_pod(&format!("fresh{round}")).await?;
        let cfg = sh(
            "writer",
            "i=0; while true; do echo \"line $i\"; i=$((i+1)); sleep 0.05; done",
        );
        let log = pod.log_file(&cfg);
        let id = c.run_container(&pod, cfg).await?;
        // A second container starting as containerd dies, as in the chaos run.
        let second = c
            .create_container(&pod, sh("second", "exec sleep 1000"))
            .await?;
        let cri = c.cri.clone();
        let starting = tokio::spawn(async move { cri.start_container(&second).await });
        tokio::time::sleep(Duration::from_millis(20 * round as u64)).await;
        c.kill_containerd().await?;
        let _ = starting.await;
        c.respawn().await?;
        let cs = c.cri.container_status(&id).await?;
        ensure!(
            cs.state == ContainerState::ContainerRunning as i32,
            "round {round}: the writer is not RUNNING after containerd came back: {cs:?}"
        );
        let seen = logs::full_lines(&logs::read(&log).unwrap_or_default(), "stdout").len();
        logs::wait_for(&log, Duration::from_secs(10), |l| {
            logs::full_lines(l, "stdout").len() >= seen + 10
        })
        .await
        .map_err(|e| e.context(format!("round {round}: the log stopped after the restart")))?;
        let left = half_removed();
        c.remove_pod(&pod).await?;
        if !left.is_empty() {
            eprintln!("round {round}: containerd left {left:?} half removed");
            let still = half_removed();
            ensure!(
                still.is_empty(),
                "round {round}: {still:?}, which containerd left half removed, outlived the pod"
            );
        }
    }
    Ok(())
}

//! Container lifecycle through CRI: exec, stats, stop, exit codes, OOM, removal, shim count.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Result};
use k8s_cri::v1::{ContainerState, PodSandboxState};
use podshim_integration::{container, is_podshim, sh, sys, with_memory_limit, Containerd, Pod};

/// ExecSync: stdout, stderr and exit code are returned separately; large output is complete.
pub async fn exec_sync(c: &mut Containerd) -> Result<()> {
    let pod = c.run_pod("exec").await?;
    let id = c
        .run_container(&pod, sh("app", "echo ready; exec sleep 1000"))
        .await?;
    let r = c
        .cri
        .exec_sync(&id, &["sh", "-c", "echo out; echo err >&2; exit 7"], 10)
        .await?;
    ensure!(
        r.stdout == b"out\n",
        "stdout {:?}",
        String::from_utf8_lossy(&r.stdout)
    );
    ensure!(
        r.stderr == b"err\n",
        "stderr {:?}",
        String::from_utf8_lossy(&r.stderr)
    );
    ensure!(r.exit_code == 7, "exit code {}", r.exit_code);

    let r = c.cri.exec_sync(&id, &["true"], 10).await?;
    ensure!(
        r.exit_code == 0 && r.stdout.is_empty() && r.stderr.is_empty(),
        "true: {r:?}"
    );

    // Environment and working directory of the container apply to exec.
    let r = c
        .cri
        .exec_sync(&id, &["sh", "-c", "echo $PATH; pwd"], 10)
        .await?;
    ensure!(
        String::from_utf8_lossy(&r.stdout)
            .starts_with("/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n/\n"),
        "env/cwd: {:?}",
        String::from_utf8_lossy(&r.stdout)
    );

    let r = c
        .cri
        .exec_sync(
            &id,
            &["sh", "-c", "head -c 200000 /dev/zero | tr '\\0' y"],
            20,
        )
        .await?;
    ensure!(
        r.stdout.len() == 200000 && r.stdout.iter().all(|b| *b == b'y'),
        "large output: {} bytes",
        r.stdout.len()
    );

    // A missing binary: ExecSync fails naming it (as with containerd's runc shim).
    match c.cri.exec_sync(&id, &["/no/such/binary"], 10).await {
        Ok(r) => bail!("ExecSync of a missing binary returned {r:?}, want an error"),
        Err(e) => {
            let e = format!("{e:#}");
            ensure!(
                e.contains("/no/such/binary") && e.contains("no such file"),
                "error does not name the missing binary: {e}"
            );
        }
    }

    // Timeout: ExecSync of a long command returns within its deadline with an error.
    let t = Instant::now();
    let r = c.cri.exec_sync(&id, &["sleep", "30"], 2).await;
    ensure!(
        t.elapsed() < Duration::from_secs(15),
        "ExecSync ignored its 2s timeout ({:?})",
        t.elapsed()
    );
    ensure!(r.is_err(), "ExecSync past its timeout returned {r:?}");

    // The container is still fine afterwards.
    let st = c.cri.container_status(&id).await?;
    ensure!(
        st.state == ContainerState::ContainerRunning as i32,
        "container state after execs: {st:?}"
    );
    Ok(())
}

/// ContainerStats and PodSandboxStats show non-zero CPU and memory.
pub async fn stats(c: &mut Containerd) -> Result<()> {
    let pod = c.run_pod("stats").await?;
    let id = c
        .run_container(
            &pod,
            sh("busy", "i=0; while [ $i -lt 200000 ]; do i=$((i+1)); done; head -c 4000000 /dev/zero > /tmp/f; exec sleep 1000"),
        )
        .await?;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let s = c.cri.container_stats(&id).await?;
        let cpu = s
            .cpu
            .as_ref()
            .and_then(|c| c.usage_core_nano_seconds.as_ref())
            .map(|v| v.value)
            .unwrap_or(0);
        let ws = s
            .memory
            .as_ref()
            .and_then(|m| m.working_set_bytes.as_ref())
            .map(|v| v.value)
            .unwrap_or(0);
        let attr_ok = s.attributes.as_ref().map(|a| a.id == id).unwrap_or(false);
        if cpu > 50_000_000 && ws > 0 && attr_ok {
            break;
        }
        if Instant::now() > deadline {
            bail!("ContainerStats never showed cpu > 50ms and memory > 0: {s:?}");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let s = c.cri.pod_stats(&pod.id).await?;
        let l = s.linux.clone().unwrap_or_default();
        let cpu = l
            .cpu
            .as_ref()
            .and_then(|c| c.usage_core_nano_seconds.as_ref())
            .map(|v| v.value)
            .unwrap_or(0);
        let ws = l
            .memory
            .as_ref()
            .and_then(|m| m.working_set_bytes.as_ref())
            .map(|v| v.value)
            .unwrap_or(0);
        let has_ctr = l
            .containers
            .iter()
            .any(|cs| cs.attributes.as_ref().map(|a| a.id == id).unwrap_or(false));
        let attr_ok = s
            .attributes
            .as_ref()
            .map(|a| a.id == pod.id)
            .unwrap_or(false);
        if cpu > 50_000_000 && ws > 0 && has_ctr && attr_ok {
            break;
        }
        if Instant::now() > deadline {
            bail!("PodSandboxStats never showed cpu > 50ms, memory > 0 and the container: {s:?}");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    Ok(())
}

/// StopContainer with a grace period: SIGTERM ignored → SIGKILL after the grace period (137);
/// SIGTERM handled → exits at once with its own code.
pub async fn stop_container(c: &mut Containerd) -> Result<()> {
    let pod = c.run_pod("stop").await?;
    let stubborn = c
        .run_container(
            &pod,
            sh("stubborn", "trap '' TERM; echo started; sleep 1000 & wait"),
        )
        .await?;
    let polite = c
        .run_container(
            &pod,
            sh(
                "polite",
                "trap 'exit 42' TERM; while true; do sleep 0.1; done",
            ),
        )
        .await?;
    tokio::time::sleep(Duration::from_millis(500)).await; // let the traps be installed

    let t = Instant::now();
    c.cri.stop_container(&stubborn, 2).await?;
    let took = t.elapsed();
    ensure!(
        took >= Duration::from_millis(1900),
        "StopContainer(2s) returned after {took:?}: SIGTERM was not ignored?"
    );
    ensure!(
        took < Duration::from_secs(12),
        "StopContainer(2s) took {took:?}"
    );
    let st = c.cri.container_status(&stubborn).await?;
    ensure!(
        st.state == ContainerState::ContainerExited as i32,
        "stubborn not exited: {st:?}"
    );
    ensure!(
        st.exit_code == 137,
        "stubborn exit code {} (want 137, SIGKILL)",
        st.exit_code
    );

    let t = Instant::now();
    c.cri.stop_container(&polite, 10).await?;
    ensure!(
        t.elapsed() < Duration::from_secs(5),
        "polite container took {:?} to stop",
        t.elapsed()
    );
    let st = c.cri.container_status(&polite).await?;
    ensure!(
        st.exit_code == 42,
        "polite exit code {} (want 42 from its TERM trap)",
        st.exit_code
    );

    // Stopping an exited container again is fine; removing works.
    c.cri.stop_container(&stubborn, 2).await?;
    c.cri.remove_container(&stubborn).await?;
    c.cri.remove_container(&polite).await?;
    ensure!(
        c.cri.list_containers(&pod.id).await?.is_empty(),
        "containers left after RemoveContainer"
    );
    for id in [&stubborn, &polite] {
        ensure!(
            !c.bundle_dir("k8s.io", id).exists(),
            "bundle of removed container {id} still exists"
        );
    }
    // The pod (and its shim) outlive its containers: a new container runs in it.
    ensure!(
        c.shims().len() == 1,
        "shims after removing the pod's containers: {:?}",
        c.shims().iter().map(|p| p.pid).collect::<Vec<_>>()
    );
    let again = c
        .run_container(&pod, sh("again", "exec sleep 1000"))
        .await?;
    let r = c.cri.exec_sync(&again, &["true"], 5).await?;
    ensure!(r.exit_code == 0, "new container in the pod: {r:?}");
    Ok(())
}

/// Exit codes and reasons: 3 → Error, 0 → Completed; timestamps are ordered.
pub async fn exit_codes(c: &mut Containerd) -> Result<()> {
    let pod = c.run_pod("exit").await?;
    let three = c.run_container(&pod, sh("three", "exit 3")).await?;
    let zero = c.run_container(&pod, container("zero", &["true"])).await?;
    let st = c.cri.wait_exited(&three, Duration::from_secs(20)).await?;
    ensure!(
        st.exit_code == 3 && st.reason == "Error",
        "exit 3: code {} reason {:?}",
        st.exit_code,
        st.reason
    );
    // (finished_at may precede started_at for a process this short: CRI stamps started_at after
    // the Start call returns, finished_at is the exit time.)
    ensure!(
        st.created_at > 0 && st.started_at >= st.created_at && st.finished_at >= st.created_at,
        "timestamps created {} started {} finished {}",
        st.created_at,
        st.started_at,
        st.finished_at
    );
    // The exit time comes from the shim's TaskExit/Wait: it must be a real, recent time.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_nanos() as i64;
    ensure!(
        (now - st.finished_at).abs() < 60_000_000_000,
        "finished_at {} is not within 60 s of now {now}",
        st.finished_at
    );
    let st = c.cri.wait_exited(&zero, Duration::from_secs(20)).await?;
    ensure!(
        st.exit_code == 0 && st.reason == "Completed",
        "exit 0: code {} reason {:?}",
        st.exit_code,
        st.reason
    );
    Ok(())
}

/// A container over its memory limit is OOM-killed: reason OOMKilled, exit code 137. The hog
/// starts allocating a second after start, when every shim watches for OOM.
pub async fn oom_killed(c: &mut Containerd) -> Result<()> {
    oom_killed_after(c, "sleep 1; ").await
}

/// UpdateContainerResources (the kubelet's in-place resize of one container): the running
/// container's cgroup takes the new memory limit and CPU shares, as read from inside it; the
/// container runs on.
pub async fn update_container_resources(c: &mut Containerd) -> Result<()> {
    let pod = c.run_pod("update").await?;
    let cfg = with_memory_limit(sh("app", "exec sleep 1000"), 64 << 20);
    let id = c.run_container(&pod, cfg).await?;
    // cgroup v1 (this project's hosts) or v2, as the container sees its own cgroup.
    let read = "cat /sys/fs/cgroup/memory/memory.limit_in_bytes /sys/fs/cgroup/cpu/cpu.shares 2>/dev/null || { cat /sys/fs/cgroup/memory.max; cat /sys/fs/cgroup/cpu.weight; }";
    let limits = |r: k8s_cri::v1::ExecSyncResponse| {
        String::from_utf8_lossy(&r.stdout)
            .split_whitespace()
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    let before = limits(c.cri.exec_sync(&id, &["sh", "-c", read], 10).await?);
    ensure!(
        before.first().map(String::as_str) == Some("67108864"),
        "before: {before:?}"
    );
    let linux = k8s_cri::v1::LinuxContainerResources {
        memory_limit_in_bytes: 96 << 20,
        memory_swap_limit_in_bytes: 96 << 20,
        cpu_shares: 512,
        ..Default::default()
    };
    c.cri.update_container_resources(&id, linux).await?;
    let after = limits(c.cri.exec_sync(&id, &["sh", "-c", read], 10).await?);
    ensure!(
        after.first().map(String::as_str) == Some("100663296"),
        "after: {after:?}"
    );
    ensure!(
        after.get(1) != before.get(1),
        "CPU shares unchanged: {before:?} -> {after:?}"
    );
    let st = c.cri.container_status(&id).await?;
    ensure!(
        st.state == ContainerState::ContainerRunning as i32,
        "after the update: {st:?}"
    );
    c.remove_pod(&pod).await?;
    Ok(())
}

/// The same with a container that allocates at once and is killed within milliseconds of
/// StartContainer. podshim handlers only: containerd's runc shim arms its cgroup v1 OOM eventfd
/// after start and can miss such a kill (reason "Error", no TaskOOM; seen once in a CI run of
/// `oom_killed` before the hog waited); podshim also reads the cgroup's kill count at exit.
pub async fn oom_killed_at_once(c: &mut Containerd) -> Result<()> {
    oom_killed_after(c, "").await
}

async fn oom_killed_after(c: &mut Containerd, delay: &str) -> Result<()> {
    let pod = c.run_pod("oom").await?;
    let cfg = with_memory_limit(
        sh(
            "hog",
            &format!("{delay}exec dd if=/dev/zero of=/dev/null bs=64M count=1"),
        ),
        16 << 20,
    );
    let id = c.run_container(&pod, cfg).await?;
    let st = c.cri.wait_exited(&id, Duration::from_secs(30)).await?;
    ensure!(
        st.exit_code == 137,
        "exit code {} (want 137), reason {:?}",
        st.exit_code,
        st.reason
    );
    if st.reason != "OOMKilled" {
        // kubelet reads the reason once, when it sees the exit: a late TaskOOM is a failure too.
        // Tell late from missing for the report.
        let t = Instant::now();
        let mut later = None;
        while t.elapsed() < Duration::from_secs(5) {
            tokio::time::sleep(Duration::from_millis(100)).await;
            if c.cri.container_status(&id).await?.reason == "OOMKilled" {
                later = Some(t.elapsed());
                break;
            }
        }
        match later {
            Some(d) => bail!(
                "reason {:?} when the exit was seen; OOMKilled only {d:?} later (TaskOOM published late)",
                st.reason
            ),
            None => bail!(
                "reason {:?} (want OOMKilled); still not OOMKilled 5 s later (no TaskOOM)",
                st.reason
            ),
        }
    }
    Ok(())
}

/// Wait until `pod_leftovers` is empty (shims exit asynchronously).
pub async fn assert_pod_gone(c: &Containerd, pod: &Pod, containers: &[String]) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let left = c.pod_leftovers(pod, containers);
        if left.is_empty() {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!(
                "after RemovePodSandbox, still present:\n  {}",
                left.join("\n  ")
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Stop/RemovePodSandbox leave no shim, mount, netns, bundle or process behind.
pub async fn pod_cleanup(c: &mut Containerd) -> Result<()> {
    let pod = c.run_pod("cleanup").await?;
    ensure!(
        pod.netns.is_some(),
        "could not find the pod's netns path in PodSandboxStatus info"
    );
    let netns = pod.netns.clone().unwrap();
    ensure!(
        netns.starts_with(&c.state),
        "netns {} not under the state dir",
        netns.display()
    );
    ensure!(
        sys::mounts_under(&c.dir).contains(&netns),
        "netns {} is not mounted",
        netns.display()
    );
    let running = c
        .run_container(&pod, sh("running", "exec sleep 1000"))
        .await?;
    let exited = c.run_container(&pod, sh("exited", "echo bye")).await?;
    c.cri.wait_exited(&exited, Duration::from_secs(20)).await?;
    let r = c.cri.exec_sync(&running, &["true"], 5).await?;
    ensure!(r.exit_code == 0, "exec before stop: {r:?}");
    let ids = vec![running.clone(), exited.clone()];
    // Bundles and rootfs mounts exist while the pod runs.
    for b in [
        c.sandbox_bundle_dir("k8s.io", &pod.id),
        c.bundle_dir("k8s.io", &running),
    ] {
        ensure!(b.exists(), "no bundle {} while running", b.display());
    }

    c.cri.stop_pod(&pod.id).await?;
    let st = c
        .cri
        .pod_status(&pod.id, false)
        .await?
        .status
        .unwrap_or_default();
    ensure!(
        st.state == PodSandboxState::SandboxNotready as i32,
        "pod state after stop: {st:?}"
    );
    let cs = c.cri.container_status(&running).await?;
    ensure!(
        cs.state == ContainerState::ContainerExited as i32,
        "container after StopPodSandbox: {cs:?}"
    );
    ensure!(
        !netns.exists() || !sys::mounts_under(&c.dir).contains(&netns),
        "netns still mounted after StopPodSandbox"
    );

    c.cri.remove_pod(&pod.id).await?;
    ensure!(
        !c.cri.list_pods().await?.contains(&pod.id),
        "pod still listed after RemovePodSandbox"
    );
    assert_pod_gone(c, &pod, &ids).await?;
    let left = c.leftovers();
    ensure!(left.is_empty(), "leftovers with no pods: {left:?}");
    Ok(())
}

/// Exactly one shim process per pod however many containers; all of a pod's containers are
/// children of that shim.
pub async fn one_shim_per_pod(c: &mut Containerd) -> Result<()> {
    let p1 = c.run_pod("multi").await?;
    let mut c1 = Vec::new();
    for i in 0..3 {
        c1.push(
            c.run_container(&p1, sh(&format!("c{i}"), "exec sleep 1000"))
                .await?,
        );
    }
    let p2 = c.run_pod("single").await?;
    let c2 = vec![c.run_container(&p2, sh("only", "exec sleep 1000")).await?];

    let shims = c.settled_shims().await;
    let names: BTreeSet<String> = shims.iter().map(|p| p.exe_name()).collect();
    ensure!(
        shims.len() == 2,
        "{} shim processes for 2 pods: {:?}",
        shims.len(),
        shims
            .iter()
            .map(|p| (p.pid, p.cmdline_str()))
            .collect::<Vec<_>>()
    );
    ensure!(
        names == BTreeSet::from([c.shim_exe_name().to_string()]),
        "shim binaries {names:?}, want only {}",
        c.shim_exe_name()
    );
    let shim_pids: BTreeSet<i32> = shims.iter().map(|p| p.pid).collect();
    let mut parent_of: BTreeMap<&str, BTreeSet<i32>> = BTreeMap::new();
    for (pod, ids) in [(&p1, &c1), (&p2, &c2)] {
        // The sandbox (pause container or namespace holder) and every app container are
        // children of the same shim.
        for id in ids.iter().chain(std::iter::once(&pod.id)) {
            let pid = match id == &pod.id {
                true => c.sandbox_pid(pod)?,
                false => pod.container_init_pid(id)?,
            };
            let pp = crate::util::ppid(pid)?;
            ensure!(
                shim_pids.contains(&pp),
                "container {id} (pid {pid}) has parent {pp}, not a shim {shim_pids:?}"
            );
            parent_of.entry(pod.id.as_str()).or_default().insert(pp);
        }
    }
    let s1 = &parent_of[p1.id.as_str()];
    let s2 = &parent_of[p2.id.as_str()];
    ensure!(
        s1.len() == 1 && s2.len() == 1 && s1 != s2,
        "pod shims: {s1:?} and {s2:?}"
    );

    c.remove_pod(&p1).await?;
    assert_pod_gone(c, &p1, &c1).await?;
    let shims = c.settled_shims().await;
    ensure!(
        shims.len() == 1 && shims[0].pid == *s2.iter().next().unwrap(),
        "after removing one pod: {:?}",
        shims.iter().map(|p| p.pid).collect::<Vec<_>>()
    );
    let r = c.cri.exec_sync(&c2[0], &["true"], 5).await?;
    ensure!(
        r.exit_code == 0,
        "other pod broken after removing the first: {r:?}"
    );
    Ok(())
}

/// A pod's shim killed with SIGKILL (the OOM killer, an operator's mistake): the pod's
/// containers do not outlive it, CRI reports the pod not ready and its container exited, and
/// Stop/RemovePodSandbox, retried as kubelet retries them, leave nothing behind.
pub async fn shim_killed(c: &mut Containerd) -> Result<()> {
    shim_killed_with(c, Before::Nothing).await
}

/// As [`shim_killed`], with a second container created but not started when the shim dies.
pub async fn shim_killed_beside_a_created_container(c: &mut Containerd) -> Result<()> {
    shim_killed_with(c, Before::CreateAnother).await
}

/// As [`shim_killed`], after containerd restarted and reloaded the pod's tasks: containerd then
/// cleans up each of the dead shim's tasks by running the shim binary's `delete`, and removes a
/// task's bundle only if that command succeeds within its 5 s cleanup timeout.
pub async fn shim_killed_after_containerd_restart(c: &mut Containerd) -> Result<()> {
    shim_killed_with(c, Before::ContainerdRestart).await
}

/// What happens to the pod before its shim is killed.
#[derive(PartialEq)]
enum Before {
    Nothing,
    CreateAnother,
    ContainerdRestart,
}

async fn shim_killed_with(c: &mut Containerd, before: Before) -> Result<()> {
    let pod = c.run_pod("shimkill").await?;
    let id = c
        .run_container(&pod, sh("sleeper", "exec sleep 1000"))
        .await?;
    let created = match before == Before::CreateAnother {
        true => Some(
            c.create_container(&pod, sh("never", "exec sleep 1000"))
                .await?,
        ),
        false => None,
    };
    if before == Before::ContainerdRestart {
        c.kill_containerd().await?;
        c.respawn().await?;
    }
    let init = pod.container_init_pid(&id)?;
    let shims: Vec<i32> = c.settled_shims().await.iter().map(|p| p.pid).collect();
    ensure!(shims.len() == 1, "expected the pod's one shim: {shims:?}");
    sys::kill(shims[0], libc::SIGKILL);

    let within = Duration::from_secs(20);
    let deadline = Instant::now() + within;
    while sys::pid_alive(init) {
        ensure!(
            Instant::now() < deadline,
            "container init {init} still runs {within:?} after its shim was killed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // containerd answers with errors while it cleans up after the dead shim; kubelet asks again.
    let deadline = Instant::now() + within;
    loop {
        let state = c.cri.pod_status(&pod.id, false).await.map(|r| {
            PodSandboxState::try_from(r.status.unwrap_or_default().state)
                .unwrap_or(PodSandboxState::SandboxReady)
        });
        if matches!(state, Ok(PodSandboxState::SandboxNotready)) {
            break;
        }
        ensure!(
            Instant::now() < deadline,
            "PodSandboxStatus {within:?} after the shim was killed: {state:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let cs = c.cri.wait_exited(&id, within).await?;
    ensure!(cs.exit_code != 0, "exit code of a killed container: {cs:?}");
    remove_pod_retrying(c, &pod, within).await?;
    take_runc_shim_sockets(c, &pod, &id);
    let ids: Vec<String> = std::iter::once(id).chain(created).collect();
    assert_pod_gone(c, &pod, &ids).await
}

/// containerd's runc shim leaves its socket files when it is killed (nothing of containerd
/// removes them): noted, and taken away so the rest is checked.
fn take_runc_shim_sockets(c: &Containerd, pod: &Pod, id: &str) {
    if is_podshim(&c.opts.handler) {
        return;
    }
    for s in c.pod_leftovers(pod, &[id.to_string()]) {
        if let Some(path) = s.strip_prefix("shim socket ") {
            eprintln!("containerd-shim-runc-v2 left its socket {path}");
            let _ = std::fs::remove_file(path);
        }
    }
}

/// Stop/RemovePodSandbox asked again until they succeed, as kubelet does while containerd
/// cleans up after a shim.
async fn remove_pod_retrying(c: &Containerd, pod: &Pod, within: Duration) -> Result<()> {
    let deadline = Instant::now() + within;
    loop {
        let removed = match c.cri.stop_pod(&pod.id).await {
            Ok(()) => c.cri.remove_pod(&pod.id).await,
            Err(e) => Err(e),
        };
        match removed {
            Ok(()) => return Ok(()),
            Err(e) if Instant::now() < deadline => {
                eprintln!("StopPodSandbox/RemovePodSandbox: {e:#}; again");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Err(e) => return Err(e.context(format!("RemovePodSandbox, asked for {within:?}"))),
        }
    }
}

/// containerd killed inside a pause-less pod's `shim start`, after the shim serves and before
/// containerd notes which binary it is (`shim-binary-path`): the restarted containerd cannot
/// load the sandbox (it looks a runtime up by container, and a sandbox is none), calls it
/// exited and deletes its bundle. Nothing can reach that shim any more: it must stop its pod
/// and leave once its containers are gone, and Stop/RemovePodSandbox leave nothing.
/// (Reproduced by removing the file while containerd is down; chaos found it by timing.)
pub async fn shim_let_go_by_containerd(c: &mut Containerd) -> Result<()> {
    let pod = c.run_pod("letgo").await?;
    let id = c
        .run_container(&pod, sh("sleeper", "exec sleep 1000"))
        .await?;
    let bundle = c.sandbox_bundle_dir("k8s.io", &pod.id);
    c.kill_containerd().await?;
    std::fs::remove_file(bundle.join("shim-binary-path"))?;
    c.respawn().await?;
    let within = Duration::from_secs(20);
    let deadline = Instant::now() + within;
    while bundle.exists() {
        ensure!(
            Instant::now() < deadline,
            "containerd kept the sandbox bundle {} it could not load",
            bundle.display()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    remove_pod_retrying(c, &pod, within).await?;
    assert_pod_gone(c, &pod, &[id]).await
}

/// The handler's OCI runtime is runc behind a wrapper that, once the case writes `hold` in the
/// wrapper's directory, holds each `create` until the case lets it go: it writes
/// `create-started` there and waits for `go`.
pub fn with_held_create(o: podshim_integration::Options) -> podshim_integration::Options {
    // Releases run side by side, each a process of its own, with the same case names.
    let test = format!(
        "{}-{}",
        podshim_integration::containerd::case_name(),
        std::process::id()
    );
    let dir = std::path::Path::new(sys::LOCK_DIR)
        .join("held-create")
        .join(test);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create the held-create directory");
    let runc = o
        .oci_runtime
        .clone()
        .unwrap_or_else(|| "runc".into())
        .display()
        .to_string();
    let wrapper = dir.join("runc");
    let d = dir.display();
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\n\
             for a in \"$@\"; do\n\
             \x20 if [ \"$a\" = create ] && [ -e {d}/hold ]; then\n\
             \x20   touch {d}/create-started; i=0\n\
             \x20   while [ ! -e {d}/go ] && [ $i -lt 600 ]; do sleep 0.05; i=$((i+1)); done\n\
             \x20 fi\n\
             done\n\
             exec {runc} \"$@\"\n"
        ),
    )
    .expect("write the runtime wrapper");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755))
        .expect("chmod the runtime wrapper");
    podshim_integration::Options {
        oci_runtime: Some(wrapper),
        ..o
    }
}

/// The pod's shim SIGKILLed while its OCI runtime's `create` of a container runs: containerd's
/// cleanup after the dead shim and Stop/RemovePodSandbox must leave no process in the pod's
/// cgroup, no bundle, and nothing else. A create that went on without the shim left a `runc init`
/// (chaos) or, once containerd had unmounted the rootfs, a bundle that cannot be removed (this
/// case on 2.2.7); runtime commands now die with the shim (`sys::kill_with_parent`).
pub async fn shim_killed_inside_create(c: &mut Containerd) -> Result<()> {
    let (dir, pod, id, start) = start_with_create_held(c, "increate").await?;
    let shims: Vec<i32> = c.settled_shims().await.iter().map(|p| p.pid).collect();
    ensure!(shims.len() == 1, "expected the pod's one shim: {shims:?}");
    sys::kill(shims[0], libc::SIGKILL);
    std::fs::write(dir.join("go"), "")?;
    let started = start.await?;
    ensure!(
        started.is_err(),
        "StartContainer succeeded although its shim was killed inside create"
    );
    // Time for a create that outlived the shim to finish, were there one.
    tokio::time::sleep(Duration::from_secs(2)).await;
    remove_held_create_pod(c, &dir, &pod, id).await
}

/// containerd stopped (SIGTERM) while the OCI runtime's `create` of a container runs: its
/// failed CreateTask asks the shim to delete the task and then removes the bundle, rootfs
/// mount first. A delete refused as "still being created" let that happen under the running
/// create: runc made its mount points in the bare rootfs directory, the bundle could never be
/// removed, and a `runc init` could be left. After containerd is back the pod must go and leave
/// nothing.
pub async fn containerd_stopped_inside_create(c: &mut Containerd) -> Result<()> {
    let (dir, pod, id, start) = start_with_create_held(c, "stopincreate").await?;
    // containerd's stop waits for nothing: the held create goes on while it goes.
    let release = {
        let go = dir.join("go");
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(500)).await;
            std::fs::write(go, "")
        })
    };
    c.kill_containerd().await?;
    release.await??;
    let _ = start.await;
    std::fs::remove_file(dir.join("hold"))?;
    // Time for the create to finish before containerd is back.
    tokio::time::sleep(Duration::from_secs(2)).await;
    c.respawn().await?;
    remove_held_create_pod(c, &dir, &pod, id).await
}

/// A pod named `name` whose container's StartContainer is under way, its runtime's `create`
/// held by the [`with_held_create`] wrapper: the wrapper's directory, the pod, the container's
/// id, and the StartContainer call.
async fn start_with_create_held(
    c: &Containerd,
    name: &str,
) -> Result<(
    std::path::PathBuf,
    Pod,
    String,
    tokio::task::JoinHandle<Result<()>>,
)> {
    let dir = c
        .opts
        .oci_runtime
        .as_ref()
        .and_then(|w| w.parent())
        .map(std::path::Path::to_path_buf)
        .ok_or_else(|| anyhow::anyhow!("the case runs with_held_create"))?;
    let pod = c.run_pod(name).await?;
    std::fs::write(dir.join("hold"), "")?;
    let id = c
        .create_container(&pod, sh("held", "exec sleep 1000"))
        .await?;
    let cri = c.cri.clone();
    let start = {
        let id = id.clone();
        tokio::spawn(async move { cri.start_container(&id).await })
    };
    let started = dir.join("create-started");
    crate::util::eventually(Duration::from_secs(20), "the runtime's create", || {
        let seen = started.exists();
        async move { Ok((seen, "not started".to_string())) }
    })
    .await?;
    Ok((dir, pod, id, start))
}

/// Stop/RemovePodSandbox of a held-create case's pod must leave nothing; the wrapper's
/// directory goes too.
async fn remove_held_create_pod(
    c: &Containerd,
    dir: &std::path::Path,
    pod: &Pod,
    id: String,
) -> Result<()> {
    remove_pod_retrying(c, pod, Duration::from_secs(20)).await?;
    take_runc_shim_sockets(c, pod, &id);
    let r = assert_pod_gone(c, pod, &[id]).await;
    let _ = std::fs::remove_dir_all(dir);
    r
}

/// Runc's pods beside the handler's: the pause image is there.
pub fn with_pause_image(mut o: podshim_integration::Options) -> podshim_integration::Options {
    o.pause_image = Some(true);
    o
}

/// ListPodSandboxStats, as the kubelet calls it with `PodAndContainerStatsFromCRI`: with pods of
/// this handler and of runc's on one node, one call carries CPU, memory and network for every
/// pod. Then a pod of each handler without a cgroup parent (what crictl creates) joins the node:
/// podshim's may fail the node's list only where runc's does too (containerd < 2.4 reads the
/// parent itself and fails the whole list without one).
pub async fn list_pod_stats(c: &mut Containerd) -> Result<()> {
    let busy = "i=0; while [ $i -lt 100000 ]; do i=$((i+1)); done; exec sleep 1000";
    let ours = c.run_pod("liststats").await?;
    c.run_container(&ours, sh("busy", busy)).await?;
    let theirs = c
        .run_pod_with_handler(
            c.pod_config("liststatsrunc"),
            podshim_integration::HANDLER_RUNC,
        )
        .await?;
    c.run_container(&theirs, sh("busy", busy)).await?;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let missing = missing_pod_stats(&c.cri.list_pod_stats().await?, &[&ours.id, &theirs.id]);
        if missing.is_empty() {
            break;
        }
        if Instant::now() > deadline {
            bail!("ListPodSandboxStats after 30 s: {missing:?}");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let mut list_ok = Vec::new();
    for handler in [podshim_integration::HANDLER_RUNC, c.opts.handler.as_str()] {
        let mut cfg = c.pod_config("noparent");
        cfg.linux
            .get_or_insert_with(Default::default)
            .cgroup_parent
            .clear();
        let pod = c.run_pod_with_handler(cfg, handler).await?;
        let r = c.cri.list_pod_stats().await;
        list_ok.push((
            handler,
            r.as_ref().map(|_| ()).map_err(|e| format!("{e:#}")),
        ));
        c.remove_pod(&pod).await?;
    }
    let (runc, ours_r) = (&list_ok[0].1, &list_ok[1].1);
    ensure!(
        ours_r.is_ok() || runc.is_err(),
        "containerd {}: with a {} pod without cgroup parent ListPodSandboxStats fails ({:?}), \
         with runc's it succeeds",
        c.release,
        c.opts.handler,
        ours_r
    );
    eprintln!(
        "containerd {}: ListPodSandboxStats with a pod without cgroup parent: runc {:?}, {} {:?}",
        c.release, runc, c.opts.handler, ours_r
    );
    c.remove_pod(&ours).await?;
    c.remove_pod(&theirs).await?;
    Ok(())
}

/// What each of `pods` lacks in `stats`: its entry, CPU, memory or the network of eth0.
fn missing_pod_stats(stats: &[k8s_cri::v1::PodSandboxStats], pods: &[&str]) -> Vec<String> {
    let mut missing = Vec::new();
    for id in pods {
        let Some(s) = stats
            .iter()
            .find(|s| s.attributes.as_ref().is_some_and(|a| a.id == *id))
        else {
            missing.push(format!("{id}: not listed"));
            continue;
        };
        let l = s.linux.clone().unwrap_or_default();
        let cpu = l
            .cpu
            .and_then(|c| c.usage_core_nano_seconds)
            .map(|v| v.value);
        let mem = l.memory.and_then(|m| m.working_set_bytes).map(|v| v.value);
        let net = l.network.and_then(|n| n.default_interface).map(|i| i.name);
        if cpu.is_none_or(|v| v == 0) {
            missing.push(format!("{id}: cpu {cpu:?}"));
        }
        if mem.is_none_or(|v| v == 0) {
            missing.push(format!("{id}: memory {mem:?}"));
        }
        if net.as_deref() != Some("eth0") {
            missing.push(format!("{id}: network interface {net:?}"));
        }
    }
    missing
}

/// Through a pod's ordinary life (a container that logs, ExecSync, stats, a container that
/// exits), every shim of the run keeps to the hot windows of its binary: no resident page lies
/// in a 64 KiB window of cold sections only (`.text.cold`, `.rodata.cold`, `.eh_frame`, …; see
/// shim/build.rs), where each window touched is 64 KiB more RSS in every pod's shim.
pub async fn shim_stays_in_hot_windows(c: &mut Containerd) -> Result<()> {
    let pod = c.run_pod("hotwin").await?;
    let id = c
        .run_container(&pod, sh("app", "echo ready; exec sleep 1000"))
        .await?;
    let r = c
        .cri
        .exec_sync(&id, &["sh", "-c", "echo out; echo err >&2"], 10)
        .await?;
    ensure!(r.stdout == b"out\n", "ExecSync: {r:?}");
    c.cri.container_stats(&id).await?;
    let done = c
        .run_container(&pod, sh("done", "echo bye; exit 3"))
        .await?;
    let st = c.cri.wait_exited(&done, Duration::from_secs(30)).await?;
    ensure!(st.exit_code == 3, "exit {st:?}");
    let shims = c.all_shims();
    ensure!(!shims.is_empty(), "no shim runs");
    for shim in shims {
        let exe = std::fs::read_link(format!("/proc/{}/exe", shim.pid))?;
        let cold = podshim_integration::layout::cold_windows_touched(shim.pid, &exe)?;
        ensure!(
            cold.is_empty(),
            "shim {} ({}) has pages in cold windows: {cold:?}",
            shim.pid,
            exe.display()
        );
    }
    c.remove_pod(&pod).await?;
    Ok(())
}

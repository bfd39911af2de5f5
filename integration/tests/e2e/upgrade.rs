//! Upgrading podshim while pods run, as a package upgrade does it: every binary replaced by a
//! new file renamed over the old path, then the daemons restarted (SIGTERM, as systemd).
//!
//! Build A and build B are the same bytes in two files: which one a process runs is told by
//! the identity (device, inode) of its `/proc/<pid>/exe`, which keeps naming the file it was
//! started from after that file was replaced (its link then reads `<path> (deleted)`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use k8s_cri::v1::{ContainerConfig, PodSandboxState};
use podshim_integration::sys::{self, FileId};
use podshim_integration::{
    is_pauseless, logs, sh, Containerd, Options, Pod, SnapshotterUse, HANDLER_PODSHIM,
};

use crate::lifecycle::assert_pod_gone;
use crate::sandboxer::{pool_shims, until};

const SHIM: &str = "containerd-shim-podshim-v1";
const SANDBOXER: &str = "podshim-sandboxer";
const SNAPSHOTTER: &str = "podshim-snapshotter";

/// The binaries in a per-run directory the case can replace; one warm-pool shim (for the
/// podshim-sandboxer handler: an idle shim of build A must not serve a pod after the upgrade);
/// podshim-snapshotter running and, for the `podshim` runtime, serving its containers' root
/// filesystems (lazily unpacked from the imported image).
pub fn upgrade_opts(o: Options) -> Options {
    Options {
        private_bins: true,
        sandboxer_pool: 1,
        snapshotter: SnapshotterUse::PodshimPods,
        ..o
    }
}

fn writer(name: &str) -> ContainerConfig {
    sh(
        name,
        "trap 'exit 0' TERM; i=0; while true; do echo \"line $i\"; i=$((i+1)); sleep 0.1; done",
    )
}

/// The numbers of a writer's `line <n>` log lines.
fn numbers(lines: &[logs::LogLine]) -> Result<Vec<u64>> {
    logs::full_lines(lines, "stdout")
        .iter()
        .map(|l| {
            l.strip_prefix("line ")
                .and_then(|n| n.parse().ok())
                .with_context(|| format!("unexpected log line {l:?}"))
        })
        .collect()
}

/// Waits until the writer's CRI log holds line `n`; every line before it must be there once,
/// in order.
async fn wait_line(log: &Path, n: u64, within: Duration) -> Result<()> {
    let lines = logs::wait_for(log, within, |l| {
        numbers(l).is_ok_and(|v| v.last().is_some_and(|last| *last >= n))
    })
    .await
    .with_context(|| format!("line {n} never reached {}", log.display()))?;
    let nums = numbers(&lines)?;
    if let Some(i) = nums.iter().enumerate().position(|(i, v)| *v != i as u64) {
        bail!(
            "{}: line numbers not contiguous at index {i}: {:?}",
            log.display(),
            &nums[i.saturating_sub(3)..(i + 3).min(nums.len())]
        );
    }
    Ok(())
}

fn last_line(log: &Path) -> Result<u64> {
    Ok(numbers(&logs::read(log)?)?.last().copied().unwrap_or(0))
}

/// The shim serving a container: its init's parent.
fn shim_of(pod: &Pod, ctr: &str) -> Result<i32> {
    crate::util::ppid(pod.container_init_pid(ctr)?)
}

fn exe_of(pid: i32) -> Result<FileId> {
    sys::exe_id(pid).with_context(|| format!("no /proc/{pid}/exe"))
}

/// Which build process `pid` runs, as the case names them.
fn build_of(pid: i32, a: FileId, b: FileId) -> &'static str {
    match sys::exe_id(pid) {
        Some(x) if x == a => "build A",
        Some(x) if x == b => "build B",
        Some(_) => "another file",
        None => "nothing (gone)",
    }
}

async fn exec_echo(c: &Containerd, ctr: &str, word: &str) -> Result<()> {
    let r = c.cri.exec_sync(ctr, &["echo", word], 10).await?;
    ensure!(
        r.exit_code == 0 && String::from_utf8_lossy(&r.stdout).trim() == word,
        "ExecSync echo {word}: {r:?}"
    );
    Ok(())
}

/// PodSandboxStatus READY. containerd's gRPC client to a restarted proxy plugin reconnects
/// with backoff (at most 3 s) and its calls fail with Unavailable until then, which kubelet
/// retries: so do we, a bounded number of times.
async fn pod_ready(c: &Containerd, id: &str) -> Result<()> {
    let mut last = None;
    for _ in 0..50 {
        match c.cri.pod_status(id, false).await {
            Ok(r) => {
                let st = r.status.unwrap_or_default();
                ensure!(
                    st.state == PodSandboxState::SandboxReady as i32,
                    "pod {id} not READY: {st:?}"
                );
                return Ok(());
            }
            Err(e) => last = Some(e),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(last.unwrap()).context(format!("PodSandboxStatus {id}"))
}

/// podshim-snapshotter snapshot directories whose upper dir holds `rel`.
fn snapshotter_dirs_holding(c: &Containerd, rel: &str) -> Result<Vec<PathBuf>> {
    Ok(c.snapshotter_daemon()?
        .snapshot_dirs()
        .into_iter()
        .filter(|d| d.join("fs").join(rel).symlink_metadata().is_ok())
        .collect())
}

/// A file written in the container lands in a podshim-snapshotter snapshot (the `podshim` runtime's
/// snapshotter in this run; the other handlers' runtimes keep overlayfs).
async fn writes_to_snapshotter(c: &Containerd, ctr: &str, file: &str) -> Result<()> {
    if c.opts.handler != HANDLER_PODSHIM {
        return Ok(());
    }
    let r = c
        .cri
        .exec_sync(ctr, &["sh", "-c", &format!("echo x > /{file}")], 10)
        .await?;
    ensure!(r.exit_code == 0, "writing /{file}: {r:?}");
    let dirs = snapshotter_dirs_holding(c, file)?;
    ensure!(
        dirs.len() == 1,
        "/{file} written in container {ctr} is in {} podshim-snapshotter snapshots, want 1: {dirs:?}",
        dirs.len()
    );
    Ok(())
}

/// A pod runs on build A; every binary is replaced by build B as a package upgrade does and
/// the daemons this run has are restarted (podshim-snapshotter always, podshim-sandboxer for
/// its handler). The running pod stays on its shim (same pid, still build A, its binary
/// "(deleted)"): its container's log keeps growing with no line lost, exec works, a new
/// container of the pod joins that shim, and stop/remove leave nothing. A pod started after
/// the upgrade runs on build B (shim, and holder for a pause-less pod; through
/// podshim-sandboxer, not on an idle pool shim of build A) and works. The teardown checks that
/// nothing is left.
pub async fn upgrade_while_pods_run(c: &mut Containerd) -> Result<()> {
    let bin = c.dir.join("bin");
    let shim_path = bin.join(SHIM);
    let holder_path = bin.join(podshim_holder::BINARY);
    let id_of = |p: &Path| sys::file_id(p).with_context(|| format!("{}", p.display()));
    let a_shim = id_of(&shim_path)?;
    let a_holder = id_of(&holder_path)?;

    // 1. P1 on build A.
    let p1 = c.run_pod("upgrade-a").await?;
    let w1_cfg = writer("writer");
    let log1 = p1.log_file(&w1_cfg);
    let w1 = c.run_container(&p1, w1_cfg).await?;
    wait_line(&log1, 5, Duration::from_secs(10)).await?;
    let shim1 = shim_of(&p1, &w1)?;
    ensure!(
        exe_of(shim1)? == a_shim,
        "P1's shim {shim1} does not run {}",
        shim_path.display()
    );
    let holder1 = if is_pauseless(&c.opts.handler) {
        let h = c.sandbox_pid(&p1)?;
        ensure!(exe_of(h)? == a_holder, "P1's holder {h} is not build A's");
        Some(h)
    } else {
        None
    };
    writes_to_snapshotter(c, &w1, "upgrade-p1-before").await?;
    // podshim-sandboxer's warm pool: one idle shim of build A beside P1's.
    let idle_a = if c.opts.runs_sandboxer() {
        until("an idle pool shim beside P1's", || {
            pool_shims(c).iter().any(|p| *p != shim1)
        })
        .await?;
        let idle: Vec<i32> = pool_shims(c).into_iter().filter(|p| *p != shim1).collect();
        for p in &idle {
            ensure!(exe_of(*p)? == a_shim, "idle pool shim {p} is not build A");
        }
        idle
    } else {
        Vec::new()
    };
    let daemons_a: Vec<(&str, u32)> = [
        (SANDBOXER, c.sandboxer_pid()),
        (SNAPSHOTTER, c.snapshotter.as_ref().and_then(|d| d.pid())),
    ]
    .into_iter()
    .filter_map(|(n, p)| Some((n, p?)))
    .collect();

    // 2. The upgrade: new files renamed over the old paths, then the daemons restarted.
    let replaced: BTreeMap<String, (FileId, FileId)> = c
        .upgrade_binaries()?
        .into_iter()
        .map(|(p, old, new)| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            (name, (old, new))
        })
        .collect();
    let mut want: Vec<&str> = vec![SHIM, podshim_holder::BINARY, SNAPSHOTTER];
    if c.opts.runs_sandboxer() {
        want.push(SANDBOXER);
    }
    want.sort();
    ensure!(
        replaced.keys().map(String::as_str).eq(want.iter().copied()),
        "replaced {:?}, want {want:?}",
        replaced.keys()
    );
    let b = |name: &str| replaced[name].1;
    let (b_shim, b_holder) = (b(SHIM), b(podshim_holder::BINARY));
    ensure!(
        replaced[SHIM].0 == a_shim && replaced[podshim_holder::BINARY].0 == a_holder,
        "the upgrade replaced other files than P1 was started from"
    );
    if c.opts.runs_sandboxer() {
        c.stop_sandboxer().await?;
        c.spawn_sandboxer().await?;
    }
    c.snapshotter_daemon_mut()?.restart().await?;
    for (name, old_pid) in &daemons_a {
        let pid = match *name {
            SANDBOXER => c.sandboxer_pid(),
            _ => c.snapshotter.as_ref().and_then(|d| d.pid()),
        }
        .with_context(|| format!("{name} not running after the upgrade"))?;
        ensure!(pid != *old_pid, "{name} was not restarted");
        let (old, new) = replaced[*name];
        ensure!(
            exe_of(pid as i32)? == new,
            "{name} restarted as {pid} runs {}, not build B",
            build_of(pid as i32, old, new)
        );
    }

    // 3. P1 keeps its shim of build A and stays manageable.
    ensure!(
        sys::pid_alive(shim1),
        "P1's shim {shim1} died in the upgrade"
    );
    ensure!(
        exe_of(shim1)? == a_shim && sys::exe_deleted(shim1) == Some(true),
        "P1's shim {shim1} runs {} (its exe link: {:?}), want build A, replaced on disk",
        build_of(shim1, a_shim, b_shim),
        std::fs::read_link(format!("/proc/{shim1}/exe"))
    );
    if let Some(h) = holder1 {
        ensure!(
            exe_of(h)? == a_holder,
            "P1's holder {h} runs {}",
            build_of(h, a_holder, b_holder)
        );
    }
    pod_ready(c, &p1.id).await?;
    let from = last_line(&log1)?;
    wait_line(&log1, from + 10, Duration::from_secs(10))
        .await
        .context("P1's log after the upgrade")?;
    exec_echo(c, &w1, "p1-after").await?;
    writes_to_snapshotter(c, &w1, "upgrade-p1-after").await?;
    let w1b = c.run_container(&p1, sh("late", "exec sleep 1000")).await?;
    ensure!(
        shim_of(&p1, &w1b)? == shim1,
        "a container P1 started after the upgrade is not in P1's shim {shim1}"
    );
    exec_echo(c, &w1b, "p1-late").await?;
    ensure!(
        shim_of(&p1, &w1)? == shim1 && exe_of(shim1)? == a_shim,
        "P1's shim changed"
    );

    // 4. P2 starts on build B, through a shim of build B only.
    if !idle_a.is_empty() {
        until("the idle pool shims of build A gone", || {
            idle_a.iter().all(|p| !sys::pid_alive(*p))
        })
        .await
        .context("podshim-sandboxer's SIGTERM left its idle shims of build A running")?;
    }
    let p2 = c.run_pod("upgrade-b").await?;
    let w2_cfg = writer("writer");
    let log2 = p2.log_file(&w2_cfg);
    let w2 = c.run_container(&p2, w2_cfg).await?;
    let shim2 = shim_of(&p2, &w2)?;
    ensure!(shim2 != shim1, "P2 shares P1's shim {shim1}");
    ensure!(
        exe_of(shim2)? == b_shim && sys::exe_deleted(shim2) == Some(false),
        "P2's shim {shim2} runs {}, want build B",
        build_of(shim2, a_shim, b_shim)
    );
    if is_pauseless(&c.opts.handler) {
        let h = c.sandbox_pid(&p2)?;
        ensure!(
            exe_of(h)? == b_holder,
            "P2's holder {h} runs {}, want build B",
            build_of(h, a_holder, b_holder)
        );
    }
    wait_line(&log2, 5, Duration::from_secs(10)).await?;
    exec_echo(c, &w2, "p2").await?;
    writes_to_snapshotter(c, &w2, "upgrade-p2").await?;
    if c.opts.runs_sandboxer() {
        // The pool refills from build B only.
        until("an idle pool shim of build B", || {
            let idle: Vec<i32> = pool_shims(c)
                .into_iter()
                .filter(|p| *p != shim1 && *p != shim2)
                .collect();
            !idle.is_empty() && idle.iter().all(|p| sys::exe_id(*p) == Some(b_shim))
        })
        .await?;
    }

    // P1's stop and removal (on its shim of build A) leave nothing; P1's log kept going.
    let from = last_line(&log1)?;
    wait_line(&log1, from + 3, Duration::from_secs(10)).await?;
    c.remove_pod(&p1).await?;
    assert_pod_gone(c, &p1, &[w1, w1b]).await?;
    ensure!(!sys::pid_alive(shim1), "P1's shim {shim1} still runs");
    ensure!(
        sys::pid_alive(shim2),
        "P2's shim {shim2} went with P1's removal"
    );
    exec_echo(c, &w2, "p2-alone").await?;
    c.remove_pod(&p2).await?;
    assert_pod_gone(c, &p2, &[w2]).await?;
    Ok(())
}

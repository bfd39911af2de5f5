//! `make bench`: podshim against containerd's runc shim, side by side, on one private containerd.
//!
//! Both handlers run on the same containerd, images and CNI; every figure is sampled with the
//! handlers interleaved (A B A B …) so a noisy machine shifts both alike. Prints a Markdown table
//! (median and p99, or min / median / max when samples are few, and the podshim/runc ratio of the
//! medians) on stdout, writes every raw sample as JSON to `--out`, and progress lines on stderr.
//! Nothing here asserts a figure.
//!
//! Usage: podshim-bench [--quick] [--pods N] [--parallel N] [--handlers runc,podshim,podshim-pauseless,podshim-sandboxer] [--pool N]
//!                      [--execs N] [--log-secs S] [--out path.json]
#![deny(unsafe_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use k8s_cri::v1::{ContainerConfig, ContainerState, PodSandboxConfig};
use podshim_integration::{
    bench_snapshots, container, images, sh, sys, Containerd, Options, Pod, SnapshotterUse,
    HANDLER_PAUSELESS, HANDLER_PODSHIM, HANDLER_RUNC, HANDLER_SANDBOXER,
};

#[derive(Debug, Clone)]
struct Args {
    quick: bool,
    pods: usize,
    parallel: usize,
    /// podshim-sandboxer's warm pool size.
    pool: usize,
    handlers: Vec<String>,
    out: PathBuf,
    execs: usize,
    log_secs: f64,
    lifecycle: usize,
    mem_samples: usize,
    node_counts: Vec<usize>,
    log_reps: usize,
}

fn usage() -> ! {
    eprintln!(
        "usage: podshim-bench [--quick] [--pods N] [--parallel N] [--handlers runc,podshim,podshim-pauseless,podshim-sandboxer] [--pool N] \
         [--execs N] [--log-secs S] [--out path.json]"
    );
    std::process::exit(2)
}

fn parse_args() -> Args {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let quick = argv.iter().any(|a| a == "--quick");
    let mut a = Args {
        quick,
        pods: if quick { 4 } else { 50 },
        parallel: if quick { 2 } else { 10 },
        handlers: vec![
            HANDLER_RUNC.into(),
            HANDLER_PODSHIM.into(),
            HANDLER_PAUSELESS.into(),
            HANDLER_SANDBOXER.into(),
        ],
        pool: if quick { 2 } else { 10 },
        out: images::repo_root().join("target/bench/bench.json"),
        execs: if quick { 50 } else { 1000 },
        log_secs: if quick { 1.0 } else { 5.0 },
        lifecycle: if quick { 4 } else { 50 },
        mem_samples: if quick { 1 } else { 3 },
        node_counts: if quick { vec![1, 3] } else { vec![1, 10, 100] },
        log_reps: if quick { 1 } else { 2 },
    };
    let mut it = argv.into_iter();
    while let Some(k) = it.next() {
        let mut val = || it.next().unwrap_or_else(|| usage());
        match k.as_str() {
            "--quick" => {}
            "--pods" => a.pods = val().parse().unwrap_or_else(|_| usage()),
            "--parallel" => a.parallel = val().parse().unwrap_or_else(|_| usage()),
            "--pool" => a.pool = val().parse().unwrap_or_else(|_| usage()),
            "--handlers" => {
                a.handlers = val()
                    .split(',')
                    .filter(|s| !s.is_empty())
                    .map(String::from)
                    .collect()
            }
            "--out" => a.out = PathBuf::from(val()),
            "--execs" => a.execs = val().parse().unwrap_or_else(|_| usage()),
            "--log-secs" => a.log_secs = val().parse().unwrap_or_else(|_| usage()),
            "-h" | "--help" => usage(),
            _ => usage(),
        }
    }
    a.parallel = a.parallel.max(1);
    if a.handlers.is_empty() {
        usage();
    }
    a
}

/// Raw samples of one figure, per handler.
struct Figure {
    section: &'static str,
    name: String,
    unit: &'static str,
    samples: BTreeMap<String, Vec<f64>>,
}

#[derive(Default)]
struct Results {
    figs: Vec<Figure>,
    errors: Vec<String>,
    snapshots: Option<bench_snapshots::Report>,
}

impl Results {
    fn rec(
        &mut self,
        section: &'static str,
        name: &str,
        unit: &'static str,
        handler: &str,
        v: f64,
    ) {
        let i = match self.figs.iter().position(|f| f.name == name) {
            Some(i) => i,
            None => {
                self.figs.push(Figure {
                    section,
                    name: name.into(),
                    unit,
                    samples: BTreeMap::new(),
                });
                self.figs.len() - 1
            }
        };
        self.figs[i]
            .samples
            .entry(handler.into())
            .or_default()
            .push(v);
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn progress(msg: &str) {
    eprintln!("[bench {}] {msg}", chrono_now());
}

fn chrono_now() -> String {
    let out = std::process::Command::new("date")
        .arg("-u")
        .arg("+%H:%M:%S")
        .output();
    out.map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args = parse_args();
    let started = Instant::now();
    let mut opts = Options::new(HANDLER_PODSHIM);
    if std::env::var_os("PODSHIM_E2E_LOG_LEVEL").is_none() {
        // debug logging (and `-debug` shims) would dominate what we measure.
        opts.log_level = "info".into();
    }
    // containerd's own default; the e2e suite lowers it to test splitting.
    opts.max_container_log_line_size = 16384;
    // Registered only: the pod figures keep using overlayfs.
    opts.snapshotter = SnapshotterUse::Registered;
    opts.with_sandboxer = args.handlers.iter().any(|h| h == HANDLER_SANDBOXER);
    opts.sandboxer_pool = args.pool;
    opts.snapshotter_usage_refresh = bench_snapshots::USAGE_REFRESH_SECS;
    if !args.handlers.iter().any(|h| h == HANDLER_PODSHIM) {
        opts.handler = args.handlers[0].clone();
    }
    progress(&format!(
        "starting containerd (handlers {})",
        args.handlers.join(",")
    ));
    let mut c = match Containerd::start(opts).await {
        Ok(c) => c,
        Err(e) => {
            eprintln!("podshim-bench: starting containerd: {e:#}");
            std::process::exit(1);
        }
    };
    progress(&format!(
        "containerd {} up, state under {}, shim dir {}",
        c.pid().unwrap_or(0),
        c.dir.display(),
        c.shim_dir.display()
    ));
    let mut r = Results::default();
    run_all(&mut c, &args, &mut r).await;
    if !r.errors.is_empty() {
        eprintln!("--- containerd errors ---\n{}", c.log_errors(20));
        eprintln!("--- full containerd log: {} ---", c.save_log().display());
    }
    progress("teardown");
    if let Err(e) = c.stop().await {
        r.errors.push(format!("teardown: {e:#}"));
    }
    let elapsed = started.elapsed();
    print_table(&args, &r, &c, elapsed);
    if let Err(e) = write_json(&args, &r, &c, elapsed) {
        eprintln!("podshim-bench: writing {}: {e:#}", args.out.display());
        r.errors.push(format!("writing json: {e:#}"));
    }
    if !r.errors.is_empty() {
        eprintln!("podshim-bench: {} phase(s) failed:", r.errors.len());
        for e in &r.errors {
            eprintln!("  {e}");
        }
        std::process::exit(1);
    }
}

async fn run_all(c: &mut Containerd, a: &Args, r: &mut Results) {
    macro_rules! phase {
        ($name:expr, $f:expr) => {{
            progress(&format!("phase: {}", $name));
            if let Err(e) = $f.await {
                eprintln!("podshim-bench: phase {} failed: {e:#}", $name);
                r.errors.push(format!("{}: {e:#}", $name));
            }
            remove_all_pods(c).await;
        }};
    }
    phase!("pod start (serial)", pod_start_serial(c, a, r));
    phase!("pod start (parallel)", pod_start_parallel(c, a, r));
    phase!("container lifecycle", lifecycle(c, a, r));
    phase!("exec", exec_leak(c, a, r));
    // Idle pool shims map the same shim binary as the pods measured and would take a share of
    // its pages off every podshim pod's PSS: memory is measured with no pool (its cost is one
    // idle shim each, see shim-only RSS).
    if a.handlers.iter().any(|h| h == HANDLER_SANDBOXER) && a.pool > 0 {
        progress("podshim-sandboxer: restarting without its warm pool for the memory phases");
        if let Err(e) = c.restart_sandboxer_with_pool(0).await {
            r.errors
                .push(format!("restarting podshim-sandboxer without pool: {e:#}"));
        }
    }
    phase!("memory per pod", memory_per_pod(c, a, r));
    phase!("memory node total", memory_node(c, a, r));
    phase!("logs", logs_throughput(c, a, r));
    phase!("snapshotter", async {
        let s = if a.quick {
            bench_snapshots::Settings::quick()
        } else {
            bench_snapshots::Settings::full()
        };
        r.snapshots = Some(bench_snapshots::run(c, &s, &progress).await?);
        anyhow::Ok(())
    });
}

async fn remove_all_pods(c: &Containerd) {
    if let Ok(pods) = c.cri.list_pods().await {
        let futs = pods.iter().map(|p| async move {
            let _ = c.cri.stop_pod(p).await;
            let _ = c.cri.remove_pod(p).await;
        });
        futures_util::future::join_all(futs).await;
    }
}

/// A long-running container that exits at once on SIGTERM (sleep as pid 1 would ignore it).
fn sleeper(name: &str) -> ContainerConfig {
    sh(name, "trap 'exit 0' TERM; sleep 1000000 & wait")
}

struct Started {
    pod: Pod,
    run_pod: Duration,
    total: Duration,
    containers: Vec<String>,
}

/// RunPodSandbox, then `n` containers created and started; `total` runs until ContainerStatus
/// reports the first container RUNNING.
async fn start_pod(c: &Containerd, handler: &str, name: String, n: usize) -> Result<Started> {
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

async fn pod_start_serial(c: &Containerd, a: &Args, r: &mut Results) -> Result<()> {
    for i in 0..a.pods {
        for h in &a.handlers {
            let s = start_pod(c, h, format!("ser-{h}-{i}"), 1).await?;
            r.rec(
                "pod start",
                "RunPodSandbox (serial)",
                "ms",
                h,
                ms(s.run_pod),
            );
            r.rec(
                "pod start",
                "RunPodSandbox→Create→Start→running (serial)",
                "ms",
                h,
                ms(s.total),
            );
            let t = Instant::now();
            c.remove_pod(&s.pod).await?;
            r.rec(
                "pod start",
                "StopPodSandbox+RemovePodSandbox (serial)",
                "ms",
                h,
                ms(t.elapsed()),
            );
        }
        if (i + 1) % 10 == 0 || i + 1 == a.pods {
            progress(&format!(
                "serial pod start: {}/{} pods per handler",
                i + 1,
                a.pods
            ));
        }
    }
    Ok(())
}

async fn pod_start_parallel(c: &Containerd, a: &Args, r: &mut Results) -> Result<()> {
    let rounds = a.pods.div_ceil(a.parallel);
    let p = a.parallel;
    for round in 0..rounds {
        for h in &a.handlers {
            let t = Instant::now();
            let futs = (0..p).map(|j| start_pod(c, h, format!("par-{h}-{round}-{j}"), 1));
            let res = futures_util::future::join_all(futs).await;
            let wall = t.elapsed();
            let mut pods = Vec::new();
            let mut err = None;
            for s in res {
                match s {
                    Ok(s) => {
                        r.rec(
                            "pod start",
                            &format!("RunPodSandbox ({p} parallel)"),
                            "ms",
                            h,
                            ms(s.run_pod),
                        );
                        r.rec(
                            "pod start",
                            &format!("RunPodSandbox→Create→Start→running ({p} parallel)"),
                            "ms",
                            h,
                            ms(s.total),
                        );
                        pods.push(s.pod);
                    }
                    Err(e) => err = Some(e),
                }
            }
            r.rec(
                "pod start",
                &format!("wall time for {p} pods started in parallel"),
                "ms",
                h,
                ms(wall),
            );
            let rm = futures_util::future::join_all(pods.iter().map(|pod| c.remove_pod(pod))).await;
            if let Some(e) = err {
                return Err(e);
            }
            rm.into_iter().collect::<Result<Vec<()>>>()?;
        }
        progress(&format!(
            "parallel pod start: round {}/{rounds} ({p} pods per handler per round)",
            round + 1
        ));
    }
    Ok(())
}

async fn lifecycle(c: &Containerd, a: &Args, r: &mut Results) -> Result<()> {
    let mut pods = BTreeMap::new();
    for h in &a.handlers {
        pods.insert(
            h.clone(),
            start_pod(c, h, format!("life-{h}"), 0).await?.pod,
        );
    }
    for i in 0..a.lifecycle {
        for h in &a.handlers {
            let pod = &pods[h];
            let t = Instant::now();
            let id = c.create_container(pod, sleeper(&format!("c{i}"))).await?;
            r.rec(
                "container lifecycle",
                "CreateContainer",
                "ms",
                h,
                ms(t.elapsed()),
            );
            let t = Instant::now();
            c.cri.start_container(&id).await?;
            r.rec(
                "container lifecycle",
                "StartContainer",
                "ms",
                h,
                ms(t.elapsed()),
            );
            // Let the shell install its trap (a TERM before that is ignored by a pid 1).
            tokio::time::sleep(Duration::from_millis(100)).await;
            let t = Instant::now();
            c.cri.stop_container(&id, 10).await?;
            r.rec(
                "container lifecycle",
                "StopContainer (TERM trapped, a child `sleep` running)",
                "ms",
                h,
                ms(t.elapsed()),
            );
            let t = Instant::now();
            c.cri.remove_container(&id).await?;
            r.rec(
                "container lifecycle",
                "RemoveContainer",
                "ms",
                h,
                ms(t.elapsed()),
            );
        }
        if (i + 1) % 10 == 0 || i + 1 == a.lifecycle {
            progress(&format!("container lifecycle: {}/{}", i + 1, a.lifecycle));
        }
    }
    // The same stop when the child does not hold the container's stdout/stderr.
    let lone = "trap 'exit 0' TERM; sleep 1000000 </dev/null >/dev/null 2>&1 & wait";
    for i in 0..a.lifecycle.min(20) {
        for h in &a.handlers {
            let pod = &pods[h];
            let id = c.run_container(pod, sh(&format!("lone{i}"), lone)).await?;
            tokio::time::sleep(Duration::from_millis(100)).await;
            let t = Instant::now();
            c.cri.stop_container(&id, 10).await?;
            r.rec(
                "container lifecycle",
                "StopContainer (TERM trapped, child `sleep` on /dev/null)",
                "ms",
                h,
                ms(t.elapsed()),
            );
            c.cri.remove_container(&id).await?;
        }
    }
    for pod in pods.values() {
        c.remove_pod(pod).await?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// /proc accounting

/// (pid, ppid) of every process.
fn ppids() -> BTreeMap<i32, i32> {
    let mut m = BTreeMap::new();
    if let Ok(rd) = std::fs::read_dir("/proc") {
        for e in rd.flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
                continue;
            };
            if let Ok(s) = std::fs::read_to_string(format!("/proc/{pid}/stat")) {
                if let Some(ppid) = s
                    .rsplit(')')
                    .next()
                    .and_then(|r| r.split_whitespace().nth(1))
                    .and_then(|v| v.parse().ok())
                {
                    m.insert(pid, ppid);
                }
            }
        }
    }
    m
}

/// The processes that are a pod's overhead: its shim process(es) (`-id <pod id>`), their
/// descendants outside the pod's container cgroups (helpers), and the sandbox's own process
/// (pause, in cgroup `<cgroup_parent>/<pod id>`). Application containers are excluded.
fn pod_overhead(c: &Containerd, pod: &Pod) -> (Vec<i32>, Vec<i32>) {
    let pp = ppids();
    let mut shims: Vec<i32> = c
        .all_shims()
        .iter()
        .filter(|p| p.arg_after("-id") == Some(pod.id.as_str()))
        .map(|p| p.pid)
        .collect();
    // A shim adopted from podshim-sandboxer's warm pool was started under a pool id: it is the
    // parent of the pod's namespace holder.
    if shims.is_empty() {
        if let Some(&ppid) = sys::sandbox_holders(&pod.id)
            .first()
            .and_then(|h| pp.get(h))
        {
            shims.push(ppid);
        }
    }
    let mut others = Vec::new();
    let mut frontier: Vec<i32> = shims.clone();
    let mut seen: BTreeSet<i32> = shims.iter().copied().collect();
    let parent = pod.cgroup_parent.trim_end_matches('/').to_string();
    while let Some(p) = frontier.pop() {
        for (&child, &pp_) in &pp {
            if pp_ != p || !seen.insert(child) {
                continue;
            }
            frontier.push(child);
            let cg = std::fs::read_to_string(format!("/proc/{child}/cgroup")).unwrap_or_default();
            let in_pod = cg.lines().find_map(|l| {
                let path = l.splitn(3, ':').nth(2)?;
                let rest = path.strip_prefix(&parent)?;
                Some(
                    rest.trim_start_matches('/')
                        .split('/')
                        .next()
                        .unwrap_or("")
                        .to_string(),
                )
            });
            match in_pod {
                Some(ctr) if !ctr.is_empty() && ctr != pod.id => {} // an application container
                _ => others.push(child),
            }
        }
    }
    (shims, others)
}

/// The podshim-sandboxer daemon and its idle (not yet adopted) pool shims.
fn sandboxer_overhead(c: &Containerd) -> Vec<i32> {
    let mut v: Vec<i32> = c
        .all_shims()
        .iter()
        .filter(|p| {
            p.arg_after("-id")
                .is_some_and(|id| id.starts_with("podshim-pool-"))
        })
        .map(|p| p.pid)
        .collect();
    v.extend(
        sys::processes()
            .into_iter()
            .filter(|p| p.exe_name() == "podshim-sandboxer")
            .map(|p| p.pid),
    );
    v
}

fn mem_kb(pids: &[i32]) -> (f64, f64) {
    let mut rss = 0;
    let mut pss = 0;
    for &p in pids {
        rss += sys::status_kb(p, "VmRSS").unwrap_or(0);
        pss += sys::smaps_rollup_kb(p, "Pss").unwrap_or(0);
    }
    (rss as f64, pss as f64)
}

// ---------------------------------------------------------------------------------------------

async fn exec_leak(c: &Containerd, a: &Args, r: &mut Results) -> Result<()> {
    let mut pods = BTreeMap::new();
    for h in &a.handlers {
        let s = start_pod(c, h, format!("exec-{h}"), 1).await?;
        pods.insert(h.clone(), s);
    }
    // Warm up (first exec may fault in code paths), then settle.
    for (h, s) in &pods {
        for _ in 0..5 {
            c.cri
                .exec_sync(&s.containers[0], &["true"], 10)
                .await
                .with_context(|| format!("exec warm-up ({h})"))?;
        }
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut before = BTreeMap::new();
    for (h, s) in &pods {
        let (shims, _) = pod_overhead(c, &s.pod);
        before.insert(h.clone(), mem_kb(&shims));
    }
    for i in 0..a.execs {
        for h in &a.handlers {
            let s = &pods[h];
            let t = Instant::now();
            let resp = c.cri.exec_sync(&s.containers[0], &["true"], 10).await?;
            r.rec("exec", "ExecSync `true`", "ms", h, ms(t.elapsed()));
            if resp.exit_code != 0 {
                bail!("ExecSync true exited {} ({h})", resp.exit_code);
            }
        }
        if (i + 1) % 200 == 0 || i + 1 == a.execs {
            progress(&format!("ExecSync: {}/{}", i + 1, a.execs));
        }
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    for (h, s) in &pods {
        let (shims, _) = pod_overhead(c, &s.pod);
        let (rss1, pss1) = mem_kb(&shims);
        let (rss0, pss0) = before[h];
        let n = a.execs;
        r.rec("memory", "shim RSS before ExecSync loop", "kB", h, rss0);
        r.rec(
            "memory",
            &format!("shim RSS after {n} ExecSync"),
            "kB",
            h,
            rss1,
        );
        r.rec(
            "memory",
            &format!("shim RSS growth over {n} ExecSync"),
            "kB",
            h,
            rss1 - rss0,
        );
        r.rec(
            "memory",
            &format!("shim PSS growth over {n} ExecSync"),
            "kB",
            h,
            pss1 - pss0,
        );
    }
    for s in pods.values() {
        c.remove_pod(&s.pod).await?;
    }
    Ok(())
}

async fn memory_per_pod(c: &Containerd, a: &Args, r: &mut Results) -> Result<()> {
    for i in 0..a.mem_samples {
        for n in [1usize, 10] {
            for h in &a.handlers {
                let s = start_pod(c, h, format!("mem{n}-{h}-{i}"), n).await?;
                tokio::time::sleep(Duration::from_millis(1000)).await;
                let (shims, others) = pod_overhead(c, &s.pod);
                if shims.is_empty() {
                    bail!("no shim process found for pod {} ({h})", s.pod.id);
                }
                let all: Vec<i32> = shims.iter().chain(others.iter()).copied().collect();
                let (rss, pss) = mem_kb(&all);
                let (srss, spss) = mem_kb(&shims);
                let w = if n == 1 {
                    "1 container"
                } else {
                    "10 containers"
                };
                r.rec(
                    "memory",
                    &format!("pod overhead RSS, {w} (shim+pause)"),
                    "kB",
                    h,
                    rss,
                );
                r.rec(
                    "memory",
                    &format!("pod overhead PSS, {w} (shim+pause)"),
                    "kB",
                    h,
                    pss,
                );
                r.rec("memory", &format!("shim-only PSS, {w}"), "kB", h, spss);
                r.rec("memory", &format!("shim-only RSS, {w}"), "kB", h, srss);
                r.rec(
                    "memory",
                    &format!("overhead processes per pod, {w}"),
                    "count",
                    h,
                    all.len() as f64,
                );
                c.remove_pod(&s.pod).await?;
            }
        }
        progress(&format!(
            "memory per pod: sample {}/{}",
            i + 1,
            a.mem_samples
        ));
    }
    Ok(())
}

async fn memory_node(c: &Containerd, a: &Args, r: &mut Results) -> Result<()> {
    for h in &a.handlers {
        let mut pods: Vec<Pod> = Vec::new();
        for &target in &a.node_counts {
            while pods.len() < target {
                let k = (target - pods.len()).min(a.parallel);
                let base = pods.len();
                let futs = (0..k).map(|j| start_pod(c, h, format!("node-{h}-{}", base + j), 1));
                for s in futures_util::future::join_all(futs).await {
                    pods.push(s?.pod);
                }
            }
            tokio::time::sleep(Duration::from_millis(1500)).await;
            let mut all = Vec::new();
            for p in &pods {
                let (s, o) = pod_overhead(c, p);
                all.extend(s);
                all.extend(o);
            }
            // podshim-sandboxer's idle pool and the daemon itself are the node's cost too.
            if h == HANDLER_SANDBOXER {
                all.extend(sandboxer_overhead(c));
            }
            // An adopted pool shim is both the pod's shim and still named as a pool shim.
            all.sort_unstable();
            all.dedup();
            let (rss, pss) = mem_kb(&all);
            r.rec(
                "memory",
                &format!("node total RSS, {target} pod(s) (shims+pauses)"),
                "kB",
                h,
                rss,
            );
            r.rec(
                "memory",
                &format!("node total PSS, {target} pod(s) (shims+pauses)"),
                "kB",
                h,
                pss,
            );
            progress(&format!(
                "node total ({h}): {target} pods, {} processes, PSS {:.0} kB",
                all.len(),
                pss
            ));
        }
        let rm = futures_util::future::join_all(pods.iter().map(|p| c.remove_pod(p))).await;
        rm.into_iter().collect::<Result<Vec<()>>>()?;
    }
    Ok(())
}

fn file_len(p: &Path) -> u64 {
    std::fs::metadata(p).map(|m| m.len()).unwrap_or(0)
}

async fn logs_throughput(c: &Containerd, a: &Args, r: &mut Results) -> Result<()> {
    let mut pods = BTreeMap::new();
    for h in &a.handlers {
        pods.insert(
            h.clone(),
            start_pod(c, h, format!("logs-{h}"), 0).await?.pod,
        );
    }
    let cd_pid = c.pid().unwrap_or(0) as i32;
    for size in [64usize, 1024, 16384] {
        let line = "x".repeat(size - 1); // + '\n' from yes
        for rep in 0..a.log_reps {
            for h in &a.handlers {
                let pod = &pods[h];
                let cfg = container(&format!("yes{size}-{rep}"), &["yes", &line]);
                let log = pod.log_file(&cfg);
                let id = c.create_container(pod, cfg).await?;
                let (shims, _) = pod_overhead(c, pod);
                c.cri.start_container(&id).await?;
                let t0 = Instant::now();
                let b0 = file_len(&log);
                let s0: f64 = shims.iter().map(|&p| sys::cpu_ms(p)).sum();
                let d0 = sys::cpu_ms(cd_pid);
                tokio::time::sleep(Duration::from_secs_f64(a.log_secs)).await;
                let b1 = file_len(&log);
                let s1: f64 = shims.iter().map(|&p| sys::cpu_ms(p)).sum();
                let d1 = sys::cpu_ms(cd_pid);
                let secs = t0.elapsed().as_secs_f64();
                c.cri.stop_container(&id, 0).await?;
                c.cri.remove_container(&id).await?;
                let _ = std::fs::remove_file(&log);
                let mb = (b1 - b0) as f64 / 1e6;
                let label = match size {
                    64 => "64 B",
                    1024 => "1 KiB",
                    _ => "16 KiB",
                };
                r.rec(
                    "logs",
                    &format!("log throughput, {label} lines"),
                    "MB/s",
                    h,
                    mb / secs,
                );
                if mb > 0.0 {
                    r.rec(
                        "logs",
                        &format!("shim CPU per MB logged, {label} lines"),
                        "ms/MB",
                        h,
                        (s1 - s0) / mb,
                    );
                    r.rec(
                        "logs",
                        &format!("shim+containerd CPU per MB logged, {label} lines"),
                        "ms/MB",
                        h,
                        (s1 - s0 + d1 - d0) / mb,
                    );
                }
                progress(&format!(
                    "logs {label} ({h}): {:.1} MB/s, shim CPU {:.0} ms",
                    mb / secs,
                    s1 - s0
                ));
            }
        }
    }
    for pod in pods.values() {
        c.remove_pod(pod).await?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Report

fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    // nearest-rank
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

fn median(sorted: &[f64]) -> f64 {
    let n = sorted.len();
    if n == 0 {
        return f64::NAN;
    }
    if n % 2 == 1 {
        sorted[n / 2]
    } else {
        (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
    }
}

fn fmt_num(v: f64) -> String {
    if v.is_nan() {
        "–".into()
    } else if v.abs() >= 100.0 {
        format!("{v:.0}")
    } else if v.abs() >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

/// Samples at or above this count are summarised as median and p99, below as min / median / max.
const MANY: usize = 20;

fn cell(v: Option<&Vec<f64>>) -> (String, f64) {
    let Some(v) = v else {
        return ("–".into(), f64::NAN);
    };
    let mut s = v.clone();
    s.sort_by(|a, b| a.total_cmp(b));
    let m = median(&s);
    let txt = match s.len() {
        0 => "–".into(),
        1 => fmt_num(s[0]),
        n if n >= MANY => format!("{} (p99 {})", fmt_num(m), fmt_num(quantile(&s, 0.99))),
        _ => format!(
            "{} / {} / {}",
            fmt_num(s[0]),
            fmt_num(m),
            fmt_num(s[s.len() - 1])
        ),
    };
    (txt, m)
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|v| v.trim().to_string())
        })
        .unwrap_or_default();
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let mem = std::fs::read_to_string("/proc/meminfo").ok().and_then(|s| {
        s.lines()
            .find(|l| l.starts_with("MemTotal"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u64>().ok())
    });
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .unwrap_or_default()
        .trim()
        .to_string();
    format!(
        "{cpu}, {cores} cores, {} MiB RAM, Linux {kernel}",
        mem.unwrap_or(0) / 1024
    )
}

fn date_utc() -> String {
    let out = std::process::Command::new("date")
        .arg("-u")
        .arg("+%Y-%m-%d %H:%M UTC")
        .output();
    out.map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

fn containerd_version() -> String {
    let out = std::process::Command::new("containerd")
        .arg("--version")
        .output();
    out.map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

fn print_table(a: &Args, r: &Results, c: &Containerd, elapsed: Duration) {
    let hs = &a.handlers;
    // One ratio column per podshim handler, against runc's shim in the same run.
    let ratios: Vec<&String> = match hs.iter().any(|h| h == HANDLER_RUNC) {
        true => hs.iter().filter(|h| *h != HANDLER_RUNC).collect(),
        false => Vec::new(),
    };
    println!(
        "## podshim benchmark{}",
        if a.quick { " (--quick)" } else { "" }
    );
    println!();
    println!("{}; {}; {}", date_utc(), machine(), containerd_version());
    println!(
        "shim binary: {}/containerd-shim-podshim-v1; {} pods, {} in parallel, podshim-sandboxer warm pool {}, {} ExecSync, {} s of logs per run; run time {:.0} s",
        c.shim_dir.display(),
        a.pods,
        a.parallel,
        a.pool,
        a.execs,
        a.log_secs,
        elapsed.as_secs_f64()
    );
    println!();
    println!("Cells: median (p99) with ≥ {MANY} samples, else min / median / max; n = samples per handler.");
    println!();
    let mut hdr = "| figure | unit | n |".to_string();
    let mut sep = "|---|---|---:|".to_string();
    for h in hs {
        hdr.push_str(&format!(" {h} |"));
        sep.push_str("---:|");
    }
    for h in &ratios {
        hdr.push_str(&format!(" {h}/runc |"));
        sep.push_str("---:|");
    }
    println!("{hdr}\n{sep}");
    let mut section = "";
    for f in &r.figs {
        if f.section != section {
            section = f.section;
            let mut row = format!("| **{section}** | | |");
            for _ in hs {
                row.push_str(" |");
            }
            for _ in &ratios {
                row.push_str(" |");
            }
            println!("{row}");
        }
        let n = f.samples.values().map(|v| v.len()).max().unwrap_or(0);
        let mut row = format!("| {} | {} | {n} |", f.name, f.unit);
        let mut meds = BTreeMap::new();
        for h in hs {
            let (t, m) = cell(f.samples.get(h));
            meds.insert(h.as_str(), m);
            row.push_str(&format!(" {t} |"));
        }
        for h in &ratios {
            let (p, q) = (meds[h.as_str()], meds[HANDLER_RUNC]);
            let ratio = if q.abs() > f64::EPSILON && !p.is_nan() && !q.is_nan() {
                format!("{:.2}", p / q)
            } else {
                "–".into()
            };
            row.push_str(&format!(" {ratio} |"));
        }
        println!("{row}");
    }
    println!();
    match &r.snapshots {
        Some(s) => println!("### Snapshotter figures: containerd's overlayfs vs podshim-snapshotter, both through containerd's snapshots API\n\n{}", bench_snapshots::markdown(s)),
        None => println!("Snapshotter figures: not measured (the snapshotter phase failed, see above)."),
    }
    println!("Pod overhead = the pod's shim process(es), their helpers and the sandbox process (pause container, or podshim's namespace holder for pause-less pods); application containers excluded.");
    println!("Memory figures are taken with podshim-sandboxer restarted without its warm pool (idle shims would share the shim binary's pages with the pods measured); its node totals include the daemon.");
    println!("Log throughput = bytes appended to the CRI log file per second while `yes <line>` writes as fast as it can.");
    if !r.errors.is_empty() {
        println!();
        println!(
            "**{} phase(s) failed** (see stderr): {}",
            r.errors.len(),
            r.errors
                .iter()
                .map(|e| e.lines().next().unwrap_or(""))
                .collect::<Vec<_>>()
                .join("; ")
        );
    }
}

fn write_json(a: &Args, r: &Results, c: &Containerd, elapsed: Duration) -> Result<()> {
    let figs: Vec<serde_json::Value> = r
        .figs
        .iter()
        .map(|f| serde_json::json!({ "section": f.section, "figure": f.name, "unit": f.unit, "samples": f.samples }))
        .collect();
    let j = serde_json::json!({
        "date": date_utc(),
        "machine": machine(),
        "containerd": containerd_version(),
        "shim_dir": c.shim_dir.display().to_string(),
        "quick": a.quick,
        "handlers": a.handlers,
        "pods": a.pods,
        "pool": a.pool,
        "parallel": a.parallel,
        "execs": a.execs,
        "log_secs": a.log_secs,
        "node_counts": a.node_counts,
        "run_time_s": elapsed.as_secs_f64(),
        "figures": figs,
        "snapshotter": r.snapshots.as_ref().map(bench_snapshots::json),
        "errors": r.errors,
    });
    if let Some(d) = a.out.parent() {
        std::fs::create_dir_all(d)?;
    }
    std::fs::write(&a.out, serde_json::to_vec_pretty(&j)?)?;
    eprintln!("podshim-bench: raw samples written to {}", a.out.display());
    Ok(())
}

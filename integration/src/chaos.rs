//! `make chaos`: pods started and removed without pause while the daemons are killed at random.
//!
//! For each handler in turn, on a private containerd of its own (see [`Containerd`]), pods keep
//! coming and going: each runs two busybox containers that write `chaos 1` … `chaos N` on stdout,
//! a few milliseconds apart, and exit; most pods are removed once their containers exited, one in
//! four while they still write. Meanwhile, at random moments drawn from a seeded [`Rng`], one of
//! these gets SIGKILL and is started again as systemd would restart it: containerd, the handler's
//! podshim-sandboxer, a pod's shim, an idle pool shim. At the end every pod is removed and:
//!
//! 1. every container that was started and whose shim was never killed has exactly `chaos 1..N`
//!    on stdout in its CRI log, nothing on stderr, and exited 0; any other container (its shim
//!    killed, its pod removed while it wrote, its StartContainer unanswered) has a gap-free,
//!    in-order prefix of them;
//! 2. nothing is left that no pod owns: shims, holders, processes in the run's cgroups, mounts,
//!    netns files, CRI and bundle directories, shim sockets, container cgroups, podshim-sandboxer's
//!    records and bundles ([`Containerd::pod_leftovers`], [`Containerd::leftovers`],
//!    [`Containerd::sandboxer_leftovers`], then [`Containerd::stop`]'s own checks);
//! 3. the long-lived podshim processes (podshim-sandboxer, and the shim of a sentinel pod that
//!    lives through the whole run and is never killed) hold no more open fds than after warm-up
//!    plus [`FD_MARGIN`], and no more RSS than after warm-up plus [`RSS_MARGIN_PCT`] percent.
//!    containerd's own figures are not judged. podshim-snapshotter is not in these runs: the
//!    harness starts it only when [`Options::snapshotter`] asks, and no handler's pods use it.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use k8s_cri::v1::{ContainerState, ListPodSandboxRequest, PodSandboxConfig};
use podshim_common::fuzz::Rng;

use crate::containerd::{is_sandboxer, Containerd, Options};
use crate::cri::Cri;
use crate::pod::{sh, Pod};
use crate::{logs, sys};

/// Open fds a daemon may hold at the end beyond its count after warm-up.
pub const FD_MARGIN: usize = 8;
/// RSS a daemon may have at the end beyond its RSS after warm-up, in percent.
pub const RSS_MARGIN_PCT: u64 = 20;
/// Containers per pod: the shim serves more than one.
const CONTAINERS_PER_POD: usize = 2;

/// What one run does.
#[derive(Debug, Clone)]
pub struct Config {
    /// Seconds of chaos in all, split evenly between the handlers.
    pub secs: u64,
    pub seed: u64,
    pub handlers: Vec<String>,
    /// Lines each container writes.
    pub lines: u32,
    /// Microseconds between two lines.
    pub line_gap_us: u32,
    /// Pods running at once.
    pub pods: usize,
    /// Range of the pause between two kills, in milliseconds.
    pub kill_every_ms: (u64, u64),
    /// Range of a killed daemon's downtime before its restart, in milliseconds.
    pub downtime_ms: (u64, u64),
}

impl Config {
    pub fn new(secs: u64, seed: u64) -> Config {
        Config {
            secs,
            seed,
            handlers: vec![
                crate::HANDLER_PODSHIM.into(),
                crate::HANDLER_PAUSELESS.into(),
                crate::HANDLER_SANDBOXER.into(),
            ],
            lines: 100,
            line_gap_us: 20_000,
            pods: 3,
            kill_every_ms: (500, 3500),
            downtime_ms: (100, 2000),
        }
    }
}

/// What was killed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Target {
    Containerd,
    Sandboxer,
    PodShim,
    PoolShim,
}

impl Target {
    pub fn name(self) -> &'static str {
        match self {
            Target::Containerd => "containerd",
            Target::Sandboxer => "podshim-sandboxer",
            Target::PodShim => "pod shim",
            Target::PoolShim => "idle pool shim",
        }
    }
}

/// How a container's output is judged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Class {
    /// Started, shim never killed, pod removed after it exited: exactly lines 1..N.
    Complete,
    /// Its pod's shim was killed: a gap-free prefix.
    ShimKilled,
    /// Its pod was removed while it wrote: a gap-free prefix.
    RemovedEarly,
    /// StartContainer got no answer (containerd died): a gap-free prefix, maybe empty.
    StartUnanswered,
    /// containerd, killed, lost its exit (CRI reports exit code 255, reason `Unknown`) in one
    /// of two ways. Any handler: containerd had received the exit (its log says so), deleted the
    /// task and died before CRI recorded the exit status (CRI deletes first, records after). runc's
    /// handler also: the container exited while containerd was down and containerd's loader took
    /// the stopped task, whose shim answers `Pids` with an empty list, for a leaked shim
    /// (containerd#6860); podshim's shim answers with the stopped init's pid, so for podshim's
    /// handlers that is [`Class::Complete`] (e2e `exit_while_containerd_down`). A gap-free prefix.
    ExitLost,
}

impl Class {
    pub fn name(self) -> &'static str {
        match self {
            Class::Complete => "complete",
            Class::ShimKilled => "shim-killed",
            Class::RemovedEarly => "removed-early",
            Class::StartUnanswered => "start-unanswered",
            Class::ExitLost => "exit-lost",
        }
    }
}

/// A long-lived process's figures.
#[derive(Debug, Clone, Copy)]
pub struct Usage {
    pub rss_kb: u64,
    pub fds: usize,
}

pub fn usage(pid: i32) -> Option<Usage> {
    let rss_kb = sys::status_kb(pid, "VmRSS")?;
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count();
    Some(Usage { rss_kb, fds })
}

/// One handler's results.
#[derive(Debug, Default)]
pub struct Report {
    pub handler: String,
    pub chaos_secs: f64,
    pub wall_secs: f64,
    pub pods_started: usize,
    pub pod_start_failures: usize,
    pub pods_removed: usize,
    pub kills: BTreeMap<Target, usize>,
    /// Containers checked per class.
    pub classes: BTreeMap<Class, usize>,
    pub lines_checked: u64,
    /// `(process, after warm-up, at the end)`
    pub usage: Vec<(String, Usage, Usage)>,
    /// Seconds from each containerd SIGKILL until CRI answered again (downtime included).
    pub containerd_restarts: Vec<f64>,
    /// One line per container: handler, pod, container, class, lines found.
    pub containers: Vec<String>,
    /// Leftovers found.
    pub leaks: Vec<String>,
    /// Everything else that broke a promise.
    pub violations: Vec<String>,
    /// What was left as containerd leaves it with runc's shim too, not counted as a leak.
    pub known: Vec<String>,
    /// Where the daemons' logs were kept.
    pub logs: Vec<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Start {
    NotStarted,
    Confirmed,
    Unanswered,
}

#[derive(Debug, Clone)]
struct CtrRec {
    name: String,
    id: Option<String>,
    log: PathBuf,
    start: Start,
    exit_code: Option<i32>,
    /// CRI's reason for the exit.
    reason: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PodState {
    Starting,
    Running,
    Removing,
    Done,
}

#[derive(Debug, Clone)]
struct PodRec {
    name: String,
    pod: Option<Pod>,
    ctrs: Vec<CtrRec>,
    shim_killed: bool,
    removed_early: bool,
    /// containerd was killed while the pod lived.
    containerd_killed: bool,
    removed: bool,
    state: PodState,
    /// Broken promises the pod's task saw.
    problems: Vec<String>,
    /// Failures the chaos explains (a call that met a dead daemon).
    notes: Vec<String>,
}

type Pods = Arc<Mutex<Vec<PodRec>>>;

fn lock(p: &Pods) -> std::sync::MutexGuard<'_, Vec<PodRec>> {
    p.lock().unwrap_or_else(|e| e.into_inner())
}

fn between(rng: &mut Rng, (lo, hi): (u64, u64)) -> Duration {
    Duration::from_millis(lo + rng.below((hi - lo + 1) as usize) as u64)
}

fn writer_script(lines: u32, gap_us: u32) -> String {
    format!(
        "i=1; while [ $i -le {lines} ]; do echo \"chaos $i\"; i=$((i+1)); usleep {gap_us}; done"
    )
}

/// Retry `f` every 300 ms for `within`: kubelet retries CRI calls that meet a restarting
/// containerd or sandboxer.
async fn retry<T, F, Fut>(within: Duration, mut f: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T>>,
{
    let deadline = Instant::now() + within;
    loop {
        match f().await {
            Ok(v) => return Ok(v),
            Err(e) if Instant::now() > deadline => return Err(e),
            Err(_) => tokio::time::sleep(Duration::from_millis(300)).await,
        }
    }
}

/// Stop and remove a pod until CRI no longer has it.
async fn remove_pod(cri: &Cri, id: &str, within: Duration) -> Result<()> {
    retry(within, || async {
        let r = match cri.stop_pod(id).await {
            Ok(()) => cri.remove_pod(id).await,
            Err(e) => Err(e),
        };
        match r {
            Ok(()) => Ok(()),
            // An earlier attempt removed it and its answer was lost with containerd.
            Err(e) if format!("{e:#}").contains("NotFound") => {
                if cri.list_pods().await?.iter().any(|p| p == id) {
                    Err(e)
                } else {
                    Ok(())
                }
            }
            Err(e) => Err(e),
        }
    })
    .await
    .with_context(|| format!("removing pod {id}"))
}

/// As kubelet collects the sandbox of a RunPodSandbox that failed: whatever CRI lists with the
/// pod's uid is stopped and removed. Returns the ids removed.
async fn collect_by_uid(cri: &Cri, uid: &str, within: Duration) -> Result<Vec<String>> {
    let ids: Vec<String> = retry(within, || async {
        let r = cri
            .rt
            .clone()
            .list_pod_sandbox(ListPodSandboxRequest { filter: None })
            .await
            .map_err(|e| anyhow::anyhow!("{:?}: {}", e.code(), e.message()))?;
        Ok(r.into_inner()
            .items
            .into_iter()
            .filter(|p| p.metadata.as_ref().is_some_and(|m| m.uid == uid))
            .map(|p| p.id)
            .collect())
    })
    .await?;
    for id in &ids {
        remove_pod(cri, id, within).await?;
    }
    Ok(ids)
}

/// What a pod's task needs.
struct PodJob {
    pods: Pods,
    idx: usize,
    cri: Cri,
    handler: String,
    config: PodSandboxConfig,
    lines: u32,
    gap_us: u32,
    /// Remove the pod this long after its containers started, whether they finished or not.
    early: Option<Duration>,
}

/// One pod's life, kubelet-like: RunPodSandbox, two containers, wait for their exit (or not),
/// Stop/RemovePodSandbox retried until done. What it learns goes into its [`PodRec`].
async fn pod_task(j: PodJob) {
    let note = |s: String| lock(&j.pods)[j.idx].notes.push(s);
    let problem = |s: String| lock(&j.pods)[j.idx].problems.push(s);
    let log_dir = PathBuf::from(&j.config.log_directory);
    let _ = std::fs::create_dir_all(&log_dir);
    let name = j.config.metadata.as_ref().map(|m| m.name.clone());
    let uid = j
        .config
        .metadata
        .as_ref()
        .map(|m| m.uid.clone())
        .unwrap_or_default();
    let id = match j.cri.run_pod(j.config.clone(), &j.handler).await {
        Ok(id) => id,
        Err(e) => {
            note(format!("RunPodSandbox failed: {e:#}"));
            match collect_by_uid(&j.cri, &uid, Duration::from_secs(300)).await {
                Ok(ids) if !ids.is_empty() => note(format!("collected its sandbox {ids:?}")),
                Ok(_) => {}
                Err(e) => problem(format!(
                    "the sandbox of a failed RunPodSandbox could not be collected: {e:#}"
                )),
            }
            lock(&j.pods)[j.idx].state = PodState::Done;
            return;
        }
    };
    let pod = Pod {
        id: id.clone(),
        name: name.unwrap_or_default(),
        config: j.config.clone(),
        log_dir,
        cgroup_parent: j
            .config
            .linux
            .as_ref()
            .map(|l| l.cgroup_parent.clone())
            .unwrap_or_default(),
        netns: None,
        ip: String::new(),
    };
    lock(&j.pods)[j.idx].pod = Some(pod.clone());
    let script = writer_script(j.lines, j.gap_us);
    for k in 0..CONTAINERS_PER_POD {
        let cfg = sh(&format!("w{k}"), &script);
        let rec = CtrRec {
            name: format!("w{k}"),
            id: None,
            log: pod.log_file(&cfg),
            start: Start::NotStarted,
            exit_code: None,
            reason: String::new(),
        };
        let n = {
            let mut g = lock(&j.pods);
            g[j.idx].ctrs.push(rec);
            g[j.idx].ctrs.len() - 1
        };
        let cid = match j.cri.create_container(&id, &j.config, cfg).await {
            Ok(c) => c,
            Err(e) => {
                note(format!("CreateContainer w{k} failed: {e:#}"));
                break;
            }
        };
        lock(&j.pods)[j.idx].ctrs[n].id = Some(cid.clone());
        match j.cri.start_container(&cid).await {
            Ok(()) => lock(&j.pods)[j.idx].ctrs[n].start = Start::Confirmed,
            Err(e) => {
                note(format!("StartContainer w{k} failed: {e:#}"));
                lock(&j.pods)[j.idx].ctrs[n].start = Start::Unanswered;
                break;
            }
        }
    }
    lock(&j.pods)[j.idx].state = PodState::Running;

    if let Some(d) = j.early {
        tokio::time::sleep(d).await;
        lock(&j.pods)[j.idx].removed_early = true;
    } else {
        // Wait for every container that may run to exit; a generous bound: the writing time,
        // containerd restarts (a minute or more each), 20 s for a dead shim's containers.
        let write = Duration::from_micros(j.lines as u64 * (j.gap_us as u64 + 5_000));
        let bound = write * 3 + Duration::from_secs(300);
        let deadline = Instant::now() + bound;
        let ctrs = lock(&j.pods)[j.idx].ctrs.clone();
        for (n, c) in ctrs.iter().enumerate() {
            let (Some(cid), true) = (&c.id, c.start != Start::NotStarted) else {
                continue;
            };
            let mut created_seen = 0;
            let mut last = String::from("no answer");
            loop {
                match j.cri.container_status(cid).await {
                    Ok(s) if s.state == ContainerState::ContainerExited as i32 => {
                        let mut g = lock(&j.pods);
                        g[j.idx].ctrs[n].exit_code = Some(s.exit_code);
                        g[j.idx].ctrs[n].reason = s.reason.clone();
                        break;
                    }
                    // A start that never reached the shim leaves the container created.
                    Ok(s)
                        if s.state == ContainerState::ContainerCreated as i32
                            && c.start == Start::Unanswered =>
                    {
                        created_seen += 1;
                        if created_seen >= 10 {
                            lock(&j.pods)[j.idx].ctrs[n].start = Start::NotStarted;
                            break;
                        }
                    }
                    Ok(s) => last = format!("{:?}", ContainerState::try_from(s.state)),
                    Err(e) => last = format!("{e:#}"),
                }
                if Instant::now() > deadline {
                    problem(format!(
                        "container {} ({cid}) not seen exited within {:?} (last: {last})",
                        c.name, bound
                    ));
                    break;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
    lock(&j.pods)[j.idx].state = PodState::Removing;
    match remove_pod(&j.cri, &id, Duration::from_secs(300)).await {
        Ok(()) => lock(&j.pods)[j.idx].removed = true,
        Err(e) => problem(format!("{e:#}")),
    }
    lock(&j.pods)[j.idx].state = PodState::Done;
}

/// Judge one container's CRI log. Returns the lines checked and the violation, if any.
fn check_log(c: &CtrRec, class: Class, lines: u32) -> (usize, Option<String>) {
    let parsed = match std::fs::read_to_string(&c.log) {
        Ok(s) => match logs::parse(&s) {
            Ok(p) => p,
            Err(e) => return (0, Some(format!("{}: {e:#}", c.log.display()))),
        },
        Err(_) => Vec::new(),
    };
    let out = logs::full_lines(&parsed, "stdout");
    let err = logs::full_lines(&parsed, "stderr");
    let mut good = 0;
    for (i, l) in out.iter().enumerate() {
        if *l != format!("chaos {}", i + 1) {
            let around = &out[i.saturating_sub(2)..(i + 3).min(out.len())];
            return (
                good,
                Some(format!(
                    "line {} is {l:?}, expected \"chaos {}\" (around: {around:?}; {} lines)",
                    i + 1,
                    i + 1,
                    out.len()
                )),
            );
        }
        good += 1;
    }
    if out.len() > lines as usize {
        return (
            good,
            Some(format!("{} lines, more than {lines}", out.len())),
        );
    }
    if class == Class::Complete {
        if out.len() != lines as usize {
            return (
                good,
                Some(format!(
                    "{} of {lines} lines (lost the rest: \"chaos {}\" on)",
                    out.len(),
                    out.len() + 1
                )),
            );
        }
        if !err.is_empty() {
            return (good, Some(format!("stderr not empty: {err:?}")));
        }
        if c.exit_code != Some(0) {
            return (good, Some(format!("exit code {:?}, not 0", c.exit_code)));
        }
    }
    (good, None)
}

/// `exit_seen`: containerd's log records the container's exit (so a lost exit is CRI's window).
fn class_of(p: &PodRec, c: &CtrRec, handler: &str, exit_seen: bool) -> Option<Class> {
    match c.start {
        Start::NotStarted => None,
        _ if p.shim_killed => Some(Class::ShimKilled),
        _ if p.removed_early => Some(Class::RemovedEarly),
        Start::Unanswered => Some(Class::StartUnanswered),
        Start::Confirmed
            if (handler == crate::HANDLER_RUNC || exit_seen)
                && p.containerd_killed
                && c.exit_code == Some(255)
                && c.reason == "Unknown" =>
        {
            Some(Class::ExitLost)
        }
        Start::Confirmed => Some(Class::Complete),
    }
}

/// The shims serving a pod: parents of the processes in its cgroup, and shims named after it.
/// A `shim delete` run is not one: containerd runs it to clean up after a dead shim, and killing
/// it leaves that pod's bundle and cgroup until containerd restarts, whatever the shim (runc's
/// too): a fault of containerd's cleanup, not of a pod's server.
fn pod_shims(pod: &Pod, shims: &[sys::Proc]) -> BTreeSet<i32> {
    let shims: Vec<&sys::Proc> = shims
        .iter()
        .filter(|p| p.cmdline.last().map(String::as_str) != Some("delete"))
        .collect();
    let pids: BTreeSet<i32> = shims.iter().map(|p| p.pid).collect();
    let mut v: BTreeSet<i32> = sys::cgroup_pids(&pod.cgroup_parent)
        .into_iter()
        .filter_map(sys::ppid)
        .filter(|pp| pids.contains(pp))
        .collect();
    v.extend(
        shims
            .iter()
            .filter(|p| p.arg_after("-id") == Some(pod.id.as_str()))
            .map(|p| p.pid),
    );
    v
}

/// The state of one handler's run while it goes.
struct Phase<'a> {
    cfg: &'a Config,
    rng: &'a mut Rng,
    rep: Report,
    pods: Pods,
    tasks: tokio::task::JoinSet<()>,
    /// `(namespace, id)` of every shim seen: their sockets must be gone at the end.
    shim_ids: BTreeSet<(String, String)>,
    sentinel_shim: i32,
}

impl Phase<'_> {
    fn spawn_pod(&mut self, c: &Containerd, early: Option<Duration>) {
        let n = lock(&self.pods).len();
        let config = c.pod_config(&format!("chaos{n}"));
        lock(&self.pods).push(PodRec {
            name: format!("chaos{n}"),
            pod: None,
            ctrs: Vec::new(),
            shim_killed: false,
            removed_early: false,
            containerd_killed: false,
            removed: false,
            state: PodState::Starting,
            problems: Vec::new(),
            notes: Vec::new(),
        });
        self.tasks.spawn(pod_task(PodJob {
            pods: self.pods.clone(),
            idx: n,
            cri: c.cri.clone(),
            handler: c.opts.handler.clone(),
            config,
            lines: self.cfg.lines,
            gap_us: self.cfg.line_gap_us,
            early,
        }));
    }

    fn live(&self) -> usize {
        lock(&self.pods)
            .iter()
            .filter(|p| p.state != PodState::Done)
            .count()
    }

    fn note_shims(&mut self, c: &Containerd) {
        for p in c.all_shims() {
            if let (Some(ns), Some(id)) = (p.arg_after("-namespace"), p.arg_after("-id")) {
                self.shim_ids.insert((ns.to_string(), id.to_string()));
            }
        }
    }

    /// One kill at a random target, and its restart. Returns what was killed (None: no
    /// candidate this time).
    async fn kill_one(&mut self, c: &mut Containerd) -> Result<Option<Target>> {
        let mut targets = vec![Target::Containerd, Target::PodShim];
        if c.opts.runs_sandboxer() {
            targets.push(Target::Sandboxer);
        }
        let t = targets[self.rng.below(targets.len())];
        let downtime = between(self.rng, self.cfg.downtime_ms);
        match t {
            Target::Containerd => {
                let pid = c.pid().context("containerd is not running")?;
                for p in lock(&self.pods)
                    .iter_mut()
                    .filter(|p| p.state != PodState::Done)
                {
                    p.containerd_killed = true;
                }
                let t0 = Instant::now();
                sys::kill(pid as i32, libc::SIGKILL);
                c.kill_containerd().await?;
                tokio::time::sleep(downtime).await;
                respawn(c).await?;
                self.rep
                    .containerd_restarts
                    .push(t0.elapsed().as_secs_f64());
                Ok(Some(t))
            }
            Target::Sandboxer => {
                c.kill9_sandboxer()?;
                tokio::time::sleep(downtime).await;
                c.spawn_sandboxer()
                    .await
                    .context("podshim-sandboxer did not come back after SIGKILL")?;
                Ok(Some(t))
            }
            _ => {
                let shims = c.all_shims();
                let pods: Vec<(usize, Pod)> = lock(&self.pods)
                    .iter()
                    .enumerate()
                    .filter(|(_, p)| p.state != PodState::Done)
                    .filter_map(|(i, p)| p.pod.clone().map(|pod| (i, pod)))
                    .collect();
                let mut cands: Vec<(i32, Vec<usize>)> = Vec::new();
                for (i, pod) in &pods {
                    for s in pod_shims(pod, &shims) {
                        match cands.iter_mut().find(|(p, _)| *p == s) {
                            Some((_, v)) => v.push(*i),
                            None => cands.push((s, vec![*i])),
                        }
                    }
                }
                let pod_shim_pids: BTreeSet<i32> = cands.iter().map(|c| c.0).collect();
                // Idle pool shims: podshim-sandboxer's, serving no pod yet.
                let pool: Vec<i32> = shims
                    .iter()
                    .filter(|p| {
                        p.arg_after("-id")
                            .is_some_and(|id| id.starts_with("podshim-pool-"))
                    })
                    .map(|p| p.pid)
                    .filter(|p| !pod_shim_pids.contains(p) && *p != self.sentinel_shim)
                    .filter(|p| {
                        // An adopted pool shim serving a pod this run knows nothing of yet
                        // (mid-RunPodSandbox) has children: leave it to the pod-shim draw.
                        sys::processes()
                            .iter()
                            .all(|q| sys::ppid(q.pid) != Some(*p))
                    })
                    .collect();
                cands.retain(|(s, _)| *s != self.sentinel_shim);
                let n = cands.len() + pool.len();
                if n == 0 {
                    return Ok(None);
                }
                let k = self.rng.below(n);
                if k < cands.len() {
                    let (pid, owners) = &cands[k];
                    for i in owners {
                        lock(&self.pods)[*i].shim_killed = true;
                    }
                    sys::kill(*pid, libc::SIGKILL);
                    Ok(Some(Target::PodShim))
                } else {
                    sys::kill(pool[k - cands.len()], libc::SIGKILL);
                    Ok(Some(Target::PoolShim))
                }
            }
        }
    }
}

/// How long containerd may take to serve CRI again after a restart before the run gives up: its
/// start waits on every task it loads (see the README's chaos paragraph).
const RESTART_BOUND: Duration = Duration::from_secs(300);

/// Start containerd again. The harness waits 30 s for CRI; a containerd still starting then
/// (it is loading its tasks) is waited for up to [`RESTART_BOUND`].
async fn respawn(c: &mut Containerd) -> Result<()> {
    let t0 = Instant::now();
    let Err(e) = c.respawn().await else {
        return Ok(());
    };
    let alive = c.pid().is_some_and(|p| sys::pid_alive(p as i32));
    if !alive {
        return Err(e.context("containerd did not come back after SIGKILL"));
    }
    loop {
        if let Ok(Ok(_)) = tokio::time::timeout(Duration::from_secs(3), c.cri.version()).await {
            return Ok(());
        }
        if t0.elapsed() > RESTART_BOUND {
            bail!(
                "containerd restarted after SIGKILL does not serve CRI after {RESTART_BOUND:?}; log tail:\n{}",
                c.log_tail(30)
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The long-lived podshim processes of this run and their figures now.
fn daemons(c: &Containerd, sentinel_shim: i32) -> Vec<(String, Option<Usage>)> {
    let mut v = Vec::new();
    if c.opts.runs_sandboxer() {
        v.push((
            "podshim-sandboxer".to_string(),
            c.sandboxer_pid().and_then(|p| usage(p as i32)),
        ));
    }
    v.push(("shim of the sentinel pod".to_string(), usage(sentinel_shim)));
    v
}

/// Cgroup directories below the run's cgroup root named after a pod or container of the run:
/// `(id, description, processes in it)`.
fn id_cgroups(c: &Containerd, ids: &BTreeSet<String>) -> Vec<(String, String, usize)> {
    let mut out = Vec::new();
    for root in sys::cgroup_roots() {
        let top = root.join(c.cgroup_root.trim_start_matches('/'));
        let mut stack = vec![top];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
                if !e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                    continue;
                }
                let name = e.file_name().to_string_lossy().into_owned();
                if ids.contains(&name) {
                    let pids =
                        std::fs::read_to_string(e.path().join("cgroup.procs")).unwrap_or_default();
                    let n = pids.lines().count();
                    out.push((
                        name,
                        format!("cgroup {} ({n} processes)", e.path().display()),
                        n,
                    ));
                }
                stack.push(e.path());
            }
        }
    }
    out
}

fn logs_dir() -> PathBuf {
    crate::images::cache_dir().with_file_name("podshim-e2e-logs")
}

/// One handler's chaos run, from its containerd's start to its teardown.
pub async fn run_handler(handler: &str, secs: f64, cfg: &Config, rng: &mut Rng) -> Report {
    let t0 = Instant::now();
    let mut rep = Report {
        handler: handler.to_string(),
        ..Default::default()
    };
    let opts = Options {
        // An idle pool shim too, to be adopted or killed.
        sandboxer_pool: if is_sandboxer(handler) { 1 } else { 0 },
        ..Options::new(handler)
    };
    let mut c = match Containerd::start(opts).await {
        Ok(c) => c,
        Err(e) => {
            rep.violations
                .push(format!("starting containerd for {handler}: {e:#}"));
            return rep;
        }
    };
    let _ = std::fs::create_dir_all(logs_dir());
    let log_copy = logs_dir().join(format!("chaos-{}-{handler}-containerd.log", cfg.seed));
    c.keep_log_at(log_copy.clone());
    let mut phase = Phase {
        cfg,
        rng,
        rep,
        pods: Arc::new(Mutex::new(Vec::new())),
        tasks: tokio::task::JoinSet::new(),
        shim_ids: BTreeSet::new(),
        sentinel_shim: 0,
    };
    if let Err(e) = chaos(&mut c, &mut phase, secs).await {
        phase.rep.violations.push(format!("{e:#}"));
    }
    phase.tasks.abort_all();
    let mut rep = finish(&mut c, &mut phase).await;
    // The sandboxer's log goes with the temp dir: keep it (it holds its shims' logs too).
    let sb_log = c.dir.join("sandboxer.log");
    if sb_log.exists() {
        let p = logs_dir().join(format!("chaos-{}-{handler}-sandboxer.log", cfg.seed));
        if std::fs::copy(&sb_log, &p).is_ok() {
            rep.logs.push(p);
        }
    }
    if let Err(e) = c.stop().await {
        rep.leaks.extend(
            format!("{e:#}")
                .lines()
                .skip(1)
                .map(|l| format!("containerd teardown: {}", l.trim())),
        );
        if !format!("{e:#}").contains("teardown found problems") {
            rep.violations.push(format!("teardown: {e:#}"));
        }
    }
    let d = format!("{}/", c.dir.display());
    for p in sys::processes_mentioning(&[&d]) {
        rep.leaks.push(format!(
            "after teardown: process {} {}",
            p.pid,
            p.cmdline_str()
        ));
    }
    for m in sys::mounts_under(&c.dir) {
        rep.leaks
            .push(format!("after teardown: mount {}", m.display()));
    }
    drop(c);
    rep.logs.insert(0, log_copy);
    if rep.leaks.is_empty() && rep.violations.is_empty() {
        // Kept only for a failed run.
        for p in rep.logs.drain(..) {
            let _ = std::fs::remove_file(p);
        }
    }
    rep.wall_secs = t0.elapsed().as_secs_f64();
    rep
}

/// Sentinel and warm-up, the chaos itself, the drain.
async fn chaos(c: &mut Containerd, ph: &mut Phase<'_>, secs: f64) -> Result<()> {
    // A pod that lives through the whole run and is never killed: its shim is measured.
    let sentinel = c.run_pod("sentinel").await.context("sentinel pod")?;
    let sctr = c
        .run_container(&sentinel, sh("idle", "exec sleep 100000"))
        .await
        .context("sentinel container")?;
    ph.sentinel_shim = sys::ppid(sentinel.container_init_pid(&sctr)?)
        .context("the sentinel container has no parent")?;

    // Warm-up: two pods through their whole life, no kill.
    for _ in 0..2 {
        ph.spawn_pod(c, None);
    }
    while ph.tasks.join_next().await.is_some() {}
    ph.note_shims(c);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let base = daemons(c, ph.sentinel_shim);

    // The chaos.
    let t = Instant::now();
    let end = t + Duration::from_secs_f64(secs);
    let mut next_kill = Instant::now() + between(ph.rng, ph.cfg.kill_every_ms);
    while Instant::now() < end {
        while ph.tasks.try_join_next().is_some() {}
        while ph.live() < ph.cfg.pods {
            let early = if ph.rng.below(4) == 0 {
                Some(between(ph.rng, (300, 2500)))
            } else {
                None
            };
            ph.spawn_pod(c, early);
        }
        ph.note_shims(c);
        if Instant::now() >= next_kill {
            if let Some(t) = ph.kill_one(c).await? {
                *ph.rep.kills.entry(t).or_default() += 1;
            }
            next_kill = Instant::now() + between(ph.rng, ph.cfg.kill_every_ms);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    ph.rep.chaos_secs = t.elapsed().as_secs_f64();

    // Drain: every pod's task finishes (each is bounded: a few minutes at worst).
    let drain = tokio::time::timeout(Duration::from_secs(600), async {
        while ph.tasks.join_next().await.is_some() {}
    })
    .await;
    if drain.is_err() {
        bail!("pod tasks still running 600 s after the chaos ended");
    }
    ph.note_shims(c);

    // The sentinel lived through it all.
    let st = c.cri.container_status(&sctr).await?;
    if st.state != ContainerState::ContainerRunning as i32 {
        ph.rep
            .violations
            .push(format!("the sentinel container is not running: {st:?}"));
    }
    if !sys::pid_alive(ph.sentinel_shim) {
        ph.rep.violations.push(format!(
            "the sentinel pod's shim {} died though never killed",
            ph.sentinel_shim
        ));
    }
    // Let podshim-sandboxer refill its pool and every shim settle, then measure.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let end_usage = daemons(c, ph.sentinel_shim);
    for ((name, b), (_, e)) in base.into_iter().zip(end_usage) {
        match (b, e) {
            (Some(b), Some(e)) => {
                if e.fds > b.fds + FD_MARGIN {
                    ph.rep.violations.push(format!(
                        "{name}: {} open fds at the end, {} after warm-up (margin +{FD_MARGIN})",
                        e.fds, b.fds
                    ));
                }
                if e.rss_kb * 100 > b.rss_kb * (100 + RSS_MARGIN_PCT) {
                    ph.rep.violations.push(format!(
                        "{name}: RSS {} kB at the end, {} kB after warm-up (margin +{RSS_MARGIN_PCT}%)",
                        e.rss_kb, b.rss_kb
                    ));
                }
                ph.rep.usage.push((name, b, e));
            }
            (b, e) => ph.rep.violations.push(format!(
                "{name}: not measurable (after warm-up {b:?}, at the end {e:?})"
            )),
        }
    }

    c.remove_pod(&sentinel)
        .await
        .context("removing the sentinel pod")?;
    lock(&ph.pods).push(PodRec {
        name: "sentinel".into(),
        pod: Some(sentinel),
        ctrs: vec![CtrRec {
            name: "idle".into(),
            id: Some(sctr),
            log: PathBuf::new(),
            start: Start::NotStarted,
            exit_code: None,
            reason: String::new(),
        }],
        shim_killed: false,
        removed_early: false,
        containerd_killed: false,
        removed: true,
        state: PodState::Done,
        problems: Vec::new(),
        notes: Vec::new(),
    });
    Ok(())
}

/// Judge the logs, look for leftovers, fill the report.
async fn finish(c: &mut Containerd, ph: &mut Phase<'_>) -> Report {
    let rep = &mut ph.rep;
    // Whatever CRI still lists is a pod this run removed (or never knew: a RunPodSandbox that
    // failed): removed here as kubelet's garbage collection would, and counted.
    match retry(Duration::from_secs(120), || c.cri.list_pods()).await {
        Ok(ids) => {
            for id in ids {
                rep.leaks.push(format!(
                    "pod {id} still listed by CRI at the end (removed now)"
                ));
                if let Err(e) = remove_pod(&c.cri, &id, Duration::from_secs(120)).await {
                    rep.violations.push(format!("{e:#}"));
                }
            }
        }
        Err(e) => rep
            .violations
            .push(format!("ListPodSandbox at the end: {e:#}")),
    }
    let pods = lock(&ph.pods).clone();
    let handler = rep.handler.clone();
    let containerd_log = std::fs::read_to_string(c.dir.join("containerd.log")).unwrap_or_default();
    let mut ids = BTreeSet::new();
    // Empty cgroups of the containers of a pod whose shim was killed: containerd runs the dead
    // shim's `delete` for the sandbox's task only, as with runc's shim (whose containers'
    // cgroups stay the same way); kubelet removes them with the pod's cgroup. A pause-less pod's
    // `delete` deletes every container runc knows, cgroup included; one whose `runc create` died
    // with the shim, after making its cgroup and before recording the container, is known to
    // nobody, with runc's shim as with podshim's.
    let mut tolerated = BTreeSet::new();
    for p in &pods {
        if p.name == "sentinel" {
            continue;
        }
        match &p.pod {
            Some(_) => rep.pods_started += 1,
            None => rep.pod_start_failures += 1,
        }
        if p.removed {
            rep.pods_removed += 1;
        }
        for pr in &p.problems {
            rep.violations.push(format!("pod {}: {pr}", p.name));
        }
        if !p.problems.is_empty() {
            rep.violations.extend(pod_evidence(&containerd_log, p));
        }
        for c in &p.ctrs {
            let exit_seen = c.id.as_ref().is_some_and(|id| {
                containerd_log.contains(&format!(
                    "received container exit event container_id:\\\"{id}\\\""
                ))
            });
            let Some(class) = class_of(p, c, &handler, exit_seen) else {
                continue;
            };
            let (n, bad) = check_log(c, class, ph.cfg.lines);
            rep.lines_checked += n as u64;
            *rep.classes.entry(class).or_default() += 1;
            let cid = c.id.as_deref().unwrap_or("-");
            rep.containers.push(format!(
                "{handler:<18} {:<9} {:<3} {:<13} {:<16} {n:>4}/{}{}",
                p.name,
                c.name,
                &cid[..cid.len().min(12)],
                class.name(),
                ph.cfg.lines,
                if bad.is_some() { "  VIOLATION" } else { "" }
            ));
            if let Some(b) = bad {
                rep.violations.push(format!(
                    "pod {} container {} ({cid}, {}): {b}; notes: {:?}",
                    p.name,
                    c.name,
                    class.name(),
                    p.notes
                ));
                if let Some(id) = &c.id {
                    rep.violations.extend(log_evidence(&containerd_log, id));
                }
            }
        }
    }
    // What each pod leaves (shims, mounts, holders, bundles, CRI dirs, its shim socket,
    // processes in its cgroup).
    for p in &pods {
        let Some(pod) = &p.pod else { continue };
        ids.insert(pod.id.clone());
        let ctrs: Vec<String> = p.ctrs.iter().filter_map(|c| c.id.clone()).collect();
        ids.extend(ctrs.iter().cloned());
        if p.shim_killed {
            tolerated.extend(ctrs.iter().cloned());
        }
        for l in c.pod_leftovers(pod, &ctrs) {
            rep.leaks.push(format!("pod {} ({}): {l}", p.name, pod.id));
            let named = ctrs
                .iter()
                .chain([&pod.id])
                .find(|id| l.contains(id.as_str()));
            if let Some(id) = named {
                rep.leaks.extend(log_evidence(&containerd_log, id));
            }
        }
    }
    // podshim-sandboxer goes as systemd stops it, its idle pool with it; then nothing of this
    // containerd's may be left (shims exit asynchronously: up to 15 s).
    if let Err(e) = c.stop_sandboxer().await {
        rep.violations.push(format!("{e:#}"));
    }
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut left = c.leftovers();
    while !left.is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(300)).await;
        left = c.leftovers();
    }
    rep.leaks.extend(left);
    rep.leaks.extend(c.sandboxer_leftovers());
    for (ns, id) in &ph.shim_ids {
        let s = c.shim_socket_path(ns, id);
        if s.exists() {
            rep.leaks
                .push(format!("shim socket {} (shim {ns}/{id})", s.display()));
        }
    }
    for (id, l, procs) in id_cgroups(c, &ids) {
        if procs == 0 && tolerated.contains(&id) {
            rep.known.push(l);
        } else {
            rep.leaks.push(l);
        }
    }
    std::mem::take(rep)
}

/// containerd's warnings and errors about a pod's sandbox and containers.
fn pod_evidence(containerd_log: &str, p: &PodRec) -> Vec<String> {
    p.pod
        .iter()
        .map(|pod| pod.id.as_str())
        .chain(p.ctrs.iter().filter_map(|c| c.id.as_deref()))
        .flat_map(|id| log_evidence(containerd_log, id))
        .collect()
}

/// containerd's warnings and errors about `id`, to read beside what it left or did wrong: the
/// first few, each cut to a readable length.
fn log_evidence(containerd_log: &str, id: &str) -> Vec<String> {
    containerd_log
        .lines()
        .filter(|l| l.contains(id) && (l.contains("level=error") || l.contains("level=warning")))
        .take(6)
        .map(|l| format!("  containerd: {}", l.chars().take(400).collect::<String>()))
        .collect()
}

/// Every handler in turn; the reports in order.
pub async fn run(cfg: &Config) -> Vec<Report> {
    let mut rng = Rng::new(cfg.seed);
    let per = cfg.secs as f64 / cfg.handlers.len().max(1) as f64;
    let mut out = Vec::new();
    for h in &cfg.handlers {
        eprintln!("podshim-chaos: {h}: {per:.0} s of chaos");
        let r = run_handler(h, per, cfg, &mut rng).await;
        eprintln!(
            "podshim-chaos: {h}: done in {:.0} s, {} violations, {} leaks",
            r.wall_secs,
            r.violations.len(),
            r.leaks.len()
        );
        out.push(r);
    }
    out
}

/// The summary table (Markdown).
pub fn table(reports: &[Report]) -> String {
    let mut s = String::new();
    s.push_str("| handler | chaos s | wall s | pods started | start failed | removed | kills containerd | kills sandboxer | kills pod shim | kills pool shim | slowest containerd restart s | containers complete / prefix | lines checked | leaks | violations |\n");
    s.push_str("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n");
    let mut tot = Report::default();
    for r in reports {
        s.push_str(&row(r));
        tot.chaos_secs += r.chaos_secs;
        tot.wall_secs += r.wall_secs;
        tot.pods_started += r.pods_started;
        tot.pod_start_failures += r.pod_start_failures;
        tot.pods_removed += r.pods_removed;
        for (t, n) in &r.kills {
            *tot.kills.entry(*t).or_default() += n;
        }
        for (c, n) in &r.classes {
            *tot.classes.entry(*c).or_default() += n;
        }
        tot.lines_checked += r.lines_checked;
        tot.containerd_restarts
            .extend(r.containerd_restarts.iter().copied());
        tot.leaks.extend(r.leaks.iter().cloned());
        tot.violations.extend(r.violations.iter().cloned());
    }
    tot.handler = "**total**".into();
    s.push_str(&row(&tot));
    s
}

/// One line of [`table`].
fn row(r: &Report) -> String {
    let k = |t| r.kills.get(&t).copied().unwrap_or(0);
    let complete = r.classes.get(&Class::Complete).copied().unwrap_or(0);
    let prefix = r.classes.values().sum::<usize>() - complete;
    let slowest = r.containerd_restarts.iter().copied().fold(0.0, f64::max);
    format!(
        "| {} | {:.0} | {:.0} | {} | {} | {} | {} | {} | {} | {} | {slowest:.1} | {complete} / {prefix} | {} | {} | {} |\n",
        r.handler,
        r.chaos_secs,
        r.wall_secs,
        r.pods_started,
        r.pod_start_failures,
        r.pods_removed,
        k(Target::Containerd),
        k(Target::Sandboxer),
        k(Target::PodShim),
        k(Target::PoolShim),
        r.lines_checked,
        r.leaks.len(),
        r.violations.len()
    )
}

/// The daemons' figures (Markdown).
pub fn usage_table(reports: &[Report]) -> String {
    let mut s = String::from(
        "| handler | process | fds after warm-up | fds at end | RSS after warm-up (kB) | RSS at end (kB) |\n| --- | --- | ---: | ---: | ---: | ---: |\n",
    );
    for r in reports {
        for (name, b, e) in &r.usage {
            s.push_str(&format!(
                "| {} | {name} | {} | {} | {} | {} |\n",
                r.handler, b.fds, e.fds, b.rss_kb, e.rss_kb
            ));
        }
    }
    s
}

/// Containers per class and handler (Markdown).
pub fn classes_table(reports: &[Report]) -> String {
    let all = [
        Class::Complete,
        Class::ShimKilled,
        Class::RemovedEarly,
        Class::StartUnanswered,
        Class::ExitLost,
    ];
    let mut s = String::from("| handler |");
    for c in all {
        s.push_str(&format!(" {} |", c.name()));
    }
    s.push_str("\n| --- |");
    s.push_str(&" ---: |".repeat(all.len()));
    s.push('\n');
    for r in reports {
        s.push_str(&format!("| {} |", r.handler));
        for c in all {
            s.push_str(&format!(" {} |", r.classes.get(&c).copied().unwrap_or(0)));
        }
        s.push('\n');
    }
    s
}

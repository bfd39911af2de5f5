//! A private containerd 2.x started for one test: own root, state, sockets, CNI bridge and cgroup
//! parent under a fresh temp directory, our config drop-in imported, our shim on its PATH.
//!
//! `start` runs one direction: binaries (`bins`), a bridge slot (`slot`), the files
//! (`config`), our daemons, containerd, the images. `stop` and Drop undo it (`cleanup`).

mod bins;
mod cleanup;
mod config;
mod log_file;
mod options;
mod sandboxer;
mod slot;
mod snapshots;

use std::fs::{self, File, OpenOptions};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use bins::Bins;
pub use bins::{sandboxer_bin, shim_bin_dir};
use cleanup::force_cleanup;
pub use cleanup::shim_socket_path;
use config::Paths;
pub use log_file::{log_errors, log_tail, podshim_caused_errors};
pub use options::*;
use slot::Slot;

use crate::cri::Cri;
use crate::images;
use crate::registry::Registry;
use crate::release::{containerd_release, Release};
use crate::snapshotter;
use crate::sys;

/// Temp dirs are `/tmp/psit-XXXXXX` (short: unix socket paths are limited to 108 bytes).
const TMP_PREFIX: &str = "psit-";

pub struct Containerd {
    pub opts: Options,
    /// The release of the containerd this run drives (see [`crate::release`]).
    pub release: Release,
    /// The temp dir everything lives in.
    pub dir: PathBuf,
    pub root: PathBuf,
    pub state: PathBuf,
    pub sock: PathBuf,
    pub ttrpc_sock: PathBuf,
    pub config_path: PathBuf,
    pub log_path: PathBuf,
    pub shim_dir: PathBuf,
    pub shim_config_path: PathBuf,
    /// podshim-sandboxer's config file and state dir (handler `podshim-sandboxer`).
    pub sandboxer_config: PathBuf,
    pub sandboxer_state: PathBuf,
    /// The podshim-sandboxer binary each (re)start runs.
    pub sandboxer_bin: PathBuf,
    sandboxer: Option<Child>,
    /// `psit<slot>`
    pub bridge: String,
    /// `10.88.<slot>`
    pub subnet_prefix: String,
    /// Relative cgroup path every pod's cgroup_parent lives under (`/psit-XXXXXX`).
    pub cgroup_root: String,
    /// CRI's streaming server port, leased for the run's life.
    pub stream_port: crate::port::PortLease,
    /// podshim-sandboxer's metrics port (on 127.0.0.1), leased for the run's life.
    pub sandboxer_metrics_port: crate::port::PortLease,
    pub cri: Cri,
    /// podshim-snapshotter, when `opts.snapshotter` is not `Off`.
    pub snapshotter: Option<snapshotter::Daemon>,
    /// The loopback registry, when `opts.registry`.
    pub registry: Option<Registry>,
    /// containerd's registry `config_path` (hosts.toml per registry host).
    pub registry_hosts_dir: PathBuf,
    child: Option<Child>,
    _slot_lock: File,
    _owner_lock: File,
    finished: bool,
    /// Where `stop` copies containerd's log before removing the temp dir.
    save_log_to: Option<PathBuf>,
    pod_seq: std::sync::atomic::AtomicU32,
}

/// A fresh `/tmp/psit-XXXXXX` for one run, and its owner lock, held. The directory gets its
/// name only once the lock is held (made as `.new-psit-XXXXXX`, locked, renamed): a directory
/// named `psit-*` with its lock free is a dead run's, which `reap_stale_runs` removes.
fn new_run_dir() -> Result<(PathBuf, File)> {
    let unnamed = tempfile::Builder::new()
        .prefix(&format!(".new-{TMP_PREFIX}"))
        .tempdir_in("/tmp")?
        .keep();
    let owner_lock = crate::sys::open_lock(&unnamed.join("owner.lock"))?;
    anyhow::ensure!(
        sys::flock_nb(&owner_lock),
        "cannot lock {}",
        unnamed.display()
    );
    let name = unnamed.file_name().unwrap().to_string_lossy();
    let dir = unnamed.with_file_name(name.trim_start_matches(".new-"));
    fs::rename(&unnamed, &dir)
        .with_context(|| format!("renaming {} to {}", unnamed.display(), dir.display()))?;
    Ok((dir, owner_lock))
}

impl Containerd {
    /// Start a private containerd and import the test images into namespaces `k8s.io` and `default`.
    pub async fn start(opts: Options) -> Result<Containerd> {
        cleanup::reap_stale_runs();
        let release = containerd_release()?;
        let archives = tokio::task::spawn_blocking(images::ensure_archives).await??;
        let (dir, owner_lock) = new_run_dir()?;
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();

        let bins = Bins::resolve(&opts, &dir)?;
        let slot = Slot::take(&dir)?;
        let paths = Paths::of(&dir);
        let stream_port = crate::port::lease()?;
        let sandboxer_metrics_port = crate::port::lease()?;
        config::write(
            &dir,
            &opts,
            &paths,
            &slot,
            &bins,
            stream_port.port,
            sandboxer_metrics_port.port,
        )?;
        if opts.shim_cgroup {
            let rel = config::shim_cgroup(&dir);
            sys::make_cgroup(&rel).with_context(|| format!("make cgroup {rel}"))?;
        }

        let snapshotter = match &bins.snapshotter {
            Some(bin) => {
                if opts.snapshotter_btrfs {
                    let (img, at) = (dir.join("podsnap.img"), dir.join("podsnap"));
                    tokio::task::spawn_blocking(move || {
                        sys::mount_btrfs_image(&img, &at, 512 << 20)
                    })
                    .await??;
                }
                Some(
                    snapshotter::Daemon::start_bin(
                        bin.clone(),
                        &dir.join("podsnap"),
                        &dir.join("podsnap.sock"),
                        opts.snapshotter_usage_refresh,
                        opts.snapshotter_debug,
                    )
                    .await?,
                )
            }
            None => None,
        };
        let registry = if opts.registry {
            let rdir = dir.join("registry");
            let r = tokio::task::spawn_blocking(move || Registry::start(&rdir)).await??;
            r.write_hosts_toml(&paths.registry_hosts_dir)?;
            Some(r)
        } else {
            None
        };
        let mut c = Containerd {
            opts,
            release,
            dir,
            root: paths.root,
            state: paths.state,
            sock: paths.sock,
            ttrpc_sock: paths.ttrpc_sock,
            config_path: paths.config,
            log_path: paths.log,
            shim_dir: bins.shim_dir,
            shim_config_path: paths.shim_config,
            sandboxer_config: paths.sandboxer_config,
            sandboxer_state: paths.sandboxer_state,
            sandboxer_bin: bins.sandboxer,
            sandboxer: None,
            bridge: slot.bridge,
            subnet_prefix: slot.subnet_prefix,
            cgroup_root: format!("/{name}"),
            stream_port,
            sandboxer_metrics_port,
            cri: Cri::placeholder(),
            snapshotter,
            registry,
            registry_hosts_dir: paths.registry_hosts_dir,
            child: None,
            _slot_lock: slot.lock,
            _owner_lock: owner_lock,
            finished: false,
            save_log_to: None,
            pod_seq: Default::default(),
        };
        c.spawn().await?;
        c.import_images(&archives).await?;
        Ok(c)
    }

    /// The test images this run's pods need, into namespaces `k8s.io` and `default`, and
    /// listed by CRI.
    async fn import_images(&self, archives: &images::ImageArchives) -> Result<()> {
        let needs_pause = self.opts.pause_image.unwrap_or(self.needs_pause_image());
        let wanted: Vec<PathBuf> = if needs_pause {
            vec![archives.pause.clone(), archives.busybox.clone()]
        } else {
            vec![archives.busybox.clone()]
        };
        for ns in ["k8s.io", "default"] {
            for a in &wanted {
                let (sock, ns, a) = (self.sock.clone(), ns.to_string(), a.clone());
                tokio::task::spawn_blocking(move || images::ctr_import(&sock, &ns, &a)).await??;
            }
        }
        self.wait_cri_image(images::BUSYBOX_IMAGE).await?;
        if needs_pause {
            self.wait_cri_image(images::PAUSE_IMAGE).await?;
        }
        Ok(())
    }

    /// Whether this run's pods need the pause image in containerd's store. Classic pods run it.
    /// A pause-less run must work without it on containerd < 2.3: it is not even imported. From
    /// 2.3 on, CRI pulls the sandbox image at every RunPodSandbox, whatever the sandboxer
    /// (containerd#12849; 2.4 adds `disable_pause_image_pull`), and this containerd reaches no
    /// registry: a pause-less node on 2.3 needs the image present, though nothing runs it.
    pub fn needs_pause_image(&self) -> bool {
        !is_pauseless(&self.opts.handler) || self.release.at_least(2, 3)
    }

    async fn wait_cri_image(&self, image: &str) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if self.cri.image_present(image).await? {
                return Ok(());
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "CRI does not list imported image {image}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn path_env(&self) -> String {
        format!(
            "{}:{}",
            self.shim_dir.display(),
            std::env::var("PATH").unwrap_or_else(|_| {
                "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into()
            })
        )
    }

    /// Spawn the containerd process and wait until CRI answers `Version`.
    async fn spawn(&mut self) -> Result<()> {
        if self.opts.runs_sandboxer() && self.sandboxer.is_none() {
            self.spawn_sandboxer().await?;
        }
        let mut cmd = Command::new("containerd");
        cmd.arg("--config").arg(&self.config_path);
        let child = self.spawn_daemon(cmd, &self.log_path)?;
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(st) = self.child.as_mut().unwrap().try_wait()? {
                bail!(
                    "containerd exited early ({st}); log tail:\n{}",
                    self.log_tail(40)
                );
            }
            if self.sock.exists() {
                if let Ok(Ok(cri)) =
                    tokio::time::timeout(Duration::from_secs(3), Cri::connect(&self.sock)).await
                {
                    if let Ok(Ok(_)) =
                        tokio::time::timeout(Duration::from_secs(3), cri.version()).await
                    {
                        self.cri = cri;
                        return Ok(());
                    }
                }
            }
            if Instant::now() > deadline {
                bail!(
                    "containerd CRI not ready after 30s; log tail:\n{}",
                    self.log_tail(40)
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Starts one of the run's daemons as a unit would: in its own process group, stdout and
    /// stderr appended to `log`, the shim dir first on its PATH and the shim's config named.
    fn spawn_daemon(&self, mut cmd: Command, log: &Path) -> Result<Child> {
        let log = OpenOptions::new().create(true).append(true).open(log)?;
        cmd.env("PATH", self.path_env())
            .env("PODSHIM_CONFIG", &self.shim_config_path)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .process_group(0)
            .spawn()
            .with_context(|| format!("spawning {:?}", cmd.get_program()))
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// SIGTERM containerd and wait for it to exit (shims and containers keep running).
    pub async fn kill_containerd(&mut self) -> Result<()> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        if child.try_wait()?.is_none() {
            sys::kill(child.id() as i32, libc::SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(15);
            while child.try_wait()?.is_none() {
                if Instant::now() > deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    bail!("containerd did not exit within 15s of SIGTERM (killed)");
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        Ok(())
    }

    /// Stop containerd, keep its state, wait `downtime`, start it again. Pods and shims keep running.
    pub async fn restart(&mut self, downtime: Duration) -> Result<()> {
        self.kill_containerd().await?;
        tokio::time::sleep(downtime).await;
        self.respawn().await
    }

    /// Start containerd again after `kill_containerd` with the same config and state.
    pub async fn respawn(&mut self) -> Result<()> {
        anyhow::ensure!(self.child.is_none(), "containerd is still running");
        self.spawn().await
    }

    /// The shim binary name for this run's handler.
    pub fn shim_exe_name(&self) -> &'static str {
        if is_podshim(&self.opts.handler) {
            "containerd-shim-podshim-v1"
        } else {
            "containerd-shim-runc-v2"
        }
    }

    /// Shim processes of this containerd whose binary belongs to this run's handler.
    pub fn shims(&self) -> Vec<sys::Proc> {
        let want = self.shim_exe_name();
        sys::shim_processes(&self.sock)
            .into_iter()
            .filter(|p| p.exe_name() == want)
            .collect()
    }

    /// All shim processes of this containerd, any binary.
    /// Where `Options::shim_cgroup` puts podshim's shims.
    pub fn shim_cgroup(&self) -> String {
        config::shim_cgroup(&self.dir)
    }

    /// The run's one CNI network list (what CRI loads from its conf_dir).
    pub fn cni_conflist(&self) -> PathBuf {
        config::cni_conflist(&self.dir)
    }

    pub fn all_shims(&self) -> Vec<sys::Proc> {
        sys::shim_processes(&self.sock)
    }

    /// Wait until the set of shims is stable (shims fork a daemon during `start`).
    pub async fn settled_shims(&self) -> Vec<sys::Proc> {
        let mut last: Vec<i32> = Vec::new();
        for _ in 0..30 {
            let now: Vec<i32> = self.all_shims().iter().map(|p| p.pid).collect();
            if now == last {
                break;
            }
            last = now;
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        self.all_shims()
    }

    /// The last `n` lines of containerd's log.
    pub fn log_tail(&self, n: usize) -> String {
        log_tail(&self.log_path, n)
    }

    /// The last `max` error lines of containerd's log.
    pub fn log_errors(&self, max: usize) -> String {
        log_errors(&self.log_path, max)
    }

    /// Next unique number for names within this run.
    pub fn seq(&self) -> u32 {
        self.pod_seq
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    }

    /// Remove every pod via CRI, check nothing is left, stop containerd, clean up and remove
    /// the temp dir. Returns an error listing leftovers (which are cleaned up regardless).
    pub async fn stop(&mut self) -> Result<()> {
        if self.finished {
            return Ok(());
        }
        let mut problems: Vec<String> = Vec::new();
        if self.child.is_none() {
            // The case stopped containerd (restart test) and failed before starting it again:
            // start it so that pods are removed through CRI rather than by force.
            if let Err(e) = self.respawn().await {
                problems.push(format!("restarting containerd for teardown: {e:#}"));
            }
        }
        let alive = self
            .child
            .as_mut()
            .map(|c| matches!(c.try_wait(), Ok(None)))
            .unwrap_or(false);
        if alive {
            match self.cri.list_pods().await {
                Ok(pods) => {
                    for p in pods {
                        // containerd 2.1 can race with a container that is exiting right now
                        // ("ttrpc: closed"): retry a few times, report only a lasting failure.
                        let mut last = None;
                        for _ in 0..3 {
                            let r = match self.cri.stop_pod(&p).await {
                                Ok(()) => self.cri.remove_pod(&p).await,
                                Err(e) => Err(e),
                            };
                            match r {
                                Ok(()) => {
                                    last = None;
                                    break;
                                }
                                Err(e) => last = Some(e),
                            }
                            tokio::time::sleep(Duration::from_millis(500)).await;
                        }
                        if let Some(e) = last {
                            problems.push(format!("Stop/RemovePodSandbox {p}: {e:#}"));
                        }
                    }
                }
                Err(e) => problems.push(format!("ListPodSandbox: {e:#}")),
            }
            // Its warm pool goes with it; then nothing of it may be left.
            if let Err(e) = self.stop_sandboxer().await {
                problems.push(format!("{e:#}"));
            }
            // Shims exit asynchronously after their last task is deleted.
            let deadline = Instant::now() + Duration::from_secs(10);
            let mut left = self.leftovers();
            while !left.is_empty() && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(200)).await;
                left = self.leftovers();
            }
            left.extend(self.sandboxer_leftovers());
            problems.extend(
                left.into_iter()
                    .map(|l| format!("left after removing all pods: {l}")),
            );
        }
        if let Err(e) = self.kill_containerd().await {
            problems.push(format!("{e:#}"));
        }
        problems.extend(
            podshim_caused_errors(&self.log_path)
                .into_iter()
                .map(|l| format!("containerd logged an error podshim causes: {l}")),
        );
        // Our own daemons: stopped, not leftovers.
        if let Some(r) = self.registry.as_mut() {
            r.stop();
        }
        if let Some(d) = self.snapshotter.as_mut() {
            if let Err(e) = d.stop() {
                problems.push(format!("{e:#}"));
            }
        }
        if self.opts.snapshotter_btrfs {
            sys::umount_all_under(&self.podsnap_btrfs());
        }
        if let Err(e) = self.stop_sandboxer().await {
            problems.push(format!("{e:#}"));
        }
        self.finished = true;
        if let Some(p) = &self.save_log_to {
            let _ = fs::copy(&self.log_path, p);
        }
        let found = force_cleanup(&self.dir, &self.sock, None, &self.bridge, &self.cgroup_root);
        if alive {
            problems.extend(
                found
                    .into_iter()
                    .map(|f| format!("force-cleaned after containerd stopped: {f}")),
            );
        }
        if problems.is_empty() {
            Ok(())
        } else {
            bail!("teardown found problems:\n  {}", problems.join("\n  "))
        }
    }

    /// Stop and clean up; panic with the case error, leftovers and containerd's log tail on failure.
    pub async fn finish(mut self, case: Result<()>) {
        // The log is copied out just before the temp dir goes, so it includes the teardown.
        let log_copy = self.log_copy_path();
        self.save_log_to = Some(log_copy.clone());
        // Taken before the teardown, which kills what a hang left running.
        let processes = match case.is_err() {
            true => self.process_table(),
            false => Vec::new(),
        };
        let stop = self.stop().await;
        if case.is_ok() && stop.is_ok() {
            let _ = fs::remove_file(&log_copy);
            return;
        }
        let log_tail = log_tail(&log_copy, 80);
        let log_errors = log_errors(&log_copy, 40);
        let mut msg = String::new();
        if let Err(e) = &case {
            msg.push_str(&format!("test case failed: {e:#}\n"));
        }
        if let Err(e) = &stop {
            msg.push_str(&format!("{e:#}\n"));
        }
        if !msg.is_empty() {
            // Printed (captured and shown by the test runner) rather than panicked with, so the
            // report is not buried under a backtrace of this helper.
            eprintln!(
                "{msg}\n--- processes when the case failed (pid, parent, state, wait channel, age, command) ---\n{}\n--- containerd error lines ---\n{log_errors}\n--- containerd log tail ---\n{log_tail}\n--- full log: {} ---",
                processes.join("\n"),
                log_copy.display()
            );
            std::panic::resume_unwind(Box::new(msg));
        }
    }

    fn log_copy_path(&self) -> PathBuf {
        let d = images::cache_dir().with_file_name("podshim-e2e-logs");
        let _ = fs::create_dir_all(&d);
        let name = format!(
            "{}-{}.log",
            case_name(),
            self.dir.file_name().unwrap().to_string_lossy()
        );
        d.join(name)
    }

    /// Have `stop` copy containerd's log, teardown included, to `path` before the temp dir goes.
    pub fn keep_log_at(&mut self, path: PathBuf) {
        self.save_log_to = Some(path);
    }

    /// Copy containerd's log next to the image cache (kept after the temp dir is gone).
    pub fn save_log(&self) -> PathBuf {
        let p = self.log_copy_path();
        let _ = fs::copy(&self.log_path, &p);
        p
    }

    /// The bundle directory containerd creates for a task.
    pub fn bundle_dir(&self, ns: &str, id: &str) -> PathBuf {
        self.state
            .join("io.containerd.runtime.v2.task")
            .join(ns)
            .join(id)
    }

    /// The bundle of a pod's sandbox: the pause container's task bundle in classic mode, the
    /// built-in `shim` sandbox controller's bundle for pause-less pods.
    pub fn sandbox_bundle_dir(&self, ns: &str, pod_id: &str) -> PathBuf {
        if self.opts.runs_sandboxer() {
            self.sandboxer_state.join("bundles").join(ns).join(pod_id)
        } else if is_pauseless(&self.opts.handler) {
            self.state
                .join("io.containerd.sandbox.controller.v1.shim")
                .join(ns)
                .join(pod_id)
        } else {
            self.bundle_dir(ns, pod_id)
        }
    }

    /// Where [`Options::snapshotter_btrfs`] mounts podshim-snapshotter's root.
    fn podsnap_btrfs(&self) -> PathBuf {
        self.dir.join("podsnap")
    }

    /// The socket path containerd's shim helpers derive for (ns, id).
    pub fn shim_socket_path(&self, ns: &str, id: &str) -> PathBuf {
        shim_socket_path(&self.sock, ns, id)
    }
}

/// The running test's name as a file name (`case::handler` → `case-handler`): test threads are
/// named after their test; anything else is `run`.
pub fn case_name() -> String {
    std::thread::current()
        .name()
        .unwrap_or("run")
        .replace("::", "-")
}

impl Drop for Containerd {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        if std::thread::panicking() {
            let p = self.save_log();
            eprintln!(
                "--- containerd log tail ({}) ---\n{}\n--- full log: {} ---",
                self.dir.display(),
                self.log_tail(60),
                p.display()
            );
        }
        self.finished = true;
        if let Some(r) = self.registry.as_mut() {
            r.stop();
        }
        if let Some(d) = self.snapshotter.as_mut() {
            let _ = d.stop();
        }
        let found = force_cleanup(
            &self.dir,
            &self.sock,
            self.child.as_mut(),
            &self.bridge,
            &self.cgroup_root,
        );
        if !found.is_empty() {
            eprintln!("podshim-e2e: Drop cleaned up: {found:#?}");
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    use super::*;

    /// Runs start in parallel (the e2e suite, the release matrix), each reaping dead runs'
    /// directories first: a directory just made must never look like a dead run's.
    #[test]
    fn a_new_run_dir_is_never_taken_for_a_dead_runs() {
        let stop = Arc::new(AtomicBool::new(false));
        let reaper = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    cleanup::reap_stale_runs();
                }
            })
        };
        let mut failures = Vec::new();
        for _ in 0..300 {
            match new_run_dir() {
                Ok((dir, lock)) => {
                    if !dir.join("owner.lock").exists() {
                        failures.push(format!("{} reaped while its run held it", dir.display()));
                    }
                    drop(lock);
                    let _ = fs::remove_dir_all(&dir);
                }
                Err(e) => failures.push(format!("{e:#}")),
            }
        }
        stop.store(true, Ordering::Relaxed);
        reaper.join().unwrap();
        assert!(
            failures.is_empty(),
            "{} of 300: {failures:?}",
            failures.len()
        );
    }
}

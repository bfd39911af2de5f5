//! Host inspection and forced clean-up: processes, mounts, cgroups, network links.
//!
//! Everything here reads /proc and /sys directly so that a leak check does not depend on the
//! component under test.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

/// One process as seen in /proc.
#[derive(Debug, Clone)]
pub struct Proc {
    pub pid: i32,
    /// Target of /proc/<pid>/exe (None for kernel threads or vanished processes).
    pub exe: Option<PathBuf>,
    pub cmdline: Vec<String>,
}

impl Proc {
    pub fn exe_name(&self) -> String {
        self.exe
            .as_ref()
            .and_then(|p| p.file_name())
            .map(|n| {
                n.to_string_lossy()
                    .trim_end_matches(" (deleted)")
                    .to_string()
            })
            .unwrap_or_default()
    }

    pub fn cmdline_str(&self) -> String {
        self.cmdline.join(" ")
    }

    /// The value following `flag` on the command line (e.g. `-id`).
    pub fn arg_after(&self, flag: &str) -> Option<&str> {
        let i = self.cmdline.iter().position(|a| a == flag)?;
        self.cmdline.get(i + 1).map(|s| s.as_str())
    }
}

/// All processes currently visible (races with exits are ignored).
pub fn processes() -> Vec<Proc> {
    let mut out = Vec::new();
    let Ok(rd) = fs::read_dir("/proc") else {
        return out;
    };
    for e in rd.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        let Ok(raw) = fs::read(format!("/proc/{pid}/cmdline")) else {
            continue;
        };
        if raw.is_empty() {
            continue; // kernel thread or zombie
        }
        let cmdline = raw
            .split(|b| *b == 0)
            .filter(|s| !s.is_empty())
            .map(|s| String::from_utf8_lossy(s).into_owned())
            .collect();
        let exe = fs::read_link(format!("/proc/{pid}/exe")).ok();
        out.push(Proc { pid, exe, cmdline });
    }
    out
}

/// Processes whose command line contains any of `needles`, excluding ourselves.
pub fn processes_mentioning(needles: &[&str]) -> Vec<Proc> {
    let me = std::process::id() as i32;
    processes()
        .into_iter()
        .filter(|p| p.pid != me)
        .filter(|p| {
            let c = p.cmdline_str();
            needles.iter().any(|n| c.contains(n))
        })
        .collect()
}

/// Shim processes (exe name starts with `containerd-shim`) serving the containerd at `sock`.
pub fn shim_processes(sock: &Path) -> Vec<Proc> {
    let sock = sock.to_string_lossy().to_string();
    processes()
        .into_iter()
        .filter(|p| p.exe_name().starts_with("containerd-shim"))
        .filter(|p| p.arg_after("-address") == Some(sock.as_str()))
        .collect()
}

/// podshim's namespace holders of a pause-less pod (`podshim-holder -podshim-sandbox-holder <id>`).
pub fn sandbox_holders(pod_id: &str) -> Vec<i32> {
    processes()
        .into_iter()
        .filter(|p| {
            p.cmdline.get(1).map(String::as_str) == Some(podshim_holder::args::MARKER)
                && p.cmdline.get(2).map(String::as_str) == Some(pod_id)
        })
        .map(|p| p.pid)
        .collect()
}

pub fn kill(pid: i32, sig: i32) {
    // SAFETY: plain syscall with integer arguments.
    unsafe {
        libc::kill(pid, sig);
    }
}

/// Pins every thread of `pid` to `cpu`.
pub fn pin_to_cpu(pid: i32, cpu: usize) -> Result<()> {
    let tasks = fs::read_dir(format!("/proc/{pid}/task")).context("threads")?;
    for t in tasks.flatten() {
        let Some(tid) = t.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        // SAFETY: a zeroed cpu_set_t with one CPU set, read by the kernel.
        let r = unsafe {
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            libc::CPU_SET(cpu, &mut set);
            libc::sched_setaffinity(tid, std::mem::size_of::<libc::cpu_set_t>(), &set)
        };
        anyhow::ensure!(
            r == 0,
            "pin {tid} to CPU {cpu}: {}",
            std::io::Error::last_os_error()
        );
    }
    Ok(())
}

/// The online CPUs, from `/sys/devices/system/cpu/online` ("0-3,6").
pub fn online_cpus() -> Vec<usize> {
    let list = fs::read_to_string("/sys/devices/system/cpu/online").unwrap_or_default();
    list.trim()
        .split(',')
        .filter_map(|r| match r.split_once('-') {
            Some((a, b)) => Some((a.parse().ok()?..=b.parse().ok()?).collect::<Vec<usize>>()),
            None => Some(vec![r.parse().ok()?]),
        })
        .flatten()
        .collect()
}

pub fn pid_alive(pid: i32) -> bool {
    // A zombie still answers kill(0); look at the state too.
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => {
            let state = s
                .rsplit(')')
                .next()
                .and_then(|r| r.split_whitespace().next());
            !matches!(state, Some("Z") | Some("X"))
        }
        Err(_) => false,
    }
}

/// Fields of /proc/<pid>/stat after the command name (index 0 is the state), or None if the
/// process is gone.
fn stat_fields(pid: i32) -> Option<Vec<String>> {
    let s = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = s.rsplit_once(')')?.1;
    Some(rest.split_whitespace().map(str::to_owned).collect())
}

/// The parent pid of a process.
pub fn ppid(pid: i32) -> Option<i32> {
    stat_fields(pid)?.get(1)?.parse().ok()
}

/// Every process's parent, by pid (races with exits are ignored).
pub fn parents() -> Vec<(i32, i32)> {
    let Ok(rd) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    rd.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(|pid| Some((pid, ppid(pid)?)))
        .collect()
}

/// One line on a process for a failure report: pid, parent, state, where the kernel has it
/// waiting, how long it has run, and its command line (or `[name]` for a zombie).
pub fn describe(pid: i32) -> Option<String> {
    let f = stat_fields(pid)?;
    let (state, ppid) = (f.first()?, f.get(1)?);
    let wchan = fs::read_to_string(format!("/proc/{pid}/wchan")).unwrap_or_default();
    let wchan = if wchan.is_empty() || wchan == "0" {
        "-"
    } else {
        wchan.as_str()
    };
    // SAFETY: sysconf takes an integer.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    let started = f.get(19).and_then(|t| t.parse::<f64>().ok()).unwrap_or(0.0) / hz;
    let uptime = fs::read_to_string("/proc/uptime")
        .ok()
        .and_then(|u| u.split_whitespace().next()?.parse::<f64>().ok())
        .unwrap_or(started);
    let cmd = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let mut cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
    if cmd.trim().is_empty() {
        let name = fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        cmd = format!("[{}]", name.trim_end());
    }
    cmd.truncate(160);
    Some(format!(
        "{pid} ppid {ppid} {state} {wchan} {:.1}s {}",
        uptime - started,
        cmd.trim_end()
    ))
}

/// When a process started, in clock ticks since boot.
pub fn start_time(pid: i32) -> Option<u64> {
    stat_fields(pid)?.get(19)?.parse().ok()
}

/// Mount points at or below `dir`, deepest first (from /proc/self/mountinfo).
pub fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    let Ok(info) = fs::read_to_string("/proc/self/mountinfo") else {
        return Vec::new();
    };
    let mut v: Vec<PathBuf> = info
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|m| PathBuf::from(unescape_mountinfo(m)))
        .filter(|m| m.starts_with(dir))
        .collect();
    v.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    v.dedup();
    v
}

/// The backing files of loop devices that lie below `dir`.
pub fn loops_under(dir: &Path) -> Vec<String> {
    let Ok(rd) = fs::read_dir("/sys/block") else {
        return Vec::new();
    };
    rd.flatten()
        .filter_map(|e| fs::read_to_string(e.path().join("loop/backing_file")).ok())
        .map(|f| f.trim().to_string())
        .filter(|f| Path::new(f).starts_with(dir))
        .collect()
}

fn unescape_mountinfo(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() {
            if let Ok(v) = u8::from_str_radix(&s[i + 1..i + 4], 8) {
                out.push(v);
                i += 4;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A btrfs of `size` bytes in the sparse image file `img`, loop-mounted on `at`. It
/// goes like every mount of a run ([`umount_all_under`]); the loop device goes with its mount.
pub fn mount_btrfs_image(img: &Path, at: &Path, size: u64) -> Result<()> {
    use std::ffi::OsStr;
    fs::File::create(img)?.set_len(size)?;
    fs::create_dir_all(at)?;
    let run = |cmd: &str, args: &[&OsStr]| -> Result<()> {
        let o = std::process::Command::new(cmd)
            .args(args)
            .output()
            .with_context(|| format!("running {cmd} (btrfs-progs: scripts/install-deps.sh)"))?;
        anyhow::ensure!(
            o.status.success(),
            "{cmd} {args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        Ok(())
    };
    run("mkfs.btrfs", &["-q".as_ref(), img.as_os_str()])?;
    run(
        "mount",
        &[
            "-o".as_ref(),
            "loop".as_ref(),
            img.as_os_str(),
            at.as_os_str(),
        ],
    )
}

/// Lazily unmount everything at or below `dir`, deepest first. Returns what was mounted.
pub fn umount_all_under(dir: &Path) -> Vec<PathBuf> {
    let mut all = BTreeSet::new();
    for _ in 0..5 {
        let m = mounts_under(dir);
        if m.is_empty() {
            break;
        }
        for p in m {
            let _ = nix::mount::umount2(&p, nix::mount::MntFlags::MNT_DETACH);
            all.insert(p);
        }
    }
    all.into_iter().collect()
}

/// cgroup v1 hierarchies and the v2 unified mount, if present.
pub fn cgroup_roots() -> Vec<PathBuf> {
    let mut v = Vec::new();
    if let Ok(rd) = fs::read_dir("/sys/fs/cgroup") {
        for e in rd.flatten() {
            let p = e.path();
            if p.join("cgroup.procs").exists() {
                v.push(p);
            }
        }
    }
    if Path::new("/sys/fs/cgroup/cgroup.procs").exists() {
        v.push(PathBuf::from("/sys/fs/cgroup"));
    }
    v
}

/// All cgroup directories (in every hierarchy) at or below the relative path `rel`, deepest first.
fn cgroup_dirs(rel: &str) -> Vec<PathBuf> {
    let rel = rel.trim_start_matches('/');
    let mut out = Vec::new();
    for root in cgroup_roots() {
        let top = root.join(rel);
        if top.is_dir() {
            walk_dirs(&top, &mut out);
        }
    }
    out.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    out
}

fn walk_dirs(d: &Path, out: &mut Vec<PathBuf>) {
    out.push(d.to_path_buf());
    if let Ok(rd) = fs::read_dir(d) {
        for e in rd.flatten() {
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                walk_dirs(&e.path(), out);
            }
        }
    }
}

/// Pids in any cgroup at or below `rel`.
pub fn cgroup_pids(rel: &str) -> BTreeSet<i32> {
    let mut pids = BTreeSet::new();
    for d in cgroup_dirs(rel) {
        if let Ok(s) = fs::read_to_string(d.join("cgroup.procs")) {
            pids.extend(s.lines().filter_map(|l| l.trim().parse::<i32>().ok()));
        }
    }
    pids
}

/// SIGKILL everything in the cgroup tree `rel`, then remove the cgroup directories.
/// Returns the pids that were still there.
pub fn kill_and_remove_cgroup(rel: &str) -> BTreeSet<i32> {
    let found = cgroup_pids(rel);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let pids = cgroup_pids(rel);
        if pids.is_empty() || Instant::now() > deadline {
            break;
        }
        for p in pids {
            kill(p, libc::SIGKILL);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    for d in cgroup_dirs(rel) {
        let _ = fs::remove_dir(&d);
    }
    found
}

/// The trimmed content of `file` in the cgroup `rel`, from the first hierarchy that has it
/// (`memory.limit_in_bytes` is in v1's memory hierarchy, `memory.max` in the unified one).
pub fn cgroup_file(rel: &str, file: &str) -> Option<String> {
    let rel = rel.trim_start_matches('/');
    cgroup_roots()
        .into_iter()
        .find_map(|root| fs::read_to_string(root.join(rel).join(file)).ok())
        .map(|s| s.trim().to_string())
}

/// Makes the cgroup `rel` in every hierarchy, as an operator makes one for a process to join:
/// a v1 cpuset gets its parent's cpus and mems (a new one has none and takes no process).
pub fn make_cgroup(rel: &str) -> Result<()> {
    for root in cgroup_roots() {
        let mut dir = root.clone();
        for part in rel.trim_start_matches('/').split('/') {
            let parent = dir.clone();
            dir.push(part);
            if !dir.is_dir() {
                fs::create_dir(&dir)?;
            }
            for file in ["cpuset.cpus", "cpuset.mems"] {
                if let Ok(v) = fs::read_to_string(parent.join(file)) {
                    if fs::read_to_string(dir.join(file)).is_ok_and(|own| own.trim().is_empty()) {
                        fs::write(dir.join(file), v.trim())?;
                    }
                }
            }
        }
    }
    Ok(())
}

/// The core-scheduling cookie of process `pid` (0: none; `pid` 0: this process), or the
/// kernel's refusal where it has no core scheduling (or no SMT).
pub fn sched_core_cookie(pid: i32) -> std::io::Result<u64> {
    const PR_SCHED_CORE: libc::c_int = 62;
    const PR_SCHED_CORE_GET: libc::c_ulong = 0;
    const PIDTYPE_PID: libc::c_ulong = 0;
    let mut cookie: u64 = 0;
    // SAFETY: PR_SCHED_CORE_GET writes one u64 through the pointer, which points at `cookie`.
    let rc = unsafe {
        libc::prctl(
            PR_SCHED_CORE,
            PR_SCHED_CORE_GET,
            pid as libc::c_ulong,
            PIDTYPE_PID,
            &mut cookie as *mut u64,
        )
    };
    if rc < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(cookie)
}

pub fn cgroup_exists(rel: &str) -> bool {
    !cgroup_dirs(rel).is_empty()
}

pub fn link_exists(name: &str) -> bool {
    Path::new("/sys/class/net").join(name).exists()
}

/// Interfaces enslaved to bridge `name`.
pub fn bridge_ports(name: &str) -> Vec<String> {
    fs::read_dir(Path::new("/sys/class/net").join(name).join("brif"))
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

pub fn link_delete(name: &str) -> Result<()> {
    if !link_exists(name) {
        return Ok(());
    }
    let out = std::process::Command::new("ip")
        .args(["link", "del", name])
        .output()
        .context("running ip link del")?;
    anyhow::ensure!(
        out.status.success() || !link_exists(name),
        "ip link del {name}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

/// Whether any route covers `prefix` (e.g. "10.88.7.0/24") in the main table.
pub fn route_exists(prefix: &str) -> bool {
    std::process::Command::new("ip")
        .args(["-4", "route", "show", "exact", prefix])
        .output()
        .map(|o| !o.stdout.is_empty())
        .unwrap_or(false)
}

/// A file's identity on this machine: (device, inode). Two files with the same bytes differ
/// here, so it tells which copy of a binary a process runs.
pub type FileId = (u64, u64);

/// The identity of the file at `path` (symlinks followed).
pub fn file_id(path: &Path) -> Option<FileId> {
    use std::os::unix::fs::MetadataExt;
    fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
}

/// The identity of the binary process `pid` runs: `/proc/<pid>/exe` followed, which reaches the
/// file the process was started from even after it was replaced or removed on disk (its link
/// then reads `<path> (deleted)`).
pub fn exe_id(pid: i32) -> Option<FileId> {
    file_id(Path::new(&format!("/proc/{pid}/exe")))
}

/// Whether the binary process `pid` runs is no longer at its path (replaced or removed).
pub fn exe_deleted(pid: i32) -> Option<bool> {
    let link = fs::read_link(format!("/proc/{pid}/exe")).ok()?;
    Some(link.to_string_lossy().ends_with(" (deleted)"))
}

/// A `Key:   value kB` field of /proc/<pid>/status, in kB.
pub fn status_kb(pid: i32, key: &str) -> Option<u64> {
    let s = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    kb_field(&s, key)
}

/// A `Key: value kB` field of /proc/<pid>/smaps_rollup, in kB.
pub fn smaps_rollup_kb(pid: i32, key: &str) -> Option<u64> {
    let s = fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).ok()?;
    kb_field(&s, key)
}

/// utime + stime of a process (from /proc/<pid>/stat), in milliseconds; 0 if it is gone.
pub fn cpu_ms(pid: i32) -> f64 {
    let s = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let ticks: u64 = s
        .rsplit(')')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|v| v.parse::<u64>().ok())
        .sum();
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    ticks as f64 * 1000.0 / hz
}

fn kb_field(s: &str, key: &str) -> Option<u64> {
    s.lines()
        .find(|l| l.split(':').next() == Some(key))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
}

/// Remove a directory tree, refusing to cross into anything still mounted below it.
pub fn remove_tree(dir: &Path) -> Result<()> {
    if !dir.exists() {
        return Ok(());
    }
    let m = mounts_under(dir);
    anyhow::ensure!(
        m.is_empty(),
        "refusing to remove {}: still mounted: {m:?}",
        dir.display()
    );
    fs::remove_dir_all(dir).with_context(|| format!("removing {}", dir.display()))
}

/// Files and directories at or below `dir` whose name contains `needle` (bounded walk).
pub fn find_named(dir: &Path, needle: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    let mut budget = 200_000usize;
    while let Some(d) = stack.pop() {
        let Ok(rd) = fs::read_dir(&d) else { continue };
        for e in rd.flatten() {
            budget = budget.saturating_sub(1);
            if budget == 0 {
                return out;
            }
            let p = e.path();
            if e.file_name().to_string_lossy().contains(needle) {
                out.push(p.clone());
            }
            // Do not descend into container root filesystems or symlinks.
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) && !is_mountpoint(&p) {
                stack.push(p);
            }
        }
    }
    out
}

/// Up to `max` paths below `dir`, relative to it (a directory ends in `/`, a mount point is
/// marked and not entered): what a leftover holds, for a report.
pub fn list_tree(dir: &Path, max: usize) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = fs::read_dir(&d) else { continue };
        for e in rd.flatten() {
            if out.len() == max {
                out.push("…".to_string());
                return out;
            }
            let p = e.path();
            let rel = p.strip_prefix(dir).unwrap_or(&p).display().to_string();
            let is_dir = e.file_type().map(|t| t.is_dir()).unwrap_or(false);
            if is_dir && is_mountpoint(&p) {
                out.push(format!("{rel}/ (mounted)"));
            } else if is_dir {
                out.push(format!("{rel}/"));
                stack.push(p);
            } else {
                out.push(rel);
            }
        }
    }
    out
}

fn is_mountpoint(p: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (fs::metadata(p), p.parent().map(fs::metadata)) {
        (Ok(a), Some(Ok(b))) => a.dev() != b.dev(),
        _ => false,
    }
}

/// Where the harness's lock files live: run slots and ports, shared by parallel runs.
pub const LOCK_DIR: &str = "/run/podshim-e2e";

/// The first of `count` numbered leases, tried from a per-process starting point, whose lock
/// file `LOCK_DIR/<name(n)>` nobody else holds and that `usable(n)` accepts; with its lock held.
pub fn lease_number(
    count: usize,
    name: impl Fn(usize) -> String,
    mut usable: impl FnMut(usize) -> bool,
) -> Result<Option<(usize, fs::File)>> {
    fs::create_dir_all(LOCK_DIR)?;
    let start = (std::process::id() as usize).wrapping_mul(7) % count;
    for i in 0..count {
        let n = (start + i) % count;
        let lock = open_lock(&Path::new(LOCK_DIR).join(name(n)))?;
        if flock_nb(&lock) && usable(n) {
            return Ok(Some((n, lock)));
        }
    }
    Ok(None)
}

pub fn open_lock(path: &Path) -> Result<fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .mode(0o644)
        .open(path)
        .with_context(|| format!("opening lock file {}", path.display()))
}

/// An exclusive lock on `f` if nobody holds one, without waiting.
pub fn flock_nb(f: &fs::File) -> bool {
    use std::os::fd::AsRawFd;
    // SAFETY: flock on a valid fd.
    unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) == 0 }
}

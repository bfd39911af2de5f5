//! Disk usage accounting.
//!
//! * `disk_usage` walks a tree once with containerd's `fs.DiskUsage` semantics: every distinct
//!   inode (hard links counted once) is one inode and `st_blocks * 512` bytes, the root included.
//!   Commit calls it once and stores the result, so committed usage is a metadata read.
//! * Active snapshots go through [`UsageTracker`]. This host's kernel has no `CONFIG_QUOTA`, so the
//!   project-quota path cannot be used here; the tracker is the bounded, cached fallback:
//!   `Usage` answers from a per-snapshot cache in O(1) and, if the entry is older than the
//!   refresh interval, queues one background walk on a single worker thread (deduplicated per
//!   snapshot). Cost: at most one walk of each active upper directory per refresh interval,
//!   serialized on one thread in the SCHED_IDLE class, instead of one walk per snapshot per
//!   containerd poll (every 10 s).
//!   Staleness: at most refresh interval + one walk. The first query after a (re)start walks
//!   synchronously; an interval of zero walks on every query (the built-in behaviour).

use std::collections::{HashMap, HashSet};
use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::store::Usage;

/// Walks `root` once. Entries that vanish during the walk are skipped.
pub fn disk_usage(root: &Path) -> Result<Usage> {
    walk(root, &mut |_| {})
}

/// `disk_usage`, calling `listed` after each directory's entries were read (the moment a
/// container can swap a directory it has not reached yet).
///
/// Invariant: the walk never leaves `root`. Each directory is opened relative to its parent's
/// open descriptor with O_NOFOLLOW, and each entry is stat'ed relative to its directory without
/// following it, so a directory the container replaces with a symlink mid-walk is skipped
/// (ELOOP or ENOTDIR) like one that vanished, never resolved against the host.
fn walk(root: &Path, listed: &mut dyn FnMut(&Path)) -> Result<Usage> {
    use nix::{
        dir::Dir,
        errno::Errno,
        fcntl::{AtFlags, OFlag},
        sys::stat::{fstatat, FileStat, Mode, SFlag},
    };
    use std::ffi::{CString, OsStr};
    use std::os::unix::ffi::OsStrExt;
    use std::rc::Rc;

    const DIR_FLAGS: OFlag = OFlag::O_RDONLY
        .union(OFlag::O_DIRECTORY)
        .union(OFlag::O_NOFOLLOW)
        .union(OFlag::O_CLOEXEC);
    let gone = |e: Errno| matches!(e, Errno::ENOENT | Errno::ELOOP | Errno::ENOTDIR);
    let io_err = |what: String| move |e: Errno| Error::io(what, io::Error::from(e));

    let mut seen: HashSet<(u64, u64)> = HashSet::new();
    let mut size: i64 = 0;
    let mut account = |dev: u64, ino: u64, blocks: i64| {
        if seen.insert((dev, ino)) {
            size += blocks * 512;
        }
    };
    let meta =
        fs::symlink_metadata(root).map_err(|e| Error::io(format!("stat {}", root.display()), e))?;
    account(meta.dev(), meta.ino(), meta.blocks() as i64);
    // Directories to read: the parent's open descriptor, the name in it, and the path (for
    // messages and `listed` only, never opened).
    let mut stack: Vec<(Option<Rc<Dir>>, CString, PathBuf)> = Vec::new();
    if meta.is_dir() {
        let name = CString::new(root.as_os_str().as_bytes()).map_err(|_| {
            let nul = io::Error::from(io::ErrorKind::InvalidInput);
            Error::io(format!("open {}", root.display()), nul)
        })?;
        stack.push((None, name, root.to_path_buf()));
    }
    while let Some((parent, name, path)) = stack.pop() {
        let opened = match &parent {
            Some(p) => Dir::openat(p.as_ref(), name.as_c_str(), DIR_FLAGS, Mode::empty()),
            None => Dir::open(name.as_c_str(), DIR_FLAGS, Mode::empty()),
        };
        let mut dir = match opened {
            Ok(d) => d,
            Err(e) if gone(e) => continue,
            Err(e) => return Err(io_err(format!("open {}", path.display()))(e)),
        };
        let mut names = Vec::new();
        for entry in dir.iter() {
            let entry = entry.map_err(io_err(format!("read {}", path.display())))?;
            let child = entry.file_name();
            if child != c"." && child != c".." {
                names.push(child.to_owned());
            }
        }
        let mut subdirs = Vec::new();
        for child in names {
            let st: FileStat = match fstatat(&dir, child.as_c_str(), AtFlags::AT_SYMLINK_NOFOLLOW) {
                Ok(st) => st,
                Err(Errno::ENOENT) => continue,
                Err(e) => {
                    let at = path.join(OsStr::from_bytes(child.to_bytes()));
                    return Err(io_err(format!("stat {}", at.display()))(e));
                }
            };
            account(st.st_dev, st.st_ino, st.st_blocks);
            if SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits()) == SFlag::S_IFDIR {
                subdirs.push(child);
            }
        }
        let dir = Rc::new(dir);
        for child in subdirs {
            let at = path.join(OsStr::from_bytes(child.to_bytes()));
            stack.push((Some(dir.clone()), child, at));
        }
        listed(&path);
    }
    Ok(Usage {
        size,
        inodes: seen.len() as i64,
    })
}

struct Entry {
    usage: Usage,
    at: Instant,
    pending: bool,
}

type Cache = Arc<Mutex<HashMap<u64, Entry>>>;

/// Cached usage of active snapshots (see the module docs for cost and staleness).
pub struct UsageTracker {
    refresh: Duration,
    cache: Cache,
    queue: Mutex<mpsc::Sender<(u64, PathBuf)>>,
    walks: Arc<std::sync::atomic::AtomicU64>,
}

impl UsageTracker {
    pub fn new(refresh: Duration) -> UsageTracker {
        let cache: Cache = Arc::default();
        let walks = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let (tx, rx) = mpsc::channel::<(u64, PathBuf)>();
        let (c, w) = (cache.clone(), walks.clone());
        std::thread::Builder::new()
            .name("usage-walker".into())
            .spawn(move || {
                // A refresh may wait; Usage, Prepare and the node's pods may not (a walk of a
                // large upper dir is hundreds of ms of CPU).
                if let Err(e) = crate::sys::make_current_thread_idle() {
                    log::warn!("usage walker keeps normal priority: {e}");
                }
                for (id, path) in rx {
                    let res = disk_usage(&path);
                    w.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let mut cache = c.lock().unwrap_or_else(|p| p.into_inner());
                    // A snapshot forgotten meanwhile (committed/removed) stays forgotten.
                    if let Some(e) = cache.get_mut(&id) {
                        e.pending = false;
                        match res {
                            Ok(u) => {
                                e.usage = u;
                                e.at = Instant::now();
                            }
                            Err(err) => log::warn!("usage walk of snapshot {id}: {err}"),
                        }
                    }
                }
            })
            .expect("spawn usage walker thread");
        UsageTracker {
            refresh,
            cache,
            queue: Mutex::new(tx),
            walks,
        }
    }

    /// Usage of active snapshot `id` whose upper directory is `upper`.
    pub fn get(&self, id: u64, upper: &Path) -> Result<Usage> {
        if self.refresh.is_zero() {
            self.walks
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            return disk_usage(upper);
        }
        {
            let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(e) = cache.get_mut(&id) {
                if !e.pending && e.at.elapsed() >= self.refresh {
                    e.pending = true;
                    let q = self.queue.lock().unwrap_or_else(|p| p.into_inner());
                    if q.send((id, upper.to_path_buf())).is_err() {
                        e.pending = false;
                    }
                }
                return Ok(e.usage);
            }
        }
        let u = disk_usage(upper)?;
        self.walks
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.seed(id, u);
        Ok(u)
    }

    /// Records a known usage (e.g. of a freshly created, empty upper directory).
    pub fn seed(&self, id: u64, usage: Usage) {
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        cache.insert(
            id,
            Entry {
                usage,
                at: Instant::now(),
                pending: false,
            },
        );
    }

    pub fn forget(&self, id: u64) {
        self.cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&id);
    }

    /// Age of the oldest cached usage figure (zero when none is cached): how stale a Usage
    /// answer can be right now. A figure is refreshed only when asked for once it is older than
    /// the refresh interval, so one nobody asks for keeps ageing.
    pub fn oldest(&self) -> Duration {
        let cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        cache
            .values()
            .map(|e| e.at.elapsed())
            .max()
            .unwrap_or_default()
    }

    /// Number of directory walks done so far (for tests and the benchmark).
    pub fn walks(&self) -> u64 {
        self.walks.load(std::sync::atomic::Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Scheduling policies of this process's threads named `name`, from /proc (field 41 of
    /// `stat`; 5 is SCHED_IDLE).
    fn policies_of(name: &str) -> Vec<u32> {
        let mut out = Vec::new();
        for t in fs::read_dir("/proc/self/task").unwrap().flatten() {
            let comm = fs::read_to_string(t.path().join("comm")).unwrap_or_default();
            if comm.trim() != name {
                continue;
            }
            let stat = fs::read_to_string(t.path().join("stat")).unwrap_or_default();
            // Fields after the parenthesised comm start at field 3.
            let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
            if let Some(p) = rest.split_whitespace().nth(41 - 3) {
                out.push(p.parse().unwrap());
            }
        }
        out
    }

    #[test]
    fn the_walker_only_takes_idle_cpu() {
        let _t = UsageTracker::new(Duration::from_secs(1));
        let mut seen = Vec::new();
        for _ in 0..100 {
            seen = policies_of("usage-walker");
            if seen.contains(&(libc::SCHED_IDLE as u32)) {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("usage-walker threads with policies {seen:?}, none SCHED_IDLE");
    }

    #[test]
    fn du_counts_hardlinks_once_and_root() {
        let d = tempfile::tempdir().unwrap();
        let base = disk_usage(d.path()).unwrap();
        assert_eq!(base.inodes, 1);
        fs::create_dir(d.path().join("sub")).unwrap();
        fs::write(d.path().join("sub/a"), vec![7u8; 10000]).unwrap();
        fs::hard_link(d.path().join("sub/a"), d.path().join("b")).unwrap();
        std::os::unix::fs::symlink("sub/a", d.path().join("l")).unwrap();
        let u = disk_usage(d.path()).unwrap();
        assert_eq!(u.inodes, 4); // root, sub, a(=b), l
        let a = fs::metadata(d.path().join("sub/a")).unwrap();
        let sub = fs::metadata(d.path().join("sub")).unwrap();
        let l = fs::symlink_metadata(d.path().join("l")).unwrap();
        assert_eq!(
            u.size,
            base.size + (a.blocks() + sub.blocks() + l.blocks()) as i64 * 512
        );
        assert!(u.size >= base.size + 10000);
    }

    /// A container swaps a directory of its upper layer for a symlink to a host directory
    /// while the walk is under way: the walk must not follow it into the host.
    #[test]
    fn a_directory_swapped_for_a_symlink_mid_walk_is_not_followed() {
        let host = tempfile::tempdir().unwrap();
        fs::write(host.path().join("big"), vec![1u8; 4 << 20]).unwrap();
        let upper = tempfile::tempdir().unwrap();
        fs::create_dir(upper.path().join("d")).unwrap();
        fs::write(upper.path().join("d/small"), b"x").unwrap();
        let (root, d) = (upper.path().to_path_buf(), upper.path().join("d"));
        let mut swapped = false;
        let u = walk(upper.path(), &mut |dir| {
            if dir == root && !swapped {
                fs::rename(&d, root.join("d.old")).unwrap();
                std::os::unix::fs::symlink(host.path(), &d).unwrap();
                swapped = true;
            }
        })
        .unwrap();
        assert!(swapped);
        assert!(
            u.size < 1 << 20,
            "the walk followed the symlink into the host: {} bytes",
            u.size
        );
    }

    #[test]
    fn tracker_caches_and_refreshes_in_background() {
        let d = tempfile::tempdir().unwrap();
        let t = UsageTracker::new(Duration::from_secs(3600));
        let first = t.get(1, d.path()).unwrap();
        assert_eq!(t.walks(), 1);
        fs::write(d.path().join("f"), vec![1u8; 8192]).unwrap();
        // Cached: no walk, old value.
        assert_eq!(t.get(1, d.path()).unwrap(), first);
        assert_eq!(t.walks(), 1);

        // Zero interval: always exact.
        let exact = UsageTracker::new(Duration::ZERO);
        let u = exact.get(1, d.path()).unwrap();
        assert_eq!(u.inodes, 2);

        // Short interval: a stale entry triggers one background walk; poll until it lands.
        let t = UsageTracker::new(Duration::from_millis(1));
        t.seed(7, first);
        std::thread::sleep(Duration::from_millis(5));
        let mut got = t.get(7, d.path()).unwrap();
        for _ in 0..2000 {
            if got == u {
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
            got = t.get(7, d.path()).unwrap();
        }
        assert_eq!(got, u);
        t.forget(7);
    }

    #[test]
    fn oldest_is_the_age_of_the_stalest_figure() {
        let t = UsageTracker::new(Duration::from_secs(3600));
        assert_eq!(t.oldest(), Duration::ZERO);
        t.seed(1, Usage::default());
        std::thread::sleep(Duration::from_millis(30));
        t.seed(2, Usage::default());
        assert!(t.oldest() >= Duration::from_millis(30));
        t.forget(1);
        assert!(t.oldest() < Duration::from_millis(30));
    }
}

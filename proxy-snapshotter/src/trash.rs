//! `trash/`: directories on their way out. No record names anything in it, so a crash at any
//! point leaves only garbage that the next start or Cleanup deletes.
//!
//! Moving a directory in is one rename, under a name no other entry has. Deleting it (a layer's
//! whole tree) is done in line by open, Cleanup and a failed Prepare, and after a Remove by a
//! background thread: containerd's garbage collector holds the snapshotter's lock while it calls
//! Remove for each unreferenced snapshot (`core/metadata/snapshot.go`), and every Prepare waits
//! for that lock. One emptying runs at a time.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::error::{IoContext, Result};
use crate::worker::{self, Worker};

/// Removes `p`, whatever it is; absent is done.
pub fn remove_any(p: &Path) -> io::Result<()> {
    match fs::symlink_metadata(p) {
        Ok(m) if m.is_dir() => fs::remove_dir_all(p),
        Ok(_) => fs::remove_file(p),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// Where numbered names start (now, in nanoseconds): above any an earlier process of this root
/// gave out, so that no new name is mistaken for, or replaces, one of its leftovers.
pub fn fresh_seq() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

pub struct Trash {
    dir: PathBuf,
    /// Suffixes entry names, so that an entry is never replaced while it is being deleted.
    seq: AtomicU64,
    /// Held while the trash is emptied.
    emptying: Arc<Mutex<()>>,
    /// Empties the trash in the background; dropped last, after a requested emptying.
    emptier: Worker,
}

impl Trash {
    pub fn new(dir: PathBuf) -> Trash {
        let emptying = Arc::new(Mutex::new(()));
        let (d, lock) = (dir.clone(), emptying.clone());
        let emptier = Worker::spawn("trash-emptier", move || {
            if let Err(e) = empty(&d, &lock) {
                log::warn!("emptying trash: {e}");
            }
        })
        .expect("spawn trash emptier thread");
        let seq = fresh_seq();
        Trash {
            dir,
            seq: AtomicU64::new(seq),
            emptying,
            emptier,
        }
    }

    /// Where `name` goes in: a path no entry has, or will have.
    pub fn slot(&self, name: &str) -> PathBuf {
        let n = self.seq.fetch_add(1, Ordering::Relaxed);
        self.dir.join(format!("{name}.{n}"))
    }

    /// Deletes everything in the trash before returning.
    pub fn empty(&self) -> Result<()> {
        empty(&self.dir, &self.emptying)
    }

    /// Has the background thread delete everything in the trash.
    pub fn empty_later(&self) {
        self.emptier.nudge();
    }
}

fn empty(dir: &Path, lock: &Mutex<()>) -> Result<()> {
    let _one_at_a_time = worker::lock(lock);
    remove_entries(dir)
}

/// Removes everything in the directory `dir`, which stays.
pub fn remove_entries(dir: &Path) -> Result<()> {
    for e in fs::read_dir(dir).ctx(|| format!("read {}", dir.display()))? {
        let e = e.ctx(|| format!("read {}", dir.display()))?;
        remove_any(&e.path()).ctx(|| format!("remove {}", e.path().display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    fn trash_dir(t: &tempfile::TempDir) -> PathBuf {
        let d = t.path().join("trash");
        fs::create_dir_all(&d).unwrap();
        d
    }

    /// A layer of `files` files moved into `at` in one rename, as the snapshotter moves
    /// directories in (an emptying may run meanwhile).
    fn layer(at: &Path, files: usize) {
        let built = at.parent().unwrap().with_extension("build");
        fs::create_dir_all(built.join("fs/d")).unwrap();
        for i in 0..files {
            fs::write(built.join(format!("fs/d/f{i}")), b"x").unwrap();
        }
        fs::rename(&built, at).unwrap();
    }

    #[test]
    fn slots_are_never_reused() {
        let t = tempfile::tempdir().unwrap();
        let trash = Trash::new(trash_dir(&t));
        let (a, b) = (trash.slot("7"), trash.slot("7"));
        assert_ne!(a, b);
        assert!(a.starts_with(trash_dir(&t)) && b.starts_with(trash_dir(&t)));
    }

    #[test]
    fn empty_deletes_everything_before_returning() {
        let t = tempfile::tempdir().unwrap();
        let trash = Trash::new(trash_dir(&t));
        layer(&trash.slot("1"), 100);
        fs::write(trash.slot("file"), b"x").unwrap();
        trash.empty().unwrap();
        assert_eq!(fs::read_dir(trash_dir(&t)).unwrap().count(), 0);
    }

    #[test]
    fn empty_later_deletes_everything_in_the_background() {
        let t = tempfile::tempdir().unwrap();
        let trash = Trash::new(trash_dir(&t));
        for i in 0..5 {
            layer(&trash.slot(&i.to_string()), 50);
            trash.empty_later();
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        while fs::read_dir(trash_dir(&t)).unwrap().count() > 0 {
            assert!(Instant::now() < deadline, "the trash was not emptied");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    #[test]
    fn a_requested_emptying_is_done_before_the_trash_is_dropped() {
        let t = tempfile::tempdir().unwrap();
        let trash = Trash::new(trash_dir(&t));
        layer(&trash.slot("big"), 2000);
        trash.empty_later();
        drop(trash);
        assert_eq!(fs::read_dir(trash_dir(&t)).unwrap().count(), 0);
    }
}

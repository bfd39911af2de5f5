//! `spare/`: an active snapshot's empty directories, made ahead of the Prepare that takes them.
//!
//! Making a snapshot's three directories is most of a Prepare's own disk work after its
//! fsync: its top directory is placed by ext4's Orlov allocator in a block group of its own
//! choosing (`spare/` and `tmp/` are top directories, see `Snapshotter::open`), whose bitmaps
//! may first have to be read from the disk. A Prepare of an active snapshot without a size
//! limit renames a spare into place instead; with none ready it makes its own in `tmp/`.
//!
//! No record names anything in `spare/`: a crash at any point leaves only spares, which the
//! next start deletes before it makes new ones. A spare is offered only once complete, and a
//! taken one is the taker's alone.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::error::{IoContext, Result};
use crate::layout::{mkdir_mode, Layout};
use crate::trash::{fresh_seq, remove_any, remove_entries};
use crate::worker::{lock, Worker};

/// How many spares are kept ready: containerd prepares one snapshot at a time for a container
/// and one per layer while it unpacks (layers in parallel on 2.2+ beyond this make their own).
pub const READY: usize = 2;

pub struct Spares {
    ready: Arc<Mutex<Vec<PathBuf>>>,
    /// Makes spares until [`READY`] are; dropped after the spare being made is finished.
    maker: Worker,
}

impl Spares {
    /// Deletes what a previous process left in `dir`, then has a background thread keep
    /// [`READY`] spares there.
    pub fn new(dir: PathBuf) -> Result<Spares> {
        remove_entries(&dir)?;
        let ready = Arc::new(Mutex::new(Vec::with_capacity(READY)));
        let shelf = ready.clone();
        let mut seq = fresh_seq();
        let maker = Worker::spawn("spare-maker", move || {
            while lock(&shelf).len() < READY {
                seq += 1;
                match make(&dir.join(seq.to_string())) {
                    Ok(p) => lock(&shelf).push(p),
                    Err(e) => {
                        log::warn!("making a spare snapshot directory: {e}");
                        break;
                    }
                }
            }
        })
        .ctx(|| "spawn the spare maker thread".into())?;
        maker.nudge();
        Ok(Spares { ready, maker })
    }

    /// A complete spare, now the caller's (none ready: None); the maker makes the next.
    pub fn take(&self) -> Option<PathBuf> {
        let p = lock(&self.ready).pop();
        self.maker.nudge();
        p
    }
}

/// An active snapshot's empty directories at `at`, as Prepare would make them; a part made
/// before an error is removed.
fn make(at: &Path) -> Result<PathBuf> {
    mkdir_mode(at, 0o700)?;
    if let Err(e) = Layout::make_layer(at, true) {
        let _ = remove_any(at);
        return Err(e);
    }
    Ok(at.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::PermissionsExt;
    use std::time::{Duration, Instant};

    fn mode(p: &Path) -> u32 {
        fs::metadata(p).unwrap().permissions().mode() & 0o7777
    }

    fn wait_ready(s: &Spares, n: usize) {
        let t = Instant::now();
        while lock(&s.ready).len() < n {
            assert!(t.elapsed() < Duration::from_secs(10), "no {n} spares ready");
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    #[test]
    fn spares_are_complete_and_refilled_after_each_take() {
        let t = tempfile::tempdir().unwrap();
        let dir = t.path().join("spare");
        fs::create_dir(&dir).unwrap();
        let s = Spares::new(dir.clone()).unwrap();
        wait_ready(&s, READY);
        let a = s.take().expect("a spare");
        assert_eq!(a.parent(), Some(dir.as_path()));
        assert_eq!(
            (mode(&a), mode(&a.join("fs")), mode(&a.join("work"))),
            (0o700, 0o755, 0o711)
        );
        assert_eq!(fs::read_dir(a.join("fs")).unwrap().count(), 0);
        wait_ready(&s, READY);
        let b = s.take().expect("a second spare");
        assert_ne!(a, b, "a taken spare is never offered again");
        drop(s);
        // The two taken and READY more, each complete; nothing half made.
        let all: Vec<_> = fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        assert_eq!(all.len(), READY + 2);
        assert!(all.iter().all(|p| p.join("work").is_dir()));
    }

    #[test]
    fn a_start_deletes_what_the_last_process_left() {
        let t = tempfile::tempdir().unwrap();
        let dir = t.path().join("spare");
        fs::create_dir_all(dir.join("1/fs/written")).unwrap();
        fs::write(dir.join("stray"), b"x").unwrap();
        let s = Spares::new(dir.clone()).unwrap();
        wait_ready(&s, READY);
        drop(s);
        let mut left: Vec<_> = fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        left.sort();
        assert_eq!(left.len(), READY);
        for p in left {
            assert!(!p.join("fs/written").exists(), "{} reused", p.display());
        }
    }
}

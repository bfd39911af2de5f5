//! Removes whose deletion is committed without an fsync, and the directories they leave.
//!
//! Invariant: `snapshots/<id>` leaves its place only once the deletion of `<id>`'s record is
//! durable, so "every id in the store has a complete directory" holds at every instant.
//! * Remove deletes the record, adds its id here and commits without an fsync, all under the
//!   write transaction. containerd's garbage collector calls Remove for each unreferenced
//!   snapshot while it holds the lock every Prepare waits for (`core/metadata/snapshot.go`); a
//!   round of such Removes now pays no fsync each.
//! * A round of the background thread, shortly after ([`BATCH`]: one collection's Removes go
//!   together), makes every earlier commit durable with one fsynced empty commit
//!   ([`Store::sync`]), moves into `trash/` the directory of each id it took that the store no
//!   longer has (an id whose commit failed still has its record, and keeps its directory), and
//!   only then forgets the ids.
//! * A crash before that commit loses the deletions since the last durable commit: their
//!   records come back with their directories whole. containerd's metadata no longer names
//!   them, and its collector removes them again the next time it collects this snapshotter.
//!   After that commit, a directory not yet moved is garbage that the next open deletes.
//! * Cleanup runs a round first (containerd calls it after each collection, outside its lock),
//!   and leaves the directories of ids added since to the next one. `check` and shutdown run
//!   one too.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::crash_point::CrashPoint;
use crate::error::{IoContext, Result};
use crate::layout::Layout;
use crate::size_limit;
use crate::store::Store;
use crate::trash::Trash;
use crate::worker::{lock, Worker};

/// How long a round waits after the first Remove it serves: the rest of the collector's
/// Removes (a few tenths of a millisecond apart) join it.
pub const BATCH: Duration = Duration::from_millis(50);

/// Atomically moves the snapshot directory `p` (inside the root) into `trash/`, unmounting a
/// size-limited snapshot's filesystem first. Not fsynced: `p` is unreferenced, so a move that a
/// power loss undoes leaves garbage that the next open deletes.
pub fn move_to_trash(trash: &Trash, p: &Path) -> Result<()> {
    if std::fs::symlink_metadata(p).is_err() {
        return Ok(());
    }
    size_limit::unmount_if_mounted(p)?;
    let name = p.file_name().unwrap_or_default().to_string_lossy();
    std::fs::rename(p, trash.slot(&name)).ctx(|| format!("rename {} to trash", p.display()))
}

struct Shared {
    store: Arc<Store>,
    trash: Arc<Trash>,
    layout: Layout,
    crash: Arc<CrashPoint>,
    /// Ids whose record a Remove deleted, until their directories are in `trash/`.
    ids: Mutex<Vec<u64>>,
    /// Held by a round: one at a time.
    round: Mutex<()>,
}

pub struct Removals {
    shared: Arc<Shared>,
    /// Runs the rounds; dropped last, after the rounds asked for.
    settler: Worker,
}

impl Removals {
    pub fn new(
        store: Arc<Store>,
        trash: Arc<Trash>,
        layout: Layout,
        crash: Arc<CrashPoint>,
    ) -> std::io::Result<Removals> {
        let shared = Arc::new(Shared {
            store,
            trash,
            layout,
            crash,
            ids: Mutex::new(Vec::new()),
            round: Mutex::new(()),
        });
        let s = shared.clone();
        let settler = Worker::spawn("remove-settler", move || {
            std::thread::sleep(BATCH);
            if let Err(e) = s.round() {
                log::warn!("settling removed snapshots: {e}");
            }
        })?;
        Ok(Removals { shared, settler })
    }

    /// Records `id` as removed. Called under the write transaction that deletes its record,
    /// before that commits; a round comes soon after.
    pub fn add(&self, id: u64) {
        lock(&self.shared.ids).push(id);
        self.settler.nudge();
    }

    /// Whether `id`'s directory is waiting for a round (Cleanup leaves it).
    pub fn pending(&self, id: u64) -> bool {
        lock(&self.shared.ids).contains(&id)
    }

    /// Runs a round now: every Remove so far is durable and its directory in `trash/`.
    pub fn settle(&self) -> Result<()> {
        self.shared.round()
    }
}

impl Shared {
    fn round(&self) -> Result<()> {
        let _one = lock(&self.round);
        let ids = lock(&self.ids).clone();
        if ids.is_empty() {
            return Ok(());
        }
        self.store.sync()?;
        self.crash.pass("remove.after_sync");
        let live = self.store.ids()?;
        for id in &ids {
            if !live.contains_key(id) {
                let dir = self.layout.dir(*id);
                if let Err(e) = move_to_trash(&self.trash, &dir) {
                    // Garbage now (the deletion is durable): Cleanup or the next open takes it.
                    log::warn!("removing {}: {e}", dir.display());
                }
            }
        }
        self.crash.pass("remove.after_trash");
        lock(&self.ids).retain(|id| !ids.contains(id));
        self.trash.empty_later();
        Ok(())
    }
}

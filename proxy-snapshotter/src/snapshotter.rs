//! The overlayfs snapshotter: containerd's `plugins/snapshots/overlay` semantics on top of the
//! redb [`Store`], with directory operations ordered around the metadata transaction.
//!
//! Layout under the root: [`Layout`].
//!
//! Invariant kept at every instant (so `kill -9` anywhere is safe): every id in the store has a
//! complete `snapshots/<id>`. Anything else on disk is garbage that startup and Cleanup delete.
//! * Prepare/View: inside the write transaction allocate the id and write the record, take a
//!   spare's empty directories (an active snapshot without a size limit: `spares.rs`) or build
//!   `tmp/new-<id>`, rename that to `snapshots/<id>` (and mount a size-limited snapshot's
//!   filesystem image over it: `size_limit.rs`), then commit (redb fsyncs). A crash before
//!   the commit leaves an unreferenced directory; the id is not reused before startup cleanup
//!   has removed it. The rename is not fsynced of its own (that fsync was most of the cost of a
//!   Prepare beyond containerd's overlayfs, which fsyncs nothing but its bbolt commit): after a
//!   power loss a committed record may find its directory still at `tmp/new-<id>`, or, if even
//!   the mkdir was lost, nowhere. Opening the snapshotter repairs both before anything is
//!   served (`repair_lost_renames`): the rename is redone, or the empty directories that
//!   Prepare made or took are made again (nothing can have been written into a directory whose
//!   creation or rename was lost, since later writes are journaled after it).
//! * Commit: walk the upper dir once (usage), then one transaction renames the key (and, for a
//!   rebase, names the parent); no directory moves.
//! * Remove: commit the metadata deletion without an fsync; `snapshots/<id>` stays until a
//!   later round has made the deletion durable, then goes into `trash/`, which a background
//!   thread empties (`removals.rs`, `trash.rs`). A crash before the round's durable commit
//!   brings the record back with its directory. A crash after it leaves an unreferenced
//!   directory, as does a power loss that undoes the move into `trash/`, which is not fsynced
//!   (ids are never given out again, and opening deletes what no record names).
//! * Cleanup: settle the Removes so far, then under the write transaction (no Prepare in
//!   flight) move every directory in `snapshots/` that the store does not reference (except
//!   those of Removes since), and everything in `tmp/`, into `trash/`; then empty `trash/`.

use std::collections::{BTreeMap, HashSet};
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::crash_point::CrashPoint;
use crate::error::{Error, IoContext, Result};
use crate::filter::Filter;
use crate::layout::{mkdir_mode, Layout};
use crate::removals::{move_to_trash, Removals};
use crate::size_limit;
use crate::spares::Spares;
use crate::store::{validate_key, validate_labels, Info, Kind, Record, Store, Usage};
use crate::trash::{remove_any, Trash};
use crate::usage::{disk_usage, UsageTracker};

pub use crate::layout::STORE_FILE;

/// The label containerd's unpacker puts on a layer's extraction snapshot (its chain id).
const SNAPSHOT_REF: &str = "containerd.io/snapshot.ref";

/// A mount as containerd's `types.Mount`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mount {
    pub kind: String,
    pub source: String,
    pub options: Vec<String>,
}

#[derive(Clone, Debug)]
pub struct Config {
    pub root: PathBuf,
    /// Refresh interval of cached active-snapshot usage; zero walks on every query.
    pub usage_refresh: Duration,
    /// Test hook: `(point, n)` SIGKILLs the process at the n-th pass through `point`.
    pub crash_point: Option<(String, u64)>,
    /// Delete unreferenced directories when opening (always on in the daemon; tests of the
    /// crash behaviour turn it off to inspect what a crash left). `spare/`, which no record
    /// ever names, is emptied at every open.
    pub cleanup_on_open: bool,
    /// mkfs.ext4, for size-limited snapshots (None: they are refused).
    pub mkfs: Option<PathBuf>,
}

impl Config {
    pub fn new(root: impl Into<PathBuf>) -> Config {
        Config {
            root: root.into(),
            usage_refresh: Duration::from_secs(60),
            crash_point: None,
            cleanup_on_open: true,
            mkfs: size_limit::find_mkfs(),
        }
    }
}

pub struct Snapshotter {
    layout: Layout,
    store: Arc<Store>,
    usage: UsageTracker,
    trash: Arc<Trash>,
    removals: Removals,
    spares: Spares,
    overlay_options: Vec<String>,
    mkfs: Option<PathBuf>,
    crash: Arc<CrashPoint>,
}

fn fsync_dir(p: &Path) -> Result<()> {
    fs::File::open(p)
        .and_then(|f| f.sync_all())
        .ctx(|| format!("fsync {}", p.display()))
}

fn path_str(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

impl Snapshotter {
    /// Opens (or creates) the root, then deletes anything the metadata does not reference.
    pub fn open(cfg: Config) -> Result<Snapshotter> {
        let root = cfg.root;
        fs::create_dir_all(&root).ctx(|| format!("create {}", root.display()))?;
        fs::set_permissions(&root, fs::Permissions::from_mode(0o711))
            .ctx(|| format!("chmod {}", root.display()))?;
        let root = root
            .canonicalize()
            .ctx(|| format!("resolve {}", root.display()))?;
        let layout = Layout::of(&root);
        for (d, mode) in [
            (&layout.snapshots, 0o711),
            (&layout.tmp, 0o700),
            (&layout.spare, 0o700),
            (&layout.trash, 0o700),
        ] {
            if !d.is_dir() {
                mkdir_mode(d, mode)?;
            }
        }
        // Every snapshot directory is born in tmp/ or spare/. On ext4 without a journal,
        // creating a file scans past each inode of its block group freed in the last minutes
        // (more while its inode table is unwritten); a layer's thousands of files beside the
        // daemon's own churn (and the node's) pay that per file. As the tops of their own
        // hierarchies, snapshot directories are spread by the Orlov allocator over the disk's
        // emptier groups. Other filesystems refuse the flag, harmlessly.
        for d in [&layout.tmp, &layout.spare] {
            if let Err(e) = fs::File::open(d).and_then(|f| crate::sys::set_topdir(&f)) {
                log::debug!("{}: not marked as a top directory: {e}", d.display());
            }
        }
        let store = Arc::new(Store::open(&layout.store())?);
        let mut overlay_options = Vec::new();
        // As containerd: disable the overlay index when the kernel has the parameter, so
        // lowerdirs can be mounted by several overlays and remounted after a restart.
        if Path::new("/sys/module/overlay/parameters/index").exists() {
            overlay_options.push("index=off".to_string());
        }
        let trash = Arc::new(Trash::new(layout.trash.clone()));
        let crash = Arc::new(CrashPoint::new(cfg.crash_point));
        let removals = Removals::new(store.clone(), trash.clone(), layout.clone(), crash.clone())
            .ctx(|| "spawn the remove settler thread".into())?;
        let spares = Spares::new(layout.spare.clone())?;
        let s = Snapshotter {
            layout,
            store,
            usage: UsageTracker::new(cfg.usage_refresh),
            trash,
            removals,
            spares,
            overlay_options,
            mkfs: cfg.mkfs,
            crash,
        };
        s.repair_lost_renames()?;
        s.mount_limited()?;
        if cfg.cleanup_on_open {
            s.cleanup()?;
        }
        Ok(s)
    }

    pub fn root(&self) -> &Path {
        &self.layout.root
    }

    fn crash(&self, point: &str) {
        self.crash.pass(point);
    }

    fn dir(&self, id: u64) -> PathBuf {
        self.layout.dir(id)
    }

    fn upper(&self, id: u64) -> PathBuf {
        self.layout.upper(id)
    }

    fn work(&self, id: u64) -> PathBuf {
        self.layout.work(id)
    }

    pub fn stat(&self, key: &str) -> Result<Info> {
        validate_key("key", key)?;
        Ok(self.store.get(key)?.info(key))
    }

    pub fn update(&self, info: &Info, fieldpaths: &[String]) -> Result<Info> {
        validate_key("name", &info.name)?;
        validate_labels(&info.labels)?;
        let tx = self.store.write()?;
        let out = tx.update(&info.name, &info.labels, fieldpaths)?;
        tx.commit()?;
        Ok(out)
    }

    pub fn usage(&self, key: &str) -> Result<Usage> {
        validate_key("key", key)?;
        let r = self.store.get(key)?;
        match r.kind {
            // The label says where to look (free); the mount that it is one (an Update may
            // have put the label on an unlimited snapshot).
            Kind::Active
                if r.labels.contains_key(size_limit::MAX_SIZE)
                    && size_limit::is_mounted(&self.dir(r.id)) =>
            {
                size_limit::usage(&self.dir(r.id))
            }
            Kind::Active => self.usage.get(r.id, &self.upper(r.id)),
            _ => Ok(r.usage),
        }
    }

    pub fn mounts(&self, key: &str) -> Result<Vec<Mount>> {
        validate_key("key", key)?;
        let r = self.store.get(key)?;
        if r.kind == Kind::Committed {
            return Err(Error::FailedPrecondition(format!(
                "snapshot {key:?} is committed; only active snapshots and views have mounts"
            )));
        }
        Ok(self.mounts_of(&r))
    }

    pub fn prepare(
        &self,
        key: &str,
        parent: &str,
        labels: BTreeMap<String, String>,
    ) -> Result<Vec<Mount>> {
        self.create(Kind::Active, key, parent, labels)
    }

    pub fn view(
        &self,
        key: &str,
        parent: &str,
        labels: BTreeMap<String, String>,
    ) -> Result<Vec<Mount>> {
        self.create(Kind::View, key, parent, labels)
    }

    fn create(
        &self,
        kind: Kind,
        key: &str,
        parent: &str,
        labels: BTreeMap<String, String>,
    ) -> Result<Vec<Mount>> {
        validate_key("key", key)?;
        if !parent.is_empty() {
            validate_key("parent", parent)?;
        }
        validate_labels(&labels)?;
        if let Some(limit) = size_limit::requested(kind, &labels)? {
            size_limit::check_node(self.mkfs.as_deref(), limit)?;
        }
        let tx = self.store.write()?;
        let r = tx.create(kind, key, parent, labels)?;
        let td = self.layout.new_dir(r.id);
        let dir = self.dir(r.id);
        let mut born = None;
        let res = (|| {
            // Leftovers with this id can only be garbage: the id is not referenced yet.
            remove_any(&td).ctx(|| format!("remove {}", td.display()))?;
            if fs::symlink_metadata(&dir).is_ok() {
                self.trash_dir(&dir)?;
            }
            let from = born.insert(self.new_dir(&td, &r)?);
            // No fsync of the directories or of the rename: see the module comment (a power
            // loss is repaired at open).
            self.crash("prepare.before_rename");
            fs::rename(&*from, &dir)
                .ctx(|| format!("rename {} to {}", from.display(), dir.display()))?;
            size_limit::mount_if_unmounted(&dir)?;
            self.crash("prepare.before_commit");
            Ok(())
        })();
        let res = res.and_then(|()| tx.commit());
        if let Err(e) = res {
            // The transaction is aborted (dropped) or failed: nothing references the dirs.
            let _ = remove_any(&td);
            if let Some(from) = born {
                let _ = remove_any(&from);
            }
            let _ = self.trash_dir(&dir).and_then(|()| self.empty_trash());
            return Err(e);
        }
        self.crash("prepare.after_commit");
        if kind == Kind::Active {
            if let Ok(u) = disk_usage(&self.upper(r.id)) {
                self.usage.seed(r.id, u);
            }
        }
        Ok(self.mounts_of(&r))
    }

    /// The empty directories of a new snapshot, where they are to be renamed from: a spare
    /// for an active snapshot without a size limit when one is ready, else made at `td`; for
    /// a size-limited snapshot, the image of a filesystem holding them.
    fn new_dir(&self, td: &Path, r: &Record) -> Result<PathBuf> {
        // As containerd: the new upper dir belongs to the owner of the parent's root.
        let owner = match r.parent_ids.first() {
            Some(&pid) => {
                let m = fs::metadata(self.upper(pid))
                    .ctx(|| format!("stat parent {} (id {pid})", r.parent))?;
                Some((m.uid(), m.gid()))
            }
            None => None,
        };
        let chown = |at: &Path| -> Result<()> {
            match owner {
                Some((uid, gid)) => {
                    let fs_dir = at.join("fs");
                    std::os::unix::fs::lchown(&fs_dir, Some(uid), Some(gid))
                        .ctx(|| format!("chown {}", fs_dir.display()))
                }
                None => Ok(()),
            }
        };
        let limit = size_limit::requested(r.kind, &r.labels)?;
        if r.kind == Kind::Active && limit.is_none() {
            if let Some(spare) = self.spares.take() {
                if let Err(e) = chown(&spare) {
                    let _ = remove_any(&spare);
                    return Err(e);
                }
                return Ok(spare);
            }
        }
        mkdir_mode(td, 0o700)?;
        let layer = |at: &Path| -> Result<()> {
            Layout::make_layer(at, r.kind == Kind::Active)?;
            chown(at)
        };
        match limit {
            Some(limit) => {
                let mkfs = size_limit::check_node(self.mkfs.as_deref(), limit)?;
                size_limit::make_image(td, limit, mkfs, layer)?;
            }
            None => layer(td)?,
        }
        Ok(td.to_path_buf())
    }

    /// Before anything is served: every recorded size-limited snapshot's filesystem is mounted
    /// (a reboot unmounted them). One that cannot be is logged; its containers fail to start.
    fn mount_limited(&self) -> Result<()> {
        for (key, r) in self.store.all()? {
            match size_limit::mount_if_unmounted(&self.dir(r.id)) {
                Ok(true) => log::info!("{key:?} (id {}): size-limited filesystem mounted", r.id),
                Ok(false) => {}
                Err(e) => log::error!("{key:?} (id {}): {e}", r.id),
            }
        }
        Ok(())
    }

    /// After a power loss: a recorded snapshot whose Prepare rename (or mkdir) did not reach
    /// the disk gets its directory back. Runs at open, before cleanup would trash `tmp/`.
    fn repair_lost_renames(&self) -> Result<()> {
        let all = self.store.all()?;
        let mut repaired = false;
        for (key, r) in &all {
            let dir = self.dir(r.id);
            if fs::symlink_metadata(&dir).is_ok() {
                continue;
            }
            let td = self.layout.new_dir(r.id);
            if td.is_dir() {
                log::warn!(
                    "{key:?} (id {}): redoing the rename of {} lost in a crash",
                    r.id,
                    td.display()
                );
                fs::rename(&td, &dir)
                    .ctx(|| format!("rename {} to {}", td.display(), dir.display()))?;
            } else if r.kind == Kind::Committed {
                // Committed content cannot be made up; check() reports it.
                log::error!("{key:?} (id {}): committed snapshot has no directory", r.id);
                continue;
            } else {
                log::warn!(
                    "{key:?} (id {}): directory lost in a crash, made again (empty)",
                    r.id
                );
                remove_any(&td).ctx(|| format!("remove {}", td.display()))?;
                let from = self.new_dir(&td, r)?;
                fs::rename(&from, &dir)
                    .ctx(|| format!("rename {} to {}", from.display(), dir.display()))?;
            }
            repaired = true;
        }
        if repaired {
            fsync_dir(&self.layout.snapshots)?;
        }
        Ok(())
    }

    /// `parent` non-empty: rebase onto it (containerd 2.2's parallel unpack prepares each layer
    /// without a parent and names it at Commit); overlay layers are separate directories, so
    /// only the record changes.
    pub fn commit(
        &self,
        name: &str,
        key: &str,
        parent: &str,
        labels: BTreeMap<String, String>,
    ) -> Result<()> {
        validate_key("name", name)?;
        validate_key("key", key)?;
        validate_labels(&labels)?;
        // Same error precedence as containerd: existing target first.
        if self.store.get(name).is_ok() {
            return Err(Error::AlreadyExists(name.to_string()));
        }
        let before = self.store.get(key)?;
        if before.kind != Kind::Active {
            return Err(Error::FailedPrecondition(format!(
                "snapshot {key:?} is not active"
            )));
        }
        // The one walk of this layer's lifetime, outside the write lock.
        let usage = disk_usage(&self.upper(before.id))?;
        let tx = self.store.write()?;
        let r = tx.commit_active(key, name, parent, labels, usage)?;
        if r.id != before.id {
            return Err(Error::FailedPrecondition(format!(
                "snapshot {key:?} was replaced during commit"
            )));
        }
        self.crash("commit.before_commit");
        tx.commit()?;
        self.crash("commit.after_commit");
        self.usage.forget(r.id);
        Ok(())
    }

    pub fn remove(&self, key: &str) -> Result<()> {
        validate_key("key", key)?;
        let tx = self.store.write()?;
        let r = tx.remove(key)?;
        self.crash("remove.before_commit");
        // Its directory stays until the deletion is durable (`removals.rs`).
        self.removals.add(r.id);
        tx.commit_unsynced()?;
        self.crash("remove.after_commit");
        self.usage.forget(r.id);
        Ok(())
    }

    pub fn list(&self, filters: &[String]) -> Result<Vec<Info>> {
        let filter = Filter::parse_all(filters)?;
        Ok(self
            .store
            .all()?
            .into_iter()
            .map(|(k, r)| r.info(&k))
            .filter(|i| filter.matches(i))
            .collect())
    }

    /// Deletes every directory the metadata does not reference.
    pub fn cleanup(&self) -> Result<()> {
        // containerd calls Cleanup after a collection's Removes (outside its lock): their one
        // fsync and their directories' moves happen here, before the scan.
        self.settle_removals()?;
        {
            // Holding the write transaction: no Prepare is between mkdir and commit.
            let tx = self.store.write()?;
            let ids: HashSet<u64> = tx.ids()?.into_keys().collect();
            for e in fs::read_dir(&self.layout.snapshots).ctx(|| "read snapshots dir".into())? {
                let e = e.ctx(|| "read snapshots dir".into())?;
                // A removed snapshot's directory goes when its removal is durable.
                let keep = Layout::id_of(&e.file_name())
                    .is_some_and(|id| ids.contains(&id) || self.removals.pending(id));
                if !keep {
                    log::info!("cleanup: removing unreferenced {}", e.path().display());
                    self.trash_dir(&e.path())?;
                }
            }
            for e in fs::read_dir(&self.layout.tmp).ctx(|| "read tmp dir".into())? {
                let e = e.ctx(|| "read tmp dir".into())?;
                self.trash_dir(&e.path())?;
            }
        }
        self.empty_trash()
    }

    fn trash_dir(&self, p: &Path) -> Result<()> {
        move_to_trash(&self.trash, p)
    }

    /// Makes every Remove so far durable and moves its directory out (a background thread
    /// does it shortly after each; tests, `check` and shutdown want it done now).
    pub fn settle_removals(&self) -> Result<()> {
        self.removals.settle()
    }

    fn empty_trash(&self) -> Result<()> {
        self.trash.empty()
    }

    fn mounts_of(&self, r: &Record) -> Vec<Mount> {
        if r.parent_ids.is_empty() && r.kind == Kind::Active && r.labels.contains_key(SNAPSHOT_REF)
        {
            // A layer being unpacked: containerd's applier writes an `overlay` mount's upper dir
            // directly, turning the layer's whiteouts into overlay whiteouts; through a bind
            // mount it would apply them as deletions in an empty directory and lose them. With
            // the rebase capability, containerd unpacks every layer without a parent.
            return vec![Mount {
                kind: "overlay".into(),
                source: "overlay".into(),
                options: vec![format!("upperdir={}", path_str(&self.upper(r.id)))],
            }];
        }
        if r.parent_ids.is_empty() {
            let rw = if r.kind == Kind::View { "ro" } else { "rw" };
            return vec![Mount {
                kind: "bind".into(),
                source: path_str(&self.upper(r.id)),
                options: vec![rw.into(), "rbind".into()],
            }];
        }
        let mut options = Vec::new();
        if r.kind == Kind::Active {
            options.push(format!("workdir={}", path_str(&self.work(r.id))));
            options.push(format!("upperdir={}", path_str(&self.upper(r.id))));
        } else if r.parent_ids.len() == 1 {
            return vec![Mount {
                kind: "bind".into(),
                source: path_str(&self.upper(r.parent_ids[0])),
                options: vec!["ro".into(), "rbind".into()],
            }];
        }
        let lowers: Vec<String> = r
            .parent_ids
            .iter()
            .map(|&id| path_str(&self.upper(id)))
            .collect();
        options.push(format!("lowerdir={}", lowers.join(":")));
        options.extend(self.overlay_options.iter().cloned());
        vec![Mount {
            kind: "overlay".into(),
            source: "overlay".into(),
            options,
        }]
    }

    /// What a start would find in this root (see [`crate::check`]), once the Removes so far are
    /// settled; empty when in order.
    pub fn check(&self) -> Result<Vec<String>> {
        self.settle_removals()?;
        crate::check::problems(Some(&self.store), &self.layout)
    }

    /// Number of usage walks done (tests, benchmark, metrics).
    pub fn usage_walks(&self) -> u64 {
        self.usage.walks()
    }

    /// Age of the oldest cached usage figure of an active snapshot (see `UsageTracker::oldest`).
    pub fn usage_lag(&self) -> Duration {
        self.usage.oldest()
    }

    /// How many snapshots of each kind the store holds (a read of every record).
    pub fn kinds(&self) -> Result<BTreeMap<&'static str, usize>> {
        let mut n = BTreeMap::new();
        for (_, r) in self.store.all()? {
            *n.entry(r.kind.as_str()).or_insert(0) += 1;
        }
        Ok(n)
    }

    /// The metadata store's file.
    pub fn store_path(&self) -> PathBuf {
        self.layout.store()
    }
}

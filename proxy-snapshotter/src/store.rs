//! Snapshot metadata in a single-file `redb` database (ACID, copy-on-write B-trees, crash-safe
//! commits with fsync). Snapshot directories are named by the numeric ids allocated here, never by
//! keys, so no client-supplied string ever becomes a path.
//!
//! Tables:
//! * `snapshots`: key -> JSON [`Record`] (id, kind, parent key, parent id chain, labels, times,
//!   usage of committed snapshots)
//! * `ids`: id -> key (Cleanup and consistency checks)
//! * `children`: (parent id, child id) -> () (FailedPrecondition on removing a parent)
//! * `meta`: "next_id" -> u64 (ids are never reused)
//!
//! An I/O error (a full disk) fails the request that met it and closes the database: redb
//! answers every later request with `PreviousIo` until it is opened again, which rolls it back
//! to its last durable commit (a Remove's is not: `removals.rs`). The next request opens it
//! again, so the daemon serves again as soon as the disk has room, without a restart.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{PoisonError, RwLock, RwLockReadGuard};

use redb::{Database, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

const SNAPSHOTS: TableDefinition<&str, &[u8]> = TableDefinition::new("snapshots");
const IDS: TableDefinition<u64, &str> = TableDefinition::new("ids");
const CHILDREN: TableDefinition<(u64, u64), ()> = TableDefinition::new("children");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const NEXT_ID: &str = "next_id";

/// Longest accepted key or name, in bytes (containerd's are ~100: `k8s.io/12/sha256:<64 hex>`).
pub const MAX_KEY_LEN: usize = 1024;
/// containerd's `labels.Validate`: key and value together at most 4096 bytes.
pub const MAX_LABEL_LEN: usize = 4096;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Kind {
    View,
    Active,
    Committed,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::View => "view",
            Kind::Active => "active",
            Kind::Committed => "committed",
        }
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    pub size: i64,
    pub inodes: i64,
}

pub use podshim_common::time::Timestamp;

/// One snapshot's metadata.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    pub id: u64,
    pub kind: Kind,
    /// Key of the parent (always a committed snapshot), empty if none.
    pub parent: String,
    /// Ids of the parent chain, nearest first (the overlay lowerdir order).
    pub parent_ids: Vec<u64>,
    pub labels: BTreeMap<String, String>,
    pub created: Timestamp,
    pub updated: Timestamp,
    /// Computed once at Commit; zero for active snapshots and views.
    pub usage: Usage,
}

/// Snapshot info as the API shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Info {
    pub name: String,
    pub parent: String,
    pub kind: Kind,
    pub labels: BTreeMap<String, String>,
    pub created: Timestamp,
    pub updated: Timestamp,
}

impl Record {
    pub fn info(&self, name: &str) -> Info {
        Info {
            name: name.to_string(),
            parent: self.parent.clone(),
            kind: self.kind,
            labels: self.labels.clone(),
            created: self.created,
            updated: self.updated,
        }
    }
}

/// Rejects keys that are empty, too long, contain NUL or control characters, or path-like
/// components `.`/`..`. `/` is allowed (containerd namespaces keys as `ns/txid/name`); keys are
/// never used as paths anyway.
pub fn validate_key(what: &str, key: &str) -> Result<()> {
    if key.is_empty() {
        return Err(Error::InvalidArgument(format!("{what} must not be empty")));
    }
    if key.len() > MAX_KEY_LEN {
        return Err(Error::InvalidArgument(format!(
            "{what} is {} bytes long, the limit is {MAX_KEY_LEN}",
            key.len()
        )));
    }
    if key.chars().any(char::is_control) {
        return Err(Error::InvalidArgument(format!(
            "{what} {key:?} contains NUL or control characters"
        )));
    }
    if key.split('/').any(|c| c == ".." || c == ".") {
        return Err(Error::InvalidArgument(format!(
            "{what} {key:?} contains a `.` or `..` path component"
        )));
    }
    Ok(())
}

pub fn validate_labels(labels: &BTreeMap<String, String>) -> Result<()> {
    for (k, v) in labels {
        if k.is_empty() {
            return Err(Error::InvalidArgument("empty label key".into()));
        }
        if k.len() + v.len() > MAX_LABEL_LEN {
            // At most 64 bytes of the key, cut at a character boundary.
            let shown = (0..=k.len().min(64))
                .rev()
                .find(|&i| k.is_char_boundary(i))
                .unwrap_or(0);
            return Err(Error::InvalidArgument(format!(
                "label {:?}: key and value longer than {MAX_LABEL_LEN} bytes",
                &k[..shown]
            )));
        }
        if k.contains('\0') || v.contains('\0') {
            return Err(Error::InvalidArgument(format!("label {k:?} contains NUL")));
        }
    }
    Ok(())
}

fn decode(key: &str, bytes: &[u8]) -> Result<Record> {
    serde_json::from_slice(bytes).map_err(|source| Error::Corrupt {
        key: key.to_string(),
        source,
    })
}

fn encode(r: &Record) -> Vec<u8> {
    // Serializing a plain struct of strings and integers cannot fail.
    serde_json::to_vec(r).expect("record serializes")
}

fn get_in<T: ReadableTable<&'static str, &'static [u8]>>(t: &T, key: &str) -> Result<Record> {
    match t.get(key)? {
        Some(v) => decode(key, v.value()),
        None => Err(Error::NotFound(key.to_string())),
    }
}

fn all_in<T: ReadableTable<&'static str, &'static [u8]>>(t: &T) -> Result<Vec<(String, Record)>> {
    let mut out = Vec::with_capacity(t.len()? as usize);
    for entry in t.iter()? {
        let (k, v) = entry?;
        out.push((k.value().to_string(), decode(k.value(), v.value())?));
    }
    Ok(out)
}

fn ids_in<T: ReadableTable<u64, &'static str>>(t: &T) -> Result<HashMap<u64, String>> {
    let mut out = HashMap::new();
    for entry in t.iter()? {
        let (k, v) = entry?;
        out.insert(k.value(), v.value().to_string());
    }
    Ok(out)
}

/// An error after which redb refuses every request until the database is opened again.
fn needs_reopen(e: &Error) -> bool {
    matches!(e, Error::Store(e) if matches!(**e, redb::Error::Io(_) | redb::Error::PreviousIo))
}

pub struct Store {
    path: PathBuf,
    /// `None` from an I/O error until the next request opens the database again. A request
    /// holds the read lock for all its transaction's life (a [`WriteTx`] holds it too): the
    /// database is never closed under a transaction (redb's file lock is released only once all
    /// of them are gone).
    db: RwLock<Option<Database>>,
}

impl Store {
    pub fn open(path: &Path) -> Result<Store> {
        let db = Database::create(path)?;
        let tx = db.begin_write()?;
        {
            tx.open_table(SNAPSHOTS)?;
            tx.open_table(IDS)?;
            tx.open_table(CHILDREN)?;
            tx.open_table(META)?;
        }
        tx.commit()?;
        Ok(Store {
            path: path.to_path_buf(),
            db: RwLock::new(Some(db)),
        })
    }

    fn read_lock(&self) -> RwLockReadGuard<'_, Option<Database>> {
        self.db.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// Opens the database again if an I/O error closed it.
    fn reopen(&self) -> Result<()> {
        let mut closed = self.db.write().unwrap_or_else(PoisonError::into_inner);
        if closed.is_none() {
            *closed = Some(Database::create(&self.path)?);
            log::warn!("metadata store {} opened again", self.path.display());
        }
        Ok(())
    }

    /// Passes `r` on; an I/O error in it closes the database. Called with no transaction of
    /// this thread's open (it waits for all of them to end).
    fn checked<T>(&self, r: Result<T>) -> Result<T> {
        if let Err(e) = &r {
            if needs_reopen(e) {
                log::error!("metadata store {}: {e}: closed", self.path.display());
                *self.db.write().unwrap_or_else(PoisonError::into_inner) = None;
            }
        }
        r
    }

    /// Runs one read on the open database.
    fn with<T>(&self, f: impl FnOnce(&Database) -> Result<T>) -> Result<T> {
        let r = loop {
            if let Some(db) = &*self.read_lock() {
                break f(db);
            }
            self.reopen()?;
        };
        self.checked(r)
    }

    /// Starts the (single, exclusive) write transaction. Nothing is visible to readers and
    /// nothing is durable until [`WriteTx::commit`]; dropping it aborts. No other method of
    /// the store may be called while it is held (the lock it holds is not reentrant).
    pub fn write(&self) -> Result<WriteTx<'_>> {
        let r = loop {
            let open = self.read_lock();
            if let Some(db) = &*open {
                break match db.begin_write() {
                    Ok(tx) => Ok(WriteTx {
                        tx,
                        store: self,
                        _open: open,
                    }),
                    Err(e) => Err(Error::from(e)),
                };
            }
            drop(open);
            self.reopen()?;
        };
        self.checked(r)
    }

    /// Makes every commit so far durable: an empty transaction, committed with redb's fsync.
    pub fn sync(&self) -> Result<()> {
        self.write()?.commit()
    }

    pub fn get(&self, key: &str) -> Result<Record> {
        self.with(|db| get_in(&db.begin_read()?.open_table(SNAPSHOTS)?, key))
    }

    pub fn all(&self) -> Result<Vec<(String, Record)>> {
        self.with(|db| all_in(&db.begin_read()?.open_table(SNAPSHOTS)?))
    }

    pub fn ids(&self) -> Result<HashMap<u64, String>> {
        self.with(|db| ids_in(&db.begin_read()?.open_table(IDS)?))
    }

    /// Structural self-check: ids, children and parent chains agree with the records.
    pub fn check(&self) -> Result<Vec<String>> {
        self.with(|db| Self::check_in(&db.begin_read()?))
    }

    fn check_in(tx: &redb::ReadTransaction) -> Result<Vec<String>> {
        let snaps = all_in(&tx.open_table(SNAPSHOTS)?)?;
        let ids = ids_in(&tx.open_table(IDS)?)?;
        let mut problems = Vec::new();
        let by_key: HashMap<&str, &Record> = snaps.iter().map(|(k, r)| (k.as_str(), r)).collect();
        if ids.len() != snaps.len() {
            problems.push(format!("{} ids for {} snapshots", ids.len(), snaps.len()));
        }
        let mut expect_children = Vec::new();
        for (k, r) in &snaps {
            if ids.get(&r.id).map(String::as_str) != Some(k.as_str()) {
                problems.push(format!("id {} does not map back to {k:?}", r.id));
            }
            if !r.parent.is_empty() {
                match by_key.get(r.parent.as_str()) {
                    Some(p) if p.kind == Kind::Committed => {
                        let mut chain = vec![p.id];
                        chain.extend(&p.parent_ids);
                        if chain != r.parent_ids {
                            problems.push(format!("{k:?}: parent chain mismatch"));
                        }
                        expect_children.push((p.id, r.id));
                    }
                    _ => problems.push(format!("{k:?}: parent {:?} missing", r.parent)),
                }
            }
        }
        let children = tx.open_table(CHILDREN)?;
        let mut have = Vec::new();
        for e in children.iter()? {
            let (k, _) = e?;
            have.push(k.value());
        }
        expect_children.sort_unstable();
        have.sort_unstable();
        if have != expect_children {
            problems.push(format!(
                "children table {have:?} != expected {expect_children:?}"
            ));
        }
        Ok(problems)
    }
}

/// The write transaction, and the open database under it (fields drop in order: the
/// transaction ends before the database may be closed).
pub struct WriteTx<'a> {
    tx: redb::WriteTransaction,
    store: &'a Store,
    _open: RwLockReadGuard<'a, Option<Database>>,
}

impl WriteTx<'_> {
    pub fn get(&self, key: &str) -> Result<Record> {
        get_in(&self.tx.open_table(SNAPSHOTS)?, key)
    }

    pub fn ids(&self) -> Result<HashMap<u64, String>> {
        ids_in(&self.tx.open_table(IDS)?)
    }

    fn put(&self, key: &str, r: &Record) -> Result<()> {
        self.tx
            .open_table(SNAPSHOTS)?
            .insert(key, encode(r).as_slice())?;
        Ok(())
    }

    fn next_id(&self) -> Result<u64> {
        let mut meta = self.tx.open_table(META)?;
        let id = meta.get(NEXT_ID)?.map(|v| v.value()).unwrap_or(1);
        meta.insert(NEXT_ID, id + 1)?;
        Ok(id)
    }

    /// Creates an active snapshot or a view on top of `parent` (a committed snapshot or "").
    pub fn create(
        &self,
        kind: Kind,
        key: &str,
        parent: &str,
        labels: BTreeMap<String, String>,
    ) -> Result<Record> {
        if kind == Kind::Committed {
            return Err(Error::InvalidArgument(
                "only active snapshots and views can be created".into(),
            ));
        }
        let mut parent_ids = Vec::new();
        if !parent.is_empty() {
            let p = self.get(parent).map_err(|e| match e {
                Error::NotFound(_) => Error::NotFound(format!("parent {parent}")),
                e => e,
            })?;
            if p.kind != Kind::Committed {
                return Err(Error::InvalidArgument(format!(
                    "parent {parent:?} is not a committed snapshot"
                )));
            }
            parent_ids.push(p.id);
            parent_ids.extend(&p.parent_ids);
        }
        if self.tx.open_table(SNAPSHOTS)?.get(key)?.is_some() {
            return Err(Error::AlreadyExists(key.to_string()));
        }
        let id = self.next_id()?;
        let now = Timestamp::now();
        let r = Record {
            id,
            kind,
            parent: parent.to_string(),
            parent_ids,
            labels,
            created: now,
            updated: now,
            usage: Usage::default(),
        };
        self.put(key, &r)?;
        self.tx.open_table(IDS)?.insert(id, key)?;
        if let Some(&pid) = r.parent_ids.first() {
            self.tx.open_table(CHILDREN)?.insert((pid, id), ())?;
        }
        Ok(r)
    }

    /// Turns active snapshot `key` into committed snapshot `name` (same id, same directory),
    /// rebased onto committed snapshot `parent` when one is named (a snapshot prepared without
    /// a parent takes it; one with a parent must already have that one).
    pub fn commit_active(
        &self,
        key: &str,
        name: &str,
        parent: &str,
        labels: BTreeMap<String, String>,
        usage: Usage,
    ) -> Result<Record> {
        if self.tx.open_table(SNAPSHOTS)?.get(name)?.is_some() {
            return Err(Error::AlreadyExists(name.to_string()));
        }
        let mut r = self.get(key)?;
        if r.kind != Kind::Active {
            return Err(Error::FailedPrecondition(format!(
                "snapshot {key:?} is not active"
            )));
        }
        if !parent.is_empty() && r.parent != parent {
            if !r.parent.is_empty() {
                return Err(Error::FailedPrecondition(format!(
                    "snapshot {key:?} has parent {:?}: it cannot be rebased onto {parent:?}",
                    r.parent
                )));
            }
            let p = self.get(parent)?;
            if p.kind != Kind::Committed {
                return Err(Error::FailedPrecondition(format!(
                    "rebase parent {parent:?} is not committed"
                )));
            }
            r.parent = parent.to_string();
            r.parent_ids = std::iter::once(p.id).chain(p.parent_ids).collect();
            self.tx.open_table(CHILDREN)?.insert((p.id, r.id), ())?;
        }
        let now = Timestamp::now();
        r.kind = Kind::Committed;
        r.labels = labels;
        r.created = now;
        r.updated = now;
        r.usage = usage;
        self.tx.open_table(SNAPSHOTS)?.remove(key)?;
        self.put(name, &r)?;
        self.tx.open_table(IDS)?.insert(r.id, name)?;
        Ok(r)
    }

    pub fn remove(&self, key: &str) -> Result<Record> {
        let r = self.get(key)?;
        let mut children = self.tx.open_table(CHILDREN)?;
        if children
            .range((r.id, 0)..=(r.id, u64::MAX))?
            .next()
            .is_some()
        {
            return Err(Error::FailedPrecondition(format!(
                "cannot remove snapshot {key:?} with children"
            )));
        }
        if let Some(&pid) = r.parent_ids.first() {
            children.remove((pid, r.id))?;
        }
        drop(children);
        self.tx.open_table(SNAPSHOTS)?.remove(key)?;
        self.tx.open_table(IDS)?.remove(r.id)?;
        Ok(r)
    }

    /// containerd's `UpdateInfo`: with no field paths the labels are replaced, `labels` replaces
    /// them too, `labels.<k>` sets (or, when absent from `labels`, clears) one label.
    pub fn update(
        &self,
        key: &str,
        labels: &BTreeMap<String, String>,
        fieldpaths: &[String],
    ) -> Result<Info> {
        let mut r = self.get(key)?;
        if fieldpaths.is_empty() {
            r.labels = labels.clone();
        }
        for path in fieldpaths {
            if let Some(k) = path.strip_prefix("labels.") {
                match labels.get(k) {
                    Some(v) => r.labels.insert(k.to_string(), v.clone()),
                    None => r.labels.remove(k),
                };
            } else if path == "labels" {
                r.labels = labels.clone();
            } else {
                return Err(Error::InvalidArgument(format!(
                    "cannot update {path:?} field on snapshot {key:?}"
                )));
            }
        }
        validate_labels(&r.labels)?;
        r.updated = Timestamp::now();
        self.put(key, &r)?;
        Ok(r.info(key))
    }

    /// Makes the transaction durable (redb fsyncs before returning).
    pub fn commit(self) -> Result<()> {
        let WriteTx { tx, store, _open } = self;
        let r = tx.commit().map_err(Error::from);
        drop(_open);
        store.checked(r)
    }

    /// Makes the transaction visible without an fsync: it becomes durable with the next
    /// [`commit`](Self::commit) or [`Store::sync`], and a crash before either loses it (redb
    /// opens at its last durable commit, which every later durable commit includes).
    pub fn commit_unsynced(mut self) -> Result<()> {
        self.tx.set_durability(redb::Durability::None);
        self.commit()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, Store) {
        let d = tempfile::tempdir().unwrap();
        let s = Store::open(&d.path().join("m.redb")).unwrap();
        (d, s)
    }

    fn labels(kv: &[(&str, &str)]) -> BTreeMap<String, String> {
        kv.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn create(s: &Store, kind: Kind, key: &str, parent: &str) -> Result<Record> {
        let tx = s.write()?;
        let r = tx.create(kind, key, parent, BTreeMap::new())?;
        tx.commit()?;
        Ok(r)
    }

    fn commit(s: &Store, key: &str, name: &str, usage: Usage) -> Result<Record> {
        let tx = s.write()?;
        let r = tx.commit_active(key, name, "", labels(&[("c", "1")]), usage)?;
        tx.commit()?;
        Ok(r)
    }

    #[test]
    fn lifecycle_parent_chain_and_errors() {
        let (_d, s) = store();
        let a = create(&s, Kind::Active, "ns/1/a", "").unwrap();
        assert_eq!(a.id, 1);
        assert!(matches!(
            create(&s, Kind::Active, "ns/1/a", ""),
            Err(Error::AlreadyExists(_))
        ));
        assert!(matches!(
            create(&s, Kind::Active, "b", "ns/1/a"),
            Err(Error::InvalidArgument(_)) // parent not committed
        ));
        assert!(matches!(
            create(&s, Kind::Active, "b", "missing"),
            Err(Error::NotFound(_))
        ));
        let u = Usage {
            size: 4096,
            inodes: 3,
        };
        let c = commit(&s, "ns/1/a", "L1", u).unwrap();
        assert_eq!((c.id, c.kind, c.usage), (1, Kind::Committed, u));
        assert_eq!(c.labels, labels(&[("c", "1")]));
        assert!(matches!(s.get("ns/1/a"), Err(Error::NotFound(_))));
        // commit errors: existing target first, then missing key, then not active
        create(&s, Kind::Active, "x", "L1").unwrap();
        assert!(matches!(
            commit(&s, "x", "L1", u),
            Err(Error::AlreadyExists(_))
        ));
        assert!(matches!(
            commit(&s, "nope", "L9", u),
            Err(Error::NotFound(_))
        ));
        create(&s, Kind::View, "v", "L1").unwrap();
        assert!(matches!(
            commit(&s, "v", "L9", u),
            Err(Error::FailedPrecondition(_))
        ));
        let l2 = commit(&s, "x", "L2", u).unwrap();
        assert_eq!(l2.parent, "L1");
        let top = create(&s, Kind::Active, "top", "L2").unwrap();
        assert_eq!(top.parent_ids, vec![l2.id, 1]);
        assert!(s.check().unwrap().is_empty(), "{:?}", s.check());

        // removing a parent fails; children first
        let rm = |k: &str| -> Result<Record> {
            let tx = s.write()?;
            let r = tx.remove(k)?;
            tx.commit()?;
            Ok(r)
        };
        assert!(matches!(rm("L1"), Err(Error::FailedPrecondition(_))));
        assert!(matches!(rm("L2"), Err(Error::FailedPrecondition(_))));
        assert!(matches!(rm("nope"), Err(Error::NotFound(_))));
        rm("top").unwrap();
        rm("L2").unwrap();
        rm("v").unwrap();
        rm("L1").unwrap();
        assert!(s.all().unwrap().is_empty());
        assert!(s.ids().unwrap().is_empty());
        assert!(s.check().unwrap().is_empty());
        // ids are never reused
        assert_eq!(create(&s, Kind::Active, "again", "").unwrap().id, 5);
    }

    #[test]
    fn aborted_transaction_leaves_nothing_and_reopen_keeps_data() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("m.redb");
        {
            let s = Store::open(&p).unwrap();
            create(&s, Kind::Active, "kept", "").unwrap();
            let tx = s.write().unwrap();
            tx.create(Kind::Active, "dropped", "", BTreeMap::new())
                .unwrap();
            drop(tx); // abort
            assert!(matches!(s.get("dropped"), Err(Error::NotFound(_))));
        }
        let s = Store::open(&p).unwrap();
        assert_eq!(s.get("kept").unwrap().id, 1);
        assert!(s.get("dropped").is_err());
        // the aborted id allocation was rolled back too
        assert_eq!(create(&s, Kind::Active, "next", "").unwrap().id, 2);
    }

    #[test]
    fn update_fieldpaths() {
        let (_d, s) = store();
        let tx = s.write().unwrap();
        tx.create(Kind::Active, "k", "", labels(&[("a", "1"), ("b", "2")]))
            .unwrap();
        tx.commit().unwrap();
        let up = |l: &[(&str, &str)], paths: &[&str]| {
            let tx = s.write()?;
            let paths: Vec<String> = paths.iter().map(|p| p.to_string()).collect();
            let i = tx.update("k", &labels(l), &paths)?;
            tx.commit()?;
            Ok::<_, Error>(i)
        };
        let i = up(&[("a", "9"), ("z", "x")], &["labels.a"]).unwrap();
        assert_eq!(i.labels, labels(&[("a", "9"), ("b", "2")]));
        let i = up(&[], &["labels.b"]).unwrap();
        assert_eq!(i.labels, labels(&[("a", "9")]));
        let i = up(&[("n", "1")], &["labels"]).unwrap();
        assert_eq!(i.labels, labels(&[("n", "1")]));
        let i = up(&[("m", "2")], &[]).unwrap();
        assert_eq!(i.labels, labels(&[("m", "2")]));
        assert!(i.updated.secs >= i.created.secs);
        assert!(matches!(
            up(&[], &["parent"]),
            Err(Error::InvalidArgument(_))
        ));
        assert!(matches!(up(&[], &["kind"]), Err(Error::InvalidArgument(_))));
        let tx = s.write().unwrap();
        assert!(matches!(
            tx.update("missing", &BTreeMap::new(), &[]),
            Err(Error::NotFound(_))
        ));
    }

    #[test]
    fn key_and_label_validation() {
        for ok in [
            "k8s.io/12/sha256:abc",
            "a",
            "extract-1 sha256:x",
            "a..b",
            "/x",
        ] {
            validate_key("key", ok).unwrap();
        }
        let long = "x".repeat(MAX_KEY_LEN + 1);
        for bad in ["", "a/../b", "..", "a/.", "nul\0x", "tab\tx", long.as_str()] {
            assert!(
                matches!(validate_key("key", bad), Err(Error::InvalidArgument(_))),
                "{bad:?}"
            );
        }
        validate_labels(&labels(&[("k", "v")])).unwrap();
        let big = "v".repeat(MAX_LABEL_LEN);
        assert!(validate_labels(&labels(&[("k", big.as_str())])).is_err());
        assert!(validate_labels(&labels(&[("", "v")])).is_err());
    }

    /// A too-long label whose key has a multibyte character across every byte the error message
    /// could cut it at: an InvalidArgument, never a panic (the daemon aborts on one).
    #[test]
    fn too_long_label_with_multibyte_key_is_refused_not_a_panic() {
        for pad in 0..4 {
            let key = format!("{}{}", "k".repeat(60 + pad), "é€😀".repeat(8));
            let value = "v".repeat(MAX_LABEL_LEN);
            let r = std::panic::catch_unwind(|| validate_labels(&labels(&[(&key, &value)])));
            assert!(
                matches!(r, Ok(Err(Error::InvalidArgument(_)))),
                "key of {} bytes: {:?}",
                key.len(),
                r.map(|r| r.map_err(|e| e.to_string()))
            );
        }
    }
}

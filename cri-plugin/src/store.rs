//! What podshim-sandboxer must not forget across its own restart (or the node's): every pod
//! shim it started, whether it serves a sandbox or waits in the warm pool. One `redb` file
//! (`<state_dir>/sandboxer.redb`): ACID, fsync'ed commits, a crash leaves the last committed
//! state (the same store podshim-snapshotter uses).
//!
//! An I/O error (a full disk) fails the request that met it and closes the database: redb
//! answers every later request with `PreviousIo` until it is opened again, which rolls it back
//! to its last commit. The next request opens it again, so the daemon serves again as soon as
//! the disk has room, without a restart.
//!
//! A shim is recorded *before* its process is started and forgotten only after it is gone and
//! its bundle removed, so no shim is ever running without a record naming it.
//!
//! Tables:
//! * `sandboxes`: (namespace, sandbox id) → JSON [`SandboxRecord`]
//! * `pool`: shim id → JSON [`ShimRecord`] (idle shims; adopting one moves it to `sandboxes` in
//!   one transaction)

use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock};

use log::warn;
use redb::{Database, ReadableTable, TableDefinition};
use serde::{de::DeserializeOwned, Deserialize, Serialize};

use crate::error::{Error, Result};

const SANDBOXES: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("sandboxes");
const POOL: TableDefinition<&str, &[u8]> = TableDefinition::new("pool");

pub const FILE_NAME: &str = "sandboxer.redb";

pub use podshim_common::time::Timestamp;

/// A pod shim process as started: enough to reach it, to tell whether it is still there and to
/// clean up after it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShimRecord {
    /// The shim's `-id` (the sandbox id, or a pool id).
    pub id: String,
    /// The shim's `-namespace`: the containerd namespace its tasks live in.
    pub namespace: String,
    /// Its working directory, also the sandbox bundle.
    pub bundle: PathBuf,
    /// `unix:///run/containerd/s/<hash>`, known before the process starts.
    pub address: String,
    /// 0 until the shim answered on its socket.
    pub pid: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum State {
    /// Controller.Create has not answered yet: containerd does not know this sandbox, so a
    /// restart finding it here tears it down.
    Creating,
    Created,
    Started,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SandboxRecord {
    pub namespace: String,
    pub sandbox_id: String,
    pub shim: ShimRecord,
    pub state: State,
    /// The namespace holder's pid (StartSandbox).
    pub pid: u32,
    pub created_at: Timestamp,
    /// When the sandbox was first seen gone with its shim (the shim cannot tell any more).
    pub exited_at: Option<Timestamp>,
}

pub struct Store {
    path: PathBuf,
    /// `None` from an I/O error until the next request opens the database again. A request
    /// holds the read lock for all its transaction's life: the database is never closed under
    /// a transaction (redb's file lock is released only once all of them are gone).
    db: RwLock<Option<Database>>,
}

fn encode<T: Serialize>(v: &T) -> Vec<u8> {
    // Serializing these plain structs to JSON cannot fail.
    serde_json::to_vec(v).unwrap_or_default()
}

/// An error after which redb refuses every request until the database is opened again.
fn needs_reopen(e: &Error) -> bool {
    matches!(e, Error::Store(e) if matches!(**e, redb::Error::Io(_) | redb::Error::PreviousIo))
}

fn decode<T: DeserializeOwned>(key: &str, b: &[u8]) -> Result<T> {
    serde_json::from_slice(b).map_err(|source| Error::Corrupt {
        key: key.to_string(),
        source,
    })
}

impl Store {
    pub fn open(state_dir: &Path) -> Result<Store> {
        std::fs::create_dir_all(state_dir)
            .map_err(|e| Error::io(format!("create {}", state_dir.display()), e))?;
        let path = state_dir.join(FILE_NAME);
        let db = Database::create(&path)?;
        let tx = db.begin_write()?;
        tx.open_table(SANDBOXES)?;
        tx.open_table(POOL)?;
        tx.commit()?;
        Ok(Store {
            path,
            db: RwLock::new(Some(db)),
        })
    }

    /// Runs one request's transaction on the database, opening it first if an I/O error
    /// closed it; an I/O error closes it.
    fn with<T>(&self, f: impl FnOnce(&Database) -> Result<T>) -> Result<T> {
        let r = loop {
            let open = self.db.read().unwrap_or_else(PoisonError::into_inner);
            if let Some(db) = &*open {
                break f(db);
            }
            drop(open);
            let mut closed = self.db.write().unwrap_or_else(PoisonError::into_inner);
            if closed.is_none() {
                *closed = Some(Database::create(&self.path)?);
                warn!("sandbox store {} opened again", self.path.display());
            }
        };
        if let Err(e) = &r {
            if needs_reopen(e) {
                warn!("sandbox store {}: {e}: closed", self.path.display());
                *self.db.write().unwrap_or_else(PoisonError::into_inner) = None;
            }
        }
        r
    }

    /// Runs `f` on a blocking thread: a write's commit fsyncs, and the daemon's one runtime
    /// thread serves every pod's requests meanwhile. Async callers write through here.
    pub async fn off_thread<T: Send + 'static>(
        self: &Arc<Self>,
        f: impl FnOnce(&Store) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let store = self.clone();
        tokio::task::spawn_blocking(move || f(&store))
            .await
            .unwrap_or_else(|e| Err(Error::io("sandbox store write", std::io::Error::other(e))))
    }

    pub fn put_sandbox(&self, r: &SandboxRecord) -> Result<()> {
        self.with(|db| {
            let tx = db.begin_write()?;
            tx.open_table(SANDBOXES)?.insert(
                (r.namespace.as_str(), r.sandbox_id.as_str()),
                encode(r).as_slice(),
            )?;
            tx.commit()?;
            Ok(())
        })
    }

    pub fn remove_sandbox(&self, namespace: &str, id: &str) -> Result<()> {
        self.with(|db| {
            let tx = db.begin_write()?;
            tx.open_table(SANDBOXES)?.remove((namespace, id))?;
            tx.commit()?;
            Ok(())
        })
    }

    pub fn sandboxes(&self) -> Result<Vec<SandboxRecord>> {
        self.each_sandbox()?.into_iter().collect()
    }

    /// Every sandbox record, each decoded on its own: one that cannot be is, in its place, the
    /// error naming its key.
    pub fn each_sandbox(&self) -> Result<Vec<Result<SandboxRecord>>> {
        self.with(|db| {
            let tx = db.begin_read()?;
            let t = tx.open_table(SANDBOXES)?;
            let mut v = Vec::new();
            for row in t.iter()? {
                let (k, val) = row?;
                let (ns, id) = k.value();
                v.push(decode(&format!("{ns}/{id}"), val.value()));
            }
            Ok(v)
        })
    }

    pub fn put_pool(&self, r: &ShimRecord) -> Result<()> {
        self.with(|db| {
            let tx = db.begin_write()?;
            tx.open_table(POOL)?
                .insert(r.id.as_str(), encode(r).as_slice())?;
            tx.commit()?;
            Ok(())
        })
    }

    pub fn remove_pool(&self, id: &str) -> Result<()> {
        self.with(|db| {
            let tx = db.begin_write()?;
            tx.open_table(POOL)?.remove(id)?;
            tx.commit()?;
            Ok(())
        })
    }

    pub fn pool(&self) -> Result<Vec<ShimRecord>> {
        self.each_pool()?.into_iter().collect()
    }

    /// Every pool record, each decoded on its own (as [`Store::each_sandbox`]).
    pub fn each_pool(&self) -> Result<Vec<Result<ShimRecord>>> {
        self.with(|db| {
            let tx = db.begin_read()?;
            let t = tx.open_table(POOL)?;
            let mut v = Vec::new();
            for row in t.iter()? {
                let (k, val) = row?;
                v.push(decode(k.value(), val.value()));
            }
            Ok(v)
        })
    }

    /// Moves the idle shim `r.shim` out of the pool into the sandbox `r`: at every instant the
    /// shim is recorded exactly once.
    pub fn adopt(&self, r: &SandboxRecord) -> Result<()> {
        self.with(|db| {
            let tx = db.begin_write()?;
            {
                let mut pool = tx.open_table(POOL)?;
                if pool.remove(r.shim.id.as_str())?.is_none() {
                    return Err(Error::NotFound(format!(
                        "pool shim {} is not in the pool",
                        r.shim.id
                    )));
                }
                tx.open_table(SANDBOXES)?.insert(
                    (r.namespace.as_str(), r.sandbox_id.as_str()),
                    encode(r).as_slice(),
                )?;
            }
            tx.commit()?;
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shim(id: &str) -> ShimRecord {
        ShimRecord {
            id: id.into(),
            namespace: "k8s.io".into(),
            bundle: format!("/b/{id}").into(),
            address: format!("unix:///run/containerd/s/{id}"),
            pid: 0,
        }
    }

    fn sandbox(ns: &str, id: &str, shim: ShimRecord) -> SandboxRecord {
        SandboxRecord {
            namespace: ns.into(),
            sandbox_id: id.into(),
            shim,
            state: State::Creating,
            pid: 0,
            created_at: Timestamp::now(),
            exited_at: None,
        }
    }

    #[test]
    fn records_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let mut a = sandbox("k8s.io", "a", shim("a"));
        {
            let s = Store::open(dir.path()).unwrap();
            s.put_sandbox(&a).unwrap();
            a.state = State::Started;
            a.pid = 42;
            s.put_sandbox(&a).unwrap();
            // Same id in another namespace is another sandbox.
            s.put_sandbox(&sandbox("default", "a", shim("a2"))).unwrap();
            s.put_pool(&shim("p1")).unwrap();
        }
        let s = Store::open(dir.path()).unwrap();
        let all = s.sandboxes().unwrap();
        assert_eq!(all.len(), 2);
        assert!(all.contains(&a));
        assert_eq!(s.pool().unwrap(), vec![shim("p1")]);
        s.remove_sandbox("k8s.io", "a").unwrap();
        s.remove_sandbox("k8s.io", "never-there").unwrap();
        assert_eq!(s.sandboxes().unwrap().len(), 1);
        s.remove_pool("p1").unwrap();
        assert!(s.pool().unwrap().is_empty());
    }

    #[test]
    fn adoption_moves_the_shim_exactly_once() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        s.put_pool(&shim("p1")).unwrap();
        s.put_pool(&shim("p2")).unwrap();
        let r = sandbox("k8s.io", "sb", shim("p1"));
        s.adopt(&r).unwrap();
        assert_eq!(s.pool().unwrap(), vec![shim("p2")]);
        assert_eq!(s.sandboxes().unwrap(), vec![r.clone()]);
        // A second adoption of the same pool shim fails and changes nothing.
        let again = sandbox("k8s.io", "other", shim("p1"));
        assert!(s.adopt(&again).unwrap_err().is_not_found());
        assert_eq!(s.sandboxes().unwrap(), vec![r]);
        assert_eq!(s.pool().unwrap(), vec![shim("p2")]);
    }

    /// A small tmpfs on a temp dir, to fill up; unmounted when dropped, also by a failing test.
    struct Tmpfs(tempfile::TempDir);

    impl Tmpfs {
        /// Only root mounts: the tests run as root.
        fn mount(size: &str) -> Tmpfs {
            assert!(
                nix::unistd::geteuid().is_root(),
                "a full disk needs a tmpfs of the test's own: run the tests as root"
            );
            let dir = tempfile::tempdir().unwrap();
            nix::mount::mount(
                Some("tmpfs"),
                dir.path(),
                Some("tmpfs"),
                nix::mount::MsFlags::empty(),
                Some(format!("size={size}").as_str()),
            )
            .unwrap();
            Tmpfs(dir)
        }

        fn path(&self) -> &Path {
            self.0.path()
        }

        /// Writes a file until the tmpfs is full (ENOSPC); returns its path.
        fn fill(&self) -> PathBuf {
            use std::io::Write;
            let p = self.path().join("filler");
            let mut f = std::fs::File::create(&p).unwrap();
            let chunk = vec![0xa5u8; 64 * 1024];
            loop {
                match f.write(&chunk) {
                    Ok(n) if n > 0 => {}
                    Ok(_) => panic!("write of 0 bytes"),
                    Err(e) if e.kind() == std::io::ErrorKind::StorageFull => return p,
                    Err(e) => panic!("filling {}: {e}", p.display()),
                }
            }
        }
    }

    impl Drop for Tmpfs {
        fn drop(&mut self) {
            let _ = nix::mount::umount2(self.path(), nix::mount::MntFlags::MNT_DETACH);
        }
    }

    /// A full disk fails the write that found it full (ResourceExhausted at the gRPC edge, and
    /// nothing of it kept); once there is room again the next write succeeds, with no restart.
    #[test]
    fn a_full_disk_fails_one_write_and_the_next_succeeds_once_there_is_room() {
        let fs = Tmpfs::mount("1m");
        let s = Store::open(fs.path()).unwrap();
        let kept = sandbox("k8s.io", "kept", shim("kept"));
        s.put_sandbox(&kept).unwrap();
        let filler = fs.fill();
        let e = s
            .put_sandbox(&sandbox("k8s.io", "lost", shim("lost")))
            .unwrap_err();
        let status = crate::controller::to_status(e);
        assert_eq!(
            status.code(),
            tonic::Code::ResourceExhausted,
            "{}",
            status.message()
        );
        std::fs::remove_file(filler).unwrap();
        let next = sandbox("k8s.io", "next", shim("next"));
        s.put_sandbox(&next).unwrap();
        assert_eq!(s.sandboxes().unwrap(), vec![kept, next]);
    }

    #[test]
    fn a_corrupt_record_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        s.with(|db| {
            let tx = db.begin_write()?;
            tx.open_table(SANDBOXES)?
                .insert(("ns", "bad"), b"{".as_slice())?;
            tx.commit()?;
            Ok(())
        })
        .unwrap();
        let e = s.sandboxes().unwrap_err().to_string();
        assert!(e.contains("ns/bad"), "{e}");
    }

    /// A write waiting on its disk (a slow fsync, here a channel only the runtime thread can
    /// release) leaves the daemon's one runtime thread free: it goes on, and releases it.
    #[tokio::test(flavor = "current_thread")]
    async fn a_write_waiting_on_its_disk_leaves_the_runtime_thread_free() {
        let dir = tempfile::tempdir().unwrap();
        let s = Arc::new(Store::open(dir.path()).unwrap());
        let (release, disk) = std::sync::mpsc::channel::<&str>();
        // Should the write hold the runtime thread, nothing else could release it: a watchdog
        // does, and says so.
        let watchdog = release.clone();
        std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_secs(10));
            let _ = watchdog.send("watchdog");
        });
        let write = s.off_thread(move |s| {
            let by = disk.recv().unwrap();
            s.put_pool(&shim("p1")).map(|()| by)
        });
        tokio::pin!(write);
        tokio::select! {
            biased;
            _ = &mut write => panic!("the write finished before its disk answered"),
            _ = tokio::task::yield_now() => {}
        }
        release.send("runtime thread").unwrap();
        assert_eq!(write.await.unwrap(), "runtime thread");
        assert_eq!(s.pool().unwrap(), vec![shim("p1")]);
    }
}

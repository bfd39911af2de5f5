//! Where each thing lives under the snapshotter's root; the one place that spells the names.
//!
//! * `metadata.redb`         — the store
//! * `snapshots/<id>/fs`     — the snapshot's directory (overlay upperdir / lowerdir)
//! * `snapshots/<id>/work`   — overlay workdir (active snapshots only)
//! * `snapshots/<id>/rw.ext4` — a size-limited snapshot's filesystem, holding `fs` and `work`,
//!   mounted over `snapshots/<id>` (which hides it): `size_limit.rs`
//! * `tmp/new-<id>`          — a snapshot directory being built
//! * `trash/`                — directories being deleted

use std::path::{Path, PathBuf};

/// The metadata store, in the root.
pub const STORE_FILE: &str = "metadata.redb";

#[derive(Clone, Debug)]
pub struct Layout {
    pub root: PathBuf,
    pub snapshots: PathBuf,
    pub tmp: PathBuf,
    pub trash: PathBuf,
}

impl Layout {
    pub fn of(root: &Path) -> Layout {
        Layout {
            root: root.to_path_buf(),
            snapshots: root.join("snapshots"),
            tmp: root.join("tmp"),
            trash: root.join("trash"),
        }
    }

    pub fn store(&self) -> PathBuf {
        self.root.join(STORE_FILE)
    }

    pub fn dir(&self, id: u64) -> PathBuf {
        self.snapshots.join(id.to_string())
    }

    pub fn upper(&self, id: u64) -> PathBuf {
        self.dir(id).join("fs")
    }

    pub fn work(&self, id: u64) -> PathBuf {
        self.dir(id).join("work")
    }

    /// The filesystem image of a size-limited snapshot whose directory is `dir`.
    pub fn image_in(dir: &Path) -> PathBuf {
        dir.join("rw.ext4")
    }

    /// Where Prepare builds the directory of snapshot `id` before renaming it into place.
    pub fn new_dir(&self, id: u64) -> PathBuf {
        self.tmp.join(format!("new-{id}"))
    }

    /// The id a directory in `snapshots/` is named after.
    pub fn id_of(name: &std::ffi::OsStr) -> Option<u64> {
        name.to_str().and_then(|n| n.parse().ok())
    }
}

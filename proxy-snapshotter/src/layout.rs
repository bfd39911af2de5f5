//! Where each thing lives under the snapshotter's root; the one place that spells the names.
//!
//! * `metadata.redb`         — the store
//! * `snapshots/<id>/fs`     — the snapshot's directory (overlay upperdir / lowerdir)
//! * `snapshots/<id>/work`   — overlay workdir (active snapshots only)
//! * `snapshots/<id>/rw.ext4` — a size-limited snapshot's filesystem, holding `fs` and `work`,
//!   mounted over `snapshots/<id>` (which hides it): `size_limit.rs`
//! * `tmp/new-<id>`          — a snapshot directory being built
//! * `spare/<n>`             — an active snapshot's empty directories, made ahead (`spares.rs`)
//! * `trash/`                — directories being deleted

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::error::{IoContext, Result};

/// The metadata store, in the root.
pub const STORE_FILE: &str = "metadata.redb";

#[derive(Clone, Debug)]
pub struct Layout {
    pub root: PathBuf,
    pub snapshots: PathBuf,
    pub tmp: PathBuf,
    pub spare: PathBuf,
    pub trash: PathBuf,
}

impl Layout {
    pub fn of(root: &Path) -> Layout {
        Layout {
            root: root.to_path_buf(),
            snapshots: root.join("snapshots"),
            tmp: root.join("tmp"),
            spare: root.join("spare"),
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

    /// The empty layer directories inside a new snapshot's directory `at`: `fs` and, for an
    /// active snapshot, `work`.
    pub fn make_layer(at: &Path, active: bool) -> Result<()> {
        mkdir_mode(&at.join("fs"), 0o755)?;
        if active {
            mkdir_mode(&at.join("work"), 0o711)?;
        }
        Ok(())
    }

    /// The id a directory in `snapshots/` is named after.
    pub fn id_of(name: &std::ffi::OsStr) -> Option<u64> {
        name.to_str().and_then(|n| n.parse().ok())
    }
}

/// Makes directory `p` with exactly `mode`, whatever the daemon's umask.
pub fn mkdir_mode(p: &Path, mode: u32) -> Result<()> {
    fs::create_dir(p).ctx(|| format!("mkdir {}", p.display()))?;
    fs::set_permissions(p, fs::Permissions::from_mode(mode))
        .ctx(|| format!("chmod {}", p.display()))
}

//! Which binaries a run starts: the workspace's builds, or the run's private copies of them
//! (`Options::private_bins`) that [`Containerd::upgrade_binaries`] replaces under running pods.

use std::fs::{self, File};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use super::{Containerd, Options, SnapshotterUse};
use crate::{images, snapshotter, sys};

/// The binaries one run starts.
pub(super) struct Bins {
    /// Holds `containerd-shim-podshim-v1` and its holder; first on containerd's PATH.
    pub shim_dir: PathBuf,
    pub sandboxer: PathBuf,
    /// podshim-snapshotter, when the run uses it.
    pub snapshotter: Option<PathBuf>,
}

impl Bins {
    /// Finds the builds and checks they are there; with `private_bins`, copies them into
    /// `<dir>/bin` first.
    pub fn resolve(opts: &Options, dir: &Path) -> Result<Bins> {
        let built_dir = shim_bin_dir(opts.shim_bin_dir.as_deref());
        if super::is_podshim(&opts.handler) || opts.private_bins {
            // The shim would run a pause-less pod without its holder binary too, only fatter:
            // tests insist on the pair as it ships.
            for name in ["containerd-shim-podshim-v1", podshim_holder::BINARY] {
                let bin = built_dir.join(name);
                anyhow::ensure!(
                    bin.exists(),
                    "podshim binary not found at {} (build it: `cargo build -p podshim-shim`, or set PODSHIM_BIN_DIR)",
                    bin.display()
                );
            }
        }
        let snapshotter = match opts.snapshotter {
            SnapshotterUse::Off => None,
            _ => Some(snapshotter::bin_path()?),
        };
        if !opts.private_bins {
            return Ok(Bins {
                sandboxer: sandboxer_bin(&built_dir),
                shim_dir: built_dir,
                snapshotter,
            });
        }
        let private = dir.join("bin");
        fs::create_dir_all(&private)?;
        for name in ["containerd-shim-podshim-v1", podshim_holder::BINARY] {
            copy_binary(&built_dir.join(name), &private.join(name))?;
        }
        let sandboxer = if opts.runs_sandboxer() {
            let p = private.join("podshim-sandboxer");
            copy_binary(&sandboxer_bin(&built_dir), &p)?;
            p
        } else {
            sandboxer_bin(&private)
        };
        let snapshotter = match snapshotter {
            Some(built) => {
                let p = private.join("podshim-snapshotter");
                copy_binary(&built, &p)?;
                Some(p)
            }
            None => None,
        };
        Ok(Bins {
            shim_dir: private,
            sandboxer,
            snapshotter,
        })
    }
}

/// Where `podshim-sandboxer` is looked up: `$PODSHIM_SANDBOXER_BIN`, next to the shim, then the
/// workspace's debug and release builds.
pub fn sandboxer_bin(shim_dir: &Path) -> PathBuf {
    if let Some(p) = std::env::var_os("PODSHIM_SANDBOXER_BIN") {
        return PathBuf::from(p);
    }
    let root = images::repo_root();
    [
        shim_dir.to_path_buf(),
        root.join("target/debug"),
        root.join("target/release"),
    ]
    .into_iter()
    .map(|d| d.join("podshim-sandboxer"))
    .find(|p| p.exists())
    .unwrap_or_else(|| root.join("target/debug/podshim-sandboxer"))
}

/// Where `containerd-shim-podshim-v1` is looked up.
pub fn shim_bin_dir(opt: Option<&Path>) -> PathBuf {
    if let Some(p) = opt {
        return p.to_path_buf();
    }
    if let Some(p) = std::env::var_os("PODSHIM_BIN_DIR") {
        return PathBuf::from(p);
    }
    let root = images::repo_root();
    let debug = root.join("target/debug");
    if debug.join("containerd-shim-podshim-v1").exists() {
        return debug;
    }
    let release = root.join("target/release");
    if release.join("containerd-shim-podshim-v1").exists() {
        return release;
    }
    debug
}

impl Containerd {
    /// Replaces every binary of the run's private bin dir (`Options::private_bins`) as a package
    /// upgrade does: the new file is written beside the old one and renamed over it, so each
    /// path names a new file (same bytes, new inode) while processes started from the old one
    /// keep running it (their `/proc/<pid>/exe` reads `<path> (deleted)`). Whatever is started
    /// from these paths from now on runs the new files. Returns each path with the identity of
    /// its old and its new file. Restarting the daemons is the caller's step, as it is the
    /// package's.
    pub fn upgrade_binaries(&self) -> Result<Vec<(PathBuf, sys::FileId, sys::FileId)>> {
        anyhow::ensure!(
            self.opts.private_bins,
            "this run has no private bin dir (Options::private_bins)"
        );
        let mut out = Vec::new();
        let mut entries: Vec<PathBuf> = fs::read_dir(self.dir.join("bin"))?
            .map(|e| e.map(|e| e.path()))
            .collect::<std::io::Result<_>>()?;
        entries.sort();
        for path in entries {
            let old = sys::file_id(&path).with_context(|| format!("{}", path.display()))?;
            let tmp = path.with_extension("podshim-new");
            copy_binary(&path, &tmp)?;
            fs::rename(&tmp, &path)
                .with_context(|| format!("renaming {} over {}", tmp.display(), path.display()))?;
            let new = sys::file_id(&path).with_context(|| format!("{}", path.display()))?;
            anyhow::ensure!(old != new, "{} kept its inode", path.display());
            out.push((path, old, new));
        }
        Ok(out)
    }
}

/// A copy of the executable `from` at `to` (a new file, mode kept), written out before it is
/// used: a process must never exec a file still open for writing (ETXTBSY).
pub(super) fn copy_binary(from: &Path, to: &Path) -> Result<()> {
    fs::copy(from, to)
        .with_context(|| format!("copying {} to {}", from.display(), to.display()))?;
    File::open(to)?.sync_all()?;
    Ok(())
}

/// The first `name` on PATH.
pub(super) fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(name))
            .find(|p| p.is_file())
    })
}

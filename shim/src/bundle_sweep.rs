//! What containerd left of the bundles of this pod's containers.
//!
//! containerd removes a deleted task's bundle by renaming `<id>` to `.<id>` beside it and then
//! removing that tree. A containerd that exits in between (stopped while it rolls back a
//! CreateTask its own shutdown cancelled) leaves `.<id>` for good: its loader skips hidden names
//! and nothing else looks there. The pod's shim notes the bundle of every CreateTask it is sent
//! and, at each Delete and at ShutdownSandbox, removes the `.<id>` beside each noted bundle.
//!
//! Invariant: only `.<id>` beside a bundle a CreateTask named is removed. It is always a
//! leftover: containerd makes it only by renaming `<id>` in a task's delete, and makes a new
//! `<id>` only after that delete returned or was cut short. A bundle is forgotten once neither
//! `<id>` nor `.<id>` is there.

use std::{
    io,
    path::{Path, PathBuf},
    sync::Mutex,
};

use log::{info, warn};

/// At most this many bundles noted (a pod's live containers and those being removed).
const MAX_NOTED: usize = 4096;

#[derive(Default)]
pub struct BundleSweep {
    noted: Mutex<Vec<PathBuf>>,
}

impl BundleSweep {
    /// A CreateTask named `bundle`.
    pub fn note(&self, bundle: &Path) {
        let mut noted = self.lock();
        if noted.iter().any(|b| b == bundle) {
            return;
        }
        if noted.len() == MAX_NOTED {
            let oldest = noted.remove(0);
            warn!(
                "no longer watching {} for containerd's leftovers",
                oldest.display()
            );
        }
        noted.push(bundle.to_path_buf());
    }

    /// Removes what containerd left of the noted bundles; forgets those that are gone.
    pub fn sweep(&self) {
        let noted = std::mem::take(&mut *self.lock());
        let kept: Vec<PathBuf> = noted.into_iter().filter(|b| !swept(b)).collect();
        let mut noted = self.lock();
        for b in kept {
            if !noted.contains(&b) {
                noted.push(b);
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<PathBuf>> {
        self.noted.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Removes `.<id>` beside `bundle`; whether neither is there any more.
fn swept(bundle: &Path) -> bool {
    let Some(hidden) = hidden(bundle) else {
        return true;
    };
    // Only a leftover, a directory, goes to the cold `remove`.
    match std::fs::symlink_metadata(&hidden) {
        Ok(m) if m.is_dir() => match remove(&hidden) {
            Ok(()) => info!("removed {}, which containerd left", hidden.display()),
            Err(e) => {
                warn!("remove {}: {e}", hidden.display());
                return false;
            }
        },
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => {
            warn!("look at {}: {e}", hidden.display());
            return false;
        }
    }
    !bundle.exists()
}

/// `<dir>/.<id>` for `<dir>/<id>`.
fn hidden(bundle: &Path) -> Option<PathBuf> {
    let name = bundle.file_name()?.to_str()?;
    Some(bundle.with_file_name(format!(".{name}")))
}

/// Removes the directory tree `dir`. Whatever is mounted below it is detached first, so the
/// removal never enters a filesystem (a rootfs mounted after containerd unmounted it).
/// containerd may be removing the tree too: a tree that vanished under the removal counts as
/// removed. Out of line: only a leftover runs it, and build.rs puts it with the cold text.
#[inline(never)]
fn remove(dir: &Path) -> io::Result<()> {
    crate::rootfs::detach_all(dir)
        .map_err(|e| io::Error::other(format!("unmount below it: {e}")))?;
    match std::fs::remove_dir_all(dir) {
        Err(e) if dir.exists() => Err(e),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dirs(root: &Path, names: &[&str]) {
        for n in names {
            std::fs::create_dir_all(root.join(n)).unwrap();
            std::fs::write(root.join(n).join("config.json"), "{}").unwrap();
        }
    }

    #[test]
    fn a_noted_bundle_is_kept_until_neither_it_nor_its_leftover_is_there() {
        let tmp = tempfile::tempdir().unwrap();
        let ns = tmp.path();
        dirs(ns, &["live", ".gone", "stale", ".stale", ".unnoted"]);
        let sweep = BundleSweep::default();
        for id in ["live", "gone", "stale", "never-made"] {
            sweep.note(&ns.join(id));
        }
        sweep.note(&ns.join("live"));
        sweep.sweep();

        // containerd cut short after its rename: removed, and forgotten.
        assert!(!ns.join(".gone").exists());
        // a leftover of an earlier container of the same id: removed; the bundle is kept.
        assert!(!ns.join(".stale").exists());
        assert!(ns.join("stale").exists() && ns.join("live").exists());
        // no CreateTask named it.
        assert!(ns.join(".unnoted").exists());
        assert_eq!(*sweep.lock(), vec![ns.join("live"), ns.join("stale")]);

        // containerd removes `live` whole, and `stale` halfway.
        std::fs::remove_dir_all(ns.join("live")).unwrap();
        std::fs::rename(ns.join("stale"), ns.join(".stale")).unwrap();
        sweep.sweep();
        assert!(!ns.join(".stale").exists());
        assert!(sweep.lock().is_empty());
    }

    /// A filesystem mounted below a leftover is detached, never emptied.
    #[test]
    fn a_mount_below_a_leftover_is_detached_not_emptied() {
        let tmp = tempfile::tempdir().unwrap();
        let rootfs = tmp.path().join(".c1/rootfs");
        std::fs::create_dir_all(&rootfs).unwrap();
        let fs = tempfile::tempdir().unwrap();
        std::fs::write(fs.path().join("kept"), "x").unwrap();
        nix::mount::mount(
            Some(fs.path()),
            &rootfs,
            None::<&str>,
            nix::mount::MsFlags::MS_BIND,
            None::<&str>,
        )
        .expect("bind mount (the shim's tests run as root)");
        // Whatever the outcome, no mount outlives the test.
        struct Unmount(PathBuf);
        impl Drop for Unmount {
            fn drop(&mut self) {
                let _ = nix::mount::umount2(&self.0, nix::mount::MntFlags::MNT_DETACH);
            }
        }
        let _unmount = Unmount(rootfs.clone());
        let sweep = BundleSweep::default();
        sweep.note(&tmp.path().join("c1"));
        sweep.sweep();
        assert!(!tmp.path().join(".c1").exists());
        assert!(
            fs.path().join("kept").exists(),
            "the mounted tree was emptied"
        );
    }

    #[test]
    fn a_leftover_that_is_not_a_directory_is_not_touched() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(tmp.path().join(".c1"), "x").unwrap();
        let sweep = BundleSweep::default();
        sweep.note(&tmp.path().join("c1"));
        sweep.sweep();
        assert!(tmp.path().join(".c1").exists());
        assert!(sweep.lock().is_empty());
    }
}

//! What Prepare makes, whichever way its directories came: a spare made ahead (`spares.rs`) or
//! made in line. As containerd's overlayfs: the snapshot's directory 0700, `fs` 0755 owned by
//! the owner of the parent's root, `work` 0711 (active snapshots only).
#![deny(unsafe_code)]

mod common;

use std::collections::{BTreeMap, HashSet};
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::snapshot_dir;
use podshim_snapshotter::spares::READY;
use podshim_snapshotter::{Config, Snapshotter};

fn mode(p: &Path) -> u32 {
    fs::metadata(p).unwrap().permissions().mode() & 0o7777
}

fn owner(p: &Path) -> (u32, u32) {
    let m = fs::metadata(p).unwrap();
    (m.uid(), m.gid())
}

/// The inodes of the spares ready in `root`, once [`READY`] are.
fn ready_spares(root: &Path) -> HashSet<u64> {
    let t = Instant::now();
    loop {
        let inos: HashSet<u64> = fs::read_dir(root.join("spare"))
            .unwrap()
            .map(|e| e.unwrap().metadata().unwrap().ino())
            .collect();
        if inos.len() == READY {
            return inos;
        }
        assert!(t.elapsed() < Duration::from_secs(10), "spares: {inos:?}");
        std::thread::sleep(Duration::from_millis(1));
    }
}

fn assert_made(dir: &Path, active: bool, want_owner: (u32, u32)) {
    assert_eq!(mode(dir), 0o700, "{}", dir.display());
    assert_eq!(mode(&dir.join("fs")), 0o755, "{}", dir.display());
    assert_eq!(owner(&dir.join("fs")), want_owner, "{}", dir.display());
    assert_eq!(fs::read_dir(dir.join("fs")).unwrap().count(), 0);
    if active {
        assert_eq!(mode(&dir.join("work")), 0o711, "{}", dir.display());
    } else {
        assert!(!dir.join("work").exists(), "{}", dir.display());
    }
}

#[test]
fn prepared_directories_have_containerds_modes_and_the_parents_owner() {
    if !common::is_root() {
        eprintln!("SKIPPED: giving a layer's root another owner needs root");
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("root");
    let s = Snapshotter::open(Config::new(&root)).unwrap();
    let base = snapshot_dir(&s.prepare("base-a", "", BTreeMap::new()).unwrap());
    std::os::unix::fs::chown(base.join("fs"), Some(1000), Some(1001)).unwrap();
    s.commit("base", "base-a", "", BTreeMap::new()).unwrap();

    // Taken from a spare: the snapshot's directory is one of the spares that were ready.
    let spares = ready_spares(&root);
    let one = snapshot_dir(&s.prepare("one", "base", BTreeMap::new()).unwrap());
    assert!(
        spares.contains(&fs::metadata(&one).unwrap().ino()),
        "{} is not a spare",
        one.display()
    );
    assert_made(&one, true, (1000, 1001));
    assert_eq!(ready_spares(&root).len(), READY, "the maker refills");

    // Back to back, more than are ready: the rest are made in line, the same.
    let burst: Vec<PathBuf> = (0..2 * READY + 2)
        .map(|i| {
            snapshot_dir(
                &s.prepare(&format!("burst-{i}"), "base", BTreeMap::new())
                    .unwrap(),
            )
        })
        .collect();
    for d in &burst {
        assert_made(d, true, (1000, 1001));
    }
    // Without a parent, the daemon's own; a view (always made in line) has no work dir.
    let free = snapshot_dir(&s.prepare("free", "", BTreeMap::new()).unwrap());
    assert_made(&free, true, (0, 0));
    let view = s.view("view", "base", BTreeMap::new()).unwrap();
    let view_dir = root.join("snapshots").join(
        fs::read_dir(root.join("snapshots"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .max_by_key(|n| n.to_string_lossy().parse::<u64>().unwrap())
            .unwrap(),
    );
    assert_eq!(view.len(), 1, "{view:?}");
    assert_made(&view_dir, false, (1000, 1001));
}

//! Prepare does not fsync its rename (redb's commit is the only fsync on its path). A power loss can
//! therefore leave a committed record whose directory is still in `tmp/`, or whose mkdir was lost
//! altogether; opening the snapshotter must put it back before anything is served. The crash is
//! simulated by undoing the rename (or the mkdir) on disk while the snapshotter is closed.
#![deny(unsafe_code)]

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use common::snapshot_dir;
use podshim_snapshotter::{Config, Snapshotter};

fn open(root: &Path) -> Snapshotter {
    Snapshotter::open(Config::new(root)).unwrap()
}

#[test]
fn lost_rename_is_redone_with_its_content() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("root");
    let s = open(&root);
    let dir = snapshot_dir(&s.prepare("a", "", BTreeMap::new()).unwrap());
    fs::write(dir.join("fs/written-after-prepare"), b"kept").unwrap();
    drop(s);

    // The rename never reached the disk: the directory is where Prepare built it.
    let id = dir.file_name().unwrap().to_string_lossy().into_owned();
    let in_tmp = root.join("tmp").join(format!("new-{id}"));
    fs::rename(&dir, &in_tmp).unwrap();

    let s = open(&root);
    assert_eq!(snapshot_dir(&s.mounts("a").unwrap()), dir);
    assert_eq!(
        fs::read(dir.join("fs/written-after-prepare")).unwrap(),
        b"kept"
    );
    assert!(!in_tmp.exists());
    assert_eq!(s.check().unwrap(), Vec::<String>::new());
}

#[test]
fn lost_mkdir_is_made_again_empty() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("root");
    let s = open(&root);
    s.prepare("base-active", "", BTreeMap::new()).unwrap();
    s.commit("base", "base-active", "", BTreeMap::new())
        .unwrap();
    let dir = snapshot_dir(&s.prepare("b", "base", BTreeMap::new()).unwrap());
    drop(s);

    fs::remove_dir_all(&dir).unwrap();

    let s = open(&root);
    let m = s.mounts("b").unwrap();
    assert_eq!(snapshot_dir(&m), dir);
    assert!(dir.join("fs").is_dir() && dir.join("work").is_dir());
    assert_eq!(fs::read_dir(dir.join("fs")).unwrap().count(), 0);
    assert_eq!(s.check().unwrap(), Vec::<String>::new());
}

#[test]
fn committed_snapshot_without_directory_is_reported_not_invented() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("root");
    let s = open(&root);
    let dir = snapshot_dir(&s.prepare("l-active", "", BTreeMap::new()).unwrap());
    s.commit("l", "l-active", "", BTreeMap::new()).unwrap();
    drop(s);

    fs::remove_dir_all(&dir).unwrap();

    let s = open(&root);
    assert!(!dir.exists(), "content of a committed layer was made up");
    let problems = s.check().unwrap();
    assert!(
        problems.iter().any(|p| p.contains("missing fs dir")),
        "{problems:?}"
    );
}

#[test]
fn lost_move_into_trash_leaves_garbage_that_open_deletes() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("root");
    let s = open(&root);
    let dir = snapshot_dir(&s.prepare("gone", "", BTreeMap::new()).unwrap());
    fs::write(dir.join("fs/written"), b"x").unwrap();
    s.remove("gone").unwrap();
    drop(s);

    // Remove's move into trash/ is not fsynced: after a power loss the removed snapshot's
    // directory may be back under snapshots/, named by an id no record holds (ids are never
    // reused).
    fs::create_dir_all(&dir).unwrap();
    fs::create_dir_all(dir.join("fs")).unwrap();
    fs::write(dir.join("fs/written"), b"x").unwrap();

    let s = open(&root);
    assert!(!dir.exists(), "{} survived the open", dir.display());
    assert!(s.mounts("gone").is_err());
    assert_eq!(s.check().unwrap(), Vec::<String>::new());
    let again = snapshot_dir(&s.prepare("gone", "", BTreeMap::new()).unwrap());
    assert_ne!(again, dir, "a removed snapshot's id was given out again");
    assert_eq!(fs::read_dir(again.join("fs")).unwrap().count(), 0);
}

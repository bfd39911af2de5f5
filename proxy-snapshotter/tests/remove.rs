//! What a Remove leaves, and when (`removals.rs`): its directory stays in `snapshots/` until a
//! round has made the deletion durable, then goes through `trash/`, with no Cleanup asked for.
#![deny(unsafe_code)]

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use common::snapshot_dir;
use podshim_snapshotter::{Config, Error, Snapshotter};

fn entries(d: &Path) -> usize {
    fs::read_dir(d).unwrap().count()
}

#[test]
fn a_removed_snapshots_directory_goes_after_its_round_without_cleanup() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("root");
    let s = Snapshotter::open(Config::new(&root)).unwrap();
    let m = s.prepare("a", "", BTreeMap::new()).unwrap();
    let dir = snapshot_dir(&m);
    fs::write(dir.join("fs/f"), b"x").unwrap();
    s.remove("a").unwrap();
    // Gone for every caller at once; on disk until the round.
    assert!(matches!(s.stat("a"), Err(Error::NotFound(_))));
    assert!(
        dir.join("fs/f").exists(),
        "moved before the deletion was durable"
    );
    let t0 = Instant::now();
    while entries(&root.join("snapshots")) + entries(&root.join("trash")) > 0 {
        assert!(t0.elapsed() < Duration::from_secs(10), "not settled");
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(s.check().unwrap(), Vec::<String>::new());
}

#[test]
fn settled_removes_stay_removed_after_the_snapshotter_is_opened_again() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("root");
    {
        let s = Snapshotter::open(Config::new(&root)).unwrap();
        for k in ["a", "b", "c"] {
            s.prepare(k, "", BTreeMap::new()).unwrap();
        }
        s.remove("a").unwrap();
        s.remove("b").unwrap();
        s.settle_removals().unwrap();
        assert_eq!(entries(&root.join("snapshots")), 1);
    }
    let s = Snapshotter::open(Config::new(&root)).unwrap();
    let keys: Vec<String> = s.list(&[]).unwrap().into_iter().map(|i| i.name).collect();
    assert_eq!(keys, vec!["c".to_string()]);
}

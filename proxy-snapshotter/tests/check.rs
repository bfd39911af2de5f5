//! `podshim-snapshotter check` reports what a start would find, beside a daemon that holds the
//! store open, and changes nothing; after a start, only what a start cannot repair is left.
#![deny(unsafe_code)]

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::snapshot_dir;
use podshim_snapshotter::{Config, Snapshotter};

fn check(root: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_podshim-snapshotter"))
        .args(["check", "--root"])
        .arg(root)
        .output()
        .unwrap()
}

fn lines(o: &Output) -> Vec<String> {
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

/// Every path under `root` with its size, to show that a check changed nothing.
fn tree(root: &Path) -> Vec<(PathBuf, u64)> {
    let mut v = Vec::new();
    let mut todo = vec![root.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let m = e.metadata().unwrap();
            if m.is_dir() {
                todo.push(e.path());
            }
            v.push((e.path(), if m.is_dir() { 0 } else { m.len() }));
        }
    }
    v.sort();
    v
}

fn copies_left() -> usize {
    fs::read_dir(std::env::temp_dir())
        .unwrap()
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("podshim-snapshotter-check-")
        })
        .count()
}

#[test]
fn check_reports_what_a_start_would_find_and_changes_nothing() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("root");
    let s = Snapshotter::open(Config::new(&root)).unwrap();
    let lost = snapshot_dir(&s.prepare("lost-active", "", BTreeMap::new()).unwrap());
    s.commit("lost", "lost-active", "", BTreeMap::new())
        .unwrap();
    let base = snapshot_dir(&s.prepare("base-active", "", BTreeMap::new()).unwrap());
    s.commit("base", "base-active", "", BTreeMap::new())
        .unwrap();
    let renamed = snapshot_dir(&s.prepare("renamed", "base", BTreeMap::new()).unwrap());
    let emptied = snapshot_dir(&s.prepare("emptied", "base", BTreeMap::new()).unwrap());

    // In order, beside the open store (redb's lock held by `s`).
    let o = check(&root);
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    assert_eq!(
        lines(&o),
        [format!("{}: nothing to report", root.display())]
    );

    // What a crash, a power loss or a hand could leave.
    fs::remove_dir_all(&lost).unwrap();
    let id = |d: &Path| d.file_name().unwrap().to_string_lossy().into_owned();
    fs::rename(
        &renamed,
        root.join("tmp").join(format!("new-{}", id(&renamed))),
    )
    .unwrap();
    fs::remove_dir_all(&emptied).unwrap();
    fs::create_dir(root.join("snapshots/999")).unwrap();
    fs::create_dir(root.join("trash/x")).unwrap();
    let before = tree(&root);

    let o = check(&root);
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    let mut got = lines(&o);
    got.sort();
    let root_s = root.display();
    let mut want = vec![
        format!(
            "\"lost\" (id {}): missing fs dir: its content is lost (remove the image and pull it again)",
            id(&lost)
        ),
        format!(
            "\"renamed\" (id {}): missing fs dir: still at tmp/ (a start renames it into place)",
            id(&renamed)
        ),
        format!(
            "\"emptied\" (id {}): missing fs dir: a start makes it again, empty",
            id(&emptied)
        ),
        format!("unreferenced {root_s}/snapshots/999 (a start deletes it)"),
        format!("{root_s}/tmp not empty: 1 entries (a start deletes them)"),
        format!("{root_s}/trash not empty: 1 entries (a start deletes them)"),
    ];
    want.sort();
    assert_eq!(got, want);
    assert_eq!(tree(&root), before, "the check changed the root");
    assert!(base.join("fs").is_dir());
    drop(s);

    // A start repairs all but the lost layer, which the check still names.
    let s = Snapshotter::open(Config::new(&root)).unwrap();
    drop(s);
    let o = check(&root);
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    assert_eq!(lines(&o).len(), 1, "{o:?}");
    assert!(lines(&o)[0].starts_with("\"lost\""), "{o:?}");
    assert_eq!(copies_left(), 0, "the check left its store copy");
}

#[test]
fn check_of_a_missing_root_fails_with_exit_2() {
    let t = tempfile::tempdir().unwrap();
    let o = check(&t.path().join("nowhere"));
    assert_eq!(o.status.code(), Some(2), "{o:?}");
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("nowhere"),
        "{o:?}"
    );
}

//! Where snapshot directories are born: `tmp/` is a top directory for ext4's Orlov allocator
//! (`chattr +T`), so each new snapshot directory is placed in a block group of its own choosing
//! instead of beside the daemon's other files; a filesystem without the flag serves as before.
#![deny(unsafe_code)]

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use podshim_snapshotter::{Config, Snapshotter};

/// `lsattr -d`'s flags of `p`, or None where the filesystem has no such attributes.
fn attrs(p: &Path) -> Option<String> {
    let o = Command::new("lsattr").arg("-d").arg(p).output().unwrap();
    o.status.success().then(|| {
        String::from_utf8_lossy(&o.stdout)
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .to_string()
    })
}

fn fs_type(p: &Path) -> String {
    let o = Command::new("stat")
        .args(["-f", "-c", "%T"])
        .arg(p)
        .output()
        .unwrap();
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

#[test]
fn snapshot_directories_are_born_in_a_top_directory_on_ext4() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("root");
    let s = Snapshotter::open(Config::new(&root)).unwrap();
    let fs = fs_type(t.path());
    if fs == "ext2/ext3" {
        // stat(1) names every ext* filesystem so.
        let a = attrs(&root.join("tmp")).expect("lsattr on ext4");
        assert!(a.contains('T'), "tmp/ flags {a:?}, want T");
        assert!(!attrs(&root.join("snapshots")).unwrap().contains('T'));
    } else {
        eprintln!("temp dir on {fs}, not ext4: only the snapshotter's working is checked");
    }
    s.prepare("a", "", BTreeMap::new()).unwrap();
}

/// tmpfs has no `T` flag: the snapshotter opens and serves as before.
#[test]
fn a_filesystem_without_the_flag_serves_as_before() {
    if !common::is_root() {
        eprintln!("SKIPPED: mounting a tmpfs needs root");
        return;
    }
    let fs = common::Tmpfs::mount("16m");
    let s = Snapshotter::open(Config::new(fs.path().join("root"))).unwrap();
    assert!(attrs(&fs.path().join("root/tmp")).is_none_or(|a| !a.contains('T')));
    s.prepare("a", "", BTreeMap::new()).unwrap();
    s.commit("a1", "a", "", BTreeMap::new()).unwrap();
    s.prepare("b", "a1", BTreeMap::new()).unwrap();
}

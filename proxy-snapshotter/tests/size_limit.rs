//! Size-limited snapshots (`containerd.io/snapshot/max-size`): on btrfs with quotas, a write past
//! the limit fails with the kernel's EDQUOT and Remove deletes the snapshot's subvolume; where the
//! root cannot keep a limit (ext4, tmpfs, btrfs with quotas off) Prepare is refused with
//! FailedPrecondition and leaves no record, directory or subvolume; a malformed limit is an
//! InvalidArgument.
#![deny(unsafe_code)]

mod common;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use common::{snapshot_dir, Btrfs};
use podshim_snapshotter::size_limit::MAX_SIZE;
use podshim_snapshotter::{Config, Error, Snapshotter};

const MIB: u64 = 1024 * 1024;

fn limit(bytes: &str) -> BTreeMap<String, String> {
    BTreeMap::from([(MAX_SIZE.to_string(), bytes.to_string())])
}

/// Writes `mib` MiB into a new file in `dir`, syncing; the first error.
fn write_mib(dir: &Path, name: &str, mib: u64) -> std::io::Result<()> {
    let mut f = std::fs::File::create(dir.join(name))?;
    let chunk = vec![0x5au8; MIB as usize];
    for _ in 0..mib {
        f.write_all(&chunk)?;
    }
    f.sync_all()
}

fn entries(p: &Path) -> Vec<String> {
    std::fs::read_dir(p)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

/// A limited Prepare on the snapshotter at `root` fails with FailedPrecondition saying `reason`,
/// and leaves no record and nothing in tmp/ or snapshots/.
fn assert_refused(root: &Path, reason: &str) {
    let s = Snapshotter::open(Config::new(root)).unwrap();
    let e = s.prepare("a", "", limit("1048576")).unwrap_err();
    assert!(
        matches!(&e, Error::FailedPrecondition(m) if m.contains(reason)),
        "{e}"
    );
    assert!(matches!(s.stat("a"), Err(Error::NotFound(_))));
    assert_eq!(entries(&root.join("tmp")), Vec::<String>::new());
    assert_eq!(entries(&root.join("snapshots")), Vec::<String>::new());
}

#[test]
fn on_btrfs_a_write_past_the_limit_fails_and_remove_deletes_the_subvolume() {
    let Some(fs) = Btrfs::mount("512M", true) else {
        return;
    };
    let root = fs.path().join("root");
    let s = Snapshotter::open(Config::new(&root)).unwrap();
    let m = s
        .prepare("limited", "", limit(&(16 * MIB).to_string()))
        .unwrap();
    let upper = snapshot_dir(&m).join("fs");
    write_mib(&upper, "small", 8).expect("8 MiB fit in a 16 MiB limit");
    let e = write_mib(&upper, "big", 32).expect_err("a write past the limit");
    assert_eq!(e.raw_os_error(), Some(libc::EDQUOT), "{e}");
    assert_eq!(
        s.stat("limited").unwrap().labels.get(MAX_SIZE),
        Some(&(16 * MIB).to_string())
    );
    // Without the label: no limit.
    let m = s.prepare("free", "", BTreeMap::new()).unwrap();
    write_mib(&snapshot_dir(&m).join("fs"), "big", 32).unwrap();

    assert_eq!(fs.subvolumes().len(), 1, "{:?}", fs.subvolumes());
    s.remove("limited").unwrap();
    assert_eq!(fs.subvolumes(), Vec::<String>::new());
    s.remove("free").unwrap();
}

#[test]
fn btrfs_with_quotas_off_refuses_a_limit_and_keeps_nothing() {
    let Some(fs) = Btrfs::mount("256M", false) else {
        return;
    };
    assert_refused(&fs.path().join("root"), "btrfs quota enable");
    assert_eq!(fs.subvolumes(), Vec::<String>::new());
}

#[test]
fn a_root_that_cannot_keep_a_limit_refuses_it_and_keeps_nothing() {
    let t = tempfile::tempdir().unwrap();
    assert_refused(&t.path().join("root"), "cannot limit a snapshot's size");
}

#[test]
fn a_malformed_limit_is_an_invalid_argument() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("root");
    let s = Snapshotter::open(Config::new(&root)).unwrap();
    for bad in ["", "abc", "0", "-5", "1.5", "99999999999999999999"] {
        let e = s.prepare("a", "", limit(bad)).unwrap_err();
        assert!(matches!(e, Error::InvalidArgument(_)), "{bad:?}: {e}");
    }
    s.prepare("p", "", BTreeMap::new()).unwrap();
    s.commit("c", "p", "", BTreeMap::new()).unwrap();
    let e = s.view("v", "c", limit("1048576")).unwrap_err();
    assert!(matches!(e, Error::InvalidArgument(_)), "a view: {e}");
    assert!(matches!(s.stat("a"), Err(Error::NotFound(_))));
    assert!(matches!(s.stat("v"), Err(Error::NotFound(_))));
}

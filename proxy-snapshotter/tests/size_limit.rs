//! Size-limited snapshots (`containerd.io/snapshot/max-size`): the snapshot's layer is an ext4
//! image of that size mounted over its directory, on any root (ext4 and btrfs here). A write
//! past the limit fails with ENOSPC; the filesystem is mounted again after a restart and after a
//! reboot (committed too); Remove, and a start after a crash between mount and commit, leave no
//! mount, loop device or directory. A node without mkfs.ext4 refuses the limit with
//! FailedPrecondition and keeps nothing; a malformed limit is an InvalidArgument.
#![deny(unsafe_code)]

mod common;

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};

use common::{is_root, loops_under, mounts_under, snapshot_dir, umount_under, Btrfs, Daemon};
use containerd_client::services::v1::snapshots::PrepareSnapshotRequest;
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

/// A temp dir for a snapshotter root whose mounts go with it, also when a test fails. None,
/// said on stderr, where loop devices cannot be had (not root).
struct Root(tempfile::TempDir);

impl Root {
    fn new() -> Option<Root> {
        if !is_root() || !Path::new("/dev/loop-control").exists() {
            eprintln!("SKIPPED: size-limited snapshots need root and loop devices");
            return None;
        }
        Some(Root(tempfile::tempdir().unwrap()))
    }

    fn path(&self) -> PathBuf {
        self.0.path().join("root")
    }
}

impl Drop for Root {
    fn drop(&mut self) {
        umount_under(self.0.path());
    }
}

/// Nothing of a size-limited snapshot is left under `root`: no mount, no loop device, and
/// nothing in tmp/ or snapshots/.
fn assert_nothing_left(root: &Path) {
    assert_eq!(mounts_under(root), Vec::<PathBuf>::new(), "mounts");
    assert_eq!(loops_under(root), Vec::<String>::new(), "loop devices");
    assert_eq!(entries(&root.join("tmp")), Vec::<String>::new());
    assert_eq!(entries(&root.join("snapshots")), Vec::<String>::new());
}

/// On the snapshotter at `root`: a 16 MiB snapshot holds 8 MiB and refuses 32 MiB more with
/// ENOSPC; one without the label takes them; Remove leaves nothing.
fn write_past_the_limit(root: &Path) {
    let s = Snapshotter::open(Config::new(root)).unwrap();
    let m = s
        .prepare("limited", "", limit(&(16 * MIB).to_string()))
        .unwrap();
    let dir = snapshot_dir(&m);
    assert_eq!(mounts_under(root), vec![dir.clone()]);
    let upper = dir.join("fs");
    write_mib(&upper, "small", 8).expect("8 MiB fit in a 16 MiB limit");
    let e = write_mib(&upper, "big", 32).expect_err("a write past the limit");
    assert_eq!(e.raw_os_error(), Some(libc::ENOSPC), "{e}");
    assert_eq!(
        s.stat("limited").unwrap().labels.get(MAX_SIZE),
        Some(&(16 * MIB).to_string())
    );
    // Without the label: no limit, no mount of its own.
    let m = s.prepare("free", "", BTreeMap::new()).unwrap();
    write_mib(&snapshot_dir(&m).join("fs"), "big", 32).unwrap();
    assert_eq!(mounts_under(root), vec![dir]);

    s.remove("limited").unwrap();
    s.remove("free").unwrap();
    // A removed snapshot's directory goes once its removal is durable (`removals.rs`).
    s.settle_removals().unwrap();
    assert_nothing_left(root);
}

#[test]
fn a_write_past_the_limit_fails_with_enospc_on_ext4() {
    let Some(r) = Root::new() else {
        return;
    };
    write_past_the_limit(&r.path());
}

#[test]
fn a_write_past_the_limit_fails_with_enospc_on_btrfs() {
    let Some(fs) = Btrfs::mount("512M") else {
        return;
    };
    write_past_the_limit(&fs.path().join("root"));
}

/// A limited snapshot, committed, and an active one on top: each keeps its files, its limit
/// and its Usage across a restart (mounts stay) and a reboot (mounts gone, the next start makes
/// them again).
#[test]
fn limited_snapshots_are_mounted_again_after_a_restart_and_a_reboot() {
    let Some(r) = Root::new() else {
        return;
    };
    let root = r.path();
    let s = Snapshotter::open(Config::new(&root)).unwrap();
    let m = s
        .prepare("base", "", limit(&(8 * MIB).to_string()))
        .unwrap();
    let base = snapshot_dir(&m);
    std::fs::write(base.join("fs/base-file"), "base").unwrap();
    s.commit("base-c", "base", "", BTreeMap::new()).unwrap();
    let m = s
        .prepare("top", "base-c", limit(&(16 * MIB).to_string()))
        .unwrap();
    let top = snapshot_dir(&m);
    std::fs::write(top.join("fs/top-file"), "top").unwrap();
    let usage = s.usage("top").unwrap();
    assert!(usage.inodes >= 1 && usage.size > 0, "{usage:?}");
    drop(s);

    let check = |s: &Snapshotter| {
        assert_eq!(mounts_under(&root).len(), 2, "{:?}", mounts_under(&root));
        assert_eq!(
            std::fs::read_to_string(base.join("fs/base-file")).unwrap(),
            "base"
        );
        assert_eq!(
            std::fs::read_to_string(top.join("fs/top-file")).unwrap(),
            "top"
        );
        assert!(top.join("work").is_dir());
        let e = write_mib(&top.join("fs"), "big", 32).expect_err("still limited");
        assert_eq!(e.raw_os_error(), Some(libc::ENOSPC), "{e}");
        std::fs::remove_file(top.join("fs/big")).unwrap();
        assert_eq!(
            s.usage("top").unwrap(),
            usage,
            "Usage from the mounted filesystem"
        );
        assert_eq!(s.check().unwrap(), Vec::<String>::new());
    };
    // A restart: the mounts stayed.
    let s = Snapshotter::open(Config::new(&root)).unwrap();
    check(&s);
    drop(s);

    // A reboot: no mount, the images in the directories. An offline check finds it in order.
    umount_under(&root);
    assert_eq!(mounts_under(&root), Vec::<PathBuf>::new());
    assert!(top.join("rw.ext4").is_file() && base.join("rw.ext4").is_file());
    assert_eq!(
        podshim_snapshotter::check::check(&root).unwrap(),
        Vec::<String>::new()
    );
    let s = Snapshotter::open(Config::new(&root)).unwrap();
    check(&s);
    s.remove("top").unwrap();
    s.remove("base-c").unwrap();
    s.settle_removals().unwrap();
    assert_nothing_left(&root);
}

/// Usage of a limited snapshot, written through the overlay a container gets (files of many
/// sizes, a tree, a hard link, a symlink, a whiteout, a deletion), is exactly what a walk of its
/// whole filesystem grew by since the Prepare (the layer and overlayfs's work dir), at least
/// what its layer grew by, and the snapshotter's usage walker never ran.
#[test]
fn the_usage_of_a_limited_snapshot_comes_from_its_filesystem() {
    let Some(r) = Root::new() else {
        return;
    };
    let root = r.path();
    let s = Snapshotter::open(Config::new(&root)).unwrap();
    let m = s.prepare("base", "", BTreeMap::new()).unwrap();
    std::fs::write(snapshot_dir(&m).join("fs/from-base"), "base").unwrap();
    s.commit("base-c", "base", "", BTreeMap::new()).unwrap();
    let m = s
        .prepare("top", "base-c", limit(&(64 * MIB).to_string()))
        .unwrap();
    let top = snapshot_dir(&m);
    let walk = |p: &Path| podshim_snapshotter::usage::disk_usage(p).unwrap();
    let (all0, fs0) = (walk(&top), walk(&top.join("fs")));
    let rootfs = r.0.path().join("rootfs");
    std::fs::create_dir(&rootfs).unwrap();
    let st = std::process::Command::new("mount")
        .args(["-t", "overlay", "overlay", "-o"])
        .arg(m[0].options.join(","))
        .arg(&rootfs)
        .status()
        .unwrap();
    assert!(st.success(), "mount {m:?}");

    for (i, len) in [0usize, 1, 4095, 5000, 3 << 20].into_iter().enumerate() {
        std::fs::write(rootfs.join(format!("f{i}")), vec![7u8; len]).unwrap();
    }
    std::fs::create_dir_all(rootfs.join("a/b/c")).unwrap();
    for i in 0..200 {
        std::fs::write(rootfs.join(format!("a/b/c/s{i}")), format!("{i}")).unwrap();
    }
    std::fs::hard_link(rootfs.join("f4"), rootfs.join("f4-link")).unwrap();
    std::os::unix::fs::symlink("f3", rootfs.join("f3-link")).unwrap();
    std::fs::remove_file(rootfs.join("from-base")).unwrap();
    std::fs::remove_file(rootfs.join("a/b/c/s7")).unwrap();

    let walks = s.usage_walks();
    let u = s.usage("top").unwrap();
    let (all, fs) = (walk(&top), walk(&top.join("fs")));
    assert_eq!(
        (u.size, u.inodes),
        (all.size - all0.size, all.inodes - all0.inodes)
    );
    assert!(
        u.size >= fs.size - fs0.size && u.inodes >= fs.inodes - fs0.inodes,
        "{u:?}: less than the layer's {fs:?} - {fs0:?}"
    );
    assert!(u.size > 3 << 20 && u.inodes > 200, "{u:?}");
    assert_eq!(s.usage_walks(), walks, "Usage walked the layer");

    umount_under(&rootfs);
    s.remove("top").unwrap();
    s.remove("base-c").unwrap();
    s.settle_removals().unwrap();
    assert_nothing_left(&root);
}

/// kill -9 after the image is mounted and before the record is committed: the start after it
/// unmounts and deletes the unreferenced directory, and frees its loop device.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_between_mount_and_commit_leaves_nothing_after_a_start() {
    let Some(r) = Root::new() else {
        return;
    };
    let root = r.path();
    let sock = r.0.path().join("sock");
    let mut d = Daemon::start(
        &root,
        &sock,
        &[(
            "PODSHIM_SNAPSHOTTER_CRASHPOINT",
            "prepare.before_commit:1".into(),
        )],
        &[],
    );
    let mut c = d.client().await.expect("daemon up");
    let res = c
        .prepare(PrepareSnapshotRequest {
            snapshotter: "podsnap".into(),
            key: "limited".into(),
            parent: String::new(),
            labels: HashMap::from([(MAX_SIZE.to_string(), (4 * MIB).to_string())]),
        })
        .await;
    assert!(res.is_err(), "the daemon died in the Prepare: {res:?}");
    let st = d.child.wait().unwrap();
    assert_eq!(st.signal(), Some(libc::SIGKILL), "{st:?}");
    assert_eq!(mounts_under(&root).len(), 1, "the crash left the mount");

    let s = Snapshotter::open(Config::new(&root)).unwrap();
    assert!(matches!(s.stat("limited"), Err(Error::NotFound(_))));
    assert_nothing_left(&root);
}

/// A limited Prepare on a snapshotter without mkfs.ext4 fails with FailedPrecondition saying
/// `reason`, and leaves no record and nothing in tmp/ or snapshots/.
fn assert_refused(mkfs: Option<PathBuf>, reason: &str) {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("root");
    let mut cfg = Config::new(&root);
    cfg.mkfs = mkfs;
    let s = Snapshotter::open(cfg).unwrap();
    let e = s.prepare("a", "", limit("1048576")).unwrap_err();
    assert!(
        matches!(&e, Error::FailedPrecondition(m) if m.contains(reason)),
        "{e}"
    );
    assert!(matches!(s.stat("a"), Err(Error::NotFound(_))));
    assert_eq!(entries(&root.join("tmp")), Vec::<String>::new());
    assert_eq!(entries(&root.join("snapshots")), Vec::<String>::new());
    // Without the label the same snapshotter works.
    s.prepare("b", "", BTreeMap::new()).unwrap();
}

#[test]
fn a_node_without_mkfs_refuses_a_limit_and_keeps_nothing() {
    assert_refused(None, "mkfs.ext4 is not on PATH (package e2fsprogs)");
    assert_refused(
        Some(PathBuf::from("/nonexistent/mkfs.ext4")),
        "/nonexistent/mkfs.ext4 is not there",
    );
}

#[test]
fn a_malformed_limit_is_an_invalid_argument() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("root");
    let s = Snapshotter::open(Config::new(&root)).unwrap();
    for bad in [
        "",
        "abc",
        "0",
        "-5",
        "1.5",
        "1048575",
        "99999999999999999999",
    ] {
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

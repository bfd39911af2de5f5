//! Size-limited snapshots: containerd's `containerd.io/snapshot/max-size` label (bytes, decimal)
//! on a Prepare. containerd 2.4 defines it; `ctr run --snapshotter-label` sets it on any release.
//!
//! The limit is enforced by the kernel, never counted by us. As containerd's own erofs
//! snapshotter does for this label, a limited snapshot's layer lives in an ext4 filesystem of
//! exactly that many bytes: the sparse image `snapshots/<id>/rw.ext4` ([`Layout::image_in`]),
//! made by mkfs.ext4 with `fs/` and `work/` already in it and loop-mounted over
//! `snapshots/<id>` itself. The mount hides the image, and every path of the snapshot is the
//! one an unlimited snapshot has. A write past the limit fails inside the container with
//! ENOSPC, whatever filesystem holds the root; the filesystem's own metadata (journal, inode
//! tables) counts against the limit.
//!
//! Invariant: the mount is the only state of a snapshot outside the root, and it is made from
//! the image alone. Prepare mounts before its commit; opening the snapshotter mounts every
//! recorded image that a reboot unmounted ([`mount_if_unmounted`]); deleting any snapshot
//! directory unmounts it first ([`unmount_if_mounted`]). So a crash anywhere leaves at most a
//! mounted unreferenced directory, which cleanup unmounts and deletes. Where the node cannot
//! make such a filesystem (no mkfs.ext4, no loop devices) the Prepare is refused with
//! FailedPrecondition saying why, before anything is recorded: containerd calls the label a
//! hint that may be ignored, but a limit silently not kept would let one container fill the node.
//!
//! Usage of an active limited snapshot comes from its filesystem's counters ([`usage`]): what
//! was written since its Prepare, exact at every query, without walking the layer.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::error::{Error, IoContext, Result};
use crate::layout::Layout;
use crate::store::{Kind, Usage};
use crate::sys;

pub const MAX_SIZE: &str = "containerd.io/snapshot/max-size";

/// The smallest limit: mkfs.ext4 cannot make a filesystem much below it.
pub const MIN_SIZE: u64 = 1 << 20;

/// The limit asked for by a new snapshot's labels: None without the label.
pub fn requested(kind: Kind, labels: &BTreeMap<String, String>) -> Result<Option<u64>> {
    let Some(v) = labels.get(MAX_SIZE) else {
        return Ok(None);
    };
    let n = v
        .parse::<u64>()
        .ok()
        .filter(|&n| (MIN_SIZE..=i64::MAX as u64).contains(&n))
        .ok_or_else(|| {
            Error::InvalidArgument(format!(
                "label {MAX_SIZE}={v:?}: want a decimal number of bytes, at least {MIN_SIZE}"
            ))
        })?;
    if kind != Kind::Active {
        return Err(Error::InvalidArgument(format!(
            "label {MAX_SIZE}: only an active snapshot can be size-limited"
        )));
    }
    Ok(Some(n))
}

/// mkfs.ext4 as found on `PATH` when the snapshotter opens; None when it is not there.
pub fn find_mkfs() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join("mkfs.ext4"))
        .find(|p| p.is_file())
}

/// Refuses a limit this node cannot keep (checked before anything is recorded); else mkfs.ext4.
pub fn check_node(mkfs: Option<&Path>, limit: u64) -> Result<&Path> {
    let refuse = |why: String| {
        Err(Error::FailedPrecondition(format!(
            "label {MAX_SIZE}={limit}: podsnap cannot limit a snapshot's size on this node: {why}"
        )))
    };
    match mkfs {
        None => refuse("mkfs.ext4 is not on PATH (package e2fsprogs)".into()),
        Some(m) if !m.is_file() => refuse(format!("{} is not there", m.display())),
        Some(m) => match fs::metadata(sys::LOOP_CONTROL) {
            Ok(_) => Ok(m),
            Err(e) => refuse(format!("no loop devices ({}: {e})", sys::LOOP_CONTROL)),
        },
    }
}

/// Makes the image of a limited snapshot in `td` (an empty directory): an ext4 of `limit`
/// bytes holding the tree that `fill` makes in the directory it is given.
pub fn make_image(
    td: &Path,
    limit: u64,
    mkfs: &Path,
    fill: impl FnOnce(&Path) -> Result<()>,
) -> Result<()> {
    let tree = td.join(".tree");
    fs::create_dir(&tree).ctx(|| format!("mkdir {}", tree.display()))?;
    fill(&tree)?;
    let image = Layout::image_in(td);
    fs::File::create(&image)
        .and_then(|f| f.set_len(limit))
        .ctx(|| format!("create {}", image.display()))?;
    // -m 0: no blocks reserved for root, so the limit is the same for every user. -I 256: room
    // in each inode for nanosecond and post-2038 times and small xattrs (mkfs's default for a
    // small filesystem is 128). Lazy init and nodiscard: mkfs writes only what a fresh
    // filesystem needs, and the image stays sparse.
    let out = Command::new(mkfs)
        .args(["-q", "-F", "-m", "0", "-I", "256", "-E"])
        .arg("lazy_itable_init=1,lazy_journal_init=1,nodiscard")
        .arg("-d")
        .arg(&tree)
        .arg(&image)
        .output()
        .ctx(|| format!("run {}", mkfs.display()))?;
    if !out.status.success() {
        return Err(Error::io(
            format!("{} of {limit} bytes at {}", mkfs.display(), image.display()),
            std::io::Error::other(String::from_utf8_lossy(&out.stderr).trim().to_string()),
        ));
    }
    fs::remove_dir_all(&tree).ctx(|| format!("remove {}", tree.display()))
}

/// Whether `dir` is the root of a mount (on another device than its parent).
pub fn is_mounted(dir: &Path) -> bool {
    let dev = |p: &Path| fs::symlink_metadata(p).map(|m| m.dev()).ok();
    match (dev(dir), dir.parent().and_then(dev)) {
        (Some(d), Some(p)) => d != p,
        _ => false,
    }
}

/// Mounts the image in `dir` over `dir`, unless `dir` has no image (an unlimited snapshot) or
/// is mounted already. Returns whether it mounted.
pub fn mount_if_unmounted(dir: &Path) -> Result<bool> {
    let image = Layout::image_in(dir);
    if is_mounted(dir) || !image.is_file() {
        return Ok(false);
    }
    let f = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&image)
        .ctx(|| format!("open {}", image.display()))?;
    let (dev, dev_path) = sys::loop_attach(&f)
        .map_err(|e| Error::io(format!("loop device for {}", image.display()), e))?;
    sys::mount_ext4(&dev_path, dir).map_err(|e| {
        Error::io(
            format!(
                "mount {} ({}) on {}",
                dev_path.display(),
                image.display(),
                dir.display()
            ),
            e,
        )
    })?;
    // The mount holds the device now; closing ours lets it detach when the mount goes.
    drop(dev);
    // The filesystem's root is the snapshot directory: as private as an unlimited one's.
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
        .ctx(|| format!("chmod {}", dir.display()))?;
    record_fresh(dir)?;
    Ok(true)
}

/// Unmounts `dir` if a limited snapshot's filesystem is mounted on it (lazily: an overlay still
/// using it keeps it until that goes). The first step of deleting any snapshot directory.
pub fn unmount_if_mounted(dir: &Path) -> Result<()> {
    if !is_mounted(dir) {
        return Ok(());
    }
    sys::umount_detach(dir).ctx(|| format!("unmount {}", dir.display()))
}

/// On the root of a limited snapshot's filesystem: the bytes and inodes it used when it was
/// new ("<bytes> <inodes>"), so that [`usage`] is what was written since. Stored in the inode
/// itself (256-byte inodes), so it costs no block.
const FRESH_XATTR: &str = "trusted.podsnap.fresh";

/// The used bytes and inodes of the filesystem holding `dir`.
fn used(dir: &Path) -> Result<Usage> {
    let st = sys::statfs(dir).ctx(|| format!("statfs {}", dir.display()))?;
    Ok(Usage {
        size: ((st.blocks - st.blocks_free) * st.block_size) as i64,
        inodes: (st.inodes - st.inodes_free) as i64,
    })
}

/// Records what the filesystem mounted on `dir` uses now as its fresh state, unless recorded.
fn record_fresh(dir: &Path) -> Result<()> {
    let have = sys::get_xattr(dir, FRESH_XATTR)
        .ctx(|| format!("read {FRESH_XATTR} of {}", dir.display()))?;
    if have.is_some() {
        return Ok(());
    }
    let u = used(dir)?;
    sys::set_xattr(
        dir,
        FRESH_XATTR,
        format!("{} {}", u.size, u.inodes).as_bytes(),
    )
    .ctx(|| format!("set {FRESH_XATTR} of {}", dir.display()))
}

/// What was written into the limited snapshot mounted on `dir` since its Prepare, from its
/// filesystem's counters: the layer (`fs/`, as a walk of it counts it) and overlayfs's
/// bookkeeping in `work/` (a few inodes).
pub fn usage(dir: &Path) -> Result<Usage> {
    let fresh = sys::get_xattr(dir, FRESH_XATTR)
        .ctx(|| format!("read {FRESH_XATTR} of {}", dir.display()))?
        .and_then(|v| {
            let v = String::from_utf8(v).ok()?;
            let (b, i) = v.split_once(' ')?;
            Some(Usage {
                size: b.parse().ok()?,
                inodes: i.parse().ok()?,
            })
        })
        .ok_or_else(|| {
            Error::io(
                format!("{FRESH_XATTR} of {}", dir.display()),
                std::io::Error::from(std::io::ErrorKind::InvalidData),
            )
        })?;
    let now = used(dir)?;
    Ok(Usage {
        size: (now.size - fresh.size).max(0),
        inodes: (now.inodes - fresh.inodes).max(0),
    })
}

//! Size-limited snapshots: containerd's `containerd.io/snapshot/max-size` label (bytes, decimal)
//! on a Prepare. containerd 2.4 defines it; `ctr run --snapshotter-label` sets it on any release.
//!
//! The limit is enforced by the kernel, never counted by us: the snapshot's directory is a btrfs
//! subvolume whose qgroup may reference at most that many bytes, so a write past it fails inside
//! the container (EDQUOT, "Disk quota exceeded": btrfs's errno for a qgroup limit). Where the root
//! cannot do that (another filesystem, or btrfs with quotas off) the Prepare is refused with
//! FailedPrecondition saying why, before anything is recorded; containerd calls the label a hint
//! that may be ignored, but a limit silently not kept would let one container fill the node.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use crate::error::{Error, IoContext, Result};
use crate::store::Kind;
use crate::sys;

pub const MAX_SIZE: &str = "containerd.io/snapshot/max-size";

/// The limit asked for by a new snapshot's labels: None without the label.
pub fn requested(kind: Kind, labels: &BTreeMap<String, String>) -> Result<Option<u64>> {
    let Some(v) = labels.get(MAX_SIZE) else {
        return Ok(None);
    };
    let n = v
        .parse::<u64>()
        .ok()
        .filter(|&n| n > 0 && n <= i64::MAX as u64)
        .ok_or_else(|| {
            Error::InvalidArgument(format!(
                "label {MAX_SIZE}={v:?}: want a positive decimal number of bytes"
            ))
        })?;
    if kind != Kind::Active {
        return Err(Error::InvalidArgument(format!(
            "label {MAX_SIZE}: only an active snapshot can be size-limited"
        )));
    }
    Ok(Some(n))
}

/// Refuses a limit that the filesystem holding `root` cannot enforce (checked before anything
/// is recorded; btrfs's quota state is only known when the limit is set, see [`make_dir`]).
pub fn check_root(root: &Path, limit: u64) -> Result<()> {
    let magic = sys::fs_magic(root).ctx(|| format!("statfs {}", root.display()))?;
    if magic == sys::BTRFS_SUPER_MAGIC {
        return Ok(());
    }
    Err(Error::FailedPrecondition(format!(
        "label {MAX_SIZE}={limit}: podsnap's root {} is on {}, which cannot limit a snapshot's size; a root on btrfs with quotas enabled can",
        root.display(),
        fs_name(magic)
    )))
}

/// Makes `dir` (which does not exist) a btrfs subvolume, mode 0700, referencing at most `limit`
/// bytes. On failure nothing is left at `dir`.
pub fn make_dir(dir: &Path, limit: u64) -> Result<()> {
    let (Some(parent), Some(name)) = (dir.parent(), dir.file_name().and_then(|n| n.to_str()))
    else {
        return Err(Error::InvalidArgument(format!(
            "snapshot directory {}",
            dir.display()
        )));
    };
    let p = fs::File::open(parent).ctx(|| format!("open {}", parent.display()))?;
    sys::btrfs_subvol_create(&p, name)
        .ctx(|| format!("create btrfs subvolume {}", dir.display()))?;
    let set = fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
        .and_then(|()| fs::File::open(dir))
        .and_then(|d| sys::btrfs_qgroup_limit(&d, limit));
    match set {
        Ok(()) => Ok(()),
        Err(e) => {
            // rmdir(2) deletes an empty subvolume.
            let _ = fs::remove_dir(dir);
            match e.raw_os_error() {
                Some(libc::ENOTCONN) => Err(Error::FailedPrecondition(format!(
                    "label {MAX_SIZE}={limit}: btrfs quotas are off on podsnap's root (`btrfs quota enable {}`)",
                    parent.parent().unwrap_or(parent).display()
                ))),
                _ => Err(Error::io(
                    format!("limit btrfs subvolume {} to {limit} bytes", dir.display()),
                    e,
                )),
            }
        }
    }
}

fn fs_name(magic: u64) -> String {
    match magic {
        0xef53 => "ext4".into(),
        0x5846_5342 => "xfs".into(),
        0x0102_1994 => "tmpfs".into(),
        0x794c_7630 => "overlayfs".into(),
        m => format!("a filesystem of type {m:#x}"),
    }
}

//! containerd's rootfs mounts, mounted on `<bundle>/rootfs` as given, or id-mapped for a
//! container of a user-namespaced pod.
//!
//! For such a container the snapshotter adds `uidmap=`/`gidmap=` options
//! (`container-id:host-id:size`, from CRI's remap labels) that no kernel mount knows: the files
//! must look owned by the mapped ids. An overlay gets its lower layers through one id-mapped,
//! read-only clone of their common parent directory, attached at `<bundle>/rootfs-idmap` only
//! while the overlay is mounted (the overlay keeps its own references to the layers); a bind
//! mount is attached as an id-mapped clone of its source. The user namespace that carries the
//! mapping is made for the mount and gone when it is done.
//!
//! Crash invariant: `<bundle>/rootfs-idmap` holds a mount only inside `mount`. A shim that died
//! there leaves one clone behind, which the next `mount` of the bundle and every delete detach
//! first (`forget_idmapped`).

use std::{
    os::fd::{AsFd, OwnedFd},
    path::{Path, PathBuf},
};

use containerd_shim_protos::types::mount::Mount;
use log::warn;
use nix::mount::{umount2, MntFlags};

use crate::{
    error::{Error, Result},
    sys,
    userns::{IdMap, IdRange},
};

/// Where an overlay's id-mapped lower layers are attached while it is mounted.
const IDMAP_DIR: &str = "rootfs-idmap";

/// Mounts containerd's rootfs mounts on `<bundle>/rootfs`. Returns whether anything was mounted.
pub async fn mount(bundle: &Path, mounts: &[Mount]) -> Result<bool> {
    if mounts.is_empty() {
        return Ok(false);
    }
    let bundle = bundle.to_path_buf();
    let mounts = mounts.to_vec();
    // The library may unshare CLONE_FS and chdir to shorten long overlay options, and the
    // id-mapping user namespace lives as long as the thread that made it: a short-lived thread
    // keeps both away from the runtime's threads.
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let target = bundle.join("rootfs");
        let mut result = Ok(());
        for m in &mounts {
            if let Err(e) = mount_one(m, &bundle, &target) {
                unmount_all(&target);
                result = Err(e);
                break;
            }
        }
        let _ = tx.send(result);
    });
    rx.await
        .map_err(|_| Error::Other("rootfs mount thread died".into()))??;
    Ok(true)
}

/// Unmounts everything at and below `<bundle>/rootfs`, and an id-mapped clone a dead shim
/// left. A failure is logged, never fatal: the caller is tearing down and containerd's
/// `delete` retries.
pub fn unmount(bundle: &Path) {
    unmount_all(&bundle.join("rootfs"));
    forget_idmapped(bundle);
}

fn unmount_all(target: &Path) {
    if let Err(e) = detach_all(target) {
        warn!("unmount {}: {e}", target.display());
    }
}

/// Detaches everything mounted at and below `target`.
pub fn detach_all(target: &Path) -> std::io::Result<()> {
    let path = target
        .to_str()
        .ok_or_else(|| std::io::Error::other("path is not UTF-8"))?;
    containerd_shim::mount::umount_recursive(Some(path), libc::MNT_DETACH)
        .map_err(|e| std::io::Error::other(e.to_string()))
}

/// Detaches an id-mapped clone a dead shim left in `bundle` and removes its directory.
fn forget_idmapped(bundle: &Path) {
    let dir = bundle.join(IDMAP_DIR);
    if !dir.exists() {
        return;
    }
    let _ = umount2(&dir, MntFlags::MNT_DETACH);
    if let Err(e) = std::fs::remove_dir(&dir) {
        warn!("remove {}: {e}", dir.display());
    }
}

fn mount_one(m: &Mount, bundle: &Path, target: &Path) -> Result<()> {
    let (options, idmap) = IdMap::split_options(&m.options)?;
    match idmap {
        None => plain(&m.type_, &m.source, &options, target).map_err(|e| failed(m, target, &e)),
        Some(idmap) => mount_idmapped(m, &options, idmap, bundle, target),
    }
}

/// Only user-namespaced pods come here: kept out of line, so that the code every other pod's
/// shim runs stays in fewer pages (shim/build.rs puts it with the cold text).
#[cold]
#[inline(never)]
fn mount_idmapped(
    m: &Mount,
    options: &[String],
    idmap: IdMap,
    bundle: &Path,
    target: &Path,
) -> Result<()> {
    let userns = idmap.user_namespace().map_err(|e| failed(m, target, &e))?;
    match m.type_.as_str() {
        "overlay" => {
            forget_idmapped(bundle);
            let dir = bundle.join(IDMAP_DIR);
            let r = idmapped_overlay(&m.source, options, target, &dir, &userns);
            forget_idmapped(bundle);
            r.map_err(|e| failed(m, target, &e))
        }
        "bind" | "rbind" => {
            let read_only = options.iter().any(|o| o == "ro");
            sys::attach_idmapped(Path::new(&m.source), target, userns.as_fd(), read_only)
                .map_err(|e| failed(m, target, &format!("id-mapped bind: {e}")))
        }
        other => Err(Error::InvalidArgument(format!(
            "rootfs mount of type {other} with uidmap/gidmap options: podshim id-maps only \
             overlay and bind mounts"
        ))),
    }
}

fn failed(m: &Mount, target: &Path, e: &dyn std::fmt::Display) -> Error {
    Error::Other(format!(
        "mount {} {} on {}: {e}",
        m.type_,
        m.source,
        target.display()
    ))
}

fn plain(typ: &str, source: &str, options: &[String], target: &Path) -> Result<(), String> {
    containerd_shim::mount::mount_rootfs(Some(typ), Some(source), options, target)
        .map_err(|e| e.to_string())
}

/// The overlay with its `lowerdir=` paths rewritten through an id-mapped clone of their common
/// parent, attached at `dir`.
#[cold]
fn idmapped_overlay(
    source: &str,
    options: &[String],
    target: &Path,
    dir: &Path,
    userns: &OwnedFd,
) -> Result<(), String> {
    let lower = options
        .iter()
        .find_map(|o| o.strip_prefix("lowerdir="))
        .ok_or("an id-mapped overlay without lowerdir")?;
    let layers: Vec<PathBuf> = lower.split(':').map(PathBuf::from).collect();
    let parent = common_parent(&layers).ok_or("lower layers with no common parent")?;
    std::fs::create_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    sys::attach_idmapped(&parent, dir, userns.as_fd(), true)
        .map_err(|e| format!("id-mapped clone of {}: {e}", parent.display()))?;
    let through: Vec<String> = layers
        .iter()
        .map(|l| {
            let rest = l.strip_prefix(&parent).unwrap_or(Path::new(""));
            dir.join(rest).to_string_lossy().into_owned()
        })
        .collect();
    let options: Vec<String> = options
        .iter()
        .map(|o| match o.starts_with("lowerdir=") {
            true => format!("lowerdir={}", through.join(":")),
            false => o.clone(),
        })
        .collect();
    plain("overlay", source, &options, target)
}

/// The deepest directory every path lies in (the path itself when there is one).
#[cold]
fn common_parent(paths: &[PathBuf]) -> Option<PathBuf> {
    let first = paths.first()?;
    let mut common: Vec<_> = first.components().collect();
    for p in &paths[1..] {
        let n = common
            .iter()
            .zip(p.components())
            .take_while(|(a, b)| **a == *b)
            .count();
        common.truncate(n);
    }
    let common: PathBuf = common.into_iter().collect();
    (common.is_absolute() && common.parent().is_some()).then_some(common)
}

impl IdMap {
    /// The mount's options without `uidmap=`/`gidmap=`, and the mapping they gave (both or
    /// neither).
    fn split_options(options: &[String]) -> Result<(Vec<String>, Option<IdMap>)> {
        let (mut uids, mut gids, mut rest) = (None, None, Vec::new());
        for o in options {
            match o.split_once('=') {
                Some(("uidmap", v)) => uids = Some(parse_range("uidmap", v)?),
                Some(("gidmap", v)) => gids = Some(parse_range("gidmap", v)?),
                _ => rest.push(o.clone()),
            }
        }
        match (uids, gids) {
            (None, None) => Ok((rest, None)),
            (Some(uids), Some(gids)) => Ok((rest, Some(IdMap { uids, gids }))),
            _ => Err(Error::InvalidArgument(
                "rootfs mount with only one of uidmap and gidmap".into(),
            )),
        }
    }
}

/// `container-id:host-id:size`, as containerd writes the snapshotter's remap labels.
#[cold]
fn parse_range(option: &str, value: &str) -> Result<IdRange> {
    let bad = || {
        Error::InvalidArgument(format!(
            "rootfs mount option {option}={value}: want one container-id:host-id:size range"
        ))
    };
    let mut parts = value
        .split(':')
        .map(|p| p.parse::<u32>().map_err(|_| bad()));
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(c), Some(h), Some(s), None) => IdRange::new(c?, h?, s?).ok_or_else(bad),
        _ => Err(bad()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn id_map_options_are_taken_out_and_checked() {
        let (rest, map) = IdMap::split_options(&opts(&[
            "index=off",
            "lowerdir=/s/2/fs:/s/1/fs",
            "uidmap=0:458752:65536",
            "gidmap=0:458752:65536",
        ]))
        .unwrap();
        assert_eq!(rest, opts(&["index=off", "lowerdir=/s/2/fs:/s/1/fs"]));
        let r = IdRange::new(0, 458752, 65536).unwrap();
        assert_eq!(map, Some(IdMap { uids: r, gids: r }));
        assert_eq!(
            IdMap::split_options(&opts(&["ro"])).unwrap(),
            (opts(&["ro"]), None)
        );
        for bad in [
            &["uidmap=0:1:2"][..],
            &["uidmap=0:1:2", "gidmap=0:1"],
            &["uidmap=0:1:2", "gidmap=0:1:2,3:4:5"],
            &["uidmap=0:1:0", "gidmap=0:1:2"],
            &["uidmap=0:4294967295:2", "gidmap=0:1:2"],
            &["uidmap=a:1:2", "gidmap=0:1:2"],
        ] {
            let e = IdMap::split_options(&opts(bad)).unwrap_err();
            assert!(matches!(e, Error::InvalidArgument(_)), "{bad:?}: {e:?}");
        }
    }

    #[test]
    fn lower_layers_share_their_deepest_common_parent() {
        let p = |v: &[&str]| v.iter().map(PathBuf::from).collect::<Vec<_>>();
        assert_eq!(
            common_parent(&p(&["/s/snapshots/12/fs", "/s/snapshots/3/fs"])),
            Some("/s/snapshots".into())
        );
        assert_eq!(
            common_parent(&p(&["/s/snapshots/12/fs"])),
            Some("/s/snapshots/12/fs".into())
        );
        assert_eq!(common_parent(&p(&["/a/x", "/b/y"])), None);
        assert_eq!(common_parent(&p(&["a/x", "a/y"])), None);
        assert_eq!(common_parent(&[]), None);
    }

    /// A real id-mapped overlay (needs root and a kernel with id-mapped overlay layers): files
    /// of the lower layer owned by 0 on disk read as the mapped host id through the mount,
    /// and no clone is left attached afterwards.
    #[tokio::test]
    async fn an_overlay_with_uidmap_shows_its_layers_owned_by_the_mapped_ids() {
        use std::os::unix::fs::MetadataExt;
        if !nix::unistd::Uid::effective().is_root() {
            eprintln!("SKIPPED: needs root");
            return;
        }
        let tmp = tempfile::tempdir().unwrap();
        let bundle = tmp.path().join("bundle");
        let lower = tmp.path().join("snapshots/1/fs");
        let (upper, work) = (
            tmp.path().join("snapshots/2/fs"),
            tmp.path().join("snapshots/2/work"),
        );
        for d in [&bundle.join("rootfs"), &lower, &upper, &work] {
            std::fs::create_dir_all(d).unwrap();
        }
        std::fs::write(lower.join("file"), "x").unwrap();
        let overlay = Mount {
            type_: "overlay".into(),
            source: "overlay".into(),
            options: opts(&[
                &format!("workdir={}", work.display()),
                &format!("upperdir={}", upper.display()),
                &format!("lowerdir={}", lower.display()),
                "uidmap=0:200000:65536",
                "gidmap=0:300000:65536",
            ]),
            ..Default::default()
        };
        assert!(mount(&bundle, &[overlay]).await.unwrap());
        let md = std::fs::metadata(bundle.join("rootfs/file")).unwrap();
        unmount_all(&bundle.join("rootfs"));
        assert_eq!((md.uid(), md.gid()), (200000, 300000));
        assert!(!bundle.join(IDMAP_DIR).exists(), "the clone was left");
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        assert!(!mounts.contains(&*tmp.path().to_string_lossy()), "{mounts}");
    }
}

//! podshim-snapshotter (proxy plugin `podsnap`) under a real containerd: pulls from a loopback
//! registry unpack into it, podshim containers run on its overlay mounts, CRI stats and
//! ImageFsInfo report it, removal frees its space, and it can restart under running pods.

use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use containerd_client::services::v1::snapshots::Kind;
use k8s_cri::v1::{ContainerConfig, ImageSpec};
use podshim_integration::images::{self, LAYERED_EXPECT};
use podshim_integration::snapshotter::Daemon;
use podshim_integration::{sh, Containerd, Options, Pod, SnapshotterUse};

use crate::util::eventually;

/// How long removals may take to reach the snapshotter: containerd's metadata store forgets a
/// snapshot at once and its garbage collector removes it from the backend after.
pub const GC_WITHIN: Duration = Duration::from_secs(30);
/// A Remove's directory leaves within a round (50 ms after it, or at containerd's Cleanup).
const SETTLED_WITHIN: Duration = Duration::from_secs(5);

pub fn pull_opts(mut o: Options) -> Options {
    o.snapshotter = SnapshotterUse::PodshimPods;
    o.registry = true;
    // From containerd 2.2 the layered image's layers are unpacked in parallel (podsnap
    // advertises `rebase`), whiteouts and opaque directories included.
    o.max_concurrent_unpacks = Some(3);
    // Its Commit lines show which layers were rebased.
    o.snapshotter_debug = true;
    o
}

pub fn stats_opts(mut o: Options) -> Options {
    o.snapshotter = SnapshotterUse::CriDefault;
    // Both caches short so the test sees a write within seconds: the daemon's usage cache and
    // CRI's snapshot stats sync.
    o.snapshotter_usage_refresh = 1;
    o.stats_collect_period = Some(1);
    o
}

fn with_image(mut cfg: ContainerConfig, image: &str) -> ContainerConfig {
    cfg.image = Some(ImageSpec {
        image: image.into(),
        ..Default::default()
    });
    cfg
}

/// Snapshot directories of the daemon whose upper dir holds `rel`.
fn dirs_holding(d: &Daemon, rel: &str) -> Vec<PathBuf> {
    d.snapshot_dirs()
        .into_iter()
        .filter(|s| s.join("fs").join(rel).symlink_metadata().is_ok())
        .collect()
}

/// The shell check of everything the layered image's container must (not) see.
fn layered_check_script() -> String {
    let mut s = String::from("set -e; ");
    for (p, want) in LAYERED_EXPECT.files {
        s.push_str(&format!(
            "v=$(cat {p}); [ \"$v\" = '{want}' ] || {{ echo \"{p}: $v\"; exit 1; }}; "
        ));
    }
    for p in LAYERED_EXPECT.absent {
        s.push_str(&format!(
            "if [ -e {p} ]; then echo '{p} exists'; exit 1; fi; "
        ));
    }
    for (d, want) in LAYERED_EXPECT.listings {
        s.push_str(&format!(
            "v=$(ls -A {d} | tr '\\n' ' ' | sed 's/ $//'); [ \"$v\" = '{want}' ] || {{ echo \"ls {d}: $v\"; exit 1; }}; "
        ));
    }
    s.push_str("echo layered-ok");
    s
}

async fn check_layered(c: &Containerd, id: &str) -> Result<()> {
    let r = c
        .cri
        .exec_sync(id, &["sh", "-c", &layered_check_script()], 20)
        .await?;
    ensure!(
        r.exit_code == 0 && r.stdout == b"layered-ok\n",
        "the container's view of the layered image is wrong: exit {} stdout {:?} stderr {:?}",
        r.exit_code,
        String::from_utf8_lossy(&r.stdout),
        String::from_utf8_lossy(&r.stderr)
    );
    Ok(())
}

async fn exec_ok(c: &Containerd, id: &str, script: &str) -> Result<String> {
    let r = c.cri.exec_sync(id, &["sh", "-c", script], 30).await?;
    ensure!(
        r.exit_code == 0,
        "{script:?}: exit {} stderr {:?}",
        r.exit_code,
        String::from_utf8_lossy(&r.stderr)
    );
    Ok(String::from_utf8_lossy(&r.stdout).into_owned())
}

/// podshim-snapshotter's snapshots once containerd's garbage collector has run (`collect_garbage` says why
/// the tests ask for the collection rather than wait for one).
async fn snapshotter_keys_after_gc(c: &Containerd) -> Result<Vec<(String, i32)>> {
    c.collect_garbage().await?;
    snapshotter_keys(c).await
}

async fn snapshotter_keys(c: &Containerd) -> Result<Vec<(String, i32)>> {
    let mut v: Vec<(String, i32)> = c
        .snapshotter_daemon()?
        .client()?
        .list()
        .await?
        .into_iter()
        .map(|i| (i.name, i.kind))
        .collect();
    v.sort();
    Ok(v)
}

/// The snapshotter's metadata and its directories agree: one directory per snapshot, once the
/// last Removes are settled (a removed snapshot's directory goes shortly after its Remove:
/// `proxy-snapshotter/src/removals.rs`).
async fn dirs_match_list(c: &Containerd) -> Result<()> {
    eventually(
        SETTLED_WITHIN,
        "snapshot dirs match the snapshots",
        || async {
            let keys = snapshotter_keys(c).await?;
            let dirs = c.snapshotter_daemon()?.snapshot_dirs();
            Ok((
                dirs.len() == keys.len(),
                format!(
                    "{} snapshot dirs for {} snapshots: {dirs:?} vs {keys:?}",
                    dirs.len(),
                    keys.len()
                ),
            ))
        },
    )
    .await
}

/// PullImage for a podshim pod unpacks a three-layer image (whiteouts, opaque directory) from a
/// loopback registry into podshim-snapshotter, not overlayfs; a podshim container on it sees exactly the
/// merged tree; its writes land in its upper dir in podshim-snapshotter's root; the snapshotter restarts
/// under the running pod (the container keeps reading and writing, containerd reconnects and a
/// new container starts); RemoveContainer and RemoveImage remove the snapshots and directories.
pub async fn pull_unpack_run(c: &mut Containerd) -> Result<()> {
    let archive = tokio::task::spawn_blocking(images::layered_archive).await??;
    let reg = c.registry.as_ref().context("no registry")?;
    let (archive2, reg_dir) = (archive.clone(), reg.dir.clone());
    let host = reg.host.clone();
    let reference = tokio::task::spawn_blocking(move || {
        podshim_integration::registry::Registry::push_to(
            &host,
            &reg_dir,
            &archive2,
            "podshim/layered:1",
        )
    })
    .await??;

    let pod = c.run_pod("snap").await?;
    let overlay = c.snapshots("overlayfs", "k8s.io")?;
    let overlay_before = overlay.list().await?.len();
    let before = snapshotter_keys(c).await?;

    let image_ref = c
        .cri
        .pull_image(&reference, &pod.config, &c.opts.handler)
        .await?;
    let after = snapshotter_keys(c).await?;
    let new_committed: Vec<&(String, i32)> = after
        .iter()
        .filter(|k| !before.contains(k) && k.1 == Kind::Committed as i32)
        .collect();
    ensure!(
        new_committed.len() == 3,
        "PullImage {reference} ({image_ref}) should have committed its 3 layers in podshim-snapshotter; new: {new_committed:?}, all: {after:?}"
    );
    eprintln!("pulled {reference} into podshim-snapshotter: {new_committed:?}");
    // containerd ≥ 2.2 unpacked the layers side by side and rebased each at its Commit.
    let log = std::fs::read_to_string(&c.snapshotter_daemon()?.log_path)?;
    let rebased = log.matches("(parent \"k8s.io/").count();
    match c.release.at_least(2, 2) {
        true => ensure!(
            rebased == 2,
            "want layers 2 and 3 rebased at Commit; {rebased} were"
        ),
        false => ensure!(rebased == 0, "containerd < 2.2 rebased {rebased} commits"),
    }
    let overlay_after = overlay.list().await?.len();
    ensure!(
        overlay_after == overlay_before,
        "PullImage also unpacked into overlayfs ({overlay_before} -> {overlay_after} snapshots)"
    );
    // The layers' contents are in podshim-snapshotter's directories: layer 1's file and layer 2's whiteout
    // (overlay form: a 0/0 character device) and opaque marker (xattr on the directory).
    ensure!(
        dirs_holding(c.snapshotter_daemon()?, "data/keep").len() == 1,
        "layer 1 (data/keep) not found in exactly one podshim-snapshotter snapshot dir"
    );
    let wh: Vec<PathBuf> = dirs_holding(c.snapshotter_daemon()?, "data/gone");
    ensure!(
        wh.len() == 2,
        "data/gone: want the file (layer 1) and its whiteout (layer 2), got {wh:?}"
    );
    ensure!(
        wh.iter().any(|d| is_whiteout(&d.join("fs/data/gone"))),
        "no overlay whiteout for data/gone in {wh:?}"
    );

    let cfg = with_image(sh("reader", "exec sleep 1000"), &reference);
    let id = c.run_container(&pod, cfg).await?;
    check_layered(c, &id).await?;

    // Writes and deletions land in the container's upper dir in podshim-snapshotter's root.
    let n: u64 = 3_000_000;
    exec_ok(
        c,
        &id,
        &format!("head -c {n} /dev/zero > /data/written; rm /data/keep; echo hi > /newfile; sync"),
    )
    .await?;
    let uppers = dirs_holding(c.snapshotter_daemon()?, "data/written");
    ensure!(
        uppers.len() == 1,
        "data/written in podshim-snapshotter dirs: {uppers:?}"
    );
    let upper = uppers[0].join("fs");
    let len = std::fs::metadata(upper.join("data/written"))?.len();
    ensure!(len == n, "upper data/written is {len} bytes, want {n}");
    ensure!(
        upper.join("newfile").exists(),
        "newfile not in {}",
        upper.display()
    );
    ensure!(
        is_whiteout(&upper.join("data/keep")),
        "rm /data/keep left no whiteout in the upper dir {}",
        upper.display()
    );
    let in_overlayfs = podshim_integration::sys::find_named(
        &c.root.join("io.containerd.snapshotter.v1.overlayfs"),
        "written",
    );
    ensure!(
        in_overlayfs.is_empty(),
        "the write reached overlayfs: {in_overlayfs:?}"
    );

    // Restart the snapshotter under the running pod.
    let pid_before = c.snapshotter_daemon()?.pid();
    c.snapshotter_daemon_mut()?.restart().await?;
    ensure!(
        c.snapshotter_daemon()?.pid() != pid_before,
        "snapshotter pid unchanged"
    );
    let out = exec_ok(
        c,
        &id,
        "wc -c < /data/written; echo after > /after; cat /after",
    )
    .await?;
    ensure!(
        out.split_whitespace().collect::<Vec<_>>() == [n.to_string().as_str(), "after"],
        "container after the snapshotter restart: {out:?}"
    );
    ensure!(
        upper.join("after").exists(),
        "write after restart not in the upper dir"
    );
    let cfg = with_image(sh("second", "exec sleep 1000"), &reference);
    let id2 = c
        .run_container(&pod, cfg)
        .await
        .context("CreateContainer after the snapshotter restarted")?;
    check_layered(c, &id2).await?;
    let keys = snapshotter_keys(c).await?;
    let active: Vec<&(String, i32)> = keys
        .iter()
        .filter(|k| k.1 == Kind::Active as i32 && (k.0.ends_with(&id) || k.0.ends_with(&id2)))
        .collect();
    ensure!(
        active.len() == 2,
        "active snapshots of the two containers: {active:?} in {keys:?}"
    );

    // RemoveContainer frees the writable layers.
    for cid in [&id, &id2] {
        c.cri.stop_container(cid, 0).await?;
        c.cri.remove_container(cid).await?;
    }
    eventually(
        GC_WITHIN,
        "container snapshots removed from podshim-snapshotter",
        || async {
            let keys = snapshotter_keys_after_gc(c).await?;
            let left = keys
                .iter()
                .filter(|k| k.0.ends_with(&id) || k.0.ends_with(&id2))
                .count();
            let dirs = dirs_holding(c.snapshotter_daemon()?, "data/written").len();
            Ok((
                left == 0 && dirs == 0,
                format!("{left} snapshots, {dirs} dirs with the write"),
            ))
        },
    )
    .await?;

    // RemoveImage frees the layers (the pause image's stay: the pod still runs).
    c.cri.remove_image(&image_ref).await?;
    eventually(
        GC_WITHIN,
        "image layers removed from podshim-snapshotter",
        || async {
            let keys = snapshotter_keys_after_gc(c).await?;
            let dirs = dirs_holding(c.snapshotter_daemon()?, "data").len();
            Ok((
                keys == before && dirs == 0,
                format!("keys {keys:?} (before pull {before:?}), {dirs} dirs with data/"),
            ))
        },
    )
    .await?;
    dirs_match_list(c).await?;
    remove_pod_and_check(c, &pod).await
}

async fn remove_pod_and_check(c: &Containerd, pod: &Pod) -> Result<()> {
    c.remove_pod(pod).await?;
    // The pause container's snapshot goes too; only the image layers remain.
    eventually(
        GC_WITHIN,
        "no active snapshot left in podshim-snapshotter",
        || async {
            let keys = snapshotter_keys_after_gc(c).await?;
            let active = keys
                .iter()
                .filter(|k| k.1 != Kind::Committed as i32)
                .count();
            Ok((active == 0, format!("{keys:?}")))
        },
    )
    .await?;
    dirs_match_list(c).await
}

fn is_whiteout(p: &Path) -> bool {
    std::fs::symlink_metadata(p)
        .map(|m| m.file_type().is_char_device() && m.rdev() == 0)
        .unwrap_or(false)
}

/// The container `id` writes 4 MB: ContainerStats' writable layer shows them (within 256 KiB:
/// directories copied up and inode blocks) on podshim-snapshotter's root `root`. Returns the
/// bytes written.
async fn writes_show_in_its_writable_layer(c: &Containerd, id: &str, root: &Path) -> Result<u64> {
    let n: u64 = 4_000_000;
    const TOLERANCE: u64 = 256 * 1024;
    exec_ok(
        c,
        id,
        &format!("head -c {n} /dev/urandom > /tmp/blob; sync"),
    )
    .await?;
    eventually(
        Duration::from_secs(30),
        "ContainerStats writable layer",
        || async {
            let s = c.cri.container_stats(id).await?;
            let w = s.writable_layer.clone().unwrap_or_default();
            let used = w.used_bytes.map(|v| v.value).unwrap_or(0);
            let mp = w.fs_id.map(|f| f.mountpoint).unwrap_or_default();
            let inodes = w.inodes_used.map(|v| v.value).unwrap_or(0);
            if used >= n && mp == root.to_string_lossy() {
                eprintln!(
                    "writable layer: {used} bytes, {inodes} inodes on {mp} for {n} bytes written"
                );
                ensure!(
                    used <= n + TOLERANCE,
                    "writable layer {used} bytes for {n} written (tolerance {TOLERANCE})"
                );
                ensure!(
                    inodes >= 3,
                    "writable layer inodes {inodes}: want root, /tmp, blob"
                );
                return Ok((true, String::new()));
            }
            Ok((
                false,
                format!("used {used}, inodes {inodes}, mountpoint {mp:?}"),
            ))
        },
    )
    .await?;
    Ok(n)
}

/// With podshim-snapshotter as CRI's snapshotter: ContainerStats' writable layer shows what the container
/// wrote (within 256 KiB: directories copied up and inode blocks), on podshim-snapshotter's root, and goes
/// with the container; ImageFsInfo reports podshim-snapshotter's root.
pub async fn stats_imagefs(c: &mut Containerd) -> Result<()> {
    let root = c.snapshotter_daemon()?.root.clone();
    let pod = c.run_pod("snapstats").await?;
    let id = c
        .run_container(&pod, sh("writer", "exec sleep 1000"))
        .await?;
    let keys = snapshotter_keys(c).await?;
    ensure!(
        keys.iter()
            .any(|k| k.1 == Kind::Active as i32 && k.0.ends_with(&id)),
        "the container's snapshot is not in podshim-snapshotter: {keys:?}"
    );
    let n = writes_show_in_its_writable_layer(c, &id, &root).await?;

    let fs = c.cri.image_fs_info().await?;
    eprintln!("ImageFsInfo: {fs:?}");
    let first = fs
        .image_filesystems
        .first()
        .context("ImageFsInfo returned no image filesystem")?;
    let mp = first
        .fs_id
        .as_ref()
        .map(|f| f.mountpoint.clone())
        .unwrap_or_default();
    let used = first.used_bytes.as_ref().map(|v| v.value).unwrap_or(0);
    ensure!(
        mp == root.to_string_lossy(),
        "ImageFsInfo mountpoint {mp:?}, want podshim-snapshotter's root {}: {fs:?}",
        root.display()
    );
    // The busybox layer alone is over 1 MB, and the container wrote 4 MB.
    ensure!(
        used >= n + 1_000_000,
        "ImageFsInfo used_bytes {used}: {fs:?}"
    );

    c.cri.stop_container(&id, 0).await?;
    c.cri.remove_container(&id).await?;
    eventually(
        GC_WITHIN,
        "the writable layer removed from podshim-snapshotter",
        || async {
            let keys = snapshotter_keys_after_gc(c).await?;
            let left = keys.iter().filter(|k| k.0.ends_with(&id)).count();
            let dirs = dirs_holding(c.snapshotter_daemon()?, "tmp/blob").len();
            Ok((
                left == 0 && dirs == 0,
                format!("{left} snapshots, {dirs} dirs with tmp/blob"),
            ))
        },
    )
    .await?;
    remove_pod_and_check(c, &pod).await
}

pub fn switch_opts(mut o: Options) -> Options {
    o.snapshotter = SnapshotterUse::Registered;
    o.snapshotter_usage_refresh = 1;
    o.stats_collect_period = Some(1);
    o
}

/// Container snapshot keys `ctr` shows for `snapshotter` in k8s.io.
async fn snapshot_keys_of(c: &Containerd, snapshotter: &str) -> Result<Vec<String>> {
    let list = c.snapshots(snapshotter, "k8s.io")?.list().await?;
    Ok(list.into_iter().map(|i| i.name).collect())
}

/// `ctr -n k8s.io <args>` against the run's containerd.
async fn ctr_k8s(c: &Containerd, args: &[&str]) -> Result<String> {
    let o = tokio::process::Command::new("ctr")
        .arg("--address")
        .arg(&c.sock)
        .args(["-n", "k8s.io"])
        .args(args)
        .output()
        .await?;
    ensure!(
        o.status.success(),
        "ctr {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    Ok(String::from_utf8_lossy(&o.stdout).into_owned())
}

/// README "Switching a node to podsnap", step by step: a node on overlayfs (images unpacked
/// there, a pod running) gets the drop-in's recommended setup and containerd restarts. The
/// running pod stays on overlayfs and keeps working; a new pod's images are unpacked into
/// podshim-snapshotter on first use and its writable layer is in CRI stats; once the old pod is
/// gone, dropping the images' overlayfs references frees every overlayfs snapshot.
pub async fn switch_to_podsnap(c: &mut Containerd) -> Result<()> {
    let root = c.snapshotter_daemon()?.root.clone();
    let old = c.run_pod("onoverlay").await?;
    let old_id = c.run_container(&old, sh("old", "exec sleep 1000")).await?;
    ensure!(
        snapshot_keys_of(c, "overlayfs")
            .await?
            .iter()
            .any(|k| k.ends_with(&old_id)),
        "the container before the switch is not on overlayfs"
    );

    c.switch_snapshotter_use(SnapshotterUse::CriDefault).await?;
    exec_ok(c, &old_id, "echo still > /tmp/x; cat /tmp/x").await?;
    let new = c.run_pod("onpodsnap").await?;
    let new_id = c.run_container(&new, sh("new", "exec sleep 1000")).await?;
    let keys = snapshotter_keys(c).await?;
    ensure!(
        keys.iter().any(|k| k.0.ends_with(&new_id)),
        "the container after the switch is not in podshim-snapshotter: {keys:?}"
    );
    writes_show_in_its_writable_layer(c, &new_id, &root).await?;

    c.remove_pod(&old).await?;
    c.remove_pod(&new).await?;
    c.collect_garbage().await?;
    let images_there = snapshot_keys_of(c, "overlayfs").await?;
    ensure!(
        !images_there.is_empty(),
        "no image snapshot left in overlayfs to free"
    );
    // What the README gives operators: drop the images' references to their overlayfs snapshots.
    let content = ctr_k8s(c, &["content", "ls"]).await?;
    for line in content.lines() {
        if line.contains("containerd.io/gc.ref.snapshot.overlayfs=") {
            let digest = line.split_whitespace().next().unwrap_or_default();
            ctr_k8s(
                c,
                &[
                    "content",
                    "label",
                    digest,
                    "containerd.io/gc.ref.snapshot.overlayfs",
                ],
            )
            .await?;
        }
    }
    c.collect_garbage().await?;
    let left = snapshot_keys_of(c, "overlayfs").await?;
    ensure!(left.is_empty(), "overlayfs still holds {left:?}");
    Ok(())
}

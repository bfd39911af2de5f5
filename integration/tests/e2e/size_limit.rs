//! Size-limited snapshots through containerd: `ctr run --snapshotter podsnap --snapshotter-label
//! containerd.io/snapshot/max-size=N` (containerd 2.4's label; ctr carries it on every release).

use std::time::{Duration, Instant};

use anyhow::{ensure, Result};
use podshim_integration::images::BUSYBOX_IMAGE;
use podshim_integration::{sys, Containerd, Options, SnapshotterUse};

use crate::ctr::{assert_ctr_gone, ctr, runtime_args};
use crate::snapshotter::GC_WITHIN;

const MAX_SIZE: &str = "containerd.io/snapshot/max-size";
const LIMIT: u64 = 16 << 20;

/// podsnap registered (or CRI's default in the podsnap pass), its root on a loop-mounted btrfs.
pub fn btrfs_opts(o: Options) -> Options {
    let mut o = registered(o);
    o.snapshotter_btrfs = true;
    o
}

/// podsnap registered, its root where the harness puts it (ext4 here).
pub fn registered(mut o: Options) -> Options {
    if matches!(o.snapshotter, SnapshotterUse::Off) {
        o.snapshotter = SnapshotterUse::Registered;
    }
    o
}

/// `ctr run` on podsnap, with a size limit or without, of a shell script; (code, stdout+stderr).
async fn run(
    c: &mut Containerd,
    limit: Option<u64>,
    script: &str,
) -> Result<(String, i32, String)> {
    let id = format!("size-limit-{}", c.seq());
    let mut args = runtime_args(c, &id);
    args.extend(["--snapshotter".into(), "podsnap".into()]);
    if let Some(n) = limit {
        args.extend(["--snapshotter-label".into(), format!("{MAX_SIZE}={n}")]);
    }
    args.extend([
        BUSYBOX_IMAGE.into(),
        id.clone(),
        "sh".into(),
        "-c".into(),
        script.into(),
    ]);
    let o = ctr(c, &args).await?;
    Ok((id, o.code, format!("{}{}", o.stdout, o.stderr)))
}

/// A container whose snapshot is limited to 16 MiB writes 8 MiB, then fails to write 32 MiB more
/// with "No space left on device" (its layer is an ext4 of 16 MiB); the same container without
/// the label writes them; after `--rm` nothing of either is left: no mount or loop device under
/// podsnap's root once containerd's garbage collector has removed the snapshots. dd's reason
/// goes to stdout, ahead of the exit code: `ctr run` on containerd's runc shim once printed the
/// later stdout line without dd's message on stderr (two streams carry no order at an exit).
pub async fn write_past_the_limit_fails(c: &mut Containerd) -> Result<()> {
    let script = "dd if=/dev/zero of=/small bs=1M count=8 2>/dev/null && echo small-ok; \
                  dd if=/dev/zero of=/big bs=1M count=32 conv=fsync 2>&1; echo big-rc=$?";
    let (id, code, out) = run(c, Some(LIMIT), script).await?;
    ensure!(
        code == 0
            && out.contains("small-ok")
            && out.contains("big-rc=1")
            && out.contains("No space left on device"),
        "limited to {LIMIT} bytes: exit {code}, output {out:?}"
    );
    assert_ctr_gone(c, &id).await?;

    let (id, code, out) = run(c, None, script).await?;
    ensure!(
        code == 0 && out.contains("big-rc=0"),
        "without a limit: exit {code}, output {out:?}"
    );
    assert_ctr_gone(c, &id).await?;

    let root = c.dir.join("podsnap");
    let deadline = Instant::now() + GC_WITHIN;
    loop {
        // Below the root: on btrfs, the root is a mount of its own.
        let mut mounts = sys::mounts_under(&root);
        mounts.retain(|m| m != &root);
        let loops = sys::loops_under(&root);
        if mounts.is_empty() && loops.is_empty() {
            return Ok(());
        }
        ensure!(
            Instant::now() < deadline,
            "left under {} {GC_WITHIN:?} after the containers: mounts {mounts:?}, loop devices of {loops:?}",
            root.display()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The same on podsnap's root where the harness puts it (ext4 here): the limit does not depend
/// on the root's filesystem.
pub async fn write_past_the_limit_fails_on_ext4(c: &mut Containerd) -> Result<()> {
    write_past_the_limit_fails(c).await
}

/// A limit podsnap cannot read is refused: ctr run fails with podsnap's reason, and nothing of
/// the container is left.
pub async fn a_malformed_limit_is_refused(c: &mut Containerd) -> Result<()> {
    let id = format!("size-limit-{}", c.seq());
    let mut args = runtime_args(c, &id);
    args.extend([
        "--snapshotter".into(),
        "podsnap".into(),
        "--snapshotter-label".into(),
        format!("{MAX_SIZE}=16MiB"),
        BUSYBOX_IMAGE.into(),
        id.clone(),
        "echo".into(),
        "ran".into(),
    ]);
    let o = ctr(c, &args).await?;
    let out = format!("{}{}", o.stdout, o.stderr);
    ensure!(
        o.code != 0 && !out.contains("ran\n") && out.contains("want a decimal number of bytes"),
        "exit {}, output {out:?}",
        o.code
    );
    assert_ctr_gone(c, &id).await?;
    ensure!(
        sys::mounts_under(&c.dir.join("podsnap")).is_empty(),
        "a mount under podsnap's root"
    );
    Ok(())
}

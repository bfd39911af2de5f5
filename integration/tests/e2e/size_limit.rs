//! Size-limited snapshots through containerd: `ctr run --snapshotter podsnap --snapshotter-label
//! containerd.io/snapshot/max-size=N` (containerd 2.4's label; ctr carries it on every release).

use std::time::{Duration, Instant};

use anyhow::{ensure, Result};
use podshim_integration::images::BUSYBOX_IMAGE;
use podshim_integration::{Containerd, Options, SnapshotterUse};

use crate::ctr::{assert_ctr_gone, ctr, runtime_args};
use crate::snapshotter::GC_WITHIN;

const MAX_SIZE: &str = "containerd.io/snapshot/max-size";
const LIMIT: u64 = 16 << 20;

/// podsnap registered (or CRI's default in the podsnap pass), its root on a btrfs with quotas.
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
/// with btrfs's "Disk quota exceeded" (EDQUOT); the same container without the label writes
/// them; after `--rm` nothing of either is left, and no subvolume remains on podsnap's root.
pub async fn write_past_the_limit_fails(c: &mut Containerd) -> Result<()> {
    let script = "dd if=/dev/zero of=/small bs=1M count=8 2>/dev/null && echo small-ok; \
                  dd if=/dev/zero of=/big bs=1M count=32 conv=fsync; echo big-rc=$?";
    let (id, code, out) = run(c, Some(LIMIT), script).await?;
    ensure!(
        code == 0
            && out.contains("small-ok")
            && out.contains("big-rc=1")
            && out.contains("Disk quota exceeded"),
        "limited to {LIMIT} bytes: exit {code}, output {out:?}"
    );
    assert_ctr_gone(c, &id).await?;

    let (id, code, out) = run(c, None, script).await?;
    ensure!(
        code == 0 && out.contains("big-rc=0"),
        "without a limit: exit {code}, output {out:?}"
    );
    assert_ctr_gone(c, &id).await?;

    // containerd's garbage collector removes the snapshot from podsnap after the container.
    let root = c.dir.join("podsnap");
    let deadline = Instant::now() + GC_WITHIN;
    loop {
        let o = std::process::Command::new("btrfs")
            .args(["subvolume", "list", "-o"])
            .arg(&root)
            .output()?;
        let list = String::from_utf8_lossy(&o.stdout);
        ensure!(
            o.status.success(),
            "btrfs subvolume list {}: {o:?}",
            root.display()
        );
        if list.trim().is_empty() {
            return Ok(());
        }
        ensure!(
            Instant::now() < deadline,
            "subvolumes left on {} {GC_WITHIN:?} after the container: {list}",
            root.display()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// On a root that cannot keep a limit (ext4 here) the container is not created: ctr run fails
/// with podsnap's reason, and nothing of it is left.
pub async fn a_limit_podsnap_cannot_keep_is_refused(c: &mut Containerd) -> Result<()> {
    let (id, code, out) = run(c, Some(LIMIT), "echo ran").await?;
    ensure!(
        code != 0 && !out.contains("ran\n") && out.contains("cannot limit a snapshot's size"),
        "exit {code}, output {out:?}"
    );
    assert_ctr_gone(c, &id).await?;
    Ok(())
}

//! CRI's CheckpointContainer (kubelet's forensic checkpoint): the OCI runtime dumps the running
//! container with CRIU, which keeps running. Where CRIU cannot work (not installed, or older
//! than the kernel: bookworm's CRIU 3.17 on this project's 6.18 kernel fails `criu check` in its
//! vDSO probe), podshim says so with FailedPrecondition and the reason, and leaves nothing.

use std::process::Command;

use anyhow::{ensure, Context, Result};
use k8s_cri::v1::ContainerState;
use podshim_integration::{is_podshim, sh, Containerd};

/// What `criu check` says on this machine.
enum Criu {
    Missing,
    Broken(String),
    Works,
}

fn criu() -> Criu {
    match Command::new("criu").arg("check").output() {
        Err(_) => Criu::Missing,
        Ok(o) if o.status.success() => Criu::Works,
        Ok(o) => Criu::Broken(String::from_utf8_lossy(&o.stderr).into_owned()),
    }
}

pub async fn checkpoint_container(c: &mut Containerd) -> Result<()> {
    let pod = c.run_pod("ckpt").await?;
    let id = c.run_container(&pod, sh("app", "exec sleep 1000")).await?;
    let archive = c.dir.join("checkpoint.tar");
    let r = c.cri.checkpoint_container(&id, &archive).await;
    match criu() {
        Criu::Works => {
            r?;
            let list = Command::new("tar").arg("-tf").arg(&archive).output()?;
            let list = String::from_utf8_lossy(&list.stdout);
            ensure!(
                list.lines()
                    .any(|l| l.ends_with("checkpoint/inventory.img")),
                "no CRIU images in the archive: {list}"
            );
        }
        Criu::Missing => {
            // CRI checks for CRIU itself before it asks the runtime.
            let e = format!("{:#}", r.err().context("a checkpoint without CRIU")?);
            ensure!(e.to_lowercase().contains("criu"), "{e}");
        }
        Criu::Broken(why) => {
            let e = format!("{:#}", r.err().context("a checkpoint with a broken CRIU")?);
            eprintln!("criu check: {why}\nCheckpointContainer: {e}");
            if is_podshim(&c.opts.handler) {
                ensure!(
                    e.contains("FailedPrecondition")
                        && e.contains("needs CRIU, and `criu check` fails on this kernel"),
                    "podshim's refusal: {e}"
                );
            }
        }
    }
    // Whatever CRIU did, the container runs on, unpaused.
    let st = c.cri.container_status(&id).await?;
    ensure!(
        st.state == ContainerState::ContainerRunning as i32,
        "after the checkpoint: {st:?}"
    );
    let r = c.cri.exec_sync(&id, &["echo", "alive"], 10).await?;
    ensure!(
        r.stdout == b"alive\n",
        "ExecSync after the checkpoint: {r:?}"
    );
    let leftovers: Vec<_> = walk(&c.dir)
        .into_iter()
        .filter(|p| p.file_name().is_some_and(|n| n == "criu-work"))
        .collect();
    ensure!(leftovers.is_empty(), "CRIU work dirs left: {leftovers:?}");
    c.remove_pod(&pod).await?;
    Ok(())
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in entries.flatten() {
        let p = e.path();
        if e.file_type().is_ok_and(|t| t.is_dir() && !t.is_symlink()) {
            out.extend(walk(&p));
        }
        out.push(p);
    }
    out
}

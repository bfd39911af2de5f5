//! The OCI runtime is chosen in the shim's own config file: the same pod under crun.

use std::time::Duration;

use anyhow::{ensure, Result};
use k8s_cri::v1::ContainerState;
use podshim_integration::{logs, sh, Containerd, Options};

pub fn crun_opts(o: Options) -> Options {
    Options {
        shim_config: "[runtime]\nbinary = \"crun\"\nroot = \"{dir}/podshim-crun\"\n".into(),
        ..o
    }
}

/// A pod whose containers podshim launches through crun: logs, exec and stop work, and the
/// container's state is crun's (`<root>/<namespace>/<id>/status`; runc would write state.json).
pub async fn crun_runtime(c: &mut Containerd) -> Result<()> {
    let pod = c.run_pod("crun").await?;
    let cfg = sh("app", "echo hello-crun; exec sleep 1000");
    let log = pod.log_file(&cfg);
    let id = c.run_container(&pod, cfg).await?;
    logs::wait_for(&log, Duration::from_secs(10), |l| l.iter().any(|x| x.msg == "hello-crun")).await?;

    let state = c.dir.join("podshim-crun/k8s.io").join(&id);
    ensure!(state.join("status").is_file(), "no crun state at {}", state.display());
    ensure!(!state.join("state.json").exists(), "runc state found at {}", state.display());

    let r = c.cri.exec_sync(&id, &["sh", "-c", "echo via-crun"], 10).await?;
    ensure!(r.exit_code == 0 && r.stdout == b"via-crun\n", "ExecSync under crun: {r:?}");

    c.cri.stop_container(&id, 2).await?;
    let cs = c.cri.container_status(&id).await?;
    ensure!(cs.state == ContainerState::ContainerExited as i32, "after stop: {cs:?}");
    c.cri.remove_container(&id).await?;
    ensure!(!state.exists(), "crun state left at {}", state.display());
    Ok(())
}

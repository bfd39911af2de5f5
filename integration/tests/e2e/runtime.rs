//! The OCI runtime is chosen in the shim's own config file, not containerd's `options` table.
//!
//! Debian bookworm's crun (1.8.1) refuses the spec version containerd 2.1 writes ("unknown
//! version specified"), so the case selects another runc-compatible binary: a wrapper that
//! records each invocation and runs runc. What is checked is that the configured binary, and
//! only it, is what launches and manages the pod's containers.

use std::time::Duration;

use anyhow::{ensure, Context, Result};
use k8s_cri::v1::ContainerState;
use podshim_integration::{logs, sh, Containerd, Options};

pub fn wrapper_opts(o: Options) -> Options {
    Options {
        shim_config: "[runtime]\nbinary = \"{dir}/oci-runtime\"\nroot = \"{dir}/podshim-oci\"\n"
            .into(),
        ..o
    }
}

pub async fn configured_runtime(c: &mut Containerd) -> Result<()> {
    let calls = c.dir.join("oci-runtime.calls");
    crate::util::install_runtime_wrapper(
        c,
        &format!(
            "for a in \"$@\"; do case \"$a\" in create|start|exec|kill|delete|ps|update|pause|resume) echo \"$a\" >> {}; break;; esac; done\n",
            calls.display()
        ),
    )?;

    let pod = c.run_pod("oci").await?;
    let cfg = sh("app", "echo hello-wrapper; exec sleep 1000");
    let log = pod.log_file(&cfg);
    let id = c.run_container(&pod, cfg).await?;
    logs::wait_for(&log, Duration::from_secs(10), |l| {
        l.iter().any(|x| x.msg == "hello-wrapper")
    })
    .await?;
    let r = c
        .cri
        .exec_sync(&id, &["sh", "-c", "echo via-wrapper"], 10)
        .await?;
    ensure!(
        r.exit_code == 0 && r.stdout == b"via-wrapper\n",
        "ExecSync: {r:?}"
    );
    c.cri.stop_container(&id, 2).await?;
    let cs = c.cri.container_status(&id).await?;
    ensure!(
        cs.state == ContainerState::ContainerExited as i32,
        "after stop: {cs:?}"
    );
    c.cri.remove_container(&id).await?;

    let calls = std::fs::read_to_string(&calls).context("the configured runtime was never run")?;
    let calls: Vec<&str> = calls.lines().collect();
    // Pause and app: two creates and starts; one exec; the app's kill and delete.
    for (cmd, at_least) in [
        ("create", 2),
        ("start", 2),
        ("exec", 1),
        ("kill", 1),
        ("delete", 1),
    ] {
        let n = calls.iter().filter(|c| **c == cmd).count();
        ensure!(
            n >= at_least,
            "configured runtime ran `{cmd}` {n} times, want >= {at_least}: {calls:?}"
        );
    }
    // The configured state root, with the containerd namespace appended.
    ensure!(
        c.dir.join("podshim-oci/k8s.io").is_dir(),
        "the configured runtime root was not used"
    );
    Ok(())
}

/// What CRI advertises of each handler (`Status.runtime_handlers`, which the kubelet reads to
/// allow recursive read-only mounts and user namespaces). From containerd 2.2.7 and 2.3.4 on CRI
/// asks non-runc runtimes too (containerd#13504): podshim's handlers then advertise what
/// runc's does, as `-info` passes on the OCI runtime's features. Earlier releases introspect
/// runc's shim only and advertise nothing for other runtime types.
pub async fn handler_features(c: &mut Containerd) -> Result<()> {
    let st = c.cri.status().await?;
    let features = |name: &str| {
        st.runtime_handlers
            .iter()
            .find(|h| h.name == name)
            .map(|h| h.features.unwrap_or_default())
    };
    let runc =
        features(podshim_integration::HANDLER_RUNC).context("runc not in runtime_handlers")?;
    let ours = features(&c.opts.handler).context("our handler not in runtime_handlers")?;
    let r = c.release;
    if r.introspects_every_runtime() {
        ensure!(
            ours == runc,
            "containerd {r}: {} advertises {ours:?}, runc {runc:?}",
            c.opts.handler
        );
    } else {
        ensure!(
            !ours.recursive_read_only_mounts && !ours.user_namespaces,
            "containerd {r} introspects runc only, yet {} advertises {ours:?}",
            c.opts.handler
        );
    }
    eprintln!("containerd {r}: runc {runc:?}, {} {ours:?}", c.opts.handler);
    Ok(())
}

/// runc's `NoPivotRoot` and `NoNewKeyring`, set node-wide in the shim's config: every create
/// carries `--no-pivot --no-new-keyring`, and runc runs the container with them.
pub fn runtime_options_opts(o: Options) -> Options {
    Options {
        shim_config: "[runtime]\nbinary = \"{dir}/oci-runtime\"\nroot = \"{dir}/podshim-oci\"\nno_pivot_root = true\nno_new_keyring = true\n".into(),
        ..o
    }
}

pub async fn runtime_options(c: &mut Containerd) -> Result<()> {
    let creates = c.dir.join("oci-runtime.creates");
    crate::util::install_runtime_wrapper(
        c,
        &format!(
            "case \" $* \" in *\" create \"*) echo \"$*\" >> {};; esac\n",
            creates.display()
        ),
    )?;
    let pod = c.run_pod("opts").await?;
    let id = c.run_container(&pod, sh("app", "exec sleep 1000")).await?;
    let r = c.cri.exec_sync(&id, &["echo", "inside"], 10).await?;
    ensure!(r.stdout == b"inside\n", "ExecSync: {r:?}");
    let creates = std::fs::read_to_string(&creates).context("no create ran")?;
    ensure!(
        !creates.is_empty()
            && creates
                .lines()
                .all(|l| l.contains(" --no-pivot --no-new-keyring ")),
        "creates: {creates}"
    );
    c.remove_pod(&pod).await?;
    Ok(())
}

/// The OCI runtime the shim configs above name: `record` (shell lines) sees runc's arguments,
/// then runc runs.
pub fn shim_cgroup_opts(o: Options) -> Options {
    Options {
        shim_cgroup: true,
        ..o
    }
}

/// `[runtime] shim_cgroup` (runc's `ShimCgroup`): every pod shim of the run (a warm pool's
/// too) is in the node's shim cgroup in every hierarchy, the pod's containers are not, and
/// the pod runs.
pub async fn shim_cgroup(c: &mut Containerd) -> Result<()> {
    let pod = c.run_pod("shimcg").await?;
    let id = c.run_container(&pod, sh("app", "exec sleep 1000")).await?;
    let r = c.cri.exec_sync(&id, &["echo", "inside"], 10).await?;
    ensure!(r.stdout == b"inside\n", "ExecSync: {r:?}");
    let want = c.shim_cgroup();
    let shims = c.all_shims();
    ensure!(!shims.is_empty(), "no shim runs");
    let memberships = |pid: i32| -> Result<Vec<String>> {
        let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup"))?;
        // cgroup v1 hierarchies (`n:controllers:path`), or the v2 tree of a v2 host.
        let v1 = text.lines().any(|l| !l.starts_with("0::"));
        Ok(text
            .lines()
            .filter(|l| !v1 || !l.starts_with("0::"))
            .map(|l| l.splitn(3, ':').nth(2).unwrap_or_default().to_string())
            .collect())
    };
    for shim in &shims {
        let paths = memberships(shim.pid)?;
        ensure!(
            !paths.is_empty() && paths.iter().all(|p| *p == want),
            "shim {} is in {paths:?}, not all {want}",
            shim.pid
        );
    }
    let init = pod.container_init_pid(&id)?;
    let paths = memberships(init)?;
    ensure!(
        !paths.contains(&want),
        "the container's init is in the shim cgroup: {paths:?}"
    );
    c.remove_pod(&pod).await?;
    Ok(())
}

pub fn shim_cgroup_missing_opts(o: Options) -> Options {
    Options {
        shim_config:
            "[runtime]\nroot = \"{dir}/podshim-runc\"\nshim_cgroup = \"{dir}/no-such-cgroup\"\n"
                .into(),
        ..o
    }
}

/// A shim cgroup that does not exist: RunPodSandbox fails naming it, and the shim that could
/// not be moved is gone with everything else of the pod.
pub async fn shim_cgroup_missing(c: &mut Containerd) -> Result<()> {
    let err = crate::util::run_pod_fails(c, "nocg", "without its shim cgroup").await?;
    ensure!(
        err.contains("no-such-cgroup") && err.contains("create it first"),
        "error does not name the missing shim cgroup: {err}"
    );
    crate::util::assert_failed_pod_left_nothing(c).await
}

pub fn sched_core_opts(o: Options) -> Options {
    Options {
        shim_env: vec!["SCHED_CORE=1".into()],
        ..o
    }
}

/// containerd's shim manager `env = ["SCHED_CORE=1"]`: where the kernel has core scheduling,
/// the pod's shim and its containers share one cookie; where it has none (this host's kernel),
/// the shim's start fails saying so, as runc's shim's does, and nothing is left.
pub async fn sched_core(c: &mut Containerd) -> Result<()> {
    if let Err(e) = podshim_integration::sys::sched_core_cookie(0) {
        let why = format!("with SCHED_CORE=1 on a kernel without core scheduling ({e})");
        let err = crate::util::run_pod_fails(c, "schedcore", &why).await?;
        ensure!(
            err.contains("sched core"),
            "error does not say core scheduling failed: {err}"
        );
        return crate::util::assert_failed_pod_left_nothing(c).await;
    }
    let pod = c.run_pod("schedcore").await?;
    let id = c.run_container(&pod, sh("app", "exec sleep 1000")).await?;
    let init = pod.container_init_pid(&id)?;
    let theirs = podshim_integration::sys::sched_core_cookie(init)?;
    ensure!(theirs != 0, "the container has no core-scheduling cookie");
    for shim in c.all_shims() {
        let ours = podshim_integration::sys::sched_core_cookie(shim.pid)?;
        ensure!(
            ours == theirs,
            "shim {} cookie {ours:x}, container's {theirs:x}",
            shim.pid
        );
    }
    c.remove_pod(&pod).await?;
    Ok(())
}

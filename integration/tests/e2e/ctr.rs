//! The non-CRI path (`ctr run --runtime ...`) and invalid input.

use std::{os::unix::fs::PermissionsExt, time::Duration};

use anyhow::{bail, ensure, Context, Result};
use k8s_cri::v1::ContainerState;
use podshim_integration::{container, images::BUSYBOX_IMAGE, is_podshim, sys, Containerd};

use crate::lifecycle::assert_pod_gone;

pub struct Out {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

/// Run `ctr --address <sock> -n default <args>` with a deadline.
pub async fn ctr(c: &Containerd, args: &[String]) -> Result<Out> {
    let mut cmd = tokio::process::Command::new("ctr");
    cmd.arg("--address")
        .arg(&c.sock)
        .args(["-n", "default"])
        .args(args);
    cmd.stdin(std::process::Stdio::null()).kill_on_drop(true);
    let o = tokio::time::timeout(Duration::from_secs(60), cmd.output())
        .await
        .with_context(|| format!("ctr {args:?} timed out"))??;
    Ok(Out {
        code: o.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
    })
}

pub fn runtime_args(c: &Containerd, id: &str) -> Vec<String> {
    let mut v = vec!["run".to_string(), "--rm".into()];
    if is_podshim(&c.opts.handler) {
        v.extend(["--runtime".into(), "io.containerd.podshim.v1".into()]);
    } else {
        v.extend(["--runtime".into(), "io.containerd.runc.v2".into()]);
        v.extend([
            "--runc-root".into(),
            c.dir.join("runc-ctr").to_string_lossy().into_owned(),
        ]);
    }
    v.extend(["--cgroup".into(), format!("{}/{id}", c.cgroup_root)]);
    v
}

/// Nothing of a `ctr run` container is left: shim, bundle, mounts, container record.
pub async fn assert_ctr_gone(c: &Containerd, id: &str) -> Result<()> {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let mut left = Vec::new();
        for p in c.all_shims() {
            if p.arg_after("-namespace") == Some("default") {
                left.push(format!("shim {} {}", p.pid, p.cmdline_str()));
            }
        }
        if c.bundle_dir("default", id).exists() {
            left.push(format!("bundle {}", c.bundle_dir("default", id).display()));
        }
        for m in sys::mounts_under(&c.dir) {
            if m.to_string_lossy().contains(id) {
                left.push(format!("mount {}", m.display()));
            }
        }
        let pids = sys::cgroup_pids(&format!("{}/{id}", c.cgroup_root));
        if !pids.is_empty() {
            left.push(format!("processes {pids:?}"));
        }
        let ls = ctr(c, &["containers".into(), "ls".into(), "-q".into()]).await?;
        if ls.stdout.lines().any(|l| l.trim() == id) {
            left.push(format!("container record {id}"));
        }
        if left.is_empty() {
            return Ok(());
        }
        if std::time::Instant::now() > deadline {
            bail!("after ctr run --rm {id}: still present: {left:?}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// `ctr run --rm --runtime <ours> busybox echo hello` prints hello; exit codes propagate.
pub async fn ctr_run(c: &mut Containerd) -> Result<()> {
    let id = format!("ctr-hello-{}", c.seq());
    let mut args = runtime_args(c, &id);
    args.extend([
        BUSYBOX_IMAGE.into(),
        id.clone(),
        "echo".into(),
        "hello".into(),
    ]);
    let o = ctr(c, &args).await?;
    ensure!(
        o.code == 0 && o.stdout == "hello\n",
        "ctr run: code {} stdout {:?} stderr {:?}",
        o.code,
        o.stdout,
        o.stderr
    );
    assert_ctr_gone(c, &id).await?;

    let id = format!("ctr-exit-{}", c.seq());
    let mut args = runtime_args(c, &id);
    args.extend([
        BUSYBOX_IMAGE.into(),
        id.clone(),
        "sh".into(),
        "-c".into(),
        "echo to-err >&2; exit 5".into(),
    ]);
    let o = ctr(c, &args).await?;
    ensure!(
        o.code == 5,
        "ctr run exit 5: code {} stdout {:?} stderr {:?}",
        o.code,
        o.stdout,
        o.stderr
    );
    ensure!(
        o.stderr.contains("to-err"),
        "stderr not forwarded: {:?}",
        o.stderr
    );
    assert_ctr_gone(c, &id).await?;
    Ok(())
}

/// A container whose command does not exist: CreateContainer or StartContainer fails naming it;
/// nothing is left after RemovePodSandbox.
pub async fn missing_command(c: &mut Containerd) -> Result<()> {
    let pod = c.run_pod("badcmd").await?;
    let mut ids = Vec::new();
    let err = match c
        .create_container(&pod, container("bad", &["/no/such/binary", "arg"]))
        .await
    {
        Err(e) => format!("{e:#}"),
        Ok(id) => {
            ids.push(id.clone());
            match c.cri.start_container(&id).await {
                Ok(()) => bail!("StartContainer of /no/such/binary succeeded"),
                Err(e) => {
                    let st = c.cri.container_status(&id).await?;
                    ensure!(
                        st.state == ContainerState::ContainerExited as i32
                            || st.state == ContainerState::ContainerCreated as i32,
                        "failed container state {st:?}"
                    );
                    format!("{e:#}")
                }
            }
        }
    };
    ensure!(
        err.contains("/no/such/binary"),
        "error does not name the missing command: {err}"
    );
    ensure!(
        err.contains("no such file") || err.contains("not found"),
        "error does not say the command is missing: {err}"
    );
    // The pod itself still works.
    let ok = c
        .run_container(&pod, container("good", &["sleep", "1000"]))
        .await?;
    ids.push(ok.clone());
    let r = c.cri.exec_sync(&ok, &["true"], 5).await?;
    ensure!(
        r.exit_code == 0,
        "pod broken after a failed container: {r:?}"
    );
    c.remove_pod(&pod).await?;
    assert_pod_gone(c, &pod, &ids).await?;
    Ok(())
}

/// Invalid OCI spec (relative cwd) and a missing rootfs through `ctr run`: errors naming the
/// cause, nothing left behind.
pub async fn ctr_bad_input(c: &mut Containerd) -> Result<()> {
    // Relative working directory: invalid per the OCI runtime spec.
    let id = format!("ctr-badcwd-{}", c.seq());
    let mut args = runtime_args(c, &id);
    args.extend([
        "--cwd".into(),
        "relative/dir".into(),
        BUSYBOX_IMAGE.into(),
        id.clone(),
        "true".into(),
    ]);
    let o = ctr(c, &args).await?;
    ensure!(
        o.code != 0,
        "ctr run with a relative cwd succeeded: {:?}",
        o.stdout
    );
    ensure!(
        o.stderr.to_lowercase().contains("cwd") || o.stderr.contains("relative/dir"),
        "error does not name the bad cwd: {}",
        o.stderr.trim()
    );
    let _ = ctr(c, &["containers".into(), "rm".into(), id.clone()]).await;
    assert_ctr_gone(c, &id).await?;

    // Missing rootfs directory.
    let id = format!("ctr-norootfs-{}", c.seq());
    let missing = c.dir.join("no-such-rootfs");
    let mut args = runtime_args(c, &id);
    args.extend([
        "--rootfs".into(),
        missing.to_string_lossy().into_owned(),
        id.clone(),
        "/bin/sh".into(),
    ]);
    let o = ctr(c, &args).await?;
    ensure!(
        o.code != 0,
        "ctr run with a missing rootfs succeeded: {:?}",
        o.stdout
    );
    ensure!(
        o.stderr.contains("no-such-rootfs") || o.stderr.contains("rootfs"),
        "error does not name the missing rootfs: {}",
        o.stderr.trim()
    );
    let _ = ctr(c, &["containers".into(), "rm".into(), id.clone()]).await;
    assert_ctr_gone(c, &id).await?;
    Ok(())
}

/// Shim config for `failing_runtime`: the OCI runtime binary always fails.
pub fn failing_runtime_opts(o: podshim_integration::Options) -> podshim_integration::Options {
    podshim_integration::Options {
        shim_config: "[runtime]\nbinary = \"/bin/false\"\nroot = \"{dir}/podshim-runc\"\n".into(),
        ..o
    }
}

/// podshim configured with an OCI runtime that always fails: RunPodSandbox fails with an error
/// naming the runtime, and nothing (shim, mounts, netns, processes) is left.
pub async fn failing_runtime(c: &mut Containerd) -> Result<()> {
    let err = crate::util::run_pod_fails(c, "failing", "with runtime binary /bin/false").await?;
    ensure!(
        err.contains("/bin/false"),
        "error does not name the failing runtime binary /bin/false: {err}"
    );
    crate::util::assert_failed_pod_left_nothing(c).await
}

/// `ctr run --log-uri`: `file://` (both streams appended to one file), a plain path to a file
/// that exists (appended to), and `binary://` (a logging binary reads both streams, told the
/// container's id and namespace); `binary-v2://` (a ready byte) on podshim, and on runc's shim
/// from 2.3. Nothing is left, the logging binaries included.
pub async fn ctr_log_uri(c: &mut Containerd) -> Result<()> {
    let logs = c.dir.join("log-uri");
    let logger = logs.join("logger.sh");
    std::fs::create_dir_all(&logs)?;
    std::fs::write(
        &logger,
        "#!/bin/sh\nd=$2\nprintf x >&5\nexec 5>&-\n\
         echo \"$CONTAINER_NAMESPACE $CONTAINER_ID\" > $d.ids\n\
         exec /bin/cat <&3 > $d.out &\n/bin/cat <&4 > $d.err\n",
    )?;
    std::fs::set_permissions(&logger, std::fs::Permissions::from_mode(0o755))?;
    let run = |c: &Containerd, uri: String, id: String| {
        let mut args = runtime_args(c, &id);
        args.extend([
            "--log-uri".into(),
            uri,
            BUSYBOX_IMAGE.into(),
            id,
            "sh".into(),
            "-c".into(),
            "echo to-out; echo to-err >&2".into(),
        ]);
        args
    };

    let id = format!("ctr-logfile-{}", c.seq());
    let file = logs.join("sub").join(format!("{id}.log"));
    let o = ctr(c, &run(c, format!("file://{}", file.display()), id.clone())).await?;
    ensure!(
        o.code == 0,
        "ctr run --log-uri file://: {} {:?}",
        o.code,
        o.stderr
    );
    let text = std::fs::read_to_string(&file).with_context(|| format!("{}", file.display()))?;
    // containerd's runc shim hands the shared file to its stdout copy unwrapped (copyPipes in
    // its process/io.go, for file:// and a plain path alike): that copy ending first closes the
    // file under stderr's, whose lines are then lost. podshim gives each stream its own
    // descriptor.
    let stderr_kept = |text: &str| !is_podshim(&c.opts.handler) || text.contains("to-err\n");
    ensure!(
        text.contains("to-out\n") && stderr_kept(&text),
        "file:// log: {text:?}"
    );
    assert_ctr_gone(c, &id).await?;

    let id = format!("ctr-logplain-{}", c.seq());
    let plain = logs.join(format!("{id}.log"));
    std::fs::write(&plain, "before\n")?;
    let o = ctr(c, &run(c, plain.display().to_string(), id.clone())).await?;
    ensure!(
        o.code == 0,
        "ctr run --log-uri <file>: {} {:?}",
        o.code,
        o.stderr
    );
    let text = std::fs::read_to_string(&plain)?;
    ensure!(
        text.starts_with("before\n") && text.contains("to-out\n") && stderr_kept(&text),
        "plain file log: {text:?}"
    );
    assert_ctr_gone(c, &id).await?;

    // One query key: containerd passes keys in Go map order. A byte then the close is ready
    // for both schemes.
    let mut schemes = vec!["binary"];
    if is_podshim(&c.opts.handler) || c.release.at_least(2, 3) {
        schemes.push("binary-v2");
    }
    for scheme in schemes {
        let id = format!("ctr-logbin-{}", c.seq());
        let base = logs.join(&id);
        let uri = format!("{scheme}://{}?out={}", logger.display(), base.display());
        let o = ctr(c, &run(c, uri, id.clone())).await?;
        ensure!(
            o.code == 0,
            "ctr run --log-uri {scheme}://: {} {:?}",
            o.code,
            o.stderr
        );
        // runc's shim closes the logger's pipes at Delete, podshim's once the process exited:
        // the logger's cats finish either way (SIGTERM goes to its shell only).
        let read =
            |ext: &str| std::fs::read_to_string(base.with_extension(ext)).unwrap_or_default();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while (read("out").is_empty() || read("err").is_empty())
            && std::time::Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        ensure!(
            read("out") == "to-out\n" && read("err") == "to-err\n",
            "{scheme}:// logger got stdout {:?}, stderr {:?}",
            read("out"),
            read("err")
        );
        ensure!(
            read("ids") == format!("default {id}\n"),
            "ids {:?}",
            read("ids")
        );
        assert_ctr_gone(c, &id).await?;
    }
    // An exec's logging binary is told the exec's id.
    let id = format!("ctr-logexec-{}", c.seq());
    let mut args = runtime_args(c, &id);
    args.retain(|a| a != "--rm");
    args.extend([
        "-d".into(),
        BUSYBOX_IMAGE.into(),
        id.clone(),
        "sleep".into(),
        "1000".into(),
    ]);
    let o = ctr(c, &args).await?;
    ensure!(o.code == 0, "ctr run -d: {} {:?}", o.code, o.stderr);
    let base = logs.join(format!("{id}-exec"));
    let o = ctr(
        c,
        &[
            "task".into(),
            "exec".into(),
            "--exec-id".into(),
            "probe".into(),
            "--log-uri".into(),
            format!("binary://{}?out={}", logger.display(), base.display()),
            id.clone(),
            "sh".into(),
            "-c".into(),
            "echo exec-out; echo exec-err >&2".into(),
        ],
    )
    .await?;
    ensure!(
        o.code == 0,
        "ctr task exec --log-uri: {} {:?}",
        o.code,
        o.stderr
    );
    let read = |ext: &str| std::fs::read_to_string(base.with_extension(ext)).unwrap_or_default();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while (read("out").is_empty() || read("err").is_empty()) && std::time::Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    ensure!(
        read("out") == "exec-out\n"
            && read("err") == "exec-err\n"
            && read("ids") == "default probe\n",
        "exec's logger: stdout {:?}, stderr {:?}, ids {:?}",
        read("out"),
        read("err"),
        read("ids")
    );
    for args in [
        vec!["task", "kill", "-s", "SIGKILL", &id],
        vec!["task", "rm", "-f", &id],
        vec!["containers", "rm", &id],
    ] {
        let _ = ctr(c, &args.iter().map(|a| a.to_string()).collect::<Vec<_>>()).await;
    }
    assert_ctr_gone(c, &id).await?;

    let left = sys::processes_mentioning(&[&logger.to_string_lossy()]);
    ensure!(
        left.is_empty(),
        "logging binaries left: {:?}",
        left.iter().map(|p| p.pid).collect::<Vec<_>>()
    );
    Ok(())
}

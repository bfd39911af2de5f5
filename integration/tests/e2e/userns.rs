//! `hostUsers: false` pods: the pod's containers run in one user namespace with the pod's id
//! mappings, root inside and an unprivileged id outside, on every handler as on runc's.
//!
//! User-namespaced pods need id-mapped mounts, which bookworm's runc 1.1.5 lacks: these cases run
//! every handler on runc 1.4.3 from `$SHARED_DIR/runc` (`shared_runc` in their name, which
//! `scripts/e2e-release.sh` filters out where that archive is missing).

use std::os::unix::fs::MetadataExt;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use k8s_cri::v1::{IdMapping, Mount, NamespaceMode, PodSandboxConfig, UserNamespace};
use podshim_integration::{logs, sh, Containerd, Options};

/// First host id of the pod's range, as kubelet allocates them (a multiple of 65536).
const HOST_ID: u32 = 65536 * 7;
const LENGTH: u32 = 65536;

pub fn shared_runc(o: Options) -> Options {
    let runc = podshim_integration::shared::shared_runc().unwrap_or_else(|e| {
        panic!(
            "{e}: user-namespaced pods need runc {}; scripts/e2e-release.sh filters out the \
             shared_runc cases where that archive is missing",
            podshim_integration::shared::RUNC_RELEASE
        )
    });
    Options {
        oci_runtime: Some(runc),
        ..o
    }
}

fn userns() -> UserNamespace {
    let map = IdMapping {
        host_id: HOST_ID,
        container_id: 0,
        length: LENGTH,
    };
    UserNamespace {
        mode: NamespaceMode::Pod as i32,
        uids: vec![map],
        gids: vec![map],
    }
}

/// The pod config kubelet sends for `hostUsers: false`.
pub fn userns_pod_config(c: &Containerd, name: &str) -> PodSandboxConfig {
    let mut cfg = c.pod_config(name);
    cfg.linux
        .get_or_insert_with(Default::default)
        .security_context
        .get_or_insert_with(Default::default)
        .namespace_options
        .get_or_insert_with(Default::default)
        .userns_options = Some(userns());
    cfg
}

/// A busybox container of a `hostUsers: false` pod, with `volume` mounted id-mapped at /vol, as
/// kubelet asks for it.
fn userns_container(
    pod: &PodSandboxConfig,
    name: &str,
    script: &str,
    volume: &std::path::Path,
) -> k8s_cri::v1::ContainerConfig {
    let mut cfg = sh(name, script);
    let ns = pod
        .linux
        .as_ref()
        .and_then(|l| l.security_context.as_ref())
        .and_then(|s| s.namespace_options.clone());
    cfg.linux
        .get_or_insert_with(Default::default)
        .security_context
        .get_or_insert_with(Default::default)
        .namespace_options = ns;
    let map = userns().uids;
    cfg.mounts.push(Mount {
        container_path: "/vol".into(),
        host_path: volume.to_string_lossy().into_owned(),
        uid_mappings: map.clone(),
        gid_mappings: map,
        ..Default::default()
    });
    cfg
}

async fn exec_out(c: &Containerd, id: &str, script: &str) -> Result<String> {
    let r = c.cri.exec_sync(id, &["sh", "-c", script], 10).await?;
    ensure!(
        r.exit_code == 0,
        "{script:?} exited {}: {}",
        r.exit_code,
        String::from_utf8_lossy(&r.stderr)
    );
    Ok(String::from_utf8_lossy(&r.stdout).into_owned())
}

/// The host pid of the one process whose command line is `sleep <marker>`, within 10 s: a
/// started container's `sh -c "exec sleep …"` may not have exec'd yet.
async fn pid_of_sleep(marker: &str) -> Result<i32> {
    let want = format!("sleep\0{marker}\0");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let pids = loop {
        let pids: Vec<i32> = std::fs::read_dir("/proc")?
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
            .filter(|pid: &i32| {
                std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| c == want.as_bytes())
            })
            .collect();
        if !pids.is_empty() || std::time::Instant::now() > deadline {
            break pids;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    match pids[..] {
        [pid] => Ok(pid),
        _ => anyhow::bail!("processes `sleep {marker}`: {pids:?}"),
    }
}

/// `Uid:`/`Gid:` of /proc/<pid>/status: real, effective, saved, filesystem.
fn host_ids(pid: i32, field: &str) -> Result<Vec<u32>> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line = status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .with_context(|| format!("no {field} in /proc/{pid}/status"))?;
    Ok(line
        .split_whitespace()
        .filter_map(|x| x.parse().ok())
        .collect())
}

fn userns_of(pid: i32) -> Result<std::path::PathBuf> {
    std::fs::read_link(format!("/proc/{pid}/ns/user")).with_context(|| format!("pid {pid}"))
}

/// A `hostUsers: false` pod of two containers: root inside, `HOST_ID` outside, one user
/// namespace shared with the pod's sandbox process; a file the container's root writes on an
/// id-mapped volume belongs to root on the host; stdout reopened through /dev/stdout reaches
/// the log; ExecSync runs in the same namespace; CRI advertises the handler's support.
pub async fn host_users_false_shared_runc(c: &mut Containerd) -> Result<()> {
    userns_pod(c, false).await
}

/// The same on the node's network (containerd 2.3 on: CRI makes no network namespace, so no
/// user namespace either; runc, or podshim's holder, makes one from the pod's mappings).
pub async fn host_users_false_host_network_shared_runc(c: &mut Containerd) -> Result<()> {
    userns_pod(c, true).await
}

async fn userns_pod(c: &mut Containerd, host_network: bool) -> Result<()> {
    let features = c
        .cri
        .status()
        .await?
        .runtime_handlers
        .into_iter()
        .find(|h| h.name == c.opts.handler)
        .and_then(|h| h.features)
        .unwrap_or_default();
    eprintln!(
        "containerd {}: {} features {features:?}",
        c.release, c.opts.handler
    );

    let volume = c.dir.join("userns-volume");
    std::fs::create_dir_all(&volume)?;
    let mut cfg = userns_pod_config(c, "userns");
    if host_network {
        let ns = cfg.linux.as_mut().and_then(|l| l.security_context.as_mut());
        let ns = ns
            .and_then(|s| s.namespace_options.as_mut())
            .context("options")?;
        ns.network = NamespaceMode::Node as i32;
        // kubelet sends no hostname for a hostNetwork pod: it keeps the node's.
        cfg.hostname.clear();
    }
    let pod = c.run_pod_with(cfg.clone()).await?;
    // Markers of this run's two sleeps (cases of other handlers run beside it).
    let marker = 100_000 + podshim_integration::pod::rand_u64() % 800_000;
    let (ma, mb) = (marker.to_string(), (marker + 1).to_string());
    let script = format!(
        "echo uid=$(id -u) gid=$(id -g); echo reopened >/dev/stdout; \
         touch /vol/by-root; exec sleep {ma}"
    );
    let a = userns_container(&cfg, "a", &script, &volume);
    let log = pod.log_file(&a);
    let a = c.run_container(&pod, a).await?;
    let b = c
        .run_container(
            &pod,
            userns_container(&cfg, "b", &format!("exec sleep {mb}"), &volume),
        )
        .await?;
    let lines = logs::wait_for(&log, Duration::from_secs(10), |l| {
        l.iter().any(|x| x.msg == "reopened")
    })
    .await
    .context("stdout reopened as /dev/stdout never reached the log")?;
    ensure!(
        lines.iter().any(|x| x.msg == "uid=0 gid=0"),
        "ids inside: {lines:?}"
    );

    let (pa, pb) = (pid_of_sleep(&ma).await?, pid_of_sleep(&mb).await?);
    for pid in [pa, pb] {
        for field in ["Uid:", "Gid:"] {
            let ids = host_ids(pid, field)?;
            ensure!(
                ids == [HOST_ID; 4],
                "{field} of container pid {pid} on the host: {ids:?}"
            );
        }
    }
    let host = userns_of(std::process::id() as i32)?;
    let user = userns_of(pa)?;
    ensure!(user != host, "container a shares the host's user namespace");
    ensure!(
        userns_of(pb)? == user,
        "a and b in different user namespaces"
    );
    let sandbox = c.sandbox_pid(&pod)?;
    ensure!(
        userns_of(sandbox)? == user,
        "the sandbox process {sandbox} is not in the containers' user namespace"
    );

    let map = exec_out(c, &b, "cat /proc/self/uid_map").await?;
    let map: Vec<&str> = map.split_whitespace().collect();
    ensure!(
        map == ["0", &HOST_ID.to_string(), &LENGTH.to_string()],
        "uid_map inside: {map:?}"
    );
    let ids = exec_out(c, &b, "id -u; id -g").await?;
    ensure!(ids == "0\n0\n", "ExecSync ids: {ids:?}");
    // What the sandbox gives its containers works from inside the user namespace too.
    let host = exec_out(c, &b, "hostname; touch /dev/shm/by-root && echo shm-ok").await?;
    let want = match host_network {
        true => std::fs::read_to_string("/proc/sys/kernel/hostname")?,
        false => "userns\n".into(),
    };
    ensure!(
        host == format!("{want}shm-ok\n"),
        "hostname and /dev/shm: {host:?}"
    );
    let netns = |pid: i32| std::fs::read_link(format!("/proc/{pid}/ns/net"));
    ensure!(
        (netns(pa)? == netns(std::process::id() as i32)?) == host_network,
        "container a's network namespace {:?}, hostNetwork {host_network}",
        netns(pa)?
    );

    let written =
        std::fs::metadata(volume.join("by-root")).context("the container's file on the volume")?;
    ensure!(
        (written.uid(), written.gid()) == (0, 0),
        "a file the container's root wrote on the id-mapped volume belongs to {}:{} on the host",
        written.uid(),
        written.gid()
    );

    ensure!(
        features.user_namespaces || !c.release.introspects_every_runtime(),
        "containerd {} asks {} for its features, yet user namespaces are not advertised",
        c.release,
        c.opts.handler
    );
    for id in [&a, &b] {
        c.cri.stop_container(id, 2).await?;
        c.cri.remove_container(id).await?;
    }
    c.remove_pod(&pod).await?;
    Ok(())
}

//! What a pod's sandbox provides to its containers, whoever provides it (a pause container in
//! classic mode, the pod shim in pause-less mode): hostname, DNS, /dev/shm, sysctls, a shared
//! PID namespace, host networking.

use anyhow::{ensure, Context, Result};
use k8s_cri::v1::{DnsConfig, NamespaceMode, PodSandboxConfig};
use podshim_integration::{
    containerd::shim_bin_dir, images, is_pauseless, is_sandboxer, sh, sys, Containerd,
};

async fn exec_out(c: &Containerd, id: &str, cmd: &[&str]) -> Result<String> {
    let r = c.cri.exec_sync(id, cmd, 10).await?;
    ensure!(
        r.exit_code == 0,
        "{cmd:?} exited {}: {}",
        r.exit_code,
        String::from_utf8_lossy(&r.stderr)
    );
    Ok(String::from_utf8_lossy(&r.stdout).into_owned())
}

fn namespaces(cfg: &mut PodSandboxConfig) -> &mut k8s_cri::v1::NamespaceOption {
    cfg.linux
        .get_or_insert_with(Default::default)
        .security_context
        .get_or_insert_with(Default::default)
        .namespace_options
        .get_or_insert_with(Default::default)
}

/// The pod's hostname, DNS config and a namespaced sysctl, seen from inside two containers;
/// /dev/shm is the pod's own tmpfs, shared by its containers.
pub async fn pod_environment(c: &mut Containerd) -> Result<()> {
    let mut cfg = c.pod_config("envpod");
    cfg.hostname = "podshim-env-host".into();
    cfg.dns_config = Some(DnsConfig {
        servers: vec!["10.96.0.10".into(), "10.96.0.11".into()],
        searches: vec!["ns1.svc.cluster.local".into(), "svc.cluster.local".into()],
        options: vec!["ndots:5".into()],
    });
    cfg.linux.get_or_insert_with(Default::default).sysctls = [
        (
            "net.ipv4.ip_unprivileged_port_start".to_string(),
            "123".to_string(),
        ),
        ("kernel.shm_rmid_forced".to_string(), "1".to_string()),
    ]
    .into();
    let pod = c.run_pod_with(cfg).await?;
    let a = c.run_container(&pod, sh("a", "exec sleep 1000")).await?;
    let b = c.run_container(&pod, sh("b", "exec sleep 1000")).await?;
    for id in [&a, &b] {
        let host = exec_out(c, id, &["hostname"]).await?;
        ensure!(host.trim() == "podshim-env-host", "hostname {host:?}");
        let etc = exec_out(c, id, &["cat", "/etc/hostname"]).await?;
        ensure!(etc == "podshim-env-host\n", "/etc/hostname {etc:?}");
        let resolv = exec_out(c, id, &["cat", "/etc/resolv.conf"]).await?;
        ensure!(
            resolv
                == "search ns1.svc.cluster.local svc.cluster.local\nnameserver 10.96.0.10\n\
                    nameserver 10.96.0.11\noptions ndots:5\n",
            "/etc/resolv.conf {resolv:?}"
        );
        let hosts = exec_out(c, id, &["cat", "/etc/hosts"]).await?;
        ensure!(hosts.contains("localhost"), "/etc/hosts {hosts:?}");
        let port = exec_out(
            c,
            id,
            &["cat", "/proc/sys/net/ipv4/ip_unprivileged_port_start"],
        )
        .await?;
        ensure!(port.trim() == "123", "net sysctl {port:?}");
        let rmid = exec_out(c, id, &["cat", "/proc/sys/kernel/shm_rmid_forced"]).await?;
        ensure!(rmid.trim() == "1", "ipc sysctl {rmid:?}");
    }
    let mounts = exec_out(c, &a, &["cat", "/proc/mounts"]).await?;
    let shm = mounts
        .lines()
        .find(|l| l.split_whitespace().nth(1) == Some("/dev/shm"))
        .context("no /dev/shm mount in the container")?;
    ensure!(
        shm.contains("tmpfs") && shm.contains("size=65536k"),
        "/dev/shm: {shm}"
    );
    exec_out(c, &a, &["sh", "-c", "echo shared > /dev/shm/x"]).await?;
    let x = exec_out(c, &b, &["cat", "/dev/shm/x"]).await?;
    ensure!(
        x == "shared\n",
        "/dev/shm not shared between the pod's containers: {x:?}"
    );
    // The host keeps its own value of the namespaced sysctl.
    let host_port = std::fs::read_to_string("/proc/sys/net/ipv4/ip_unprivileged_port_start")?;
    ensure!(
        host_port.trim() != "123",
        "the pod's sysctl leaked to the host"
    );
    c.remove_pod(&pod).await?;
    Ok(())
}

/// shareProcessNamespace: containers see each other's processes, and PID 1 is the sandbox.
pub async fn share_process_namespace(c: &mut Containerd) -> Result<()> {
    let mut cfg = c.pod_config("sharedpid");
    namespaces(&mut cfg).pid = NamespaceMode::Pod as i32;
    let pod = c.run_pod_with(cfg).await?;
    let a = c.run_container(&pod, sh("a", "exec sleep 1001")).await?;
    let b = c.run_container(&pod, sh("b", "exec sleep 1002")).await?;
    let ps = exec_out(c, &a, &["ps", "-o", "pid,args"]).await?;
    ensure!(
        ps.contains("sleep 1002"),
        "container a does not see b's process:\n{ps}"
    );
    let pid1 = exec_out(c, &b, &["cat", "/proc/1/cmdline"]).await?;
    ensure!(
        !pid1.contains("sleep"),
        "PID 1 of the shared namespace is a container process, not the sandbox: {pid1:?}"
    );
    // An orphan in the pod is reaped by the sandbox, not left as a zombie.
    exec_out(c, &a, &["sh", "-c", "(sleep 0.2 &) ; true"]).await?;
    tokio::time::sleep(std::time::Duration::from_millis(800)).await;
    let ps = exec_out(c, &b, &["ps", "-o", "stat,args"]).await?;
    ensure!(
        !ps.lines().any(|l| l.trim_start().starts_with('Z')),
        "zombie left in the pod's PID namespace:\n{ps}"
    );
    c.remove_pod(&pod).await?;
    Ok(())
}

/// hostNetwork: the containers see the host's interfaces (our CNI bridge) and hostname.
pub async fn host_network(c: &mut Containerd) -> Result<()> {
    let mut cfg = c.pod_config("hostnet");
    namespaces(&mut cfg).network = NamespaceMode::Node as i32;
    // kubelet sends no hostname for a hostNetwork pod: it keeps the node's.
    cfg.hostname.clear();
    let pod = c.run_pod_with(cfg).await?;
    // A CNI bridge exists once a pod network was set up; make one so the host has it.
    let netpod = c.run_pod("bridgeholder").await?;
    let a = c.run_container(&pod, sh("a", "exec sleep 1000")).await?;
    let links = exec_out(c, &a, &["ls", "/sys/class/net"]).await?;
    ensure!(
        links.split_whitespace().any(|l| l == c.bridge),
        "host bridge {} not visible in a hostNetwork pod: {links:?}",
        c.bridge
    );
    let host = exec_out(c, &a, &["hostname"]).await?;
    let ours = nix_hostname();
    ensure!(
        host.trim() == ours,
        "hostname {host:?} in a hostNetwork pod, host has {ours:?}"
    );
    c.remove_pod(&pod).await?;
    c.remove_pod(&netpod).await?;
    Ok(())
}

fn nix_hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .unwrap_or_default()
        .trim()
        .to_string()
}

/// A sysctl the kernel does not have fails RunPodSandbox with an error naming it, and the failed
/// pod leaves nothing behind (for pause-less pods: the namespace holder reports it).
pub async fn unknown_sysctl(c: &mut Containerd) -> Result<()> {
    const NAME: &str = "net.ipv4.podshim_no_such_sysctl";
    let mut cfg = c.pod_config("badsysctl");
    cfg.linux.get_or_insert_with(Default::default).sysctls =
        [(NAME.to_string(), "1".to_string())].into();
    let err = match c.run_pod_with(cfg).await {
        Ok(pod) => anyhow::bail!("RunPodSandbox with sysctl {NAME} succeeded: {}", pod.id),
        Err(e) => format!("{e:#}"),
    };
    ensure!(
        err.contains("podshim_no_such_sysctl"),
        "the error does not name the sysctl: {err}"
    );
    crate::util::assert_failed_pod_left_nothing(c).await
}

type Refusal = (&'static str, fn(&mut PodSandboxConfig), &'static str);

/// What runc refuses of a pause container in the node's network namespace, every handler
/// refuses at RunPodSandbox with runc's message and code (Unknown), leaving nothing: a hostname
/// without a UTS namespace of the pod's own, a network sysctl. Neither reaches the host.
pub async fn host_network_refusals(c: &mut Containerd) -> Result<()> {
    let cases: [Refusal; 2] = [
        (
            "hostname",
            |cfg| namespaces(cfg).network = NamespaceMode::Node as i32,
            "unable to set hostname without a private UTS namespace",
        ),
        (
            "netsysctl",
            |cfg| {
                namespaces(cfg).network = NamespaceMode::Node as i32;
                cfg.hostname.clear();
                sysctl(cfg, "net.ipv4.tcp_keepalive_probes");
            },
            "sysctl \"net.ipv4.tcp_keepalive_probes\" not allowed in host network namespace",
        ),
    ];
    refused_like_runc(c, &cases).await
}

/// The same for a pod with its own network namespace: an IPC sysctl in the node's IPC
/// namespace and a sysctl no namespace holds.
pub async fn sysctl_refusals(c: &mut Containerd) -> Result<()> {
    let cases: [Refusal; 2] = [
        (
            "ipcsysctl",
            |cfg| {
                namespaces(cfg).ipc = NamespaceMode::Node as i32;
                sysctl(cfg, "kernel.shm_rmid_forced");
            },
            "sysctl \"kernel.shm_rmid_forced\" is not allowed in the hosts ipc namespace",
        ),
        (
            "vmsysctl",
            |cfg| sysctl(cfg, "vm.overcommit_ratio"),
            "sysctl \"vm.overcommit_ratio\" is not in a separate kernel namespace",
        ),
    ];
    refused_like_runc(c, &cases).await
}

/// What CRI refuses of the pause container's security context, every handler refuses with its
/// message and code: a group without a user, a Localhost seccomp profile that does not exist, a
/// seccomp profile path of no known form.
pub async fn security_refusals(c: &mut Containerd) -> Result<()> {
    fn security(cfg: &mut PodSandboxConfig) -> &mut k8s_cri::v1::LinuxSandboxSecurityContext {
        cfg.linux
            .get_or_insert_with(Default::default)
            .security_context
            .get_or_insert_with(Default::default)
    }
    let cases: [Refusal; 3] = [
        (
            "groupnouser",
            |cfg| security(cfg).run_as_group = Some(k8s_cri::v1::Int64Value { value: 1000 }),
            "user group \"1000\" is specified without user",
        ),
        (
            "seccompmissing",
            |cfg| {
                security(cfg).seccomp = Some(k8s_cri::v1::SecurityProfile {
                    profile_type: k8s_cri::v1::security_profile::ProfileType::Localhost as i32,
                    localhost_ref: "/nonexistent/podshim-e2e-seccomp.json".into(),
                })
            },
            "cannot load seccomp profile \"/nonexistent/podshim-e2e-seccomp.json\"",
        ),
        (
            "seccompbogus",
            |cfg| {
                #[allow(deprecated)]
                {
                    security(cfg).seccomp_profile_path = "bogus".into();
                }
            },
            "invalid profile \"bogus\"",
        ),
    ];
    refused_like_runc(c, &cases).await
}

/// User namespace options CRI's podsandbox refuses when it builds the pause container's spec,
/// and a mapping without the pod's root, which no pause container can start with: refused by
/// every handler (critest's UserNamespaces specs; the pause-less handlers made such pods, the
/// last without a user namespace at all, before).
pub async fn userns_refusals(c: &mut Containerd) -> Result<()> {
    fn userns(cfg: &mut PodSandboxConfig, mode: k8s_cri::v1::NamespaceMode, container_id: u32) {
        let map = k8s_cri::v1::IdMapping {
            host_id: 65536 * 7,
            container_id,
            length: 65536,
        };
        namespaces(cfg).userns_options = Some(k8s_cri::v1::UserNamespace {
            mode: mode as i32,
            uids: vec![map],
            gids: vec![map],
        });
    }
    use k8s_cri::v1::NamespaceMode as M;
    let cases: [Refusal; 3] = [
        (
            "usernscontainer",
            |cfg| userns(cfg, M::Container, 0),
            "unsupported user namespace mode: \"CONTAINER\"",
        ),
        (
            "usernstarget",
            |cfg| userns(cfg, M::Target, 0),
            "unsupported user namespace mode: \"TARGET\"",
        ),
        ("usernsnoroot", |cfg| userns(cfg, M::Pod, 1), ""),
    ];
    refused_like_runc(c, &cases).await
}

async fn refused_like_runc(c: &mut Containerd, cases: &[Refusal]) -> Result<()> {
    let host_before = host_sysctls();
    for (name, change, want) in cases {
        let mut cfg = c.pod_config(name);
        change(&mut cfg);
        let err = match c.run_pod_with(cfg).await {
            Ok(pod) => anyhow::bail!("{name}: RunPodSandbox succeeded: {}", pod.id),
            Err(e) => format!("{e:#}"),
        };
        ensure!(
            err.contains("RunPodSandbox: Unknown: ") && err.contains(want),
            "{name}: want code Unknown and {want:?}, got: {err}"
        );
        crate::util::assert_failed_pod_left_nothing(c).await?;
    }
    ensure!(
        host_sysctls() == host_before,
        "a refused pod changed the host's sysctls"
    );
    Ok(())
}

/// Sets `name` to the host's own value: were it written to the host, nothing would change.
fn sysctl(cfg: &mut PodSandboxConfig, name: &str) {
    let path = format!("/proc/sys/{}", name.replace('.', "/"));
    let value = std::fs::read_to_string(path).unwrap_or_default();
    cfg.linux
        .get_or_insert_with(Default::default)
        .sysctls
        .insert(name.into(), value.trim().into());
}

fn host_sysctls() -> Vec<String> {
    [
        "net/ipv4/tcp_keepalive_probes",
        "kernel/shm_rmid_forced",
        "vm/overcommit_ratio",
    ]
    .iter()
    .map(|p| std::fs::read_to_string(format!("/proc/sys/{p}")).unwrap_or_default())
    .collect()
}

/// A pod with its own network namespace gets CRI's default sysctls on every handler (runc's
/// pause container has them from containerd, a pause-less pod from its holder): any user may
/// bind ports below 1024 and send ICMP echo.
pub async fn default_sysctls(c: &mut Containerd) -> Result<()> {
    let pod = c.run_pod("defsysctl").await?;
    let a = c.run_container(&pod, sh("a", "exec sleep 1000")).await?;
    let ports = exec_out(
        c,
        &a,
        &["cat", "/proc/sys/net/ipv4/ip_unprivileged_port_start"],
    )
    .await?;
    ensure!(ports.trim() == "0", "ip_unprivileged_port_start {ports:?}");
    let ping = exec_out(c, &a, &["cat", "/proc/sys/net/ipv4/ping_group_range"]).await?;
    let ping: Vec<&str> = ping.split_whitespace().collect();
    ensure!(ping == ["0", "2147483647"], "ping_group_range {ping:?}");
    c.remove_pod(&pod).await?;
    Ok(())
}

/// Verbose PodSandboxStatus carries the pod's runtime spec where CRI clients look for it
/// (`info.runtimeSpec`, as crictl inspectp shows it): the pod's network namespace by its path,
/// IPC and UTS namespaces, the hostname, and the sandbox pid, on every handler and release.
pub async fn verbose_status(c: &mut Containerd) -> Result<()> {
    let pod = c.run_pod("verbose").await?;
    let st = c.cri.pod_status(&pod.id, true).await?;
    let info: serde_json::Value = serde_json::from_str(
        st.info
            .get("info")
            .context("no info[\"info\"] in verbose PodSandboxStatus")?,
    )
    .context("info[\"info\"] is not JSON")?;
    let pid = info["pid"].as_u64().unwrap_or_default();
    ensure!(pid > 0, "info.pid {:?}", info["pid"]);
    ensure!(
        pid as i32 == c.sandbox_pid(&pod)?,
        "info.pid {pid}, the sandbox process is {}",
        c.sandbox_pid(&pod)?
    );
    let spec = &info["runtimeSpec"];
    ensure!(spec.is_object(), "no info.runtimeSpec: {info}");
    ensure!(
        spec["hostname"] == "verbose",
        "runtimeSpec.hostname {:?}",
        spec["hostname"]
    );
    let namespaces = spec["linux"]["namespaces"]
        .as_array()
        .context("no runtimeSpec.linux.namespaces")?;
    let path_of = |kind: &str| {
        namespaces
            .iter()
            .find(|n| n["type"] == kind)
            .map(|n| n["path"].as_str().unwrap_or_default().to_string())
    };
    let netns = pod.netns.as_ref().context("pod without a netns path")?;
    ensure!(
        path_of("network").as_deref() == Some(&*netns.to_string_lossy()),
        "runtimeSpec network namespace {:?}, the pod's is {}",
        path_of("network"),
        netns.display()
    );
    for kind in ["ipc", "uts"] {
        ensure!(
            path_of(kind).is_some(),
            "runtimeSpec has no {kind} namespace"
        );
    }
    c.remove_pod(&pod).await?;
    Ok(())
}

pub fn without_pause_image(mut o: podshim_integration::Options) -> podshim_integration::Options {
    o.pause_image = Some(false);
    o
}

/// As [`without_pause_image`]; a podshim-pauseless shim gives up on a created sandbox without a
/// network namespace after 3 s instead of its default 600 (`start_deadline_secs`), so that the
/// case sees it go. podshim-sandboxer's pods keep the default: that daemon asks containerd.
pub fn without_pause_image_short_start_deadline(
    o: podshim_integration::Options,
) -> podshim_integration::Options {
    let mut o = without_pause_image(o);
    if o.handler == podshim_integration::containerd::HANDLER_PAUSELESS {
        o.shim_config =
            "[runtime]\nroot = \"{dir}/podshim-runc\"\n[sandbox]\nstart_deadline_secs = 3\n".into();
    }
    o
}

/// RunPodSandbox with no pause image in containerd's store (and no registry to pull it from).
/// Pods that run a pause container fail; pause-less pods need none on containerd < 2.3, and from
/// 2.3 on CRI pulls it anyway, after the sandbox was created (containerd#12849), then never calls
/// the sandbox again: the failed pod must leave nothing, its created sandbox included.
pub async fn pause_image_missing(c: &mut Containerd) -> Result<()> {
    let cfg = c.pod_config("nopauseimg");
    run_without_pause_image(c, cfg).await
}

/// The same for a hostNetwork pod: no network namespace goes away when CRI gives up on it, so
/// nothing but the sandbox controller's own bookkeeping can find the created sandbox again.
pub async fn pause_image_missing_host_network(c: &mut Containerd) -> Result<()> {
    let mut cfg = c.pod_config("nopausehostnet");
    namespaces(&mut cfg).network = NamespaceMode::Node as i32;
    cfg.hostname.clear();
    run_without_pause_image(c, cfg).await
}

async fn run_without_pause_image(c: &mut Containerd, cfg: PodSandboxConfig) -> Result<()> {
    let pull_fails = c.needs_pause_image();
    match c.run_pod_with(cfg).await {
        Ok(pod) if !pull_fails => {
            c.remove_pod(&pod).await?;
            Ok(())
        }
        Ok(pod) => anyhow::bail!(
            "containerd {}: RunPodSandbox succeeded without the pause image: {}",
            c.release,
            pod.id
        ),
        Err(e) if pull_fails => {
            let err = format!("{e:#}");
            ensure!(
                err.contains(images::PAUSE_IMAGE),
                "the error does not name the pause image: {err}"
            );
            crate::util::assert_failed_pod_left_nothing(c).await
        }
        Err(e) => Err(e.context(format!(
            "containerd {}: a pause-less pod needs no pause image",
            c.release
        ))),
    }
}

pub fn cni_plugin_missing(mut o: podshim_integration::Options) -> podshim_integration::Options {
    o.cni_plugin_missing = true;
    o
}

/// The pod's network cannot be set up (its CNI plugin is missing): RunPodSandbox fails naming
/// the plugin and leaves nothing, on every handler.
pub async fn network_setup_fails(c: &mut Containerd) -> Result<()> {
    let err = match c.run_pod("nocni").await {
        Ok(pod) => anyhow::bail!("RunPodSandbox succeeded without a CNI plugin: {}", pod.id),
        Err(e) => format!("{e:#}"),
    };
    ensure!(
        err.contains("podshim-e2e-no-such-plugin"),
        "the error does not name the missing CNI plugin: {err}"
    );
    crate::util::assert_failed_pod_left_nothing(c).await
}

/// In-place pod resize (UpdatePodSandboxResources, containerd 2.3): the kubelet resizes the pod's
/// cgroup itself, then tells CRI, which keeps the pod's new resources and shows them in the
/// verbose status; the pod runs on. CRI hands the new resources to the pod's sandbox controller:
/// podshim-sandboxer sets the pod's cgroup to the kubelet's figures (the containers' sum plus
/// the pod overhead); containerd's own controllers leave the cgroup to the kubelet. Before 2.3
/// containerd refuses the call, whatever the handler.
pub async fn pod_resize(c: &mut Containerd) -> Result<()> {
    let pod = c.run_pod("resize").await?;
    let a = c.run_container(&pod, sh("a", "exec sleep 1000")).await?;
    const MEMORY: i64 = 256 << 20;
    const OVERHEAD_MEMORY: i64 = 32 << 20;
    const SHARES: i64 = 512;
    const OVERHEAD_SHARES: i64 = 16;
    let limits = || {
        (
            sys::cgroup_file(&pod.cgroup_parent, "memory.limit_in_bytes")
                .or_else(|| sys::cgroup_file(&pod.cgroup_parent, "memory.max")),
            sys::cgroup_file(&pod.cgroup_parent, "cpu.shares")
                .or_else(|| sys::cgroup_file(&pod.cgroup_parent, "cpu.weight")),
        )
    };
    let before = limits();
    let r = c
        .cri
        .update_pod_resources(
            &pod.id,
            Some(k8s_cri::v1::LinuxContainerResources {
                cpu_shares: OVERHEAD_SHARES,
                memory_limit_in_bytes: OVERHEAD_MEMORY,
                ..Default::default()
            }),
            k8s_cri::v1::LinuxContainerResources {
                cpu_shares: SHARES,
                memory_limit_in_bytes: MEMORY,
                ..Default::default()
            },
        )
        .await;
    if c.release.at_least(2, 3) {
        r?;
        let st = c.cri.pod_status(&pod.id, true).await?;
        let info = st.info.get("info").cloned().unwrap_or_default();
        ensure!(
            info.contains(&MEMORY.to_string()),
            "verbose status does not show the new memory limit: {info}"
        );
        let after = limits();
        if is_sandboxer(&c.opts.handler) {
            let shares = (SHARES + OVERHEAD_SHARES) as u64;
            // cgroup v2 takes cpu.weight, converted from shares as runc and the kubelet do.
            let weight = 1 + ((shares - 2) * 9999) / 262142;
            let want = (
                Some((MEMORY + OVERHEAD_MEMORY).to_string()),
                Some(shares.to_string()),
            );
            let want_v2 = (want.0.clone(), Some(weight.to_string()));
            ensure!(
                after == want || after == want_v2,
                "pod cgroup {} after the resize: {after:?}, want {want:?}",
                pod.cgroup_parent
            );
        } else {
            ensure!(
                after == before,
                "{}: the pod cgroup {} changed from {before:?} to {after:?}, by whom?",
                c.opts.handler,
                pod.cgroup_parent
            );
        }
    } else {
        let err = r.err().map(|e| format!("{e:#}"));
        ensure!(
            err.as_deref()
                .is_some_and(|e| e.contains("Unimplemented") || e.contains("not implemented")),
            "containerd {}: UpdatePodSandboxResources answered {err:?}",
            c.release
        );
    }
    let out = exec_out(c, &a, &["echo", "still-running"]).await?;
    ensure!(
        out.trim() == "still-running",
        "exec after the resize: {out:?}"
    );
    c.remove_pod(&pod).await?;
    Ok(())
}

/// A pause-less pod runs no pause process, and on containerd < 2.3 needs no pause image (the run
/// does not import it; from 2.3 on CRI pulls it for every sandboxer, containerd#12849).
pub async fn no_pause(c: &mut Containerd) -> Result<()> {
    ensure!(is_pauseless(&c.opts.handler), "not a pause-less handler");
    let pod = c.run_pod("nopause").await?;
    let id = c.run_container(&pod, sh("app", "exec sleep 1000")).await?;
    let pause_in_store = c.cri.image_present(images::PAUSE_IMAGE).await?;
    ensure!(
        pause_in_store == c.needs_pause_image(),
        "containerd {}: the pause image is {} containerd's image store",
        c.release,
        if pause_in_store { "in" } else { "not in" }
    );
    // Only this containerd's pods: other cases run classic pods (with pause) at the same time.
    let ours = sys::cgroup_pids(&c.cgroup_root);
    let pauses: Vec<_> = sys::processes()
        .into_iter()
        .filter(|p| ours.contains(&p.pid))
        .filter(|p| p.cmdline.first().is_some_and(|a| a.ends_with("pause")))
        .map(|p| (p.pid, p.cmdline_str()))
        .collect();
    ensure!(pauses.is_empty(), "pause processes: {pauses:?}");
    let holder = c.sandbox_pid(&pod)?;
    let holder_exe = std::fs::read_link(format!("/proc/{holder}/exe"))?;
    let installed = shim_bin_dir(c.opts.shim_bin_dir.as_deref()).join(podshim_holder::BINARY);
    ensure!(
        holder_exe == installed,
        "the namespace holder runs {}, not {}",
        holder_exe.display(),
        installed.display()
    );
    let shim_of_app = crate::util::ppid(pod.container_init_pid(&id)?)?;
    ensure!(
        crate::util::ppid(holder)? == shim_of_app,
        "the namespace holder {holder} is not a child of the pod's shim {shim_of_app}"
    );
    let st = c
        .cri
        .pod_status(&pod.id, false)
        .await?
        .status
        .unwrap_or_default();
    ensure!(st.id == pod.id, "PodSandboxStatus id {:?}", st.id);
    c.remove_pod(&pod).await?;
    ensure!(
        sys::sandbox_holders(&pod.id).is_empty(),
        "holder left after RemovePodSandbox"
    );
    Ok(())
}

//! The pause-less pod as CRI and NRI read a sandbox: an OCI runtime spec of what the pod's
//! namespaces and files really are, and the verbose status CRI shows.
//!
//! containerd 2.3 stores the spec StartSandbox returns in the sandbox record and hands it to NRI
//! plugins (containerd#12840); a record without one makes CRI log "failed to unmarshal sandbox
//! spec" at every NRI event of the pod. The spec names only namespaces the pod owns, each by a
//! path that stays valid while the holder lives: an entry without a path would read "new" to a
//! plugin.
//!
//! From 2.3 on CRI also parses `info["info"]` of a sandbox's status as its own SandboxInfo and
//! drops every key SandboxInfo lacks, so that entry holds SandboxInfo's keys only and podshim's
//! own details go under `info["podshim"]`.

use std::{
    collections::{BTreeMap, HashMap},
    path::Path,
};

use serde_json::{json, Map, Value};

use crate::sandbox::pod_config::{NamespaceMode, PodSandboxConfig};

/// The type URL containerd registers the OCI runtime spec under (value: the spec as JSON).
pub const SPEC_TYPE_URL: &str = "types.containerd.io/opencontainers/runtime-spec/1/Spec";
/// The OCI runtime-spec version the document follows.
const OCI_VERSION: &str = "1.2.0";
/// The runtime type CRI records for the pod's containers.
pub const RUNTIME_TYPE: &str = "io.containerd.podshim.v1";

/// What of a pod sandbox the spec and status show.
pub struct SandboxView<'a> {
    pub id: &'a str,
    pub config: &'a PodSandboxConfig,
    pub netns: Option<&'a Path>,
    /// The sysctls the holder set (the pod's and CRI's defaults).
    pub sysctls: &'a BTreeMap<String, String>,
    pub pod_files: &'a Path,
}

/// The pod's spec once its holder runs as `holder_pid`.
pub fn runtime_spec(sandbox: &SandboxView<'_>, holder_pid: u32) -> Value {
    let c = &sandbox.config;
    let mut namespaces = Vec::new();
    if let Some(netns) = &sandbox.netns {
        namespaces.push(json!({"type": "network", "path": netns}));
    }
    let ns = |kind: &str| format!("/proc/{holder_pid}/ns/{kind}");
    let private_uts = c.network != NamespaceMode::Node;
    if c.ipc != NamespaceMode::Node {
        namespaces.push(json!({"type": "ipc", "path": ns("ipc")}));
    }
    if private_uts {
        namespaces.push(json!({"type": "uts", "path": ns("uts")}));
    }
    if c.pid == NamespaceMode::Pod {
        namespaces.push(json!({"type": "pid", "path": ns("pid")}));
    }
    let mut annotations = Map::new();
    for (k, v) in [
        ("io.kubernetes.cri.container-type", "sandbox"),
        ("io.kubernetes.cri.sandbox-id", sandbox.id),
        ("io.kubernetes.cri.sandbox-name", c.name.as_str()),
        ("io.kubernetes.cri.sandbox-namespace", c.namespace.as_str()),
        ("io.kubernetes.cri.sandbox-uid", c.uid.as_str()),
        (
            "io.kubernetes.cri.sandbox-log-directory",
            c.log_directory.as_str(),
        ),
    ] {
        annotations.insert(k.into(), v.into());
    }
    let mut spec = json!({
        "ociVersion": OCI_VERSION,
        "annotations": annotations,
        "linux": {
            "namespaces": namespaces,
            "sysctl": sandbox.sysctls,
        },
    });
    if private_uts && !c.hostname.is_empty() {
        spec["hostname"] = c.hostname.clone().into();
    }
    spec
}

/// `info` of a verbose SandboxStatus: SandboxInfo's keys under "info", podshim's under "podshim".
pub fn verbose_info(
    sandbox: &SandboxView<'_>,
    holder_pid: u32,
    ready: bool,
) -> HashMap<String, String> {
    let c = &sandbox.config;
    let mut info = json!({
        "pid": holder_pid,
        "processStatus": if ready { "running" } else { "stopped" },
        "netNamespaceClosed": sandbox.netns.is_some_and(|p| !p.exists()),
        "runtimeType": RUNTIME_TYPE,
    });
    if holder_pid != 0 {
        info["runtimeSpec"] = runtime_spec(sandbox, holder_pid);
    }
    let podshim = json!({
        "shimPid": std::process::id(),
        "holderPid": holder_pid,
        "netns": sandbox.netns,
        "cgroupParent": c.cgroup_parent,
        "podFiles": sandbox.pod_files,
        "overhead": c.overhead.as_ref().map(|r| json!({
            "cpuShares": r.cpu_shares, "cpuQuota": r.cpu_quota,
            "cpuPeriod": r.cpu_period, "memoryLimitInBytes": r.memory_limit_in_bytes,
        })),
    });
    HashMap::from([
        ("info".to_string(), info.to_string()),
        ("podshim".to_string(), podshim.to_string()),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(network: NamespaceMode, pid: NamespaceMode) -> PodSandboxConfig {
        PodSandboxConfig {
            name: "web".into(),
            uid: "u-1".into(),
            namespace: "default".into(),
            hostname: "web-0".into(),
            log_directory: "/var/log/pods/default_web_u-1".into(),
            network,
            pid,
            ..Default::default()
        }
    }

    fn view<'a>(
        c: &'a PodSandboxConfig,
        netns: Option<&'a Path>,
        sysctls: &'a BTreeMap<String, String>,
    ) -> SandboxView<'a> {
        SandboxView {
            id: "sb1",
            config: c,
            netns,
            sysctls,
            pod_files: Path::new("/var/lib/containerd/cri/sandboxes/sb1"),
        }
    }

    #[test]
    fn spec_names_the_namespaces_the_pod_owns_by_path() {
        let sysctls = BTreeMap::from([("net.ipv4.ip_forward".to_string(), "1".to_string())]);
        let c = config(NamespaceMode::Pod, NamespaceMode::Pod);
        let netns = Path::new("/var/run/netns/cni-1");
        let spec = runtime_spec(&view(&c, Some(netns), &sysctls), 42);
        assert_eq!(spec["hostname"], "web-0");
        assert_eq!(
            spec["linux"]["namespaces"],
            json!([
                {"type": "network", "path": "/var/run/netns/cni-1"},
                {"type": "ipc", "path": "/proc/42/ns/ipc"},
                {"type": "uts", "path": "/proc/42/ns/uts"},
                {"type": "pid", "path": "/proc/42/ns/pid"},
            ])
        );
        assert_eq!(spec["linux"]["sysctl"]["net.ipv4.ip_forward"], "1");
        let a = &spec["annotations"];
        assert_eq!(a["io.kubernetes.cri.container-type"], "sandbox");
        assert_eq!(a["io.kubernetes.cri.sandbox-id"], "sb1");
        assert_eq!(a["io.kubernetes.cri.sandbox-name"], "web");
        assert_eq!(a["io.kubernetes.cri.sandbox-namespace"], "default");
        assert_eq!(a["io.kubernetes.cri.sandbox-uid"], "u-1");
        assert_eq!(
            a["io.kubernetes.cri.sandbox-log-directory"],
            "/var/log/pods/default_web_u-1"
        );
    }

    #[test]
    fn host_network_pod_owns_neither_network_nor_uts() {
        let none = BTreeMap::new();
        let mut c = config(NamespaceMode::Node, NamespaceMode::Container);
        c.hostname.clear();
        let spec = runtime_spec(&view(&c, None, &none), 7);
        assert!(spec.get("hostname").is_none());
        assert_eq!(
            spec["linux"]["namespaces"],
            json!([{"type": "ipc", "path": "/proc/7/ns/ipc"}])
        );
    }

    #[test]
    fn verbose_info_keeps_sandbox_info_keys_apart_from_podshims() {
        let none = BTreeMap::new();
        let c = config(NamespaceMode::Pod, NamespaceMode::Container);
        let info = verbose_info(&view(&c, None, &none), 9, true);
        let sandbox_info: Value = serde_json::from_str(&info["info"]).unwrap();
        let keys: Vec<&str> = sandbox_info
            .as_object()
            .unwrap()
            .keys()
            .map(|k| k.as_str())
            .collect();
        // Each of them a field of CRI's SandboxInfo (internal/cri/server/podsandbox/types).
        for k in &keys {
            assert!(
                [
                    "pid",
                    "processStatus",
                    "netNamespaceClosed",
                    "runtimeType",
                    "runtimeSpec"
                ]
                .contains(k),
                "{k} is not a SandboxInfo key"
            );
        }
        assert_eq!(sandbox_info["pid"], 9);
        assert_eq!(sandbox_info["processStatus"], "running");
        assert_eq!(sandbox_info["runtimeSpec"]["hostname"], "web-0");
        let ours: Value = serde_json::from_str(&info["podshim"]).unwrap();
        assert_eq!(ours["holderPid"], 9);
        // Before the holder runs there is no spec to show.
        let info = verbose_info(&view(&c, None, &none), 0, false);
        let sandbox_info: Value = serde_json::from_str(&info["info"]).unwrap();
        assert!(sandbox_info.get("runtimeSpec").is_none());
        assert_eq!(sandbox_info["processStatus"], "stopped");
    }
}

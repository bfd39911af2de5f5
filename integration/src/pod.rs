//! Pod and container helpers shaped like kubelet's requests.

use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;

use anyhow::{Context, Result};
use k8s_cri::v1::*;

use crate::containerd::{is_pauseless, Containerd};
use crate::images::BUSYBOX_IMAGE;
use crate::sys;

/// A pod created through CRI by this harness.
#[derive(Debug, Clone)]
pub struct Pod {
    pub id: String,
    pub name: String,
    pub config: PodSandboxConfig,
    /// Host directory CRI writes container logs into (`log_directory`).
    pub log_dir: PathBuf,
    /// The pod's cgroup parent (cgroupfs path, relative to each hierarchy's root).
    pub cgroup_parent: String,
    /// The pod's network namespace file (under containerd's state dir).
    pub netns: Option<PathBuf>,
    /// The pod IP CNI assigned.
    pub ip: String,
}

impl Pod {
    /// The pid of a container's init process (`<cgroup_parent>/<container id>`, cgroupfs
    /// driver): of the processes in the container's cgroup whose parent is outside it (init and
    /// execs, both children of the shim), the one started first. Not simply the lowest pid: pids
    /// wrap at pid_max (32768 on small machines), so a child can have a lower pid than its init.
    pub fn container_init_pid(&self, id: &str) -> Result<i32> {
        for root in crate::sys::cgroup_roots() {
            let p = root
                .join(self.cgroup_parent.trim_start_matches('/'))
                .join(id)
                .join("cgroup.procs");
            let Ok(s) = std::fs::read_to_string(&p) else {
                continue;
            };
            let pids: Vec<i32> = s.lines().filter_map(|l| l.trim().parse().ok()).collect();
            let init = pids
                .iter()
                .copied()
                .filter(|&pid| crate::sys::ppid(pid).is_some_and(|pp| !pids.contains(&pp)))
                .filter_map(|pid| Some((crate::sys::start_time(pid)?, pid)))
                .min();
            if let Some((_, pid)) = init {
                return Ok(pid);
            }
        }
        anyhow::bail!(
            "no process found in the cgroup of container {id} under {}",
            self.cgroup_parent
        )
    }

    /// The host path of a container's CRI log, from its `log_path`.
    pub fn log_file(&self, cfg: &ContainerConfig) -> PathBuf {
        self.log_dir.join(&cfg.log_path)
    }
}

/// A busybox container running `command` (no shell unless the command is one).
pub fn container(name: &str, command: &[&str]) -> ContainerConfig {
    ContainerConfig {
        metadata: Some(ContainerMetadata {
            name: name.into(),
            attempt: 0,
        }),
        image: Some(ImageSpec {
            image: BUSYBOX_IMAGE.into(),
            ..Default::default()
        }),
        command: command.iter().map(|s| s.to_string()).collect(),
        log_path: format!("{name}/0.log"),
        linux: Some(LinuxContainerConfig {
            resources: None,
            security_context: None,
        }),
        ..Default::default()
    }
}

/// A busybox container running `sh -c script`.
pub fn sh(name: &str, script: &str) -> ContainerConfig {
    container(name, &["sh", "-c", script])
}

/// Set a memory limit (and the same memory+swap limit) on a container.
pub fn with_memory_limit(mut c: ContainerConfig, bytes: i64) -> ContainerConfig {
    let linux = c.linux.get_or_insert_with(Default::default);
    let r = linux.resources.get_or_insert_with(Default::default);
    r.memory_limit_in_bytes = bytes;
    r.memory_swap_limit_in_bytes = bytes;
    r.cpu_shares = 2;
    c
}

fn find_netns(v: &serde_json::Value, out: &mut Option<PathBuf>) {
    match v {
        serde_json::Value::String(s) if s.contains("/netns/") && s.starts_with('/') => {
            *out = Some(PathBuf::from(s));
        }
        serde_json::Value::Array(a) => a.iter().for_each(|x| find_netns(x, out)),
        serde_json::Value::Object(m) => m.values().for_each(|x| find_netns(x, out)),
        _ => {}
    }
}

impl Containerd {
    /// The pid CRI uses for the pod's namespaces: the pause container's init, or the pod shim's
    /// namespace holder.
    pub fn sandbox_pid(&self, pod: &Pod) -> Result<i32> {
        if is_pauseless(&self.opts.handler) {
            let holders = sys::sandbox_holders(&pod.id);
            anyhow::ensure!(
                holders.len() == 1,
                "{} namespace holders for pod {}: {holders:?}",
                holders.len(),
                pod.id
            );
            Ok(holders[0])
        } else {
            pod.container_init_pid(&pod.id)
        }
    }

    /// What is left of a removed pod and its containers: shims, mounts, bundles, CRI dirs,
    /// netns, shim socket, processes in the pod cgroup.
    pub fn pod_leftovers(&self, pod: &Pod, containers: &[String]) -> Vec<String> {
        let mut v = Vec::new();
        let mut ids: Vec<&str> = vec![pod.id.as_str()];
        ids.extend(containers.iter().map(|s| s.as_str()));
        for p in self.all_shims() {
            if let Some(id) = p.arg_after("-id") {
                if ids.contains(&id) {
                    v.push(format!("shim process {} ({})", p.pid, p.cmdline_str()));
                }
            }
        }
        for m in sys::mounts_under(&self.dir) {
            let s = m.to_string_lossy();
            if ids.iter().any(|id| s.contains(id)) {
                v.push(format!("mount {s}"));
            }
            if let Some(ns) = &pod.netns {
                if m == *ns {
                    v.push(format!("netns mount {s}"));
                }
            }
        }
        for pid in sys::sandbox_holders(&pod.id) {
            v.push(format!("namespace holder process {pid} of pod {}", pod.id));
        }
        let sb = self.sandbox_bundle_dir("k8s.io", &pod.id);
        if sb.exists() {
            v.push(format!("sandbox bundle dir {}", sb.display()));
        }
        for id in &ids {
            let b = self.bundle_dir("k8s.io", id);
            if b.exists() {
                v.push(format!("bundle dir {}", b.display()));
            }
            for base in [&self.root, &self.state] {
                for kind in ["sandboxes", "containers"] {
                    let d = base.join("io.containerd.grpc.v1.cri").join(kind).join(id);
                    if d.exists() {
                        v.push(format!("CRI dir {}", d.display()));
                    }
                }
            }
        }
        if let Some(ns) = &pod.netns {
            if ns.exists() {
                v.push(format!("netns file {}", ns.display()));
            }
        }
        let sockp = self.shim_socket_path("k8s.io", &pod.id);
        if sockp.exists() {
            v.push(format!("shim socket {}", sockp.display()));
        }
        // A Go shim started with -debug (containerd at debug level) opens a second socket.
        let debug = self.shim_socket_path("k8s.io", &format!("{}/debug", pod.id));
        if debug.exists() {
            v.push(format!("shim socket {}", debug.display()));
        }
        let pids: BTreeSet<i32> = sys::cgroup_pids(&pod.cgroup_parent);
        if !pids.is_empty() {
            v.push(format!(
                "processes {pids:?} in pod cgroup {}",
                pod.cgroup_parent
            ));
        }
        v
    }

    /// A PodSandboxConfig as kubelet would send it, with a unique cgroup parent under this run.
    pub fn pod_config(&self, name: &str) -> PodSandboxConfig {
        let n = self.seq();
        let uid = format!(
            "{:08x}-{n:04x}-4000-8000-{:012x}",
            std::process::id(),
            rand_u64() & 0xffff_ffff_ffff
        );
        let log_dir = self.dir.join("logs").join(format!("{name}_{uid}"));
        PodSandboxConfig {
            metadata: Some(PodSandboxMetadata {
                name: name.into(),
                uid: uid.clone(),
                namespace: "podshim-e2e".into(),
                attempt: 0,
            }),
            hostname: name.into(),
            log_directory: log_dir.to_string_lossy().into_owned(),
            labels: HashMap::from([("podshim-e2e".to_string(), "1".to_string())]),
            linux: Some(LinuxPodSandboxConfig {
                cgroup_parent: format!("{}/pod{n}-{}", self.cgroup_root, &uid[..8]),
                security_context: Some(LinuxSandboxSecurityContext {
                    namespace_options: Some(NamespaceOption {
                        network: NamespaceMode::Pod as i32,
                        pid: NamespaceMode::Container as i32,
                        ipc: NamespaceMode::Pod as i32,
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    /// RunPodSandbox with this run's handler.
    pub async fn run_pod(&self, name: &str) -> Result<Pod> {
        let cfg = self.pod_config(name);
        self.run_pod_with(cfg).await
    }

    pub async fn run_pod_with(&self, config: PodSandboxConfig) -> Result<Pod> {
        let handler = self.opts.handler.clone();
        self.run_pod_with_handler(config, &handler).await
    }

    /// RunPodSandbox with an explicit runtime handler (e.g. a runc pod next to podshim pods).
    pub async fn run_pod_with_handler(
        &self,
        config: PodSandboxConfig,
        handler: &str,
    ) -> Result<Pod> {
        let log_dir = PathBuf::from(&config.log_directory);
        std::fs::create_dir_all(&log_dir)?;
        let name = config
            .metadata
            .as_ref()
            .map(|m| m.name.clone())
            .unwrap_or_default();
        let cgroup_parent = config
            .linux
            .as_ref()
            .map(|l| l.cgroup_parent.clone())
            .unwrap_or_default();
        let id = self
            .cri
            .run_pod(config.clone(), handler)
            .await
            .with_context(|| format!("pod {name} (handler {handler})"))?;
        let st = self.cri.pod_status(&id, true).await?;
        let ip = st
            .status
            .as_ref()
            .and_then(|s| s.network.as_ref())
            .map(|n| n.ip.clone())
            .unwrap_or_default();
        let mut netns = None;
        for v in st.info.values() {
            if let Ok(j) = serde_json::from_str::<serde_json::Value>(v) {
                find_netns(&j, &mut netns);
            }
        }
        Ok(Pod {
            id,
            name,
            config,
            log_dir,
            cgroup_parent,
            netns,
            ip,
        })
    }

    pub async fn create_container(&self, pod: &Pod, cfg: ContainerConfig) -> Result<String> {
        let name = cfg
            .metadata
            .as_ref()
            .map(|m| m.name.clone())
            .unwrap_or_default();
        self.cri
            .create_container(&pod.id, &pod.config, cfg)
            .await
            .with_context(|| format!("container {name}"))
    }

    /// CreateContainer + StartContainer.
    pub async fn run_container(&self, pod: &Pod, cfg: ContainerConfig) -> Result<String> {
        let name = cfg
            .metadata
            .as_ref()
            .map(|m| m.name.clone())
            .unwrap_or_default();
        let id = self.create_container(pod, cfg).await?;
        self.cri
            .start_container(&id)
            .await
            .with_context(|| format!("container {name}"))?;
        Ok(id)
    }

    /// StopPodSandbox + RemovePodSandbox.
    pub async fn remove_pod(&self, pod: &Pod) -> Result<()> {
        self.cri.stop_pod(&pod.id).await?;
        self.cri.remove_pod(&pod.id).await
    }
}

/// A cheap random number (no extra crates): time and pid mixed through SipHash.
pub fn rand_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos(),
    );
    h.write_u32(std::process::id());
    h.finish()
}

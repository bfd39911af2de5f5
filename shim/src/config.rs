//! The shim's own configuration file.
//!
//! containerd's runtime `options` table must stay empty for podshim (a non-runc options table
//! is turned into `runtimeoptions.v1.Options`, which breaks task-API routing and user-namespaced
//! pods), so everything an operator tunes lives here instead.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::{Error, Result};

/// Where the shim looks when `PODSHIM_CONFIG` is not set.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/podshim/shim.toml";
pub const CONFIG_ENV: &str = "PODSHIM_CONFIG";

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub runtime: RuntimeConfig,
    pub io: IoConfig,
    pub sandbox: SandboxConfig,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RuntimeConfig {
    /// The OCI runtime binary: `runc`, `crun`, or any runc-compatible path.
    pub binary: String,
    /// The runtime's state root; the namespace is appended, as containerd's runc shim does.
    pub root: PathBuf,
    /// Force `--systemd-cgroup`; by default it follows the form of the spec's cgroupsPath.
    pub systemd_cgroup: Option<bool>,
    /// `create --no-pivot` (runc's `NoPivotRoot`): for a root the kernel cannot pivot away
    /// from (an initramfs).
    pub no_pivot_root: bool,
    /// `create --no-new-keyring` (runc's `NoNewKeyring`): containers share the caller's
    /// session keyring.
    pub no_new_keyring: bool,
    /// runc's `ShimCgroup`: the cgroup every pod's shim is moved into when it starts, e.g. one
    /// that bounds what all shims of the node may use; an absolute path within each hierarchy,
    /// made by the operator beforehand. Empty: the shim stays in containerd's.
    pub shim_cgroup: String,
    /// Execs go to this helper (`podshim-exec`, beside the shim binary, or a path) instead of
    /// `runtime exec`; one it cannot do exactly as runc (AppArmor, SELinux,
    /// a umask, …) still goes to the runtime. Empty (the default): the runtime runs every exec.
    pub exec_helper: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IoConfig {
    /// Per output stream, bytes held in memory while containerd is not reading.
    pub memory_bytes: usize,
    /// Per output stream, bytes spilled to the task's bundle after memory is full.
    pub spill_bytes: u64,
    /// All the pod's spill files together (every stream of every container and exec).
    pub spill_total_bytes: u64,
}

/// Pause-less pods: what CRI's runtime config gives a pause container that the shim must give
/// the namespace holder instead (containerd's option names and defaults).
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct SandboxConfig {
    /// `net.ipv4.ip_unprivileged_port_start = 0` in pods with their own network namespace.
    pub enable_unprivileged_ports: bool,
    /// `net.ipv4.ping_group_range = "0 2147483647"` in pods with their own network namespace.
    pub enable_unprivileged_icmp: bool,
    /// A created sandbox without a network namespace whose removal says CRI gave up on it
    /// (hostNetwork) is shut down after this many seconds without a StartSandbox.
    pub start_deadline_secs: u64,
}

impl Default for SandboxConfig {
    fn default() -> Self {
        Self {
            enable_unprivileged_ports: true,
            enable_unprivileged_icmp: true,
            // Far past kubelet's RunPodSandbox deadline (twice its 2-minute request timeout).
            start_deadline_secs: 600,
        }
    }
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        Self {
            binary: "runc".into(),
            root: PathBuf::from("/run/containerd/podshim"),
            systemd_cgroup: None,
            no_pivot_root: false,
            no_new_keyring: false,
            shim_cgroup: String::new(),
            exec_helper: String::new(),
        }
    }
}

impl Default for IoConfig {
    fn default() -> Self {
        Self {
            memory_bytes: 256 * 1024,
            spill_bytes: 64 * 1024 * 1024,
            spill_total_bytes: 1024 * 1024 * 1024,
        }
    }
}

impl Config {
    /// Reads `PODSHIM_CONFIG`, else the default path; a missing default file means defaults,
    /// a file that exists but does not parse is an error the operator must see.
    pub fn load() -> Result<Config> {
        match std::env::var_os(CONFIG_ENV) {
            Some(path) if !path.is_empty() => Self::from_file(Path::new(&path)),
            _ => {
                let path = Path::new(DEFAULT_CONFIG_PATH);
                if path.exists() {
                    Self::from_file(path)
                } else {
                    Ok(Config::default())
                }
            }
        }
    }

    pub fn from_file(path: &Path) -> Result<Config> {
        let text = std::fs::read_to_string(path)
            .map_err(Error::io(format!("read shim config {}", path.display())))?;
        Self::parse(&text)
            .map_err(|e| Error::InvalidArgument(format!("shim config {}: {e}", path.display())))
    }

    pub fn parse(text: &str) -> Result<Config, String> {
        let config: Config = toml::from_str(text).map_err(|e| e.to_string())?;
        if config.runtime.binary.is_empty() {
            return Err("runtime.binary must not be empty".into());
        }
        if config.io.memory_bytes == 0 {
            return Err("io.memory_bytes must be greater than 0".into());
        }
        let cgroup = &config.runtime.shim_cgroup;
        if !cgroup.is_empty() && (!cgroup.starts_with('/') || cgroup.split('/').any(|c| c == ".."))
        {
            return Err(format!(
                "runtime.shim_cgroup {cgroup:?} must be an absolute cgroup path without \"..\""
            ));
        }
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_gives_defaults() {
        let c = Config::parse("").unwrap();
        assert_eq!(c.runtime.binary, "runc");
        assert_eq!(c.io.memory_bytes, 256 * 1024);
        assert_eq!(c.io.spill_bytes, 64 * 1024 * 1024);
    }

    #[test]
    fn crun_is_selectable() {
        let c = Config::parse("[runtime]\nbinary = \"crun\"\nroot = \"/run/crun-pods\"\n").unwrap();
        assert_eq!(c.runtime.binary, "crun");
        assert_eq!(c.runtime.root, PathBuf::from("/run/crun-pods"));
    }

    #[test]
    fn shipped_snippet_is_the_defaults() {
        let text = include_str!("../../config-snippets/podshim/shim.toml");
        let c = Config::parse(text).unwrap();
        let d = Config::default();
        assert_eq!(c.runtime.binary, d.runtime.binary);
        assert_eq!(c.runtime.root, d.runtime.root);
        assert_eq!(c.runtime.systemd_cgroup, d.runtime.systemd_cgroup);
        assert_eq!(c.runtime.no_pivot_root, d.runtime.no_pivot_root);
        assert_eq!(c.runtime.no_new_keyring, d.runtime.no_new_keyring);
        assert_eq!(c.io.memory_bytes, d.io.memory_bytes);
        assert_eq!(c.io.spill_bytes, d.io.spill_bytes);
        assert_eq!(c.sandbox, d.sandbox);
        assert_eq!(c.runtime.shim_cgroup, d.runtime.shim_cgroup);
        assert_eq!(c.runtime.exec_helper, d.runtime.exec_helper);
    }

    #[test]
    fn unknown_keys_and_bad_values_are_rejected() {
        assert!(Config::parse("[runtime]\nbinnary = \"crun\"\n").is_err());
        assert!(Config::parse("[io]\nmemory_bytes = 0\n").is_err());
        assert!(Config::parse("[runtime]\nbinary = \"\"\n").is_err());
        for cgroup in ["podshim", "/a/../../b", "/.."] {
            let text = format!("[runtime]\nshim_cgroup = \"{cgroup}\"\n");
            assert!(Config::parse(&text).is_err(), "{cgroup}");
        }
        let c = Config::parse("[runtime]\nshim_cgroup = \"/podshim.slice/shims\"\n").unwrap();
        assert_eq!(c.runtime.shim_cgroup, "/podshim.slice/shims");
    }
}

//! podshim-sandboxer's configuration: `/etc/podshim/sandboxer.toml`, or the file named by
//! `PODSHIM_SANDBOXER_CONFIG`. Every key has a default that matches a stock containerd.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::{Error, Result};

pub const DEFAULT_PATH: &str = "/etc/podshim/sandboxer.toml";
pub const PATH_ENV: &str = "PODSHIM_SANDBOXER_CONFIG";

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// The socket containerd's `[proxy_plugins.<name>] address` points at.
    pub address: PathBuf,
    /// The durable store and the sandbox bundles. It must outlive the daemon (not a tmpfs that
    /// the daemon's restart clears): running pods are found again from it.
    pub state_dir: PathBuf,
    pub log_level: String,
    /// `host:port` of the Prometheus endpoint (`GET /metrics`); empty: none.
    pub metrics_address: String,
    pub shim: Shim,
    pub containerd: Containerd,
    pub pool: Pool,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Shim {
    pub binary: PathBuf,
    /// Passes `-debug` to the shims, as containerd does at debug level.
    pub debug: bool,
}

/// The containerd the shims serve: they publish events to it and CRI looks for the pod's files
/// under its root and state.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Containerd {
    pub address: PathBuf,
    /// containerd's `[ttrpc] address`; empty means containerd's default, `<address>.ttrpc`.
    pub ttrpc_address: PathBuf,
    /// What a shim is told to run for publishing (`-publish-binary`).
    pub binary: PathBuf,
    pub root: PathBuf,
    pub state: PathBuf,
}

/// Idle shims started ahead of demand; RunPodSandbox adopts one instead of waiting for a start.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Pool {
    pub size: usize,
    /// A shim serves one containerd namespace: only sandboxes of this one adopt pool shims.
    pub namespace: String,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            address: "/run/podshim-sandboxer/sandboxer.sock".into(),
            state_dir: "/var/lib/podshim-sandboxer".into(),
            log_level: "info".into(),
            metrics_address: String::new(),
            shim: Shim::default(),
            containerd: Containerd::default(),
            pool: Pool::default(),
        }
    }
}

impl Default for Shim {
    fn default() -> Self {
        Shim {
            binary: "/usr/local/bin/containerd-shim-podshim-v1".into(),
            debug: false,
        }
    }
}

impl Default for Containerd {
    fn default() -> Self {
        Containerd {
            address: "/run/containerd/containerd.sock".into(),
            ttrpc_address: PathBuf::new(),
            binary: "/usr/bin/containerd".into(),
            root: "/var/lib/containerd".into(),
            state: "/run/containerd".into(),
        }
    }
}

impl Default for Pool {
    fn default() -> Self {
        Pool {
            size: 0,
            namespace: "k8s.io".into(),
        }
    }
}

impl Containerd {
    pub fn ttrpc_address(&self) -> PathBuf {
        if self.ttrpc_address.as_os_str().is_empty() {
            let mut a = self.address.clone().into_os_string();
            a.push(".ttrpc");
            a.into()
        } else {
            self.ttrpc_address.clone()
        }
    }
}

impl Config {
    /// The file named by `PODSHIM_SANDBOXER_CONFIG` (which must exist), else the default path
    /// if it exists, else the defaults.
    pub fn load() -> Result<Config> {
        match std::env::var_os(PATH_ENV) {
            Some(p) => Self::from_file(Path::new(&p)),
            None if Path::new(DEFAULT_PATH).exists() => Self::from_file(Path::new(DEFAULT_PATH)),
            None => Ok(Config::default()),
        }
    }

    pub fn from_file(path: &Path) -> Result<Config> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::io(format!("read config {}", path.display()), e))?;
        Self::parse(&text).map_err(|e| Error::Config(format!("{}: {e}", path.display())))
    }

    pub fn parse(text: &str) -> std::result::Result<Config, String> {
        let c: Config = toml::from_str(text).map_err(|e| e.to_string())?;
        for (key, p) in [
            ("address", &c.address),
            ("state_dir", &c.state_dir),
            ("shim.binary", &c.shim.binary),
            ("containerd.address", &c.containerd.address),
            ("containerd.root", &c.containerd.root),
            ("containerd.state", &c.containerd.state),
        ] {
            if !p.is_absolute() {
                return Err(format!("{key} must be an absolute path, not {p:?}"));
            }
        }
        podshim_common::metrics::parse_address(&c.metrics_address)
            .map_err(|e| format!("metrics_address: {e}"))?;
        if c.pool.size > 0 && !podshim_common::id::is_valid(&c.pool.namespace) {
            return Err(format!(
                "pool.namespace {:?} is not a valid namespace",
                c.pool.namespace
            ));
        }
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_is_the_defaults() {
        let c = Config::parse("").unwrap();
        assert_eq!(c, Config::default());
        assert_eq!(
            c.containerd.ttrpc_address(),
            Path::new("/run/containerd/containerd.sock.ttrpc")
        );
        assert_eq!(c.pool.size, 0);
    }

    #[test]
    fn every_key() {
        let c = Config::parse(
            r#"
address = "/run/x/s.sock"
state_dir = "/var/lib/x"
log_level = "debug"
metrics_address = "127.0.0.1:9490"
[shim]
binary = "/opt/bin/containerd-shim-podshim-v1"
debug = true
[containerd]
address = "/tmp/c/containerd.sock"
ttrpc_address = "/tmp/c/t.sock"
binary = "/usr/local/bin/containerd"
root = "/tmp/c/root"
state = "/tmp/c/state"
[pool]
size = 3
namespace = "default"
"#,
        )
        .unwrap();
        assert_eq!(c.address, Path::new("/run/x/s.sock"));
        assert_eq!(c.state_dir, Path::new("/var/lib/x"));
        assert_eq!(c.metrics_address, "127.0.0.1:9490");
        assert!(c.shim.debug);
        assert_eq!(c.containerd.ttrpc_address(), Path::new("/tmp/c/t.sock"));
        assert_eq!(c.containerd.root, Path::new("/tmp/c/root"));
        assert_eq!(c.pool.size, 3);
        assert_eq!(c.pool.namespace, "default");
    }

    #[test]
    fn mistakes_are_errors_not_defaults() {
        assert!(Config::parse("adress = \"/x\"")
            .unwrap_err()
            .contains("adress"));
        assert!(Config::parse("[pool]\nsize = -1").is_err());
        assert!(Config::parse("state_dir = \"relative\"")
            .unwrap_err()
            .contains("state_dir"));
        assert!(Config::parse("[pool]\nsize = 1\nnamespace = \"a/b\"").is_err());
        assert!(Config::parse("metrics_address = \"localhost\"")
            .unwrap_err()
            .contains("metrics_address"));
    }

    #[test]
    fn the_shipped_example_parses() {
        let c =
            Config::parse(include_str!("../../config-snippets/podshim/sandboxer.toml")).unwrap();
        assert_eq!(c.pool.size, 2);
        assert_eq!(c.address, Config::default().address);
    }

    #[test]
    fn load_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s.toml");
        std::fs::write(&p, "[pool]\nsize = \"two\"").unwrap();
        let e = Config::from_file(&p).unwrap_err().to_string();
        assert!(e.contains("s.toml"), "{e}");
        assert!(Config::from_file(&dir.path().join("missing.toml")).is_err());
    }
}

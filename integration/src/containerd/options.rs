//! What a run is: the CRI handler its pods use and the options that shape its containerd.

use std::path::PathBuf;

/// The CRI runtime handler names this harness knows.
pub const HANDLER_RUNC: &str = "runc";
pub const HANDLER_PODSHIM: &str = "podshim";
/// Pause-less pods through containerd's built-in `shim` sandboxer (the Sandbox API).
pub const HANDLER_PAUSELESS: &str = "podshim-pauseless";

/// Whether pods of `handler` run under podshim's shim.
pub fn is_podshim(handler: &str) -> bool {
    handler.starts_with(HANDLER_PODSHIM)
}

/// Pause-less pods through the podshim-sandboxer daemon (a `type = "sandbox"` proxy plugin).
pub const HANDLER_SANDBOXER: &str = "podshim-sandboxer";

/// Whether pods of `handler` have no pause container (a sandbox controller serves them).
pub fn is_pauseless(handler: &str) -> bool {
    handler == HANDLER_PAUSELESS || handler == HANDLER_SANDBOXER
}

/// Whether this run starts podshim-sandboxer beside containerd.
pub fn is_sandboxer(handler: &str) -> bool {
    handler == HANDLER_SANDBOXER
}

/// How a run uses podshim-snapshotter (proxy plugin `podsnap`). Anything but `Off` starts the
/// daemon on a socket in the run's temp dir and imports `config-snippets/conf.d/60-podshim-snapshotter.toml`
/// with its paths pointed there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SnapshotterUse {
    Off,
    /// Only registered (the snippet as shipped, its optional lines commented): reachable through
    /// containerd's snapshots API by name, used by nothing else.
    Registered,
    /// The snippet's `[podshim]` setup enabled: the `podshim` runtime's snapshotter, PullImage for
    /// podshim pods (`runtime_platforms`), and the transfer service's `unpack_config`.
    PodshimPods,
    /// The snippet's `[node]` setup (the recommended one) enabled: podshim-snapshotter is CRI's
    /// default snapshotter, for every handler; containerd collects writable-layer usage
    /// (ContainerStats) and ImageFsInfo for its default snapshotter only.
    CriDefault,
}

#[derive(Debug, Clone)]
pub struct Options {
    /// CRI runtime handler the test's pods use (`runc` or `podshim`).
    pub handler: String,
    /// `max_container_log_line_size` of the CRI runtime plugin.
    pub max_container_log_line_size: i64,
    /// containerd log level (`debug` also passes `-debug` to shims).
    pub log_level: String,
    /// Directory holding `containerd-shim-podshim-v1`; default: `$PODSHIM_BIN_DIR`, else
    /// `<repo>/target/debug`, else `<repo>/target/release`.
    pub shim_bin_dir: Option<PathBuf>,
    /// Content of the shim config file pointed to by `PODSHIM_CONFIG` (`{dir}` is replaced by the
    /// temp dir); empty = a default that only moves the OCI runtime's state root into the temp dir.
    pub shim_config: String,
    /// podshim-sandboxer's warm pool size.
    pub sandboxer_pool: usize,
    /// Run podshim-sandboxer even though this run's handler is another (the benchmark registers
    /// every handler on one containerd).
    pub with_sandboxer: bool,
    /// Run podshim-snapshotter for this containerd (see [`SnapshotterUse`]).
    pub snapshotter: SnapshotterUse,
    /// The daemon's `--usage-refresh` (seconds).
    pub snapshotter_usage_refresh: u64,
    /// CRI's `stats_collect_period` (seconds; containerd's default 10 when `None`).
    pub stats_collect_period: Option<u32>,
    /// Start a loopback registry (see [`Registry`]) and point containerd's registry
    /// `config_path` at a hosts dir holding its `hosts.toml`.
    pub registry: bool,
    /// Import the pause image (`Some(true)`) or not (`Some(false)`) whatever this handler's
    /// pods need; `None`: as they need it (see [`Containerd::needs_pause_image`]).
    pub pause_image: Option<bool>,
    /// The CNI network names a plugin that does not exist: every pod's network setup fails.
    pub cni_plugin_missing: bool,
    /// Run podshim's binaries from copies in `<temp dir>/bin` (the shim and holder, and the
    /// daemons this run starts), as an operator's install keeps them in one directory, so that
    /// [`Containerd::upgrade_binaries`] can replace them under running pods.
    pub private_bins: bool,
    /// The OCI runtime binary of every handler (runc's `BinaryName`, podshim's `[runtime]
    /// binary`); `None`: the `runc` on PATH.
    pub oci_runtime: Option<PathBuf>,
    /// podshim's shims run in `<the run's cgroup root>/shims` (`[runtime] shim_cgroup` in the
    /// default shim config), made in every hierarchy before containerd starts.
    pub shim_cgroup: bool,
    /// What containerd's shim manager adds to every shim's environment (its `env`).
    pub shim_env: Vec<String>,
    /// The transfer service's `max_concurrent_unpacks` (containerd's default 1: one layer at a
    /// time); above 1, containerd ≥ 2.2 unpacks layers in parallel into a snapshotter that
    /// advertises `rebase`.
    pub max_concurrent_unpacks: Option<u32>,
    /// podshim-snapshotter logs every request (`--log-level debug`).
    pub snapshotter_debug: bool,
    /// podshim-snapshotter's root on a btrfs of its own (a loop-mounted image in the run's
    /// directory).
    pub snapshotter_btrfs: bool,
}

impl Options {
    /// Whether this containerd gets a podshim-sandboxer beside it.
    pub fn runs_sandboxer(&self) -> bool {
        is_sandboxer(&self.handler) || self.with_sandboxer
    }

    pub fn new(handler: &str) -> Self {
        Options {
            handler: handler.to_string(),
            max_container_log_line_size: 1024,
            log_level: std::env::var("PODSHIM_E2E_LOG_LEVEL").unwrap_or_else(|_| "debug".into()),
            shim_bin_dir: None,
            shim_config: String::new(),
            sandboxer_pool: 0,
            with_sandboxer: false,
            // `PODSHIM_E2E_SNAPSHOTTER=podsnap`: the whole suite with podshim-snapshotter as
            // CRI's default snapshotter (the README's recommended setup), every handler on it.
            snapshotter: match std::env::var("PODSHIM_E2E_SNAPSHOTTER").as_deref() {
                Ok("podsnap") => SnapshotterUse::CriDefault,
                _ => SnapshotterUse::Off,
            },
            snapshotter_usage_refresh: 60,
            stats_collect_period: None,
            registry: false,
            pause_image: None,
            cni_plugin_missing: false,
            private_bins: false,
            oci_runtime: None,
            shim_cgroup: false,
            shim_env: Vec::new(),
            max_concurrent_unpacks: None,
            snapshotter_debug: false,
            snapshotter_btrfs: false,
        }
    }
}

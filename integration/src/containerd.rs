//! A private containerd 2.x started for one test: own root, state, sockets, CNI bridge and cgroup
//! parent under a fresh temp directory, our config drop-in imported, our shim on its PATH.

use std::collections::BTreeSet;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};

use crate::cri::Cri;
use crate::images;
use crate::podsnap;
use crate::registry::Registry;
use crate::release::{containerd_release, Release};
use crate::sys;

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

/// Where `podshim-sandboxer` is looked up: `$PODSHIM_SANDBOXER_BIN`, next to the shim, then the
/// workspace's debug and release builds.
pub fn sandboxer_bin(shim_dir: &Path) -> PathBuf {
    if let Some(p) = std::env::var_os("PODSHIM_SANDBOXER_BIN") {
        return PathBuf::from(p);
    }
    let root = images::repo_root();
    [
        shim_dir.to_path_buf(),
        root.join("target/debug"),
        root.join("target/release"),
    ]
    .into_iter()
    .map(|d| d.join("podshim-sandboxer"))
    .find(|p| p.exists())
    .unwrap_or_else(|| root.join("target/debug/podshim-sandboxer"))
}

/// Where the per-run lock files for bridge/subnet slots live.
const SLOT_DIR: &str = "/run/podshim-e2e";
/// How a run uses podshim-snapshotter (proxy plugin `podsnap`). Anything but `Off` starts the
/// daemon on a socket in the run's temp dir and imports `config-snippets/conf.d/60-podshim-snapshotter.toml`
/// with its paths pointed there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SnapshotterUse {
    Off,
    /// Only registered (the snippet as shipped, its optional lines commented): reachable through
    /// containerd's snapshots API by name, used by nothing else.
    Registered,
    /// The snippet's optional lines enabled: the `podshim` runtime's snapshotter, PullImage for
    /// podshim pods (`runtime_platforms`) and the transfer service's `unpack_config`.
    PodshimPods,
    /// `PodshimPods`, and podsnap is also CRI's default snapshotter: containerd 2.1 collects
    /// writable-layer usage (ContainerStats) and ImageFsInfo for its default snapshotter only.
    CriDefault,
}

/// Temp dirs are `/tmp/psit-XXXXXX` (short: unix socket paths are limited to 108 bytes).
const TMP_PREFIX: &str = "psit-";
/// Pod subnets are 10.88.<slot>.0/24 on a bridge `psit<slot>`; nothing is routed beyond the bridge.
const SUBNET_BASE: &str = "10.88";

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
            snapshotter: SnapshotterUse::Off,
            snapshotter_usage_refresh: 60,
            stats_collect_period: None,
            registry: false,
            pause_image: None,
            cni_plugin_missing: false,
            private_bins: false,
        }
    }
}

/// Where `containerd-shim-podshim-v1` is looked up.
pub fn shim_bin_dir(opt: Option<&Path>) -> PathBuf {
    if let Some(p) = opt {
        return p.to_path_buf();
    }
    if let Some(p) = std::env::var_os("PODSHIM_BIN_DIR") {
        return PathBuf::from(p);
    }
    let root = images::repo_root();
    let debug = root.join("target/debug");
    if debug.join("containerd-shim-podshim-v1").exists() {
        return debug;
    }
    let release = root.join("target/release");
    if release.join("containerd-shim-podshim-v1").exists() {
        return release;
    }
    debug
}

pub struct Containerd {
    pub opts: Options,
    /// The release of the containerd this run drives (see [`crate::release`]).
    pub release: Release,
    /// The temp dir everything lives in.
    pub dir: PathBuf,
    pub root: PathBuf,
    pub state: PathBuf,
    pub sock: PathBuf,
    pub ttrpc_sock: PathBuf,
    pub config_path: PathBuf,
    pub log_path: PathBuf,
    pub shim_dir: PathBuf,
    pub shim_config_path: PathBuf,
    /// podshim-sandboxer's config file and state dir (handler `podshim-sandboxer`).
    pub sandboxer_config: PathBuf,
    pub sandboxer_state: PathBuf,
    /// The podshim-sandboxer binary each (re)start runs.
    pub sandboxer_bin: PathBuf,
    sandboxer: Option<Child>,
    /// `psit<slot>`
    pub bridge: String,
    /// `10.88.<slot>`
    pub subnet_prefix: String,
    /// Relative cgroup path every pod's cgroup_parent lives under (`/psit-XXXXXX`).
    pub cgroup_root: String,
    pub stream_port: u16,
    pub cri: Cri,
    /// podshim-snapshotter, when `opts.snapshotter` is not `Off`.
    pub snapshotter: Option<podsnap::Daemon>,
    /// The loopback registry, when `opts.registry`.
    pub registry: Option<Registry>,
    /// containerd's registry `config_path` (hosts.toml per registry host).
    pub registry_hosts_dir: PathBuf,
    child: Option<Child>,
    _slot_lock: File,
    _owner_lock: File,
    finished: bool,
    /// Where `stop` copies containerd's log before removing the temp dir.
    save_log_to: Option<PathBuf>,
    pod_seq: std::sync::atomic::AtomicU32,
}

fn open_lock(path: &Path) -> Result<File> {
    OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .mode(0o644)
        .open(path)
        .with_context(|| format!("opening lock file {}", path.display()))
}

fn free_port() -> Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").context("binding a free port")?;
    Ok(l.local_addr()?.port())
}

/// Remove what crashed earlier runs (whose owner process is gone) left behind.
fn reap_stale_runs() {
    let Ok(rd) = fs::read_dir("/tmp") else { return };
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if !name.starts_with(TMP_PREFIX) {
            continue;
        }
        let dir = e.path();
        let Ok(lock) = open_lock(&dir.join("owner.lock")) else {
            continue;
        };
        if !crate::sys::flock_nb(&lock) {
            continue; // a live run owns it
        }
        eprintln!("podshim-e2e: cleaning up stale run {}", dir.display());
        let bridge = fs::read_to_string(dir.join("bridge")).unwrap_or_default();
        force_cleanup(
            &dir,
            &dir.join("containerd.sock"),
            None,
            bridge.trim(),
            &format!("/{name}"),
        );
    }
}

/// Best-effort synchronous teardown (used by Drop and for stale runs). Returns what it found.
fn force_cleanup(
    dir: &Path,
    sock: &Path,
    child: Option<&mut Child>,
    bridge: &str,
    cgroup_root: &str,
) -> Vec<String> {
    let mut found = Vec::new();
    if let Some(c) = child {
        if c.try_wait().ok().flatten().is_none() {
            sys::kill(c.id() as i32, libc::SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(10);
            while c.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
    let d = format!("{}/", dir.display());
    let s = sock.to_string_lossy().to_string();
    let mut sockets = Vec::new();
    for _ in 0..3 {
        let procs = sys::processes_mentioning(&[&d, &s]);
        if procs.is_empty() {
            break;
        }
        for p in procs {
            found.push(format!("process {} {}", p.pid, p.cmdline_str()));
            // A killed shim cannot remove its socket under /run/containerd/s: do it for it.
            if let (Some(ns), Some(id)) = (p.arg_after("-namespace"), p.arg_after("-id")) {
                sockets.push(shim_socket_path(sock, ns, id));
            }
            sys::kill(p.pid, libc::SIGKILL);
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    for sp in sockets {
        let _ = fs::remove_file(sp);
    }
    if !cgroup_root.trim_matches('/').is_empty() {
        for pid in sys::kill_and_remove_cgroup(cgroup_root) {
            found.push(format!("process {pid} in cgroup {cgroup_root}"));
        }
    }
    for m in sys::umount_all_under(dir) {
        found.push(format!("mount {}", m.display()));
    }
    if !bridge.is_empty() && sys::link_exists(bridge) {
        let _ = sys::link_delete(bridge);
    }
    remove_cni_cache(dir);
    remove_foreign_runtime_state(dir);
    let _ = fs::remove_dir_all(dir);
    found
}

/// The socket path containerd's shim helpers (Go and Rust alike) derive for (ns, id):
/// `/run/containerd/s/<sha256("<containerd address>/<ns>/<id>")>`.
pub fn shim_socket_path(sock: &Path, ns: &str, id: &str) -> PathBuf {
    use sha2::{Digest, Sha256};
    let key = format!("{}/{ns}/{id}", sock.display());
    let h = Sha256::digest(key.as_bytes());
    let hex: String = h.iter().map(|b| format!("{b:02x}")).collect();
    PathBuf::from("/run/containerd/s").join(hex)
}

/// OCI runtime state of containers of this run kept in a runtime's default root (e.g. when a
/// shim was started without our `Root`): removed if its state.json mentions our directory.
fn remove_foreign_runtime_state(dir: &Path) {
    let needle = format!("{}/", dir.display());
    for root in [
        "/run/containerd/runc",
        "/run/runc",
        "/run/crun",
        "/run/containerd/podshim",
    ] {
        let Ok(nss) = fs::read_dir(root) else {
            continue;
        };
        for ns in nss.flatten() {
            let Ok(ids) = fs::read_dir(ns.path()) else {
                continue;
            };
            for id in ids.flatten() {
                let state = id.path().join("state.json");
                let mentions = fs::read_to_string(&state)
                    .map(|s| s.contains(&needle))
                    .unwrap_or(false);
                if mentions {
                    let _ = fs::remove_dir_all(id.path());
                }
            }
        }
    }
}

/// libcni caches results under /var/lib/cni/results/<network>-<container>-<ifname>; a pod whose
/// CNI DEL never ran (containerd killed) leaves its entries, which name our netns path.
fn remove_cni_cache(dir: &Path) {
    let needle = format!("{}/", dir.display());
    let net = fs::read_to_string(dir.join("network-name"))
        .unwrap_or_default()
        .trim()
        .to_string();
    if let Ok(rd) = fs::read_dir("/var/lib/cni/results") {
        for e in rd.flatten() {
            let ours = (!net.is_empty()
                && e.file_name()
                    .to_string_lossy()
                    .starts_with(&format!("{net}-")))
                || fs::read_to_string(e.path())
                    .map(|s| s.contains(&needle))
                    .unwrap_or(false);
            if ours {
                let _ = fs::remove_file(e.path());
            }
        }
    }
}

impl Containerd {
    /// Start a private containerd and import the test images into namespaces `k8s.io` and `default`.
    pub async fn start(opts: Options) -> Result<Containerd> {
        reap_stale_runs();
        let release = containerd_release()?;
        let archives = tokio::task::spawn_blocking(images::ensure_archives).await??;

        let built_dir = shim_bin_dir(opts.shim_bin_dir.as_deref());
        if is_podshim(&opts.handler) || opts.private_bins {
            // The shim would run a pause-less pod without its holder binary too, only fatter:
            // tests insist on the pair as it ships.
            for name in ["containerd-shim-podshim-v1", podshim_holder::BINARY] {
                let bin = built_dir.join(name);
                anyhow::ensure!(
                    bin.exists(),
                    "podshim binary not found at {} (build it: `cargo build -p podshim-shim`, or set PODSHIM_BIN_DIR)",
                    bin.display()
                );
            }
        }

        let dir = tempfile::Builder::new()
            .prefix(TMP_PREFIX)
            .tempdir_in("/tmp")?
            .keep();
        let owner_lock = open_lock(&dir.join("owner.lock"))?;
        anyhow::ensure!(
            crate::sys::flock_nb(&owner_lock),
            "cannot lock {}",
            dir.display()
        );
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();

        // The run's own copies of the binaries (`Options::private_bins`).
        let private = dir.join("bin");
        let shim_dir = if opts.private_bins {
            fs::create_dir_all(&private)?;
            for name in ["containerd-shim-podshim-v1", podshim_holder::BINARY] {
                copy_binary(&built_dir.join(name), &private.join(name))?;
            }
            private.clone()
        } else {
            built_dir.clone()
        };
        let sandboxer_bin = if opts.private_bins && opts.runs_sandboxer() {
            let p = private.join("podshim-sandboxer");
            copy_binary(&sandboxer_bin(&built_dir), &p)?;
            p
        } else {
            sandboxer_bin(&shim_dir)
        };

        // Bridge / subnet slot.
        fs::create_dir_all(SLOT_DIR)?;
        let start = (std::process::id() as usize).wrapping_mul(7) % 250;
        let mut slot = None;
        for i in 0..250usize {
            let s = (start + i) % 250 + 1;
            let f = open_lock(&Path::new(SLOT_DIR).join(format!("slot-{s}.lock")))?;
            if !crate::sys::flock_nb(&f) {
                continue;
            }
            let bridge = format!("psit{s}");
            if sys::link_exists(&bridge) {
                // Left by a run that died: we hold its slot lock now.
                let _ = sys::link_delete(&bridge);
            }
            if sys::route_exists(&format!("{SUBNET_BASE}.{s}.0/24")) {
                continue;
            }
            slot = Some((s, f));
            break;
        }
        let (slot, slot_lock) =
            slot.ok_or_else(|| anyhow!("no free bridge/subnet slot in {SLOT_DIR}"))?;
        let bridge = format!("psit{slot}");
        let subnet_prefix = format!("{SUBNET_BASE}.{slot}");
        fs::write(dir.join("bridge"), &bridge)?;
        let network_name = format!("podshim-e2e-{slot}");
        fs::write(dir.join("network-name"), &network_name)?;

        let root = dir.join("root");
        let state = dir.join("state");
        let sock = dir.join("containerd.sock");
        let ttrpc_sock = dir.join("containerd.sock.ttrpc");
        let config_path = dir.join("config.toml");
        let log_path = dir.join("containerd.log");
        let shim_config_path = dir.join("podshim.toml");
        let cni_dir = dir.join("cni");
        fs::create_dir_all(&cni_dir)?;
        fs::create_dir_all(dir.join("logs"))?;
        let shim_config = if opts.shim_config.is_empty() {
            // Keep the OCI runtime's state of podshim's containers inside our temp dir.
            format!("[runtime]\nroot = \"{}/podshim-runc\"\n", dir.display())
        } else {
            opts.shim_config.replace("{dir}", &dir.to_string_lossy())
        };
        fs::write(&shim_config_path, shim_config)?;

        let conflist = serde_json::json!({
            "cniVersion": "1.0.0",
            "name": network_name,
            "plugins": [
                {
                    "type": "bridge",
                    "bridge": bridge,
                    "isGateway": true,
                    "isDefaultGateway": false,
                    "ipMasq": false,
                    "hairpinMode": true,
                    "ipam": {
                        "type": "host-local",
                        "ranges": [[{ "subnet": format!("{subnet_prefix}.0/24") }]],
                        "dataDir": dir.join("cni-ipam").to_string_lossy(),
                    },
                },
                { "type": "portmap", "capabilities": { "portMappings": true } },
            ],
        });
        let conflist = match opts.cni_plugin_missing {
            true => serde_json::json!({
                "cniVersion": "1.0.0",
                "name": network_name,
                "plugins": [{ "type": "podshim-e2e-no-such-plugin" }],
            }),
            false => conflist,
        };
        fs::write(
            cni_dir.join("10-podshim-e2e.conflist"),
            serde_json::to_vec_pretty(&conflist)?,
        )?;

        // The default drop-in and the pause-less one: this containerd is a test bed, not an
        // operator's install, and the cases that would crash a containerd < 2.3 through the
        // latter (hostNetwork, containerd#12983) are not run there (see the e2e suite's gates).
        let mut imports = Vec::new();
        for name in ["50-podshim.toml", "52-podshim-pauseless.toml"] {
            let dropin = images::repo_root()
                .join("config-snippets/conf.d")
                .join(name);
            anyhow::ensure!(
                dropin.exists(),
                "config drop-in missing: {}",
                dropin.display()
            );
            imports.push(dropin.display().to_string());
        }
        if opts.snapshotter != SnapshotterUse::Off {
            let p = dir.join("60-podshim-snapshotter.toml");
            fs::write(&p, snapshotter_dropin(&dir, opts.snapshotter)?)?;
            imports.push(p.display().to_string());
        }
        let sandboxer_config = dir.join("sandboxer.toml");
        let sandboxer_state = dir.join("sandboxer");
        if opts.runs_sandboxer() {
            let bin = &sandboxer_bin;
            anyhow::ensure!(
                bin.exists(),
                "podshim-sandboxer not found at {} (build it: `cargo build -p podshim-sandboxer`, or set PODSHIM_SANDBOXER_BIN)",
                bin.display()
            );
            // The operator's drop-in, with the socket moved into our temp dir.
            let snippet =
                images::repo_root().join("config-snippets/conf.d/55-podshim-sandboxer.toml");
            let text = fs::read_to_string(&snippet)
                .with_context(|| format!("reading {}", snippet.display()))?;
            let ours = dir.join("55-podshim-sandboxer.toml");
            let sandboxer_sock = dir.join("sandboxer.sock");
            fs::write(
                &ours,
                text.replace(
                    "/run/podshim-sandboxer/sandboxer.sock",
                    &sandboxer_sock.to_string_lossy(),
                ),
            )?;
            imports.push(ours.display().to_string());
            let containerd_bin =
                which("containerd").unwrap_or_else(|| "/usr/bin/containerd".into());
            fs::write(
                &sandboxer_config,
                format!(
                    r#"address = "{sock}"
state_dir = "{state}"
log_level = "debug"
[shim]
binary = "{shim}"
debug = {debug}
[containerd]
address = "{csock}"
ttrpc_address = "{ttrpc}"
binary = "{cbin}"
root = "{root}"
state = "{cstate}"
[pool]
size = {pool}
namespace = "k8s.io"
"#,
                    sock = sandboxer_sock.display(),
                    state = sandboxer_state.display(),
                    shim = shim_dir.join("containerd-shim-podshim-v1").display(),
                    debug = opts.log_level == "debug",
                    csock = sock.display(),
                    ttrpc = ttrpc_sock.display(),
                    cbin = containerd_bin.display(),
                    root = root.display(),
                    cstate = state.display(),
                    pool = opts.sandboxer_pool,
                ),
            )?;
        }
        let imports = imports
            .iter()
            .map(|i| format!("{i:?}"))
            .collect::<Vec<_>>()
            .join(", ");
        let cri_snapshotter = if opts.snapshotter == SnapshotterUse::CriDefault {
            podsnap::SNAPSHOTTER
        } else {
            "overlayfs"
        };
        let mut images_extra = String::new();
        if let Some(p) = opts.stats_collect_period {
            images_extra.push_str(&format!("  stats_collect_period = {p}\n"));
        }
        // The test images' registry host resolves to a closed loopback port: a pull of an image
        // the run did not import fails at once and no name is ever looked up off the machine.
        let registry_hosts_dir = dir.join("certs.d");
        let local = registry_hosts_dir.join(images::REGISTRY_HOST);
        fs::create_dir_all(&local)?;
        fs::write(
            local.join("hosts.toml"),
            "server = \"http://127.0.0.1:9\"\n\n[host.\"http://127.0.0.1:9\"]\n  capabilities = [\"pull\", \"resolve\"]\n",
        )?;
        images_extra.push_str(&format!(
            "  [plugins.\"io.containerd.cri.v1.images\".registry]\n    config_path = \"{}\"\n",
            registry_hosts_dir.display()
        ));
        let stream_port = free_port()?;
        let cfg = format!(
            r#"# generated by podshim-integration
version = 3
root = "{root}"
state = "{state}"
imports = [{imports}]

[grpc]
  address = "{sock}"

[ttrpc]
  address = "{ttrpc}"

[debug]
  level = "{level}"

[plugins."io.containerd.internal.v1.opt"]
  path = "{dir}/opt"

# NRI on, as containerd ships it, with no plugins: CRI then builds every pod's NRI view
# (containerd >= 2.3 reads the sandbox spec for it).
[plugins."io.containerd.nri.v1.nri"]
  disable = false
  socket_path = "{dir}/nri.sock"
  plugin_path = "{dir}/nri-plugins"
  plugin_config_path = "{dir}/nri-conf"

[plugins."io.containerd.grpc.v1.cri"]
  stream_server_address = "127.0.0.1"
  stream_server_port = "{stream_port}"

[plugins."io.containerd.cri.v1.images"]
  snapshotter = "{cri_snapshotter}"
{images_extra}  [plugins."io.containerd.cri.v1.images".pinned_images]
    sandbox = "{pause}"

[plugins."io.containerd.cri.v1.runtime"]
  # The test process lacks CAP_SYS_RESOURCE: never lower oom_score_adj below ours.
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  max_container_log_line_size = {maxlog}
  enable_cdi = false
  [plugins."io.containerd.cri.v1.runtime".cni]
    bin_dirs = ["/usr/lib/cni"]
    conf_dir = "{cni}"
    max_conf_num = 1
  [plugins."io.containerd.cri.v1.runtime".containerd]
    default_runtime_name = "runc"
  [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc]
    runtime_type = "io.containerd.runc.v2"
    sandboxer = "podsandbox"
    [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc.options]
      Root = "{dir}/runc"
"#,
            root = root.display(),
            state = state.display(),
            imports = imports,
            cri_snapshotter = cri_snapshotter,
            images_extra = images_extra,
            sock = sock.display(),
            ttrpc = ttrpc_sock.display(),
            level = opts.log_level,
            dir = dir.display(),
            stream_port = stream_port,
            pause = images::PAUSE_IMAGE,
            maxlog = opts.max_container_log_line_size,
            cni = cni_dir.display(),
        );
        fs::write(&config_path, cfg)?;

        let cri = Cri::placeholder();
        let snapshotter = if opts.snapshotter != SnapshotterUse::Off {
            let bin = if opts.private_bins {
                let p = private.join("podshim-snapshotter");
                copy_binary(&podsnap::bin_path()?, &p)?;
                p
            } else {
                podsnap::bin_path()?
            };
            Some(
                podsnap::Daemon::start_bin(
                    bin,
                    &dir.join("podsnap"),
                    &dir.join("podsnap.sock"),
                    opts.snapshotter_usage_refresh,
                )
                .await?,
            )
        } else {
            None
        };
        let registry = if opts.registry {
            let rdir = dir.join("registry");
            let r = tokio::task::spawn_blocking(move || Registry::start(&rdir)).await??;
            r.write_hosts_toml(&registry_hosts_dir)?;
            Some(r)
        } else {
            None
        };
        let mut c = Containerd {
            opts,
            release,
            dir: dir.clone(),
            root,
            state,
            sock,
            ttrpc_sock,
            config_path,
            log_path,
            shim_dir,
            shim_config_path,
            sandboxer_config,
            sandboxer_state,
            sandboxer_bin,
            sandboxer: None,
            bridge,
            subnet_prefix,
            cgroup_root: format!("/{name}"),
            stream_port,
            cri,
            snapshotter,
            registry,
            registry_hosts_dir,
            child: None,
            _slot_lock: slot_lock,
            _owner_lock: owner_lock,
            finished: false,
            save_log_to: None,
            pod_seq: Default::default(),
        };
        c.spawn().await?;
        let needs_pause = c.opts.pause_image.unwrap_or(c.needs_pause_image());
        let wanted: Vec<PathBuf> = if needs_pause {
            vec![archives.pause.clone(), archives.busybox.clone()]
        } else {
            vec![archives.busybox.clone()]
        };
        for ns in ["k8s.io", "default"] {
            for a in &wanted {
                let (sock, ns, a) = (c.sock.clone(), ns.to_string(), a.clone());
                tokio::task::spawn_blocking(move || images::ctr_import(&sock, &ns, &a)).await??;
            }
        }
        c.wait_cri_image(images::BUSYBOX_IMAGE).await?;
        if needs_pause {
            c.wait_cri_image(images::PAUSE_IMAGE).await?;
        }
        Ok(c)
    }

    /// Whether this run's pods need the pause image in containerd's store. Classic pods run it.
    /// A pause-less run must work without it on containerd < 2.3: it is not even imported. From
    /// 2.3 on, CRI pulls the sandbox image at every RunPodSandbox, whatever the sandboxer
    /// (containerd#12849; 2.4 adds `disable_pause_image_pull`), and this containerd reaches no
    /// registry: a pause-less node on 2.3 needs the image present, though nothing runs it.
    pub fn needs_pause_image(&self) -> bool {
        !is_pauseless(&self.opts.handler) || self.release.at_least(2, 3)
    }

    async fn wait_cri_image(&self, image: &str) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if self.cri.image_present(image).await? {
                return Ok(());
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "CRI does not list imported image {image}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Start podshim-sandboxer (before containerd, as its unit is ordered) and wait for its
    /// socket.
    pub async fn spawn_sandboxer(&mut self) -> Result<()> {
        anyhow::ensure!(self.sandboxer.is_none(), "podshim-sandboxer is running");
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("sandboxer.log"))?;
        let child = Command::new(&self.sandboxer_bin)
            .arg("--config")
            .arg(&self.sandboxer_config)
            .env("PATH", self.path_env())
            // The shims it starts read their own config from here, as containerd's would.
            .env("PODSHIM_CONFIG", &self.shim_config_path)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .process_group(0)
            .spawn()
            .context("spawning podshim-sandboxer")?;
        self.sandboxer = Some(child);
        let sock = self.dir.join("sandboxer.sock");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(st) = self.sandboxer.as_mut().unwrap().try_wait()? {
                self.sandboxer = None;
                bail!(
                    "podshim-sandboxer exited early ({st}):\n{}",
                    self.sandboxer_log_tail(40)
                );
            }
            if std::os::unix::net::UnixStream::connect(&sock).is_ok() {
                return Ok(());
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "podshim-sandboxer not serving after 30s"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Restart podshim-sandboxer (SIGTERM, as systemd) with another warm pool size: its idle
    /// shims go, pods keep running.
    pub async fn restart_sandboxer_with_pool(&mut self, size: usize) -> Result<()> {
        self.stop_sandboxer().await?;
        let cfg = fs::read_to_string(&self.sandboxer_config)?;
        let old = format!("[pool]\nsize = {}\n", self.opts.sandboxer_pool);
        anyhow::ensure!(cfg.contains(&old), "no {old:?} in the sandboxer config");
        fs::write(
            &self.sandboxer_config,
            cfg.replace(&old, &format!("[pool]\nsize = {size}\n")),
        )?;
        self.opts.sandboxer_pool = size;
        self.spawn_sandboxer().await
    }

    /// Replaces every binary of the run's private bin dir (`Options::private_bins`) as a package
    /// upgrade does: the new file is written beside the old one and renamed over it, so each
    /// path names a new file (same bytes, new inode) while processes started from the old one
    /// keep running it (their `/proc/<pid>/exe` reads `<path> (deleted)`). Whatever is started
    /// from these paths from now on runs the new files. Returns each path with the identity of
    /// its old and its new file. Restarting the daemons is the caller's step, as it is the
    /// package's.
    pub fn upgrade_binaries(&self) -> Result<Vec<(PathBuf, sys::FileId, sys::FileId)>> {
        anyhow::ensure!(
            self.opts.private_bins,
            "this run has no private bin dir (Options::private_bins)"
        );
        let mut out = Vec::new();
        let mut entries: Vec<PathBuf> = fs::read_dir(self.dir.join("bin"))?
            .map(|e| e.map(|e| e.path()))
            .collect::<std::io::Result<_>>()?;
        entries.sort();
        for path in entries {
            let old = sys::file_id(&path).with_context(|| format!("{}", path.display()))?;
            let tmp = path.with_extension("podshim-new");
            copy_binary(&path, &tmp)?;
            fs::rename(&tmp, &path)
                .with_context(|| format!("renaming {} over {}", tmp.display(), path.display()))?;
            let new = sys::file_id(&path).with_context(|| format!("{}", path.display()))?;
            anyhow::ensure!(old != new, "{} kept its inode", path.display());
            out.push((path, old, new));
        }
        Ok(out)
    }

    /// `kill -9` of podshim-sandboxer: pods, their shims and idle pool shims keep running.
    pub fn kill9_sandboxer(&mut self) -> Result<()> {
        let mut c = self
            .sandboxer
            .take()
            .context("podshim-sandboxer is not running")?;
        c.kill()?;
        c.wait()?;
        Ok(())
    }

    /// SIGTERM, as systemd stops it: its warm pool is shut down, pods keep running.
    pub async fn stop_sandboxer(&mut self) -> Result<()> {
        let Some(mut c) = self.sandboxer.take() else {
            return Ok(());
        };
        sys::kill(c.id() as i32, libc::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(st) = c.try_wait()? {
                anyhow::ensure!(st.success(), "podshim-sandboxer exited with {st}");
                return Ok(());
            }
            if Instant::now() > deadline {
                let _ = c.kill();
                let _ = c.wait();
                bail!("podshim-sandboxer did not exit within 30s of SIGTERM (killed)");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn sandboxer_pid(&self) -> Option<u32> {
        self.sandboxer.as_ref().map(|c| c.id())
    }

    pub fn sandboxer_log_tail(&self, n: usize) -> String {
        log_tail(&self.dir.join("sandboxer.log"), n)
    }

    /// What podshim-sandboxer still records or keeps on disk (read with the daemon stopped:
    /// its store is locked while it runs).
    pub fn sandboxer_leftovers(&self) -> Vec<String> {
        let mut v = Vec::new();
        if self.sandboxer.is_some() || !self.sandboxer_state.exists() {
            return v;
        }
        match podshim_sandboxer::store::Store::open(&self.sandboxer_state) {
            Ok(store) => {
                for r in store.sandboxes().unwrap_or_default() {
                    v.push(format!(
                        "podshim-sandboxer record of sandbox {} ({:?})",
                        r.sandbox_id, r.state
                    ));
                }
                for r in store.pool().unwrap_or_default() {
                    v.push(format!("podshim-sandboxer record of pool shim {}", r.id));
                }
            }
            Err(e) => v.push(format!("podshim-sandboxer store: {e}")),
        }
        v.extend(self.sandboxer_bundles());
        v
    }

    /// The bundle directories podshim-sandboxer keeps (one per sandbox and pool shim); readable
    /// while it runs, unlike its store.
    pub fn sandboxer_bundles(&self) -> Vec<String> {
        let mut v = Vec::new();
        for ns in fs::read_dir(self.sandboxer_state.join("bundles"))
            .into_iter()
            .flatten()
            .flatten()
        {
            for b in fs::read_dir(ns.path()).into_iter().flatten().flatten() {
                v.push(format!("podshim-sandboxer bundle {}", b.path().display()));
            }
        }
        v
    }

    fn path_env(&self) -> String {
        format!(
            "{}:{}",
            self.shim_dir.display(),
            std::env::var("PATH").unwrap_or_else(|_| {
                "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into()
            })
        )
    }

    /// Spawn the containerd process and wait until CRI answers `Version`.
    async fn spawn(&mut self) -> Result<()> {
        if self.opts.runs_sandboxer() && self.sandboxer.is_none() {
            self.spawn_sandboxer().await?;
        }
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)?;
        let path = self.path_env();
        let child = Command::new("containerd")
            .arg("--config")
            .arg(&self.config_path)
            .env("PATH", path)
            .env("PODSHIM_CONFIG", &self.shim_config_path)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .process_group(0)
            .spawn()
            .context("spawning containerd")?;
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(st) = self.child.as_mut().unwrap().try_wait()? {
                bail!(
                    "containerd exited early ({st}); log tail:\n{}",
                    self.log_tail(40)
                );
            }
            if self.sock.exists() {
                if let Ok(Ok(cri)) =
                    tokio::time::timeout(Duration::from_secs(3), Cri::connect(&self.sock)).await
                {
                    if let Ok(Ok(_)) =
                        tokio::time::timeout(Duration::from_secs(3), cri.version()).await
                    {
                        self.cri = cri;
                        return Ok(());
                    }
                }
            }
            if Instant::now() > deadline {
                bail!(
                    "containerd CRI not ready after 30s; log tail:\n{}",
                    self.log_tail(40)
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// SIGTERM containerd and wait for it to exit (shims and containers keep running).
    pub async fn kill_containerd(&mut self) -> Result<()> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        if child.try_wait()?.is_none() {
            sys::kill(child.id() as i32, libc::SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(15);
            while child.try_wait()?.is_none() {
                if Instant::now() > deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    bail!("containerd did not exit within 15s of SIGTERM (killed)");
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        Ok(())
    }

    /// Stop containerd, keep its state, wait `downtime`, start it again. Pods and shims keep running.
    pub async fn restart(&mut self, downtime: Duration) -> Result<()> {
        self.kill_containerd().await?;
        tokio::time::sleep(downtime).await;
        self.respawn().await
    }

    /// Start containerd again after `kill_containerd` with the same config and state.
    pub async fn respawn(&mut self) -> Result<()> {
        anyhow::ensure!(self.child.is_none(), "containerd is still running");
        self.spawn().await
    }

    /// The shim binary name for this run's handler.
    pub fn shim_exe_name(&self) -> &'static str {
        if is_podshim(&self.opts.handler) {
            "containerd-shim-podshim-v1"
        } else {
            "containerd-shim-runc-v2"
        }
    }

    /// Shim processes of this containerd whose binary belongs to this run's handler.
    pub fn shims(&self) -> Vec<sys::Proc> {
        let want = self.shim_exe_name();
        sys::shim_processes(&self.sock)
            .into_iter()
            .filter(|p| p.exe_name() == want)
            .collect()
    }

    /// All shim processes of this containerd, any binary.
    pub fn all_shims(&self) -> Vec<sys::Proc> {
        sys::shim_processes(&self.sock)
    }

    /// Wait until the set of shims is stable (shims fork a daemon during `start`).
    pub async fn settled_shims(&self) -> Vec<sys::Proc> {
        let mut last: Vec<i32> = Vec::new();
        for _ in 0..30 {
            let now: Vec<i32> = self.all_shims().iter().map(|p| p.pid).collect();
            if now == last {
                break;
            }
            last = now;
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        self.all_shims()
    }

    /// The last `n` lines of containerd's log.
    pub fn log_tail(&self, n: usize) -> String {
        log_tail(&self.log_path, n)
    }

    /// The last `max` error lines of containerd's log.
    pub fn log_errors(&self, max: usize) -> String {
        log_errors(&self.log_path, max)
    }

    /// Next unique number for names within this run.
    pub fn seq(&self) -> u32 {
        self.pod_seq
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    }

    /// Everything still present that belongs to this containerd: shims, container processes,
    /// mounts under our directories, netns files, bridge ports.
    pub fn leftovers(&self) -> Vec<String> {
        let mut v = Vec::new();
        for p in self.all_shims() {
            v.push(format!("shim process {} ({})", p.pid, p.cmdline_str()));
        }
        for pid in sys::cgroup_pids(&self.cgroup_root) {
            let cmd = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            v.push(format!(
                "process {pid} in {} ({})",
                self.cgroup_root,
                String::from_utf8_lossy(&cmd).replace('\0', " ")
            ));
        }
        for m in sys::mounts_under(&self.dir) {
            v.push(format!("mount {}", m.display()));
        }
        if let Ok(rd) = fs::read_dir(self.state.join("netns")) {
            for e in rd.flatten() {
                v.push(format!("netns file {}", e.path().display()));
            }
        }
        for port in sys::bridge_ports(&self.bridge) {
            v.push(format!("interface {port} on bridge {}", self.bridge));
        }
        // A pod's files (CRI's, or a pause-less shim's at CRI's paths) and bundles.
        let cri = "io.containerd.grpc.v1.cri/sandboxes";
        for dir in [self.root.join(cri), self.state.join(cri)] {
            for e in fs::read_dir(&dir).into_iter().flatten().flatten() {
                v.push(format!("pod directory {}", e.path().display()));
            }
        }
        for kind in [
            "io.containerd.runtime.v2.shim",
            "io.containerd.runtime.v2.task",
        ] {
            for ns in fs::read_dir(self.state.join(kind))
                .into_iter()
                .flatten()
                .flatten()
            {
                for e in fs::read_dir(ns.path()).into_iter().flatten().flatten() {
                    v.push(format!("bundle {}", e.path().display()));
                }
            }
        }
        v
    }

    /// Remove every pod via CRI, check nothing is left, stop containerd, clean up and remove
    /// the temp dir. Returns an error listing leftovers (which are cleaned up regardless).
    pub async fn stop(&mut self) -> Result<()> {
        if self.finished {
            return Ok(());
        }
        let mut problems: Vec<String> = Vec::new();
        if self.child.is_none() {
            // The case stopped containerd (restart test) and failed before starting it again:
            // start it so that pods are removed through CRI rather than by force.
            if let Err(e) = self.respawn().await {
                problems.push(format!("restarting containerd for teardown: {e:#}"));
            }
        }
        let alive = self
            .child
            .as_mut()
            .map(|c| matches!(c.try_wait(), Ok(None)))
            .unwrap_or(false);
        if alive {
            match self.cri.list_pods().await {
                Ok(pods) => {
                    for p in pods {
                        // containerd 2.1 can race with a container that is exiting right now
                        // ("ttrpc: closed"): retry a few times, report only a lasting failure.
                        let mut last = None;
                        for _ in 0..3 {
                            let r = match self.cri.stop_pod(&p).await {
                                Ok(()) => self.cri.remove_pod(&p).await,
                                Err(e) => Err(e),
                            };
                            match r {
                                Ok(()) => {
                                    last = None;
                                    break;
                                }
                                Err(e) => last = Some(e),
                            }
                            tokio::time::sleep(Duration::from_millis(500)).await;
                        }
                        if let Some(e) = last {
                            problems.push(format!("Stop/RemovePodSandbox {p}: {e:#}"));
                        }
                    }
                }
                Err(e) => problems.push(format!("ListPodSandbox: {e:#}")),
            }
            // Its warm pool goes with it; then nothing of it may be left.
            if let Err(e) = self.stop_sandboxer().await {
                problems.push(format!("{e:#}"));
            }
            // Shims exit asynchronously after their last task is deleted.
            let deadline = Instant::now() + Duration::from_secs(10);
            let mut left = self.leftovers();
            while !left.is_empty() && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(200)).await;
                left = self.leftovers();
            }
            left.extend(self.sandboxer_leftovers());
            problems.extend(
                left.into_iter()
                    .map(|l| format!("left after removing all pods: {l}")),
            );
        }
        if let Err(e) = self.kill_containerd().await {
            problems.push(format!("{e:#}"));
        }
        problems.extend(
            podshim_caused_errors(&self.log_path)
                .into_iter()
                .map(|l| format!("containerd logged an error podshim causes: {l}")),
        );
        // Our own daemons: stopped, not leftovers.
        if let Some(r) = self.registry.as_mut() {
            r.stop();
        }
        if let Some(d) = self.snapshotter.as_mut() {
            if let Err(e) = d.stop() {
                problems.push(format!("{e:#}"));
            }
        }
        if let Err(e) = self.stop_sandboxer().await {
            problems.push(format!("{e:#}"));
        }
        self.finished = true;
        if let Some(p) = &self.save_log_to {
            let _ = fs::copy(&self.log_path, p);
        }
        let found = force_cleanup(&self.dir, &self.sock, None, &self.bridge, &self.cgroup_root);
        if alive {
            problems.extend(
                found
                    .into_iter()
                    .map(|f| format!("force-cleaned after containerd stopped: {f}")),
            );
        }
        if problems.is_empty() {
            Ok(())
        } else {
            bail!("teardown found problems:\n  {}", problems.join("\n  "))
        }
    }

    /// Stop and clean up; panic with the case error, leftovers and containerd's log tail on failure.
    pub async fn finish(mut self, case: Result<()>) {
        // The log is copied out just before the temp dir goes, so it includes the teardown.
        let log_copy = self.log_copy_path();
        self.save_log_to = Some(log_copy.clone());
        let stop = self.stop().await;
        if case.is_ok() && stop.is_ok() {
            let _ = fs::remove_file(&log_copy);
            return;
        }
        let log_tail = log_tail(&log_copy, 80);
        let log_errors = log_errors(&log_copy, 40);
        let mut msg = String::new();
        if let Err(e) = &case {
            msg.push_str(&format!("test case failed: {e:#}\n"));
        }
        if let Err(e) = &stop {
            msg.push_str(&format!("{e:#}\n"));
        }
        if !msg.is_empty() {
            // Printed (captured and shown by the test runner) rather than panicked with, so the
            // report is not buried under a backtrace of this helper.
            eprintln!(
                "{msg}\n--- containerd error lines ---\n{log_errors}\n--- containerd log tail ---\n{log_tail}\n--- full log: {} ---",
                log_copy.display()
            );
            std::panic::resume_unwind(Box::new(msg));
        }
    }

    fn log_copy_path(&self) -> PathBuf {
        let d = images::cache_dir().with_file_name("podshim-e2e-logs");
        let _ = fs::create_dir_all(&d);
        let name = format!(
            "{}-{}.log",
            std::thread::current()
                .name()
                .unwrap_or("run")
                .replace("::", "-"),
            self.dir.file_name().unwrap().to_string_lossy()
        );
        d.join(name)
    }

    /// Have `stop` copy containerd's log, teardown included, to `path` before the temp dir goes.
    pub fn keep_log_at(&mut self, path: PathBuf) {
        self.save_log_to = Some(path);
    }

    /// Copy containerd's log next to the image cache (kept after the temp dir is gone).
    pub fn save_log(&self) -> PathBuf {
        let p = self.log_copy_path();
        let _ = fs::copy(&self.log_path, &p);
        p
    }

    /// The bundle directory containerd creates for a task.
    pub fn bundle_dir(&self, ns: &str, id: &str) -> PathBuf {
        self.state
            .join("io.containerd.runtime.v2.task")
            .join(ns)
            .join(id)
    }

    /// The bundle of a pod's sandbox: the pause container's task bundle in classic mode, the
    /// built-in `shim` sandbox controller's bundle for pause-less pods.
    pub fn sandbox_bundle_dir(&self, ns: &str, pod_id: &str) -> PathBuf {
        if self.opts.runs_sandboxer() {
            self.sandboxer_state.join("bundles").join(ns).join(pod_id)
        } else if is_pauseless(&self.opts.handler) {
            self.state
                .join("io.containerd.sandbox.controller.v1.shim")
                .join(ns)
                .join(pod_id)
        } else {
            self.bundle_dir(ns, pod_id)
        }
    }

    /// The pid CRI uses for the pod's namespaces: the pause container's init, or the pod shim's
    /// namespace holder.
    pub fn sandbox_pid(&self, pod: &crate::Pod) -> Result<i32> {
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

    /// The socket path containerd's shim helpers derive for (ns, id).
    pub fn shim_socket_path(&self, ns: &str, id: &str) -> PathBuf {
        shim_socket_path(&self.sock, ns, id)
    }

    /// What is left of a removed pod and its containers: shims, mounts, bundles, CRI dirs,
    /// netns, shim socket, processes in the pod cgroup.
    pub fn pod_leftovers(&self, pod: &crate::Pod, containers: &[String]) -> Vec<String> {
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
}

/// containerd error lines that mean podshim answered something containerd could not use; any
/// of them fails the case that caused it.
const PODSHIM_CAUSED: [&str; 2] = [
    // containerd >= 2.3 reads the spec StartSandbox returned (containerd#12840).
    "failed to unmarshal sandbox spec",
    // CRI >= 2.3 parses the sandbox's verbose info as its SandboxInfo.
    "failed to unmarshal sandbox info",
];

/// The lines of a containerd log that name an error in [`PODSHIM_CAUSED`].
pub fn podshim_caused_errors(path: &Path) -> Vec<String> {
    let s = fs::read_to_string(path).unwrap_or_default();
    s.lines()
        .filter(|l| l.contains("level=error") || l.contains("level=warning"))
        .filter(|l| PODSHIM_CAUSED.iter().any(|p| l.contains(p)))
        .map(|l| truncate(l, 400))
        .collect()
}

/// The last `max` lines of a containerd log at level error/fatal or mentioning a panic.
pub fn log_errors(path: &Path, max: usize) -> String {
    let s = fs::read_to_string(path).unwrap_or_default();
    let v: Vec<&str> = s
        .lines()
        .filter(|l| l.contains("level=error") || l.contains("level=fatal") || l.contains("panic"))
        .collect();
    v[v.len().saturating_sub(max)..]
        .iter()
        .map(|l| truncate(l, 600))
        .collect::<Vec<_>>()
        .join("\n")
}

pub fn log_tail(path: &Path, n: usize) -> String {
    let Ok(mut f) = File::open(path) else {
        return format!("(no log at {})", path.display());
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let start = len.saturating_sub(256 * 1024);
    let _ = f.seek(SeekFrom::Start(start));
    let mut s = String::new();
    let mut buf = Vec::new();
    let _ = f.read_to_end(&mut buf);
    s.push_str(&String::from_utf8_lossy(&buf));
    let lines: Vec<String> = s.lines().map(|l| truncate(l, 600)).collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

fn truncate(l: &str, max: usize) -> String {
    if l.len() <= max {
        return l.to_string();
    }
    let mut end = max;
    while !l.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…[{} bytes]", &l[..end], l.len())
}

impl Drop for Containerd {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        if std::thread::panicking() {
            let p = self.save_log();
            eprintln!(
                "--- containerd log tail ({}) ---\n{}\n--- full log: {} ---",
                self.dir.display(),
                self.log_tail(60),
                p.display()
            );
        }
        self.finished = true;
        if let Some(r) = self.registry.as_mut() {
            r.stop();
        }
        if let Some(d) = self.snapshotter.as_mut() {
            let _ = d.stop();
        }
        let found = force_cleanup(
            &self.dir,
            &self.sock,
            self.child.as_mut(),
            &self.bridge,
            &self.cgroup_root,
        );
        if !found.is_empty() {
            eprintln!("podshim-e2e: Drop cleaned up: {found:#?}");
        }
    }
}

/// A copy of the executable `from` at `to` (a new file, mode kept), written out before it is
/// used: a process must never exec a file still open for writing (ETXTBSY).
fn copy_binary(from: &Path, to: &Path) -> Result<()> {
    fs::copy(from, to)
        .with_context(|| format!("copying {} to {}", from.display(), to.display()))?;
    File::open(to)?.sync_all()?;
    Ok(())
}

/// The first `name` on PATH.
fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(name))
            .find(|p| p.is_file())
    })
}

/// `config-snippets/conf.d/60-podshim-snapshotter.toml` as an operator would install it, with its
/// socket and root moved into `dir` and, unless `use_` is `Registered`, its optional lines
/// (commented `[table]` and `key = value` lines of the "Enable" part) uncommented.
fn snapshotter_dropin(dir: &Path, use_: SnapshotterUse) -> Result<String> {
    let p = images::repo_root().join("config-snippets/conf.d/60-podshim-snapshotter.toml");
    let text = fs::read_to_string(&p).with_context(|| format!("reading {}", p.display()))?;
    let text = text
        .replace(
            "/run/podshim-snapshotter/snapshotter.sock",
            &dir.join("podsnap.sock").to_string_lossy(),
        )
        .replace(
            "/var/lib/podshim-snapshotter",
            &dir.join("podsnap").to_string_lossy(),
        );
    anyhow::ensure!(
        text.contains(&*dir.to_string_lossy()),
        "{} no longer names the default socket/root paths this harness rewrites",
        p.display()
    );
    if use_ == SnapshotterUse::Registered {
        return Ok(text);
    }
    let mut out = String::new();
    let mut optional = false;
    let mut enabled = 0;
    for line in text.lines() {
        if line.starts_with("# ---") && line.contains("Enable") {
            optional = true;
        }
        if optional && (line.starts_with("# [") || line.starts_with("#   ")) {
            out.push_str(&line[2..]);
            enabled += 1;
        } else {
            out.push_str(line);
        }
        out.push('\n');
    }
    anyhow::ensure!(
        enabled >= 10,
        "{}: found only {enabled} optional lines to enable",
        p.display()
    );
    Ok(out)
}

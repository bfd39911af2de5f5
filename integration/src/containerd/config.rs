//! The files a run writes before containerd starts, each from the operator's own drop-ins where
//! one ships: the shim's config, the CNI network, podshim-sandboxer's config and drop-in,
//! podshim-snapshotter's drop-in, the registry hosts and containerd's `config.toml`.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use super::bins::{which, Bins};
use super::slot::Slot;
use super::{Options, SnapshotterUse};
use crate::images;

/// Where each file and socket of a run lives under its temp dir.
pub(super) struct Paths {
    pub root: PathBuf,
    pub state: PathBuf,
    pub sock: PathBuf,
    pub ttrpc_sock: PathBuf,
    pub config: PathBuf,
    pub log: PathBuf,
    pub shim_config: PathBuf,
    pub cni_dir: PathBuf,
    pub sandboxer_config: PathBuf,
    pub sandboxer_state: PathBuf,
    pub sandboxer_sock: PathBuf,
    /// containerd's registry `config_path` (hosts.toml per registry host).
    pub registry_hosts_dir: PathBuf,
}

impl Paths {
    pub fn of(dir: &Path) -> Paths {
        Paths {
            root: dir.join("root"),
            state: dir.join("state"),
            sock: dir.join("containerd.sock"),
            ttrpc_sock: dir.join("containerd.sock.ttrpc"),
            config: dir.join("config.toml"),
            log: dir.join("containerd.log"),
            shim_config: dir.join("podshim.toml"),
            cni_dir: dir.join("cni"),
            sandboxer_config: dir.join("sandboxer.toml"),
            sandboxer_state: dir.join("sandboxer"),
            sandboxer_sock: dir.join("sandboxer.sock"),
            registry_hosts_dir: dir.join("certs.d"),
        }
    }
}

/// Writes every file of the run in `dir`.
pub(super) fn write(
    dir: &Path,
    opts: &Options,
    p: &Paths,
    slot: &Slot,
    bins: &Bins,
    stream_port: u16,
    sandboxer_metrics_port: u16,
) -> Result<()> {
    fs::create_dir_all(dir.join("logs"))?;
    write_shim_config(dir, opts, p)?;
    write_cni(dir, opts, p, slot)?;
    write_registry_hosts(p)?;
    let mut imports = operator_dropins()?;
    if opts.snapshotter != SnapshotterUse::Off {
        let f = dir.join(SNAPSHOTTER_DROPIN);
        fs::write(&f, snapshotter_dropin(dir, opts.snapshotter)?)?;
        imports.push(f);
    }
    if opts.runs_sandboxer() {
        imports.push(write_sandboxer(dir, opts, p, bins, sandboxer_metrics_port)?);
    }
    write_containerd(dir, opts, p, &imports, stream_port)
}

fn write_shim_config(dir: &Path, opts: &Options, p: &Paths) -> Result<()> {
    let text = if opts.shim_config.is_empty() {
        // Keep the OCI runtime's state of podshim's containers inside our temp dir.
        let binary = match &opts.oci_runtime {
            Some(b) => format!("binary = \"{}\"\n", b.display()),
            None => String::new(),
        };
        let shim_cgroup = match opts.shim_cgroup {
            true => format!("shim_cgroup = \"{}\"\n", shim_cgroup(dir)),
            false => String::new(),
        };
        format!(
            "[runtime]\n{binary}root = \"{}/podshim-runc\"\n{shim_cgroup}",
            dir.display()
        )
    } else {
        opts.shim_config.replace("{dir}", &dir.to_string_lossy())
    };
    Ok(fs::write(&p.shim_config, text)?)
}

/// The cgroup `Options::shim_cgroup` puts the shims in: under the run's cgroup root (named after
/// its directory, see `Containerd::start`), which teardown removes.
pub(super) fn shim_cgroup(dir: &Path) -> String {
    format!(
        "/{}/shims",
        dir.file_name().unwrap_or_default().to_string_lossy()
    )
}

/// The run's one CNI network list, in CRI's conf_dir.
pub(super) fn cni_conflist(dir: &Path) -> PathBuf {
    Paths::of(dir).cni_dir.join("10-podshim-e2e.conflist")
}

/// A bridge network of its own per run (`Slot`), or one naming a plugin that does not exist.
fn write_cni(dir: &Path, opts: &Options, p: &Paths, slot: &Slot) -> Result<()> {
    fs::create_dir_all(&p.cni_dir)?;
    let conflist = if opts.cni_plugin_missing {
        serde_json::json!({
            "cniVersion": "1.0.0",
            "name": slot.network_name,
            "plugins": [{ "type": "podshim-e2e-no-such-plugin" }],
        })
    } else {
        serde_json::json!({
            "cniVersion": "1.0.0",
            "name": slot.network_name,
            "plugins": [
                {
                    "type": "bridge",
                    "bridge": slot.bridge,
                    "isGateway": true,
                    "isDefaultGateway": false,
                    "ipMasq": false,
                    "hairpinMode": true,
                    "ipam": {
                        "type": "host-local",
                        "ranges": [[{ "subnet": format!("{}.0/24", slot.subnet_prefix) }]],
                        "dataDir": dir.join("cni-ipam").to_string_lossy(),
                    },
                },
                { "type": "portmap", "capabilities": { "portMappings": true } },
            ],
        })
    };
    Ok(fs::write(
        cni_conflist(dir),
        serde_json::to_vec_pretty(&conflist)?,
    )?)
}

/// The test images' registry host resolves to a closed loopback port: a pull of an image the
/// run did not import fails at once and no name is ever looked up off the machine.
fn write_registry_hosts(p: &Paths) -> Result<()> {
    let local = p.registry_hosts_dir.join(images::REGISTRY_HOST);
    fs::create_dir_all(&local)?;
    Ok(fs::write(
        local.join("hosts.toml"),
        "server = \"http://127.0.0.1:9\"\n\n[host.\"http://127.0.0.1:9\"]\n  capabilities = [\"pull\", \"resolve\"]\n",
    )?)
}

/// The default drop-in and the pause-less one, as shipped: this containerd is a test bed, not
/// an operator's install, and the cases that would crash a containerd < 2.3 through the latter
/// (hostNetwork, containerd#12983) are not run there (see the e2e suite's gates).
fn operator_dropins() -> Result<Vec<PathBuf>> {
    let mut v = Vec::new();
    for name in ["50-podshim.toml", "52-podshim-pauseless.toml"] {
        let dropin = images::repo_root()
            .join("config-snippets/conf.d")
            .join(name);
        anyhow::ensure!(
            dropin.exists(),
            "config drop-in missing: {}",
            dropin.display()
        );
        v.push(dropin);
    }
    Ok(v)
}

/// podshim-sandboxer's config, and the operator's drop-in with the socket moved into our temp
/// dir (returned, for containerd's imports).
/// `metrics_port`: where it serves its metrics, on loopback (the bench reads its request times).
fn write_sandboxer(
    dir: &Path,
    opts: &Options,
    p: &Paths,
    bins: &Bins,
    metrics_port: u16,
) -> Result<PathBuf> {
    anyhow::ensure!(
        bins.sandboxer.exists(),
        "podshim-sandboxer not found at {} (build it: `cargo build -p podshim-sandboxer`, or set PODSHIM_SANDBOXER_BIN)",
        bins.sandboxer.display()
    );
    let snippet = images::repo_root().join("config-snippets/conf.d/55-podshim-sandboxer.toml");
    let text =
        fs::read_to_string(&snippet).with_context(|| format!("reading {}", snippet.display()))?;
    let ours = dir.join("55-podshim-sandboxer.toml");
    fs::write(
        &ours,
        text.replace(
            "/run/podshim-sandboxer/sandboxer.sock",
            &p.sandboxer_sock.to_string_lossy(),
        ),
    )?;
    let containerd_bin = which("containerd").unwrap_or_else(|| "/usr/bin/containerd".into());
    fs::write(
        &p.sandboxer_config,
        format!(
            r#"address = "{sock}"
state_dir = "{state}"
log_level = "debug"
metrics_address = "127.0.0.1:{metrics_port}"
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
            sock = p.sandboxer_sock.display(),
            state = p.sandboxer_state.display(),
            shim = bins.shim_dir.join("containerd-shim-podshim-v1").display(),
            debug = opts.log_level == "debug",
            csock = p.sock.display(),
            ttrpc = p.ttrpc_sock.display(),
            cbin = containerd_bin.display(),
            root = p.root.display(),
            cstate = p.state.display(),
            pool = opts.sandboxer_pool,
        ),
    )?;
    Ok(ours)
}

/// containerd's own `config.toml`: everything in the run's temp dir, the drop-ins imported.
fn write_containerd(
    dir: &Path,
    opts: &Options,
    p: &Paths,
    imports: &[PathBuf],
    stream_port: u16,
) -> Result<()> {
    let imports = imports
        .iter()
        .map(|i| format!("{:?}", i.display().to_string()))
        .collect::<Vec<_>>()
        .join(", ");
    let mut images_extra = String::new();
    if let Some(s) = opts.stats_collect_period {
        images_extra.push_str(&format!("  stats_collect_period = {s}\n"));
    }
    images_extra.push_str(&format!(
        "  [plugins.\"io.containerd.cri.v1.images\".registry]\n    config_path = \"{}\"\n",
        p.registry_hosts_dir.display()
    ));
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
  # As Debian's config.toml names it; the snapshotter drop-in's [node] lines override it.
  snapshotter = "overlayfs"
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
{runc_binary}"#,
        root = p.root.display(),
        state = p.state.display(),
        sock = p.sock.display(),
        ttrpc = p.ttrpc_sock.display(),
        level = opts.log_level,
        dir = dir.display(),
        pause = images::PAUSE_IMAGE,
        maxlog = opts.max_container_log_line_size,
        cni = p.cni_dir.display(),
        runc_binary = match &opts.oci_runtime {
            Some(b) => format!("      BinaryName = \"{}\"\n", b.display()),
            None => String::new(),
        },
    );
    let mut cfg = cfg;
    if let Some(n) = opts.max_concurrent_unpacks {
        cfg.push_str(&format!(
            "\n[plugins.\"io.containerd.transfer.v1.local\"]\n  max_concurrent_unpacks = {n}\n"
        ));
    }
    if !opts.shim_env.is_empty() {
        cfg.push_str(&format!(
            "\n[plugins.\"io.containerd.shim.v1.manager\"]\n  env = {:?}\n",
            opts.shim_env
        ));
    }
    Ok(fs::write(&p.config, cfg)?)
}

/// The run's copy of the snapshotter drop-in, in its temp dir.
pub(super) const SNAPSHOTTER_DROPIN: &str = "60-podshim-snapshotter.toml";

/// `config-snippets/conf.d/60-podshim-snapshotter.toml` as an operator would install it, with its
/// socket and root moved into `dir` and, unless `use_` is `Registered`, the commented `[table]`
/// and `key = value` lines of the setup `use_` names uncommented.
pub(super) fn snapshotter_dropin(dir: &Path, use_: SnapshotterUse) -> Result<String> {
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
    // The setups whose commented lines are enabled (`# --- Enable [tag]: …` opens a section).
    let tags: &[&str] = match use_ {
        SnapshotterUse::Off | SnapshotterUse::Registered => return Ok(text),
        SnapshotterUse::PodshimPods => &["[podshim]", "[both]"],
        SnapshotterUse::CriDefault => &["[node]", "[both]"],
    };
    let mut out = String::new();
    let mut on = false;
    let mut enabled = Vec::new();
    for line in text.lines() {
        if let Some(heading) = line.strip_prefix("# --- Enable ") {
            on = tags.iter().any(|t| heading.starts_with(t));
            if on {
                enabled.push(heading.split(':').next().unwrap_or_default().to_string());
            }
        }
        if on && (line.starts_with("# [") || line.starts_with("#   ")) {
            out.push_str(&line[2..]);
        } else {
            out.push_str(line);
        }
        out.push('\n');
    }
    anyhow::ensure!(
        enabled.len() == tags.len(),
        "{}: sections {tags:?} wanted, found {enabled:?}",
        p.display()
    );
    Ok(out)
}

//! Test images built locally at test time (no registry, nothing from the network):
//!
//! * `podshim.test/busybox:1`: `/bin/busybox` from Debian's busybox-static plus a symlink per applet.
//! * `podshim.test/pause:1`: `/pause` compiled from `integration/images/pause.c` with `gcc -static -Os`.
//!
//! Each is written as an OCI image layout archive (oci-layout, index.json, blobs/sha256/...) with
//! one uncompressed tar layer, cached under the cargo target directory, and imported with `ctr`.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

use anyhow::{bail, Context, Result};
use serde_json::json;
use sha2::{Digest, Sha256};

/// The registry host of every image the suite builds (none serves it).
pub const REGISTRY_HOST: &str = "podshim.test";
pub const BUSYBOX_IMAGE: &str = "podshim.test/busybox:1";
pub const PAUSE_IMAGE: &str = "podshim.test/pause:1";

/// Bumped whenever the archive layout produced here changes.
pub(crate) const FORMAT: &str = "podshim-e2e-images-v1";
pub(crate) const BUSYBOX_BIN: &str = "/bin/busybox";

#[derive(Debug, Clone)]
pub struct ImageArchives {
    pub busybox: PathBuf,
    pub pause: PathBuf,
}

pub(crate) static BUILD_LOCK: Mutex<()> = Mutex::new(());

pub fn repo_root() -> PathBuf {
    let manifest = std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")));
    manifest.parent().map(Path::to_path_buf).unwrap_or(manifest)
}

/// `<cargo target dir>/podshim-e2e-images`, found from the running executable.
pub fn cache_dir() -> PathBuf {
    if let Ok(exe) = std::env::current_exe() {
        for a in exe.ancestors().skip(1) {
            if a.join("CACHEDIR.TAG").exists() {
                return a.join("podshim-e2e-images");
            }
        }
    }
    repo_root().join("target").join("podshim-e2e-images")
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn sha256_hex(data: &[u8]) -> String {
    hex(&Sha256::digest(data))
}

/// Build (or reuse from the cache) both image archives.
pub fn ensure_archives() -> Result<ImageArchives> {
    let _g = BUILD_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let busybox = fs::read(BUSYBOX_BIN).with_context(|| {
        format!("reading {BUSYBOX_BIN} (install busybox-static: scripts/install-deps.sh)")
    })?;
    let pause_src_path = repo_root().join("integration/images/pause.c");
    let pause_src = fs::read(&pause_src_path)
        .with_context(|| format!("reading {}", pause_src_path.display()))?;
    let mut h = Sha256::new();
    h.update(FORMAT.as_bytes());
    h.update(&busybox);
    h.update(&pause_src);
    let key = hex(&h.finalize())[..16].to_string();
    let dir = cache_dir().join(key);
    let out = ImageArchives {
        busybox: dir.join("busybox.oci.tar"),
        pause: dir.join("pause.oci.tar"),
    };
    if out.busybox.exists() && out.pause.exists() {
        return Ok(out);
    }
    fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;

    // busybox
    let mut files = base_tree();
    files.extend(busybox_entries(busybox)?);
    let cfg = json!({
        "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
        "Cmd": ["sh"],
        "WorkingDir": "/",
    });
    write_atomic(&out.busybox, &oci_archive(BUSYBOX_IMAGE, &files, cfg)?)?;

    // pause
    let pause_bin = compile_static(&pause_src_path, &dir)?;
    let mut files = base_tree();
    files.push(Entry::File {
        path: "pause".into(),
        mode: 0o755,
        data: pause_bin,
    });
    let cfg = json!({
        "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
        "Entrypoint": ["/pause"],
        "WorkingDir": "/",
    });
    write_atomic(&out.pause, &oci_archive(PAUSE_IMAGE, &files, cfg)?)?;
    Ok(out)
}

/// `/bin/busybox` and one symlink per applet.
pub(crate) fn busybox_entries(busybox: Vec<u8>) -> Result<Vec<Entry>> {
    let applets = Command::new(BUSYBOX_BIN)
        .arg("--list")
        .output()
        .context("busybox --list")?;
    anyhow::ensure!(applets.status.success(), "busybox --list failed");
    let applets: Vec<String> = String::from_utf8_lossy(&applets.stdout)
        .lines()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty() && s != "busybox" && !s.contains('/'))
        .collect();
    anyhow::ensure!(
        applets.iter().any(|a| a == "sh"),
        "busybox has no sh applet"
    );
    let mut files = vec![Entry::File {
        path: "bin/busybox".into(),
        mode: 0o755,
        data: busybox,
    }];
    for a in &applets {
        files.push(Entry::Symlink {
            path: format!("bin/{a}"),
            target: "busybox".into(),
        });
    }
    Ok(files)
}

/// `src` compiled with `gcc -static -Os`, built in `dir`.
pub(crate) fn compile_static(src: &Path, dir: &Path) -> Result<Vec<u8>> {
    let stem = src.file_stem().unwrap_or_default().to_string_lossy();
    let bin = dir.join(format!("{stem}.{}", std::process::id()));
    let o = Command::new("gcc")
        .args(["-static", "-Os", "-s", "-o"])
        .arg(&bin)
        .arg(src)
        .output()
        .context("running gcc (install gcc and libc6-dev: scripts/install-deps.sh)")?;
    if !o.status.success() {
        bail!(
            "gcc -static failed for {}: {}",
            src.display(),
            String::from_utf8_lossy(&o.stderr)
        );
    }
    let data = fs::read(&bin)?;
    let _ = fs::remove_file(&bin);
    Ok(data)
}

pub(crate) fn write_atomic(path: &Path, data: &[u8]) -> Result<()> {
    let tmp = path.with_extension(format!("tmp.{}", std::process::id()));
    fs::write(&tmp, data).with_context(|| format!("writing {}", tmp.display()))?;
    fs::rename(&tmp, path).with_context(|| format!("renaming to {}", path.display()))?;
    Ok(())
}

#[derive(Clone)]
pub(crate) enum Entry {
    Dir {
        path: String,
        mode: u32,
    },
    File {
        path: String,
        mode: u32,
        data: Vec<u8>,
    },
    Symlink {
        path: String,
        target: String,
    },
    /// A hard link to `target`, a path earlier in the same layer.
    Hardlink {
        path: String,
        target: String,
    },
}

pub(crate) fn base_tree() -> Vec<Entry> {
    let mut v: Vec<Entry> = [
        "bin", "dev", "etc", "proc", "sys", "root", "run", "var", "usr", "usr/bin", "home",
    ]
    .iter()
    .map(|p| Entry::Dir {
        path: p.to_string(),
        mode: 0o755,
    })
    .collect();
    v.push(Entry::Dir {
        path: "tmp".into(),
        mode: 0o1777,
    });
    v.push(Entry::Dir {
        path: "var/tmp".into(),
        mode: 0o1777,
    });
    v.push(Entry::File {
        path: "etc/passwd".into(),
        mode: 0o644,
        data: b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/home:/bin/false\n"
            .to_vec(),
    });
    v.push(Entry::File {
        path: "etc/group".into(),
        mode: 0o644,
        data: b"root:x:0:\nnogroup:x:65534:\n".to_vec(),
    });
    v
}

fn layer_tar(entries: &[Entry]) -> Result<Vec<u8>> {
    let mut b = tar::Builder::new(Vec::new());
    for e in entries {
        let mut h = tar::Header::new_gnu();
        h.set_mtime(0);
        h.set_uid(0);
        h.set_gid(0);
        match e {
            Entry::Dir { path, mode } => {
                h.set_entry_type(tar::EntryType::Directory);
                h.set_mode(*mode);
                h.set_size(0);
                b.append_data(&mut h, format!("{path}/"), std::io::empty())?;
            }
            Entry::File { path, mode, data } => {
                h.set_entry_type(tar::EntryType::Regular);
                h.set_mode(*mode);
                h.set_size(data.len() as u64);
                b.append_data(&mut h, path, data.as_slice())?;
            }
            Entry::Symlink { path, target } => {
                h.set_entry_type(tar::EntryType::Symlink);
                h.set_mode(0o777);
                h.set_size(0);
                b.append_link(&mut h, path, target)?;
            }
            Entry::Hardlink { path, target } => {
                h.set_entry_type(tar::EntryType::Link);
                h.set_mode(0o755);
                h.set_size(0);
                b.append_link(&mut h, path, target)?;
            }
        }
    }
    Ok(b.into_inner()?)
}

fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "powerpc64" => "ppc64le",
        "s390x" => "s390x",
        "riscv64" => "riscv64",
        other => other,
    }
}

/// A complete OCI image layout archive for an image named `name` with one layer.
pub(crate) fn oci_archive(
    name: &str,
    entries: &[Entry],
    config: serde_json::Value,
) -> Result<Vec<u8>> {
    oci_archive_layers(name, &[entries], config)
}

/// A complete OCI image layout archive with one uncompressed tar layer per element of `layers`,
/// lowest first.
fn oci_archive_layers(
    name: &str,
    layers: &[&[Entry]],
    config: serde_json::Value,
) -> Result<Vec<u8>> {
    let layers: Vec<Vec<u8>> = layers.iter().map(|l| layer_tar(l)).collect::<Result<_>>()?;
    let digests: Vec<String> = layers
        .iter()
        .map(|l| format!("sha256:{}", sha256_hex(l)))
        .collect();
    let history: Vec<serde_json::Value> = layers
        .iter()
        .map(|_| json!({ "created": "1970-01-01T00:00:00Z", "created_by": "podshim-integration" }))
        .collect();
    let config = serde_json::to_vec(&json!({
        "architecture": go_arch(),
        "os": "linux",
        "created": "1970-01-01T00:00:00Z",
        "config": config,
        "rootfs": { "type": "layers", "diff_ids": digests },
        "history": history,
    }))?;
    let config_digest = format!("sha256:{}", sha256_hex(&config));
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": config_digest,
            "size": config.len(),
        },
        "layers": layers.iter().zip(&digests).map(|(l, d)| json!({
            "mediaType": "application/vnd.oci.image.layer.v1.tar",
            "digest": d,
            "size": l.len(),
        })).collect::<Vec<_>>(),
    }))?;
    let manifest_digest = format!("sha256:{}", sha256_hex(&manifest));
    let tag = name.rsplit_once(':').map(|(_, t)| t).unwrap_or("latest");
    let index = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": manifest_digest,
            "size": manifest.len(),
            "platform": { "architecture": go_arch(), "os": "linux" },
            "annotations": {
                "io.containerd.image.name": name,
                "org.opencontainers.image.ref.name": tag,
            },
        }],
    }))?;

    let mut b = tar::Builder::new(Vec::new());
    let mut add = |path: &str, data: &[u8]| -> Result<()> {
        let mut h = tar::Header::new_gnu();
        h.set_mtime(0);
        h.set_mode(0o644);
        h.set_entry_type(tar::EntryType::Regular);
        h.set_size(data.len() as u64);
        b.append_data(&mut h, path, data)?;
        Ok(())
    };
    add("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#)?;
    add("index.json", &index)?;
    let mut blobs: Vec<(&String, &Vec<u8>)> = digests.iter().zip(&layers).collect();
    blobs.push((&config_digest, &config));
    blobs.push((&manifest_digest, &manifest));
    for (digest, data) in blobs {
        add(
            &format!("blobs/sha256/{}", digest.trim_start_matches("sha256:")),
            data,
        )?;
    }
    Ok(b.into_inner()?)
}

/// Import an archive into containerd namespace `ns` with `ctr` (unpacked into the default snapshotter).
pub fn ctr_import(sock: &Path, ns: &str, archive: &Path) -> Result<()> {
    let o = Command::new("ctr")
        .arg("--address")
        .arg(sock)
        .args(["-n", ns, "images", "import"])
        .arg(archive)
        .output()
        .context("running ctr images import")?;
    if !o.status.success() {
        bail!(
            "ctr -n {ns} images import {} failed: {}{}",
            archive.display(),
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
    }
    Ok(())
}

/// A layered test image: `name` of the archive's annotation; pushed under any name by skopeo.
pub const LAYERED_IMAGE: &str = "podshim.test/layered:1";

/// What a container of [`layered_archive`]'s image must see, as `path -> content` for files that
/// exist, and the paths that the upper layers deleted (whiteouts, opaque directories).
pub struct LayeredExpect {
    pub files: &'static [(&'static str, &'static str)],
    pub absent: &'static [&'static str],
    /// `ls -A` of directories whose listing an overlay must get exactly right.
    pub listings: &'static [(&'static str, &'static str)],
}

pub const LAYERED_EXPECT: LayeredExpect = LayeredExpect {
    files: &[
        ("/data/keep", "keep-1"),
        ("/data/over", "over-2"),
        ("/data/added", "added-3"),
        ("/opq/new", "new-2"),
        ("/gonedir/c", "c-3"),
        ("/etc/layer", "3"),
    ],
    absent: &[
        "/data/gone",
        "/opq/old1",
        "/opq/sub",
        "/gonedir/a",
        "/l2only/f",
    ],
    listings: &[
        ("/data", "added keep over"),
        ("/opq", "new"),
        ("/gonedir", "c"),
        ("/l2only", ""),
    ],
};

fn file(path: &str, data: &str) -> Entry {
    Entry::File {
        path: path.into(),
        mode: 0o644,
        data: data.as_bytes().to_vec(),
    }
}

fn dir(path: &str) -> Entry {
    Entry::Dir {
        path: path.into(),
        mode: 0o755,
    }
}

/// An OCI whiteout: an empty file `.wh.<name>` next to what it deletes.
fn whiteout(path: &str) -> Entry {
    let (parent, name) = path.rsplit_once('/').unwrap_or(("", path));
    let wh = if parent.is_empty() {
        format!(".wh.{name}")
    } else {
        format!("{parent}/.wh.{name}")
    };
    file(&wh, "")
}

/// A three-layer busybox image exercising what unpacking and overlay lowerdir order must get
/// right (see [`LAYERED_EXPECT`]): files replaced by upper layers, files and whole directories
/// deleted by whiteouts (`.wh.<name>`), an opaque directory (`.wh..wh..opq`) hiding everything
/// below it, a directory deleted and re-created, a file whited out in the layer after the one
/// that added it.
pub fn layered_archive() -> Result<PathBuf> {
    let _g = BUILD_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let busybox = fs::read(BUSYBOX_BIN).with_context(|| {
        format!("reading {BUSYBOX_BIN} (install busybox-static: scripts/install-deps.sh)")
    })?;
    let mut h = Sha256::new();
    h.update(FORMAT.as_bytes());
    h.update(b"layered-v1");
    h.update(&busybox);
    let key = hex(&h.finalize())[..16].to_string();
    let path = cache_dir().join(key).join("layered.oci.tar");
    if path.exists() {
        return Ok(path);
    }
    if let Some(d) = path.parent() {
        fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
    }
    let mut l1 = base_tree();
    l1.extend(busybox_entries(busybox)?);
    l1.extend([
        file("etc/layer", "1"),
        dir("data"),
        file("data/keep", "keep-1"),
        file("data/gone", "gone-1"),
        file("data/over", "over-1"),
        dir("gonedir"),
        file("gonedir/a", "a-1"),
        file("gonedir/b", "b-1"),
        dir("opq"),
        file("opq/old1", "old-1"),
        dir("opq/sub"),
        file("opq/sub/old2", "old-1"),
    ]);
    let l2 = vec![
        file("etc/layer", "2"),
        dir("data"),
        whiteout("data/gone"),
        file("data/over", "over-2"),
        whiteout("gonedir"),
        dir("opq"),
        file("opq/.wh..wh..opq", ""),
        file("opq/new", "new-2"),
        dir("l2only"),
        file("l2only/f", "f-2"),
    ];
    let l3 = vec![
        file("etc/layer", "3"),
        dir("data"),
        file("data/added", "added-3"),
        dir("gonedir"),
        file("gonedir/c", "c-3"),
        dir("l2only"),
        whiteout("l2only/f"),
    ];
    let cfg = json!({
        "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
        "Cmd": ["sh"],
        "WorkingDir": "/",
    });
    let data = oci_archive_layers(LAYERED_IMAGE, &[&l1, &l2, &l3], cfg)?;
    write_atomic(&path, &data)?;
    Ok(path)
}

/// An image of `layers` layers, each a directory `l<i>/` of `files` files of 1 KiB (for
/// unpack benchmarks). Named `name` in the archive.
pub fn bench_archive(name: &str, layers: usize, files: usize) -> Result<PathBuf> {
    let _g = BUILD_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let path = cache_dir().join(format!("bench-{layers}x{files}.oci.tar"));
    if path.exists() {
        return Ok(path);
    }
    fs::create_dir_all(cache_dir())?;
    let mut all = Vec::new();
    for l in 0..layers {
        let mut v = vec![dir(&format!("l{l}"))];
        for f in 0..files {
            // Distinct content per file so layers do not dedupe to one blob.
            let mut data = vec![b'x'; 1024];
            data[..16].copy_from_slice(format!("{l:06}-{f:09}").as_bytes());
            v.push(Entry::File {
                path: format!("l{l}/f{f}"),
                mode: 0o644,
                data,
            });
        }
        all.push(v);
    }
    let refs: Vec<&[Entry]> = all.iter().map(|v| v.as_slice()).collect();
    let data = oci_archive_layers(name, &refs, json!({ "WorkingDir": "/" }))?;
    write_atomic(&path, &data)?;
    Ok(path)
}

/// The node-installer image (`make deploy-image`, config-snippets/deploy/podshim-deploy.yaml): the
/// name its archive carries and the DaemonSet names.
pub const DEPLOY_IMAGE: &str = concat!(
    "localhost/podshim-node-installer:",
    env!("CARGO_PKG_VERSION")
);
/// Where the image keeps what it installs: `bin/` (the binaries), `sbin/podshim-install` and
/// `config-snippets/` beside it, which is where the installer looks for its snippets.
pub const DEPLOY_PAYLOAD: &str = "/opt/podshim";
/// The binaries the image must carry, and those it carries when they are built (the daemons of
/// `podshim-install install --with-sandboxer` / `--with-snapshotter`).
pub const DEPLOY_BINS: [&str; 3] = [
    "containerd-shim-podshim-v1",
    "podshim-holder",
    "podshim-exec",
];
pub const DEPLOY_OPTIONAL_BINS: [&str; 2] = ["podshim-sandboxer", "podshim-snapshotter"];

/// What [`deploy_archive`] wrote.
#[derive(Debug, Clone)]
pub struct DeployImage {
    pub archive: PathBuf,
    pub name: String,
    /// Each binary put into the image, with the file it came from.
    pub bins: Vec<(String, PathBuf)>,
    /// The optional binaries no bin dir had.
    pub missing: Vec<String>,
}

/// Builds the node-installer image as an OCI layout archive at `out` (one layer; nothing from the
/// network): busybox (the entrypoint is POSIX sh), `/usr/bin/podshim-node-install` (the
/// entrypoint, scripts/podshim-node-install), and under [`DEPLOY_PAYLOAD`] the shim and holder,
/// the daemons where built, scripts/podshim-install and config-snippets/ (without deploy/, the
/// cluster's side). Each binary is taken from the first of `bin_dirs` that has it.
pub fn deploy_archive(bin_dirs: &[PathBuf], out: &Path) -> Result<DeployImage> {
    let root = repo_root();
    let busybox = fs::read(BUSYBOX_BIN).with_context(|| {
        format!("reading {BUSYBOX_BIN} (install busybox-static: scripts/install-deps.sh)")
    })?;
    let payload = DEPLOY_PAYLOAD.trim_start_matches('/');
    let mut files = base_tree();
    files.extend(busybox_entries(busybox)?);
    for d in [
        "opt",
        payload,
        &format!("{payload}/bin"),
        &format!("{payload}/sbin"),
    ] {
        files.push(dir(d));
    }
    let mut bins = Vec::new();
    let mut missing = Vec::new();
    for (name, required) in DEPLOY_BINS
        .iter()
        .map(|n| (*n, true))
        .chain(DEPLOY_OPTIONAL_BINS.iter().map(|n| (*n, false)))
    {
        match bin_dirs.iter().map(|d| d.join(name)).find(|p| p.is_file()) {
            Some(p) => {
                let data = fs::read(&p).with_context(|| format!("reading {}", p.display()))?;
                files.push(Entry::File {
                    path: format!("{payload}/bin/{name}"),
                    mode: 0o755,
                    data,
                });
                bins.push((name.to_string(), p));
            }
            None if required => bail!(
                "{name} not found in {:?} (build it: make shim-release)",
                bin_dirs
            ),
            None => missing.push(name.to_string()),
        }
    }
    for (src, dst) in [
        (
            "scripts/podshim-install",
            format!("{payload}/sbin/podshim-install"),
        ),
        (
            "scripts/podshim-node-install",
            "usr/bin/podshim-node-install".to_string(),
        ),
    ] {
        let p = root.join(src);
        files.push(Entry::File {
            path: dst,
            mode: 0o755,
            data: fs::read(&p).with_context(|| format!("reading {}", p.display()))?,
        });
    }
    let snippets = root.join("config-snippets");
    let mut stack = vec![snippets.clone()];
    let mut tree = Vec::new();
    while let Some(d) = stack.pop() {
        let rel = d.strip_prefix(&snippets)?.to_string_lossy().into_owned();
        if rel == "deploy" {
            continue;
        }
        let at = if rel.is_empty() {
            format!("{payload}/config-snippets")
        } else {
            format!("{payload}/config-snippets/{rel}")
        };
        tree.push(dir(&at));
        let mut entries: Vec<_> = fs::read_dir(&d)?.collect::<std::io::Result<_>>()?;
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let p = e.path();
            if e.file_type()?.is_dir() {
                stack.push(p);
            } else {
                tree.push(Entry::File {
                    path: format!("{at}/{}", e.file_name().to_string_lossy()),
                    mode: 0o644,
                    data: fs::read(&p)?,
                });
            }
        }
    }
    tree.sort_by(|a, b| entry_path(a).cmp(entry_path(b)));
    files.extend(tree);
    let cfg = json!({
        "Env": [
            "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "HOST_ROOT=/host",
        ],
        "Entrypoint": ["/usr/bin/podshim-node-install"],
        "Cmd": ["wait"],
        "WorkingDir": "/",
        "Labels": {
            "org.opencontainers.image.title": "podshim-node-installer",
            "org.opencontainers.image.version": env!("CARGO_PKG_VERSION"),
        },
    });
    if let Some(d) = out.parent() {
        fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
    }
    write_atomic(out, &oci_archive(DEPLOY_IMAGE, &files, cfg)?)?;
    Ok(DeployImage {
        archive: out.to_path_buf(),
        name: DEPLOY_IMAGE.to_string(),
        bins,
        missing,
    })
}

pub(crate) fn entry_path(e: &Entry) -> &str {
    match e {
        Entry::Dir { path, .. }
        | Entry::File { path, .. }
        | Entry::Symlink { path, .. }
        | Entry::Hardlink { path, .. } => path,
    }
}

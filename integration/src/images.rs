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

pub const BUSYBOX_IMAGE: &str = "podshim.test/busybox:1";
pub const PAUSE_IMAGE: &str = "podshim.test/pause:1";

/// Bumped whenever the archive layout produced here changes.
const FORMAT: &str = "podshim-e2e-images-v1";
const BUSYBOX_BIN: &str = "/bin/busybox";

#[derive(Debug, Clone)]
pub struct ImageArchives {
    pub busybox: PathBuf,
    pub pause: PathBuf,
}

static BUILD_LOCK: Mutex<()> = Mutex::new(());

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

fn hex(bytes: &[u8]) -> String {
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
    let mut files = base_tree();
    files.push(Entry::File {
        path: "bin/busybox".into(),
        mode: 0o755,
        data: busybox,
    });
    for a in &applets {
        files.push(Entry::Symlink {
            path: format!("bin/{a}"),
            target: "busybox".into(),
        });
    }
    let cfg = json!({
        "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
        "Cmd": ["sh"],
        "WorkingDir": "/",
    });
    write_atomic(&out.busybox, &oci_archive(BUSYBOX_IMAGE, &files, cfg)?)?;

    // pause
    let pause_bin = compile_pause(&pause_src_path, &dir)?;
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

fn compile_pause(src: &Path, dir: &Path) -> Result<Vec<u8>> {
    let bin = dir.join(format!("pause.{}", std::process::id()));
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

fn write_atomic(path: &Path, data: &[u8]) -> Result<()> {
    let tmp = path.with_extension(format!("tmp.{}", std::process::id()));
    fs::write(&tmp, data).with_context(|| format!("writing {}", tmp.display()))?;
    fs::rename(&tmp, path).with_context(|| format!("renaming to {}", path.display()))?;
    Ok(())
}

enum Entry {
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
}

fn base_tree() -> Vec<Entry> {
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
fn oci_archive(name: &str, entries: &[Entry], config: serde_json::Value) -> Result<Vec<u8>> {
    let layer = layer_tar(entries)?;
    let layer_digest = format!("sha256:{}", sha256_hex(&layer));
    let config = serde_json::to_vec(&json!({
        "architecture": go_arch(),
        "os": "linux",
        "created": "1970-01-01T00:00:00Z",
        "config": config,
        "rootfs": { "type": "layers", "diff_ids": [layer_digest] },
        "history": [{ "created": "1970-01-01T00:00:00Z", "created_by": "podshim-integration" }],
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
        "layers": [{
            "mediaType": "application/vnd.oci.image.layer.v1.tar",
            "digest": layer_digest,
            "size": layer.len(),
        }],
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
    for (digest, data) in [
        (&layer_digest, &layer),
        (&config_digest, &config),
        (&manifest_digest, &manifest),
    ] {
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

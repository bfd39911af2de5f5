//! The images `make critest` serves in place of critest's own (built offline like the test
//! images of `images.rs`), each with what critest's specs look for in it:
//! * busybox (its default test image): each applet a hard link to the binary, not a symlink (a
//!   masked `/bin/ls` must not mask `/bin/sh`); `pgrep NAME` and `ipcs -m`, which Debian's
//!   busybox-static lacks, as scripts over /proc;
//! * nginx (`integration/images/critest-nginx.c`), nonewprivs (`critest-nonewprivs.c`,
//!   set-user-id root) and an image whose `/etc/group` puts its default user in a group of
//!   its own (SupplementalGroupsPolicy).

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::images::{
    base_tree, busybox_entries, cache_dir, compile_static, entry_path, hex, oci_archive, repo_root,
    write_atomic, Entry, BUILD_LOCK, BUSYBOX_BIN, FORMAT,
};

/// One image to push: its archive and the repository and tag critest pulls it by (below the
/// registry host it names).
pub struct CritestImage {
    pub archive: PathBuf,
    pub repo_tag: &'static str,
    /// The registry host critest names it under (`None`: it is named through
    /// `--test-images-file`, under any host).
    pub upstream: Option<&'static str>,
}

/// `pgrep NAME` (exit 1 when none) and `ipcs -m`, as critest calls them.
const SCRIPTS: [(&str, &str); 2] = [
    (
        "pgrep",
        "#!/bin/sh\nfound=1\nfor d in /proc/[0-9]*; do\n  if [ \"$(cat \"$d/comm\" 2>/dev/null)\" = \"$1\" ]; then echo \"${d#/proc/}\"; found=0; fi\ndone\nexit $found\n",
    ),
    ("ipcs", "#!/bin/sh\ncat /proc/sysvipc/shm\n"),
];

const PATH_ENV: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Every image, built once per content (cached beside the test images).
pub fn critest_images() -> Result<Vec<CritestImage>> {
    let _g = BUILD_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let busybox = fs::read(BUSYBOX_BIN).with_context(|| format!("reading {BUSYBOX_BIN}"))?;
    let src = repo_root().join("integration/images");
    let (nginx_src, nnp_src) = (
        src.join("critest-nginx.c"),
        src.join("critest-nonewprivs.c"),
    );
    let mut h = Sha256::new();
    h.update(FORMAT.as_bytes());
    h.update("critest-v2");
    h.update(&busybox);
    for (name, script) in SCRIPTS {
        h.update(name);
        h.update(script);
    }
    h.update(fs::read(&nginx_src)?);
    h.update(fs::read(&nnp_src)?);
    let dir = cache_dir().join(format!("critest-{}", &hex(&h.finalize())[..16]));
    let images = vec![
        CritestImage {
            archive: dir.join("busybox.oci.tar"),
            repo_tag: "critest/busybox:1.29-2",
            upstream: None,
        },
        CritestImage {
            archive: dir.join("nginx.oci.tar"),
            repo_tag: "e2e-test-images/nginx:1.14-2",
            upstream: Some("registry.k8s.io"),
        },
        CritestImage {
            archive: dir.join("nonewprivs.oci.tar"),
            repo_tag: "e2e-test-images/nonewprivs:1.3",
            upstream: Some("registry.k8s.io"),
        },
        CritestImage {
            archive: dir.join("predefined-group.oci.tar"),
            repo_tag: "k8s-staging-cri-tools/test-image-predefined-group:latest",
            upstream: Some("gcr.io"),
        },
    ];
    if images.iter().all(|i| i.archive.exists()) {
        return Ok(images);
    }
    fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;

    let mut tree = base_tree();
    for e in busybox_entries(busybox)? {
        tree.push(match e {
            Entry::Symlink { path, .. } => Entry::Hardlink {
                path,
                target: "bin/busybox".into(),
            },
            other => other,
        });
    }
    for (name, script) in SCRIPTS {
        let path = format!("bin/{name}");
        tree.retain(|e| entry_path(e) != path);
        tree.push(Entry::File {
            path,
            mode: 0o755,
            data: script.as_bytes().to_vec(),
        });
    }
    let shell = json!({ "Env": [PATH_ENV], "Cmd": ["sh"], "WorkingDir": "/" });
    write(&images[0], &tree, shell.clone())?;

    let program = |dirs: &[&str], path: &str, mode: u32, src: &Path| -> Result<Vec<Entry>> {
        let mut t = tree.clone();
        t.extend(dirs.iter().map(|d| Entry::Dir {
            path: d.to_string(),
            mode: 0o755,
        }));
        t.push(Entry::File {
            path: path.into(),
            mode,
            data: compile_static(src, &dir)?,
        });
        Ok(t)
    };
    let nginx = program(
        &["usr/sbin", "var/run"],
        "usr/sbin/nginx",
        0o755,
        &nginx_src,
    )?;
    let cfg = json!({ "Env": [PATH_ENV], "Entrypoint": ["/usr/sbin/nginx"], "WorkingDir": "/" });
    write(&images[1], &nginx, cfg)?;
    let nnp = program(
        &["usr/local", "usr/local/bin"],
        "usr/local/bin/nnp",
        0o4755,
        &nnp_src,
    )?;
    let cfg = json!({ "Env": [PATH_ENV], "Entrypoint": ["/usr/local/bin/nnp"], "WorkingDir": "/" });
    write(&images[2], &nnp, cfg)?;

    let mut grouped = tree;
    grouped.retain(|e| !matches!(entry_path(e), "etc/passwd" | "etc/group"));
    grouped.push(Entry::File {
        path: "etc/passwd".into(),
        mode: 0o644,
        data:
            b"root:x:0:0:root:/root:/bin/sh\ndefault-user:x:1000:1000:default-user:/home:/bin/sh\n"
                .to_vec(),
    });
    grouped.push(Entry::File {
        path: "etc/group".into(),
        mode: 0o644,
        data: b"root:x:0:\ndefault-user:x:1000:\ngroup-defined-in-image:x:50000:default-user\n"
            .to_vec(),
    });
    let cfg = json!({ "Env": [PATH_ENV], "Cmd": ["sh"], "User": "1000", "WorkingDir": "/" });
    write(&images[3], &grouped, cfg)?;
    Ok(images)
}

fn write(i: &CritestImage, tree: &[Entry], cfg: serde_json::Value) -> Result<()> {
    let name = format!("podshim.test/{}", i.repo_tag);
    write_atomic(&i.archive, &oci_archive(&name, tree, cfg)?)
}

/// A containerd `hosts.toml` in `config_path` that sends pulls from `upstream` to the registry
/// at `mirror` (plain HTTP on loopback), repository paths unchanged.
pub fn write_mirror_hosts_toml(config_path: &Path, upstream: &str, mirror: &str) -> Result<()> {
    let d = config_path.join(upstream);
    fs::create_dir_all(&d)?;
    fs::write(
        d.join("hosts.toml"),
        format!(
            "server = \"https://{upstream}\"\n\n[host.\"http://{mirror}\"]\n  capabilities = [\"pull\", \"resolve\"]\n"
        ),
    )?;
    Ok(())
}

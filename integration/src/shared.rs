//! The project's shared binaries in `$SHARED_DIR` (default `../shared`): containerd releases and
//! runc 1.4.3, each unpacked once under `$TARGET_DIR` and re-unpacked only when its archive
//! changes (a stamp of size, mtime and path beside it, as `scripts/e2e-release.sh` writes).
//! A user's fresh machine has no `../shared`: each function then says which archive is missing.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The runc release with id-mapped mounts (user-namespaced pods); bookworm's 1.1.5 has none.
pub const RUNC_RELEASE: &str = "1.4.3";

/// containerd `release` from `$SHARED_DIR/containerd`, unpacked under
/// `$TARGET_DIR/containerd-<release>`: the path of its `bin/containerd`.
pub fn shared_release(release: &str) -> Result<PathBuf, String> {
    let archive = shared_dir().join(format!(
        "containerd/containerd-{release}-linux-{}.tar.xz",
        go_arch()
    ));
    let dir = target_dir().join(format!("containerd-{release}"));
    unpack(&archive, &dir, "bin/containerd", |archive, dir| {
        Command::new("tar")
            .arg("-xJf")
            .arg(archive)
            .arg("-C")
            .arg(dir)
            .status()
    })
}

/// runc 1.4.3 from `$SHARED_DIR/runc`, unpacked to `$TARGET_DIR/runc-1.4.3/runc`.
pub fn shared_runc() -> Result<PathBuf, String> {
    let archive = shared_dir().join(format!("runc/runc-{RUNC_RELEASE}-linux-{}.xz", go_arch()));
    let dir = target_dir().join(format!("runc-{RUNC_RELEASE}"));
    unpack(&archive, &dir, "runc", |archive, dir| {
        let out = fs::File::create(dir.join("runc"))?;
        let st = Command::new("xz")
            .arg("-dc")
            .arg(archive)
            .stdout(out)
            .status()?;
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(dir.join("runc"), fs::Permissions::from_mode(0o755))?;
        Ok(st)
    })
}

/// `dir/file` after unpacking `archive` into `dir` with `extract`, unless the stamp says that
/// this very archive is already there. Tests run in parallel: each unpacks into a directory of
/// its own and renames it into place, so that none sees a half-written binary.
fn unpack(
    archive: &Path,
    dir: &Path,
    file: &str,
    extract: impl FnOnce(&Path, &Path) -> std::io::Result<std::process::ExitStatus>,
) -> Result<PathBuf, String> {
    let archive =
        fs::canonicalize(archive).map_err(|_| format!("no archive {}", archive.display()))?;
    let md = fs::metadata(&archive).map_err(|e| format!("{}: {e}", archive.display()))?;
    let mtime = std::os::unix::fs::MetadataExt::mtime(&md);
    let want = format!("{} {mtime} {}", md.len(), archive.display());
    let path = dir.join(file);
    let stamp = |d: &Path| fs::read_to_string(d.join(STAMP)).unwrap_or_default();
    if path.exists() && stamp(dir).trim_end() == want {
        return Ok(path);
    }
    let fail = |e: &dyn std::fmt::Display| format!("unpacking {}: {e}", archive.display());
    static SEQ: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let seq = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut fresh = dir.as_os_str().to_owned();
    fresh.push(format!(".unpacking-{}-{seq}", std::process::id()));
    let fresh = PathBuf::from(fresh);
    let _ = fs::remove_dir_all(&fresh);
    fs::create_dir_all(&fresh).map_err(|e| fail(&e))?;
    match extract(&archive, &fresh) {
        Ok(st) if st.success() => {}
        Ok(st) => return Err(fail(&st)),
        Err(e) => return Err(fail(&e)),
    }
    fs::write(fresh.join(STAMP), format!("{want}\n")).map_err(|e| fail(&e))?;
    if stamp(dir).trim_end() != want {
        let _ = fs::remove_dir_all(dir);
    }
    if fs::rename(&fresh, dir).is_err() {
        // Another test put the same archive there first.
        let _ = fs::remove_dir_all(&fresh);
    }
    match path.exists() && stamp(dir).trim_end() == want {
        true => Ok(path),
        false => Err(fail(&format!("{} did not appear", path.display()))),
    }
}

/// Names the archive a directory was unpacked from; `scripts/e2e-release.sh` writes the same.
const STAMP: &str = ".unpacked-from";

fn shared_dir() -> PathBuf {
    std::env::var_os("SHARED_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| crate::images::repo_root().join("../shared"))
}

fn target_dir() -> PathBuf {
    std::env::var_os("TARGET_DIR")
        .or_else(|| std::env::var_os("CARGO_TARGET_DIR"))
        .map(PathBuf::from)
        .unwrap_or_else(|| crate::images::repo_root().join("target"))
}

/// The architecture as Go (and the archives' names) spell it.
fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        a => a,
    }
}

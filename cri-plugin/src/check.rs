//! `podshim-sandboxer check`: what the next start would find, without changing it. The store is
//! read from a private copy (redb locks the file the daemon holds open; a copy taken during a
//! commit reads as the last whole commit), so the check runs beside a live daemon or without one.
//!
//! Reported: records (sandbox or pool) whose shim is not running, unless the sandbox is already
//! recorded as exited; shim processes serving from a bundle of this state dir that no record
//! names; bundle directories that no record names. A record that cannot be decoded is reported
//! too.

use std::collections::HashSet;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use crate::config::Config;
use crate::error::{Error, Result};
use crate::launch;
use crate::store::{self, ShimRecord, Store};

/// The findings, one line each; empty when a restart would find everything in order.
pub fn check(cfg: &Config) -> Result<Vec<String>> {
    let mut problems = Vec::new();
    let mut shims: Vec<(String, ShimRecord, bool)> = Vec::new();
    let copy = StoreCopy::take(&cfg.state_dir)?;
    if let Some(dir) = &copy.0 {
        let s = Store::open(dir)?;
        for r in s.each_sandbox()? {
            match r {
                Ok(r) => shims.push((
                    format!("sandbox {}/{}", r.namespace, r.sandbox_id),
                    r.shim,
                    r.exited_at.is_some(),
                )),
                Err(e) => problems.push(format!("unreadable record: {e}")),
            }
        }
        for r in s.each_pool()? {
            match r {
                Ok(r) => shims.push((format!("pool shim {}", r.id), r, false)),
                Err(e) => problems.push(format!("unreadable record: {e}")),
            }
        }
    }
    drop(copy);
    for (what, shim, exited) in &shims {
        if !exited && !launch::is_running(shim) {
            problems.push(format!(
                "{what}: recorded, its shim (pid {}, {}) is not running",
                shim.pid, shim.address
            ));
        }
    }
    let recorded: HashSet<&Path> = shims.iter().map(|(_, s, _)| s.bundle.as_path()).collect();
    let bundles = cfg.state_dir.join("bundles");
    for (pid, cwd) in shim_processes(&bundles) {
        if !recorded.contains(cwd.as_path()) {
            problems.push(format!(
                "shim pid {pid} in {}: running, no record names it",
                cwd.display()
            ));
        }
    }
    for dir in bundle_dirs(&bundles)? {
        if !recorded.contains(dir.as_path()) {
            problems.push(format!("bundle {}: no record names it", dir.display()));
        }
    }
    Ok(problems)
}

/// A copy of the store in a private temporary directory, removed on drop; `None` without a store.
struct StoreCopy(Option<PathBuf>);

impl StoreCopy {
    fn take(state_dir: &Path) -> Result<StoreCopy> {
        let src = state_dir.join(store::FILE_NAME);
        if !src.exists() {
            return Ok(StoreCopy(None));
        }
        let dir =
            std::env::temp_dir().join(format!("podshim-sandboxer-check-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&dir)
            .map_err(|e| Error::io(format!("create {}", dir.display()), e))?;
        let copy = StoreCopy(Some(dir.clone()));
        std::fs::copy(&src, dir.join(store::FILE_NAME))
            .map_err(|e| Error::io(format!("copy {}", src.display()), e))?;
        Ok(copy)
    }
}

impl Drop for StoreCopy {
    fn drop(&mut self) {
        if let Some(d) = &self.0 {
            let _ = std::fs::remove_dir_all(d);
        }
    }
}

/// Shim daemons (their command line carries `-socket`; namespace holders excluded) whose
/// working directory, the bundle they were started in, is under `bundles`: pid and bundle.
fn shim_processes(bundles: &Path) -> Vec<(u32, PathBuf)> {
    let mut v = Vec::new();
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return v;
    };
    for e in procs.flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(cwd) = std::fs::read_link(format!("/proc/{pid}/cwd")) else {
            continue;
        };
        if !cwd.starts_with(bundles) {
            continue;
        }
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
        let shim = args.iter().any(|a| *a == b"-socket")
            && !args.iter().any(|a| *a == b"-podshim-sandbox-holder");
        if shim && launch::is_live(pid) {
            v.push((pid, cwd));
        }
    }
    v.sort();
    v
}

/// `bundles/<namespace>/<id>` directories.
fn bundle_dirs(bundles: &Path) -> Result<Vec<PathBuf>> {
    let mut v = Vec::new();
    let read = |d: &Path| match std::fs::read_dir(d) {
        Ok(rd) => Ok(Some(rd)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io(format!("read {}", d.display()), e)),
    };
    let Some(namespaces) = read(bundles)? else {
        return Ok(v);
    };
    for ns in namespaces.flatten() {
        if let Some(ids) = read(&ns.path())? {
            v.extend(ids.flatten().map(|e| e.path()));
        }
    }
    v.sort();
    Ok(v)
}

//! `podshim-sandboxer check`: what the next start would find, without changing it. The store is
//! read from a private copy ([`ReadCopy`]), so the check runs beside a live daemon or without one.
//!
//! Reported: records (sandbox or pool) whose shim is not running, unless the sandbox is already
//! recorded as exited; shim processes serving from a bundle of this state dir that no record
//! names; bundle directories that no record names. A record that cannot be decoded is reported
//! too.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use podshim_common::store::ReadCopy;

use crate::config::Config;
use crate::error::{Error, Result};
use crate::launch;
use crate::store::{self, ShimRecord, Store};

/// The findings, one line each; empty when a restart would find everything in order.
pub fn check(cfg: &Config) -> Result<Vec<String>> {
    let mut problems = Vec::new();
    let mut shims: Vec<(String, ShimRecord, bool)> = Vec::new();
    let src = cfg.state_dir.join(store::FILE_NAME);
    let copy = ReadCopy::take(&src, "podshim-sandboxer-check")
        .map_err(|e| Error::io(format!("copy {}", src.display()), e))?;
    if let Some(copy) = &copy {
        let s = Store::open(copy.dir())?;
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

//! Moving a process into a cgroup the node's operator made (shim.toml's `[runtime] shim_cgroup`), as
//! containerd's runc shim does for `ShimCgroup`: on cgroup v2 into the one tree; on v1 into every
//! mounted hierarchy that has the directory (a hierarchy without it is left as it is, as
//! containerd's cgroup1 package leaves it), and at least one must have it.

use std::path::{Path, PathBuf};

use super::{join_cgroup_path, CgroupMode, CGROUP_ROOT};
use crate::error::{Error, Result};

pub fn move_into(pid: u32, path: &str) -> Result<()> {
    let mode = CgroupMode::detect()?;
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo")
        .map_err(Error::io("read /proc/self/mountinfo"))?;
    move_into_at(Path::new(CGROUP_ROOT), mode, &mountinfo, pid, path)
}

fn move_into_at(
    cgroup_root: &Path,
    mode: CgroupMode,
    mountinfo: &str,
    pid: u32,
    path: &str,
) -> Result<()> {
    let dirs: Vec<PathBuf> = match mode {
        CgroupMode::Unified => vec![join_cgroup_path(cgroup_root, path)],
        CgroupMode::Legacy => v1_mounts(mountinfo)
            .map(|mount| join_cgroup_path(Path::new(mount), path))
            .collect(),
    };
    let dirs: Vec<PathBuf> = dirs.into_iter().filter(|d| d.is_dir()).collect();
    if dirs.is_empty() {
        return Err(Error::NotFound(format!(
            "shim cgroup {path} exists in no cgroup hierarchy: create it first"
        )));
    }
    for dir in dirs {
        let procs = dir.join("cgroup.procs");
        std::fs::write(&procs, pid.to_string()).map_err(|e| {
            // The kernel's answer when a v1 cpuset has no cpus or mems to give.
            let hint = match e.raw_os_error() {
                Some(libc::ENOSPC) => " (set its cpuset.cpus and cpuset.mems first)",
                _ => "",
            };
            Error::io(format!("move pid {pid} into {}{hint}", procs.display()))(e)
        })?;
    }
    Ok(())
}

/// Mount points of the cgroup v1 hierarchies (controllers and named ones) in mountinfo:
/// `id parent dev root mountpoint options... - cgroup source superoptions`.
fn v1_mounts(mountinfo: &str) -> impl Iterator<Item = &str> {
    mountinfo.lines().filter_map(|line| {
        let (mount, fs) = line.split_once(" - ")?;
        fs.starts_with("cgroup ").then_some(())?;
        mount.split(' ').nth(4)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v1_joins_each_hierarchy_that_has_the_cgroup_and_v2_the_one_tree() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        for dir in [
            "memory/shims",
            "pids/shims",
            "cpu,cpuacct",
            "unified/shims",
            "shims",
        ] {
            std::fs::create_dir_all(r.join(dir)).unwrap();
        }
        let mountinfo = format!(
            "30 25 0:26 / {0}/memory rw,nosuid - cgroup cgroup rw,memory\n\
             31 25 0:27 / {0}/pids rw,nosuid - cgroup cgroup rw,pids\n\
             32 25 0:28 / {0}/cpu,cpuacct rw,nosuid - cgroup cgroup rw,cpu,cpuacct\n\
             33 25 0:29 / {0}/unified rw,nosuid - cgroup2 cgroup2 rw\n\
             34 25 0:30 / /proc rw - proc proc rw\n",
            r.display()
        );
        move_into_at(r, CgroupMode::Legacy, &mountinfo, 42, "/shims").unwrap();
        let procs = |dir: &str| std::fs::read_to_string(r.join(dir).join("cgroup.procs")).ok();
        assert_eq!(procs("memory/shims").as_deref(), Some("42"));
        assert_eq!(procs("pids/shims").as_deref(), Some("42"));
        // Not in a hierarchy without the cgroup, nor in the hybrid's v2 tree.
        assert_eq!(procs("cpu,cpuacct/shims"), None);
        assert_eq!(procs("unified/shims"), None);

        move_into_at(r, CgroupMode::Unified, "", 43, "/shims").unwrap();
        assert_eq!(procs("shims").as_deref(), Some("43"));

        for mode in [CgroupMode::Legacy, CgroupMode::Unified] {
            let err = move_into_at(r, mode, &mountinfo, 44, "/missing").unwrap_err();
            assert!(
                matches!(err, Error::NotFound(ref m) if m.contains("/missing")),
                "{err}"
            );
        }
    }
}

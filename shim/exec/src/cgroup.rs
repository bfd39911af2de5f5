//! The cgroups an exec joins: every hierarchy the container's init is in, at the init's path
//! (what runc's state records for cgroupfs, and for a hybrid host the unified one too).

use std::path::PathBuf;

/// `cgroup.procs` files, one per hierarchy.
pub fn procs_files(proc_cgroup: &str, mountinfo: &str) -> Result<Vec<PathBuf>, String> {
    let mounts: Vec<Mount> = mountinfo.lines().filter_map(Mount::parse).collect();
    let mut files = Vec::new();
    for line in proc_cgroup.lines().filter(|l| !l.is_empty()) {
        let mut parts = line.splitn(3, ':');
        let (_, controllers, path) = match (parts.next(), parts.next(), parts.next()) {
            (Some(id), Some(c), Some(p)) => (id, c, p),
            _ => return Err(format!("unreadable cgroup line {line:?}")),
        };
        // A hierarchy mounted nowhere here is one runc cannot join either.
        let Some(mount) = mounts.iter().find(|m| m.serves(controllers)) else {
            continue;
        };
        let rel = path
            .strip_prefix(mount.root.trim_end_matches('/'))
            .filter(|r| r.is_empty() || r.starts_with('/'))
            .ok_or_else(|| format!("cgroup {path} is outside its mount's root {}", mount.root))?;
        files.push(
            mount
                .point
                .join(rel.trim_start_matches('/'))
                .join("cgroup.procs"),
        );
    }
    Ok(files)
}

struct Mount {
    root: String,
    point: PathBuf,
    v2: bool,
    options: String,
}

impl Mount {
    /// A mountinfo line: `id parent dev root point opts [tags] - fstype source superopts`.
    fn parse(line: &str) -> Option<Self> {
        let (left, right) = line.split_once(" - ")?;
        let left: Vec<&str> = left.split(' ').collect();
        let mut right = right.split(' ');
        let fstype = right.next()?;
        let options = right.nth(1)?.to_string();
        if fstype != "cgroup" && fstype != "cgroup2" {
            return None;
        }
        Some(Self {
            root: unescape(left.get(3)?),
            point: PathBuf::from(unescape(left.get(4)?)),
            v2: fstype == "cgroup2",
            options,
        })
    }

    /// `controllers` is a `/proc/<pid>/cgroup` middle field: empty for the unified hierarchy,
    /// else the v1 controllers (or `name=…`) that the mount's super options list.
    fn serves(&self, controllers: &str) -> bool {
        if controllers.is_empty() {
            return self.v2;
        }
        !self.v2
            && controllers
                .split(',')
                .all(|c| self.options.split(',').any(|o| o == c))
    }
}

/// mountinfo escapes space, tab, newline and backslash as octal.
fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('\\') {
        out.push_str(&rest[..i]);
        match rest
            .get(i + 1..i + 4)
            .and_then(|o| u8::from_str_radix(o, 8).ok())
        {
            Some(b) => {
                out.push(b as char);
                rest = &rest[i + 4..];
            }
            None => {
                out.push('\\');
                rest = &rest[i + 1..];
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOUNTINFO: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime shared:9 - cgroup cgroup rw,cpu,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
50 31 0:39 /nested /sys/fs/cgroup/pids\\040x rw - cgroup cgroup rw,pids";

    #[test]
    fn each_hierarchy_of_the_init_maps_to_its_mount() {
        let cg = "12:cpu,cpuacct:/k/c1\n4:memory:/k/c1\n1:name=systemd:/k/c1\n8:pids:/nested/k/c1\n0::/k/c1\n";
        let files = procs_files(cg, MOUNTINFO).unwrap();
        let s: Vec<_> = files.iter().map(|p| p.to_str().unwrap()).collect();
        assert_eq!(
            s,
            [
                "/sys/fs/cgroup/cpu,cpuacct/k/c1/cgroup.procs",
                "/sys/fs/cgroup/memory/k/c1/cgroup.procs",
                "/sys/fs/cgroup/systemd/k/c1/cgroup.procs",
                "/sys/fs/cgroup/pids x/k/c1/cgroup.procs",
                "/sys/fs/cgroup/unified/k/c1/cgroup.procs",
            ]
        );
    }

    #[test]
    fn a_hierarchy_outside_its_mounts_root_is_an_error_and_one_without_a_mount_is_left() {
        assert_eq!(
            procs_files("3:blkio:/x\n", MOUNTINFO).unwrap(),
            Vec::<PathBuf>::new()
        );
        assert!(procs_files("8:pids:/nestedx\n", MOUNTINFO).is_err());
        assert!(procs_files("8:pids:/elsewhere\n", MOUNTINFO).is_err());
        assert!(procs_files("garbage\n", MOUNTINFO).is_err());
    }
}

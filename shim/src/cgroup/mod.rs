//! A container's cgroup: containerd's Metrics (cgroup v1 and v2), OOM notifications, and a pod
//! cgroup's limits; and moving the shim into the node's shim cgroup (`join.rs`).
//!
//! Everything is read straight from cgroupfs. Roots are parameters so tests can run
//! against fixture trees; `for_pid` binds them to /proc and /sys/fs/cgroup.

mod join;
mod limits;
mod oom;
mod read;
mod v1;
mod v2;

use std::{
    io::ErrorKind,
    path::{Path, PathBuf},
};

use containerd_shim_protos::protobuf::{well_known_types::any::Any, Message};
use tokio::sync::mpsc::UnboundedSender;

use crate::error::{Error, Result};

pub use join::move_into;
pub use limits::PodLimits;

const PROC_ROOT: &str = "/proc";
const CGROUP_ROOT: &str = "/sys/fs/cgroup";

/// How the host mounts cgroups.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CgroupMode {
    /// Controllers on v1 hierarchies under the root. A hybrid host also mounts a
    /// controller-less v2 tree (at `unified`), which holds no resource statistics and
    /// is ignored.
    Legacy,
    /// The root itself is cgroup2.
    Unified,
}

impl CgroupMode {
    /// The mode of the host's /sys/fs/cgroup.
    pub fn detect() -> Result<CgroupMode> {
        Self::detect_at(Path::new(CGROUP_ROOT))
    }

    fn detect_at(cgroup_root: &Path) -> Result<CgroupMode> {
        use nix::sys::statfs::{statfs, CGROUP2_SUPER_MAGIC};
        let fs =
            statfs(cgroup_root).map_err(Error::sys(format!("statfs {}", cgroup_root.display())))?;
        Ok(if fs.filesystem_type() == CGROUP2_SUPER_MAGIC {
            CgroupMode::Unified
        } else {
            CgroupMode::Legacy
        })
    }
}

#[derive(Debug, Clone)]
pub struct ContainerCgroup {
    inner: Inner,
}

#[derive(Debug, Clone)]
enum Inner {
    V1(v1::Cgroup),
    V2(v2::Cgroup),
}

impl ContainerCgroup {
    /// The cgroup of a live process, from /proc/<pid>/cgroup and the host's cgroup mode.
    pub fn for_pid(pid: u32) -> Result<ContainerCgroup> {
        let mode = CgroupMode::detect()?;
        Self::for_pid_in(Path::new(PROC_ROOT), Path::new(CGROUP_ROOT), mode, pid)
    }

    /// The cgroup at `path` in each of `pid`'s hierarchies: a pod's cgroup parent, read through
    /// the controllers its holder process is attached to.
    pub fn for_pid_at(pid: u32, path: &str) -> Result<ContainerCgroup> {
        if path.is_empty() {
            return Self::for_pid(pid);
        }
        let mode = CgroupMode::detect()?;
        Self::for_pid_in_at(
            Path::new(PROC_ROOT),
            Path::new(CGROUP_ROOT),
            mode,
            pid,
            Some(path),
        )
    }

    /// `for_pid` with the proc and cgroup mounts and the mode given.
    pub fn for_pid_in(
        proc_root: &Path,
        cgroup_root: &Path,
        mode: CgroupMode,
        pid: u32,
    ) -> Result<ContainerCgroup> {
        Self::for_pid_in_at(proc_root, cgroup_root, mode, pid, None)
    }

    fn for_pid_in_at(
        proc_root: &Path,
        cgroup_root: &Path,
        mode: CgroupMode,
        pid: u32,
        at: Option<&str>,
    ) -> Result<ContainerCgroup> {
        let file = proc_root.join(pid.to_string()).join("cgroup");
        let content = match std::fs::read_to_string(&file) {
            Ok(content) => content,
            // ESRCH: the process died between open and read.
            Err(e) if e.kind() == ErrorKind::NotFound || e.raw_os_error() == Some(libc::ESRCH) => {
                return Err(Error::NotFound(format!("process {pid} not found")));
            }
            Err(e) => return Err(Error::io(format!("read {}", file.display()))(e)),
        };
        let mut entries = parse_proc_cgroup(&content)
            .map_err(|line| Error::Other(format!("{}: malformed line {line:?}", file.display())))?;
        if let Some(at) = at {
            for e in &mut entries {
                e.path = at;
            }
        }
        let inner = match mode {
            CgroupMode::Legacy => Inner::V1(v1::Cgroup::new(proc_root, cgroup_root, &entries)?),
            CgroupMode::Unified => {
                let path = entries
                    .iter()
                    .find(|e| e.hierarchy == 0 && e.controllers.is_empty())
                    .map(|e| e.path)
                    .ok_or_else(|| {
                        Error::NotFound(format!("process {pid} has no cgroup v2 membership"))
                    })?;
                Inner::V2(v2::Cgroup::new(join_cgroup_path(cgroup_root, path)))
            }
        };
        Ok(ContainerCgroup { inner })
    }

    /// Which Metrics type `metrics` packs.
    pub fn mode(&self) -> CgroupMode {
        match self.inner {
            Inner::V1(_) => CgroupMode::Legacy,
            Inner::V2(_) => CgroupMode::Unified,
        }
    }

    /// `io.containerd.cgroups.v1.Metrics` or `io.containerd.cgroups.v2.Metrics`, packed as Any.
    pub fn metrics(&self) -> Result<Any> {
        match &self.inner {
            Inner::V1(cg) => pack(V1_METRICS, &cg.metrics()?),
            Inner::V2(cg) => pack(V2_METRICS, &cg.metrics()?),
        }
    }

    /// How many processes the kernel OOM-killed in this cgroup so far (its own counter), so an
    /// exit can be checked against kills no watcher saw.
    pub fn oom_kills(&self) -> Result<u64> {
        match &self.inner {
            Inner::V1(cg) => Ok(v1::oom_control(cg.memory_dir()?)?.map_or(0, |o| o.oom_kill)),
            Inner::V2(cg) => Ok(oom::oom_kills(cg.dir())?.unwrap_or(0)),
        }
    }

    /// Sets this (pod) cgroup's limits; those `None` stay as they are.
    pub fn set_limits(&self, limits: &PodLimits) -> Result<()> {
        match &self.inner {
            Inner::V1(cg) => limits::write_v1(cg.memory.as_deref(), cg.cpu.as_deref(), limits),
            Inner::V2(cg) => limits::write_v2(cg.dir(), limits),
        }
    }

    /// Sends `container_id` on `tx` each time the kernel OOM-kills a process in this cgroup,
    /// until the cgroup goes away. Runs as a task on the current runtime.
    pub fn watch_oom(&self, container_id: String, tx: UnboundedSender<String>) -> Result<()> {
        match &self.inner {
            Inner::V1(cg) => oom::watch_v1(cg.memory_dir()?, container_id, tx),
            Inner::V2(cg) => oom::watch_v2(cg.dir(), container_id, tx),
        }
    }
}

/// containerd registers the Metrics types under their bare protobuf names. They are constants
/// here: asking protobuf's reflection would build descriptor tables on every shim's heap.
const V1_METRICS: &str = "io.containerd.cgroups.v1.Metrics";
const V2_METRICS: &str = "io.containerd.cgroups.v2.Metrics";

/// Packs like containerd_shim::util::convert_to_any.
fn pack<M: Message>(type_url: &str, message: &M) -> Result<Any> {
    Ok(Any {
        type_url: type_url.to_string(),
        value: message.write_to_bytes()?,
        ..Default::default()
    })
}

/// One line of /proc/<pid>/cgroup: `hierarchy-id:controller[,controller]:path`.
#[derive(Debug, PartialEq, Eq)]
struct Membership<'a> {
    hierarchy: u32,
    /// Empty for the v2 line; named hierarchies appear as `name=...`.
    controllers: Vec<&'a str>,
    path: &'a str,
}

/// Fails with the offending line.
fn parse_proc_cgroup(content: &str) -> std::result::Result<Vec<Membership<'_>>, &str> {
    content
        .lines()
        .filter(|line| !line.is_empty())
        .map(|line| {
            // Paths may contain ':' (systemd's `slice:prefix:name` unit names do).
            let mut parts = line.splitn(3, ':');
            let (Some(id), Some(controllers), Some(path)) =
                (parts.next(), parts.next(), parts.next())
            else {
                return Err(line);
            };
            let hierarchy = id.parse().map_err(|_| line)?;
            let controllers = controllers.split(',').filter(|c| !c.is_empty()).collect();
            Ok(Membership {
                hierarchy,
                controllers,
                path,
            })
        })
        .collect()
}

/// The path in /proc/<pid>/cgroup is absolute within its hierarchy.
fn join_cgroup_path(mount: &Path, path: &str) -> PathBuf {
    mount.join(path.trim_start_matches('/'))
}

#[cfg(test)]
mod live_tests;

#[cfg(test)]
pub(crate) mod test_util {
    use std::path::Path;

    /// Writes fixture files, creating their directories.
    pub fn write(root: &Path, files: &[(&str, &str)]) {
        for (name, content) in files {
            let path = root.join(name);
            std::fs::create_dir_all(path.parent().expect("fixture path has a parent"))
                .expect("create fixture dir");
            std::fs::write(&path, content).expect("write fixture");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use containerd_shim_protos::{cgroups, cgroups_v2};

    /// /proc/<pid>/cgroup of any content parses or names its bad line, never panics.
    #[test]
    fn fuzz_the_proc_cgroup_parser() {
        let seed = b"12:pids:/kubepods/pod1/c1\n1:name=systemd:/x:y:z\n0::/\n";
        podshim_common::fuzz::run("proc_cgroup", &[seed], |b| {
            let _ = parse_proc_cgroup(&String::from_utf8_lossy(b));
        });
    }

    const HYBRID: &str = "\
12:name=systemd:/kubepods.slice/kubepods-pod1.slice/cri-containerd-abc.scope
11:memory:/kubepods.slice/kubepods-pod1.slice/cri-containerd-abc.scope
10:cpu,cpuacct:/kubepods.slice/kubepods-pod1.slice/cri-containerd-abc.scope
1:net_cls,net_prio:/
0::/kubepods.slice/kubepods-pod1.slice/cri-containerd-abc.scope
";

    #[test]
    fn parses_hybrid_lines() {
        let entries = parse_proc_cgroup(HYBRID).unwrap();
        assert_eq!(entries.len(), 5);
        assert_eq!(
            entries[0],
            Membership {
                hierarchy: 12,
                controllers: vec!["name=systemd"],
                path: "/kubepods.slice/kubepods-pod1.slice/cri-containerd-abc.scope",
            }
        );
        assert_eq!(entries[2].controllers, vec!["cpu", "cpuacct"]);
        assert_eq!(entries[3].path, "/");
        assert_eq!(entries[4].hierarchy, 0);
        assert!(entries[4].controllers.is_empty());
    }

    #[test]
    fn keeps_colons_in_paths() {
        let entries =
            parse_proc_cgroup("0::/kubepods-besteffort-pod8.slice:cri-containerd:8\n").unwrap();
        assert_eq!(
            entries[0].path,
            "/kubepods-besteffort-pod8.slice:cri-containerd:8"
        );
    }

    #[test]
    fn rejects_malformed_lines() {
        assert_eq!(parse_proc_cgroup("0::/\nbogus\n"), Err("bogus"));
        assert_eq!(parse_proc_cgroup("x:memory:/a\n"), Err("x:memory:/a"));
    }

    #[test]
    fn unified_resolves_the_v2_line() {
        let tmp = tempfile::tempdir().unwrap();
        test_util::write(
            tmp.path(),
            &[(
                "proc/42/cgroup",
                "0::/kubepods.slice/kubepods-burstable.slice/cri-containerd-abc.scope\n",
            )],
        );
        let cgroup_root = tmp.path().join("cgroup");
        let cg = ContainerCgroup::for_pid_in(
            &tmp.path().join("proc"),
            &cgroup_root,
            CgroupMode::Unified,
            42,
        )
        .unwrap();
        assert_eq!(cg.mode(), CgroupMode::Unified);
        let Inner::V2(v2) = &cg.inner else {
            panic!("expected v2: {cg:?}")
        };
        assert_eq!(
            v2.dir(),
            cgroup_root.join("kubepods.slice/kubepods-burstable.slice/cri-containerd-abc.scope")
        );
    }

    #[test]
    fn unified_without_v2_line_is_not_found() {
        let tmp = tempfile::tempdir().unwrap();
        test_util::write(tmp.path(), &[("proc/42/cgroup", "4:memory:/a\n")]);
        let err = ContainerCgroup::for_pid_in(
            &tmp.path().join("proc"),
            tmp.path(),
            CgroupMode::Unified,
            42,
        )
        .unwrap_err();
        assert!(matches!(err, Error::NotFound(_)), "{err:?}");
    }

    #[test]
    fn missing_process_is_not_found() {
        let tmp = tempfile::tempdir().unwrap();
        for mode in [CgroupMode::Legacy, CgroupMode::Unified] {
            let err = ContainerCgroup::for_pid_in(tmp.path(), tmp.path(), mode, 7).unwrap_err();
            assert!(
                matches!(&err, Error::NotFound(m) if m.contains('7')),
                "{err:?}"
            );
        }
    }

    #[test]
    fn malformed_proc_file_is_an_error() {
        let tmp = tempfile::tempdir().unwrap();
        test_util::write(tmp.path(), &[("proc/42/cgroup", "garbage\n")]);
        let err = ContainerCgroup::for_pid_in(
            &tmp.path().join("proc"),
            tmp.path(),
            CgroupMode::Unified,
            42,
        )
        .unwrap_err();
        assert!(matches!(err, Error::Other(_)), "{err:?}");
    }

    #[test]
    fn live_process_on_this_host() {
        // Whatever the host, our own process has a cgroup.
        let cg = ContainerCgroup::for_pid(std::process::id()).unwrap();
        assert_eq!(cg.mode(), CgroupMode::detect().unwrap());
    }

    #[test]
    fn detects_filesystem_type() {
        let tmp = tempfile::tempdir().unwrap();
        assert_eq!(
            CgroupMode::detect_at(tmp.path()).unwrap(),
            CgroupMode::Legacy
        );
        // A hybrid host's controller-less v2 tree is cgroup2.
        let unified = Path::new("/sys/fs/cgroup/unified");
        if unified.is_dir() {
            assert_eq!(CgroupMode::detect_at(unified).unwrap(), CgroupMode::Unified);
        }
        let err = CgroupMode::detect_at(&tmp.path().join("missing")).unwrap_err();
        assert!(matches!(err, Error::Sys { .. }), "{err:?}");
    }

    #[test]
    fn packs_like_convert_to_any() {
        let mut v1 = cgroups::metrics::Metrics::new();
        v1.pids.mut_or_insert_default().current = 3;
        let mut v2 = cgroups_v2::metrics::Metrics::new();
        v2.pids.mut_or_insert_default().current = 4;

        let any = pack(V1_METRICS, &v1).unwrap();
        assert_eq!(any.type_url, "io.containerd.cgroups.v1.Metrics");
        let theirs = containerd_shim::util::convert_to_any(Box::new(v1.clone())).unwrap();
        assert_eq!(
            (&any.type_url, &any.value),
            (&theirs.type_url, &theirs.value)
        );

        let any = pack(V2_METRICS, &v2).unwrap();
        assert_eq!(any.type_url, "io.containerd.cgroups.v2.Metrics");
        let theirs = containerd_shim::util::convert_to_any(Box::new(v2.clone())).unwrap();
        assert_eq!(
            (&any.type_url, &any.value),
            (&theirs.type_url, &theirs.value)
        );
    }
}

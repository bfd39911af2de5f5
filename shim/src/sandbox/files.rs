//! The pod files CRI bind-mounts into every container of a pause-less pod.
//!
//! In classic mode containerd's podsandbox controller writes them; with a sandbox controller
//! CRI only looks for them at CreateContainer (`<root>/io.containerd.grpc.v1.cri/sandboxes/<id>/
//! {hostname,hosts,resolv.conf}` and `<state>/io.containerd.grpc.v1.cri/sandboxes/<id>/shm`) and
//! mounts what it finds. So the pod's shim makes them, at the same paths and with the same
//! content, and removes them when the pod goes.
//!
//! What must be cleaned up is noted durably in the sandbox bundle first (`Record`), so that
//! `delete` can finish the job for a shim that died.

use std::{
    fs,
    io::Write,
    path::{Path, PathBuf},
};

use log::warn;
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use podshim_common::pod_api::{ANNOTATION_CONTAINERD_ROOT, ANNOTATION_CONTAINERD_STATE};
use serde::{Deserialize, Serialize};

use crate::{
    error::{Error, Result},
    sandbox::pod_config::{NamespaceMode, PodSandboxConfig},
};

const CRI_PLUGIN_DIR: &str = "io.containerd.grpc.v1.cri";
/// The bundle containerd's built-in `shim` sandbox controller makes:
/// `<state>/io.containerd.sandbox.controller.v1.shim/<namespace>/<id>`, `work` → same under root.
const SHIM_CONTROLLER_DIR: &str = "io.containerd.sandbox.controller.v1.shim";
/// CRI's default /dev/shm size for a pod (podsandbox's defaultShmSize).
const SHM_OPTIONS: &str = "mode=1777,size=65536k";
const RECORD: &str = "podshim-sandbox.json";
/// The holder's pid, beside the record (see [`Record::note_holder`]).
const HOLDER_PID: &str = "podshim-holder.pid";

/// containerd's root and state directories, as CRI uses them for this pod.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerdDirs {
    pub root: PathBuf,
    pub state: PathBuf,
}

impl ContainerdDirs {
    /// From the annotations if present, else from the layout of the built-in controller's
    /// bundle, else containerd's defaults.
    pub fn find(
        annotations: &std::collections::HashMap<String, String>,
        bundle: &Path,
    ) -> ContainerdDirs {
        let from_bundle = Self::from_bundle(bundle);
        let root = annotations
            .get(ANNOTATION_CONTAINERD_ROOT)
            .map(PathBuf::from)
            .or_else(|| from_bundle.as_ref().map(|d| d.root.clone()))
            .unwrap_or_else(|| "/var/lib/containerd".into());
        let state = annotations
            .get(ANNOTATION_CONTAINERD_STATE)
            .map(PathBuf::from)
            .or_else(|| from_bundle.as_ref().map(|d| d.state.clone()))
            .unwrap_or_else(|| "/run/containerd".into());
        ContainerdDirs { root, state }
    }

    fn from_bundle(bundle: &Path) -> Option<ContainerdDirs> {
        let controller_dir = |p: &Path| -> Option<PathBuf> {
            let dir = p.parent()?.parent()?;
            (dir.file_name()? == SHIM_CONTROLLER_DIR)
                .then(|| dir.parent().map(Path::to_path_buf))?
        };
        let state = controller_dir(bundle)?;
        let work = fs::read_link(bundle.join("work")).ok()?;
        let root = controller_dir(&work)?;
        Some(ContainerdDirs { root, state })
    }
}

/// containerd's identifier rule (a path component CRI itself would create).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodFiles {
    /// `<root>/io.containerd.grpc.v1.cri/sandboxes/<id>`: hostname, hosts, resolv.conf.
    pub root_dir: PathBuf,
    /// `<state>/io.containerd.grpc.v1.cri/sandboxes/<id>`: shm.
    pub state_dir: PathBuf,
}

impl PodFiles {
    pub fn new(dirs: &ContainerdDirs, id: &str) -> Result<PodFiles> {
        podshim_common::id::validate("sandbox id", id)?;
        let sub = Path::new(CRI_PLUGIN_DIR).join("sandboxes").join(id);
        Ok(PodFiles {
            root_dir: dirs.root.join(&sub),
            state_dir: dirs.state.join(&sub),
        })
    }

    pub fn shm(&self) -> PathBuf {
        self.state_dir.join("shm")
    }

    /// Writes the files (and mounts shm) as containerd's podsandbox controller does; on error
    /// nothing is left behind.
    pub fn create(&self, cfg: &PodSandboxConfig) -> Result<()> {
        self.try_create(cfg).inspect_err(|_| self.remove())
    }

    fn try_create(&self, cfg: &PodSandboxConfig) -> Result<()> {
        for d in [&self.root_dir, &self.state_dir] {
            fs::create_dir_all(d).map_err(Error::io(format!("create {}", d.display())))?;
        }
        let hostname = match cfg.hostname.is_empty() {
            false => cfg.hostname.clone(),
            true => nix::unistd::gethostname()
                .map_err(Error::sys("gethostname"))?
                .to_string_lossy()
                .into_owned(),
        };
        write_file(
            &self.root_dir.join("hostname"),
            format!("{hostname}\n").as_bytes(),
        )?;
        copy_file(Path::new("/etc/hosts"), &self.root_dir.join("hosts"))?;
        let resolv = self.root_dir.join("resolv.conf");
        match cfg.resolv_conf() {
            s if s.is_empty() => copy_file(Path::new("/etc/resolv.conf"), &resolv)?,
            s => write_file(&resolv, s.as_bytes())?,
        }
        // A hostIPC pod's containers use the host's /dev/shm, as in classic mode.
        if cfg.ipc != NamespaceMode::Node {
            let shm = self.shm();
            fs::create_dir_all(&shm).map_err(Error::io(format!("create {}", shm.display())))?;
            mount(
                Some("shm"),
                &shm,
                Some("tmpfs"),
                MsFlags::MS_NOEXEC | MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
                Some(SHM_OPTIONS),
            )
            .map_err(Error::sys(format!("mount shm at {}", shm.display())))?;
        }
        Ok(())
    }

    /// Unmounts the pod's shm (at StopSandbox, once its containers are gone).
    pub fn unmount_shm(&self) {
        let shm = self.shm();
        loop {
            match umount2(&shm, MntFlags::MNT_DETACH) {
                Ok(()) => continue, // stacked mounts: unmount until none is left
                Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOENT) => break,
                Err(e) => {
                    warn!("unmount {}: {e}", shm.display());
                    break;
                }
            }
        }
    }

    /// Removes everything; safe to repeat.
    pub fn remove(&self) {
        self.unmount_shm();
        for d in [&self.root_dir, &self.state_dir] {
            match fs::remove_dir_all(d) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => warn!("remove {}: {e}", d.display()),
            }
        }
    }
}

fn write_file(path: &Path, content: &[u8]) -> Result<()> {
    fs::write(path, content).map_err(Error::io(format!("write {}", path.display())))
}

fn copy_file(from: &Path, to: &Path) -> Result<()> {
    // A host without the file gets an empty one, as an empty resolv.conf/hosts is valid.
    let content = match fs::read(from) {
        Ok(c) => c,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(Error::io(format!("read {}", from.display()))(e)),
    };
    write_file(to, &content)
}

/// What `delete` needs to clean up after a dead shim, kept in the sandbox bundle: the record,
/// durable before anything it names is made, and the holder's pid beside it, noted without a
/// sync (a pid means nothing after the power loss that could lose the note; a killed shim's
/// note is in the page cache).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    pub sandbox_id: String,
    pub dirs: ContainerdDirs,
    /// 0 until the holder runs. Read from the note, or from a record an earlier shim wrote it
    /// into.
    pub holder_pid: u32,
}

impl Record {
    pub fn path(bundle: &Path) -> PathBuf {
        bundle.join(RECORD)
    }

    /// Written and synced before anything it describes is created.
    pub fn save(&self, bundle: &Path) -> Result<()> {
        let path = Self::path(bundle);
        let tmp = bundle.join(format!(".{RECORD}.tmp"));
        let data = serde_json::to_vec(self).map_err(|e| Error::Other(e.to_string()))?;
        let io = Error::io(format!("write {}", path.display()));
        let mut f =
            fs::File::create(&tmp).map_err(Error::io(format!("write {}", path.display())))?;
        f.write_all(&data).and_then(|()| f.sync_all()).map_err(io)?;
        fs::rename(&tmp, &path).map_err(Error::io(format!("rename {}", path.display())))?;
        if let Ok(dir) = fs::File::open(bundle) {
            let _ = dir.sync_all();
        }
        Ok(())
    }

    /// Notes the holder's pid, once it runs; the record itself is not rewritten.
    pub fn note_holder(bundle: &Path, pid: u32) -> Result<()> {
        let path = bundle.join(HOLDER_PID);
        let tmp = bundle.join(format!(".{HOLDER_PID}.tmp"));
        fs::write(&tmp, pid.to_string())
            .and_then(|()| fs::rename(&tmp, &path))
            .map_err(Error::io(format!("write {}", path.display())))
    }

    pub fn load(bundle: &Path) -> Option<Record> {
        let data = fs::read(Self::path(bundle)).ok()?;
        let mut r: Record = serde_json::from_slice(&data).ok()?;
        let noted = fs::read_to_string(bundle.join(HOLDER_PID)).ok();
        if let Some(pid) = noted.and_then(|s| s.trim().parse().ok()) {
            r.holder_pid = pid;
        }
        Some(r)
    }

    pub fn remove(bundle: &Path) {
        let _ = fs::remove_file(bundle.join(HOLDER_PID));
        let _ = fs::remove_file(Self::path(bundle));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dirs_from_the_builtin_controllers_bundle() {
        let t = tempfile::tempdir().unwrap();
        let state = t.path().join("run");
        let root = t.path().join("lib");
        let bundle = state.join(SHIM_CONTROLLER_DIR).join("k8s.io").join("pod1");
        let work = root.join(SHIM_CONTROLLER_DIR).join("k8s.io").join("pod1");
        fs::create_dir_all(&bundle).unwrap();
        fs::create_dir_all(&work).unwrap();
        std::os::unix::fs::symlink(&work, bundle.join("work")).unwrap();
        let none = Default::default();
        assert_eq!(
            ContainerdDirs::find(&none, &bundle),
            ContainerdDirs {
                root: root.clone(),
                state: state.clone()
            }
        );
        // Annotations win; an unknown layout falls back to containerd's defaults.
        let ann = [(ANNOTATION_CONTAINERD_ROOT.to_string(), "/r".to_string())].into();
        assert_eq!(ContainerdDirs::find(&ann, &bundle).root, Path::new("/r"));
        assert_eq!(
            ContainerdDirs::find(&none, t.path()),
            ContainerdDirs {
                root: "/var/lib/containerd".into(),
                state: "/run/containerd".into()
            }
        );
    }

    #[test]
    fn ids_that_are_not_path_components_are_refused() {
        let dirs = ContainerdDirs {
            root: "/r".into(),
            state: "/s".into(),
        };
        // containerd's identifier rule: separators only between letters and digits.
        for bad in [
            "",
            "..",
            "a/b",
            ".hidden",
            "x\0y",
            &"a".repeat(77),
            "a..b",
            "a-",
            "a._b",
        ] {
            assert!(PodFiles::new(&dirs, bad).is_err(), "{bad:?} accepted");
        }
        let f = PodFiles::new(&dirs, "pod-1.a_b").unwrap();
        assert_eq!(
            f.root_dir,
            Path::new("/r/io.containerd.grpc.v1.cri/sandboxes/pod-1.a_b")
        );
        assert_eq!(
            f.shm(),
            Path::new("/s/io.containerd.grpc.v1.cri/sandboxes/pod-1.a_b/shm")
        );
    }

    #[test]
    fn files_as_cri_writes_them_and_removed_without_trace() {
        let t = tempfile::tempdir().unwrap();
        let dirs = ContainerdDirs {
            root: t.path().join("root"),
            state: t.path().join("state"),
        };
        let files = PodFiles::new(&dirs, "pod1").unwrap();
        let cfg = PodSandboxConfig {
            hostname: "web-0".into(),
            has_dns_config: true,
            dns_servers: vec!["10.0.0.10".into()],
            dns_searches: vec!["ns.svc".into()],
            // hostIPC: no shm mount, so this test needs no privileges.
            ipc: NamespaceMode::Node,
            ..Default::default()
        };
        files.create(&cfg).unwrap();
        let read = |n: &str| fs::read_to_string(files.root_dir.join(n)).unwrap();
        assert_eq!(read("hostname"), "web-0\n");
        assert_eq!(read("resolv.conf"), "search ns.svc\nnameserver 10.0.0.10\n");
        assert_eq!(
            read("hosts"),
            fs::read_to_string("/etc/hosts").unwrap_or_default()
        );
        files.remove();
        assert!(!files.root_dir.exists() && !files.state_dir.exists());
        files.remove();
    }

    fn record(holder_pid: u32) -> Record {
        Record {
            sandbox_id: "pod1".into(),
            dirs: ContainerdDirs {
                root: "/r".into(),
                state: "/s".into(),
            },
            holder_pid,
        }
    }

    #[test]
    fn record_round_trips() {
        let t = tempfile::tempdir().unwrap();
        let r = record(42);
        r.save(t.path()).unwrap();
        assert_eq!(Record::load(t.path()), Some(r));
        Record::remove(t.path());
        assert_eq!(Record::load(t.path()), None);
    }

    #[test]
    fn the_holder_pid_is_noted_beside_the_durable_record_and_removed_with_it() {
        let t = tempfile::tempdir().unwrap();
        record(0).save(t.path()).unwrap();
        let durable = fs::read(Record::path(t.path())).unwrap();
        Record::note_holder(t.path(), 4242).unwrap();
        assert_eq!(fs::read(Record::path(t.path())).unwrap(), durable);
        assert_eq!(Record::load(t.path()), Some(record(4242)));
        Record::remove(t.path());
        assert_eq!(fs::read_dir(t.path()).unwrap().count(), 0);
    }
}

//! Shared test helpers: run the real binary as a child process on a temp socket.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use containerd_client::services::v1::snapshots::snapshots_client::SnapshotsClient;
use containerd_client::tonic::transport::Channel;

pub const BIN: &str = env!("CARGO_BIN_EXE_podshim-snapshotter");

pub struct Daemon {
    pub child: Child,
    pub root: PathBuf,
    pub sock: PathBuf,
}

impl Daemon {
    pub fn start(root: &Path, sock: &Path, env: &[(&str, String)], extra: &[&str]) -> Daemon {
        let mut cmd = Command::new(BIN);
        cmd.arg("--root")
            .arg(root)
            .arg("--address")
            .arg(sock)
            .arg("--log-level")
            .arg("warn")
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("spawn podshim-snapshotter");
        Daemon {
            child,
            root: root.to_path_buf(),
            sock: sock.to_path_buf(),
        }
    }

    /// Waits until the socket accepts a connection (or the daemon exited).
    pub async fn client(&mut self) -> Option<SnapshotsClient<Channel>> {
        for _ in 0..1000 {
            if let Ok(Some(_)) = self.child.try_wait() {
                return None;
            }
            if self.sock.exists() {
                if let Ok(ch) = containerd_client::connect(&self.sock).await {
                    return Some(SnapshotsClient::new(ch));
                }
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("daemon did not come up on {}", self.sock.display());
    }

    pub fn kill9(&mut self) {
        let _ = self.child.kill(); // SIGKILL
        let _ = self.child.wait();
    }

    pub fn terminate(&mut self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.wait();
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill9();
    }
}

pub fn is_root() -> bool {
    std::fs::metadata("/proc/self")
        .map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0)
        .unwrap_or(false)
}

/// A host mount of a snapshot's mounts (as containerd's walking differ does); unmounted on drop.
pub struct Mounted(pub PathBuf);

impl Mounted {
    pub fn new(mounts: &[containerd_client::types::Mount], target: &Path) -> Mounted {
        assert_eq!(mounts.len(), 1, "{mounts:?}");
        let m = &mounts[0];
        std::fs::create_dir_all(target).unwrap();
        let mut cmd = Command::new("mount");
        match m.r#type.as_str() {
            "bind" => {
                let ro = m.options.iter().any(|o| o == "ro");
                cmd.arg("--rbind").arg(&m.source).arg(target);
                let st = cmd.status().unwrap();
                assert!(st.success(), "mount {m:?}");
                if ro {
                    let st = Command::new("mount")
                        .args(["-o", "remount,bind,ro"])
                        .arg(target)
                        .status()
                        .unwrap();
                    assert!(st.success(), "remount ro {m:?}");
                }
                return Mounted(target.to_path_buf());
            }
            t => {
                cmd.arg("-t").arg(t).arg(&m.source).arg(target);
                cmd.arg("-o").arg(m.options.join(","));
            }
        }
        let st = cmd.status().unwrap();
        assert!(st.success(), "mount {m:?}");
        Mounted(target.to_path_buf())
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-R").arg(&self.0).status();
    }
}

/// A small tmpfs on a temp dir, to fill up; unmounted on drop, also when a test fails.
pub struct Tmpfs(tempfile::TempDir);

impl Tmpfs {
    pub fn mount(size: &str) -> Tmpfs {
        let dir = tempfile::tempdir().unwrap();
        let st = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .status()
            .unwrap();
        assert!(st.success(), "mount tmpfs on {}", dir.path().display());
        Tmpfs(dir)
    }

    pub fn path(&self) -> &Path {
        self.0.path()
    }

    /// Writes a file until the tmpfs is full (ENOSPC); returns its path.
    pub fn fill(&self) -> PathBuf {
        use std::io::Write;
        let p = self.path().join("filler");
        let mut f = std::fs::File::create(&p).unwrap();
        let chunk = vec![0xa5u8; 64 * 1024];
        loop {
            match f.write(&chunk) {
                Ok(n) if n > 0 => {}
                Ok(_) => panic!("write of 0 bytes"),
                Err(e) if e.kind() == std::io::ErrorKind::StorageFull => return p,
                Err(e) => panic!("filling {}: {e}", p.display()),
            }
        }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(self.path()).status();
    }
}

/// `snapshots/<id>` of a snapshot, from its mounts (the upper dir's parent, or a bind's).
pub fn snapshot_dir(m: &[podshim_snapshotter::Mount]) -> PathBuf {
    let upper = match m[0].kind.as_str() {
        "bind" => m[0].source.clone(),
        _ => m[0]
            .options
            .iter()
            .find_map(|o| o.strip_prefix("upperdir="))
            .unwrap()
            .to_string(),
    };
    PathBuf::from(upper).parent().unwrap().to_path_buf()
}

/// Mount points at or below `dir` (this process's mount namespace), deepest first.
pub fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let mut v: Vec<PathBuf> = info
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(PathBuf::from)
        .filter(|p| p.starts_with(dir))
        .collect();
    v.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    v
}

/// Lazily unmounts everything at or below `dir` (what a failed test may have left).
pub fn umount_under(dir: &Path) {
    for p in mounts_under(dir) {
        let _ = Command::new("umount").arg("-l").arg(&p).status();
    }
}

/// The backing files of loop devices that lie below `dir`.
pub fn loops_under(dir: &Path) -> Vec<String> {
    let Ok(rd) = std::fs::read_dir("/sys/block") else {
        return Vec::new();
    };
    rd.flatten()
        .filter_map(|e| std::fs::read_to_string(e.path().join("loop/backing_file")).ok())
        .map(|f| f.trim().to_string())
        .filter(|f| Path::new(f).starts_with(dir))
        .collect()
}

/// A btrfs filesystem on a loop device (an image file in a temp dir); unmounted with
/// everything mounted inside it (which frees the loop devices) and deleted on drop, also when a
/// test fails. None, said on stderr, where mkfs.btrfs is not installed or the process is not
/// root.
pub struct Btrfs {
    dir: tempfile::TempDir,
}

impl Btrfs {
    pub fn mount(size: &str) -> Option<Btrfs> {
        if !is_root() {
            eprintln!("SKIPPED: a loop-mounted btrfs needs root");
            return None;
        }
        if Command::new("mkfs.btrfs")
            .arg("--version")
            .output()
            .is_err()
        {
            eprintln!(
                "SKIPPED: mkfs.btrfs is not installed (btrfs-progs: scripts/install-deps.sh)"
            );
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let img = dir.path().join("fs.img");
        let mnt = dir.path().join("mnt");
        std::fs::create_dir(&mnt).unwrap();
        let run = |c: &mut Command| {
            let o = c.output().unwrap();
            assert!(
                o.status.success(),
                "{c:?}: {}",
                String::from_utf8_lossy(&o.stderr)
            );
        };
        run(Command::new("truncate").args(["-s", size]).arg(&img));
        run(Command::new("mkfs.btrfs").arg("-q").arg(&img));
        run(Command::new("mount")
            .args(["-o", "loop"])
            .arg(&img)
            .arg(&mnt));
        Some(Btrfs { dir })
    }

    pub fn path(&self) -> PathBuf {
        self.dir.path().join("mnt")
    }
}

impl Drop for Btrfs {
    fn drop(&mut self) {
        umount_under(&self.path());
    }
}

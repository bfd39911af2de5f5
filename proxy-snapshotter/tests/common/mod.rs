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

//! A loopback OCI registry for pull tests: Debian's `docker-registry` (distribution 2.8) on
//! 127.0.0.1 with its config and storage in a test's temp dir; images are pushed into it with
//! `skopeo copy` from locally built archives.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::sys;

const REGISTRY_BIN: &str = "docker-registry";

pub struct Registry {
    /// `127.0.0.1:<port>`
    pub host: String,
    pub dir: PathBuf,
    child: Option<Child>,
    _port: crate::port::PortLease,
}

impl Registry {
    /// Starts a registry storing under `dir` and waits until it answers `GET /v2/`.
    pub fn start(dir: &Path) -> Result<Registry> {
        fs::create_dir_all(dir.join("storage"))?;
        let port = crate::port::lease()?;
        let host = format!("127.0.0.1:{}", port.port);
        let config = dir.join("config.yml");
        // No auth, no TLS: it only listens on loopback and lives for one test.
        fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: {host}\n",
                dir.join("storage").display()
            ),
        )?;
        let log = fs::File::create(dir.join("registry.log"))?;
        let child = Command::new(REGISTRY_BIN)
            .arg("serve")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| {
                format!(
                    "spawning {REGISTRY_BIN} (install docker-registry: scripts/install-deps.sh)"
                )
            })?;
        let mut r = Registry {
            host,
            dir: dir.to_path_buf(),
            child: Some(child),
            _port: port,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(c) = r.child.as_mut() {
                if let Some(st) = c.try_wait()? {
                    bail!(
                        "{REGISTRY_BIN} exited early ({st}): {}",
                        fs::read_to_string(dir.join("registry.log")).unwrap_or_default()
                    );
                }
            }
            if r.ping().is_ok() {
                return Ok(r);
            }
            if Instant::now() > deadline {
                bail!("{REGISTRY_BIN} on {} not answering after 20 s", r.host);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn ping(&self) -> Result<()> {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(&self.host)?;
        s.set_read_timeout(Some(Duration::from_secs(2)))?;
        s.write_all(format!("GET /v2/ HTTP/1.0\r\nHost: {}\r\n\r\n", self.host).as_bytes())?;
        let mut buf = Vec::new();
        s.read_to_end(&mut buf)?;
        anyhow::ensure!(buf.starts_with(b"HTTP/1.1 200") || buf.starts_with(b"HTTP/1.0 200"));
        Ok(())
    }

    /// Pushes an OCI archive as `<host>/<repo_tag>` and returns that reference.
    pub fn push(&self, archive: &Path, repo_tag: &str) -> Result<String> {
        Registry::push_to(&self.host, &self.dir, archive, repo_tag)
    }

    /// [`Registry::push`] without a borrow of the registry (for `spawn_blocking`); `dir` holds
    /// skopeo's cache.
    pub fn push_to(host: &str, dir: &Path, archive: &Path, repo_tag: &str) -> Result<String> {
        let reference = format!("{host}/{repo_tag}");
        let o = Command::new("skopeo")
            .args(["copy", "--quiet", "--dest-tls-verify=false"])
            .arg(format!("oci-archive:{}", archive.display()))
            .arg(format!("docker://{reference}"))
            // skopeo keeps a blob cache under $HOME; keep it in the test's dir.
            .env("HOME", dir)
            .output()
            .context("running skopeo (install skopeo: scripts/install-deps.sh)")?;
        if !o.status.success() {
            bail!(
                "skopeo copy {} to {reference} failed: {}",
                archive.display(),
                String::from_utf8_lossy(&o.stderr)
            );
        }
        Ok(reference)
    }

    /// Writes a containerd `hosts.toml` for this registry into `config_path` (the registry
    /// `config_path` of containerd): plain HTTP on loopback.
    pub fn write_hosts_toml(&self, config_path: &Path) -> Result<()> {
        let d = config_path.join(&self.host);
        fs::create_dir_all(&d)?;
        fs::write(
            d.join("hosts.toml"),
            format!(
                "server = \"http://{h}\"\n\n[host.\"http://{h}\"]\n  capabilities = [\"pull\", \"resolve\"]\n",
                h = self.host
            ),
        )?;
        Ok(())
    }

    /// SIGTERM, then SIGKILL after 5 s; waits for the process.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            if c.try_wait().ok().flatten().is_none() {
                sys::kill(c.id() as i32, libc::SIGTERM);
                let deadline = Instant::now() + Duration::from_secs(5);
                while c.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(50));
                }
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        self.stop();
    }
}

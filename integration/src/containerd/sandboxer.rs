//! The run's podshim-sandboxer: started before containerd (as its unit is ordered), stopped,
//! killed and restarted by cases, and what it leaves.

use std::collections::BTreeMap;
use std::fs;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use super::log_file::log_tail;
use super::Containerd;
use crate::sys;

impl Containerd {
    /// Start podshim-sandboxer (before containerd, as its unit is ordered) and wait for its
    /// socket.
    pub async fn spawn_sandboxer(&mut self) -> Result<()> {
        anyhow::ensure!(self.sandboxer.is_none(), "podshim-sandboxer is running");
        let mut cmd = Command::new(&self.sandboxer_bin);
        cmd.arg("--config").arg(&self.sandboxer_config);
        // The shims it starts read their own config from PODSHIM_CONFIG, as containerd's would.
        let child = self.spawn_daemon(cmd, &self.dir.join("sandboxer.log"))?;
        self.sandboxer = Some(child);
        let sock = self.dir.join("sandboxer.sock");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(st) = self.sandboxer.as_mut().unwrap().try_wait()? {
                self.sandboxer = None;
                bail!(
                    "podshim-sandboxer exited early ({st}):\n{}",
                    self.sandboxer_log_tail(40)
                );
            }
            if std::os::unix::net::UnixStream::connect(&sock).is_ok() {
                return Ok(());
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "podshim-sandboxer not serving after 30s"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Restart podshim-sandboxer (SIGTERM, as systemd) with another warm pool size: its idle
    /// shims go, pods keep running.
    pub async fn restart_sandboxer_with_pool(&mut self, size: usize) -> Result<()> {
        self.stop_sandboxer().await?;
        let cfg = fs::read_to_string(&self.sandboxer_config)?;
        let old = format!("[pool]\nsize = {}\n", self.opts.sandboxer_pool);
        anyhow::ensure!(cfg.contains(&old), "no {old:?} in the sandboxer config");
        fs::write(
            &self.sandboxer_config,
            cfg.replace(&old, &format!("[pool]\nsize = {size}\n")),
        )?;
        self.opts.sandboxer_pool = size;
        self.spawn_sandboxer().await
    }

    /// `kill -9` of podshim-sandboxer: pods, their shims and idle pool shims keep running.
    pub fn kill9_sandboxer(&mut self) -> Result<()> {
        let mut c = self
            .sandboxer
            .take()
            .context("podshim-sandboxer is not running")?;
        c.kill()?;
        c.wait()?;
        Ok(())
    }

    /// SIGTERM, as systemd stops it: its warm pool is shut down, pods keep running.
    pub async fn stop_sandboxer(&mut self) -> Result<()> {
        let Some(mut c) = self.sandboxer.take() else {
            return Ok(());
        };
        sys::kill(c.id() as i32, libc::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(st) = c.try_wait()? {
                anyhow::ensure!(st.success(), "podshim-sandboxer exited with {st}");
                return Ok(());
            }
            if Instant::now() > deadline {
                let _ = c.kill();
                let _ = c.wait();
                bail!("podshim-sandboxer did not exit within 30s of SIGTERM (killed)");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn sandboxer_pid(&self) -> Option<u32> {
        self.sandboxer.as_ref().map(|c| c.id())
    }

    /// podshim-sandboxer's metrics now, keyed by series as served (`name{label="v"}`).
    pub async fn sandboxer_metrics(&self) -> Result<BTreeMap<String, f64>> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let addr = ("127.0.0.1", self.sandboxer_metrics_port.port);
        let mut s = tokio::net::TcpStream::connect(addr)
            .await
            .context("connecting to podshim-sandboxer's metrics")?;
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            .await?;
        let mut reply = String::new();
        // The responder closes the connection after its one reply.
        s.read_to_string(&mut reply).await?;
        let (head, body) = reply
            .split_once("\r\n\r\n")
            .context("podshim-sandboxer's metrics reply has no header end")?;
        anyhow::ensure!(head.starts_with("HTTP/1.1 200 "), "metrics: {head}");
        podshim_common::metrics::parse(body).map_err(|e| anyhow::anyhow!("metrics: {e}"))
    }

    pub fn sandboxer_log_tail(&self, n: usize) -> String {
        log_tail(&self.dir.join("sandboxer.log"), n)
    }

    /// What podshim-sandboxer still records or keeps on disk (read with the daemon stopped:
    /// its store is locked while it runs).
    pub fn sandboxer_leftovers(&self) -> Vec<String> {
        let mut v = Vec::new();
        if self.sandboxer.is_some() || !self.sandboxer_state.exists() {
            return v;
        }
        match podshim_sandboxer::store::Store::open(&self.sandboxer_state) {
            Ok(store) => {
                for r in store.sandboxes().unwrap_or_default() {
                    v.push(format!(
                        "podshim-sandboxer record of sandbox {} ({:?})",
                        r.sandbox_id, r.state
                    ));
                }
                for r in store.pool().unwrap_or_default() {
                    v.push(format!("podshim-sandboxer record of pool shim {}", r.id));
                }
            }
            Err(e) => v.push(format!("podshim-sandboxer store: {e}")),
        }
        v.extend(self.sandboxer_bundles());
        v
    }

    /// The bundle directories podshim-sandboxer keeps (one per sandbox and pool shim); readable
    /// while it runs, unlike its store.
    pub fn sandboxer_bundles(&self) -> Vec<String> {
        let mut v = Vec::new();
        for ns in fs::read_dir(self.sandboxer_state.join("bundles"))
            .into_iter()
            .flatten()
            .flatten()
        {
            for b in fs::read_dir(ns.path()).into_iter().flatten().flatten() {
                v.push(format!("podshim-sandboxer bundle {}", b.path().display()));
            }
        }
        v
    }
}

//! The warm pool: idle pod shims started ahead of demand, so that RunPodSandbox costs a
//! CreateSandbox instead of a fork/exec/serve of a new shim. Every pool shim is recorded in the
//! store before it starts; adopting one moves its record to the sandbox in one transaction.
//!
//! A restart keeps the idle shims that still answer (a `kill -9` of the daemon costs nothing);
//! a graceful stop (SIGTERM) shuts them all down. The shims that replace adopted ones start
//! when `crate::refill` allows: after the RunPodSandbox they were adopted for.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use log::{info, warn};
use podshim_common::socket::peer_pid;
use tokio::sync::Notify;

use crate::error::Result;
use crate::launch::{self, Launcher};
use crate::refill::{Adoption, RefillGate};
use crate::shim::PodShim;
use crate::store::{ShimRecord, Store};

/// After a failed start, the pool waits this long before the next try (a broken shim binary
/// must not become a fork loop).
const RETRY_AFTER: Duration = Duration::from_secs(5);
/// How long an idle shim may take to leave after ShutdownSandbox.
const SHUTDOWN_WAIT: Duration = Duration::from_secs(5);

pub struct Pool {
    size: usize,
    namespace: String,
    idle: Mutex<VecDeque<ShimRecord>>,
    wanted: Notify,
    refill: Arc<RefillGate>,
    closed: AtomicBool,
    launcher: Arc<Launcher>,
    store: Arc<Store>,
}

impl Pool {
    pub fn new(size: usize, namespace: String, launcher: Arc<Launcher>, store: Arc<Store>) -> Pool {
        Pool {
            size,
            namespace,
            idle: Mutex::new(VecDeque::new()),
            wanted: Notify::new(),
            refill: Arc::default(),
            closed: AtomicBool::new(false),
            launcher,
            store,
        }
    }

    fn idle(&self) -> std::sync::MutexGuard<'_, VecDeque<ShimRecord>> {
        self.idle.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn idle_count(&self) -> usize {
        self.idle().len()
    }

    /// After a restart: idle shims that still answer and run the shim binary installed now stay
    /// (up to the pool's size, in its namespace); the others are shut down or cleaned up after,
    /// so that no pod is handed a shim of a build an upgrade replaced. A record that cannot be
    /// decoded, or whose shim cannot be cleaned up after, is skipped and kept (as
    /// `Sandboxes::recover` does).
    pub async fn recover(&self) -> Result<()> {
        for shim in self.store.each_pool()? {
            let mut shim = match shim {
                Ok(shim) => shim,
                Err(e) => {
                    warn!("{e}: skipped, its record kept");
                    continue;
                }
            };
            let keep = self.idle_count() < self.size && shim.namespace == self.namespace;
            if keep && shim.pid == 0 {
                // Recorded, started, but the daemon stopped before noting the pid.
                if let Ok(pid) = peer_pid(&shim.address) {
                    shim.pid = pid;
                    let r = shim.clone();
                    self.store.off_thread(move |s| s.put_pool(&r)).await?;
                }
            }
            let answers = peer_pid(&shim.address).is_ok_and(|p| p == shim.pid);
            let current = launch::runs_binary(shim.pid, self.launcher.binary());
            if answers && !current {
                info!(
                    "pool shim {} runs a replaced {}: shut down",
                    shim.id,
                    self.launcher.binary().display()
                );
            }
            if keep && answers && current {
                info!("pool shim {} (pid {}) kept", shim.id, shim.pid);
                self.launcher.reattach(&shim);
                self.idle().push_back(shim);
            } else if let Err(e) = self.discard(&shim).await {
                warn!(
                    "pool shim {}: not cleaned up, its record kept: {e}",
                    shim.id
                );
            }
        }
        Ok(())
    }

    /// An idle shim for a sandbox of `namespace`, if one is ready; the pool refills behind it
    /// once the [`Adoption`] is dropped (the sandbox answered). Shims that died while idle are
    /// cleaned up on the way.
    pub async fn take(&self, namespace: &str) -> Option<(ShimRecord, Adoption)> {
        if namespace != self.namespace || self.size == 0 {
            return None;
        }
        loop {
            let shim = self.idle().pop_front()?;
            let adoption = self.refill.adopt();
            self.wanted.notify_one();
            if peer_pid(&shim.address).is_ok_and(|p| p == shim.pid) {
                return Some((shim, adoption));
            }
            warn!("pool shim {} died while idle", shim.id);
            if let Err(e) = self.discard(&shim).await {
                warn!("cleaning up pool shim {}: {e}", shim.id);
            }
        }
    }

    /// Keeps `size` idle shims started until `drain`.
    pub async fn run(self: Arc<Self>) {
        loop {
            while !self.closed.load(Ordering::Acquire) && self.idle_count() < self.size {
                self.refill
                    .wait(|| self.closed.load(Ordering::Acquire))
                    .await;
                if self.closed.load(Ordering::Acquire) {
                    return;
                }
                if let Err(e) = self.start_one().await {
                    warn!("warm pool: {e}");
                    tokio::time::sleep(RETRY_AFTER).await;
                }
            }
            if self.closed.load(Ordering::Acquire) {
                return;
            }
            self.wanted.notified().await;
        }
    }

    async fn start_one(&self) -> Result<()> {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        let planned = self
            .launcher
            .plan(&self.namespace, &format!("podshim-pool-{nanos}"));
        let r = planned.clone();
        self.store.off_thread(move |s| s.put_pool(&r)).await?;
        match self.launcher.start(planned.clone()).await {
            Ok(shim) => {
                let r = shim.clone();
                self.store.off_thread(move |s| s.put_pool(&r)).await?;
                if self.closed.load(Ordering::Acquire) {
                    return self.discard(&shim).await;
                }
                info!("pool shim {} (pid {}) ready", shim.id, shim.pid);
                self.idle().push_back(shim);
                Ok(())
            }
            Err(e) => {
                self.discard(&planned).await?;
                Err(e)
            }
        }
    }

    /// Shuts a pool shim down (it serves no sandbox, so it leaves at once) and forgets it.
    async fn discard(&self, shim: &ShimRecord) -> Result<()> {
        if launch::is_running(shim) {
            if let Ok(s) = PodShim::connect(&shim.address).await {
                let _ = s.shutdown(&shim.id).await;
            }
            if !launch::wait_gone(shim, SHUTDOWN_WAIT).await {
                launch::kill(shim);
                launch::wait_gone(shim, SHUTDOWN_WAIT).await;
            }
        }
        self.launcher.remove_leftovers(shim)?;
        let id = shim.id.clone();
        self.store.off_thread(move |s| s.remove_pool(&id)).await
    }

    /// Graceful stop: no more starts, every idle shim shut down and forgotten.
    pub async fn drain(&self) {
        self.closed.store(true, Ordering::Release);
        self.wanted.notify_one();
        self.refill.wake();
        let idle: Vec<ShimRecord> = self.idle().drain(..).collect();
        for shim in idle {
            if let Err(e) = self.discard(&shim).await {
                warn!("shutting down pool shim {}: {e}", shim.id);
            }
        }
    }
}

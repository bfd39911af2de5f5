//! When the warm pool may start the shims that replace the ones it gave out: once every
//! sandbox that adopted one has been answered (its Start returned, or it failed and was undone),
//! or [`AT_LATEST`] after the oldest such adoption. A replacement's start (two store commits,
//! each an fsync, and a fork/exec of the shim) would otherwise run beside the RunPodSandbox it
//! replaces for, and its commit take the store's one write transaction ahead of the adoption's.
//!
//! Each adoption holds an [`Adoption`] until its sandbox is answered; dropping it is the answer.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

/// A sandbox that is never answered (containerd can give up between Create and Start) delays
/// the refill by this much at most.
pub const AT_LATEST: Duration = Duration::from_secs(1);

#[derive(Default)]
struct Pending {
    /// Adoptions not yet answered.
    n: usize,
    /// When the oldest of them was made; `None` exactly when `n` is 0.
    since: Option<Instant>,
}

#[derive(Default)]
pub struct RefillGate {
    pending: Mutex<Pending>,
    answered: Notify,
}

/// Held from a pool shim's adoption until its sandbox is answered.
pub struct Adoption {
    gate: Arc<RefillGate>,
}

impl Drop for Adoption {
    fn drop(&mut self) {
        let mut p = self.gate.pending();
        p.n -= 1;
        if p.n == 0 {
            p.since = None;
        }
        drop(p);
        self.gate.answered.notify_one();
    }
}

impl RefillGate {
    fn pending(&self) -> std::sync::MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn adopt(self: &Arc<Self>) -> Adoption {
        let mut p = self.pending();
        p.n += 1;
        p.since.get_or_insert_with(Instant::now);
        Adoption { gate: self.clone() }
    }

    /// Returns once no adoption is pending, or [`AT_LATEST`] after the oldest pending one, or
    /// when `stop` says so (checked at each wake-up; [`RefillGate::wake`] wakes it).
    pub async fn wait(&self, stop: impl Fn() -> bool) {
        loop {
            let Some(since) = self.pending().since else {
                return;
            };
            let deadline = since + AT_LATEST;
            if stop() || Instant::now() >= deadline {
                return;
            }
            tokio::select! {
                _ = self.answered.notified() => {}
                _ = tokio::time::sleep_until(deadline) => {}
            }
        }
    }

    /// Wakes a [`RefillGate::wait`] to look at its `stop` again.
    pub fn wake(&self) {
        self.answered.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// How long `wait` took, in paused (virtual) time.
    async fn waited(gate: &RefillGate) -> Duration {
        let t = Instant::now();
        gate.wait(|| false).await;
        t.elapsed()
    }

    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn without_adoptions_the_refill_starts_at_once() {
        let gate = Arc::new(RefillGate::default());
        assert_eq!(waited(&gate).await, Duration::ZERO);
        drop(gate.adopt());
        assert_eq!(waited(&gate).await, Duration::ZERO);
    }

    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn the_refill_waits_until_every_adopting_sandbox_is_answered() {
        let gate = Arc::new(RefillGate::default());
        let (a, b) = (gate.adopt(), gate.adopt());
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(30)).await;
            drop(a);
            tokio::time::sleep(Duration::from_millis(40)).await;
            drop(b);
        });
        assert_eq!(waited(&gate).await, Duration::from_millis(70));
    }

    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn a_sandbox_never_answered_delays_the_refill_by_at_most_at_latest() {
        let gate = Arc::new(RefillGate::default());
        let _never = gate.adopt();
        tokio::time::sleep(Duration::from_millis(300)).await;
        // Later adoptions do not push the deadline of the oldest.
        let _later = gate.adopt();
        assert_eq!(waited(&gate).await, AT_LATEST - Duration::from_millis(300));
    }

    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn a_stop_ends_the_wait() {
        let gate = Arc::new(RefillGate::default());
        let _pending = gate.adopt();
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (g, s) = (gate.clone(), stop.clone());
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(10)).await;
            s.store(true, std::sync::atomic::Ordering::Release);
            g.wake();
        });
        let t = Instant::now();
        gate.wait(|| stop.load(std::sync::atomic::Ordering::Acquire))
            .await;
        assert_eq!(t.elapsed(), Duration::from_millis(10));
    }
}

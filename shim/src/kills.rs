//! Kill calls on a container's init that have not answered yet, so that init's exit is
//! reported after them.

use std::time::Duration;

use tokio::sync::watch;

/// Kill calls on a container's init that have not answered yet. containerd deletes a task as soon
/// as it sees its TaskExit, and closes that task's ttrpc connection; a Kill still in flight on
/// it then fails with "ttrpc: closed", and CRI's StopContainer or StopPodSandbox with it (seen
/// with 100 pause-less pods stopped at once: `runc kill` had not returned when its SIGKILL had
/// already ended the container). So init's exit is reported once its Kills have answered.
pub struct KillsInFlight {
    count: watch::Sender<usize>,
}

pub struct KillInFlight<'a>(&'a KillsInFlight);

impl Default for KillsInFlight {
    fn default() -> Self {
        KillsInFlight {
            count: watch::channel(0).0,
        }
    }
}

impl KillsInFlight {
    pub fn enter(&self) -> KillInFlight<'_> {
        self.count.send_modify(|c| *c += 1);
        KillInFlight(self)
    }

    /// Returns when no Kill is in flight, or after `bound` (a runtime that hangs in `kill` must
    /// not hold the exit back for long).
    pub async fn settled(&self, bound: Duration) {
        let mut rx = self.count.subscribe();
        let _ = tokio::time::timeout(bound, rx.wait_for(|c| *c == 0)).await;
        // Let the Kill's response be written before the caller reports the exit.
        tokio::task::yield_now().await;
    }
}

impl Drop for KillInFlight<'_> {
    fn drop(&mut self) {
        self.0.count.send_modify(|c| *c -= 1);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::time::Instant;

    use super::KillsInFlight;

    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn exit_waits_for_the_kill_in_flight() {
        let kills = std::sync::Arc::new(KillsInFlight::default());
        let t = Instant::now();
        kills.settled(Duration::from_secs(2)).await;
        assert!(t.elapsed() < Duration::from_millis(1), "nothing in flight");

        let k = kills.clone();
        let (entered_tx, entered) = tokio::sync::oneshot::channel();
        let kill = crate::log_scope::spawn(async move {
            let _g = k.enter();
            let _ = entered_tx.send(());
            tokio::time::sleep(Duration::from_millis(300)).await;
        });
        entered.await.unwrap();
        let t = Instant::now();
        kills.settled(Duration::from_secs(2)).await;
        let waited = t.elapsed();
        assert!(
            waited >= Duration::from_millis(300) && waited < Duration::from_secs(2),
            "{waited:?}"
        );
        kill.await.unwrap();
    }

    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn a_hanging_kill_holds_the_exit_back_only_so_long() {
        let kills = KillsInFlight::default();
        let _hung = kills.enter();
        let t = Instant::now();
        kills.settled(Duration::from_secs(2)).await;
        assert_eq!(t.elapsed().as_secs(), 2);
    }
}

//! A background thread that runs one job whenever it is nudged. Nudges that arrive while the
//! job runs are served by its next round; dropping the worker lets the rounds already asked for
//! finish before it returns, so nothing runs under a closed snapshotter.

use std::sync::{mpsc, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;

/// How what a worker shares with its callers is locked: a round that panicked leaves the data as
/// coherent as any round does, so the lock is taken whatever happened.
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

pub struct Worker {
    /// Taken by `drop`, which then waits for the thread.
    nudge: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Worker {
    pub fn spawn(name: &str, mut job: impl FnMut() + Send + 'static) -> std::io::Result<Worker> {
        let (tx, rx) = mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name(name.into())
            .spawn(move || {
                while rx.recv().is_ok() {
                    // Nudges that came meanwhile are served by this round.
                    while rx.try_recv().is_ok() {}
                    job();
                }
            })?;
        Ok(Worker {
            nudge: Some(tx),
            thread: Some(thread),
        })
    }

    /// Has the job run once more, soon.
    pub fn nudge(&self) {
        if let Some(tx) = &self.nudge {
            let _ = tx.send(());
        }
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        drop(self.nudge.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

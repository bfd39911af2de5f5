//! The crash tests' hook ([`Config::crash_point`](crate::Config)): SIGKILL of the process at
//! the n-th pass through a named point of a path.

use std::sync::atomic::{AtomicU64, Ordering};

pub struct CrashPoint {
    at: Option<(String, u64)>,
    hits: AtomicU64,
}

impl CrashPoint {
    pub fn new(at: Option<(String, u64)>) -> CrashPoint {
        CrashPoint {
            at,
            hits: AtomicU64::new(0),
        }
    }

    pub fn pass(&self, point: &str) {
        if let Some((p, n)) = &self.at {
            if p == point && self.hits.fetch_add(1, Ordering::SeqCst) + 1 >= *n {
                crate::sys::sigkill_self();
            }
        }
    }
}

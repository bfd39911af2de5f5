//! The disk the pod's spill files take together. Each stream's spill file has its own bound,
//! but a pod may hold many streams (every exec has two): their sum is bounded too. A spill that
//! would pass it is refused like a full disk, so its process is back-pressured until a reader
//! drains some spill file and gives its bytes back.
//!
//! Invariant: `used` is the sum of the sizes of the pod's spill files (bytes are taken before
//! they are written and given back when the file is removed).

use std::sync::{
    atomic::{AtomicU64, Ordering},
    Arc,
};

#[derive(Debug, Clone)]
pub struct SpillBudget(Arc<Inner>);

#[derive(Debug)]
struct Inner {
    limit: u64,
    used: AtomicU64,
}

impl SpillBudget {
    pub fn new(limit: u64) -> SpillBudget {
        SpillBudget(Arc::new(Inner {
            limit,
            used: AtomicU64::new(0),
        }))
    }

    /// Takes `n` bytes if they fit.
    pub fn take(&self, n: u64) -> bool {
        self.0
            .used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(n).filter(|&u| u <= self.0.limit)
            })
            .is_ok()
    }

    pub fn give_back(&self, n: u64) {
        let _ = self
            .0
            .used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                Some(used.saturating_sub(n))
            });
    }

    pub fn used(&self) -> u64 {
        self.0.used.load(Ordering::Acquire)
    }

    pub fn limit(&self) -> u64 {
        self.0.limit
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn takes_only_what_fits_and_gets_it_back() {
        let b = SpillBudget::new(100);
        assert!(b.take(60));
        assert!(!b.take(41));
        assert!(b.take(40));
        assert_eq!(b.used(), 100);
        b.give_back(60);
        assert!(b.take(60));
        assert!(!b.take(u64::MAX), "no overflow");
    }
}

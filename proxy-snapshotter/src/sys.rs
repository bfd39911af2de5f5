//! The only place with `unsafe`: thin wrappers over libc calls std does not expose.

/// Delivers SIGKILL to this process (test crash points): the same effect as `kill -9` from
/// outside, at an exact instant.
pub fn sigkill_self() -> ! {
    // SAFETY: kill(2) with our own pid and a valid signal number has no memory-safety
    // preconditions. SIGKILL cannot be caught, so the process ends here.
    unsafe {
        libc::kill(libc::getpid(), libc::SIGKILL);
    }
    // Not reached; keep the type system satisfied if the signal were somehow delayed.
    std::process::abort()
}

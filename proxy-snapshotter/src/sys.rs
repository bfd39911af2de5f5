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

/// Puts the calling thread in the SCHED_IDLE class: it runs only when no other thread of the
/// node wants the CPU.
pub fn make_current_thread_idle() -> std::io::Result<()> {
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: sched_setscheduler(2) with pid 0 (the calling thread) and a fully initialised
    // sched_param that the kernel only reads during the call.
    let rc = unsafe { libc::sched_setscheduler(0, libc::SCHED_IDLE, &param) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

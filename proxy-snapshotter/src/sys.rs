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

/// `FS_TOPDIR_FL` (`chattr +T`): ext4's Orlov allocator places each directory made inside `dir`
/// as the top of its own hierarchy (in a block group of its own choosing) rather than beside
/// `dir`. Filesystems without the flag refuse it (EOPNOTSUPP, ENOTTY, EINVAL).
pub fn set_topdir(dir: &std::fs::File) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    const FS_TOPDIR_FL: libc::c_int = 0x0002_0000;
    let mut flags: libc::c_int = 0;
    // SAFETY: FS_IOC_GETFLAGS writes one int through the valid pointer to `flags`.
    if unsafe { libc::ioctl(dir.as_raw_fd(), libc::FS_IOC_GETFLAGS, &mut flags) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    if flags & FS_TOPDIR_FL != 0 {
        return Ok(());
    }
    flags |= FS_TOPDIR_FL;
    // SAFETY: FS_IOC_SETFLAGS reads one int through the valid pointer to `flags`.
    if unsafe { libc::ioctl(dir.as_raw_fd(), libc::FS_IOC_SETFLAGS, &flags) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

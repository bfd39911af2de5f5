//! The shim's few unsafe calls, each with its reason.

use std::io;

/// Tells the `start` process that spawned this daemon that it is serving: `start` copies our
/// stdout until EOF, and pointing fd 1 at stderr closes the pipe it reads.
pub fn signal_server_started() -> io::Result<()> {
    // SAFETY: dup2 on the process's own standard descriptors; no Rust object owns fd 1 and
    // nothing writes to stdout concurrently (the daemon never prints to stdout).
    let rc = unsafe { libc::dup2(libc::STDERR_FILENO, libc::STDOUT_FILENO) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

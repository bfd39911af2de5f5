//! The shim's few unsafe calls, each with its reason.

use std::{
    io,
    os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd},
};

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

/// Sets a pty's window size (TIOCSWINSZ); nix has no safe wrapper for it.
pub fn set_window_size(fd: BorrowedFd<'_>, cols: u16, rows: u16) -> io::Result<()> {
    let ws = libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: fd is a live descriptor borrowed for the call, and `ws` is a valid winsize that
    // the kernel only reads.
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCSWINSZ, &ws) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Takes ownership of a descriptor the kernel just installed in this process (SCM_RIGHTS).
pub fn own_received_fd(fd: RawFd) -> OwnedFd {
    // SAFETY: recvmsg created this descriptor for us; nothing else refers to it, so exactly one
    // owner closes it.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

/// Registers an owned descriptor with tokio's event loop.
pub fn register(fd: OwnedFd) -> io::Result<tokio::io::unix::AsyncFd<OwnedFd>> {
    // SAFETY: the AsyncFd takes ownership of the OwnedFd, so the descriptor stays open and
    // refers to the same file description until the AsyncFd is dropped, and OwnedFd's
    // as_raw_fd always returns that descriptor.
    unsafe { tokio::io::unix::AsyncFd::register(fd) }.map_err(|e| e.into_parts().1)
}

/// Moves up to `len` bytes from pipe `from` into pipe `to` inside the kernel (splice(2),
/// non-blocking): `Ok(0)` at end of file, `WouldBlock` when `from` is empty or `to` is full,
/// `InvalidInput` when `from` cannot be spliced (a pty).
pub fn splice(from: BorrowedFd<'_>, to: BorrowedFd<'_>, len: usize) -> io::Result<usize> {
    // SAFETY: both descriptors are live and borrowed for the call; null offsets are what pipes
    // take, and the kernel touches no memory of ours.
    let n = unsafe {
        libc::splice(
            from.as_raw_fd(),
            std::ptr::null_mut(),
            to.as_raw_fd(),
            std::ptr::null_mut(),
            len,
            libc::SPLICE_F_MOVE | libc::SPLICE_F_NONBLOCK,
        )
    };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(n as usize)
}

/// The child `cmd` starts is SIGKILLed when this process dies first (PR_SET_PDEATHSIG), as
/// containerd's runc shim has its runc: an OCI runtime left running after its shim was killed
/// goes on writing into a bundle containerd is removing. The signal follows the thread that
/// spawned the child: the shim spawns from its one runtime thread, which lives as long as it.
pub fn die_with_parent(cmd: &mut std::process::Command) {
    use std::os::unix::process::CommandExt;
    let parent = std::process::id() as libc::pid_t;
    // SAFETY: the hook runs in the forked child before exec and calls only async-signal-safe
    // functions (prctl, getppid); it touches no memory but its captured pid.
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(
                libc::PR_SET_PDEATHSIG,
                libc::SIGKILL as libc::c_ulong,
                0,
                0,
                0,
            ) != 0
            {
                return Err(io::Error::last_os_error());
            }
            // The parent died before the prctl: nobody would send the signal.
            if libc::getppid() != parent {
                return Err(io::Error::from_raw_os_error(libc::ESRCH));
            }
            Ok(())
        });
    }
}

/// Bytes in a pipe's buffer not yet read (FIONREAD).
pub fn unread_bytes(fd: BorrowedFd<'_>) -> io::Result<usize> {
    let mut n: libc::c_int = 0;
    // SAFETY: fd is a live descriptor borrowed for the call; FIONREAD writes one c_int to `n`.
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), libc::FIONREAD, &mut n) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(n.max(0) as usize)
}

/// The window size of a terminal (TIOCGWINSZ), as (columns, rows).
#[cfg(test)]
pub fn window_size(fd: BorrowedFd<'_>) -> io::Result<(u16, u16)> {
    let mut ws = libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: fd is a live descriptor borrowed for the call; the kernel writes one winsize.
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCGWINSZ, &mut ws) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok((ws.ws_col, ws.ws_row))
}

/// Whether the process `spawn` starts outlives the process that ran `spawn` being SIGKILLed:
/// `spawn` runs in a forked copy of this process, which is then killed.
#[cfg(test)]
pub fn outlives_its_killed_spawner(spawn: impl FnOnce() -> u32) -> bool {
    use std::{io::Read, os::fd::FromRawFd, time::Duration};
    let mut fds = [0; 2];
    // SAFETY: pipe writes two descriptors into the array.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    // SAFETY: the forked copy only spawns, writes the pid to the pipe and waits to be killed;
    // glibc's fork leaves malloc usable in it.
    let spawner = unsafe { libc::fork() };
    if spawner == 0 {
        let b = spawn().to_le_bytes();
        // SAFETY: fds[1] is the pipe's write end, `b` four readable bytes.
        unsafe {
            libc::write(fds[1], b.as_ptr().cast(), 4);
            libc::pause();
            libc::_exit(0)
        }
    }
    // SAFETY: the read end is ours from here; the write end is the forked copy's.
    let mut r = unsafe { std::fs::File::from_raw_fd(fds[0]) };
    // SAFETY: closing our copy of the write end, which nothing else owns.
    unsafe { libc::close(fds[1]) };
    let mut b = [0u8; 4];
    r.read_exact(&mut b).unwrap();
    let child = u32::from_le_bytes(b) as libc::pid_t;
    assert!(child > 0, "spawn failed in the forked process");
    // SAFETY: a signal to, and a wait on, our own child.
    unsafe {
        libc::kill(spawner, libc::SIGKILL);
        libc::waitpid(spawner, std::ptr::null_mut(), 0);
    }
    let gone = (0..100).any(|_| {
        std::thread::sleep(Duration::from_millis(10));
        let stat = std::fs::read_to_string(format!("/proc/{child}/stat")).unwrap_or_default();
        stat.is_empty()
            || stat
                .rsplit(')')
                .next()
                .is_some_and(|s| s.trim_start().starts_with('Z'))
    });
    // Whatever the outcome, nothing is left running.
    // SAFETY: a signal to a pid the test started.
    unsafe { libc::kill(child, libc::SIGKILL) };
    !gone
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_child_dies_with_the_process_that_spawned_it() {
        let spawn = |die: bool| {
            move || {
                let mut cmd = std::process::Command::new("sleep");
                cmd.arg("100");
                if die {
                    die_with_parent(&mut cmd);
                }
                cmd.spawn().map(|c| c.id()).unwrap_or(0)
            }
        };
        assert!(
            outlives_its_killed_spawner(spawn(false)),
            "the check has no teeth"
        );
        assert!(!outlives_its_killed_spawner(spawn(true)));
    }
}

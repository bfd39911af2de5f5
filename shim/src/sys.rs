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

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

/// Has `cmd`'s process killed (SIGKILL) when this process dies. Parent death is the death of
/// the thread that forked; the serving shim runs its runtime commands from its one thread.
pub fn kill_with_parent(cmd: &mut std::process::Command) {
    use std::os::unix::process::CommandExt;
    let parent = std::process::id() as libc::pid_t;
    // SAFETY: the closure runs in the forked child before exec and calls only prctl, getppid
    // and _exit, which are async-signal-safe; it touches no memory shared with the parent.
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
            // The parent died before the prctl: nothing would signal us.
            if libc::getppid() != parent {
                libc::_exit(1);
            }
            Ok(())
        });
    }
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

/// Makes the pipe `fd` belongs to hold `bytes` (F_SETPIPE_SZ); returns the size it got. Pages
/// are only taken as bytes arrive.
pub fn set_pipe_size(fd: BorrowedFd<'_>, bytes: usize) -> io::Result<usize> {
    // SAFETY: fd is a live descriptor borrowed for the call; F_SETPIPE_SZ takes an int.
    let rc = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETPIPE_SZ, bytes as libc::c_int) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(rc as usize)
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

/// A child process born in a new user namespace (clone(2) with CLONE_NEWUSER) that does nothing
/// but wait to be killed; it dies with the calling thread at the latest. Its pid, for writing
/// the namespace's id maps and opening `/proc/<pid>/ns/user`.
#[cold]
pub fn spawn_in_new_userns() -> io::Result<i32> {
    // SAFETY: clone without CLONE_VM and without a new stack is fork(2) with a flag: the child
    // gets a copy of this thread's memory and runs on it. It then makes only raw system calls
    // (prctl, getppid, pause, _exit), which are async-signal-safe, and never returns into Rust
    // code, so no lock or allocator state copied from other threads is touched.
    let parent = std::process::id();
    let pid = unsafe {
        libc::syscall(
            libc::SYS_clone,
            (libc::CLONE_NEWUSER | libc::SIGCHLD) as libc::c_ulong,
            0usize,
            0usize,
            0usize,
            0usize,
        )
    };
    match pid {
        -1 => Err(io::Error::last_os_error()),
        0 => {
            // SAFETY: as above: raw system calls only, and the child never returns.
            unsafe {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                // The thread that cloned us may already be gone (then no signal would come).
                if libc::getppid() != parent as libc::pid_t {
                    libc::_exit(0);
                }
                loop {
                    libc::pause();
                }
            }
        }
        pid => Ok(pid as i32),
    }
}

/// Attaches at `target` a clone of the mount tree at `source` whose ids are mapped through the
/// user namespace `userns` (an id-mapped mount: open_tree, mount_setattr, move_mount), private,
/// and read-only when asked.
#[cold]
pub fn attach_idmapped(
    source: &std::path::Path,
    target: &std::path::Path,
    userns: BorrowedFd<'_>,
    read_only: bool,
) -> io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let cstr = |p: &std::path::Path| {
        std::ffi::CString::new(p.as_os_str().as_bytes())
            .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))
    };
    let (source, target) = (cstr(source)?, cstr(target)?);
    let flags = libc::OPEN_TREE_CLONE | libc::OPEN_TREE_CLOEXEC | libc::AT_RECURSIVE as u32;
    // SAFETY: source is NUL-terminated; open_tree returns a new descriptor we then own.
    let tree =
        unsafe { libc::syscall(libc::SYS_open_tree, libc::AT_FDCWD, source.as_ptr(), flags) };
    if tree < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: open_tree just created this descriptor; nothing else owns it.
    let tree = unsafe { OwnedFd::from_raw_fd(tree as RawFd) };
    // SAFETY: mount_attr is plain integers, for which all zeroes is a valid value.
    let mut attr: libc::mount_attr = unsafe { std::mem::zeroed() };
    attr.attr_set = libc::MOUNT_ATTR_IDMAP
        | if read_only {
            libc::MOUNT_ATTR_RDONLY
        } else {
            0
        };
    attr.propagation = libc::MS_PRIVATE;
    attr.userns_fd = userns.as_raw_fd() as u64;
    // SAFETY: the descriptor is live, the empty path is NUL-terminated, and attr is a valid
    // mount_attr of the size passed, which the kernel only reads.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            tree.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_EMPTY_PATH | libc::AT_RECURSIVE,
            &attr as *const libc::mount_attr,
            std::mem::size_of::<libc::mount_attr>(),
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: as above; target is NUL-terminated.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            tree.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_FDCWD,
            target.as_ptr(),
            libc::MOVE_MOUNT_F_EMPTY_PATH,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The user namespace that owns the namespace `ns` refers to (`NS_GET_USERNS`).
#[cold]
pub fn owning_userns(ns: BorrowedFd<'_>) -> io::Result<OwnedFd> {
    /// `_IO(0xb7, 0x1)` of linux/nsfs.h.
    const NS_GET_USERNS: libc::c_ulong = 0xb701;
    // SAFETY: the descriptor is live and borrowed for the call; this ioctl takes no argument.
    let fd = unsafe { libc::ioctl(ns.as_raw_fd(), NS_GET_USERNS as _) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the ioctl just installed this descriptor for us; nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Spawns `cmd` with `fds` as its descriptors 3, 4, 5, … (a logging binary's pipes).
#[cold]
pub fn spawn_with_fds(
    cmd: &mut std::process::Command,
    fds: &[OwnedFd],
) -> io::Result<std::process::Child> {
    use std::os::unix::process::CommandExt;
    let first = 3 + fds.len() as RawFd;
    // Copies above the target numbers: no dup2 below can overwrite a source not yet copied.
    let mut high = Vec::with_capacity(fds.len());
    for fd in fds {
        // SAFETY: fcntl(F_DUPFD_CLOEXEC) on a live borrowed descriptor; it touches no memory.
        let raw = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, first) };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: fcntl just created `raw` for us; nothing else refers to it.
        high.push(unsafe { OwnedFd::from_raw_fd(raw) });
    }
    let raw: Vec<RawFd> = high.iter().map(AsRawFd::as_raw_fd).collect();
    // SAFETY: the closure runs in the child between fork and exec and makes only dup2 calls
    // (async-signal-safe, no allocation) on descriptors `high` keeps open until spawn returns;
    // dup2 clears close-on-exec on the copies the program gets.
    unsafe {
        cmd.pre_exec(move || {
            for (i, fd) in raw.iter().enumerate() {
                if libc::dup2(*fd, 3 + i as RawFd) < 0 {
                    return Err(io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    cmd.spawn()
}

/// A new core-scheduling cookie for this process's group (prctl PR_SCHED_CORE_CREATE,
/// PIDTYPE_PGID), which children forked afterwards inherit: only tasks with the same cookie
/// share a core's SMT siblings. Fails where the kernel has no core scheduling or no SMT.
#[cold]
pub fn sched_core_create() -> io::Result<()> {
    const PR_SCHED_CORE: libc::c_int = 62;
    const PR_SCHED_CORE_CREATE: libc::c_ulong = 1;
    const PIDTYPE_PGID: libc::c_ulong = 2;
    // SAFETY: prctl with integer arguments only; the kernel reads no memory of ours.
    let rc = unsafe { libc::prctl(PR_SCHED_CORE, PR_SCHED_CORE_CREATE, 0, PIDTYPE_PGID, 0) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// A pidfd for `pid` (pidfd_open, Linux 5.3), close-on-exec.
pub fn pidfd_open(pid: u32) -> io::Result<OwnedFd> {
    // SAFETY: pidfd_open takes integers and returns a new descriptor or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel just installed this descriptor (close-on-exec) for us.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

//! The system calls std does not wrap: the one module allowed `unsafe`. Each function is one
//! call (or one loop of the same call) and returns the OS error as it is.
#![allow(unsafe_code)]

use std::{
    ffi::{CStr, CString},
    io,
    os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd},
};

fn check(ret: libc::c_long) -> io::Result<libc::c_long> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// The container's init process, which the shim passes as a pidfd on this descriptor.
pub const INIT_PIDFD: RawFd = 3;

/// Takes descriptor 3 (a pidfd, checked by the caller through fdinfo), close-on-exec so the
/// container's process never sees it.
pub fn take_init_pidfd() -> io::Result<OwnedFd> {
    // SAFETY: fcntl on a descriptor number only reads or sets its flags.
    check(unsafe { libc::fcntl(INIT_PIDFD, libc::F_SETFD, libc::FD_CLOEXEC) }.into())?;
    // SAFETY: the descriptor is open (fcntl succeeded) and nothing else in this process owns
    // it: the shim put it there for us.
    Ok(unsafe { OwnedFd::from_raw_fd(INIT_PIDFD) })
}

/// Signal 0 through a pidfd: fails with ESRCH once the process has exited.
pub fn pidfd_alive(pidfd: &OwnedFd) -> io::Result<()> {
    // SAFETY: pidfd_send_signal with a null siginfo reads no memory of ours.
    check(unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            0,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    })
    .map(drop)
}

/// Joins the namespaces in `flags` of the process behind `pidfd`, all at once (Linux 5.8).
pub fn setns(pidfd: &OwnedFd, flags: libc::c_int) -> io::Result<()> {
    // SAFETY: setns reads only its arguments.
    check(unsafe { libc::setns(pidfd.as_raw_fd(), flags) }.into()).map(drop)
}

pub enum Forked {
    Child,
    Parent(libc::pid_t),
}

/// The helper is single-threaded, so the child may go on with anything the parent could do.
pub fn fork() -> io::Result<Forked> {
    // SAFETY: the process has one thread (no lock another thread could hold), so the child's
    // copy of the heap and of every descriptor is consistent.
    match check(unsafe { libc::fork() }.into())? {
        0 => Ok(Forked::Child),
        pid => Ok(Forked::Parent(pid as libc::pid_t)),
    }
}

/// Reaps our child `pid`.
pub fn wait(pid: libc::pid_t) -> io::Result<()> {
    loop {
        // SAFETY: waitpid writes the status into a local.
        let mut status = 0;
        match check(unsafe { libc::waitpid(pid, &mut status, 0) }.into()) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            other => return other.map(drop),
        }
    }
}

/// A close-on-exec pipe: (read, write).
pub fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: pipe2 writes two descriptors into the array we pass.
    check(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }.into())?;
    // SAFETY: pipe2 just created both descriptors for us.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

fn prctl(op: libc::c_int, arg: libc::c_ulong) -> io::Result<()> {
    // SAFETY: the options used here take integers only.
    check(unsafe { libc::prctl(op, arg, 0, 0, 0) }.into()).map(drop)
}

/// Affinity to every CPU (8192, runc's bound), which the kernel narrows to the cpuset of the
/// cgroup joined: runc's exec resets it so, a failure being no error of the exec's.
pub fn reset_cpu_affinity() -> io::Result<()> {
    let mask = [u64::MAX; 8192 / 64];
    // SAFETY: the kernel reads `size_of_val(&mask)` bytes of the mask.
    check(unsafe {
        libc::syscall(
            libc::SYS_sched_setaffinity,
            0,
            std::mem::size_of_val(&mask),
            mask.as_ptr(),
        )
    })
    .map(drop)
}

/// Not dumpable: nothing in the container may open `/proc/<pid>/exe` (this host binary) or
/// ptrace us before the exec; execve makes the container's program dumpable again.
pub fn set_undumpable() -> io::Result<()> {
    prctl(libc::PR_SET_DUMPABLE, 0)
}

pub fn set_no_new_privs() -> io::Result<()> {
    prctl(libc::PR_SET_NO_NEW_PRIVS, 1)
}

pub fn set_keep_caps(keep: bool) -> io::Result<()> {
    prctl(libc::PR_SET_KEEPCAPS, keep as libc::c_ulong)
}

/// Drops every capability up to `last` that `keep` lacks from the bounding set; EINVAL (one
/// this kernel lacks) is not an error, as in runc.
pub fn drop_bounding(keep: u64, last: u32) -> io::Result<()> {
    for cap in (0..=last).filter(|c| keep & 1 << c == 0) {
        match prctl(libc::PR_CAPBSET_DROP, cap.into()) {
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {}
            other => other?,
        }
    }
    Ok(())
}

/// Sets the ambient set to `raise` (each capability up to `last` raised or lowered); errors
/// are ignored as runc's capability library ignores them.
pub fn set_ambient(raise: u64, last: u32) {
    for cap in 0..=last {
        let op = if raise & 1 << cap != 0 {
            libc::PR_CAP_AMBIENT_RAISE
        } else {
            libc::PR_CAP_AMBIENT_LOWER
        };
        // SAFETY: PR_CAP_AMBIENT takes integers only.
        unsafe { libc::prctl(libc::PR_CAP_AMBIENT, op, cap as libc::c_ulong, 0, 0) };
    }
}

/// capset(2), version 3 (64 capabilities in two words per set).
pub fn capset(effective: u64, permitted: u64, inheritable: u64) -> io::Result<()> {
    #[repr(C)]
    struct Header {
        version: u32,
        pid: libc::c_int,
    }
    #[repr(C)]
    #[derive(Clone, Copy)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    let word = |set: u64, i: u32| (set >> (32 * i)) as u32;
    let data = [0, 1].map(|i| Data {
        effective: word(effective, i),
        permitted: word(permitted, i),
        inheritable: word(inheritable, i),
    });
    let mut header = Header {
        version: 0x2008_0522,
        pid: 0,
    };
    // SAFETY: the kernel reads the header and two data structs of the v3 layout declared above.
    check(unsafe { libc::syscall(libc::SYS_capset, &mut header, data.as_ptr()) }).map(drop)
}

/// A new session and process group, led by this process.
pub fn setsid() -> io::Result<()> {
    // SAFETY: no arguments.
    check(unsafe { libc::setsid() }.into()).map(drop)
}

pub fn setgroups(gids: &[u32]) -> io::Result<()> {
    // SAFETY: setgroups reads `len` gids from the slice.
    check(unsafe { libc::setgroups(gids.len(), gids.as_ptr()) }.into()).map(drop)
}

pub fn setgid(gid: u32) -> io::Result<()> {
    // SAFETY: integer argument only.
    check(unsafe { libc::setgid(gid) }.into()).map(drop)
}

pub fn setuid(uid: u32) -> io::Result<()> {
    // SAFETY: integer argument only.
    check(unsafe { libc::setuid(uid) }.into()).map(drop)
}

pub fn setrlimit(resource: libc::c_int, soft: u64, hard: u64) -> io::Result<()> {
    let limit = libc::rlimit {
        rlim_cur: soft,
        rlim_max: hard,
    };
    // SAFETY: setrlimit reads the struct we pass.
    check(unsafe { libc::setrlimit(resource as _, &limit) }.into()).map(drop)
}

/// keyctl(KEYCTL_JOIN_SESSION_KEYRING, name): joins (or makes) the named session keyring.
pub fn join_session_keyring(name: &CStr) -> io::Result<()> {
    const KEYCTL_JOIN_SESSION_KEYRING: libc::c_long = 1;
    // SAFETY: keyctl reads the NUL-terminated name.
    check(unsafe { libc::syscall(libc::SYS_keyctl, KEYCTL_JOIN_SESSION_KEYRING, name.as_ptr()) })
        .map(drop)
}

/// Marks every descriptor from `first` up close-on-exec (close_range, Linux 5.11).
pub fn cloexec_from(first: RawFd) -> io::Result<()> {
    const CLOSE_RANGE_CLOEXEC: libc::c_uint = 1 << 2;
    // SAFETY: close_range only changes descriptor flags.
    check(unsafe {
        libc::syscall(
            libc::SYS_close_range,
            first as libc::c_uint,
            libc::c_uint::MAX,
            CLOSE_RANGE_CLOEXEC,
        )
    })
    .map(drop)
}

/// Signals whose inherited SIG_IGN runc's exec keeps: Go's runtime respects it for SIGHUP and
/// SIGINT, and neither Go nor glibc takes signal 32 (glibc's SIGCANCEL); every other signal
/// runc's Go runtime or glibc handles, so its exec starts with the default action.
const KEPT_IGNORED: [libc::c_int; 3] = [libc::SIGHUP, libc::SIGINT, 32];

/// Unblocks every signal and gives every ignored one but [`KEPT_IGNORED`] its default action,
/// as the process runc execs has them (an ignored signal stays ignored across execve; Rust's
/// runtime ignores SIGPIPE). Raw rt_sigaction: libc refuses the signals it reserves (32–34).
pub fn reset_signals() -> io::Result<()> {
    // SAFETY: sigemptyset fills a local set; sigprocmask reads it.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        check(libc::sigprocmask(libc::SIG_SETMASK, &set, std::ptr::null_mut()).into())?;
    }
    for sig in 1..=64 {
        if sig == libc::SIGKILL || sig == libc::SIGSTOP || KEPT_IGNORED.contains(&sig) {
            continue;
        }
        if rt_sigaction(sig, None)? == libc::SIG_IGN {
            rt_sigaction(sig, Some(libc::SIG_DFL))?;
        }
    }
    Ok(())
}

/// rt_sigaction(2): sets `handler` (no flags, no mask) if given; returns the handler before.
fn rt_sigaction(sig: libc::c_int, handler: Option<usize>) -> io::Result<usize> {
    /// The kernel's `struct sigaction` (x86_64 and aarch64 alike).
    #[repr(C)]
    #[derive(Default)]
    struct KernelSigaction {
        handler: usize,
        flags: libc::c_ulong,
        restorer: usize,
        mask: u64,
    }
    let new = handler.map(|handler| KernelSigaction {
        handler,
        ..Default::default()
    });
    let new_ptr = new
        .as_ref()
        .map_or(std::ptr::null(), |n| n as *const KernelSigaction);
    let mut old = KernelSigaction::default();
    // SAFETY: the kernel reads `new` (or nothing) and writes `old`, both of the layout above and
    // alive for the call; SIG_DFL and SIG_IGN need no restorer.
    check(unsafe { libc::syscall(libc::SYS_rt_sigaction, sig, new_ptr, &mut old, 8) })?;
    Ok(old.handler)
}

/// execve(2): returns only on failure.
pub fn execve(path: &CStr, args: &[CString], env: &[CString]) -> io::Error {
    let ptrs = |v: &[CString]| {
        v.iter()
            .map(|s| s.as_ptr())
            .chain(std::iter::once(std::ptr::null()))
            .collect::<Vec<_>>()
    };
    let (argv, envp) = (ptrs(args), ptrs(env));
    // SAFETY: path, argv and envp are NUL-terminated strings and NULL-terminated arrays that
    // live until the call returns.
    unsafe { libc::execve(path.as_ptr(), argv.as_ptr(), envp.as_ptr()) };
    io::Error::last_os_error()
}

/// Ends the forked child without running anything of the parent's (no buffered output, no
/// destructors).
pub fn exit_child(code: i32) -> ! {
    // SAFETY: _exit ends the process; nothing after it runs.
    unsafe { libc::_exit(code) }
}

/// (owner uid, owner gid, rdev) of an open descriptor.
pub fn fstat(fd: RawFd) -> io::Result<(u32, u32, u64)> {
    // SAFETY: fstat writes into a zeroed local stat buffer.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    check(unsafe { libc::fstat(fd, &mut st) }.into())?;
    Ok((st.st_uid, st.st_gid, st.st_rdev))
}

pub fn fchown(fd: RawFd, uid: u32, gid: u32) -> io::Result<()> {
    // SAFETY: integer arguments only.
    check(unsafe { libc::fchown(fd, uid, gid) }.into()).map(drop)
}

/// Opens the container's `/dev/ptmx` (a master pty) and unlocks its peer; refuses a file that
/// is not devpts's own ptmx (inode 2), which a container could have put there.
pub fn open_ptmx() -> io::Result<OwnedFd> {
    const DEVPTS_SUPER_MAGIC: libc::c_long = 0x1cd1;
    // SAFETY: open reads the NUL-terminated path and returns a new descriptor or -1.
    let fd = check(
        unsafe {
            libc::open(
                c"/dev/ptmx".as_ptr(),
                libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC,
            )
        }
        .into(),
    )?;
    // SAFETY: open just created this descriptor for us.
    let master = unsafe { OwnedFd::from_raw_fd(fd as RawFd) };
    // SAFETY: fstatfs and fstat write into zeroed locals.
    let (fs, st) = unsafe {
        let mut fs: libc::statfs = std::mem::zeroed();
        let mut st: libc::stat = std::mem::zeroed();
        check(libc::fstatfs(master.as_raw_fd(), &mut fs).into())?;
        check(libc::fstat(master.as_raw_fd(), &mut st).into())?;
        (fs, st)
    };
    if fs.f_type as libc::c_long != DEVPTS_SUPER_MAGIC || st.st_ino != 2 {
        return Err(io::Error::other("/dev/ptmx is not a devpts ptmx"));
    }
    let unlock: libc::c_int = 0;
    // SAFETY: TIOCSPTLCK reads an int.
    check(unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSPTLCK, &unlock) }.into())?;
    Ok(master)
}

/// The master's peer, opened through the master itself (TIOCGPTPEER, Linux 4.13), not by path.
pub fn pty_peer(master: &OwnedFd) -> io::Result<OwnedFd> {
    const TIOCGPTPEER: libc::c_ulong = 0x5441;
    // SAFETY: TIOCGPTPEER takes open flags and returns a new descriptor or -1.
    let fd = check(
        unsafe {
            libc::ioctl(
                master.as_raw_fd(),
                TIOCGPTPEER as _,
                libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC,
            )
        }
        .into(),
    )?;
    // SAFETY: the ioctl just created this descriptor for us.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

pub fn set_window_size(fd: &OwnedFd, rows: u16, cols: u16) -> io::Result<()> {
    let ws = libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads the winsize we pass.
    check(unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCSWINSZ, &ws) }.into()).map(drop)
}

/// Sends `fd` over a connected unix socket (SCM_RIGHTS), with `name` as the message, as runc's
/// `SendRawFd` does.
pub fn send_fd(socket: &OwnedFd, fd: &OwnedFd, name: &[u8]) -> io::Result<()> {
    let space = {
        // SAFETY: CMSG_SPACE computes a size from a size.
        unsafe { libc::CMSG_SPACE(std::mem::size_of::<RawFd>() as u32) as usize }
    };
    let mut control = vec![0u8; space];
    let mut iov = libc::iovec {
        iov_base: name.as_ptr() as *mut libc::c_void,
        iov_len: name.len(),
    };
    // SAFETY: msghdr is plain data; every pointer set below lives until sendmsg returns, and
    // the control buffer is CMSG_SPACE bytes for one descriptor.
    unsafe {
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr() as *mut libc::c_void;
        msg.msg_controllen = space as _;
        let cmsg = libc::CMSG_FIRSTHDR(&msg);
        (*cmsg).cmsg_level = libc::SOL_SOCKET;
        (*cmsg).cmsg_type = libc::SCM_RIGHTS;
        (*cmsg).cmsg_len = libc::CMSG_LEN(std::mem::size_of::<RawFd>() as u32) as _;
        std::ptr::write_unaligned(libc::CMSG_DATA(cmsg) as *mut RawFd, fd.as_raw_fd());
        check(libc::sendmsg(socket.as_raw_fd(), &msg, 0) as libc::c_long)?;
    }
    Ok(())
}

/// Makes `fd` this process's descriptors 0, 1 and 2.
pub fn dup_stdio(fd: &OwnedFd) -> io::Result<()> {
    for target in 0..3 {
        // SAFETY: dup2 onto the standard descriptors, which no Rust object owns here.
        check(unsafe { libc::dup2(fd.as_raw_fd(), target) }.into())?;
    }
    Ok(())
}

/// Makes the terminal on descriptor 0 this session's controlling terminal (TIOCSCTTY).
pub fn set_controlling_terminal() -> io::Result<()> {
    // SAFETY: TIOCSCTTY takes an integer.
    check(unsafe { libc::ioctl(0, libc::TIOCSCTTY, 0) }.into()).map(drop)
}

/// One BPF instruction (`struct sock_filter`).
pub type BpfInsn = libc::sock_filter;

/// The seccomp filter `index` (0 is the newest) of process `pid`, read with
/// PTRACE_SECCOMP_GET_FILTER: the process is seized and interrupted for the read, then let go
/// with any signal its stop held back.
pub fn seccomp_filter_of(pid: libc::pid_t, index: u32) -> io::Result<Vec<BpfInsn>> {
    // SAFETY: PTRACE_SEIZE and PTRACE_DETACH take integers only.
    check(unsafe { libc::ptrace(libc::PTRACE_SEIZE, pid, 0, 0) })?;
    let mut held = 0;
    let read = read_filter_while_stopped(pid, index, &mut held);
    // SAFETY: as above.
    unsafe { libc::ptrace(libc::PTRACE_DETACH, pid, 0, held as libc::c_long) };
    read
}

/// Stops the seized `pid`, reads its filter, and leaves in `held` the signal its stop held
/// back (a signal-delivery stop), which the detach must give back.
fn read_filter_while_stopped(
    pid: libc::pid_t,
    index: u32,
    held: &mut libc::c_int,
) -> io::Result<Vec<BpfInsn>> {
    const PTRACE_SECCOMP_GET_FILTER: u32 = 0x420c;
    // SAFETY: PTRACE_INTERRUPT takes integers; waitpid writes a local.
    let status = unsafe {
        check(libc::ptrace(libc::PTRACE_INTERRUPT, pid, 0, 0))?;
        let mut status = 0;
        check(libc::waitpid(pid, &mut status, libc::__WALL).into())?;
        status
    };
    if !libc::WIFSTOPPED(status) {
        return Err(io::Error::from_raw_os_error(libc::ESRCH));
    }
    if status >> 16 != libc::PTRACE_EVENT_STOP {
        *held = libc::WSTOPSIG(status);
    }
    // SAFETY: a null buffer asks for the length only.
    let len = check(unsafe {
        libc::ptrace(PTRACE_SECCOMP_GET_FILTER as _, pid, index as usize, 0usize)
    })?;
    let empty = BpfInsn {
        code: 0,
        jt: 0,
        jf: 0,
        k: 0,
    };
    let mut prog = vec![empty; len as usize];
    // SAFETY: the buffer holds the `len` instructions the kernel said the filter has.
    let got = check(unsafe {
        libc::ptrace(
            PTRACE_SECCOMP_GET_FILTER as _,
            pid,
            index as usize,
            prog.as_mut_ptr(),
        )
    })?;
    if got != len {
        return Err(io::Error::other("the filter changed length while read"));
    }
    Ok(prog)
}

/// seccomp(SECCOMP_SET_MODE_FILTER, flags, prog).
pub fn seccomp_set_filter(prog: &[BpfInsn], flags: u32) -> io::Result<()> {
    const SECCOMP_SET_MODE_FILTER: libc::c_uint = 1;
    let fprog = libc::sock_fprog {
        len: prog.len() as libc::c_ushort,
        filter: prog.as_ptr() as *mut BpfInsn,
    };
    // SAFETY: the kernel reads `fprog` and the `len` instructions it points to.
    check(unsafe { libc::syscall(libc::SYS_seccomp, SECCOMP_SET_MODE_FILTER, flags, &fprog) })
        .map(drop)
}

//! The system calls a holder makes, as safe functions. Every `unsafe` of this crate is here.

use core::ffi::{c_int, CStr};

/// An errno value, as the failed call left it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Errno(pub c_int);

fn last_errno() -> Errno {
    // SAFETY: __errno_location returns this thread's errno slot, valid for the thread's life.
    Errno(unsafe { *libc::__errno_location() })
}

fn check(r: c_int) -> Result<c_int, Errno> {
    if r < 0 {
        Err(last_errno())
    } else {
        Ok(r)
    }
}

/// The C library's text for `e` (a static string in musl and glibc).
pub fn strerror(e: Errno) -> &'static CStr {
    // SAFETY: strerror returns a pointer to a NUL-terminated string that the C library keeps for
    // the process's life; the holder has one thread, so no other call can overwrite it.
    unsafe { CStr::from_ptr(libc::strerror(e.0)) }
}

pub struct Fd(c_int);

impl Drop for Fd {
    fn drop(&mut self) {
        // SAFETY: self.0 is a descriptor this Fd opened and owns alone.
        unsafe { libc::close(self.0) };
    }
}

pub fn open(path: &CStr, flags: c_int) -> Result<Fd, Errno> {
    // SAFETY: path is NUL-terminated; no mode argument is read without O_CREAT.
    check(unsafe { libc::open(path.as_ptr(), flags | libc::O_CLOEXEC) }).map(Fd)
}

pub fn setns(fd: &Fd, nstype: c_int) -> Result<(), Errno> {
    // SAFETY: plain syscall on a descriptor we own.
    check(unsafe { libc::setns(fd.0, nstype) }).map(drop)
}

pub fn unshare(flags: c_int) -> Result<(), Errno> {
    // SAFETY: plain syscall with integer arguments.
    check(unsafe { libc::unshare(flags) }).map(drop)
}

pub fn sethostname(name: &[u8]) -> Result<(), Errno> {
    // SAFETY: the pointer and length describe `name`, which the kernel only reads.
    check(unsafe { libc::sethostname(name.as_ptr().cast(), name.len()) }).map(drop)
}

/// Writes all of `data` to `fd`, retrying on EINTR and short writes.
pub fn write_all(fd: c_int, mut data: &[u8]) -> Result<(), Errno> {
    while !data.is_empty() {
        // SAFETY: the pointer and length describe `data`, which the kernel only reads.
        let n = unsafe { libc::write(fd, data.as_ptr().cast(), data.len()) };
        if n < 0 {
            let e = last_errno();
            if e.0 == libc::EINTR {
                continue;
            }
            return Err(e);
        }
        data = &data[n as usize..];
    }
    Ok(())
}

pub fn write_file(fd: &Fd, data: &[u8]) -> Result<(), Errno> {
    write_all(fd.0, data)
}

/// Closes every descriptor above stderr: one inherited from the shim (a listening socket, a pipe)
/// would outlive the shim and keep its peers waiting.
pub fn close_inherited_fds() {
    // SAFETY: called first thing in the holder, before it opened anything; close_range (Linux
    // 5.9) only closes descriptors.
    let r = unsafe { libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 0u32) };
    if r == 0 {
        return;
    }
    // Older kernels: close whatever could be open, up to the descriptor limit.
    // SAFETY: sysconf only reads a limit.
    let max = unsafe { libc::sysconf(libc::_SC_OPEN_MAX) };
    let max = if max > 0 {
        max.min(1 << 20) as c_int
    } else {
        1024
    };
    for fd in 3..max {
        // SAFETY: as above; EBADF for descriptors that are not open is expected and ignored.
        unsafe { libc::close(fd) };
    }
}

/// Points stdin, stdout and stderr at /dev/null, letting go of the shim's pipes.
pub fn stdio_to_dev_null() {
    if let Ok(null) = open(c"/dev/null", libc::O_RDWR) {
        for fd in 0..3 {
            // SAFETY: dup2 onto the standard descriptors, which nothing in the holder wraps.
            unsafe { libc::dup2(null.0, fd) };
        }
    }
}

pub struct SigSet(libc::sigset_t);

impl SigSet {
    pub fn of(signals: &[c_int]) -> SigSet {
        // SAFETY: sigset_t is plain data; sigemptyset initialises it before any other use.
        let mut set: libc::sigset_t = unsafe { core::mem::zeroed() };
        // SAFETY: `set` is a valid sigset_t; the signal numbers are libc's constants.
        unsafe {
            libc::sigemptyset(&mut set);
            for &s in signals {
                libc::sigaddset(&mut set, s);
            }
        }
        SigSet(set)
    }

    /// Blocks the set, so that its signals wait for `wait` instead of acting.
    pub fn block(&self) -> Result<(), Errno> {
        // SAFETY: a valid set in, no old set out; the holder has one thread.
        check(unsafe { libc::sigprocmask(libc::SIG_BLOCK, &self.0, core::ptr::null_mut()) })
            .map(drop)
    }

    /// The next pending signal of the set.
    pub fn wait(&self) -> Result<c_int, Errno> {
        let mut sig: c_int = 0;
        // SAFETY: a valid set and an out-parameter that lives across the call.
        let r = unsafe { libc::sigwait(&self.0, &mut sig) };
        if r == 0 {
            Ok(sig)
        } else {
            Err(Errno(r))
        }
    }
}

pub enum Fork {
    Parent { child: libc::pid_t },
    Child,
}

pub fn fork() -> Result<Fork, Errno> {
    // SAFETY: the holder has a single thread and no allocator state shared with anything, so
    // the child may go on with any code.
    match check(unsafe { libc::fork() })? {
        0 => Ok(Fork::Child),
        child => Ok(Fork::Parent { child }),
    }
}

/// Reaps every exited child without blocking.
pub fn reap_children() {
    loop {
        let mut status: c_int = 0;
        // SAFETY: plain syscall with an out-parameter that lives across the call.
        let r = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
        if r > 0 || (r < 0 && last_errno().0 == libc::EINTR) {
            continue;
        }
        return;
    }
}

pub fn exit(code: c_int) -> ! {
    // SAFETY: ends the process; the holder has no buffers to flush.
    unsafe { libc::_exit(code) }
}

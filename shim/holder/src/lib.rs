//! The namespace holder of a pause-less podshim pod: the one process of the pod that is not a
//! container.
//!
//! CRI builds every container's spec from `/proc/<sandbox pid>/ns/{net,ipc,uts[,pid]}`, so the
//! pid StartSandbox returns must be a live process sitting in the pod's network namespace and
//! holding its IPC and UTS (and, for shareProcessNamespace, PID) namespaces, and for a
//! `hostUsers: false` pod its user namespace (`/proc/<pid>/ns/user`), with the pod's id
//! mappings, which the shim names. The shim starts this
//! crate's binary, `podshim-holder`, for it: no image, no OCI runtime call. The holder sets the
//! pod's hostname and sysctls inside those namespaces, reports its pid and sleeps in `sigwait`,
//! reaping orphans when it is the pod's PID 1.
//!
//! The crate is `no_std` and allocates nothing, so that the binary is a few pages of musl and
//! this file; the shim links the same code to act as a holder itself where `podshim-holder` is
//! not installed.
#![cfg_attr(not(test), no_std)]
#![deny(unsafe_code)]

pub mod args;
#[allow(unsafe_code)]
mod sys;

/// The holder binary's file name; the shim runs it from its own directory.
pub const BINARY: &str = "podshim-holder";

use core::ffi::{c_int, CStr};

use args::{ArgError, Spec};
use sys::{Errno, Fork, SigSet};

/// Runs the holder for `args` (the command line after the program name); never returns.
///
/// The caller must be single-threaded: the holder forks.
pub fn hold(args: &[&CStr]) -> ! {
    sys::close_inherited_fds();
    let spec = match Spec::parse(args) {
        Ok(spec) => spec,
        Err(e) => fail_args(e),
    };
    if let Err((what, detail, e)) = enter_pod(&spec) {
        fail(what, detail, e)
    }
    // Blocked before the fork so that no signal is lost between fork and sigwait.
    let signals = SigSet::of(&[libc::SIGTERM, libc::SIGINT, libc::SIGCHLD]);
    if let Err(e) = signals.block() {
        fail("block signals", b"", e)
    }
    // The fork puts the holder into the new PID namespace (unshare moves only children there)
    // and lets the parent report its pid and exit, which re-parents the holder to the shim.
    match sys::fork() {
        Err(e) => fail("fork", b"", e),
        Ok(Fork::Parent { child }) => {
            let mut buf = [0u8; 12];
            let _ = sys::write_all(1, decimal_line(child as u32, &mut buf));
            sys::exit(0)
        }
        Ok(Fork::Child) => {}
    }
    // The shim reads our pipes to EOF: it has its answer once the parent is gone.
    sys::stdio_to_dev_null();
    loop {
        match signals.wait() {
            Ok(libc::SIGCHLD) => sys::reap_children(),
            Ok(_) => sys::exit(0),
            Err(_) => continue,
        }
    }
}

/// What failed, about what, and why.
type Failure<'a> = (&'static str, &'a [u8], Errno);

fn enter_pod<'a>(spec: &Spec<'a>) -> Result<(), Failure<'a>> {
    // The user namespace first: the namespaces unshared below are then owned by it, and its
    // full capabilities cover the network namespace CRI made in it.
    if let Some(path) = spec.userns {
        let detail = path.to_bytes();
        let ns = sys::open(path, libc::O_RDONLY).map_err(|e| ("open userns", detail, e))?;
        sys::setns(&ns, libc::CLONE_NEWUSER).map_err(|e| ("join userns", detail, e))?;
    }
    if let Some(path) = spec.netns {
        let detail = path.to_bytes();
        let ns = sys::open(path, libc::O_RDONLY).map_err(|e| ("open netns", detail, e))?;
        sys::setns(&ns, libc::CLONE_NEWNET).map_err(|e| ("join netns", detail, e))?;
    }
    let mut flags: c_int = 0;
    for (on, flag) in [
        (spec.new_ipc, libc::CLONE_NEWIPC),
        (spec.new_uts, libc::CLONE_NEWUTS),
        (spec.new_pid, libc::CLONE_NEWPID),
    ] {
        if on {
            flags |= flag;
        }
    }
    sys::unshare(flags).map_err(|e| ("unshare the pod's namespaces", &b""[..], e))?;
    if let (true, Some(name)) = (spec.new_uts, spec.hostname) {
        let name = name.to_bytes();
        if !name.is_empty() {
            sys::sethostname(name).map_err(|e| ("set the pod's hostname", name, e))?;
        }
    }
    // net.* and IPC sysctls are per namespace: /proc/sys resolves them for the writer's.
    for (name, value) in spec.sysctls() {
        let mut buf = [0u8; 512];
        let path = args::sysctl_path(name, &mut buf).ok_or((
            "sysctl name too long",
            name,
            Errno(libc::ENAMETOOLONG),
        ))?;
        let f = sys::open(path, libc::O_WRONLY).map_err(|e| ("sysctl", name, e))?;
        sys::write_file(&f, value).map_err(|e| ("sysctl", name, e))?;
    }
    Ok(())
}

/// Prints `holder: <what> <detail>: <strerror>` for the shim, which names it in CreateSandbox's
/// error, and exits 1.
fn fail(what: &str, detail: &[u8], e: Errno) -> ! {
    let mut code = [0u8; 12];
    let parts: [&[u8]; 9] = [
        b"sandbox holder: ",
        what.as_bytes(),
        if detail.is_empty() { b"" } else { b" " },
        detail,
        b": ",
        sys::strerror(e).to_bytes(),
        b" (errno ",
        decimal(e.0 as u32, &mut code),
        b")\n",
    ];
    for part in parts {
        let _ = sys::write_all(2, part);
    }
    sys::exit(1)
}

fn fail_args(e: ArgError) -> ! {
    let (what, arg): (&str, &[u8]) = match e {
        ArgError::MissingMarker => ("not started as a holder", b""),
        ArgError::MissingSandboxId => ("missing sandbox id", b""),
        ArgError::MissingValue(a) => ("needs a value:", a.to_bytes()),
        ArgError::Unknown(a) => ("unknown argument", a.to_bytes()),
        ArgError::SysctlWithoutValue(a) => ("sysctl without '=':", a.to_bytes()),
        ArgError::BadSysctlName(a) => ("invalid sysctl name:", a.to_bytes()),
    };
    let parts: [&[u8]; 5] = [
        b"sandbox holder arguments: ",
        what.as_bytes(),
        b" ",
        arg,
        b"\n",
    ];
    for part in parts {
        let _ = sys::write_all(2, part);
    }
    sys::exit(2)
}

/// `n` in decimal, into the end of `buf`.
fn decimal(mut n: u32, buf: &mut [u8; 12]) -> &[u8] {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            return &buf[i..];
        }
    }
}

/// `n` in decimal and a newline.
fn decimal_line(n: u32, buf: &mut [u8; 12]) -> &[u8] {
    let len = decimal(n, buf).len();
    let (start, end) = (buf.len() - len, buf.len());
    buf.copy_within(start..end, start - 1);
    buf[end - 1] = b'\n';
    &buf[start - 1..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_print_as_the_shim_parses_them() {
        let mut buf = [0u8; 12];
        assert_eq!(decimal(0, &mut buf), b"0");
        assert_eq!(decimal(u32::MAX, &mut buf), b"4294967295");
        assert_eq!(decimal_line(4194304, &mut buf), b"4194304\n");
        assert_eq!(decimal_line(7, &mut buf), b"7\n");
    }
}

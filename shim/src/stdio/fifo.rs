//! Opening containerd's FIFOs and the pipes a process writes into.

use std::{
    os::fd::{AsFd, OwnedFd},
    path::Path,
};

use nix::{
    errno::Errno,
    fcntl::{fcntl, open, FcntlArg, OFlag},
    sys::stat::Mode,
    unistd::pipe2,
};

use crate::error::{Error, Result};

/// Where the shim writes one output stream of a process.
pub struct FifoSink {
    pub writer: OwnedFd,
    /// A read end the shim holds but never reads: while containerd is away the FIFO keeps
    /// existing as a pipe, writes fill its buffer instead of failing with EPIPE, and opening the
    /// write end never blocks or fails with ENXIO.
    pub keeper: OwnedFd,
}

pub fn open_sink(path: &str, stream: &str) -> Result<FifoSink> {
    let keeper = open_path(path, stream, OFlag::O_RDONLY)?;
    let writer = open_path(path, stream, OFlag::O_WRONLY)?;
    Ok(FifoSink { writer, keeper })
}

/// containerd's stdin FIFO, read side. Until containerd opens its write end, epoll reports
/// nothing (Linux reports hang-up only after a writer came and went), so a read that returns 0
/// after readiness is a real end of input.
pub fn open_source(path: &str) -> Result<OwnedFd> {
    open_path(path, "stdin", OFlag::O_RDONLY)
}

fn open_path(path: &str, stream: &str, mode: OFlag) -> Result<OwnedFd> {
    if let Some((scheme, _)) = path.split_once("://") {
        return Err(Error::InvalidArgument(format!(
            "{stream} URI scheme {scheme}:// is not supported; podshim takes FIFO paths"
        )));
    }
    open(
        Path::new(path),
        mode | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| match e {
        Errno::ENOENT => Error::NotFound(format!("{stream} FIFO {path} does not exist")),
        e => Error::sys(format!("open {stream} FIFO {path}"))(e),
    })
}

/// A pipe for one of the process's standard streams: `(shim end, process end)`. The shim's end
/// is non-blocking; the process's end stays blocking, as programs expect.
pub fn process_pipe(process_reads: bool) -> Result<(OwnedFd, OwnedFd)> {
    let (r, w) = pipe2(OFlag::O_CLOEXEC).map_err(Error::sys("create pipe"))?;
    let (ours, theirs) = if process_reads { (w, r) } else { (r, w) };
    set_nonblocking(&ours)?;
    Ok((ours, theirs))
}

pub fn set_nonblocking(fd: &impl AsFd) -> Result<()> {
    let flags = fcntl(fd.as_fd(), FcntlArg::F_GETFL).map_err(Error::sys("F_GETFL"))?;
    let flags = OFlag::from_bits_truncate(flags) | OFlag::O_NONBLOCK;
    fcntl(fd.as_fd(), FcntlArg::F_SETFL(flags)).map_err(Error::sys("F_SETFL"))?;
    Ok(())
}

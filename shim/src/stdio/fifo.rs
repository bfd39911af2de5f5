//! Opening where output goes (containerd's FIFOs, log files) and the pipes a process uses, and
//! whether containerd holds a FIFO open for reading.

use std::{
    os::fd::{AsFd, AsRawFd, OwnedFd},
    path::Path,
};

use nix::{
    errno::Errno,
    fcntl::{fcntl, open, FcntlArg, OFlag},
    sys::stat::{stat, Mode, SFlag},
    unistd::pipe2,
};

use crate::error::{Error, Result};

/// Where the shim writes one output stream of a process.
pub enum Sink {
    /// containerd's FIFO, or a pipe to a logging binary: it may be full.
    Pipe(FifoSink),
    /// A file, appended to: always has room (or the disk is full).
    File(OwnedFd),
}

pub struct FifoSink {
    pub writer: OwnedFd,
    /// A read end the shim holds but never reads (a FIFO's; none for a logger's pipe): while
    /// containerd is away the FIFO keeps existing as a pipe, writes fill its buffer instead of
    /// failing with EPIPE, and opening the write end never blocks or fails with ENXIO.
    pub keeper: Option<OwnedFd>,
}

/// The path containerd named: a FIFO, or a file that exists (a path without a scheme that is no
/// FIFO is appended to, as by containerd's runc shim: `ctr run --log-uri /a/file`).
pub fn open_sink(path: &str, stream: &str) -> Result<Sink> {
    if let Some((scheme, _)) = path.split_once("://") {
        return Err(Error::InvalidArgument(format!(
            "{stream} URI scheme {scheme}:// is not supported there; only stdout names a scheme"
        )));
    }
    let is_fifo = match stat(Path::new(path)) {
        Ok(st) => SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFIFO,
        Err(Errno::ENOENT) => {
            return Err(Error::NotFound(format!("{stream} {path} does not exist")))
        }
        Err(e) => return Err(Error::sys(format!("stat {stream} {path}"))(e)),
    };
    if !is_fifo {
        return open_log_file(Path::new(path), stream, OFlag::empty()).map(Sink::File);
    }
    let keeper = open_path(path, stream, OFlag::O_RDONLY)?;
    let writer = open_path(path, stream, OFlag::O_WRONLY)?;
    Ok(Sink::Pipe(FifoSink {
        writer,
        keeper: Some(keeper),
    }))
}

/// `file://`: the file both streams are appended to, created (0644, directories 0755) if
/// need be.
pub fn create_log_file(path: &Path) -> Result<OwnedFd> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .map_err(Error::io(format!("create log directory {}", dir.display())))?;
    }
    open_log_file(path, "stdout", OFlag::O_CREAT)
}

fn open_log_file(path: &Path, stream: &str, create: OFlag) -> Result<OwnedFd> {
    open(
        path,
        OFlag::O_WRONLY | OFlag::O_APPEND | OFlag::O_CLOEXEC | create,
        Mode::from_bits_truncate(0o644),
    )
    .map_err(Error::sys(format!("open {stream} file {}", path.display())))
}

/// containerd's stdin FIFO, read side. Until containerd opens its write end, epoll reports
/// nothing (Linux reports hang-up only after a writer came and went), so a read that returns 0
/// after readiness is a real end of input.
pub fn open_source(path: &str) -> Result<OwnedFd> {
    if path.contains("://") {
        return Err(Error::InvalidArgument(format!(
            "stdin {path:?}: stdin is a FIFO path, never a URI"
        )));
    }
    open_path(path, "stdin", OFlag::O_RDONLY)
}

fn open_path(path: &str, stream: &str, mode: OFlag) -> Result<OwnedFd> {
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

/// Whether a FIFO the shim writes to is open for reading by anyone but the shim (whose keeper
/// must be closed by then): a write-only open that does not wait fails with ENXIO exactly when
/// the FIFO has no reader. A reader still blocked in its open(2) counts.
pub fn has_reader(writer: &impl AsRawFd) -> std::io::Result<bool> {
    let path = format!("/proc/self/fd/{}", writer.as_raw_fd());
    match open(
        Path::new(&path),
        OFlag::O_WRONLY | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC,
        Mode::empty(),
    ) {
        Ok(probe) => {
            drop(probe);
            Ok(true)
        }
        Err(Errno::ENXIO) => Ok(false),
        Err(e) => Err(e.into()),
    }
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

//! The copy loops: process output → containerd's FIFO (never stalling the process while the
//! backlog has room), and containerd's stdin FIFO → process.

use std::{
    cell::RefCell,
    io,
    os::fd::{AsFd, OwnedFd},
    sync::Arc,
};

use log::warn;
use nix::errno::Errno;
use tokio::{
    io::unix::AsyncFd,
    sync::{watch, Notify},
};

use super::{backlog::Backlog, fifo::FifoSink};

/// One read buffer for every stream of the pod: the runtime has one thread and a buffer is only
/// used between a readiness wake-up and the next await, never across one.
const READ_BUF: usize = 64 * 1024;

thread_local! {
    static BUF: RefCell<Vec<u8>> = RefCell::new(vec![0; READ_BUF]);
}

/// How often an ended stream checks whether containerd read the FIFO's last bytes.
const FIFO_DRAIN_POLL: std::time::Duration = std::time::Duration::from_millis(50);
/// How often bytes the spill file refused (disk full) are offered to it again.
const SPILL_RETRY: std::time::Duration = std::time::Duration::from_millis(500);

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StreamState {
    /// The process side reached end of file (every writer closed, or the pty hung up).
    pub eof: bool,
    /// Bytes read but not yet in the FIFO.
    pub pending: u64,
    /// Everything was handed to the FIFO and the FIFO's write end is closed.
    pub done: bool,
}

pub async fn copy_output(
    source: Arc<AsyncFd<OwnedFd>>,
    sink: FifoSink,
    mut backlog: Backlog,
    state: watch::Sender<StreamState>,
) {
    let FifoSink { writer, keeper } = sink;
    let sink_fd = match crate::sys::register(writer) {
        Ok(fd) => fd,
        Err(e) => {
            warn!("register FIFO: {e}");
            return;
        }
    };
    let mut eof = false;
    loop {
        let can_read = !eof && backlog.room() > 0;
        let must_write = !backlog.is_empty();
        if !can_read && !must_write {
            break;
        }
        tokio::select! {
            biased;
            ready = sink_fd.writable(), if must_write => {
                let Ok(mut guard) = ready else { break };
                match flush(sink_fd.get_ref(), &mut backlog) {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => guard.clear_ready(),
                    Err(e) => {
                        warn!("write FIFO: {e}; dropping {} bytes", backlog.len());
                        backlog.consume(backlog.len() as usize);
                    }
                }
            }
            _ = tokio::time::sleep(SPILL_RETRY), if backlog.is_carrying() => {
                backlog.retry_spill();
            }
            ready = source.readable(), if can_read => {
                let Ok(mut guard) = ready else { break };
                match pump(source.get_ref(), sink_fd.get_ref(), &mut backlog) {
                    Ok(0) => eof = true,
                    Ok(_) => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => guard.clear_ready(),
                    Err(e) => {
                        warn!("read process output: {e}");
                        eof = true;
                    }
                }
            }
        }
        let now = StreamState {
            eof,
            pending: backlog.len(),
            done: false,
        };
        // Waiters care about transitions, not every byte count.
        if now.eof != state.borrow().eof || (now.pending == 0) != (state.borrow().pending == 0) {
            state.send_replace(now);
        }
    }
    // Bytes in the FIFO's own buffer are lost if the shim closes its ends before containerd
    // read them (the process may end while containerd restarts): wait for a reader.
    while crate::sys::unread_bytes(keeper.as_fd()).unwrap_or(0) > 0 {
        tokio::time::sleep(FIFO_DRAIN_POLL).await;
    }
    drop(sink_fd);
    drop(keeper);
    state.send_replace(StreamState {
        eof: true,
        pending: 0,
        done: true,
    });
}

/// Reads once from the process; the bytes go straight to the FIFO when nothing waits before
/// them, and into the backlog otherwise. Returns the bytes read (0 at end of file).
fn pump(source: &OwnedFd, sink: &OwnedFd, backlog: &mut Backlog) -> io::Result<usize> {
    BUF.with(|buf| {
        let mut buf = buf.borrow_mut();
        let room = backlog.room().min(buf.len() as u64) as usize;
        let n = match nix::unistd::read(source.as_fd(), &mut buf[..room]) {
            Ok(n) => n,
            // A pty reports the last process closing its side as EIO.
            Err(Errno::EIO) => 0,
            Err(e) => return Err(e.into()),
        };
        let mut written = 0;
        if backlog.is_empty() {
            while written < n {
                match nix::unistd::write(sink, &buf[written..n]) {
                    Ok(m) => written += m,
                    Err(Errno::EAGAIN) => break,
                    Err(Errno::EINTR) => continue,
                    Err(e) => {
                        warn!("write FIFO: {e}; {} bytes dropped", n - written);
                        written = n;
                    }
                }
            }
        }
        backlog.push(&buf[written..n]);
        Ok(n)
    })
}

/// Writes waiting bytes until the backlog is empty or the FIFO is full (WouldBlock).
fn flush(sink: &OwnedFd, backlog: &mut Backlog) -> io::Result<()> {
    BUF.with(|buf| {
        let mut buf = buf.borrow_mut();
        while !backlog.is_empty() {
            let chunk = backlog
                .front(&mut buf)
                .map_err(|e| io::Error::other(e.to_string()))?;
            match nix::unistd::write(sink, chunk) {
                Ok(n) => backlog.consume(n),
                Err(Errno::EINTR) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    })
}

/// containerd's stdin FIFO → the process, until the FIFO's writer closes or CloseIO.
/// Dropping `target` closes the process's stdin when the shim held its only write end.
pub async fn copy_input(source: OwnedFd, target: Arc<AsyncFd<OwnedFd>>, close: Arc<Notify>) {
    let source = match crate::sys::register(source) {
        Ok(fd) => fd,
        Err(e) => {
            warn!("register stdin FIFO: {e}");
            return;
        }
    };
    let mut buf = vec![0u8; 8 * 1024];
    loop {
        let n = tokio::select! {
            _ = close.notified() => return,
            r = read(&source, &mut buf) => match r {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            },
        };
        let mut off = 0;
        while off < n {
            tokio::select! {
                _ = close.notified() => return,
                r = write(&target, &buf[off..n]) => match r {
                    Ok(m) => off += m,
                    Err(e) => {
                        warn!("write process stdin: {e}");
                        return;
                    }
                },
            }
        }
    }
}

async fn read(fd: &AsyncFd<OwnedFd>, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        let mut guard = fd.readable().await?;
        match guard.try_io(|fd| nix::unistd::read(fd.get_ref().as_fd(), buf).map_err(Into::into)) {
            Ok(r) => return r,
            Err(_would_block) => continue,
        }
    }
}

async fn write(fd: &AsyncFd<OwnedFd>, buf: &[u8]) -> io::Result<usize> {
    loop {
        let mut guard = fd.writable().await?;
        match guard.try_io(|fd| nix::unistd::write(fd.get_ref(), buf).map_err(Into::into)) {
            Ok(r) => return r,
            Err(_would_block) => continue,
        }
    }
}

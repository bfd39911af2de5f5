//! The copy loops: process output → containerd's FIFO (or a log file), and containerd's stdin FIFO → process.
//!
//! Output moves from the process's pipe into the FIFO inside the kernel (`splice`), without
//! passing through the shim, while containerd reads. When the FIFO is full the bytes wait in the
//! process's own pipe, as behind containerd's runc shim; once the FIFO has taken nothing for
//! `READER_AWAY` its reader is gone (containerd restarting) and the shim reads the process's
//! output into the bounded backlog, so the process runs on. Invariant: bytes reach the FIFO in
//! the order the process wrote them: nothing is spliced while the backlog holds bytes, and the
//! backlog is only filled from the process's pipe, behind what the FIFO already has.
//!
//! A stream that fills its FIFO while containerd reads is moving more than containerd reads.
//! Its two pipes then grow to `ROOMY_PIPE` (when containerd first frees room in a full FIFO: a
//! FIFO that is full because containerd is away does not grow), and after each refill that
//! finds the FIFO full again the shim rests before it waits for room: one refill then moves what
//! many of containerd's reads took, where otherwise every read that freed room would wake the
//! shim for one splice. The rest is the time containerd takes to read half a FIFO at the rate it
//! read since the last refill, less the runtime timer's up to 1 ms of lateness, within
//! `REST_MIN..=REST_MAX`: the FIFO does not run dry at the rate containerd reads. A refill finds
//! the FIFO full when a splice is refused, or when a splice into the roomy FIFO leaves bytes in
//! the process's pipe: containerd frees room while the shim refills, and a splice for each of
//! its reads costs the shim more than the bytes. Likewise a roomy stream whose refills emptied
//! the process's pipe twice within `2 * REST_MIN` lets the process's next write wait `REST_MIN`
//! (`not_before`): the process writes while the shim refills, and one splice for each of its
//! writes is what the wait saves. A pipe emptied less often than that never waits.

use std::{
    cell::RefCell,
    io,
    os::fd::{AsFd, OwnedFd},
    sync::Arc,
    time::Duration,
};

use log::warn;
use nix::errno::Errno;
use tokio::{
    io::unix::AsyncFd,
    sync::{watch, Notify},
    time::Instant,
};

use super::{backlog::Backlog, fifo::FifoSink};

/// One read buffer for every stream of the pod: the runtime has one thread and a buffer is only
/// used between a readiness wake-up and the next await, never across one.
const READ_BUF: usize = 64 * 1024;

thread_local! {
    static BUF: RefCell<Vec<u8>> = RefCell::new(vec![0; READ_BUF]);
}

/// What a stream's two pipes grow to once its FIFO was full. At most the kernel's
/// `pipe-max-size` default, which needs no privilege.
pub(super) const ROOMY_PIPE: usize = 1 << 20;
/// The bounds of the pause after a refill found the FIFO full again. The runtime's timer wakes up
/// to `TIMER_SLACK` late: at the shortest, containerd reads under a full FIFO in the 1 to 2 ms
/// at up to about 500 MB/s.
pub(super) const REST_MIN: Duration = Duration::from_millis(1);
const TIMER_SLACK: Duration = Duration::from_millis(1);
pub(super) const REST_MAX: Duration = Duration::from_millis(10);
/// How long a full FIFO may take nothing before its reader counts as gone. containerd reads every
/// FIFO continuously while it runs; a slower reader is waited for, as runc's shim does.
pub const READER_AWAY: Duration = Duration::from_secs(1);
/// At most this much per splice (a pipe moves whole buffers; the FIFO takes what fits).
const SPLICE_MAX: usize = 1 << 20;
/// Splices of one stream per wake-up before the pod's other streams get their turn.
const SPLICES_PER_WAKE: usize = 16;
/// How often an ended stream checks whether containerd read the FIFO's last bytes (or, at most,
/// opened the FIFO: from `READER_POLL_MIN`, doubling).
const FIFO_DRAIN_POLL: Duration = Duration::from_millis(50);
const READER_POLL_MIN: Duration = Duration::from_millis(1);
/// How often bytes the spill file refused (disk full) are offered to it again.
const SPILL_RETRY: Duration = Duration::from_millis(500);

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StreamState {
    /// The process side reached end of file (every writer closed, or the pty hung up).
    pub eof: bool,
    /// Bytes read but not yet in the FIFO.
    pub pending: u64,
    /// Everything was handed to the FIFO and the FIFO's write end is closed.
    pub done: bool,
    /// Ended, and containerd read every byte; the FIFO closes once a reader of containerd's has
    /// it open (`done` then).
    pub delivered: bool,
    /// Once done: how many bytes went through the backlog rather than straight to the FIFO.
    pub backlogged: u64,
}

/// What one pass from the process's side did.
#[derive(Debug, PartialEq, Eq)]
enum Pumped {
    /// Bytes moved (into the FIFO, or the backlog).
    Moved,
    /// The process side reached end of file.
    Eof,
    /// The FIFO is full and bytes wait in the process's pipe.
    FifoFull,
    /// Bytes moved and filled the FIFO: the rest are in the process's pipe. The FIFO may have
    /// room again already (its readiness stands); the shim rests before it refills.
    Filled,
}

/// One output stream's copy: the process's side, containerd's FIFO, and what waits between.
struct Stream<'a> {
    source: &'a OwnedFd,
    sink: &'a OwnedFd,
    backlog: Backlog,
    /// False once the source refused a splice (a pty): every byte is read and written.
    splice: bool,
    /// Since when the FIFO is full while bytes wait in the process's pipe.
    held: Option<Instant>,
    /// Whether both pipes grew to `ROOMY_PIPE` (tried once, when containerd first read from a
    /// full FIFO).
    roomy: Option<bool>,
    /// Until when the FIFO's room is not waited for (see the module comment).
    rest: Option<Instant>,
    /// Until when a write of the process does not start a refill: the last refill of a roomy
    /// stream emptied the process's pipe while the process wrote (see the module comment).
    not_before: Option<Instant>,
    /// When a refill last emptied the process's pipe.
    drained: Option<Instant>,
    /// When a refill last found the FIFO full, and `spliced` then.
    last_full: Option<(Instant, u64)>,
    /// Bytes spliced so far.
    spliced: u64,
}

pub async fn copy_output(
    source: Arc<AsyncFd<OwnedFd>>,
    sink: FifoSink,
    backlog: Backlog,
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
    let mut s = Stream {
        source: source.get_ref(),
        sink: sink_fd.get_ref(),
        backlog,
        splice: true,
        held: None,
        roomy: None,
        rest: None,
        not_before: None,
        drained: None,
        last_full: None,
        spliced: 0,
    };
    let mut eof = false;
    loop {
        let away = s.held.is_some_and(|t| t.elapsed() >= READER_AWAY);
        let can_read = !eof && s.backlog.room() > 0 && (s.held.is_none() || away);
        let must_write = !s.backlog.is_empty() || s.held.is_some();
        if !can_read && !must_write {
            break;
        }
        let resting = s.rest.is_some_and(|t| Instant::now() < t);
        tokio::select! {
            biased;
            _ = tokio::time::sleep_until(s.rest.unwrap_or_else(Instant::now)), if resting => {
                s.rest = None;
            }
            ready = sink_fd.writable(), if must_write && !resting => {
                let Ok(mut guard) = ready else { break };
                match s.unblock() {
                    Ok(Pumped::Eof) => eof = true,
                    Ok(Pumped::FifoFull) => guard.clear_ready(),
                    Ok(Pumped::Moved | Pumped::Filled) => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => guard.clear_ready(),
                    Err(e) => {
                        warn!("write FIFO: {e}; dropping {} bytes", s.backlog.len());
                        s.backlog.consume(s.backlog.len() as usize);
                    }
                }
            }
            _ = tokio::time::sleep_until(s.held.map_or_else(Instant::now, |t| t + READER_AWAY)),
                if s.held.is_some() && !away => {}
            _ = tokio::time::sleep(SPILL_RETRY), if s.backlog.is_carrying() => {
                s.backlog.retry_spill();
            }
            ready = source.readable(), if can_read => {
                let Ok(mut guard) = ready else { break };
                if let Some(t) = s.not_before.take().filter(|_| !away) {
                    tokio::time::sleep_until(t).await;
                }
                match s.pump(away) {
                    Ok(Pumped::Eof) => eof = true,
                    Ok(Pumped::Moved) => {}
                    // `held` is set: the FIFO's writability is awaited next.
                    Ok(Pumped::FifoFull | Pumped::Filled) => {}
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
            pending: s.backlog.len(),
            ..StreamState::default()
        };
        // Waiters care about transitions, not every byte count.
        if now.eof != state.borrow().eof || (now.pending == 0) != (state.borrow().pending == 0) {
            state.send_replace(now);
        }
    }
    // Bytes in the FIFO's own buffer are lost if the shim closes its ends before containerd
    // read them (the process may end while containerd restarts): wait for a reader.
    if let Some(keeper) = &keeper {
        while crate::sys::unread_bytes(keeper.as_fd()).unwrap_or(0) > 0 {
            tokio::time::sleep(FIFO_DRAIN_POLL).await;
        }
    }
    let backlogged = s.backlog.taken();
    drop(s);
    // containerd opens its read end in a goroutine of its own, which may get to its open(2) only
    // after a quick process has ended: a FIFO whose writers all closed by then leaves that open
    // blocked for good (and CRI's ExecSync waiting on the copy from it). Ours is the last
    // writer: it closes once a reader of containerd's holds the FIFO.
    if let Some(keeper) = keeper {
        drop(keeper);
        wait_for_reader(sink_fd.get_ref(), &state).await;
    }
    drop(sink_fd);
    state.send_replace(StreamState {
        eof: true,
        pending: 0,
        done: true,
        delivered: true,
        backlogged,
    });
}

/// Until the FIFO `writer` writes to has a reader (containerd's; the shim's keeper is closed).
/// The stream counts as delivered meanwhile: every byte it had is in containerd's hands.
async fn wait_for_reader(writer: &OwnedFd, state: &watch::Sender<StreamState>) {
    let mut poll = READER_POLL_MIN;
    loop {
        match super::fifo::has_reader(writer) {
            Ok(false) => {}
            Ok(true) => return,
            Err(e) => {
                warn!("whether containerd opened its FIFO: {e}");
                return;
            }
        }
        if !state.borrow().delivered {
            state.send_replace(StreamState {
                eof: true,
                delivered: true,
                ..StreamState::default()
            });
        }
        tokio::time::sleep(poll).await;
        poll = (poll * 2).min(FIFO_DRAIN_POLL);
    }
}

impl Stream<'_> {
    /// Once from the process's side: spliced into the FIFO while nothing waits before it and
    /// its reader is there (`away` false), else read, written while nothing waits, and the
    /// rest put in the backlog.
    fn pump(&mut self, away: bool) -> io::Result<Pumped> {
        if self.backlog.is_empty() && !away && self.splice {
            match self.splice_all() {
                Err(e) if e.kind() == io::ErrorKind::InvalidInput => self.splice = false,
                r => return r,
            }
        }
        match pump(self.source, self.sink, &mut self.backlog)? {
            0 => Ok(Pumped::Eof),
            _ => Ok(Pumped::Moved),
        }
    }

    /// The FIFO has room: the backlog goes first, then what waits in the process's pipe.
    fn unblock(&mut self) -> io::Result<Pumped> {
        if !self.backlog.is_empty() {
            flush(self.sink, &mut self.backlog)?;
            self.held = None;
            return Ok(Pumped::Moved);
        }
        let (held, before) = (self.held.is_some(), self.spliced);
        let r = self.splice_all();
        if held && self.roomy.is_none() && self.spliced > before {
            // The full FIFO took bytes: containerd reads, slower than the process writes.
            self.roomy = Some(grow(self.source, self.sink));
        }
        match r {
            Ok(p @ (Pumped::FifoFull | Pumped::Filled)) => Ok(p),
            // Nothing waits any more: the FIFO's readiness stays as it is.
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                self.held = None;
                Ok(Pumped::Moved)
            }
            r => {
                self.held = None;
                r
            }
        }
    }

    /// Splices until the FIFO is full (`FifoFull`, or `Filled` when found by a move; `held`
    /// from now if anything moved), the process's pipe is empty (`WouldBlock`) or at end of
    /// file, or `SPLICES_PER_WAKE` moved bytes (`Moved`: the other streams of the pod get their
    /// turn).
    fn splice_all(&mut self) -> io::Result<Pumped> {
        let mut moved = false;
        for _ in 0..SPLICES_PER_WAKE {
            match self.splice() {
                Ok(Pumped::Moved) => moved = true,
                Ok(full @ (Pumped::FifoFull | Pumped::Filled)) => {
                    let now = Instant::now();
                    if moved || full == Pumped::Filled || self.held.is_none() {
                        self.held = Some(now);
                    }
                    if self.roomy == Some(true) {
                        let rest = rest_after(self.last_full, now, self.spliced);
                        self.last_full = Some((now, self.spliced));
                        self.rest = Some(now + rest);
                    }
                    return Ok(full);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if moved && self.roomy == Some(true) {
                        let now = Instant::now();
                        if self.drained.is_some_and(|t| now - t < 2 * REST_MIN) {
                            self.not_before = Some(now + REST_MIN);
                        }
                        self.drained = Some(now);
                    }
                    return Err(e);
                }
                other => return other,
            }
        }
        Ok(Pumped::Moved)
    }

    /// Process pipe → FIFO in the kernel. A refusal is told apart by the FIFO's own state, read
    /// after it: full (`FifoFull`: its reader freeing room will wake us), or with room while the
    /// process's pipe is empty (`WouldBlock`: the process's next write will). Both hold at the
    /// moment they are answered, so neither the process writing nor containerd reading in
    /// between loses a wake-up; bytes that came meanwhile are tried again (`Moved`).
    fn splice(&mut self) -> io::Result<Pumped> {
        match crate::sys::splice(self.source.as_fd(), self.sink.as_fd(), SPLICE_MAX) {
            Ok(0) => Ok(Pumped::Eof),
            Ok(n) => {
                self.spliced += n as u64;
                // A roomy FIFO that took less than was offered is full, as a refusal shows.
                let left = n < SPLICE_MAX
                    && self.roomy == Some(true)
                    && crate::sys::unread_bytes(self.source.as_fd()).is_ok_and(|b| b > 0);
                Ok(if left { Pumped::Filled } else { Pumped::Moved })
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                if fifo_full(self.sink)? {
                    return Ok(Pumped::FifoFull);
                }
                match crate::sys::unread_bytes(self.source.as_fd()) {
                    Ok(n) if n > 0 => Ok(Pumped::Moved),
                    _ => Err(e),
                }
            }
            Err(e) => Err(e),
        }
    }
}

/// The rest after a refill that found the FIFO full at `now` with `spliced` bytes moved in all:
/// the time half a FIFO takes containerd at its rate since the last such refill (`last`), less
/// the timer's slack.
pub(super) fn rest_after(last: Option<(Instant, u64)>, now: Instant, spliced: u64) -> Duration {
    let Some((then, before)) = last else {
        return REST_MIN;
    };
    let (bytes, secs) = (spliced - before, (now - then).as_secs_f64());
    if bytes == 0 {
        return REST_MIN;
    }
    let half = Duration::from_secs_f64((ROOMY_PIPE / 2) as f64 * secs / bytes as f64);
    half.saturating_sub(TIMER_SLACK).clamp(REST_MIN, REST_MAX)
}

/// Grows the process's pipe and the FIFO to `ROOMY_PIPE`; whether both are that big now.
fn grow(source: &OwnedFd, sink: &OwnedFd) -> bool {
    [source, sink]
        .iter()
        .all(|fd| crate::sys::set_pipe_size(fd.as_fd(), ROOMY_PIPE).is_ok_and(|n| n >= ROOMY_PIPE))
}

/// Whether the FIFO has no room for another buffer (poll reports it not writable).
fn fifo_full(sink: &OwnedFd) -> io::Result<bool> {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    let mut fds = [PollFd::new(sink.as_fd(), PollFlags::POLLOUT)];
    poll(&mut fds, PollTimeout::ZERO)?;
    Ok(!fds[0]
        .revents()
        .is_some_and(|r| r.contains(PollFlags::POLLOUT)))
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

/// Process output → a file (`file://`, or a path that is no FIFO), read and written by the shim:
/// splice refuses a file opened for appending. A write the disk refuses is tried again every
/// `SPILL_RETRY` while the process is back-pressured: nothing is dropped.
pub async fn copy_to_file(
    source: Arc<AsyncFd<OwnedFd>>,
    file: OwnedFd,
    state: watch::Sender<StreamState>,
) {
    let mut unwritten: Vec<u8> = Vec::new();
    let mut eof = false;
    let mut warned = false;
    loop {
        if !unwritten.is_empty() {
            match write_all(&file, &unwritten) {
                Ok(()) => unwritten.clear(),
                Err((n, e)) => {
                    unwritten.drain(..n);
                    if !warned {
                        warn!("write log file: {e}; retrying every {SPILL_RETRY:?}");
                        warned = true;
                    }
                    state.send_replace(StreamState {
                        eof,
                        pending: unwritten.len() as u64,
                        ..StreamState::default()
                    });
                    tokio::time::sleep(SPILL_RETRY).await;
                    continue;
                }
            }
        }
        if eof {
            break;
        }
        let Ok(mut guard) = source.readable().await else {
            break;
        };
        let read = BUF.with(|buf| {
            let mut buf = buf.borrow_mut();
            let n = match nix::unistd::read(source.get_ref().as_fd(), &mut buf[..]) {
                Ok(n) => n,
                // A pty reports the last process closing its side as EIO.
                Err(Errno::EIO) => 0,
                Err(e) => return Err(e),
            };
            if let Err((written, _)) = write_all(&file, &buf[..n]) {
                unwritten.extend_from_slice(&buf[written..n]);
            }
            Ok(n)
        });
        match read {
            Ok(0) => {
                eof = true;
                state.send_replace(StreamState {
                    eof,
                    pending: unwritten.len() as u64,
                    ..StreamState::default()
                });
            }
            Ok(_) => {}
            Err(Errno::EAGAIN) => guard.clear_ready(),
            Err(e) => {
                warn!("read process output: {e}");
                eof = true;
            }
        }
    }
    state.send_replace(StreamState {
        eof: true,
        pending: 0,
        done: true,
        delivered: true,
        backlogged: 0,
    });
}

/// Writes all of `bytes`, or says how many went before the error.
fn write_all(fd: &OwnedFd, bytes: &[u8]) -> Result<(), (usize, Errno)> {
    let mut done = 0;
    while done < bytes.len() {
        match nix::unistd::write(fd, &bytes[done..]) {
            Ok(n) => done += n,
            Err(Errno::EINTR) => continue,
            Err(e) => return Err((done, e)),
        }
    }
    Ok(())
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

/// One read of a non-blocking descriptor, once it is readable.
pub(super) async fn read(fd: &AsyncFd<OwnedFd>, buf: &mut [u8]) -> io::Result<usize> {
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

#[cfg(test)]
mod tests {
    use std::{fs::File, io::Write};

    use super::*;
    use crate::stdio::SpillBudget;

    /// A roomy stream on real pipes: the process's pipe (its write end) and the FIFO (its read
    /// end), both `ROOMY_PIPE`.
    struct Pipes {
        source: OwnedFd,
        process: File,
        sink: OwnedFd,
        fifo: OwnedFd,
        dir: tempfile::TempDir,
    }

    impl Pipes {
        fn new() -> Pipes {
            use nix::{fcntl::OFlag, unistd::pipe2};
            let (source, process) = pipe2(OFlag::O_CLOEXEC).unwrap();
            let (fifo, sink) = pipe2(OFlag::O_CLOEXEC | OFlag::O_NONBLOCK).unwrap();
            assert!(grow(&source, &sink));
            Pipes {
                source,
                process: File::from(process),
                sink,
                fifo,
                dir: tempfile::tempdir().unwrap(),
            }
        }

        fn stream(&self) -> Stream<'_> {
            let spill = self.dir.path().join("spill");
            Stream {
                source: &self.source,
                sink: &self.sink,
                backlog: Backlog::new(1024, spill, 1024, SpillBudget::new(1024)),
                splice: true,
                held: None,
                roomy: Some(true),
                rest: None,
                not_before: None,
                drained: None,
                last_full: None,
                spliced: 0,
            }
        }

        fn unread(&self) -> (usize, usize) {
            let n = |fd: &OwnedFd| crate::sys::unread_bytes(fd.as_fd()).unwrap();
            (n(&self.source), n(&self.fifo))
        }
    }

    const KIB: usize = 1024;

    /// A splice the roomy FIFO took only part of found it full: the shim rests, held, and does
    /// not splice again (containerd may free room meanwhile, a read at a time).
    #[test]
    fn a_splice_the_fifo_took_part_of_ends_the_refill_in_a_rest() {
        let p = Pipes::new();
        let mut f = File::from(p.sink.try_clone().unwrap());
        f.write_all(&vec![b'c'; 768 * KIB]).unwrap();
        (&p.process).write_all(&vec![b'p'; 512 * KIB]).unwrap();
        let mut s = p.stream();
        // A second splice would have been refused: `FifoFull`.
        assert_eq!(s.splice_all().unwrap(), Pumped::Filled);
        assert!(s.held.is_some() && s.rest.is_some());
        assert_eq!(p.unread(), (256 * KIB, ROOMY_PIPE));
    }

    /// A roomy stream whose refills empty the process's pipe twice within `2 * REST_MIN` makes
    /// the process's next write wait `REST_MIN`; emptied less often, nothing waits.
    #[test]
    fn a_pipe_emptied_twice_in_quick_succession_makes_the_next_write_wait() {
        let p = Pipes::new();
        let mut s = p.stream();
        let mut refill = || {
            (&p.process).write_all(&[b'p'; 16 * KIB]).unwrap();
            let e = s.splice_all().unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::WouldBlock);
            s.not_before.take()
        };
        assert_eq!(refill(), None, "emptied once");
        std::thread::sleep(REST_MIN * 3);
        assert_eq!(refill(), None, "emptied again after 3 ms");
        let before = Instant::now();
        let wait = refill().expect("emptied twice within 2 ms");
        assert!(wait >= before + REST_MIN);
        assert_eq!(p.unread(), (0, 3 * 16 * KIB));
    }
}

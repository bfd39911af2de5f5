//! A process's stdio: containerd's FIFOs (or a log file, or a logging binary: `uri.rs`) on one
//! side, the process's pipes or pty on the other.
//!
//! The shim reads the process's output at all times. What containerd's FIFO cannot take (while
//! containerd restarts) waits in a bounded backlog, memory then a spill file, and is replayed in
//! order; only past both bounds is the process back-pressured. A stream's FIFO is closed once
//! the process side reached end of file and everything was handed over, which is how containerd
//! learns an exec's output is complete.

mod backlog;
mod budget;
mod console;
mod copy;
mod fifo;
mod logger;
mod uri;

use std::{
    future::Future,
    os::fd::OwnedFd,
    path::{Path, PathBuf},
    pin::Pin,
    sync::Arc,
    time::Duration,
};

use tokio::{
    io::unix::AsyncFd,
    sync::{watch, Notify},
    task::JoinHandle,
};

pub use console::ConsoleSocket;

use self::{
    backlog::Backlog,
    copy::{copy_input, copy_output, copy_to_file, StreamState},
    fifo::{create_log_file, open_sink, open_source, process_pipe, FifoSink, Sink},
    logger::Logger,
    uri::{Destination, LoggerCommand},
};
use crate::{
    error::{Error, Result},
    reaper::Exits,
};

/// What containerd sent in CreateTaskRequest / ExecProcessRequest.
#[derive(Debug, Clone, Default)]
pub struct StdioPaths {
    pub stdin: String,
    pub stdout: String,
    pub stderr: String,
    pub terminal: bool,
}

pub use budget::SpillBudget;

/// Whose stdio it is: what a logging binary is told (`CONTAINER_ID` is the container's id for
/// init and the exec id for an exec, as from containerd's runc shim), and who reaps it.
pub struct IoOwner<'a> {
    pub namespace: &'a str,
    pub id: &'a str,
    pub exits: &'a dyn Exits,
}

/// Bounds of what the shim holds for a reader that is not reading (containerd restarting).
#[derive(Debug, Clone)]
pub struct IoLimits {
    /// Bytes held in memory per output stream before spilling.
    pub memory_bytes: usize,
    /// Bytes held in the spill file per output stream; past this, the process is back-pressured.
    pub spill_bytes: u64,
    /// What all the pod's spill files hold together (shared by every stream of the pod).
    pub spill_budget: SpillBudget,
}

/// The ends the OCI runtime hands to the process as fds 0/1/2 (non-terminal processes only).
#[derive(Debug, Default)]
pub struct ChildStdio {
    pub stdin: Option<OwnedFd>,
    pub stdout: Option<OwnedFd>,
    pub stderr: Option<OwnedFd>,
}

impl ChildStdio {
    /// Makes the pipes the process's ids' own, so that it can reopen them (`/dev/stdout` is
    /// `/proc/self/fd/1`) from inside a user namespace where the shim's root is nobody.
    pub fn give_to(&self, owner: Option<(u32, u32)>) -> Result<()> {
        let Some((uid, gid)) = owner else {
            return Ok(());
        };
        for fd in [&self.stdin, &self.stdout, &self.stderr]
            .into_iter()
            .flatten()
        {
            nix::unistd::fchown(fd, Some(uid.into()), Some(gid.into()))
                .map_err(|e| Error::Other(format!("give the stdio pipes to {uid}:{gid}: {e}")))?;
        }
        Ok(())
    }

    /// Copies of the same ends (dup), for a program that may hand them back unused.
    pub fn try_clone(&self) -> std::io::Result<ChildStdio> {
        let copy = |fd: &Option<OwnedFd>| fd.as_ref().map(OwnedFd::try_clone).transpose();
        Ok(ChildStdio {
            stdin: copy(&self.stdin)?,
            stdout: copy(&self.stdout)?,
            stderr: copy(&self.stderr)?,
        })
    }

    /// Makes the ends `cmd`'s descriptors 0, 1 and 2 (`/dev/null` where one is missing).
    pub fn set_on(self, cmd: &mut std::process::Command) {
        use std::process::Stdio;
        cmd.stdin(self.stdin.map_or_else(Stdio::null, Stdio::from))
            .stdout(self.stdout.map_or_else(Stdio::null, Stdio::from))
            .stderr(self.stderr.map_or_else(Stdio::null, Stdio::from));
    }
}

struct Output {
    name: &'static str,
    source: Option<Arc<AsyncFd<OwnedFd>>>,
    sink: Sink,
}

pub struct ProcessIo {
    terminal: bool,
    limits: IoLimits,
    spill_base: PathBuf,
    stdin_fifo: Option<OwnedFd>,
    stdin_target: Option<Arc<AsyncFd<OwnedFd>>>,
    outputs: Vec<Output>,
    master: Option<Arc<AsyncFd<OwnedFd>>>,
    stdin_close: Arc<Notify>,
    states: Vec<watch::Receiver<StreamState>>,
    tasks: Vec<JoinHandle<()>>,
    logger: Option<Logger>,
}

impl ProcessIo {
    /// Opens containerd's FIFOs (or the log file, or starts the logging binary and waits until
    /// it is ready) and, for a non-terminal process, the pipes it will use. Nothing is copied
    /// until `start`; on error everything opened is closed again.
    pub async fn open(
        paths: &StdioPaths,
        owner: &IoOwner<'_>,
        spill_dir: &Path,
        spill_prefix: &str,
        limits: IoLimits,
    ) -> Result<(ProcessIo, ChildStdio)> {
        let io = ProcessIo {
            terminal: paths.terminal,
            limits,
            spill_base: spill_dir.join(spill_prefix),
            stdin_fifo: None,
            stdin_target: None,
            outputs: Vec::new(),
            master: None,
            stdin_close: Arc::new(Notify::new()),
            states: Vec::new(),
            tasks: Vec::new(),
            logger: None,
        };
        let destination = match paths.stdout.is_empty() {
            true => Destination::Paths,
            false => uri::destination(&paths.stdout)?,
        };
        match destination {
            // Boxed as a trait object, so that its code stays out of every create's (cold: see
            // shim/build.rs) instead of being inlined into it.
            Destination::Binary(command) => {
                let open: Pin<Box<dyn Future<Output = _> + Send + '_>> =
                    Box::pin(io.open_logger(paths, command, owner));
                open.await
            }
            other => io.open_paths(paths, other),
        }
    }

    /// Containerd's FIFOs (or files), or one log file for both streams.
    fn open_paths(
        mut self,
        paths: &StdioPaths,
        destination: Destination,
    ) -> Result<(ProcessIo, ChildStdio)> {
        let mut child = ChildStdio::default();
        if !paths.stdin.is_empty() {
            self.stdin_fifo = Some(open_source(&paths.stdin)?);
            if !paths.terminal {
                let (ours, theirs) = process_pipe(true)?;
                self.stdin_target = Some(Arc::new(register(ours)?));
                child.stdin = Some(theirs);
            }
        }
        let mut streams = vec![("stdout", &paths.stdout)];
        // A terminal has one output; CRI still names a stderr FIFO it never reads.
        if !paths.terminal {
            streams.push(("stderr", &paths.stderr));
        }
        if let Destination::File(path) = destination {
            let file = create_log_file(&path)?;
            for (name, _) in streams {
                let file = file.try_clone().map_err(Error::io("dup log file"))?;
                self.add_output(name, Sink::File(file), &mut child)?;
            }
        } else {
            for (name, path) in streams {
                if !path.is_empty() {
                    self.add_output(name, open_sink(path, name)?, &mut child)?;
                }
            }
        }
        Ok((self, child))
    }

    /// A logging binary reads the output. It takes no input (nor with containerd's runc shim).
    async fn open_logger(
        mut self,
        paths: &StdioPaths,
        command: LoggerCommand,
        owner: &IoOwner<'_>,
    ) -> Result<(ProcessIo, ChildStdio)> {
        let mut child = ChildStdio::default();
        let (logger, ends) = Logger::start(&command, owner).await?;
        self.logger = Some(logger);
        if paths.terminal {
            // The pty's output is copied into the logger's stdout pipe.
            let writer = ends.stdout;
            if let Err(e) = fifo::set_nonblocking(&writer) {
                self.shutdown().await;
                return Err(e);
            }
            let sink = Sink::Pipe(FifoSink {
                writer,
                keeper: None,
            });
            self.add_output("stdout", sink, &mut child)?;
        } else {
            // The process writes into the logger's pipes itself; the shim copies nothing.
            child.stdout = Some(ends.stdout);
            child.stderr = Some(ends.stderr);
        }
        Ok((self, child))
    }

    /// One output stream to `sink`: from the process's own pipe, or (terminal) from the pty
    /// master that `attach_console` brings.
    fn add_output(&mut self, name: &'static str, sink: Sink, child: &mut ChildStdio) -> Result<()> {
        let source = if self.terminal {
            None
        } else {
            let (ours, theirs) = process_pipe(false)?;
            match name {
                "stdout" => child.stdout = Some(theirs),
                _ => child.stderr = Some(theirs),
            }
            Some(Arc::new(register(ours)?))
        };
        self.outputs.push(Output { name, source, sink });
        Ok(())
    }

    /// Gives a terminal process's pty master (from the console socket) to the copiers.
    pub fn attach_console(&mut self, master: OwnedFd) -> Result<()> {
        if !self.terminal {
            return Err(Error::FailedPrecondition(
                "console for a process without a terminal".into(),
            ));
        }
        fifo::set_nonblocking(&master)?;
        let master = Arc::new(register(master)?);
        for out in &mut self.outputs {
            out.source = Some(master.clone());
        }
        if self.stdin_fifo.is_some() {
            self.stdin_target = Some(master.clone());
        }
        self.master = Some(master);
        Ok(())
    }

    /// Starts copying, as tasks on the current runtime.
    pub fn start(&mut self) {
        for out in std::mem::take(&mut self.outputs) {
            let Some(source) = out.source else {
                log::warn!("{} has no process side; nothing to copy", out.name);
                continue;
            };
            let (tx, rx) = watch::channel(StreamState::default());
            self.states.push(rx);
            let task = match out.sink {
                Sink::Pipe(sink) => {
                    let spill =
                        PathBuf::from(format!("{}-{}.spill", self.spill_base.display(), out.name));
                    let backlog = Backlog::new(
                        self.limits.memory_bytes,
                        spill,
                        self.limits.spill_bytes,
                        self.limits.spill_budget.clone(),
                    );
                    crate::log_scope::spawn(copy_output(source, sink, backlog, tx))
                }
                Sink::File(file) => crate::log_scope::spawn(copy_to_file(source, file, tx)),
            };
            self.tasks.push(task);
        }
        if let (Some(fifo), Some(target)) = (self.stdin_fifo.take(), self.stdin_target.take()) {
            self.tasks.push(crate::log_scope::spawn(copy_input(
                fifo,
                target,
                self.stdin_close.clone(),
            )));
        }
    }

    pub fn resize(&self, width: u32, height: u32) -> Result<()> {
        let master = self
            .master
            .as_ref()
            .ok_or_else(|| Error::FailedPrecondition("process has no terminal to resize".into()))?;
        let cols = u16::try_from(width).unwrap_or(u16::MAX);
        let rows = u16::try_from(height).unwrap_or(u16::MAX);
        use std::os::fd::AsFd;
        crate::sys::set_window_size(master.get_ref().as_fd(), cols, rows)
            .map_err(Error::io("resize terminal"))
    }

    /// CloseIO: the process sees end of input once what was already read reached it.
    pub fn close_stdin(&self) {
        self.stdin_close.notify_one();
    }

    /// Resolves once every output of the exited process reached end of file, or at `timeout`
    /// (a daemonised grandchild may hold the pipe open forever).
    pub async fn wait_output_closed(&self, timeout: Duration) {
        self.wait_streams(timeout, |s| s.eof).await;
    }

    /// Resolves once containerd has every byte of an ended stream, or nothing waits in a stream
    /// that is still open, or at `timeout`.
    pub async fn drain(&self, timeout: Duration) {
        self.wait_streams(timeout, |s| s.delivered || (!s.eof && s.pending == 0))
            .await;
    }

    async fn wait_streams(&self, timeout: Duration, reached: impl Fn(&StreamState) -> bool) {
        let all = async {
            for rx in &self.states {
                let mut rx = rx.clone();
                let _ = rx.wait_for(|s| reached(s)).await;
            }
        };
        let _ = tokio::time::timeout(timeout, all).await;
    }

    /// The state of each output stream, in the order `start` began copying them.
    #[cfg(test)]
    pub fn stream_states(&self) -> Vec<StreamState> {
        self.states.iter().map(|rx| *rx.borrow()).collect()
    }

    /// Stops copying and closes everything; spill files are removed with their backlogs. A
    /// logging binary is stopped (see `logger.rs`).
    pub async fn shutdown(self) {
        self.stdin_close.notify_one();
        for task in &self.tasks {
            task.abort();
        }
        for task in self.tasks {
            let _ = task.await;
        }
        if let Some(logger) = self.logger {
            logger.stop().await;
        }
    }
}

fn register(fd: OwnedFd) -> Result<AsyncFd<OwnedFd>> {
    crate::sys::register(fd).map_err(Error::io("register with the event loop"))
}

#[cfg(test)]
mod tests;

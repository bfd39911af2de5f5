//! Real FIFOs and pipes: while containerd reads, output moves in the kernel; once it stops
//! reading the process runs on into the backlog while it has room; containerd receives every
//! byte in order whenever it reads.

use std::{
    fs::File,
    io::{Read, Write},
    os::{fd::OwnedFd, unix::fs::PermissionsExt},
    path::{Path, PathBuf},
    thread,
    time::Duration,
};

use nix::{sys::stat::Mode, unistd::mkfifo};

use super::*;

/// Reaps each logging binary by its pid, as the shim's reaper would.
struct WaitpidExits;

impl Exits for WaitpidExits {
    fn subscribe(&self, pid: i32) -> tokio::sync::oneshot::Receiver<crate::reaper::Exit> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        thread::spawn(move || {
            use nix::sys::wait::{waitpid, WaitStatus};
            let status = match waitpid(nix::unistd::Pid::from_raw(pid), None) {
                Ok(WaitStatus::Exited(_, code)) => code as u32,
                Ok(WaitStatus::Signaled(_, sig, _)) => 128 + sig as u32,
                _ => 255,
            };
            let _ = tx.send(crate::reaper::Exit {
                status,
                at: std::time::SystemTime::now(),
            });
        });
        rx
    }
}

fn owner() -> IoOwner<'static> {
    static EXITS: WaitpidExits = WaitpidExits;
    IoOwner {
        namespace: "k8s.io",
        id: "c1",
        exits: &EXITS,
    }
}

/// What `ProcessIo::open` refuses `p` with.
async fn open_error(p: &StdioPaths, dir: &Path) -> Error {
    match ProcessIo::open(p, &owner(), dir, "init", limits()).await {
        Ok(_) => panic!("{p:?} was opened"),
        Err(e) => e,
    }
}

fn limits() -> IoLimits {
    IoLimits {
        memory_bytes: 64 * 1024,
        spill_bytes: 8 * 1024 * 1024,
        spill_budget: SpillBudget::new(u64::MAX),
    }
}

fn fifo(dir: &Path, name: &str) -> String {
    let p = dir.join(name);
    mkfifo(&p, Mode::from_bits_truncate(0o600)).unwrap();
    p.display().to_string()
}

fn paths(dir: &Path) -> StdioPaths {
    StdioPaths {
        stdin: String::new(),
        stdout: fifo(dir, "out"),
        stderr: fifo(dir, "err"),
        terminal: false,
    }
}

fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

/// containerd's side: reads the FIFO to EOF on a thread.
fn reader(path: String) -> thread::JoinHandle<Vec<u8>> {
    thread::spawn(move || {
        let mut f = File::open(path).unwrap();
        let mut out = Vec::new();
        f.read_to_end(&mut out).unwrap();
        out
    })
}

/// containerd's side, slower than the process: reads `chunk` bytes, sleeps `pause`, and so on
/// to EOF; after `stop_after` bytes it signals `stopped` and reads nothing for `stop`.
fn slow_reader(
    path: String,
    chunk: usize,
    pause: Duration,
    stop_after: usize,
    stop: Duration,
    stopped: std::sync::mpsc::Sender<()>,
) -> thread::JoinHandle<Vec<u8>> {
    thread::spawn(move || {
        let mut f = File::open(path).unwrap();
        let mut out = Vec::new();
        let mut buf = vec![0u8; chunk];
        let mut stopped_once = false;
        loop {
            let n = f.read(&mut buf).unwrap();
            if n == 0 {
                return out;
            }
            out.extend_from_slice(&buf[..n]);
            if !stopped_once && out.len() >= stop_after {
                stopped_once = true;
                let _ = stopped.send(());
                thread::sleep(stop);
            }
            thread::sleep(pause);
        }
    })
}

/// The process: writes `data` into its stdout on a thread, then exits (closes the pipe).
fn process_writes(fd: OwnedFd, data: Vec<u8>) -> thread::JoinHandle<()> {
    thread::spawn(move || {
        let mut f = File::from(fd);
        f.write_all(&data).unwrap();
    })
}

async fn join<T: Send + 'static>(h: thread::JoinHandle<T>) -> T {
    tokio::task::spawn_blocking(move || h.join().unwrap())
        .await
        .unwrap()
}

/// This process's fds that refer to files under `dir` (the test's FIFOs and spill files).
/// Counting all of /proc/self/fd would count what tests running in parallel threads open; the
/// pipes `open` makes are owned fds, closed on every error path by drop.
fn fds_under(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter(|t| t.starts_with(dir))
        .collect()
}

#[tokio::test(flavor = "current_thread")]
async fn output_reaches_the_fifo_in_order_and_closes_it_at_eof() {
    let dir = tempfile::tempdir().unwrap();
    let p = paths(dir.path());
    let (mut io, child) = ProcessIo::open(&p, &owner(), dir.path(), "init", limits())
        .await
        .unwrap();
    io.start();
    let out = reader(p.stdout.clone());
    let err = reader(p.stderr.clone());
    let data = pattern(300_000);
    let w = process_writes(child.stdout.unwrap(), data.clone());
    let e = process_writes(child.stderr.unwrap(), b"oops\n".to_vec());
    join(w).await;
    join(e).await;
    io.wait_output_closed(Duration::from_secs(10)).await;
    io.drain(Duration::from_secs(10)).await;
    // The FIFO's write end closes once everything was handed over: the reader sees EOF.
    assert_eq!(join(out).await, data);
    assert_eq!(join(err).await, b"oops\n");
    io.shutdown().await;
}

#[tokio::test(flavor = "current_thread")]
async fn the_process_runs_on_while_containerd_is_away_and_nothing_is_lost() {
    let dir = tempfile::tempdir().unwrap();
    let p = paths(dir.path());
    let (mut io, child) = ProcessIo::open(&p, &owner(), dir.path(), "init", limits())
        .await
        .unwrap();
    io.start();
    // 4 MiB with nobody reading the FIFO: 64 KiB of pipe, 64 KiB of memory, the rest spilled.
    let data = pattern(4 * 1024 * 1024);
    let w = process_writes(child.stdout.unwrap(), data.clone());
    drop(child.stderr);
    tokio::time::timeout(Duration::from_secs(20), join(w))
        .await
        .expect("past READER_AWAY the process must not block while the backlog has room");
    let spill = dir.path().join("init-stdout.spill");
    assert!(spill.exists(), "bytes past the memory bound are spilled");
    // containerd comes back.
    let out = reader(p.stdout.clone());
    io.wait_output_closed(Duration::from_secs(10)).await;
    let got = join(out).await;
    assert_eq!(got.len(), data.len());
    assert!(got == data, "every byte, in order");
    assert!(!spill.exists(), "spill file removed once replayed");
    io.shutdown().await;
}

/// A reader slower than the process keeps the FIFO full; the bytes wait in the process's pipe
/// and move into the FIFO in the kernel as it reads: none passes through the shim's backlog.
#[tokio::test(flavor = "current_thread")]
async fn while_containerd_reads_output_moves_in_the_kernel_not_through_the_shim() {
    let dir = tempfile::tempdir().unwrap();
    let p = paths(dir.path());
    let (mut io, child) = ProcessIo::open(&p, &owner(), dir.path(), "init", limits())
        .await
        .unwrap();
    io.start();
    let data = pattern(2 * 1024 * 1024);
    let (tx, _rx) = std::sync::mpsc::channel();
    let out = slow_reader(
        p.stdout.clone(),
        16 * 1024,
        Duration::from_millis(1),
        usize::MAX,
        Duration::ZERO,
        tx,
    );
    let w = process_writes(child.stdout.unwrap(), data.clone());
    drop(child.stderr);
    join(w).await;
    io.wait_output_closed(Duration::from_secs(10)).await;
    let got = join(out).await;
    io.drain(Duration::from_secs(10)).await;
    assert!(got == data, "every byte, in order");
    let s = io.stream_states()[0];
    assert!(s.done, "{s:?}");
    assert_eq!(
        s.backlogged, 0,
        "bytes went through the shim while containerd read"
    );
    io.shutdown().await;
}

/// A reader slower than the process fills the FIFO: the process's pipe and the FIFO grow to
/// `ROOMY_PIPE` (what lets the shim rest between refills), and every byte still arrives, in
/// order, spliced rather than through the backlog.
#[tokio::test(flavor = "current_thread")]
async fn a_stream_that_fills_its_fifo_gets_roomy_pipes_and_loses_nothing() {
    use nix::fcntl::{fcntl, FcntlArg};
    let dir = tempfile::tempdir().unwrap();
    let p = paths(dir.path());
    let (mut io, child) = ProcessIo::open(&p, &owner(), dir.path(), "init", limits())
        .await
        .unwrap();
    io.start();
    let data = pattern(8 * 1024 * 1024);
    let out = thread::spawn({
        let (path, len) = (p.stdout.clone(), data.len());
        move || {
            let mut f = File::open(path).unwrap();
            let mut out = Vec::new();
            let mut buf = vec![0u8; 32 * 1024];
            let mut fifo_size = 0;
            loop {
                let n = f.read(&mut buf).unwrap();
                if n == 0 {
                    return (out, fifo_size);
                }
                out.extend_from_slice(&buf[..n]);
                if fifo_size == 0 && out.len() >= len / 2 {
                    fifo_size = fcntl(&f, FcntlArg::F_GETPIPE_SZ).unwrap();
                }
                thread::sleep(Duration::from_micros(100));
            }
        }
    });
    let stdout = child.stdout.unwrap();
    let probe = stdout.try_clone().unwrap();
    let w = process_writes(stdout, data.clone());
    drop(child.stderr);
    join(w).await;
    let pipe_size = fcntl(&probe, FcntlArg::F_GETPIPE_SZ).unwrap();
    drop(probe);
    io.wait_output_closed(Duration::from_secs(10)).await;
    let (got, fifo_size) = join(out).await;
    io.drain(Duration::from_secs(10)).await;
    assert!(got == data, "every byte, in order");
    assert_eq!(
        (pipe_size as usize, fifo_size as usize),
        (super::copy::ROOMY_PIPE, super::copy::ROOMY_PIPE),
        "(process pipe, FIFO) sizes"
    );
    assert_eq!(io.stream_states()[0].backlogged, 0);
    io.shutdown().await;
}

/// The rest after a refill is the time containerd takes to read half a roomy FIFO at the rate it
/// read since the last refill, less the timer's 1 ms of slack, within its bounds.
#[test]
fn the_rest_is_half_a_fifo_at_the_rate_containerd_reads() {
    use super::copy::{rest_after, REST_MAX, REST_MIN, ROOMY_PIPE};
    let t0 = tokio::time::Instant::now();
    let ms = |n: u64| Duration::from_millis(n);
    let at = |rate_bytes_per_ms: u64, after: Duration| {
        let bytes = rate_bytes_per_ms * after.as_millis() as u64;
        rest_after(Some((t0, 1000)), t0 + after, 1000 + bytes)
    };
    assert_eq!(rest_after(None, t0, 5000), REST_MIN, "no rate yet");
    assert_eq!(rest_after(Some((t0, 1000)), t0 + ms(3), 1000), REST_MIN);
    // 64 MB/s: half a MiB in about 8 ms, so a rest of about 7.
    let r = at(64_000, ms(4));
    let want = Duration::from_secs_f64((ROOMY_PIPE / 2) as f64 / 64e6) - ms(1);
    assert!(
        r.abs_diff(want) < Duration::from_micros(10),
        "{r:?} vs {want:?}"
    );
    assert_eq!(at(1_000_000, ms(2)), REST_MIN, "1 GB/s: the shortest rest");
    assert_eq!(
        at(350_000, ms(2)),
        REST_MIN,
        "350 MB/s: 1.5 ms less the slack"
    );
    assert_eq!(at(1_000, ms(20)), REST_MAX, "1 MB/s: the longest rest");
}

/// containerd stops reading in the middle of a stream for longer than `READER_AWAY`: the
/// process runs on into the backlog, and once containerd reads again it gets the spliced bytes,
/// the backlog and the rest, in order.
#[tokio::test(flavor = "current_thread")]
async fn a_reader_that_stops_gets_the_backlog_in_order_once_it_reads_again() {
    let dir = tempfile::tempdir().unwrap();
    let p = paths(dir.path());
    let (mut io, child) = ProcessIo::open(&p, &owner(), dir.path(), "init", limits())
        .await
        .unwrap();
    io.start();
    let data = pattern(4 * 1024 * 1024);
    let (tx, stopped) = std::sync::mpsc::channel();
    let stop = super::copy::READER_AWAY * 4;
    let out = slow_reader(
        p.stdout.clone(),
        64 * 1024,
        Duration::ZERO,
        512 * 1024,
        stop,
        tx,
    );
    let w = process_writes(child.stdout.unwrap(), data.clone());
    drop(child.stderr);
    tokio::task::spawn_blocking(move || stopped.recv().unwrap())
        .await
        .unwrap();
    // 3.5 MiB more than the pipes hold: the process finishes only through the backlog.
    tokio::time::sleep(super::copy::READER_AWAY * 3).await;
    assert!(
        w.is_finished(),
        "the process waited for a reader that was gone"
    );
    join(w).await;
    let got = join(out).await;
    io.wait_output_closed(Duration::from_secs(10)).await;
    io.drain(Duration::from_secs(10)).await;
    assert_eq!(got.len(), data.len());
    assert!(got == data, "every byte, in order");
    let s = io.stream_states()[0];
    assert!(s.done && s.backlogged > 0, "{s:?}");
    io.shutdown().await;
}

#[tokio::test(flavor = "current_thread")]
async fn past_both_bounds_the_process_is_back_pressured_not_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let p = paths(dir.path());
    let small = IoLimits {
        memory_bytes: 4096,
        spill_bytes: 8192,
        spill_budget: SpillBudget::new(u64::MAX),
    };
    let (mut io, child) = ProcessIo::open(&p, &owner(), dir.path(), "init", small)
        .await
        .unwrap();
    io.start();
    let data = pattern(1024 * 1024);
    let w = process_writes(child.stdout.unwrap(), data.clone());
    drop(child.stderr);
    // Pipe buffers (process pipe and FIFO) plus 12 KiB of backlog cannot hold 1 MiB.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!w.is_finished(), "the writer must be blocked");
    let out = reader(p.stdout.clone());
    join(w).await;
    io.wait_output_closed(Duration::from_secs(10)).await;
    assert!(join(out).await == data);
    io.shutdown().await;
}

/// A small tmpfs of the test's own, unmounted when dropped (also when the test fails).
struct SmallDisk(tempfile::TempDir);

impl SmallDisk {
    fn new(bytes: usize) -> SmallDisk {
        let dir = tempfile::tempdir().unwrap();
        nix::mount::mount(
            Some("tmpfs"),
            dir.path(),
            Some("tmpfs"),
            nix::mount::MsFlags::empty(),
            Some(format!("size={bytes},mode=0700").as_str()),
        )
        .expect("mount a tmpfs (the shim's tests run as root)");
        SmallDisk(dir)
    }
    fn path(&self) -> &Path {
        self.0.path()
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = nix::mount::umount2(self.0.path(), nix::mount::MntFlags::MNT_DETACH);
    }
}

/// The spill directory's disk fills while containerd is away: the process is back-pressured
/// (never fed SIGPIPE), and when room comes back (a file freed, then containerd reading) every
/// byte still reaches the FIFO, in order.
#[tokio::test(flavor = "current_thread")]
async fn a_full_disk_back_pressures_the_process_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let disk = SmallDisk::new(512 * 1024);
    let filler = disk.path().join("filler");
    std::fs::write(&filler, vec![0u8; 384 * 1024]).unwrap();
    let p = paths(dir.path());
    let (mut io, child) = ProcessIo::open(&p, &owner(), disk.path(), "init", limits())
        .await
        .unwrap();
    io.start();
    let data = pattern(2 * 1024 * 1024);
    let w = process_writes(child.stdout.unwrap(), data.clone());
    drop(child.stderr);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !w.is_finished(),
        "2 MiB cannot fit in 128 KiB of disk: the writer must wait"
    );
    std::fs::remove_file(&filler).unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(!w.is_finished(), "still more than the disk holds");
    let out = reader(p.stdout.clone());
    join(w).await;
    io.wait_output_closed(Duration::from_secs(10)).await;
    let got = join(out).await;
    assert_eq!(got.len(), data.len());
    assert!(got == data, "every byte, in order");
    io.shutdown().await;
}

#[tokio::test(flavor = "current_thread")]
async fn exit_is_not_held_up_by_a_grandchild_holding_the_pipe() {
    let dir = tempfile::tempdir().unwrap();
    let p = paths(dir.path());
    let (mut io, child) = ProcessIo::open(&p, &owner(), dir.path(), "init", limits())
        .await
        .unwrap();
    io.start();
    let _held = child.stdout; // never closed during the test
    let start = std::time::Instant::now();
    io.wait_output_closed(Duration::from_millis(200)).await;
    assert!(start.elapsed() < Duration::from_secs(5));
    io.shutdown().await;
}

/// containerd opens its read end of a FIFO in a goroutine of its own, which may get to its
/// open(2) only after a quick exec has ended: a FIFO whose writers have all closed by then
/// leaves that open blocked for good, and CRI's ExecSync, which waits for the copy from it,
/// hangs (seen on CI: an ExecSync of `cat` timing out after 45 s). A stream that ended without
/// a byte keeps its FIFO open until a reader comes, which then sees end of file.
#[tokio::test(flavor = "current_thread")]
async fn a_reader_that_opens_after_an_empty_stream_ended_sees_its_end() {
    let dir = tempfile::tempdir().unwrap();
    let p = paths(dir.path());
    let (mut io, child) = ProcessIo::open(&p, &owner(), dir.path(), "exec", limits())
        .await
        .unwrap();
    io.start();
    drop(child); // the process exits without writing
    io.wait_output_closed(Duration::from_secs(10)).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (out, err) = (reader(p.stdout.clone()), reader(p.stderr.clone()));
    let ended = tokio::time::timeout(Duration::from_secs(5), async {
        (join(out).await, join(err).await)
    })
    .await;
    if ended.is_err() {
        // Free the readers blocked in open(2): a writer that comes and goes.
        for path in [&p.stdout, &p.stderr] {
            let _ = nix::fcntl::open(
                Path::new(path),
                nix::fcntl::OFlag::O_WRONLY | nix::fcntl::OFlag::O_NONBLOCK,
                Mode::empty(),
            );
        }
    }
    let (out, err) = ended.expect("a reader's open(2) blocked: the FIFO had no writer left");
    assert!(out.is_empty() && err.is_empty());
    io.drain(Duration::from_secs(10)).await;
    assert!(io.stream_states().iter().all(|s| s.done));
    io.shutdown().await;
}

#[tokio::test(flavor = "current_thread")]
async fn empty_paths_set_nothing_up() {
    let dir = tempfile::tempdir().unwrap();
    let (mut io, child) = ProcessIo::open(
        &StdioPaths::default(),
        &owner(),
        dir.path(),
        "init",
        limits(),
    )
    .await
    .unwrap();
    assert!(child.stdin.is_none() && child.stdout.is_none() && child.stderr.is_none());
    io.start();
    io.wait_output_closed(Duration::from_secs(1)).await;
    io.shutdown().await;
}

#[tokio::test(flavor = "current_thread")]
async fn same_fifo_for_stdout_and_stderr() {
    let dir = tempfile::tempdir().unwrap();
    let path = fifo(dir.path(), "both");
    let p = StdioPaths {
        stdout: path.clone(),
        stderr: path.clone(),
        ..Default::default()
    };
    let (mut io, child) = ProcessIo::open(&p, &owner(), dir.path(), "x", limits())
        .await
        .unwrap();
    io.start();
    let out = reader(path);
    join(process_writes(child.stdout.unwrap(), b"a\n".to_vec())).await;
    join(process_writes(child.stderr.unwrap(), b"b\n".to_vec())).await;
    io.wait_output_closed(Duration::from_secs(10)).await;
    let got = join(out).await;
    assert_eq!(got.len(), 4);
    io.shutdown().await;
}

#[tokio::test(flavor = "current_thread")]
async fn missing_fifo_is_not_found_and_leaks_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let p = StdioPaths {
        stdout: fifo(dir.path(), "out"),
        stderr: dir.path().join("missing").display().to_string(),
        ..Default::default()
    };
    let err = open_error(&p, dir.path()).await;
    assert!(
        matches!(err, Error::NotFound(ref m) if m.contains("missing")),
        "{err}"
    );
    assert_eq!(fds_under(dir.path()), Vec::<PathBuf>::new());
    for uri in [
        StdioPaths {
            stdout: "syslog:///dev/log".into(),
            ..Default::default()
        },
        StdioPaths {
            stdin: "binary:///bin/cat".into(),
            ..Default::default()
        },
    ] {
        let err = open_error(&uri, dir.path()).await;
        assert!(matches!(err, Error::InvalidArgument(_)), "{err}");
    }
}

/// `file://`: both streams appended to one file, its directories created; a path that is a
/// file and no FIFO is appended to as well (`ctr run --log-uri /a/file`).
#[tokio::test(flavor = "current_thread")]
async fn log_files_get_both_streams_appended() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("logs/sub/c.log");
    let uri = format!("file://{}", file.display());
    for round in 0..2 {
        let p = StdioPaths {
            stdout: uri.clone(),
            stderr: "ignored, as by containerd".into(),
            ..Default::default()
        };
        let (mut io, child) = ProcessIo::open(&p, &owner(), dir.path(), "init", limits())
            .await
            .unwrap();
        io.start();
        join(process_writes(
            child.stdout.unwrap(),
            format!("out{round}\n").into(),
        ))
        .await;
        join(process_writes(
            child.stderr.unwrap(),
            format!("err{round}\n").into(),
        ))
        .await;
        io.wait_output_closed(Duration::from_secs(10)).await;
        io.drain(Duration::from_secs(10)).await;
        io.shutdown().await;
    }
    assert_eq!(
        std::fs::read_to_string(&file).unwrap(),
        "out0\nerr0\nout1\nerr1\n"
    );
    let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o644);

    let plain = dir.path().join("plain.log");
    std::fs::write(&plain, "old\n").unwrap();
    let p = StdioPaths {
        stdout: plain.display().to_string(),
        stderr: plain.display().to_string(),
        ..Default::default()
    };
    let (mut io, child) = ProcessIo::open(&p, &owner(), dir.path(), "init", limits())
        .await
        .unwrap();
    io.start();
    join(process_writes(child.stdout.unwrap(), b"new\n".to_vec())).await;
    drop(child.stderr);
    io.wait_output_closed(Duration::from_secs(10)).await;
    io.shutdown().await;
    assert_eq!(std::fs::read_to_string(&plain).unwrap(), "old\nnew\n");
}

/// A logging binary as containerd's runc shim runs one: `binary:///logger?out=<dir>`.
fn install_logger(dir: &Path, ready: &str) -> String {
    let script = dir.join("logger");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\nd=$2\necho \"$*\" > $d/args; /usr/bin/env | /bin/grep -v ^PWD= | /usr/bin/sort > $d/env\n\
             echo $$ > $d/pid\n{ready}\n/bin/cat <&3 > $d/stdout.part &\n\
             /bin/cat <&4 > $d/stderr.part &\nexec 3<&- 4<&-\nwait\n\
             /bin/mv $d/stdout.part $d/stdout; /bin/mv $d/stderr.part $d/stderr\n"
        ),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    format!("binary://{}?out={}", script.display(), dir.display())
}

async fn file_appears(path: &Path) -> String {
    for _ in 0..200 {
        if let Ok(s) = std::fs::read_to_string(path) {
            return s;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{} never appeared", path.display());
}

#[tokio::test(flavor = "current_thread")]
async fn a_logging_binary_reads_both_streams_itself() {
    for (scheme, ready) in [
        ("binary", "exec 5>&-"),
        ("binary-v2", "printf x >&5; exec 5>&-"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let uri = install_logger(dir.path(), ready).replacen("binary", scheme, 1);
        let p = StdioPaths {
            stdin: fifo(dir.path(), "in"),
            stdout: uri,
            stderr: "ignored".into(),
            terminal: false,
        };
        let (mut io, child) = ProcessIo::open(&p, &owner(), dir.path(), "init", limits())
            .await
            .unwrap();
        // No stdin, and nothing for the shim to copy: the process writes into the logger.
        assert!(child.stdin.is_none());
        io.start();
        assert!(io.stream_states().is_empty());
        join(process_writes(child.stdout.unwrap(), b"to out\n".to_vec())).await;
        join(process_writes(child.stderr.unwrap(), b"to err\n".to_vec())).await;
        let d = dir.path().display();
        assert_eq!(file_appears(&dir.path().join("stdout")).await, "to out\n");
        assert_eq!(file_appears(&dir.path().join("stderr")).await, "to err\n");
        assert_eq!(
            std::fs::read_to_string(dir.path().join("args")).unwrap(),
            format!("out {d}\n")
        );
        // Only the two variables (and the PWD the shell itself sets): not even PATH.
        assert_eq!(
            std::fs::read_to_string(dir.path().join("env")).unwrap(),
            "CONTAINER_ID=c1\nCONTAINER_NAMESPACE=k8s.io\n"
        );
        io.shutdown().await;
    }
}

#[tokio::test(flavor = "current_thread")]
async fn a_logging_binary_that_is_not_ready_fails_the_open_and_is_gone() {
    let dir = tempfile::tempdir().unwrap();
    for (scheme, ready) in [
        // Never closes its ready pipe (READY_BOUND is 2 s in tests).
        ("binary", "exec /bin/sleep 100"),
        // binary-v2 asks for a byte before the close.
        ("binary-v2", "exec 5>&-; exec /bin/sleep 100"),
    ] {
        let uri = install_logger(dir.path(), ready).replacen("binary", scheme, 1);
        let p = StdioPaths {
            stdout: uri,
            ..Default::default()
        };
        let err = open_error(&p, dir.path()).await;
        assert!(
            matches!(err, Error::FailedPrecondition(_)),
            "{scheme}: {err}"
        );
        let pid = std::fs::read_to_string(dir.path().join("pid")).unwrap();
        assert!(
            !Path::new(&format!("/proc/{}", pid.trim())).exists(),
            "{scheme}: logger {pid} still there"
        );
    }
    let p = StdioPaths {
        stdout: "binary:///no/such/logger".into(),
        ..Default::default()
    };
    let err = open_error(&p, dir.path()).await;
    assert!(
        matches!(err, Error::NotFound(ref m) if m.contains("/no/such/logger")),
        "{err}"
    );
}

#[tokio::test(flavor = "current_thread")]
async fn stdin_reaches_the_process_and_close_io_ends_it() {
    let dir = tempfile::tempdir().unwrap();
    let stdin = fifo(dir.path(), "in");
    let p = StdioPaths {
        stdin: stdin.clone(),
        ..Default::default()
    };
    let (mut io, child) = ProcessIo::open(&p, &owner(), dir.path(), "init", limits())
        .await
        .unwrap();
    io.start();
    // containerd writes and keeps its end open; CloseIO is what ends the input.
    let mut writer = std::fs::OpenOptions::new()
        .write(true)
        .open(&stdin)
        .unwrap();
    writer.write_all(b"hello\n").unwrap();
    let process = thread::spawn(move || {
        let mut f = File::from(child.stdin.unwrap());
        let mut got = Vec::new();
        f.read_to_end(&mut got).unwrap();
        got
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    io.close_stdin();
    let got = tokio::time::timeout(Duration::from_secs(10), join(process))
        .await
        .expect("CloseIO gives the process end of input");
    assert_eq!(got, b"hello\n");
    drop(writer);
    io.shutdown().await;
}

#[tokio::test(flavor = "current_thread")]
async fn stdin_eof_from_containerd_reaches_the_process() {
    let dir = tempfile::tempdir().unwrap();
    let stdin = fifo(dir.path(), "in");
    let p = StdioPaths {
        stdin: stdin.clone(),
        ..Default::default()
    };
    let (mut io, child) = ProcessIo::open(&p, &owner(), dir.path(), "init", limits())
        .await
        .unwrap();
    io.start();
    // No writer yet: that is not end of input.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let process = thread::spawn(move || {
        let mut f = File::from(child.stdin.unwrap());
        let mut got = Vec::new();
        f.read_to_end(&mut got).unwrap();
        got
    });
    let w = thread::spawn(move || {
        let mut f = std::fs::OpenOptions::new().write(true).open(stdin).unwrap();
        f.write_all(b"abc").unwrap();
    });
    join(w).await;
    let got = tokio::time::timeout(Duration::from_secs(10), join(process))
        .await
        .unwrap();
    assert_eq!(got, b"abc");
    io.shutdown().await;
}

#[tokio::test(flavor = "current_thread")]
async fn terminal_output_and_resize_through_the_console_socket() {
    let dir = tempfile::tempdir().unwrap();
    let out = fifo(dir.path(), "out");
    let p = StdioPaths {
        stdout: out.clone(),
        stderr: fifo(dir.path(), "err"),
        terminal: true,
        ..Default::default()
    };
    let (mut io, child) = ProcessIo::open(&p, &owner(), dir.path(), "init", limits())
        .await
        .unwrap();
    assert!(
        child.stdout.is_none(),
        "a terminal process gets its pty from the runtime"
    );
    let console = ConsoleSocket::bind(dir.path()).unwrap();
    let sock: PathBuf = console.path().to_path_buf();
    // Nobody else may reach it: it lives in a fresh directory of its own, 0700, not in `dir`.
    let private = sock.parent().unwrap();
    assert_ne!(private, dir.path());
    assert_eq!(private.parent().unwrap(), dir.path());
    let mode = std::fs::metadata(private).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700, "console socket directory mode {mode:o}");
    // What runc does: open a pty and send the master over the socket.
    let pty = nix::pty::openpty(None, None).unwrap();
    let sender = thread::spawn(move || {
        use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};
        use std::os::fd::AsRawFd;
        let s = std::os::unix::net::UnixStream::connect(sock).unwrap();
        let fds = [pty.master.as_raw_fd()];
        let iov = [std::io::IoSlice::new(b"pty")];
        sendmsg::<()>(
            s.as_raw_fd(),
            &iov,
            &[ControlMessage::ScmRights(&fds)],
            MsgFlags::empty(),
            None,
        )
        .unwrap();
        pty.slave
    });
    let master = console.receive_master().await.unwrap();
    let slave = join(sender).await;
    io.attach_console(master).unwrap();
    io.start();
    io.resize(100, 40).unwrap();
    use std::os::fd::AsFd;
    assert_eq!(crate::sys::window_size(slave.as_fd()).unwrap(), (100, 40));
    let reader = reader(out);
    let mut s = File::from(slave);
    s.write_all(b"hi\n").unwrap();
    drop(s);
    io.wait_output_closed(Duration::from_secs(10)).await;
    let got = join(reader).await;
    assert!(String::from_utf8_lossy(&got).contains("hi"), "{got:?}");
    let sock = console.path().to_path_buf();
    assert!(sock.exists());
    drop(console);
    assert!(!sock.exists(), "the console socket is removed with it");
    io.shutdown().await;
}

/// A terminal's one output is copied from the pty into a log file, or into a logging binary's
/// stdout pipe.
#[tokio::test(flavor = "current_thread")]
async fn a_terminal_s_output_reaches_a_log_file_and_a_logging_binary() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tty.log");
    let logger = install_logger(dir.path(), "exec 5>&-");
    for stdout in [format!("file://{}", file.display()), logger] {
        let p = StdioPaths {
            stdout,
            terminal: true,
            ..Default::default()
        };
        let (mut io, child) = ProcessIo::open(&p, &owner(), dir.path(), "init", limits())
            .await
            .unwrap();
        assert!(child.stdout.is_none() && child.stderr.is_none());
        let pty = nix::pty::openpty(None, None).unwrap();
        io.attach_console(pty.master).unwrap();
        io.start();
        let mut s = File::from(pty.slave);
        s.write_all(b"on tty\n").unwrap();
        drop(s);
        io.wait_output_closed(Duration::from_secs(10)).await;
        // Done: the shim closed its end of the logger's pipe, so the logger reaches its end.
        io.drain(Duration::from_secs(10)).await;
        assert!(io.stream_states().iter().all(|s| s.done));
        if p.stdout.starts_with("binary") {
            let logged = file_appears(&dir.path().join("stdout")).await;
            assert!(logged.contains("on tty"), "{logged:?}");
        }
        io.shutdown().await;
    }
    assert!(std::fs::read_to_string(&file).unwrap().contains("on tty"));
}

/// A process writing as fast as it can, a reader reading as fast as it can: every refused
/// splice is told apart (FIFO full, or process pipe empty) without losing the wake-up that ends
/// it, so the reader never waits the `READER_AWAY` that a lost wake-up costs (it did, once a
/// second, when an empty pipe written to right after the refusal was taken for a full FIFO).
#[tokio::test(flavor = "current_thread")]
async fn a_fast_writer_and_reader_never_wait_for_a_lost_wake_up() {
    let dir = tempfile::tempdir().unwrap();
    let p = paths(dir.path());
    let (mut io, child) = ProcessIo::open(&p, &owner(), dir.path(), "init", limits())
        .await
        .unwrap();
    io.start();
    let out = thread::spawn({
        let path = p.stdout.clone();
        move || {
            let mut f = File::open(path).unwrap();
            let mut buf = vec![0u8; 32 * 1024];
            let mut last = std::time::Instant::now();
            let mut longest = Duration::ZERO;
            while f.read(&mut buf).unwrap() > 0 {
                longest = longest.max(last.elapsed());
                last = std::time::Instant::now();
            }
            longest
        }
    });
    let fd = child.stdout.unwrap();
    let w = thread::spawn(move || {
        let mut f = File::from(fd);
        let chunk = vec![b'x'; 4096];
        let t = std::time::Instant::now();
        while t.elapsed() < super::copy::READER_AWAY * 2 {
            f.write_all(&chunk).unwrap();
        }
    });
    drop(child.stderr);
    join(w).await;
    io.wait_output_closed(Duration::from_secs(10)).await;
    let longest = join(out).await;
    io.drain(Duration::from_secs(10)).await;
    assert!(
        longest < super::copy::READER_AWAY / 2,
        "the reader waited {longest:?} for bytes the process had written"
    );
    assert_eq!(io.stream_states()[0].backlogged, 0);
    io.shutdown().await;
}

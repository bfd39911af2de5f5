//! Live cgroup v1 checks: a real memory cgroup with a small limit, a real OOM kill.
//! Skipped unless the host is v1/hybrid and we are root.

use std::{
    io::{BufRead, BufReader, Write},
    os::unix::process::ExitStatusExt,
    path::{Path, PathBuf},
    process::{Child, ChildStdin, ChildStdout, Command, Stdio},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use containerd_shim_protos::{cgroups::metrics::Metrics, protobuf::Message};
use tokio::{sync::mpsc::unbounded_channel, time::timeout};

use super::{CgroupMode, ContainerCgroup, Inner};

const ROOT: &str = "/sys/fs/cgroup";
const CONTROLLERS: [&str; 5] = ["memory", "cpu", "cpuacct", "pids", "blkio"];
const LIMIT: u64 = 64 << 20;
const PYTHON: &str = "/usr/bin/python3";

/// Touches its memory (bytes * n) so that it is charged, unlike a calloc'd bytearray.
const ALLOCATOR: &str = r#"
import sys
held = b"x" * (8 << 20)
print("ready", flush=True)
sys.stdin.readline()
more = b"x" * (1 << 30)
print("survived", flush=True)
"#;

/// The cgroups and the process in them; dropping kills the process and removes the
/// cgroups, so a failed assertion leaves nothing behind.
struct Fixture {
    dirs: Vec<PathBuf>,
    child: Option<Child>,
}

impl Fixture {
    fn create() -> Option<Fixture> {
        let skip = |why: &str| {
            eprintln!("skipping live cgroup v1 test: {why}");
            None
        };
        if CgroupMode::detect().ok()? != CgroupMode::Legacy {
            return skip("host is not cgroup v1");
        }
        if !nix::unistd::geteuid().is_root() {
            return skip("not root");
        }
        if !Path::new(ROOT).join("memory/cgroup.event_control").exists() {
            return skip("no v1 memory controller");
        }
        if !Path::new(PYTHON).exists() {
            return skip("no python3");
        }
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let name = format!("podshim-test-{}-{nanos}", std::process::id());
        let mut fixture = Fixture {
            dirs: Vec::new(),
            child: None,
        };
        for controller in CONTROLLERS {
            let mount = Path::new(ROOT).join(controller);
            if mount.is_dir() {
                let dir = mount.join(&name);
                std::fs::create_dir(&dir).expect("create test cgroup");
                fixture.dirs.push(dir);
            }
        }
        let memory = fixture.memory();
        std::fs::write(memory.join("memory.limit_in_bytes"), LIMIT.to_string())
            .expect("set memory limit");
        // With swap accounting, swap would absorb the overrun instead of the OOM killer.
        if memory.join("memory.memsw.limit_in_bytes").exists() {
            std::fs::write(
                memory.join("memory.memsw.limit_in_bytes"),
                LIMIT.to_string(),
            )
            .expect("set memsw limit");
        }
        Some(fixture)
    }

    fn memory(&self) -> PathBuf {
        self.dirs[0].clone()
    }

    /// Starts the allocator inside the cgroups: the shell waits until it has been moved
    /// in, so that everything python allocates is charged here.
    fn spawn(&mut self) -> (u32, ChildStdin, BufReader<ChildStdout>) {
        let mut child = Command::new("/bin/busybox")
            .args([
                "sh",
                "-c",
                "read go && exec \"$0\" -c \"$1\"",
                PYTHON,
                ALLOCATOR,
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn allocator");
        let pid = child.id();
        let mut stdin = child.stdin.take().expect("piped stdin");
        let stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
        self.child = Some(child);
        for dir in &self.dirs {
            std::fs::write(dir.join("cgroup.procs"), pid.to_string()).expect("join cgroup");
        }
        stdin.write_all(b"go\n").expect("release allocator");
        (pid, stdin, stdout)
    }

    fn remove(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        for dir in self.dirs.drain(..) {
            // A killed task leaves its cgroup asynchronously.
            for _ in 0..100 {
                match std::fs::remove_dir(&dir) {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                        std::thread::sleep(Duration::from_millis(20))
                    }
                    _ => break,
                }
            }
        }
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        self.remove();
    }
}

fn metrics(cg: &ContainerCgroup) -> Metrics {
    let any = cg.metrics().expect("metrics");
    assert_eq!(any.type_url, "io.containerd.cgroups.v1.Metrics");
    Metrics::parse_from_bytes(&any.value).expect("decode metrics")
}

#[tokio::test]
async fn v1_metrics_and_oom_kill() {
    let Some(mut fixture) = Fixture::create() else {
        return;
    };
    let (pid, mut stdin, mut stdout) = fixture.spawn();
    let mut line = String::new();
    stdout.read_line(&mut line).expect("read from allocator");
    assert_eq!(line, "ready\n", "allocator died before allocating");

    let cg = ContainerCgroup::for_pid(pid).expect("cgroup of allocator");
    let Inner::V1(v1) = &cg.inner else {
        panic!("expected v1: {cg:?}")
    };
    assert_eq!(v1.memory_dir().ok(), Some(fixture.memory().as_path()));

    let m = metrics(&cg);
    assert!(m.memory.usage.usage >= 8 << 20, "{:?}", m.memory);
    assert_eq!(m.memory.usage.limit, LIMIT);
    assert!(m.memory.total_rss >= 8 << 20, "{:?}", m.memory);
    assert!(m.memory.total_inactive_file <= m.memory.usage.usage);
    assert!(m.cpu.usage.total > 0, "{:?}", m.cpu);
    assert_eq!(m.pids.current, 1);
    assert_eq!(m.memory_oom_control.oom_kill, 0);

    let (tx, mut rx) = unbounded_channel();
    cg.watch_oom("live".into(), tx).expect("watch OOM");
    stdin.write_all(b"\n").expect("tell allocator to overrun");

    let reported = timeout(Duration::from_secs(10), rx.recv()).await;
    assert_eq!(reported.ok().flatten().as_deref(), Some("live"));

    let status = fixture.child.take().expect("child").wait().expect("wait");
    assert_eq!(status.signal(), Some(libc::SIGKILL), "{status:?}");
    let m = metrics(&cg);
    assert!(
        m.memory_oom_control.oom_kill >= 1,
        "{:?}",
        m.memory_oom_control
    );
    // The peak shows the overrun (failcnt stays 0 on recent kernels).
    assert_eq!(m.memory.usage.max, LIMIT, "{:?}", m.memory);

    // Notifications raised while the kill was under way may still be queued.
    tokio::time::sleep(Duration::from_millis(200)).await;
    while rx.try_recv().is_ok() {}

    // Removal signals the eventfd once more, which must end the watcher, not report.
    fixture.remove();
    let after_removal = timeout(Duration::from_secs(5), rx.recv()).await;
    assert_eq!(
        after_removal,
        Ok(None),
        "OOM watcher reported or outlived its cgroup"
    );
}

//! Fixture cgroup trees for v1 and v2 (this host is v1-hybrid), plus one live v1 OOM.

use std::{fs, path::Path, time::Duration};

use containerd_shim_protos::{
    cgroups::metrics::Metrics as V1, cgroups_v2::metrics::Metrics as V2, protobuf::Message,
};

use super::*;

const HYBRID: &str = "12:pids:/kubepods/pod1/c1
11:memory:/kubepods/pod1/c1
10:cpu:/kubepods/pod1/c1
9:cpuacct:/kubepods/pod1/c1
8:blkio:/kubepods/pod1/c1
1:name=systemd:/kubepods/pod1/c1
0::/kubepods/pod1/c1
";

fn write(dir: &Path, name: &str, content: &str) {
    fs::create_dir_all(dir).unwrap();
    fs::write(dir.join(name), content).unwrap();
}

#[test]
fn hybrid_host_reads_v1_controllers() {
    let root = tempfile::tempdir().unwrap();
    let cg = ContainerCgroup::parse(HYBRID, root.path(), false).unwrap();
    let ContainerCgroup::V1(p) = cg else {
        panic!("hybrid must read v1")
    };
    assert_eq!(
        p.memory.unwrap(),
        root.path().join("memory/kubepods/pod1/c1")
    );
    assert_eq!(
        p.cpuacct.unwrap(),
        root.path().join("cpuacct/kubepods/pod1/c1")
    );
    assert_eq!(p.pids.unwrap(), root.path().join("pids/kubepods/pod1/c1"));
}

#[test]
fn comounted_cpu_cpuacct_is_found_under_the_joined_name() {
    let root = tempfile::tempdir().unwrap();
    fs::create_dir_all(root.path().join("cpu,cpuacct/k/c")).unwrap();
    let cg = ContainerCgroup::parse("4:cpu,cpuacct:/k/c\n", root.path(), false).unwrap();
    let ContainerCgroup::V1(p) = cg else { panic!() };
    assert_eq!(p.cpuacct.unwrap(), root.path().join("cpu,cpuacct/k/c"));
    assert_eq!(p.cpu.unwrap(), root.path().join("cpu,cpuacct/k/c"));
}

#[test]
fn unified_host_reads_the_v2_path() {
    let root = tempfile::tempdir().unwrap();
    let text = "0::/system.slice/containerd.service/kubepods-pod1.slice:cri-containerd:c1\n";
    let cg = ContainerCgroup::parse(text, root.path(), true).unwrap();
    assert_eq!(
        cg,
        ContainerCgroup::V2(
            root.path()
                .join("system.slice/containerd.service/kubepods-pod1.slice:cri-containerd:c1")
        )
    );
    assert!(ContainerCgroup::parse("5:memory:/x\n", root.path(), true).is_err());
}

#[test]
fn v1_metrics_land_in_containerds_fields() {
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    let mem = r.join("memory/kubepods/pod1/c1");
    write(&mem, "memory.usage_in_bytes", "10485760\n");
    write(&mem, "memory.limit_in_bytes", "16777216\n");
    write(&mem, "memory.max_usage_in_bytes", "12000000\n");
    write(&mem, "memory.failcnt", "3\n");
    write(
        &mem,
        "memory.stat",
        "cache 4096\nrss 8192\ninactive_file 1024\ntotal_inactive_file 2048\ntotal_rss 9000\npgfault 7\n",
    );
    write(
        &mem,
        "memory.oom_control",
        "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n",
    );
    let acct = r.join("cpuacct/kubepods/pod1/c1");
    write(&acct, "cpuacct.usage", "123456789\n");
    write(&acct, "cpuacct.stat", "user 5\nsystem 3\n");
    write(&acct, "cpuacct.usage_percpu", "100 200 \n");
    write(
        &r.join("cpu/kubepods/pod1/c1"),
        "cpu.stat",
        "nr_periods 10\nnr_throttled 2\nthrottled_time 99\n",
    );
    let pids = r.join("pids/kubepods/pod1/c1");
    write(&pids, "pids.current", "4\n");
    write(&pids, "pids.max", "max\n");

    let cg = ContainerCgroup::parse(HYBRID, r, false).unwrap();
    let any = cg.metrics().unwrap();
    assert_eq!(any.type_url, "io.containerd.cgroups.v1.Metrics");
    let m = V1::parse_from_bytes(&any.value).unwrap();
    let usage = m.memory.usage.as_ref().unwrap();
    assert_eq!(
        (usage.usage, usage.limit, usage.max, usage.failcnt),
        (10485760, 16777216, 12000000, 3)
    );
    // CRI's working set is usage - total_inactive_file.
    assert_eq!(m.memory.total_inactive_file, 2048);
    assert_eq!(
        (m.memory.cache, m.memory.rss, m.memory.pg_fault),
        (4096, 8192, 7)
    );
    assert_eq!(m.memory_oom_control.oom_kill, 2);
    let cpu = m.cpu.usage.as_ref().unwrap();
    assert_eq!(cpu.total, 123456789);
    assert_eq!((cpu.user, cpu.kernel), (50_000_000, 30_000_000));
    assert_eq!(cpu.per_cpu, vec![100, 200]);
    assert_eq!(m.cpu.throttling.throttled_time, 99);
    assert_eq!((m.pids.current, m.pids.limit), (4, 0));
}

#[test]
fn v2_metrics_land_in_containerds_fields() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write(d, "cpu.stat", "usage_usec 5000\nuser_usec 3000\nsystem_usec 2000\nnr_periods 1\nnr_throttled 0\nthrottled_usec 0\n");
    write(d, "memory.current", "2097152\n");
    write(d, "memory.max", "max\n");
    write(
        d,
        "memory.stat",
        "anon 1048576\nfile 524288\ninactive_file 4096\npgfault 11\n",
    );
    write(
        d,
        "memory.events",
        "low 0\nhigh 0\nmax 5\noom 1\noom_kill 1\n",
    );
    write(d, "pids.current", "2\n");
    write(d, "pids.max", "100\n");
    let any = ContainerCgroup::V2(d.to_path_buf()).metrics().unwrap();
    assert_eq!(any.type_url, "io.containerd.cgroups.v2.Metrics");
    let m = V2::parse_from_bytes(&any.value).unwrap();
    assert_eq!(
        (m.cpu.usage_usec, m.cpu.user_usec, m.cpu.system_usec),
        (5000, 3000, 2000)
    );
    assert_eq!(m.memory.usage, 2097152);
    assert_eq!(m.memory.usage_limit, u64::MAX);
    assert_eq!(
        (m.memory.anon, m.memory.file, m.memory.inactive_file),
        (1048576, 524288, 4096)
    );
    assert_eq!((m.memory_events.max, m.memory_events.oom_kill), (5, 1));
    assert_eq!((m.pids.current, m.pids.limit), (2, 100));
}

#[test]
fn a_removed_cgroup_is_not_found() {
    let dir = tempfile::tempdir().unwrap();
    let gone = dir.path().join("gone");
    let e = ContainerCgroup::V2(gone).metrics().unwrap_err();
    assert!(matches!(e, Error::NotFound(_)), "{e}");
}

#[tokio::test(flavor = "current_thread")]
async fn v2_oom_watch_follows_the_oom_kill_counter() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join("c1");
    write(&d, "memory.events", "oom 0\noom_kill 0\n");
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    ContainerCgroup::V2(d.clone())
        .watch_oom("c1".into(), tx)
        .unwrap();
    tokio::task::yield_now().await;
    fs::write(d.join("memory.events"), "oom 1\noom_kill 1\n").unwrap();
    let got = tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .unwrap();
    assert_eq!(got.as_deref(), Some("c1"));
    fs::write(d.join("memory.events"), "oom 1\noom_kill 1\nlow 0\n").unwrap();
    fs::remove_dir_all(&d).unwrap();
    // No new kill: the watcher ends without reporting one.
    let end = tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .unwrap();
    assert_eq!(end, None, "watch ends when the cgroup goes away");
}

/// Removes the test cgroup even when an assertion fails.
struct TestCgroup(std::path::PathBuf);
impl Drop for TestCgroup {
    fn drop(&mut self) {
        for _ in 0..50 {
            if fs::remove_dir(&self.0).is_ok() || !self.0.exists() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

#[tokio::test(flavor = "current_thread")]
async fn live_v1_oom_kill_is_reported() {
    let memory_root = Path::new("/sys/fs/cgroup/memory");
    if nix::sys::statfs::statfs(CGROUP_ROOT)
        .map(|s| s.filesystem_type() == nix::sys::statfs::CGROUP2_SUPER_MAGIC)
        .unwrap_or(true)
    {
        // A unified host: the v2 path is covered by the fixture tests above.
        assert!(!memory_root.join("memory.limit_in_bytes").exists());
        return;
    }
    let cg = TestCgroup(memory_root.join(format!("podshim-test-{}", std::process::id())));
    fs::create_dir_all(&cg.0).unwrap();
    fs::write(cg.0.join("memory.limit_in_bytes"), "8388608").unwrap();
    let _ = fs::write(cg.0.join("memory.memsw.limit_in_bytes"), "8388608");
    let mut child = std::process::Command::new("/bin/sh")
        .arg("-c")
        .arg(format!(
            "echo $$ > {}/cgroup.procs && sleep 0.5 && exec /bin/busybox tail /dev/zero",
            cg.0.display()
        ))
        .spawn()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let watched = ContainerCgroup::for_pid(child.id()).unwrap();
    let ContainerCgroup::V1(ref paths) = watched else {
        panic!("v1 host")
    };
    assert_eq!(paths.memory.as_deref(), Some(cg.0.as_path()));
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    watched.watch_oom("c-oom".into(), tx).unwrap();
    let got = tokio::time::timeout(Duration::from_secs(30), rx.recv()).await;
    let status = child.wait().unwrap();
    assert_eq!(got.unwrap().as_deref(), Some("c-oom"));
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(status.signal(), Some(9), "the kernel OOM-killed it");
    let m = V1::parse_from_bytes(&watched.metrics().unwrap().value).unwrap();
    assert!(m.memory.usage.max > 0, "max usage recorded");
    assert!(m.memory_oom_control.oom_kill >= 1 || m.memory.usage.failcnt > 0);
}

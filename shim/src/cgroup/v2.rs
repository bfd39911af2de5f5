//! cgroup v2 statistics as `io.containerd.cgroups.v2.Metrics`, read the way containerd's
//! cgroup2 manager reads them. Units stay the kernel's: CPU times in microseconds, which
//! is what the v2 type's `*_usec` fields and CRI expect.

use std::path::{Path, PathBuf};

use containerd_shim_protos::{
    cgroups_v2::metrics::{CPUStat, IOEntry, IOStat, MemoryEvents, MemoryStat, Metrics, PidsStat},
    protobuf::MessageField,
};

use super::read::{fill, gone, Content, Field};
use crate::error::{Error, Result};

#[derive(Debug, Clone)]
pub(super) struct Cgroup {
    dir: PathBuf,
}

const CPU_STAT_FIELDS: &[Field<CPUStat>] = &[
    ("usage_usec", |c| &mut c.usage_usec),
    ("user_usec", |c| &mut c.user_usec),
    ("system_usec", |c| &mut c.system_usec),
    ("nr_periods", |c| &mut c.nr_periods),
    ("nr_throttled", |c| &mut c.nr_throttled),
    ("throttled_usec", |c| &mut c.throttled_usec),
    ("nr_bursts", |c| &mut c.nr_bursts),
    ("burst_usec", |c| &mut c.burst_usec),
];

const MEMORY_STAT_FIELDS: &[Field<MemoryStat>] = &[
    ("anon", |m| &mut m.anon),
    ("file", |m| &mut m.file),
    ("kernel_stack", |m| &mut m.kernel_stack),
    ("slab", |m| &mut m.slab),
    ("sock", |m| &mut m.sock),
    ("shmem", |m| &mut m.shmem),
    ("file_mapped", |m| &mut m.file_mapped),
    ("file_dirty", |m| &mut m.file_dirty),
    ("file_writeback", |m| &mut m.file_writeback),
    ("anon_thp", |m| &mut m.anon_thp),
    ("inactive_anon", |m| &mut m.inactive_anon),
    ("active_anon", |m| &mut m.active_anon),
    // CRI's working set is usage - inactive_file.
    ("inactive_file", |m| &mut m.inactive_file),
    ("active_file", |m| &mut m.active_file),
    ("unevictable", |m| &mut m.unevictable),
    ("slab_reclaimable", |m| &mut m.slab_reclaimable),
    ("slab_unreclaimable", |m| &mut m.slab_unreclaimable),
    ("pgfault", |m| &mut m.pgfault),
    ("pgmajfault", |m| &mut m.pgmajfault),
    ("workingset_refault", |m| &mut m.workingset_refault),
    ("workingset_activate", |m| &mut m.workingset_activate),
    // 5.9+ split these by anon/file and dropped the plain names; file is the old meaning.
    ("workingset_refault_file", |m| &mut m.workingset_refault),
    ("workingset_activate_file", |m| &mut m.workingset_activate),
    ("workingset_nodereclaim", |m| &mut m.workingset_nodereclaim),
    ("pgrefill", |m| &mut m.pgrefill),
    ("pgscan", |m| &mut m.pgscan),
    ("pgsteal", |m| &mut m.pgsteal),
    ("pgactivate", |m| &mut m.pgactivate),
    ("pgdeactivate", |m| &mut m.pgdeactivate),
    ("pglazyfree", |m| &mut m.pglazyfree),
    ("pglazyfreed", |m| &mut m.pglazyfreed),
    ("thp_fault_alloc", |m| &mut m.thp_fault_alloc),
    ("thp_collapse_alloc", |m| &mut m.thp_collapse_alloc),
];

pub(super) const MEMORY_EVENT_FIELDS: &[Field<MemoryEvents>] = &[
    ("low", |e| &mut e.low),
    ("high", |e| &mut e.high),
    ("max", |e| &mut e.max),
    ("oom", |e| &mut e.oom),
    ("oom_kill", |e| &mut e.oom_kill),
    ("oom_group_kill", |e| &mut e.oom_group_kill),
];

impl Cgroup {
    pub(super) fn new(dir: PathBuf) -> Cgroup {
        Cgroup { dir }
    }

    pub(super) fn dir(&self) -> &Path {
        &self.dir
    }

    pub(super) fn metrics(&self) -> Result<Metrics> {
        let dir = self.dir.as_path();
        if !dir.is_dir() {
            return Err(gone(dir));
        }
        let mut metrics = Metrics::new();
        // Present in every non-root cgroup whether or not the cpu controller is enabled.
        let mut cpu = CPUStat::new();
        fill(
            &mut cpu,
            &Content::required(dir, "cpu.stat")?.flat_keyed()?,
            CPU_STAT_FIELDS,
        );
        metrics.cpu = MessageField::some(cpu);

        // The other controllers' files exist only where the parent enables them.
        if let Some(memory) = memory(dir)? {
            metrics.memory = MessageField::some(memory);
        }
        if let Some(events) = Content::optional(dir, "memory.events")? {
            let mut memory_events = MemoryEvents::new();
            fill(
                &mut memory_events,
                &events.flat_keyed()?,
                MEMORY_EVENT_FIELDS,
            );
            metrics.memory_events = MessageField::some(memory_events);
        }
        if let Some(current) = Content::optional(dir, "pids.current")? {
            let mut pids = PidsStat::new();
            pids.current = current.number()?;
            if let Some(max) = Content::optional(dir, "pids.max")? {
                pids.limit = max.limit(u64::MAX)?;
            }
            metrics.pids = MessageField::some(pids);
        }
        if let Some(io) = Content::optional(dir, "io.stat")? {
            let mut stat = IOStat::new();
            stat.usage = io_entries(&io)?;
            metrics.io = MessageField::some(stat);
        }
        Ok(metrics)
    }
}

fn memory(dir: &Path) -> Result<Option<MemoryStat>> {
    let Some(current) = Content::optional(dir, "memory.current")? else {
        return Ok(None);
    };
    let mut memory = MemoryStat::new();
    memory.usage = current.number()?;
    if let Some(stat) = Content::optional(dir, "memory.stat")? {
        fill(&mut memory, &stat.flat_keyed()?, MEMORY_STAT_FIELDS);
    }
    let limits: [Field<MemoryStat>; 5] = [
        ("memory.max", |m| &mut m.usage_limit),
        ("memory.swap.current", |m| &mut m.swap_usage),
        ("memory.swap.max", |m| &mut m.swap_limit),
        // The peaks are 5.19+.
        ("memory.peak", |m| &mut m.max_usage),
        ("memory.swap.peak", |m| &mut m.swap_max_usage),
    ];
    for (name, field) in limits {
        if let Some(content) = Content::optional(dir, name)? {
            // "max" reads as u64::MAX, as containerd's cgroup2 reports it.
            *field(&mut memory) = content.limit(u64::MAX)?;
        }
    }
    Ok(Some(memory))
}

/// `major:minor key=value...` lines; keys the proto lacks (dbytes, dios) are dropped.
fn io_entries(content: &Content) -> Result<Vec<IOEntry>> {
    let malformed = |line: &str| {
        Error::Other(format!(
            "{}: malformed line {line:?}",
            content.path.display()
        ))
    };
    let mut entries = Vec::new();
    for line in content.text.lines() {
        let mut fields = line.split_whitespace();
        let Some(device) = fields.next() else {
            continue;
        };
        let mut entry = IOEntry::new();
        let (major, minor) = device
            .split_once(':')
            .and_then(|(major, minor)| Some((major.parse().ok()?, minor.parse().ok()?)))
            .ok_or_else(|| malformed(line))?;
        entry.major = major;
        entry.minor = minor;
        for field in fields {
            let (key, value) = field.split_once('=').ok_or_else(|| malformed(line))?;
            let value: u64 = value.parse().map_err(|_| malformed(line))?;
            match key {
                "rbytes" => entry.rbytes = value,
                "wbytes" => entry.wbytes = value,
                "rios" => entry.rios = value,
                "wios" => entry.wios = value,
                _ => {}
            }
        }
        entries.push(entry);
    }
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use containerd_shim_protos::{cgroups_v2::metrics::Metrics, protobuf::Message};

    use super::super::{test_util::write, CgroupMode, ContainerCgroup};
    use crate::error::Error;

    const CG: &str = "kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1.slice/cri-containerd-abc.scope";

    const MEMORY_STAT: &str = "\
anon 8192000
file 4096000
kernel 300000
kernel_stack 16384
slab 200000
sock 0
shmem 4096
file_mapped 1024000
file_dirty 8192
file_writeback 0
anon_thp 0
inactive_anon 100
active_anon 8191900
inactive_file 3000000
active_file 1096000
unevictable 0
slab_reclaimable 150000
slab_unreclaimable 50000
pgfault 7777
pgmajfault 33
workingset_refault_anon 0
workingset_refault_file 5
pgscan 10
pgsteal 9
thp_fault_alloc 0
";

    fn fixture(root: &Path) {
        let f = |file: &str| format!("cgroup/{CG}/{file}");
        write(
            root,
            &[
                ("proc/42/cgroup", &format!("0::/{CG}\n")),
                (
                    &f("cpu.stat"),
                    "usage_usec 5000000\nuser_usec 3000000\nsystem_usec 2000000\n\
                     core_sched.force_idle_usec 0\nnr_periods 10\nnr_throttled 4\n\
                     throttled_usec 1234\nnr_bursts 1\nburst_usec 99\n",
                ),
                (&f("memory.current"), "13000000\n"),
                (&f("memory.max"), "max\n"),
                (&f("memory.peak"), "20000000\n"),
                (&f("memory.stat"), MEMORY_STAT),
                (
                    &f("memory.events"),
                    "low 0\nhigh 0\nmax 12\noom 2\noom_kill 1\noom_group_kill 0\n",
                ),
                (&f("memory.swap.current"), "0\n"),
                (&f("memory.swap.max"), "max\n"),
                (&f("pids.current"), "3\n"),
                (&f("pids.max"), "max\n"),
                (
                    &f("io.stat"),
                    "254:0 rbytes=4096 wbytes=8192 rios=1 wios=2 dbytes=0 dios=0\n",
                ),
            ],
        );
    }

    fn load(root: &Path) -> ContainerCgroup {
        ContainerCgroup::for_pid_in(
            &root.join("proc"),
            &root.join("cgroup"),
            CgroupMode::Unified,
            42,
        )
        .unwrap()
    }

    fn metrics(cg: &ContainerCgroup) -> Metrics {
        let any = cg.metrics().unwrap();
        assert_eq!(any.type_url, "io.containerd.cgroups.v2.Metrics");
        Metrics::parse_from_bytes(&any.value).unwrap()
    }

    #[test]
    fn fields_land_where_cri_reads_them() {
        let tmp = tempfile::tempdir().unwrap();
        fixture(tmp.path());
        let m = metrics(&load(tmp.path()));
        // Microseconds, as the v2 type's names say; CRI multiplies by 1000.
        assert_eq!(m.cpu.usage_usec, 5_000_000);
        assert_eq!(m.cpu.user_usec, 3_000_000);
        assert_eq!(m.cpu.system_usec, 2_000_000);
        assert_eq!(m.cpu.nr_periods, 10);
        assert_eq!(m.cpu.nr_throttled, 4);
        assert_eq!(m.cpu.throttled_usec, 1234);
        assert_eq!(m.cpu.nr_bursts, 1);
        assert_eq!(m.cpu.burst_usec, 99);

        // CRI: working set = usage - inactive_file; rss = anon.
        let memory = &m.memory;
        assert_eq!(memory.usage, 13_000_000);
        assert_eq!(memory.inactive_file, 3_000_000);
        assert_eq!(memory.anon, 8_192_000);
        assert_eq!(memory.file, 4_096_000);
        assert_eq!(memory.file_mapped, 1_024_000);
        assert_eq!(memory.pgfault, 7777);
        assert_eq!(memory.pgmajfault, 33);
        assert_eq!(memory.kernel_stack, 16384);
        assert_eq!(memory.slab_reclaimable, 150_000);
        assert_eq!(memory.pgscan, 10);
        assert_eq!(memory.workingset_refault, 5);
        assert_eq!(memory.max_usage, 20_000_000);
        assert_eq!(memory.usage_limit, u64::MAX);
        assert_eq!(memory.swap_usage, 0);
        assert_eq!(memory.swap_limit, u64::MAX);

        assert_eq!(m.memory_events.max, 12);
        assert_eq!(m.memory_events.oom, 2);
        assert_eq!(m.memory_events.oom_kill, 1);

        assert_eq!(m.pids.current, 3);
        assert_eq!(m.pids.limit, u64::MAX);

        let io = &m.io.usage;
        assert_eq!(io.len(), 1);
        assert_eq!(
            (
                io[0].major,
                io[0].minor,
                io[0].rbytes,
                io[0].wbytes,
                io[0].rios,
                io[0].wios
            ),
            (254, 0, 4096, 8192, 1, 2)
        );
    }

    #[test]
    fn numeric_limits() {
        let tmp = tempfile::tempdir().unwrap();
        fixture(tmp.path());
        let cg = load(tmp.path());
        write(
            tmp.path(),
            &[
                (&format!("cgroup/{CG}/memory.max"), "67108864\n"),
                (&format!("cgroup/{CG}/memory.swap.max"), "0\n"),
                (&format!("cgroup/{CG}/pids.max"), "1024\n"),
            ],
        );
        let m = metrics(&cg);
        assert_eq!(m.memory.usage_limit, 67108864);
        assert_eq!(m.memory.swap_limit, 0);
        assert_eq!(m.pids.limit, 1024);
    }

    #[test]
    fn disabled_controllers_are_left_out() {
        let tmp = tempfile::tempdir().unwrap();
        write(
            tmp.path(),
            &[
                ("proc/42/cgroup", "0::/a\n"),
                (
                    "cgroup/a/cpu.stat",
                    "usage_usec 7\nuser_usec 4\nsystem_usec 3\n",
                ),
            ],
        );
        let m = metrics(&load(tmp.path()));
        assert_eq!(m.cpu.usage_usec, 7);
        assert!(m.memory.is_none());
        assert!(m.memory_events.is_none());
        assert!(m.pids.is_none());
        assert!(m.io.is_none());
    }

    #[test]
    fn missing_files_and_cgroups() {
        let tmp = tempfile::tempdir().unwrap();
        fixture(tmp.path());
        let cg = load(tmp.path());
        let dir = tmp.path().join("cgroup").join(CG);

        std::fs::remove_file(dir.join("cpu.stat")).unwrap();
        let err = cg.metrics().unwrap_err();
        assert!(
            matches!(&err, Error::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound),
            "{err:?}"
        );

        std::fs::remove_dir_all(&dir).unwrap();
        let err = cg.metrics().unwrap_err();
        assert!(matches!(err, Error::NotFound(_)), "{err:?}");
    }

    #[test]
    fn malformed_files_are_errors() {
        let tmp = tempfile::tempdir().unwrap();
        let cg = {
            fixture(tmp.path());
            load(tmp.path())
        };
        for (file, content) in [
            ("memory.max", "lots\n"),
            ("memory.stat", "anon\n"),
            ("io.stat", "254:0 rbytes\n"),
            ("io.stat", "sda rbytes=1\n"),
            ("pids.current", "\n"),
        ] {
            fixture(tmp.path());
            let file = format!("cgroup/{CG}/{file}");
            write(tmp.path(), &[(&file, content)]);
            let err = cg.metrics().unwrap_err();
            assert!(
                matches!(&err, Error::Other(m) if m.contains(&file)),
                "{file}: {err:?}"
            );
        }
    }
}

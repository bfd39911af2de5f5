//! cgroup v2 statistics as `io.containerd.cgroups.v2.Metrics`, read the way containerd's
//! cgroup2 manager reads them. Units stay the kernel's: CPU times in microseconds, which
//! is what the v2 type's `*_usec` fields and CRI expect.

use std::path::{Path, PathBuf};

use containerd_shim_protos::{
    cgroups_v2::metrics::{
        CPUStat, HugeTlbStat, IOEntry, IOStat, MemoryEvents, MemoryStat, Metrics, PSIStats,
        PidsStat, RdmaEntry, RdmaStat,
    },
    protobuf::MessageField,
};

use super::read::{fill, gone, hugetlb_page_sizes, Content, Field};
use crate::error::Result;

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
        // The PSI files, like cpu.stat, are in every cgroup whatever its controllers, unless
        // the kernel has no PSI (or it is off).
        cpu.psi = psi(dir, "cpu.pressure")?;
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
        let io = Content::optional(dir, "io.stat")?;
        let io_psi = psi(dir, "io.pressure")?;
        // As containerd: I/O pressure is reported without the io controller too.
        if io.is_some() || io_psi.is_some() {
            let mut stat = IOStat::new();
            if let Some(io) = io {
                stat.usage = io_entries(&io)?;
            }
            stat.psi = io_psi;
            metrics.io = MessageField::some(stat);
        }
        metrics.rdma = rdma(dir)?.into();
        metrics.hugetlb = hugetlb(dir)?;
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
    memory.psi = psi(dir, "memory.pressure")?;
    Ok(Some(memory))
}

/// `major:minor key=value...` lines; keys the proto lacks (dbytes, dios) are dropped.
fn io_entries(content: &Content) -> Result<Vec<IOEntry>> {
    let mut entries = Vec::new();
    for (device, pairs) in content.nested_keyed() {
        let mut entry = IOEntry::new();
        let (major, minor) = device.split_once(':').unwrap_or((device, ""));
        entry.major = content.parse(major)?;
        entry.minor = content.parse(minor)?;
        for pair in pairs {
            let (key, value) = pair?;
            let field = match key {
                "rbytes" => &mut entry.rbytes,
                "wbytes" => &mut entry.wbytes,
                "rios" => &mut entry.rios,
                "wios" => &mut entry.wios,
                _ => continue,
            };
            *field = content.parse(value)?;
        }
        entries.push(entry);
    }
    Ok(entries)
}

/// A PSI file: a `some` and (cpu.pressure since 5.13, memory and io always) a `full` line of
/// `avg10=.. avg60=.. avg300=.. total=..`: percentages of wall time over 10, 60 and 300
/// seconds, and the total stall in microseconds. Unset without the file, as containerd
/// leaves it.
fn psi(dir: &Path, name: &str) -> Result<MessageField<PSIStats>> {
    let Some(content) = Content::optional(dir, name)? else {
        return Ok(MessageField::none());
    };
    let mut stats = PSIStats::new();
    for (kind, pairs) in content.nested_keyed() {
        let data = match kind {
            "some" => stats.some.mut_or_insert_default(),
            "full" => stats.full.mut_or_insert_default(),
            _ => continue,
        };
        for pair in pairs {
            let (key, value) = pair?;
            match key {
                "avg10" => data.avg10 = content.decimal(value)?,
                "avg60" => data.avg60 = content.decimal(value)?,
                "avg300" => data.avg300 = content.decimal(value)?,
                "total" => data.total = content.parse(value)?,
                _ => {}
            }
        }
    }
    Ok(MessageField::some(stats))
}

fn rdma(dir: &Path) -> Result<Option<RdmaStat>> {
    let Some(current) = Content::optional(dir, "rdma.current")? else {
        return Ok(None);
    };
    let entry = |device, hca_handles, hca_objects| RdmaEntry {
        device,
        hca_handles,
        hca_objects,
        ..Default::default()
    };
    let mut rdma = RdmaStat::new();
    rdma.current = current.rdma(entry)?;
    if let Some(max) = Content::optional(dir, "rdma.max")? {
        rdma.limit = max.rdma(entry)?;
    }
    Ok(Some(rdma))
}

/// One entry per huge page size, as containerd's cgroup2 reads them: usage, the limit (`max`
/// is u64::MAX) and, as failcnt, the `max` count of hugetlb.<size>.events (allocations
/// refused at the limit). Empty without the hugetlb controller.
fn hugetlb(dir: &Path) -> Result<Vec<HugeTlbStat>> {
    let mut stats = Vec::new();
    for pagesize in hugetlb_page_sizes(dir, "current")? {
        let mut stat = HugeTlbStat::new();
        let file = |name: &str| format!("hugetlb.{pagesize}.{name}");
        if let Some(current) = Content::optional(dir, &file("current"))? {
            stat.current = current.number()?;
        }
        if let Some(max) = Content::optional(dir, &file("max"))? {
            stat.max = max.limit(u64::MAX)?;
        }
        if let Some(events) = Content::optional(dir, &file("events"))? {
            fill(
                &mut stat,
                &events.flat_keyed()?,
                &[("max", |s| &mut s.failcnt)],
            );
        }
        stat.pagesize = pagesize;
        stats.push(stat);
    }
    Ok(stats)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use containerd_shim_protos::{
        cgroups_v2::metrics::{Metrics, PSIData, RdmaEntry},
        protobuf::Message,
    };

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
        assert!(m.rdma.is_none());
        assert!(m.hugetlb.is_empty());
        assert!(m.cpu.psi.is_none());
    }

    #[test]
    fn pressure_lands_in_cpu_memory_and_io() {
        let tmp = tempfile::tempdir().unwrap();
        fixture(tmp.path());
        let f = |file: &str| format!("cgroup/{CG}/{file}");
        write(
            tmp.path(),
            &[
                (
                    &f("cpu.pressure"),
                    "some avg10=1.50 avg60=0.75 avg300=0.25 total=123456\n\
                     full avg10=0.50 avg60=0.10 avg300=0.00 total=6543\n",
                ),
                (
                    &f("memory.pressure"),
                    "some avg10=12.34 avg60=5.00 avg300=1.00 total=987654321\n\
                     full avg10=10.00 avg60=4.50 avg300=0.90 total=876543210\n",
                ),
                // cpu.pressure had no full line before 5.13; a missing line stays unset.
                (
                    &f("io.pressure"),
                    "some avg10=0.00 avg60=0.01 avg300=99.99 total=42\n",
                ),
            ],
        );
        let m = metrics(&load(tmp.path()));
        let data = |d: &PSIData| (d.avg10, d.avg60, d.avg300, d.total);
        assert_eq!(data(&m.cpu.psi.some), (1.5, 0.75, 0.25, 123_456));
        assert_eq!(data(&m.cpu.psi.full), (0.5, 0.1, 0.0, 6543));
        assert_eq!(data(&m.memory.psi.some), (12.34, 5.0, 1.0, 987_654_321));
        assert_eq!(data(&m.memory.psi.full), (10.0, 4.5, 0.9, 876_543_210));
        assert_eq!(data(&m.io.psi.some), (0.0, 0.01, 99.99, 42));
        assert!(m.io.psi.full.is_none());
        // The rest of each message is still read.
        assert_eq!(m.cpu.usage_usec, 5_000_000);
        assert_eq!(m.memory.usage, 13_000_000);
        assert_eq!(m.io.usage[0].rbytes, 4096);
    }

    #[test]
    fn absent_pressure_files_leave_psi_unset() {
        let tmp = tempfile::tempdir().unwrap();
        fixture(tmp.path());
        let m = metrics(&load(tmp.path()));
        assert!(m.cpu.psi.is_none());
        assert!(m.memory.psi.is_none());
        assert!(m.io.psi.is_none());
        assert_eq!(m.cpu.usage_usec, 5_000_000);
        assert_eq!(m.memory.usage, 13_000_000);
        assert_eq!(m.io.usage.len(), 1);
    }

    #[test]
    fn io_pressure_without_the_io_controller() {
        let tmp = tempfile::tempdir().unwrap();
        write(
            tmp.path(),
            &[
                ("proc/42/cgroup", "0::/a\n"),
                ("cgroup/a/cpu.stat", "usage_usec 7\n"),
                (
                    "cgroup/a/io.pressure",
                    "some avg10=2.00 avg60=1.00 avg300=0.50 total=300\n\
                     full avg10=1.00 avg60=0.50 avg300=0.25 total=200\n",
                ),
            ],
        );
        let m = metrics(&load(tmp.path()));
        let data = |d: &PSIData| (d.avg10, d.avg60, d.avg300, d.total);
        assert!(m.io.usage.is_empty());
        assert_eq!(data(&m.io.psi.some), (2.0, 1.0, 0.5, 300));
        assert_eq!(data(&m.io.psi.full), (1.0, 0.5, 0.25, 200));
        assert!(m.memory.is_none());
    }

    #[test]
    fn hugetlb_per_page_size() {
        let tmp = tempfile::tempdir().unwrap();
        fixture(tmp.path());
        let f = |file: &str| format!("cgroup/{CG}/{file}");
        write(
            tmp.path(),
            &[
                (&f("hugetlb.1GB.current"), "1073741824\n"),
                (&f("hugetlb.1GB.max"), "max\n"),
                (&f("hugetlb.1GB.events"), "max 0\n"),
                (&f("hugetlb.1GB.events.local"), "max 0\n"),
                (&f("hugetlb.1GB.rsvd.current"), "0\n"),
                (&f("hugetlb.2MB.current"), "4194304\n"),
                (&f("hugetlb.2MB.max"), "8388608\n"),
                (&f("hugetlb.2MB.events"), "max 3\n"),
                (&f("hugetlb.2MB.events.local"), "max 1\n"),
                (&f("hugetlb.2MB.rsvd.current"), "2097152\n"),
                (&f("hugetlb.2MB.rsvd.max"), "max\n"),
                (&f("hugetlb.2MB.numa_stat"), "total=4194304 N0=4194304\n"),
            ],
        );
        let m = metrics(&load(tmp.path()));
        let stats: Vec<_> = m
            .hugetlb
            .iter()
            .map(|h| (h.pagesize.as_str(), h.current, h.max, h.failcnt))
            .collect();
        assert_eq!(
            stats,
            [
                ("2MB", 4_194_304, 8_388_608, 3),
                ("1GB", 1_073_741_824, u64::MAX, 0)
            ]
        );
    }

    #[test]
    fn rdma_with_a_max_limit() {
        let tmp = tempfile::tempdir().unwrap();
        fixture(tmp.path());
        let f = |file: &str| format!("cgroup/{CG}/{file}");
        write(
            tmp.path(),
            &[
                (
                    &f("rdma.current"),
                    "mlx5_0 hca_handle=2 hca_object=2000\nmlx5_1 hca_handle=0 hca_object=0\n",
                ),
                (
                    &f("rdma.max"),
                    "mlx5_0 hca_handle=max hca_object=max\nmlx5_1 hca_handle=10 hca_object=max\n",
                ),
            ],
        );
        let m = metrics(&load(tmp.path()));
        let entries = |list: &[RdmaEntry]| {
            list.iter()
                .map(|e| (e.device.clone(), e.hca_handles, e.hca_objects))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            entries(&m.rdma.current),
            [("mlx5_0".into(), 2, 2000), ("mlx5_1".into(), 0, 0)]
        );
        assert_eq!(
            entries(&m.rdma.limit),
            [
                ("mlx5_0".into(), u32::MAX, u32::MAX),
                ("mlx5_1".into(), 10, u32::MAX)
            ]
        );
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
        for (file, content) in [
            ("memory.max", "lots\n"),
            ("memory.stat", "anon\n"),
            ("io.stat", "254:0 rbytes\n"),
            ("io.stat", "sda rbytes=1\n"),
            ("pids.current", "\n"),
            (
                "cpu.pressure",
                "some avg10=x avg60=0.00 avg300=0.00 total=1\n",
            ),
            ("memory.pressure", "some avg10=0.00 total\n"),
            ("io.pressure", "full avg10=0.00 total=-1\n"),
            (
                "rdma.current",
                "mlx5_0 hca_handle=4294967296 hca_object=0\n",
            ),
            ("rdma.max", "mlx5_0 hca_handle=unlimited hca_object=max\n"),
            ("hugetlb.2MB.current", "2M\n"),
            ("hugetlb.2MB.events", "max\n"),
        ] {
            // A fresh tree each time: the files outside the fixture would otherwise stay.
            let tmp = tempfile::tempdir().unwrap();
            fixture(tmp.path());
            let cg = load(tmp.path());
            let file = format!("cgroup/{CG}/{file}");
            write(
                tmp.path(),
                &[
                    (
                        &format!("cgroup/{CG}/rdma.current"),
                        "mlx5_0 hca_handle=0 hca_object=0\n",
                    ),
                    (&format!("cgroup/{CG}/hugetlb.2MB.current"), "0\n"),
                    (&file, content),
                ],
            );
            let err = cg.metrics().unwrap_err();
            assert!(
                matches!(&err, Error::Other(m) if m.contains(&file)),
                "{file}: {err:?}"
            );
        }
    }
}

//! cgroup v1 (and hybrid) statistics as `io.containerd.cgroups.v1.Metrics`, read the way
//! containerd's cgroup1 package reads them so that CRI's ContainerStats sees the same
//! numbers as with containerd's own shim.

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
};

use containerd_shim_protos::{
    cgroups::metrics::{
        BlkIOEntry, BlkIOStat, CPUStat, CPUUsage, HugetlbStat, MemoryEntry, MemoryOomControl,
        MemoryStat, Metrics, PidsStat, RdmaEntry, RdmaStat, Throttle,
    },
    protobuf::MessageField,
};

use super::{
    join_cgroup_path,
    read::{fill, hugetlb_page_sizes, Content, Field},
    Membership,
};
use crate::error::{Error, Result};

/// The container's directory in each v1 hierarchy that feeds Metrics; `None` where the
/// process isn't in such a hierarchy (controller not mounted).
#[derive(Debug, Clone)]
pub(super) struct Cgroup {
    pub(super) memory: Option<PathBuf>,
    pub(super) cpu: Option<PathBuf>,
    cpuacct: Option<PathBuf>,
    pids: Option<PathBuf>,
    blkio: Option<PathBuf>,
    hugetlb: Option<PathBuf>,
    rdma: Option<PathBuf>,
    /// For /proc/partitions, which names blkio's devices.
    proc_root: PathBuf,
}

impl Cgroup {
    pub(super) fn new(
        proc_root: &Path,
        cgroup_root: &Path,
        memberships: &[Membership<'_>],
    ) -> Result<Cgroup> {
        let dir = |controller: &str| {
            memberships
                .iter()
                .find(|m| m.hierarchy != 0 && m.controllers.contains(&controller))
                .map(|m| {
                    join_cgroup_path(
                        &mount_point(cgroup_root, &m.controllers, controller),
                        m.path,
                    )
                })
        };
        let cgroup = Cgroup {
            memory: dir("memory"),
            cpu: dir("cpu"),
            cpuacct: dir("cpuacct"),
            pids: dir("pids"),
            blkio: dir("blkio"),
            hugetlb: dir("hugetlb"),
            rdma: dir("rdma"),
            proc_root: proc_root.to_path_buf(),
        };
        if cgroup.memory.is_none() && cgroup.cpu.is_none() && cgroup.cpuacct.is_none() {
            return Err(Error::NotFound(
                "process belongs to no cgroup v1 memory or cpu hierarchy".into(),
            ));
        }
        Ok(cgroup)
    }

    pub(super) fn memory_dir(&self) -> Result<&Path> {
        self.memory.as_deref().ok_or_else(|| {
            Error::NotFound("process belongs to no cgroup v1 memory hierarchy".into())
        })
    }

    pub(super) fn metrics(&self) -> Result<Metrics> {
        let mut metrics = Metrics::new();
        if self.cpu.is_some() || self.cpuacct.is_some() {
            let mut cpu = CPUStat::new();
            if let Some(dir) = &self.cpuacct {
                cpu.usage = MessageField::some(cpu_usage(dir)?);
            }
            if let Some(dir) = &self.cpu {
                cpu.throttling = MessageField::some(throttling(dir)?);
            }
            metrics.cpu = MessageField::some(cpu);
        }
        if let Some(dir) = &self.memory {
            metrics.memory = MessageField::some(memory(dir)?);
            if let Some(oom) = oom_control(dir)? {
                metrics.memory_oom_control = MessageField::some(oom);
            }
        }
        if let Some(dir) = &self.pids {
            metrics.pids = MessageField::some(pids(dir)?);
        }
        if let Some(dir) = &self.blkio {
            metrics.blkio = MessageField::some(blkio(dir, &self.proc_root)?);
        }
        // Optional extras: a hierarchy mounted without the container's directory in it is
        // left out, not an error.
        if let Some(dir) = &self.hugetlb {
            metrics.hugetlb = hugetlb(dir)?;
        }
        if let Some(dir) = self.rdma.as_deref().filter(|dir| dir.is_dir()) {
            metrics.rdma = rdma(dir)?.into();
        }
        Ok(metrics)
    }
}

/// Where a controller's hierarchy is mounted. Co-mounted controllers (`cpu,cpuacct`)
/// sit at the joined name, usually with a per-controller symlink, which not every
/// distribution creates.
fn mount_point(cgroup_root: &Path, controllers: &[&str], controller: &str) -> PathBuf {
    let single = cgroup_root.join(controller);
    if controllers.len() > 1 && !single.exists() {
        let joined = cgroup_root.join(controllers.join(","));
        if joined.exists() {
            return joined;
        }
    }
    single
}

const NANOS_PER_SECOND: u128 = 1_000_000_000;

/// cpuacct.stat counts in USER_HZ ticks.
fn clock_ticks() -> u128 {
    use nix::unistd::{sysconf, SysconfVar};
    match sysconf(SysconfVar::CLK_TCK) {
        Ok(Some(ticks)) if ticks > 0 => ticks as u128,
        _ => 100,
    }
}

fn ticks_to_nanos(ticks: u64) -> u64 {
    // Widened: ticks * 1e9 overflows u64 after a few CPU-years of accumulated time.
    u64::try_from(ticks as u128 * NANOS_PER_SECOND / clock_ticks()).unwrap_or(u64::MAX)
}

fn cpu_usage(dir: &Path) -> Result<CPUUsage> {
    let mut usage = CPUUsage::new();
    usage.total = Content::required(dir, "cpuacct.usage")?.number()?;
    if let Some(stat) = Content::optional(dir, "cpuacct.stat")? {
        let stat = stat.flat_keyed()?;
        usage.user = ticks_to_nanos(stat.get("user").copied().unwrap_or(0));
        usage.kernel = ticks_to_nanos(stat.get("system").copied().unwrap_or(0));
    }
    if let Some(per_cpu) = Content::optional(dir, "cpuacct.usage_percpu")? {
        usage.per_cpu = per_cpu.numbers()?;
    }
    Ok(usage)
}

fn throttling(dir: &Path) -> Result<Throttle> {
    let mut throttle = Throttle::new();
    if let Some(stat) = Content::optional(dir, "cpu.stat")? {
        fill(
            &mut throttle,
            &stat.flat_keyed()?,
            &[
                ("nr_periods", |t| &mut t.periods),
                ("nr_throttled", |t| &mut t.throttled_periods),
                // Already nanoseconds on v1.
                ("throttled_time", |t| &mut t.throttled_time),
            ],
        );
    }
    Ok(throttle)
}

const MEMORY_STAT_FIELDS: &[Field<MemoryStat>] = &[
    ("cache", |m| &mut m.cache),
    ("rss", |m| &mut m.rss),
    ("rss_huge", |m| &mut m.rss_huge),
    ("mapped_file", |m| &mut m.mapped_file),
    ("dirty", |m| &mut m.dirty),
    ("writeback", |m| &mut m.writeback),
    ("pgpgin", |m| &mut m.pg_pg_in),
    ("pgpgout", |m| &mut m.pg_pg_out),
    ("pgfault", |m| &mut m.pg_fault),
    ("pgmajfault", |m| &mut m.pg_maj_fault),
    ("inactive_anon", |m| &mut m.inactive_anon),
    ("active_anon", |m| &mut m.active_anon),
    ("inactive_file", |m| &mut m.inactive_file),
    ("active_file", |m| &mut m.active_file),
    ("unevictable", |m| &mut m.unevictable),
    ("hierarchical_memory_limit", |m| {
        &mut m.hierarchical_memory_limit
    }),
    ("hierarchical_memsw_limit", |m| {
        &mut m.hierarchical_swap_limit
    }),
    ("total_cache", |m| &mut m.total_cache),
    ("total_rss", |m| &mut m.total_rss),
    ("total_rss_huge", |m| &mut m.total_rss_huge),
    ("total_mapped_file", |m| &mut m.total_mapped_file),
    ("total_dirty", |m| &mut m.total_dirty),
    ("total_writeback", |m| &mut m.total_writeback),
    ("total_pgpgin", |m| &mut m.total_pg_pg_in),
    ("total_pgpgout", |m| &mut m.total_pg_pg_out),
    ("total_pgfault", |m| &mut m.total_pg_fault),
    ("total_pgmajfault", |m| &mut m.total_pg_maj_fault),
    ("total_inactive_anon", |m| &mut m.total_inactive_anon),
    ("total_active_anon", |m| &mut m.total_active_anon),
    // CRI's working set is usage.usage - total_inactive_file.
    ("total_inactive_file", |m| &mut m.total_inactive_file),
    ("total_active_file", |m| &mut m.total_active_file),
    ("total_unevictable", |m| &mut m.total_unevictable),
];

fn memory(dir: &Path) -> Result<MemoryStat> {
    let mut memory = MemoryStat::new();
    fill(
        &mut memory,
        &Content::required(dir, "memory.stat")?.flat_keyed()?,
        MEMORY_STAT_FIELDS,
    );
    memory.usage = MessageField::some(memory_entry(dir, "memory.", true)?);
    // Each of these exists only with its accounting compiled in and enabled
    // (swapaccount=1, kmem before its removal).
    memory.swap = MessageField::some(memory_entry(dir, "memory.memsw.", false)?);
    memory.kernel = MessageField::some(memory_entry(dir, "memory.kmem.", false)?);
    memory.kernel_tcp = MessageField::some(memory_entry(dir, "memory.kmem.tcp.", false)?);
    Ok(memory)
}

fn memory_entry(dir: &Path, prefix: &str, required: bool) -> Result<MemoryEntry> {
    let mut entry = MemoryEntry::new();
    let fields: [Field<MemoryEntry>; 4] = [
        ("usage_in_bytes", |e| &mut e.usage),
        ("limit_in_bytes", |e| &mut e.limit),
        ("max_usage_in_bytes", |e| &mut e.max),
        ("failcnt", |e| &mut e.failcnt),
    ];
    for (i, (name, field)) in fields.iter().enumerate() {
        let name = format!("{prefix}{name}");
        // Usage and limit are what CRI reads; the rest never fails the whole call.
        let content = if required && i < 2 {
            Some(Content::required(dir, &name)?)
        } else {
            Content::optional(dir, &name)?
        };
        if let Some(content) = content {
            *field(&mut entry) = content.number()?;
        }
    }
    Ok(entry)
}

pub(super) fn oom_control(dir: &Path) -> Result<Option<MemoryOomControl>> {
    let Some(content) = Content::optional(dir, "memory.oom_control")? else {
        return Ok(None);
    };
    let mut oom = MemoryOomControl::new();
    fill(
        &mut oom,
        &content.flat_keyed()?,
        &[
            ("oom_kill_disable", |o| &mut o.oom_kill_disable),
            ("under_oom", |o| &mut o.under_oom),
            ("oom_kill", |o| &mut o.oom_kill),
        ],
    );
    Ok(Some(oom))
}

fn pids(dir: &Path) -> Result<PidsStat> {
    let mut pids = PidsStat::new();
    pids.current = Content::required(dir, "pids.current")?.number()?;
    if let Some(max) = Content::optional(dir, "pids.max")? {
        // containerd's cgroup1 reports an unlimited pids.max as 0.
        pids.limit = max.limit(0)?;
    }
    Ok(pids)
}

/// One entry per huge page size, as containerd's cgroup1 reads them (it has no field for
/// the limit).
fn hugetlb(dir: &Path) -> Result<Vec<HugetlbStat>> {
    let fields: [Field<HugetlbStat>; 3] = [
        ("usage_in_bytes", |s| &mut s.usage),
        ("max_usage_in_bytes", |s| &mut s.max),
        ("failcnt", |s| &mut s.failcnt),
    ];
    let mut stats = Vec::new();
    for pagesize in hugetlb_page_sizes(dir, "usage_in_bytes")? {
        let mut stat = HugetlbStat::new();
        for (name, field) in &fields {
            let name = format!("hugetlb.{pagesize}.{name}");
            if let Some(content) = Content::optional(dir, &name)? {
                *field(&mut stat) = content.number()?;
            }
        }
        stat.pagesize = pagesize;
        stats.push(stat);
    }
    Ok(stats)
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

type BlkioList = fn(&mut BlkIOStat) -> &mut Vec<BlkIOEntry>;

/// Like containerd: the CFQ/BFQ-era recursive files when the kernel has them and they
/// say anything, else the throttle files, which every blkio hierarchy has.
fn blkio(dir: &Path, proc_root: &Path) -> Result<BlkIOStat> {
    let devices = devices(proc_root);
    let mut stat = BlkIOStat::new();
    let recursive: [(&str, BlkioList); 8] = [
        ("blkio.sectors_recursive", |s| &mut s.sectors_recursive),
        ("blkio.io_service_bytes_recursive", |s| {
            &mut s.io_service_bytes_recursive
        }),
        ("blkio.io_serviced_recursive", |s| {
            &mut s.io_serviced_recursive
        }),
        ("blkio.io_queued_recursive", |s| &mut s.io_queued_recursive),
        ("blkio.io_service_time_recursive", |s| {
            &mut s.io_service_time_recursive
        }),
        ("blkio.io_wait_time_recursive", |s| {
            &mut s.io_wait_time_recursive
        }),
        ("blkio.io_merged_recursive", |s| &mut s.io_merged_recursive),
        ("blkio.time_recursive", |s| &mut s.io_time_recursive),
    ];
    let mut found = 0;
    for (name, list) in recursive {
        if let Some(content) = Content::optional(dir, name)? {
            *list(&mut stat) = blkio_entries(&content, &devices)?;
            found += list(&mut stat).len();
        }
    }
    if found > 0 {
        return Ok(stat);
    }
    // The recursive throttle files are newer (4.x) than the cgroup-local ones
    // containerd reads; for a leaf cgroup both say the same.
    let throttle: [(&str, BlkioList); 2] = [
        ("blkio.throttle.io_serviced", |s| {
            &mut s.io_serviced_recursive
        }),
        ("blkio.throttle.io_service_bytes", |s| {
            &mut s.io_service_bytes_recursive
        }),
    ];
    for (name, list) in throttle {
        let content = match Content::optional(dir, &format!("{name}_recursive"))? {
            Some(content) => Some(content),
            None => Content::optional(dir, name)?,
        };
        if let Some(content) = content {
            *list(&mut stat) = blkio_entries(&content, &devices)?;
        }
    }
    Ok(stat)
}

/// `major:minor [op] value` lines, plus a `Total n` line that is skipped.
fn blkio_entries(
    content: &Content,
    devices: &HashMap<(u64, u64), String>,
) -> Result<Vec<BlkIOEntry>> {
    let malformed = |line: &str| {
        Error::Other(format!(
            "{}: malformed line {line:?}",
            content.path.display()
        ))
    };
    let mut entries = Vec::new();
    for line in content.text.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let (device, op, value) = match fields[..] {
            [] | ["Total", _] => continue,
            [device, value] => (device, "", value),
            [device, op, value] => (device, op, value),
            _ => return Err(malformed(line)),
        };
        let (major, minor) = device
            .split_once(':')
            .and_then(|(major, minor)| Some((major.parse().ok()?, minor.parse().ok()?)))
            .ok_or_else(|| malformed(line))?;
        let mut entry = BlkIOEntry::new();
        entry.major = major;
        entry.minor = minor;
        entry.op = op.to_string();
        entry.value = value.parse().map_err(|_| malformed(line))?;
        entry.device = devices.get(&(major, minor)).cloned().unwrap_or_default();
        entries.push(entry);
    }
    Ok(entries)
}

/// Device names by number, from /proc/partitions; best effort, as names are cosmetic.
fn devices(proc_root: &Path) -> HashMap<(u64, u64), String> {
    let Ok(partitions) = std::fs::read_to_string(proc_root.join("partitions")) else {
        return HashMap::new();
    };
    let mut devices = HashMap::new();
    // Two header lines: column names and a blank line.
    for line in partitions.lines().skip(2) {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if let [major, minor, _blocks, name] = fields[..] {
            if let (Ok(major), Ok(minor)) = (major.parse(), minor.parse()) {
                devices
                    .entry((major, minor))
                    .or_insert_with(|| format!("/dev/{name}"));
            }
        }
    }
    devices
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use containerd_shim_protos::{
        cgroups::metrics::{Metrics, RdmaEntry},
        protobuf::Message,
    };

    use super::super::{test_util::write, CgroupMode, ContainerCgroup, Inner};
    use crate::error::Error;

    const CG: &str = "kubepods/burstable/pod1/abc";

    const PROC_CGROUP: &str = "\
11:name=systemd:/kubepods/burstable/pod1/abc
10:rdma:/kubepods/burstable/pod1/abc
9:pids:/kubepods/burstable/pod1/abc
8:blkio:/kubepods/burstable/pod1/abc
7:hugetlb:/kubepods/burstable/pod1/abc
4:memory:/kubepods/burstable/pod1/abc
2:cpuacct:/kubepods/burstable/pod1/abc
1:cpu:/kubepods/burstable/pod1/abc
0::/
";

    const MEMORY_STAT: &str = "\
cache 4096
rss 8192
rss_huge 0
mapped_file 1024
pgpgin 10
pgpgout 5
pgfault 77
pgmajfault 3
inactive_anon 100
active_anon 200
inactive_file 300
active_file 400
unevictable 0
hierarchical_memory_limit 67108864
hierarchical_memsw_limit 9223372036854771712
total_cache 40960
total_rss 81920
total_mapped_file 10240
total_pgfault 770
total_pgmajfault 30
total_inactive_anon 1000
total_active_anon 2000
total_inactive_file 3000
total_active_file 4000
total_unevictable 0
";

    /// A hybrid host's tree for one container, with swap accounting off.
    fn fixture(root: &Path) {
        let f = |controller: &str, file: &str| format!("cgroup/{controller}/{CG}/{file}");
        write(
            root,
            &[
                ("proc/42/cgroup", PROC_CGROUP),
                (
                    "proc/partitions",
                    "major minor  #blocks  name\n\n 254        0   1048576 vda\n",
                ),
                (&f("memory", "memory.stat"), MEMORY_STAT),
                (&f("memory", "memory.usage_in_bytes"), "12345678\n"),
                (&f("memory", "memory.limit_in_bytes"), "67108864\n"),
                (&f("memory", "memory.max_usage_in_bytes"), "23456789\n"),
                (&f("memory", "memory.failcnt"), "5\n"),
                (&f("memory", "memory.kmem.usage_in_bytes"), "4096\n"),
                (
                    &f("memory", "memory.oom_control"),
                    "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n",
                ),
                (&f("cpuacct", "cpuacct.usage"), "5000000000\n"),
                (&f("cpuacct", "cpuacct.stat"), "user 300\nsystem 150\n"),
                (&f("cpuacct", "cpuacct.usage_percpu"), "3000000000 2000000000 \n"),
                (
                    &f("cpu", "cpu.stat"),
                    "nr_periods 10\nnr_throttled 4\nthrottled_time 123456\nnr_bursts 0\nburst_time 0\n",
                ),
                (&f("pids", "pids.current"), "3\n"),
                (&f("pids", "pids.max"), "max\n"),
                (
                    &f("blkio", "blkio.throttle.io_service_bytes_recursive"),
                    "254:0 Read 4096\n254:0 Write 8192\n254:0 Sync 0\n254:0 Async 12288\n\
                     254:0 Discard 0\n254:0 Total 12288\nTotal 12288\n",
                ),
                (
                    &f("blkio", "blkio.throttle.io_serviced_recursive"),
                    "254:0 Read 1\n254:0 Write 2\nTotal 3\n",
                ),
                (&f("hugetlb", "hugetlb.1GB.usage_in_bytes"), "0\n"),
                (&f("hugetlb", "hugetlb.1GB.max_usage_in_bytes"), "1073741824\n"),
                (&f("hugetlb", "hugetlb.1GB.failcnt"), "7\n"),
                (&f("hugetlb", "hugetlb.1GB.limit_in_bytes"), "9223372036854771712\n"),
                (&f("hugetlb", "hugetlb.2MB.usage_in_bytes"), "6291456\n"),
                (&f("hugetlb", "hugetlb.2MB.max_usage_in_bytes"), "10485760\n"),
                (&f("hugetlb", "hugetlb.2MB.failcnt"), "2\n"),
                (&f("hugetlb", "hugetlb.2MB.limit_in_bytes"), "10485760\n"),
                (&f("hugetlb", "hugetlb.2MB.rsvd.usage_in_bytes"), "2097152\n"),
                (&f("hugetlb", "hugetlb.2MB.rsvd.max_usage_in_bytes"), "2097152\n"),
                (&f("hugetlb", "hugetlb.2MB.rsvd.failcnt"), "0\n"),
                (
                    &f("rdma", "rdma.current"),
                    "mlx4_0 hca_handle=1 hca_object=20\nocrdma1 hca_handle=0 hca_object=0\n",
                ),
                (
                    &f("rdma", "rdma.max"),
                    "mlx4_0 hca_handle=2 hca_object=max\nocrdma1 hca_handle=max hca_object=max\n",
                ),
            ],
        );
    }

    fn load(root: &Path) -> ContainerCgroup {
        ContainerCgroup::for_pid_in(
            &root.join("proc"),
            &root.join("cgroup"),
            CgroupMode::Legacy,
            42,
        )
        .unwrap()
    }

    fn metrics(cg: &ContainerCgroup) -> Metrics {
        let any = cg.metrics().unwrap();
        assert_eq!(any.type_url, "io.containerd.cgroups.v1.Metrics");
        Metrics::parse_from_bytes(&any.value).unwrap()
    }

    #[test]
    fn resolves_each_hierarchy() {
        let tmp = tempfile::tempdir().unwrap();
        fixture(tmp.path());
        let cg = load(tmp.path());
        assert_eq!(cg.mode(), CgroupMode::Legacy);
        let Inner::V1(v1) = &cg.inner else {
            panic!("expected v1: {cg:?}")
        };
        let root = tmp.path().join("cgroup");
        assert_eq!(v1.memory, Some(root.join("memory").join(CG)));
        assert_eq!(v1.cpu, Some(root.join("cpu").join(CG)));
        assert_eq!(v1.cpuacct, Some(root.join("cpuacct").join(CG)));
        assert_eq!(v1.pids, Some(root.join("pids").join(CG)));
        assert_eq!(v1.blkio, Some(root.join("blkio").join(CG)));
        assert_eq!(v1.hugetlb, Some(root.join("hugetlb").join(CG)));
        assert_eq!(v1.rdma, Some(root.join("rdma").join(CG)));
    }

    #[test]
    fn finds_co_mounted_controllers_without_symlinks() {
        let tmp = tempfile::tempdir().unwrap();
        write(
            tmp.path(),
            &[
                (
                    "proc/42/cgroup",
                    "3:cpu,cpuacct:/system.slice/containerd.service/kubepods-pod1.slice:cri-containerd:abc\n\
                     1:name=systemd:/x\n0::/\n",
                ),
                ("cgroup/cpu,cpuacct/.keep", ""),
            ],
        );
        let cg = load(tmp.path());
        let Inner::V1(v1) = &cg.inner else {
            panic!("expected v1: {cg:?}")
        };
        let dir = tmp
            .path()
            .join("cgroup/cpu,cpuacct/system.slice/containerd.service/kubepods-pod1.slice:cri-containerd:abc");
        assert_eq!(v1.cpu.as_ref(), Some(&dir));
        assert_eq!(v1.cpuacct.as_ref(), Some(&dir));
        assert_eq!(v1.memory, None);
        let err = cg.watch_oom("c".into(), tokio::sync::mpsc::unbounded_channel().0);
        assert!(matches!(err, Err(Error::NotFound(_))), "{err:?}");
    }

    #[test]
    fn no_v1_hierarchy_is_not_found() {
        let tmp = tempfile::tempdir().unwrap();
        write(
            tmp.path(),
            &[("proc/42/cgroup", "1:name=systemd:/x\n0::/x\n")],
        );
        let err = ContainerCgroup::for_pid_in(
            &tmp.path().join("proc"),
            tmp.path(),
            CgroupMode::Legacy,
            42,
        )
        .unwrap_err();
        assert!(matches!(err, Error::NotFound(_)), "{err:?}");
    }

    #[test]
    fn memory_lands_in_cri_fields() {
        let tmp = tempfile::tempdir().unwrap();
        fixture(tmp.path());
        let m = metrics(&load(tmp.path()));
        let memory = &m.memory;
        // CRI: working set = usage.usage - total_inactive_file; available = limit - working set.
        assert_eq!(memory.usage.usage, 12345678);
        assert_eq!(memory.usage.limit, 67108864);
        assert_eq!(memory.usage.max, 23456789);
        assert_eq!(memory.usage.failcnt, 5);
        assert_eq!(memory.total_inactive_file, 3000);
        assert_eq!(memory.total_rss, 81920);
        assert_eq!(memory.total_cache, 40960);
        assert_eq!(memory.total_mapped_file, 10240);
        assert_eq!(memory.total_pg_fault, 770);
        assert_eq!(memory.total_pg_maj_fault, 30);
        assert_eq!(memory.total_active_file, 4000);
        assert_eq!(memory.rss, 8192);
        assert_eq!(memory.cache, 4096);
        assert_eq!(memory.mapped_file, 1024);
        assert_eq!(memory.pg_fault, 77);
        assert_eq!(memory.pg_maj_fault, 3);
        assert_eq!(memory.pg_pg_in, 10);
        assert_eq!(memory.inactive_file, 300);
        assert_eq!(memory.hierarchical_memory_limit, 67108864);
        assert_eq!(memory.hierarchical_swap_limit, 9223372036854771712);
        // No swap accounting: zeros rather than an error.
        assert_eq!(memory.swap.usage, 0);
        assert_eq!(memory.kernel.usage, 4096);
        assert_eq!(m.memory_oom_control.oom_kill, 2);
    }

    #[test]
    fn cpu_in_nanoseconds() {
        let tmp = tempfile::tempdir().unwrap();
        fixture(tmp.path());
        let m = metrics(&load(tmp.path()));
        let hz = super::clock_ticks() as u64;
        assert_eq!(m.cpu.usage.total, 5_000_000_000);
        assert_eq!(m.cpu.usage.user, 300 * 1_000_000_000 / hz);
        assert_eq!(m.cpu.usage.kernel, 150 * 1_000_000_000 / hz);
        assert_eq!(m.cpu.usage.per_cpu, vec![3_000_000_000, 2_000_000_000]);
        assert_eq!(m.cpu.throttling.periods, 10);
        assert_eq!(m.cpu.throttling.throttled_periods, 4);
        assert_eq!(m.cpu.throttling.throttled_time, 123456);
        assert_eq!(super::ticks_to_nanos(u64::MAX), u64::MAX);
    }

    #[test]
    fn pids_and_blkio() {
        let tmp = tempfile::tempdir().unwrap();
        fixture(tmp.path());
        let cg = load(tmp.path());
        let m = metrics(&cg);
        assert_eq!(m.pids.current, 3);
        // As containerd's cgroup1: unlimited is 0.
        assert_eq!(m.pids.limit, 0);
        let bytes = &m.blkio.io_service_bytes_recursive;
        assert_eq!(bytes.len(), 6);
        assert_eq!(
            (
                bytes[1].major,
                bytes[1].minor,
                bytes[1].op.as_str(),
                bytes[1].value
            ),
            (254, 0, "Write", 8192)
        );
        assert_eq!(bytes[1].device, "/dev/vda");
        assert_eq!(m.blkio.io_serviced_recursive.len(), 2);

        write(
            tmp.path(),
            &[(&format!("cgroup/pids/{CG}/pids.max"), "100\n")],
        );
        assert_eq!(metrics(&cg).pids.limit, 100);
    }

    #[test]
    fn prefers_populated_cfq_files() {
        let tmp = tempfile::tempdir().unwrap();
        fixture(tmp.path());
        let cg = load(tmp.path());
        let dir = format!("cgroup/blkio/{CG}");
        // Present but empty (no CFQ device): the throttle files still count.
        write(
            tmp.path(),
            &[(&format!("{dir}/blkio.io_serviced_recursive"), "Total 0\n")],
        );
        assert_eq!(metrics(&cg).blkio.io_service_bytes_recursive.len(), 6);
        write(
            tmp.path(),
            &[(&format!("{dir}/blkio.sectors_recursive"), "8:0 16\n")],
        );
        let m = metrics(&cg);
        assert_eq!(m.blkio.sectors_recursive[0].value, 16);
        assert_eq!(m.blkio.sectors_recursive[0].op, "");
        assert!(m.blkio.io_service_bytes_recursive.is_empty());
    }

    #[test]
    fn hugetlb_per_page_size() {
        let tmp = tempfile::tempdir().unwrap();
        fixture(tmp.path());
        let m = metrics(&load(tmp.path()));
        let stats: Vec<_> = m
            .hugetlb
            .iter()
            .map(|h| (h.pagesize.as_str(), h.usage, h.max, h.failcnt))
            .collect();
        assert_eq!(
            stats,
            [
                ("2MB", 6_291_456, 10_485_760, 2),
                ("1GB", 0, 1_073_741_824, 7)
            ]
        );
    }

    #[test]
    fn rdma_with_a_max_limit() {
        let tmp = tempfile::tempdir().unwrap();
        fixture(tmp.path());
        let m = metrics(&load(tmp.path()));
        let entries = |list: &[RdmaEntry]| {
            list.iter()
                .map(|e| (e.device.clone(), e.hca_handles, e.hca_objects))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            entries(&m.rdma.current),
            [("mlx4_0".into(), 1, 20), ("ocrdma1".into(), 0, 0)]
        );
        assert_eq!(
            entries(&m.rdma.limit),
            [
                ("mlx4_0".into(), 2, u32::MAX),
                ("ocrdma1".into(), u32::MAX, u32::MAX)
            ]
        );
    }

    #[test]
    fn hugetlb_and_rdma_are_left_out_where_missing() {
        let tmp = tempfile::tempdir().unwrap();
        fixture(tmp.path());
        let cg = load(tmp.path());
        // Mounted, but without the container's directory.
        std::fs::remove_dir_all(tmp.path().join("cgroup/hugetlb").join(CG)).unwrap();
        std::fs::remove_dir_all(tmp.path().join("cgroup/rdma").join(CG)).unwrap();
        let m = metrics(&cg);
        assert!(m.hugetlb.is_empty());
        assert!(m.rdma.is_none());
        assert_eq!(m.memory.usage.usage, 12345678);

        // Not mounted at all.
        let unmounted: String = PROC_CGROUP
            .lines()
            .filter(|line| !line.contains(":hugetlb:") && !line.contains(":rdma:"))
            .map(|line| format!("{line}\n"))
            .collect();
        write(tmp.path(), &[("proc/42/cgroup", &unmounted)]);
        let cg = load(tmp.path());
        let Inner::V1(v1) = &cg.inner else {
            panic!("expected v1: {cg:?}")
        };
        assert_eq!((&v1.hugetlb, &v1.rdma), (&None, &None));
        let m = metrics(&cg);
        assert!(m.hugetlb.is_empty());
        assert!(m.rdma.is_none());
        assert_eq!(m.pids.current, 3);
    }

    #[test]
    fn missing_files_and_cgroups() {
        let tmp = tempfile::tempdir().unwrap();
        fixture(tmp.path());
        let cg = load(tmp.path());
        let memory = tmp.path().join("cgroup/memory").join(CG);

        std::fs::remove_file(memory.join("memory.usage_in_bytes")).unwrap();
        let err = cg.metrics().unwrap_err();
        assert!(
            matches!(&err, Error::Io { source, context }
                if source.kind() == std::io::ErrorKind::NotFound
                    && context.contains("memory.usage_in_bytes")),
            "{err:?}"
        );

        std::fs::remove_dir_all(&memory).unwrap();
        let err = cg.metrics().unwrap_err();
        assert!(matches!(err, Error::NotFound(_)), "{err:?}");
    }

    #[test]
    fn malformed_files_are_errors() {
        let tmp = tempfile::tempdir().unwrap();
        fixture(tmp.path());
        let cg = load(tmp.path());
        for (file, content) in [
            (format!("cgroup/memory/{CG}/memory.stat"), "cache\n"),
            (format!("cgroup/memory/{CG}/memory.stat"), "cache x\n"),
            (format!("cgroup/cpuacct/{CG}/cpuacct.usage"), "-1\n"),
            (
                format!("cgroup/blkio/{CG}/blkio.throttle.io_serviced_recursive"),
                "254 Read 1\n",
            ),
            (format!("cgroup/hugetlb/{CG}/hugetlb.2MB.failcnt"), "two\n"),
            (
                format!("cgroup/rdma/{CG}/rdma.max"),
                "mlx4_0 hca_handle=-1 hca_object=max\n",
            ),
            (
                format!("cgroup/rdma/{CG}/rdma.current"),
                "mlx4_0 hca_handle\n",
            ),
        ] {
            fixture(tmp.path());
            write(tmp.path(), &[(&file, content)]);
            let err = cg.metrics().unwrap_err();
            assert!(
                matches!(&err, Error::Other(m) if m.contains(&file)),
                "{file}: {err:?}"
            );
        }
    }
}

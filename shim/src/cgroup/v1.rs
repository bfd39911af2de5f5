//! cgroup v1 metrics, in containerd's `io.containerd.cgroups.v1.Metrics`.

use std::path::{Path, PathBuf};

use containerd_shim_protos::cgroups::metrics::{
    CPUStat, CPUUsage, MemoryEntry, MemoryOomControl, MemoryStat, Metrics, PidsStat, Throttle,
};

use super::{join, read_keyed, read_u64};
use crate::error::{Error, Result};

/// cpuacct.stat counts in USER_HZ, which is 100 on every Linux ABI.
const NANOS_PER_TICK: u64 = 1_000_000_000 / 100;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Paths {
    pub memory: Option<PathBuf>,
    pub cpu: Option<PathBuf>,
    pub cpuacct: Option<PathBuf>,
    pub pids: Option<PathBuf>,
}

impl Paths {
    pub fn parse(proc_cgroup: &str, root: &Path) -> Result<Paths> {
        let mut paths = Paths::default();
        for line in proc_cgroup.lines() {
            let mut parts = line.splitn(3, ':');
            let (Some(_), Some(controllers), Some(path)) =
                (parts.next(), parts.next(), parts.next())
            else {
                continue;
            };
            for c in controllers.split(',') {
                // Co-mounted controllers (cpu,cpuacct) live under the joined name; most
                // distributions also link each single name to it.
                let dir = [c, controllers]
                    .iter()
                    .map(|mount| join(&root.join(mount), path))
                    .find(|d| d.is_dir())
                    .unwrap_or_else(|| join(&root.join(c), path));
                match c {
                    "memory" => paths.memory = Some(dir),
                    "cpu" => paths.cpu = Some(dir),
                    "cpuacct" => paths.cpuacct = Some(dir),
                    "pids" => paths.pids = Some(dir),
                    _ => {}
                }
            }
        }
        if paths == Paths::default() {
            return Err(Error::NotFound(
                "process is in no cgroup v1 controller podshim reads".into(),
            ));
        }
        Ok(paths)
    }
}

pub fn metrics(paths: &Paths) -> Result<Metrics> {
    let mut m = Metrics::new();
    if let Some(dir) = &paths.cpuacct {
        m.cpu = Some(cpu(dir, paths.cpu.as_deref())).into();
    }
    if let Some(dir) = &paths.memory {
        if !dir.is_dir() {
            return Err(Error::NotFound(format!("cgroup {} is gone", dir.display())));
        }
        let (memory, oom) = memory(dir);
        m.memory = Some(memory).into();
        m.memory_oom_control = Some(oom).into();
    }
    if let Some(dir) = &paths.pids {
        m.pids = Some(PidsStat {
            current: read_u64(&dir.join("pids.current")).unwrap_or(0),
            limit: read_u64(&dir.join("pids.max"))
                .filter(|&l| l != u64::MAX)
                .unwrap_or(0),
            ..Default::default()
        })
        .into();
    }
    Ok(m)
}

fn cpu(cpuacct: &Path, cpu: Option<&Path>) -> CPUStat {
    let stat = read_keyed(&cpuacct.join("cpuacct.stat"));
    let ticks = |k: &str| stat.iter().find(|(n, _)| n == k).map_or(0, |(_, v)| *v);
    let per_cpu = std::fs::read_to_string(cpuacct.join("cpuacct.usage_percpu"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|v| v.parse().ok())
        .collect();
    let mut s = CPUStat::new();
    s.usage = Some(CPUUsage {
        total: read_u64(&cpuacct.join("cpuacct.usage")).unwrap_or(0),
        user: ticks("user") * NANOS_PER_TICK,
        kernel: ticks("system") * NANOS_PER_TICK,
        per_cpu,
        ..Default::default()
    })
    .into();
    if let Some(cpu) = cpu {
        let t = read_keyed(&cpu.join("cpu.stat"));
        let get = |k: &str| t.iter().find(|(n, _)| n == k).map_or(0, |(_, v)| *v);
        s.throttling = Some(Throttle {
            periods: get("nr_periods"),
            throttled_periods: get("nr_throttled"),
            throttled_time: get("throttled_time"),
            ..Default::default()
        })
        .into();
    }
    s
}

fn memory(dir: &Path) -> (MemoryStat, MemoryOomControl) {
    let mut s = MemoryStat::new();
    for (k, v) in read_keyed(&dir.join("memory.stat")) {
        let field = match k.as_str() {
            "cache" => &mut s.cache,
            "rss" => &mut s.rss,
            "rss_huge" => &mut s.rss_huge,
            "mapped_file" => &mut s.mapped_file,
            "dirty" => &mut s.dirty,
            "writeback" => &mut s.writeback,
            "pgpgin" => &mut s.pg_pg_in,
            "pgpgout" => &mut s.pg_pg_out,
            "pgfault" => &mut s.pg_fault,
            "pgmajfault" => &mut s.pg_maj_fault,
            "inactive_anon" => &mut s.inactive_anon,
            "active_anon" => &mut s.active_anon,
            "inactive_file" => &mut s.inactive_file,
            "active_file" => &mut s.active_file,
            "unevictable" => &mut s.unevictable,
            "hierarchical_memory_limit" => &mut s.hierarchical_memory_limit,
            "hierarchical_memsw_limit" => &mut s.hierarchical_swap_limit,
            "total_cache" => &mut s.total_cache,
            "total_rss" => &mut s.total_rss,
            "total_rss_huge" => &mut s.total_rss_huge,
            "total_mapped_file" => &mut s.total_mapped_file,
            "total_dirty" => &mut s.total_dirty,
            "total_writeback" => &mut s.total_writeback,
            "total_pgpgin" => &mut s.total_pg_pg_in,
            "total_pgpgout" => &mut s.total_pg_pg_out,
            "total_pgfault" => &mut s.total_pg_fault,
            "total_pgmajfault" => &mut s.total_pg_maj_fault,
            "total_inactive_anon" => &mut s.total_inactive_anon,
            "total_active_anon" => &mut s.total_active_anon,
            "total_inactive_file" => &mut s.total_inactive_file,
            "total_active_file" => &mut s.total_active_file,
            "total_unevictable" => &mut s.total_unevictable,
            _ => continue,
        };
        *field = v;
    }
    let entry = |prefix: &str| -> Option<MemoryEntry> {
        let usage = read_u64(&dir.join(format!("{prefix}.usage_in_bytes")))?;
        Some(MemoryEntry {
            usage,
            limit: read_u64(&dir.join(format!("{prefix}.limit_in_bytes"))).unwrap_or(0),
            max: read_u64(&dir.join(format!("{prefix}.max_usage_in_bytes"))).unwrap_or(0),
            failcnt: read_u64(&dir.join(format!("{prefix}.failcnt"))).unwrap_or(0),
            ..Default::default()
        })
    };
    s.usage = entry("memory").into();
    s.swap = entry("memory.memsw").into();
    s.kernel = entry("memory.kmem").into();
    s.kernel_tcp = entry("memory.kmem.tcp").into();
    let oom = read_keyed(&dir.join("memory.oom_control"));
    let get = |k: &str| oom.iter().find(|(n, _)| n == k).map_or(0, |(_, v)| *v);
    let control = MemoryOomControl {
        oom_kill_disable: get("oom_kill_disable"),
        under_oom: get("under_oom"),
        oom_kill: get("oom_kill"),
        ..Default::default()
    };
    (s, control)
}

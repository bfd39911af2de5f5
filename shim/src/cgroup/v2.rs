//! cgroup v2 metrics, in containerd's `io.containerd.cgroups.v2.Metrics`.

use std::path::Path;

use containerd_shim_protos::cgroups_v2::metrics::{
    CPUStat, MemoryEvents, MemoryStat, Metrics, PidsStat,
};

use super::{read_keyed, read_u64};
use crate::error::{Error, Result};

pub fn metrics(dir: &Path) -> Result<Metrics> {
    if !dir.is_dir() {
        return Err(Error::NotFound(format!("cgroup {} is gone", dir.display())));
    }
    let mut m = Metrics::new();
    let cpu = read_keyed(&dir.join("cpu.stat"));
    let get = |k: &str| cpu.iter().find(|(n, _)| n == k).map_or(0, |(_, v)| *v);
    m.cpu = Some(CPUStat {
        usage_usec: get("usage_usec"),
        user_usec: get("user_usec"),
        system_usec: get("system_usec"),
        nr_periods: get("nr_periods"),
        nr_throttled: get("nr_throttled"),
        throttled_usec: get("throttled_usec"),
        nr_bursts: get("nr_bursts"),
        burst_usec: get("burst_usec"),
        ..Default::default()
    })
    .into();
    m.memory = Some(memory(dir)).into();
    let events = read_keyed(&dir.join("memory.events"));
    let ev = |k: &str| events.iter().find(|(n, _)| n == k).map_or(0, |(_, v)| *v);
    m.memory_events = Some(MemoryEvents {
        low: ev("low"),
        high: ev("high"),
        max: ev("max"),
        oom: ev("oom"),
        oom_kill: ev("oom_kill"),
        oom_group_kill: ev("oom_group_kill"),
        ..Default::default()
    })
    .into();
    m.pids = Some(PidsStat {
        current: read_u64(&dir.join("pids.current")).unwrap_or(0),
        limit: read_u64(&dir.join("pids.max"))
            .filter(|&l| l != u64::MAX)
            .unwrap_or(0),
        ..Default::default()
    })
    .into();
    Ok(m)
}

fn memory(dir: &Path) -> MemoryStat {
    let mut s = MemoryStat::new();
    for (k, v) in read_keyed(&dir.join("memory.stat")) {
        let field = match k.as_str() {
            "anon" => &mut s.anon,
            "file" => &mut s.file,
            "kernel_stack" => &mut s.kernel_stack,
            "slab" => &mut s.slab,
            "sock" => &mut s.sock,
            "shmem" => &mut s.shmem,
            "file_mapped" => &mut s.file_mapped,
            "file_dirty" => &mut s.file_dirty,
            "file_writeback" => &mut s.file_writeback,
            "anon_thp" => &mut s.anon_thp,
            "inactive_anon" => &mut s.inactive_anon,
            "active_anon" => &mut s.active_anon,
            "inactive_file" => &mut s.inactive_file,
            "active_file" => &mut s.active_file,
            "unevictable" => &mut s.unevictable,
            "slab_reclaimable" => &mut s.slab_reclaimable,
            "slab_unreclaimable" => &mut s.slab_unreclaimable,
            "pgfault" => &mut s.pgfault,
            "pgmajfault" => &mut s.pgmajfault,
            "workingset_refault" | "workingset_refault_file" => &mut s.workingset_refault,
            "workingset_activate" | "workingset_activate_file" => &mut s.workingset_activate,
            "workingset_nodereclaim" => &mut s.workingset_nodereclaim,
            "pgrefill" => &mut s.pgrefill,
            "pgscan" => &mut s.pgscan,
            "pgsteal" => &mut s.pgsteal,
            "pgactivate" => &mut s.pgactivate,
            "pgdeactivate" => &mut s.pgdeactivate,
            "pglazyfree" => &mut s.pglazyfree,
            "pglazyfreed" => &mut s.pglazyfreed,
            "thp_fault_alloc" => &mut s.thp_fault_alloc,
            "thp_collapse_alloc" => &mut s.thp_collapse_alloc,
            _ => continue,
        };
        *field = v;
    }
    s.usage = read_u64(&dir.join("memory.current")).unwrap_or(0);
    s.usage_limit = read_u64(&dir.join("memory.max")).unwrap_or(u64::MAX);
    s.swap_usage = read_u64(&dir.join("memory.swap.current")).unwrap_or(0);
    s.swap_limit = read_u64(&dir.join("memory.swap.max")).unwrap_or(0);
    s.max_usage = read_u64(&dir.join("memory.peak")).unwrap_or(0);
    s.swap_max_usage = read_u64(&dir.join("memory.swap.peak")).unwrap_or(0);
    s
}

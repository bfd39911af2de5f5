//! /proc accounting: the processes a pod costs (its shim, holder, share of the sandboxer) and their memory.

use std::collections::{BTreeMap, BTreeSet};

use podshim_integration::{sys, Containerd, Pod};

/// (pid, ppid) of every process.
pub(crate) fn ppids() -> BTreeMap<i32, i32> {
    let mut m = BTreeMap::new();
    if let Ok(rd) = std::fs::read_dir("/proc") {
        for e in rd.flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
                continue;
            };
            if let Ok(s) = std::fs::read_to_string(format!("/proc/{pid}/stat")) {
                if let Some(ppid) = s
                    .rsplit(')')
                    .next()
                    .and_then(|r| r.split_whitespace().nth(1))
                    .and_then(|v| v.parse().ok())
                {
                    m.insert(pid, ppid);
                }
            }
        }
    }
    m
}

/// The processes that are a pod's overhead: its shim process(es) (`-id <pod id>`), their
/// descendants outside the pod's container cgroups (helpers), and the sandbox's own process
/// (pause, in cgroup `<cgroup_parent>/<pod id>`). Application containers are excluded.
pub(crate) fn pod_overhead(c: &Containerd, pod: &Pod) -> (Vec<i32>, Vec<i32>) {
    let pp = ppids();
    let mut shims: Vec<i32> = c
        .all_shims()
        .iter()
        .filter(|p| p.arg_after("-id") == Some(pod.id.as_str()))
        .map(|p| p.pid)
        .collect();
    // A shim adopted from podshim-sandboxer's warm pool was started under a pool id: it is the
    // parent of the pod's namespace holder.
    if shims.is_empty() {
        if let Some(&ppid) = sys::sandbox_holders(&pod.id)
            .first()
            .and_then(|h| pp.get(h))
        {
            shims.push(ppid);
        }
    }
    let mut others = Vec::new();
    let mut frontier: Vec<i32> = shims.clone();
    let mut seen: BTreeSet<i32> = shims.iter().copied().collect();
    let parent = pod.cgroup_parent.trim_end_matches('/').to_string();
    while let Some(p) = frontier.pop() {
        for (&child, &pp_) in &pp {
            if pp_ != p || !seen.insert(child) {
                continue;
            }
            frontier.push(child);
            let cg = std::fs::read_to_string(format!("/proc/{child}/cgroup")).unwrap_or_default();
            let in_pod = cg.lines().find_map(|l| {
                let path = l.splitn(3, ':').nth(2)?;
                let rest = path.strip_prefix(&parent)?;
                Some(
                    rest.trim_start_matches('/')
                        .split('/')
                        .next()
                        .unwrap_or("")
                        .to_string(),
                )
            });
            match in_pod {
                Some(ctr) if !ctr.is_empty() && ctr != pod.id => {} // an application container
                _ => others.push(child),
            }
        }
    }
    (shims, others)
}

/// The podshim-sandboxer daemon and its idle (not yet adopted) pool shims.
pub(crate) fn sandboxer_overhead(c: &Containerd) -> Vec<i32> {
    let mut v: Vec<i32> = c
        .all_shims()
        .iter()
        .filter(|p| {
            p.arg_after("-id")
                .is_some_and(|id| id.starts_with("podshim-pool-"))
        })
        .map(|p| p.pid)
        .collect();
    v.extend(
        sys::processes()
            .into_iter()
            .filter(|p| p.exe_name() == "podshim-sandboxer")
            .map(|p| p.pid),
    );
    v
}

pub(crate) fn mem_kb(pids: &[i32]) -> (f64, f64) {
    let mut rss = 0;
    let mut pss = 0;
    for &p in pids {
        rss += sys::status_kb(p, "VmRSS").unwrap_or(0);
        pss += sys::smaps_rollup_kb(p, "Pss").unwrap_or(0);
    }
    (rss as f64, pss as f64)
}

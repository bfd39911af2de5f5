//! What a pod costs in memory: its shim (and holder, sandboxer share) alone, and the node's total.

use std::time::Duration;

use anyhow::{bail, Result};
use podshim_integration::{Containerd, Pod, HANDLER_SANDBOXER};

use crate::args::Args;
use crate::pods::*;
use crate::procs::*;
use crate::results::*;

pub(crate) async fn memory_per_pod(c: &Containerd, a: &Args, r: &mut Results) -> Result<()> {
    for i in 0..a.mem_samples {
        for n in [1usize, 10] {
            for h in &a.handlers {
                let s = start_pod(c, h, format!("mem{n}-{h}-{i}"), n).await?;
                tokio::time::sleep(Duration::from_millis(1000)).await;
                let (shims, others) = pod_overhead(c, &s.pod);
                if shims.is_empty() {
                    bail!("no shim process found for pod {} ({h})", s.pod.id);
                }
                let all: Vec<i32> = shims.iter().chain(others.iter()).copied().collect();
                let (rss, pss) = mem_kb(&all);
                let (srss, spss) = mem_kb(&shims);
                let w = if n == 1 {
                    "1 container"
                } else {
                    "10 containers"
                };
                r.rec(
                    "memory",
                    &format!("pod overhead RSS, {w} (shim+pause)"),
                    "kB",
                    h,
                    rss,
                );
                r.rec(
                    "memory",
                    &format!("pod overhead PSS, {w} (shim+pause)"),
                    "kB",
                    h,
                    pss,
                );
                r.rec("memory", &format!("shim-only PSS, {w}"), "kB", h, spss);
                r.rec("memory", &format!("shim-only RSS, {w}"), "kB", h, srss);
                r.rec(
                    "memory",
                    &format!("overhead processes per pod, {w}"),
                    "count",
                    h,
                    all.len() as f64,
                );
                c.remove_pod(&s.pod).await?;
            }
        }
        progress(&format!(
            "memory per pod: sample {}/{}",
            i + 1,
            a.mem_samples
        ));
    }
    Ok(())
}

pub(crate) async fn memory_node(c: &Containerd, a: &Args, r: &mut Results) -> Result<()> {
    for h in &a.handlers {
        let mut pods: Vec<Pod> = Vec::new();
        for &target in &a.node_counts {
            while pods.len() < target {
                let k = (target - pods.len()).min(a.parallel);
                let base = pods.len();
                let futs = (0..k).map(|j| start_pod(c, h, format!("node-{h}-{}", base + j), 1));
                for s in futures_util::future::join_all(futs).await {
                    pods.push(s?.pod);
                }
            }
            tokio::time::sleep(Duration::from_millis(1500)).await;
            let mut all = Vec::new();
            for p in &pods {
                let (s, o) = pod_overhead(c, p);
                all.extend(s);
                all.extend(o);
            }
            // podshim-sandboxer's idle pool and the daemon itself are the node's cost too.
            if h == HANDLER_SANDBOXER {
                all.extend(sandboxer_overhead(c));
            }
            // An adopted pool shim is both the pod's shim and still named as a pool shim.
            all.sort_unstable();
            all.dedup();
            let (rss, pss) = mem_kb(&all);
            r.rec(
                "memory",
                &format!("node total RSS, {target} pod(s) (shims+pauses)"),
                "kB",
                h,
                rss,
            );
            r.rec(
                "memory",
                &format!("node total PSS, {target} pod(s) (shims+pauses)"),
                "kB",
                h,
                pss,
            );
            progress(&format!(
                "node total ({h}): {target} pods, {} processes, PSS {:.0} kB",
                all.len(),
                pss
            ));
        }
        let rm = futures_util::future::join_all(pods.iter().map(|p| c.remove_pod(p))).await;
        rm.into_iter().collect::<Result<Vec<()>>>()?;
    }
    Ok(())
}

//! RunPodSandbox and first container start, one pod at a time and in parallel.

use std::collections::BTreeMap;
use std::time::Instant;

use anyhow::Result;
use podshim_integration::{Containerd, HANDLER_SANDBOXER};

use crate::args::Args;
use crate::cpu::{cpu, daemons, Breakdown};
use crate::pods::*;
use crate::procs::pod_overhead;
use crate::results::*;

pub(crate) async fn pod_start_serial(c: &Containerd, a: &Args, r: &mut Results) -> Result<()> {
    let mut cpu_of: BTreeMap<&str, Breakdown> = BTreeMap::new();
    let conflist = crate::floor::conflist(c)?;
    for i in 0..a.pods {
        for h in &a.handlers {
            let sandboxer = *h == HANDLER_SANDBOXER;
            let in0 = if sandboxer {
                Some(sandboxer_busy(c).await?)
            } else {
                None
            };
            let (cd0, sb0) = daemons(c);
            let s = start_pod(c, h, format!("ser-{h}-{i}"), 1).await?;
            let (cd1, sb1) = daemons(c);
            let inside = match in0 {
                Some(t0) => Some(busy_between(&t0, &sandboxer_busy(c).await?)),
                None => None,
            };
            // A new shim's whole CPU is this pod's (a warm-pool shim's includes its warm-up).
            let (shims, _) = pod_overhead(c, &s.pod);
            cpu_of
                .entry(h)
                .or_default()
                .add(cd1 - cd0, cpu(&shims), sb1 - sb0);
            r.rec(
                "pod start",
                "RunPodSandbox (serial)",
                "ms",
                h,
                ms(s.run_pod),
            );
            r.rec(
                "pod start",
                "RunPodSandbox→Create→Start→running (serial)",
                "ms",
                h,
                ms(s.total),
            );
            let t = Instant::now();
            c.remove_pod(&s.pod).await?;
            r.rec(
                "pod start",
                "StopPodSandbox+RemovePodSandbox (serial)",
                "ms",
                h,
                ms(t.elapsed()),
            );
            // The same for every handler; sampled beside each, so its column shows the noise.
            let f = crate::floor::sample(&conflist, i)?;
            r.rec(
                "pod start",
                "floor: a new netns (`ip netns add`), no containerd",
                "ms",
                h,
                ms(f.netns),
            );
            r.rec(
                "pod start",
                "floor: CNI ADD of CRI's plugins (loopback, bridge+host-local, portmap), no containerd",
                "ms",
                h,
                ms(f.cni_add),
            );
            if let Some((by_method, inside)) = inside {
                r.rec("pod start", INSIDE_SANDBOXER, "ms", h, inside);
                for (method, d) in by_method {
                    let name = format!("{INSIDE_SANDBOXER}: {method}");
                    r.rec("pod start", &name, "ms", h, d);
                }
                // The pod's own floor samples are the ones taken beside it.
                let rest = ms(s.run_pod) - ms(f.netns) - ms(f.cni_add) - inside;
                r.rec("pod start", CONTAINERD_REST, "ms", h, rest);
            }
        }
        if (i + 1) % 10 == 0 || i + 1 == a.pods {
            progress(&format!(
                "serial pod start: {}/{} pods per handler",
                i + 1,
                a.pods
            ));
        }
    }
    for (h, b) in &cpu_of {
        b.record(r, "pod start, RunPodSandbox→running (serial)", h);
    }
    Ok(())
}

const INSIDE_SANDBOXER: &str =
    "RunPodSandbox (serial): time inside podshim-sandboxer (its Create and Start)";
/// The controller requests RunPodSandbox makes and waits for.
const RUN_POD_SANDBOX_CALLS: &[&str] = &["Create", "Start"];
const CONTAINERD_REST: &str =
    "RunPodSandbox (serial) less the floor and the time inside podshim-sandboxer: containerd's own (≈)";

/// Milliseconds podshim-sandboxer has spent serving the requests of [`RUN_POD_SANDBOX_CALLS`],
/// by method, from its own request-latency histogram.
async fn sandboxer_busy(c: &Containerd) -> Result<BTreeMap<String, f64>> {
    const SUM: &str = "podshim_sandboxer_request_seconds_sum{method=\"";
    let m = c.sandboxer_metrics().await?;
    Ok(m.into_iter()
        .filter_map(|(k, v)| {
            let method = k.strip_prefix(SUM)?.strip_suffix("\"}")?;
            RUN_POD_SANDBOX_CALLS
                .contains(&method)
                .then(|| (method.to_string(), v * 1000.0))
        })
        .collect())
}

/// What podshim-sandboxer spent between two readings, by method, and in all.
fn busy_between(
    before: &BTreeMap<String, f64>,
    after: &BTreeMap<String, f64>,
) -> (Vec<(String, f64)>, f64) {
    let by_method: Vec<(String, f64)> = after
        .iter()
        .map(|(m, v)| (m.clone(), v - before.get(m).unwrap_or(&0.0)))
        .collect();
    let total = by_method.iter().map(|(_, d)| d).sum();
    (by_method, total)
}

pub(crate) async fn pod_start_parallel(c: &Containerd, a: &Args, r: &mut Results) -> Result<()> {
    let rounds = a.pods.div_ceil(a.parallel);
    let p = a.parallel;
    for round in 0..rounds {
        for h in &a.handlers {
            let t = Instant::now();
            let futs = (0..p).map(|j| start_pod(c, h, format!("par-{h}-{round}-{j}"), 1));
            let res = futures_util::future::join_all(futs).await;
            let wall = t.elapsed();
            let mut pods = Vec::new();
            let mut err = None;
            for s in res {
                match s {
                    Ok(s) => {
                        r.rec(
                            "pod start",
                            &format!("RunPodSandbox ({p} parallel)"),
                            "ms",
                            h,
                            ms(s.run_pod),
                        );
                        r.rec(
                            "pod start",
                            &format!("RunPodSandbox→Create→Start→running ({p} parallel)"),
                            "ms",
                            h,
                            ms(s.total),
                        );
                        pods.push(s.pod);
                    }
                    Err(e) => err = Some(e),
                }
            }
            r.rec(
                "pod start",
                &format!("wall time for {p} pods started in parallel"),
                "ms",
                h,
                ms(wall),
            );
            let rm = futures_util::future::join_all(pods.iter().map(|pod| c.remove_pod(pod))).await;
            if let Some(e) = err {
                return Err(e);
            }
            rm.into_iter().collect::<Result<Vec<()>>>()?;
        }
        progress(&format!(
            "parallel pod start: round {}/{rounds} ({p} pods per handler per round)",
            round + 1
        ));
    }
    Ok(())
}

//! ExecSync latency, and whether the shim's memory grows with execs.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use podshim_integration::Containerd;

use crate::args::Args;
use crate::cpu::{cpu, daemons, Breakdown};
use crate::pods::*;
use crate::procs::*;
use crate::results::*;

pub(crate) async fn exec_leak(c: &Containerd, a: &Args, r: &mut Results) -> Result<()> {
    let mut pods = BTreeMap::new();
    for h in &a.handlers {
        let s = start_pod(c, h, format!("exec-{h}"), 1).await?;
        pods.insert(h.clone(), s);
    }
    // Warm up (first exec may fault in code paths), then settle.
    for (h, s) in &pods {
        for _ in 0..5 {
            c.cri
                .exec_sync(&s.containers[0], &["true"], 10)
                .await
                .with_context(|| format!("exec warm-up ({h})"))?;
        }
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut before = BTreeMap::new();
    for (h, s) in &pods {
        let (shims, _) = pod_overhead(c, &s.pod);
        before.insert(h.clone(), mem_kb(&shims));
    }
    let shims_of: BTreeMap<&String, Vec<i32>> = pods
        .iter()
        .map(|(h, s)| (h, pod_overhead(c, &s.pod).0))
        .collect();
    let mut cpu_of: BTreeMap<&String, Breakdown> = BTreeMap::new();
    for i in 0..a.execs {
        for h in &a.handlers {
            let s = &pods[h];
            let (cd0, sb0) = daemons(c);
            let sh0 = cpu(&shims_of[h]);
            let t = Instant::now();
            let resp = c.cri.exec_sync(&s.containers[0], &["true"], 10).await?;
            r.rec("exec", "ExecSync `true`", "ms", h, ms(t.elapsed()));
            let (cd1, sb1) = daemons(c);
            cpu_of
                .entry(h)
                .or_default()
                .add(cd1 - cd0, cpu(&shims_of[h]) - sh0, sb1 - sb0);
            if resp.exit_code != 0 {
                bail!("ExecSync true exited {} ({h})", resp.exit_code);
            }
        }
        if (i + 1) % 200 == 0 || i + 1 == a.execs {
            progress(&format!("ExecSync: {}/{}", i + 1, a.execs));
        }
    }
    for (h, b) in &cpu_of {
        b.record(r, "ExecSync `true`", h);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    for (h, s) in &pods {
        let (shims, _) = pod_overhead(c, &s.pod);
        let (rss1, pss1) = mem_kb(&shims);
        let (rss0, pss0) = before[h];
        let n = a.execs;
        r.rec("memory", "shim RSS before ExecSync loop", "kB", h, rss0);
        r.rec(
            "memory",
            &format!("shim RSS after {n} ExecSync"),
            "kB",
            h,
            rss1,
        );
        r.rec(
            "memory",
            &format!("shim RSS growth over {n} ExecSync"),
            "kB",
            h,
            rss1 - rss0,
        );
        r.rec(
            "memory",
            &format!("shim PSS growth over {n} ExecSync"),
            "kB",
            h,
            pss1 - pss0,
        );
    }
    for s in pods.values() {
        c.remove_pod(&s.pod).await?;
    }
    Ok(())
}

//! ExecSync latency, and whether the shim's memory grows with execs. Pods of the podshim
//! handlers run it twice: once through the OCI runtime's exec, once through `podshim-exec`
//! (`[runtime] exec_helper`, in a second pod whose shim started with it in its config), each
//! beside the same samples of runc's handler.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use podshim_integration::{Containerd, HANDLER_PAUSELESS, HANDLER_PODSHIM, HANDLER_RUNC};

use crate::args::Args;
use crate::cpu::{cpu, daemons, Breakdown};
use crate::pods::*;
use crate::procs::*;
use crate::results::*;

const EXEC_FIGURE: &str = "ExecSync `true`";
const HELPER_FIGURE: &str = "ExecSync `true`, podshim-exec";

/// Handlers whose pods also run execs through the helper. podshim-sandboxer's warm-pool shims
/// read the shim config before this phase could change it.
const HELPED: [&str; 2] = [HANDLER_PODSHIM, HANDLER_PAUSELESS];

pub(crate) async fn exec_leak(c: &Containerd, a: &Args, r: &mut Results) -> Result<()> {
    let mut pods = BTreeMap::new();
    for h in &a.handlers {
        let s = start_pod(c, h, format!("exec-{h}"), 1).await?;
        pods.insert(h.clone(), s);
    }
    let helped = start_helped_pods(c, a).await?;
    // Warm up (first exec may fault in code paths), then settle.
    for (h, s) in pods.iter().chain(&helped) {
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
    let helped_shims: BTreeMap<&String, Vec<i32>> = helped
        .iter()
        .map(|(h, s)| (h, pod_overhead(c, &s.pod).0))
        .collect();
    let mut cpu_of: BTreeMap<(&str, &String), Breakdown> = BTreeMap::new();
    let runc = HANDLER_RUNC.to_string();
    for i in 0..a.execs {
        let runs = pods
            .iter()
            .map(|(h, s)| (EXEC_FIGURE, h, s, &shims_of[h]))
            .chain(
                helped
                    .iter()
                    .map(|(h, s)| (HELPER_FIGURE, h, s, &helped_shims[h])),
            );
        for (figure, h, s, shims) in runs {
            let (cd0, sb0) = daemons(c);
            let sh0 = cpu(shims);
            let t = Instant::now();
            let resp = c.cri.exec_sync(&s.containers[0], &["true"], 10).await?;
            let took = ms(t.elapsed());
            let (cd1, sb1) = daemons(c);
            let used = (cd1 - cd0, cpu(shims) - sh0, sb1 - sb0);
            // runc's handler is the reference of both figures: one sample, both rows.
            let figures: &[&str] = match (h == &runc, helped.is_empty()) {
                (true, false) => &[EXEC_FIGURE, HELPER_FIGURE],
                _ => &[figure],
            };
            for f in figures {
                r.rec("exec", f, "ms", h, took);
                cpu_of
                    .entry((f, h))
                    .or_default()
                    .add(used.0, used.1, used.2);
            }
            if resp.exit_code != 0 {
                bail!("ExecSync true exited {} ({h}, {figure})", resp.exit_code);
            }
        }
        if (i + 1) % 200 == 0 || i + 1 == a.execs {
            progress(&format!("ExecSync: {}/{}", i + 1, a.execs));
        }
    }
    for ((f, h), b) in &cpu_of {
        b.record(r, f, h);
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
    for s in pods.values().chain(helped.values()) {
        c.remove_pod(&s.pod).await?;
    }
    Ok(())
}

/// A pod per helped handler of the run, whose shim starts with `exec_helper = "podshim-exec"`
/// (the config is put back once they run).
async fn start_helped_pods(c: &Containerd, a: &Args) -> Result<BTreeMap<String, Started>> {
    let helped: Vec<&String> = a
        .handlers
        .iter()
        .filter(|h| HELPED.contains(&h.as_str()))
        .collect();
    if helped.is_empty() {
        return Ok(BTreeMap::new());
    }
    let config = std::fs::read_to_string(&c.shim_config_path)?;
    let with_helper = config.replacen(
        "[runtime]\n",
        "[runtime]\nexec_helper = \"podshim-exec\"\n",
        1,
    );
    anyhow::ensure!(with_helper != config, "shim config has no [runtime] table");
    std::fs::write(&c.shim_config_path, with_helper)?;
    let mut pods = BTreeMap::new();
    let mut started = Ok(());
    for h in helped {
        match start_pod(c, h, format!("exec-helper-{h}"), 1).await {
            Ok(s) => {
                pods.insert(h.clone(), s);
            }
            Err(e) => {
                started = Err(e);
                break;
            }
        }
    }
    std::fs::write(&c.shim_config_path, config)?;
    started.map(|()| pods)
}

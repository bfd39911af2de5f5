//! Log throughput and the shim's CPU per MB.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Result;
use podshim_integration::{container, sys, Containerd};

use crate::args::Args;
use crate::pods::*;
use crate::procs::*;
use crate::results::*;

pub(crate) fn file_len(p: &Path) -> u64 {
    std::fs::metadata(p).map(|m| m.len()).unwrap_or(0)
}

pub(crate) async fn logs_throughput(c: &Containerd, a: &Args, r: &mut Results) -> Result<()> {
    let mut pods = BTreeMap::new();
    for h in &a.handlers {
        pods.insert(
            h.clone(),
            start_pod(c, h, format!("logs-{h}"), 0).await?.pod,
        );
    }
    let cd_pid = c.pid().unwrap_or(0) as i32;
    for size in [64usize, 1024, 16384] {
        let line = "x".repeat(size - 1); // + '\n' from yes
        for rep in 0..a.log_reps {
            // Each handler takes each place in the order in turn: a run's first and last
            // minutes (disk write-back, the machine's other load) fall on all of them alike.
            let n = a.handlers.len();
            for h in a.handlers.iter().cycle().skip(rep % n).take(n) {
                let pod = &pods[h];
                let cfg = container(&format!("yes{size}-{rep}"), &["yes", &line]);
                let log = pod.log_file(&cfg);
                let id = c.create_container(pod, cfg).await?;
                let (shims, _) = pod_overhead(c, pod);
                c.cri.start_container(&id).await?;
                let t0 = Instant::now();
                let b0 = file_len(&log);
                let s0: f64 = shims.iter().map(|&p| sys::cpu_ms(p)).sum();
                let d0 = sys::cpu_ms(cd_pid);
                tokio::time::sleep(Duration::from_secs_f64(a.log_secs)).await;
                let b1 = file_len(&log);
                let s1: f64 = shims.iter().map(|&p| sys::cpu_ms(p)).sum();
                let d1 = sys::cpu_ms(cd_pid);
                let secs = t0.elapsed().as_secs_f64();
                c.cri.stop_container(&id, 0).await?;
                c.cri.remove_container(&id).await?;
                let _ = std::fs::remove_file(&log);
                let mb = (b1 - b0) as f64 / 1e6;
                let label = match size {
                    64 => "64 B",
                    1024 => "1 KiB",
                    _ => "16 KiB",
                };
                r.rec(
                    "logs",
                    &format!("log throughput, {label} lines"),
                    "MB/s",
                    h,
                    mb / secs,
                );
                if mb > 0.0 {
                    r.rec(
                        "logs",
                        &format!("shim CPU per MB logged, {label} lines"),
                        "ms/MB",
                        h,
                        (s1 - s0) / mb,
                    );
                    r.rec(
                        "logs",
                        &format!("shim+containerd CPU per MB logged, {label} lines"),
                        "ms/MB",
                        h,
                        (s1 - s0 + d1 - d0) / mb,
                    );
                }
                progress(&format!(
                    "logs {label} ({h}): {:.1} MB/s, shim CPU {:.0} ms",
                    mb / secs,
                    s1 - s0
                ));
            }
        }
    }
    for pod in pods.values() {
        c.remove_pod(pod).await?;
    }
    Ok(())
}

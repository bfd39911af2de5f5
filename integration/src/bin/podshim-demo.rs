//! `make demo`: start a private containerd with podshim's drop-in, run a pod under podshim (and,
//! for comparison, the same pod under containerd's runc shim), print the container's CRI log,
//! ContainerStats and each shim's memory from /proc, then tear everything down.
#![deny(unsafe_code)]

use std::time::Duration;

use anyhow::{bail, Context, Result};
use podshim_integration::{logs, sh, sys, Containerd, Options, Pod, HANDLER_PODSHIM, HANDLER_RUNC};

const SCRIPT: &str = "echo \"hello from $(hostname)\"; echo 'a line on stderr' >&2; \
     i=1; while [ $i -le 5 ]; do echo \"tick $i\"; i=$((i+1)); sleep 0.2; done; exec sleep 1000";

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    if let Err(e) = run().await {
        eprintln!("podshim-demo failed: {e:#}");
        std::process::exit(1);
    }
}

async fn run() -> Result<()> {
    let mut c = Containerd::start(Options::new(HANDLER_PODSHIM))
        .await
        .context("starting containerd")?;
    println!(
        "containerd {} running with state under {}",
        c.pid().unwrap_or(0),
        c.dir.display()
    );
    println!(
        "shim binary: {}/containerd-shim-podshim-v1",
        c.shim_dir.display()
    );
    let res = demo(&c).await;
    if res.is_err() {
        eprintln!("--- containerd errors ---\n{}", c.log_errors(20));
        eprintln!("--- containerd log tail ---\n{}", c.log_tail(40));
        eprintln!("--- full containerd log: {} ---", c.save_log().display());
    }
    let stop = c.stop().await;
    res?;
    stop.context("teardown")?;
    println!("\nteardown: all pods removed, containerd stopped, nothing left behind");
    Ok(())
}

async fn demo(c: &Containerd) -> Result<()> {
    let mut rows = Vec::new();
    for handler in [HANDLER_PODSHIM, HANDLER_RUNC] {
        let cfg = c.pod_config(&format!("demo-{handler}"));
        let pod = c.run_pod_with_handler(cfg, handler).await?;
        let ctr = sh("app", SCRIPT);
        let log = pod.log_file(&ctr);
        let id = c.run_container(&pod, ctr).await?;
        let lines = logs::wait_for(&log, Duration::from_secs(20), |l| {
            l.iter().any(|x| x.msg == "tick 5")
        })
        .await?;
        println!(
            "\n=== pod {} (handler {handler}), IP {} ===",
            pod.name, pod.ip
        );
        println!("--- CRI log {} ---", log.display());
        for l in &lines {
            println!("{} {} {} {}", l.time, l.stream, l.tag, l.msg);
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        let s = c.cri.container_stats(&id).await?;
        let cpu = s
            .cpu
            .as_ref()
            .and_then(|x| x.usage_core_nano_seconds.as_ref())
            .map(|v| v.value)
            .unwrap_or(0);
        let ws = s
            .memory
            .as_ref()
            .and_then(|x| x.working_set_bytes.as_ref())
            .map(|v| v.value)
            .unwrap_or(0);
        println!(
            "--- ContainerStats ---\ncpu usage {:.1} ms, memory working set {} KiB",
            cpu as f64 / 1e6,
            ws / 1024
        );
        rows.push((handler, shim_memory(c, &pod)?));
    }
    println!("\n=== shim memory (one pod, one container) ===");
    println!(
        "{:<10} {:>7} {:>10} {:>10} {:>10} {:>10} {:>8}",
        "handler", "pid", "VmRSS kB", "RssAnon kB", "Pss kB", "PssAnon kB", "threads"
    );
    for (h, m) in rows {
        println!(
            "{:<10} {:>7} {:>10} {:>10} {:>10} {:>10} {:>8}",
            h, m.pid, m.rss, m.rss_anon, m.pss, m.pss_anon, m.threads
        );
    }
    Ok(())
}

struct Mem {
    pid: i32,
    rss: u64,
    rss_anon: u64,
    pss: u64,
    pss_anon: u64,
    threads: u64,
}

/// The memory of the shim serving `pod` (the shim whose `-id` is the pod sandbox id).
fn shim_memory(c: &Containerd, pod: &Pod) -> Result<Mem> {
    let shims = sys::shim_processes(&c.sock);
    let Some(p) = shims
        .iter()
        .find(|p| p.arg_after("-id") == Some(pod.id.as_str()))
    else {
        bail!(
            "no shim process with -id {} among {:?}",
            pod.id,
            shims.iter().map(|p| p.cmdline_str()).collect::<Vec<_>>()
        );
    };
    let get = |k: &str| sys::status_kb(p.pid, k).unwrap_or(0);
    let threads = std::fs::read_to_string(format!("/proc/{}/status", p.pid))
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| {
                l.strip_prefix("Threads:")
                    .map(|v| v.trim().parse().unwrap_or(0))
            })
        })
        .unwrap_or(0);
    Ok(Mem {
        pid: p.pid,
        rss: get("VmRSS"),
        rss_anon: get("RssAnon"),
        pss: sys::smaps_rollup_kb(p.pid, "Pss").unwrap_or(0),
        pss_anon: sys::smaps_rollup_kb(p.pid, "Pss_Anon").unwrap_or(0),
        threads,
    })
}

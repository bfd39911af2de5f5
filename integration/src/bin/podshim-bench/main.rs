//! `make bench`: podshim against containerd's runc shim, side by side, on one private containerd.
//!
//! Both handlers run on the same containerd, images and CNI; every figure is sampled with the
//! handlers interleaved (A B A B …) so a noisy machine shifts both alike. Prints a Markdown table
//! (median and p99, or min / median / max when samples are few, and the podshim/runc ratio of the
//! medians) on stdout, writes every raw sample as JSON to `--out`, and progress lines on stderr.
//! Nothing here asserts a figure.
//!
//! Usage: podshim-bench [--quick] [--pods N] [--parallel N] [--handlers runc,podshim,podshim-pauseless,podshim-sandboxer] [--pool N]
//!                      [--execs N] [--log-secs S] [--out path.json]
#![deny(unsafe_code)]

mod args;
mod cpu;
mod exec;
mod floor;
mod lifecycle;
mod logs;
mod memory;
mod pod_start;
mod pods;
mod procs;
mod report;
mod results;

use std::time::Instant;

use podshim_integration::{
    bench_snapshots, Containerd, Options, SnapshotterUse, HANDLER_PODSHIM, HANDLER_SANDBOXER,
};

use args::{parse_args, Args};
use exec::exec_leak;
use lifecycle::lifecycle;
use logs::logs_throughput;
use memory::{memory_node, memory_per_pod};
use pod_start::{pod_start_parallel, pod_start_serial};
use pods::remove_all_pods;
use report::{print_table, write_json};
use results::{progress, Results};

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args = parse_args();
    let started = Instant::now();
    let mut opts = Options::new(HANDLER_PODSHIM);
    if std::env::var_os("PODSHIM_E2E_LOG_LEVEL").is_none() {
        // debug logging (and `-debug` shims) would dominate what we measure.
        opts.log_level = "info".into();
    }
    // containerd's own default; the e2e suite lowers it to test splitting.
    opts.max_container_log_line_size = 16384;
    // Registered only: the pod figures keep using overlayfs.
    opts.snapshotter = SnapshotterUse::Registered;
    opts.with_sandboxer = args.handlers.iter().any(|h| h == HANDLER_SANDBOXER);
    opts.sandboxer_pool = args.pool;
    opts.snapshotter_usage_refresh = bench_snapshots::USAGE_REFRESH_SECS;
    if !args.handlers.iter().any(|h| h == HANDLER_PODSHIM) {
        opts.handler = args.handlers[0].clone();
    }
    progress(&format!(
        "starting containerd (handlers {})",
        args.handlers.join(",")
    ));
    let mut c = match Containerd::start(opts).await {
        Ok(c) => c,
        Err(e) => {
            eprintln!("podshim-bench: starting containerd: {e:#}");
            std::process::exit(1);
        }
    };
    progress(&format!(
        "containerd {} up, state under {}, shim dir {}",
        c.pid().unwrap_or(0),
        c.dir.display(),
        c.shim_dir.display()
    ));
    let mut r = Results::default();
    run_all(&mut c, &args, &mut r).await;
    if !r.errors.is_empty() {
        eprintln!("--- containerd errors ---\n{}", c.log_errors(20));
        eprintln!("--- full containerd log: {} ---", c.save_log().display());
    }
    progress("teardown");
    if let Err(e) = c.stop().await {
        r.errors.push(format!("teardown: {e:#}"));
    }
    let elapsed = started.elapsed();
    print_table(&args, &r, &c, elapsed);
    if let Err(e) = write_json(&args, &r, &c, elapsed) {
        eprintln!("podshim-bench: writing {}: {e:#}", args.out.display());
        r.errors.push(format!("writing json: {e:#}"));
    }
    if !r.errors.is_empty() {
        eprintln!("podshim-bench: {} phase(s) failed:", r.errors.len());
        for e in &r.errors {
            eprintln!("  {e}");
        }
        std::process::exit(1);
    }
}

async fn run_all(c: &mut Containerd, a: &Args, r: &mut Results) {
    macro_rules! phase {
        ($name:expr, $f:expr) => {{
            progress(&format!("phase: {}", $name));
            if let Err(e) = $f.await {
                eprintln!("podshim-bench: phase {} failed: {e:#}", $name);
                r.errors.push(format!("{}: {e:#}", $name));
            }
            remove_all_pods(c).await;
        }};
    }
    phase!("pod start (serial)", pod_start_serial(c, a, r));
    phase!("pod start (parallel)", pod_start_parallel(c, a, r));
    phase!("container lifecycle", lifecycle(c, a, r));
    phase!("exec", exec_leak(c, a, r));
    // Idle pool shims map the same shim binary as the pods measured and would take a share of
    // its pages off every podshim pod's PSS: memory is measured with no pool (its cost is one
    // idle shim each, see shim-only RSS).
    if a.handlers.iter().any(|h| h == HANDLER_SANDBOXER) && a.pool > 0 {
        progress("podshim-sandboxer: restarting without its warm pool for the memory phases");
        if let Err(e) = c.restart_sandboxer_with_pool(0).await {
            r.errors
                .push(format!("restarting podshim-sandboxer without pool: {e:#}"));
        }
    }
    phase!("memory per pod", memory_per_pod(c, a, r));
    phase!("memory node total", memory_node(c, a, r));
    phase!("logs", logs_throughput(c, a, r));
    phase!("snapshotter", async {
        let s = if a.quick {
            bench_snapshots::Settings::quick()
        } else {
            bench_snapshots::Settings::full()
        };
        r.snapshots = Some(bench_snapshots::run(c, &s, &progress).await?);
        anyhow::Ok(())
    });
}

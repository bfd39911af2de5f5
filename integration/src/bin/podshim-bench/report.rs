//! The Markdown table on stdout and the raw samples as JSON.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::Result;
use podshim_integration::stats::{fmt_num, median, quantile};
use podshim_integration::{bench_snapshots, Containerd, HANDLER_RUNC};

use crate::args::Args;
use crate::results::*;

/// Samples at or above this count are summarised as median and p99, below as min / median / max.
pub(crate) const MANY: usize = 20;

pub(crate) fn cell(v: Option<&Vec<f64>>) -> (String, f64) {
    let Some(v) = v else {
        return ("–".into(), f64::NAN);
    };
    let mut s = v.clone();
    s.sort_by(|a, b| a.total_cmp(b));
    let m = median(&s);
    let txt = match s.len() {
        0 => "–".into(),
        1 => fmt_num(s[0]),
        n if n >= MANY => format!("{} (p99 {})", fmt_num(m), fmt_num(quantile(&s, 0.99))),
        _ => format!(
            "{} / {} / {}",
            fmt_num(s[0]),
            fmt_num(m),
            fmt_num(s[s.len() - 1])
        ),
    };
    (txt, m)
}

pub(crate) fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|v| v.trim().to_string())
        })
        .unwrap_or_default();
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let mem = std::fs::read_to_string("/proc/meminfo").ok().and_then(|s| {
        s.lines()
            .find(|l| l.starts_with("MemTotal"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u64>().ok())
    });
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .unwrap_or_default()
        .trim()
        .to_string();
    format!(
        "{cpu}, {cores} cores, {} MiB RAM, Linux {kernel}",
        mem.unwrap_or(0) / 1024
    )
}

pub(crate) fn date_utc() -> String {
    let out = std::process::Command::new("date")
        .arg("-u")
        .arg("+%Y-%m-%d %H:%M UTC")
        .output();
    out.map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

pub(crate) fn containerd_version() -> String {
    let out = std::process::Command::new("containerd")
        .arg("--version")
        .output();
    out.map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

pub(crate) fn print_table(a: &Args, r: &Results, c: &Containerd, elapsed: Duration) {
    let hs = &a.handlers;
    // One ratio column per podshim handler, against runc's shim in the same run.
    let ratios: Vec<&String> = match hs.iter().any(|h| h == HANDLER_RUNC) {
        true => hs.iter().filter(|h| *h != HANDLER_RUNC).collect(),
        false => Vec::new(),
    };
    println!(
        "## podshim benchmark{}",
        if a.quick { " (--quick)" } else { "" }
    );
    println!();
    println!("{}; {}; {}", date_utc(), machine(), containerd_version());
    println!(
        "shim binary: {}/containerd-shim-podshim-v1; {} pods, {} in parallel, podshim-sandboxer warm pool {}, {} ExecSync, {} s of logs per run; run time {:.0} s",
        c.shim_dir.display(),
        a.pods,
        a.parallel,
        a.pool,
        a.execs,
        a.log_secs,
        elapsed.as_secs_f64()
    );
    println!();
    println!("Cells: median (p99) with ≥ {MANY} samples, else min / median / max; n = samples per handler.");
    println!();
    let mut hdr = "| figure | unit | n |".to_string();
    let mut sep = "|---|---|---:|".to_string();
    for h in hs {
        hdr.push_str(&format!(" {h} |"));
        sep.push_str("---:|");
    }
    for h in &ratios {
        hdr.push_str(&format!(" {h}/runc |"));
        sep.push_str("---:|");
    }
    println!("{hdr}\n{sep}");
    let mut section = "";
    for f in &r.figs {
        if f.section != section {
            section = f.section;
            let mut row = format!("| **{section}** | | |");
            for _ in hs {
                row.push_str(" |");
            }
            for _ in &ratios {
                row.push_str(" |");
            }
            println!("{row}");
        }
        let n = f.samples.values().map(|v| v.len()).max().unwrap_or(0);
        let mut row = format!("| {} | {} | {n} |", f.name, f.unit);
        let mut meds = BTreeMap::new();
        for h in hs {
            let (t, m) = cell(f.samples.get(h));
            meds.insert(h.as_str(), m);
            row.push_str(&format!(" {t} |"));
        }
        for h in &ratios {
            let (p, q) = (meds[h.as_str()], meds[HANDLER_RUNC]);
            let ratio = if q.abs() > f64::EPSILON && !p.is_nan() && !q.is_nan() {
                format!("{:.2}", p / q)
            } else {
                "–".into()
            };
            row.push_str(&format!(" {ratio} |"));
        }
        println!("{row}");
    }
    println!();
    match &r.snapshots {
        Some(s) => println!("### Snapshotter figures: containerd's overlayfs vs podshim-snapshotter, both through containerd's snapshots API\n\n{}", bench_snapshots::markdown(s)),
        None => println!("Snapshotter figures: not measured (the snapshotter phase failed, see above)."),
    }
    println!("Pod overhead = the pod's shim process(es), their helpers and the sandbox process (pause container, or podshim's namespace holder for pause-less pods); application containers excluded.");
    println!("Memory figures are taken with podshim-sandboxer restarted without its warm pool (idle shims would share the shim binary's pages with the pods measured); its node totals include the daemon.");
    println!("Log throughput = bytes appended to the CRI log file per second while `yes <line>` writes as fast as it can.");
    if !r.errors.is_empty() {
        println!();
        println!(
            "**{} phase(s) failed** (see stderr): {}",
            r.errors.len(),
            r.errors
                .iter()
                .map(|e| e.lines().next().unwrap_or(""))
                .collect::<Vec<_>>()
                .join("; ")
        );
    }
}

pub(crate) fn write_json(a: &Args, r: &Results, c: &Containerd, elapsed: Duration) -> Result<()> {
    let figs: Vec<serde_json::Value> = r
        .figs
        .iter()
        .map(|f| serde_json::json!({ "section": f.section, "figure": f.name, "unit": f.unit, "samples": f.samples }))
        .collect();
    let j = serde_json::json!({
        "date": date_utc(),
        "machine": machine(),
        "containerd": containerd_version(),
        "shim_dir": c.shim_dir.display().to_string(),
        "quick": a.quick,
        "handlers": a.handlers,
        "pods": a.pods,
        "pool": a.pool,
        "parallel": a.parallel,
        "execs": a.execs,
        "log_secs": a.log_secs,
        "node_counts": a.node_counts,
        "run_time_s": elapsed.as_secs_f64(),
        "figures": figs,
        "snapshotter": r.snapshots.as_ref().map(bench_snapshots::json),
        "errors": r.errors,
    });
    if let Some(d) = a.out.parent() {
        std::fs::create_dir_all(d)?;
    }
    std::fs::write(&a.out, serde_json::to_vec_pretty(&j)?)?;
    eprintln!("podshim-bench: raw samples written to {}", a.out.display());
    Ok(())
}

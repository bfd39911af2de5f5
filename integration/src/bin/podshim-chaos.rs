//! `make chaos`: pods started and removed under load while containerd, podshim-sandboxer and pod
//! shims are SIGKILLed at random and restarted; then every container's log, every leftover and
//! the daemons' fds and RSS are checked (see `podshim_integration::chaos`). Exits 1 on any
//! violation, with its details.
//!
//! ```text
//! podshim-chaos [--secs N] [--seed N] [--handlers a,b] [--lines N] [--pods N]
//! ```
//! `--secs` (default 120, or `$CHAOS_SECS`) is split evenly between the handlers; `--seed`
//! (default from the clock, or `$CHAOS_SEED`) seeds every random choice; the timing of the
//! processes is not under its control, so a seed replays the choices, not the interleaving.
#![deny(unsafe_code)]

use std::time::Instant;

use anyhow::{bail, Context, Result};
use podshim_integration::chaos::{self, Config, FD_MARGIN, RSS_MARGIN_PCT};

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    match run().await {
        Ok(true) => {}
        Ok(false) => std::process::exit(1),
        Err(e) => {
            eprintln!("podshim-chaos: {e:#}");
            std::process::exit(2);
        }
    }
}

fn env_u64(name: &str) -> Result<Option<u64>> {
    match std::env::var(name) {
        Ok(v) if !v.trim().is_empty() => Ok(Some(
            v.trim().parse().with_context(|| format!("{name}={v:?}"))?,
        )),
        _ => Ok(None),
    }
}

fn parse_args() -> Result<Config> {
    let seed = env_u64("CHAOS_SEED")?.unwrap_or_else(podshim_integration::pod::rand_u64);
    let mut cfg = Config::new(env_u64("CHAOS_SECS")?.unwrap_or(120), seed);
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut val = || args.next().with_context(|| format!("{a} needs a value"));
        match a.as_str() {
            "--secs" => cfg.secs = val()?.parse().context("--secs")?,
            "--seed" => cfg.seed = val()?.parse().context("--seed")?,
            "--lines" => cfg.lines = val()?.parse().context("--lines")?,
            "--pods" => cfg.pods = val()?.parse().context("--pods")?,
            "--handlers" => cfg.handlers = val()?.split(',').map(str::to_string).collect(),
            "-h" | "--help" => {
                println!(
                    "podshim-chaos [--secs N] [--seed N] [--handlers a,b] [--lines N] [--pods N]"
                );
                std::process::exit(0);
            }
            _ => bail!("unknown argument {a:?} (see --help)"),
        }
    }
    anyhow::ensure!(
        cfg.lines > 0 && cfg.pods > 0,
        "--lines and --pods must be > 0"
    );
    anyhow::ensure!(!cfg.handlers.is_empty(), "no handler");
    Ok(cfg)
}

async fn run() -> Result<bool> {
    let cfg = parse_args()?;
    println!(
        "podshim-chaos: seed {} (CHAOS_SEED={} replays the random choices), {} s of chaos over {}; {} pods at once, {} containers each writing {} lines",
        cfg.seed,
        cfg.seed,
        cfg.secs,
        cfg.handlers.join(", "),
        cfg.pods,
        2,
        cfg.lines
    );
    let t = Instant::now();
    let reports = chaos::run(&cfg).await;
    let secs = t.elapsed().as_secs_f64();

    println!("\n## Containers (handler, pod, container, id, class, lines found)\n");
    for r in &reports {
        for l in &r.containers {
            println!("{l}");
        }
    }
    println!(
        "\n## Containers per class (complete: exactly lines 1..N; the others: a gap-free prefix)\n\n{}",
        chaos::classes_table(&reports)
    );
    // What is tolerated first, faults last: CI shows a long report's head and tail only.
    for r in &reports {
        if !r.known.is_empty() {
            println!(
                "\n## {}: left as containerd leaves it with runc's shim too (not counted)\n",
                r.handler
            );
            for l in &r.known {
                println!("- {l}");
            }
        }
    }
    println!(
        "\n## Long-lived processes (margins: fds +{FD_MARGIN}, RSS +{RSS_MARGIN_PCT}%)\n\n{}",
        chaos::usage_table(&reports)
    );
    let mut ok = true;
    for r in &reports {
        if !r.leaks.is_empty() {
            ok = false;
            println!("\n## {}: leaks\n", r.handler);
            for l in &r.leaks {
                println!("- {l}");
            }
        }
    }
    for r in &reports {
        if !r.violations.is_empty() {
            ok = false;
            println!("\n## {}: violations\n", r.handler);
            for v in &r.violations {
                println!("- {v}");
            }
        }
    }
    println!(
        "\n## Summary (seed {})\n\n{}",
        cfg.seed,
        chaos::table(&reports)
    );
    println!("Logs kept:");
    for r in &reports {
        for p in &r.logs {
            println!("  {}", p.display());
        }
    }
    println!(
        "\npodshim-chaos: {} in {secs:.0} s (seed {})",
        if ok { "PASSED" } else { "FAILED" },
        cfg.seed
    );
    Ok(ok)
}

//! The snapshotter figures of `make bench` alone: containerd's built-in overlayfs against
//! podshim-snapshotter on one private containerd (see `podshim_integration::bench_snapshots`).
//!
//! Usage: podshim-bench-snapshots [--quick] [--pull [--unpacks N]] [--usage-files N] [--out path.json]
//!
//! `--pull`: only the pull figure, against the containerd on PATH, with the transfer service's
//! `max_concurrent_unpacks` = N (default 1: one layer at a time); scripts/bench-pull-releases.sh
//! runs it per release.
#![deny(unsafe_code)]

use std::path::PathBuf;

use podshim_integration::bench_snapshots::{self, Settings};
use podshim_integration::{images, Containerd, Options, SnapshotterUse, HANDLER_RUNC};

fn usage() -> ! {
    eprintln!(
        "usage: podshim-bench-snapshots [--quick] [--pull [--unpacks N]] [--usage-files N] [--out path.json]"
    );
    std::process::exit(2)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let mut s = if argv.iter().any(|a| a == "--quick") {
        Settings::quick()
    } else {
        Settings::full()
    };
    let mut out = images::repo_root().join("target/bench/bench-snapshots.json");
    let mut pull = false;
    let mut unpacks = 1;
    let mut it = argv.into_iter();
    while let Some(k) = it.next() {
        match k.as_str() {
            "--quick" => {}
            "--pull" => pull = true,
            "--unpacks" => {
                unpacks = it
                    .next()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or_else(|| usage())
            }
            "--usage-files" => {
                s.usage_files = it
                    .next()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or_else(|| usage())
            }
            "--out" => out = PathBuf::from(it.next().unwrap_or_else(|| usage())),
            _ => usage(),
        }
    }
    let mut opts = Options::new(HANDLER_RUNC);
    opts.log_level = "info".into();
    opts.snapshotter = SnapshotterUse::Registered;
    opts.snapshotter_usage_refresh = bench_snapshots::USAGE_REFRESH_SECS;
    if pull {
        // The drop-in's recommended setup: its unpack lines let the transfer service unpack
        // into podsnap (and keep overlayfs).
        opts.snapshotter = SnapshotterUse::CriDefault;
        opts.registry = true;
        opts.max_concurrent_unpacks = Some(unpacks);
    }
    let mut c = match Containerd::start(opts).await {
        Ok(c) => c,
        Err(e) => {
            eprintln!("podshim-bench-snapshots: starting containerd: {e:#}");
            std::process::exit(1);
        }
    };
    let progress = |m: &str| eprintln!("[bench] {m}");
    let r = match pull {
        true => bench_snapshots::pull(&c, &s, &progress).await,
        false => bench_snapshots::run(&c, &s, &progress).await,
    };
    let stop = c.stop().await;
    let code = match r {
        Ok(r) => {
            println!("## Snapshotter figures\n");
            println!("{}", bench_snapshots::markdown(&r));
            if let Some(d) = out.parent() {
                let _ = std::fs::create_dir_all(d);
            }
            match serde_json::to_vec_pretty(&bench_snapshots::json(&r))
                .map_err(anyhow::Error::from)
                .and_then(|j| std::fs::write(&out, j).map_err(Into::into))
            {
                Ok(()) => eprintln!("raw samples written to {}", out.display()),
                Err(e) => eprintln!("writing {}: {e:#}", out.display()),
            }
            0
        }
        Err(e) => {
            eprintln!(
                "podshim-bench-snapshots: {e:#}\n--- containerd errors ---\n{}",
                c.log_errors(20)
            );
            1
        }
    };
    if let Err(e) = stop {
        eprintln!("podshim-bench-snapshots: teardown: {e:#}");
        std::process::exit(1);
    }
    std::process::exit(code)
}

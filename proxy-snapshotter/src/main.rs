//! `podshim-snapshotter`: serves containerd's snapshots API on a unix socket.
//!
//! ```text
//! podshim-snapshotter [--root DIR] [--address SOCK] [--usage-refresh SECS] [--log-level LEVEL]
//!                     [--metrics-address HOST:PORT]
//! podshim-snapshotter check [--root DIR]   (what a start would find: exit 0 nothing, 1 found, 2 failed)
//! podshim-snapshotter -v|--version
//! ```
#![deny(unsafe_code)]

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use podshim_snapshotter::metrics;
use podshim_snapshotter::service::Service;
use podshim_snapshotter::{Config, Snapshotter};

const DEFAULT_ROOT: &str = "/var/lib/podshim-snapshotter";
const DEFAULT_ADDRESS: &str = "/run/podshim-snapshotter/snapshotter.sock";
/// Test-only hook (see `Config::crash_point`): `point:n`.
const CRASH_ENV: &str = "PODSHIM_SNAPSHOTTER_CRASHPOINT";

struct Args {
    root: PathBuf,
    address: PathBuf,
    usage_refresh: Duration,
    log_level: log::LevelFilter,
    /// The Prometheus endpoint (`GET /metrics`); none when empty.
    metrics_address: String,
}

/// `podshim-snapshotter <version> (<commit>)`: the commit is what `PODSHIM_GIT_COMMIT` held
/// when this was built.
fn version() -> String {
    podshim_common::version::version("podshim-snapshotter")
}

fn usage() -> &'static str {
    "usage: podshim-snapshotter [--root DIR] [--address SOCK] [--usage-refresh SECS] [--log-level error|warn|info|debug] [--metrics-address HOST:PORT] | check [--root DIR] | -v|--version"
}

/// `check [--root DIR]`: prints what a start would find; exit 2 when the check itself failed,
/// 1 when it found something.
fn check(args: &[String]) -> anyhow::Result<()> {
    let root: PathBuf = match args {
        [] => DEFAULT_ROOT.into(),
        [flag, dir] if flag == "--root" => dir.into(),
        [arg] if arg.starts_with("--root=") => arg["--root=".len()..].into(),
        _ => bail!("{}", usage()),
    };
    let problems = podshim_snapshotter::check::check(&root).unwrap_or_else(|e| {
        eprintln!("podshim-snapshotter check {}: {e}", root.display());
        std::process::exit(2)
    });
    for p in &problems {
        println!("{p}");
    }
    if problems.is_empty() {
        println!("{}: nothing to report", root.display());
        return Ok(());
    }
    std::process::exit(1)
}

fn parse_args() -> anyhow::Result<Args> {
    let mut a = Args {
        root: DEFAULT_ROOT.into(),
        address: DEFAULT_ADDRESS.into(),
        usage_refresh: Duration::from_secs(60),
        log_level: log::LevelFilter::Info,
        metrics_address: String::new(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) => (f.to_string(), Some(v.to_string())),
            None => (arg.clone(), None),
        };
        let mut value = || -> anyhow::Result<String> {
            inline
                .clone()
                .or_else(|| it.next())
                .with_context(|| format!("{flag} needs a value\n{}", usage()))
        };
        match flag.as_str() {
            "--root" => a.root = value()?.into(),
            "--address" => a.address = value()?.into(),
            "--usage-refresh" => {
                a.usage_refresh = Duration::from_secs(value()?.parse().context("--usage-refresh")?)
            }
            "--log-level" => a.log_level = value()?.parse().context("--log-level")?,
            "--metrics-address" => {
                a.metrics_address = value()?;
                podshim_common::metrics::parse_address(&a.metrics_address)
                    .map_err(|e| anyhow::anyhow!("--metrics-address: {e}"))?;
            }
            "-h" | "--help" => {
                println!("{}", usage());
                std::process::exit(0);
            }
            "-v" | "--version" => {
                println!("{}", version());
                std::process::exit(0);
            }
            other => bail!("unknown argument {other:?}\n{}", usage()),
        }
    }
    Ok(a)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    if argv.first().map(String::as_str) == Some("check") {
        return check(&argv[1..]);
    }
    let args = parse_args()?;
    podshim_common::logger::init("podshim-snapshotter", args.log_level);

    // Before anything is touched: an address asked for but unusable stops the start.
    let metrics_listener = match args.metrics_address.as_str() {
        "" => None,
        a => Some(
            podshim_common::metrics::bind(a)
                .await
                .with_context(|| format!("bind --metrics-address {a}"))?,
        ),
    };
    let mut cfg = Config::new(&args.root);
    cfg.usage_refresh = args.usage_refresh;
    if let Ok(v) = std::env::var(CRASH_ENV) {
        let (p, n) = v.split_once(':').context("crash point must be point:n")?;
        cfg.crash_point = Some((p.to_string(), n.parse()?));
    }
    let snap = tokio::task::spawn_blocking(move || Snapshotter::open(cfg))
        .await?
        .with_context(|| format!("open snapshotter root {}", args.root.display()))?;
    let snap = Arc::new(snap);
    let metrics = metrics::new(snap.clone());
    if let Some(listener) = metrics_listener {
        log::info!("metrics on {}", listener.local_addr()?);
        tokio::spawn(podshim_common::metrics::serve(
            listener,
            metrics.registry.clone(),
        ));
    }
    let listener = podshim_common::socket::bind_root_only(&args.address)?;
    log::info!(
        "serving {} (root {})",
        args.address.display(),
        snap.root().display()
    );

    let shutdown = async {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
        let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        log::info!("shutting down");
    };
    tonic::transport::Server::builder()
        .layer(metrics.grpc.clone())
        .add_service(Service::new(snap.clone()).into_server())
        .serve_with_incoming_shutdown(
            tokio_stream::wrappers::UnixListenerStream::new(listener),
            shutdown,
        )
        .await
        .context("grpc server")?;
    // The last Removes' deletions made durable and their directories moved out.
    if let Err(e) = tokio::task::spawn_blocking(move || snap.settle_removals()).await? {
        log::warn!("settling removed snapshots: {e}");
    }
    let _ = std::fs::remove_file(&args.address);
    Ok(())
}

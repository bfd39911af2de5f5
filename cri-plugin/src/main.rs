//! `podshim-sandboxer`: serves containerd's sandbox Controller API on a root-only unix socket.
//!
//! ```text
//! podshim-sandboxer [--config FILE]   (default /etc/podshim/sandboxer.toml, or $PODSHIM_SANDBOXER_CONFIG)
//! podshim-sandboxer check [--config FILE]   (what a restart would find: exit 0 nothing, 1 found, 2 failed)
//! podshim-sandboxer -v|--version
//! ```
#![deny(unsafe_code)]

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{bail, Context};
use podshim_sandboxer::controller::Controller;
use podshim_sandboxer::launch::Launcher;
use podshim_sandboxer::metrics;
use podshim_sandboxer::pool::Pool;
use podshim_sandboxer::sandboxes::Sandboxes;
use podshim_sandboxer::store::{self, Store};
use podshim_sandboxer::Config;

/// `podshim-sandboxer <version> (<commit>)`: the commit is what `PODSHIM_GIT_COMMIT` held when
/// this was built.
fn version() -> String {
    podshim_common::version::version("podshim-sandboxer")
}

const USAGE: &str = "usage: podshim-sandboxer [check] [--config FILE] | -v|--version";

enum Command {
    Serve(Option<PathBuf>),
    /// Reports what a restart would find (`podshim_sandboxer::check`); exit 1 if anything.
    Check(Option<PathBuf>),
}

fn command() -> anyhow::Result<Command> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    match args.as_slice() {
        [] => Ok(Command::Serve(None)),
        ["--config", p] => Ok(Command::Serve(Some(p.into()))),
        ["check"] => Ok(Command::Check(None)),
        ["check", "--config", p] => Ok(Command::Check(Some(p.into()))),
        ["-h" | "--help", ..] => {
            println!("{USAGE}");
            std::process::exit(0)
        }
        ["-v" | "--version"] => {
            println!("{}", version());
            std::process::exit(0)
        }
        _ => bail!("{USAGE}"),
    }
}

fn load(path: Option<PathBuf>) -> anyhow::Result<Config> {
    Ok(match path {
        Some(p) => Config::from_file(&p)?,
        None => Config::load()?,
    })
}

fn main() -> anyhow::Result<()> {
    let cfg = match command()? {
        Command::Serve(path) => load(path)?,
        Command::Check(path) => {
            let cfg = load(path)?;
            // Exit 2: the check itself failed; 1: it found something.
            let problems = podshim_sandboxer::check::check(&cfg).unwrap_or_else(|e| {
                eprintln!("podshim-sandboxer check {}: {e}", cfg.state_dir.display());
                std::process::exit(2)
            });
            for p in &problems {
                println!("{p}");
            }
            if problems.is_empty() {
                println!("{}: nothing to report", cfg.state_dir.display());
                return Ok(());
            }
            std::process::exit(1)
        }
    };
    let level = cfg.log_level.parse().context("log_level")?;
    podshim_common::logger::init("podshim-sandboxer", level);
    // One thread: the daemon waits on sockets and child processes, it does not compute.
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(serve(cfg))
}

async fn serve(cfg: Config) -> anyhow::Result<()> {
    // Before anything is touched: an address asked for but unusable stops the start.
    let metrics_listener = match cfg.metrics_address.as_str() {
        "" => None,
        a => Some(
            podshim_common::metrics::bind(a)
                .await
                .with_context(|| format!("bind metrics_address {a}"))?,
        ),
    };
    let store = Arc::new(
        Store::open(&cfg.state_dir)
            .with_context(|| format!("open the store in {}", cfg.state_dir.display()))?,
    );
    let launcher = Arc::new(Launcher::new(&cfg));
    let pool = Arc::new(Pool::new(
        cfg.pool.size,
        cfg.pool.namespace.clone(),
        launcher.clone(),
        store.clone(),
    ));
    let sandboxes = Arc::new(Sandboxes::new(&cfg, store, launcher, pool.clone()));
    // Before serving: containerd's Wait calls, retried while we were down, must find the
    // sandboxes that outlived us.
    sandboxes.recover().await.context("recover sandboxes")?;
    log::info!(
        "{} sandboxes recovered, {} idle pool shims kept",
        sandboxes.count(),
        pool.idle_count()
    );
    let pool_task = tokio::spawn(pool.clone().run());
    tokio::spawn(sandboxes.clone().sweep());

    let metrics = metrics::new(
        sandboxes.clone(),
        pool.clone(),
        cfg.state_dir.join(store::FILE_NAME),
    );
    if let Some(listener) = metrics_listener {
        log::info!("metrics on {}", listener.local_addr()?);
        tokio::spawn(podshim_common::metrics::serve(
            listener,
            metrics.registry.clone(),
        ));
    }

    let listener = podshim_common::socket::bind_root_only(&cfg.address)?;
    log::info!(
        "serving {} (state {}, pool {} in {})",
        cfg.address.display(),
        cfg.state_dir.display(),
        cfg.pool.size,
        cfg.pool.namespace
    );
    let shutdown = async {
        use tokio::signal::unix::{signal, SignalKind};
        let (Ok(mut term), Ok(mut int)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) else {
            log::error!("cannot install signal handlers");
            return std::future::pending().await;
        };
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        log::info!("shutting down");
    };
    let server = tonic::transport::Server::builder()
        .layer(metrics.grpc.clone())
        .add_service(Controller::new(sandboxes).into_server())
        .serve_with_incoming(tokio_stream::wrappers::UnixListenerStream::new(listener));
    // Not a graceful drain: containerd keeps a Wait open per pod for the pod's whole life; it
    // retries those on Unavailable until we are back.
    tokio::select! {
        r = server => r.context("grpc server")?,
        _ = shutdown => {}
    }
    let _ = std::fs::remove_file(&cfg.address);
    // Pods keep their shims; idle pool shims are not worth keeping across a planned stop.
    pool.drain().await;
    let _ = pool_task.await;
    Ok(())
}

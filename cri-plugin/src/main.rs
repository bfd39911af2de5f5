//! `podshim-sandboxer`: serves containerd's sandbox Controller API on a root-only unix socket.
//!
//! ```text
//! podshim-sandboxer [--config FILE]   (default /etc/podshim/sandboxer.toml, or $PODSHIM_SANDBOXER_CONFIG)
//! ```
#![deny(unsafe_code)]

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{bail, Context};
use podshim_sandboxer::controller::Controller;
use podshim_sandboxer::launch::Launcher;
use podshim_sandboxer::pool::Pool;
use podshim_sandboxer::sandboxes::Sandboxes;
use podshim_sandboxer::store::Store;
use podshim_sandboxer::Config;

fn config_path() -> anyhow::Result<Option<PathBuf>> {
    let mut args = std::env::args().skip(1);
    match (args.next().as_deref(), args.next(), args.next()) {
        (None, _, _) => Ok(None),
        (Some("--config"), Some(p), None) => Ok(Some(p.into())),
        (Some("-h" | "--help"), _, _) => {
            println!("usage: podshim-sandboxer [--config FILE]");
            std::process::exit(0)
        }
        _ => bail!("usage: podshim-sandboxer [--config FILE]"),
    }
}

fn main() -> anyhow::Result<()> {
    let cfg = match config_path()? {
        Some(p) => Config::from_file(&p)?,
        None => Config::load()?,
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

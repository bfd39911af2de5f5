#![deny(unsafe_code)]
use podshim_shim::{holder_main, serve, Service, HOLDER_ARG};

const RUNTIME_ID: &str = "io.containerd.podshim.v1";

fn main() -> anyhow::Result<()> {
    let args: Vec<_> = std::env::args_os().collect();
    // A pause-less pod's namespace holder is this binary too; it must fork before any runtime
    // or thread exists.
    if args.get(1).is_some_and(|a| a == HOLDER_ARG) {
        holder_main(&args[1..]);
    }
    // One thread: a pod's shim spends its life waiting on pipes and children.
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(shim_main(args))
}

async fn shim_main(args: Vec<std::ffi::OsString>) -> anyhow::Result<()> {
    let flags = containerd_shim::parse(&args[1..])?;
    if flags.version {
        println!(
            "{RUNTIME_ID} containerd-shim-podshim-v1 {}",
            env!("CARGO_PKG_VERSION")
        );
        return Ok(());
    }
    // `start`, `delete` and `-info` follow the shim library's protocol handling (including
    // containerd 2.3's bootstrap messages); serving is podshim's own.
    if flags.info || !flags.action.is_empty() {
        containerd_shim::run::<Service>(
            RUNTIME_ID,
            Some(containerd_shim::Config {
                // The serving shim reaps its own children (see reaper.rs).
                no_reaper: true,
                ..Default::default()
            }),
        )
        .await;
        return Ok(());
    }
    if let Err(e) = serve(RUNTIME_ID, flags).await {
        // containerd shows the `start` process's stderr, which is ours until we serve.
        eprintln!("{RUNTIME_ID}: {e}");
        std::process::exit(1);
    }
    Ok(())
}

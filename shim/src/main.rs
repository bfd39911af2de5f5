use podshim_shim::service::Service;

const RUNTIME_ID: &str = "io.containerd.podshim.v1";

/// One thread: a pod's shim spends its life waiting on pipes and children.
#[tokio::main(flavor = "current_thread")]
async fn main() {
    // containerd's flags include -v, which the shim library parses but does not act on.
    if std::env::args().skip(1).any(|a| a == "-v" || a == "-version") {
        println!("{RUNTIME_ID} containerd-shim-podshim-v1 {}", env!("CARGO_PKG_VERSION"));
        return;
    }
    containerd_shim::run::<Service>(
        RUNTIME_ID,
        Some(containerd_shim::Config {
            // The shim reaps its own children (see reaper.rs); the library's reaper would race.
            no_reaper: true,
            ..Default::default()
        }),
    )
    .await;
}

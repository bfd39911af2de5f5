use podshim_shim::service::Service;

/// One thread: a pod's shim spends its life waiting on pipes and children.
#[tokio::main(flavor = "current_thread")]
async fn main() {
    containerd_shim::run::<Service>(
        "io.containerd.podshim.v1",
        Some(containerd_shim::Config {
            // The shim reaps its own children (see reaper.rs); the library's reaper would race.
            no_reaper: true,
            ..Default::default()
        }),
    )
    .await;
}

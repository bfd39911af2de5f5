//! Generates the server side of `containerd.services.sandbox.v1.Controller` with tonic-build's
//! `manual` builder over the message types of `containerd-client` (no .proto, no protoc), as
//! proxy-snapshotter does for the snapshots API. Where containerd's message outgrew
//! containerd-client's, the crate declares it (`src/wire.rs`).

fn main() {
    let api = |t: &str| format!("containerd_client::services::v1::sandbox::{t}");
    let method = |name: &str, route: &str| {
        let output = match route {
            // Carries the sandbox spec (containerd 2.3+).
            "Start" => "crate::wire::ControllerStartResponse".to_string(),
            _ => api(&format!("Controller{route}Response")),
        };
        tonic_build::manual::Method::builder()
            .name(name)
            .route_name(route)
            .input_type(api(&format!("Controller{route}Request")))
            .output_type(output)
            .codec_path("tonic_prost::ProstCodec")
            .build()
    };
    let mut service = tonic_build::manual::Service::builder()
        .name("Controller")
        .package("containerd.services.sandbox.v1");
    for (name, route) in [
        ("create", "Create"),
        ("start", "Start"),
        ("platform", "Platform"),
        ("stop", "Stop"),
        ("wait", "Wait"),
        ("status", "Status"),
        ("shutdown", "Shutdown"),
        ("metrics", "Metrics"),
        ("update", "Update"),
    ] {
        service = service.method(method(name, route));
    }
    tonic_build::manual::Builder::new()
        .build_client(false)
        .build_server(true)
        .compile(&[service.build()]);
}

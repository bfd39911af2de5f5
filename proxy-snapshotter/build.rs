//! Generates the server side of `containerd.services.snapshots.v1.Snapshots` with tonic-build's
//! `manual` builder. Message types come from `containerd-client` (built there from containerd's
//! own protos), so this crate carries no `.proto` file and does not run protoc itself.

fn method(name: &str, route: &str, input: &str, output: &str) -> tonic_build::manual::Method {
    tonic_build::manual::Method::builder()
        .name(name)
        .route_name(route)
        .input_type(match input.starts_with("crate::") {
            true => input.to_string(),
            false => format!("containerd_client::services::v1::snapshots::{input}"),
        })
        .output_type(output)
        .codec_path("tonic_prost::ProstCodec")
        .build()
}

fn main() {
    let snap = |t: &str| format!("containerd_client::services::v1::snapshots::{t}");
    // google.protobuf.Empty is `()` in prost; the generator needs a path, hence an alias.
    let empty = "crate::service::Empty";
    let list = tonic_build::manual::Method::builder()
        .name("list")
        .route_name("List")
        .input_type(snap("ListSnapshotsRequest"))
        .output_type(snap("ListSnapshotsResponse"))
        .codec_path("tonic_prost::ProstCodec")
        .server_streaming()
        .build();
    let service = tonic_build::manual::Service::builder()
        .name("Snapshots")
        .package("containerd.services.snapshots.v1")
        .method(method(
            "prepare",
            "Prepare",
            "PrepareSnapshotRequest",
            &snap("PrepareSnapshotResponse"),
        ))
        .method(method(
            "view",
            "View",
            "ViewSnapshotRequest",
            &snap("ViewSnapshotResponse"),
        ))
        .method(method(
            "mounts",
            "Mounts",
            "MountsRequest",
            &snap("MountsResponse"),
        ))
        // containerd-client's message predates containerd 2.2's `parent` field (rebase).
        .method(method(
            "commit",
            "Commit",
            "crate::service::CommitSnapshotRequest",
            empty,
        ))
        .method(method("remove", "Remove", "RemoveSnapshotRequest", empty))
        .method(method(
            "stat",
            "Stat",
            "StatSnapshotRequest",
            &snap("StatSnapshotResponse"),
        ))
        .method(method(
            "update",
            "Update",
            "UpdateSnapshotRequest",
            &snap("UpdateSnapshotResponse"),
        ))
        .method(list)
        .method(method(
            "usage",
            "Usage",
            "UsageRequest",
            &snap("UsageResponse"),
        ))
        .method(method("cleanup", "Cleanup", "CleanupRequest", empty))
        .build();
    tonic_build::manual::Builder::new()
        .build_client(false)
        .build_server(true)
        .compile(&[service]);
}

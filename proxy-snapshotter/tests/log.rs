//! The daemon's lines about one snapshot name it as their subject, including those written on
//! the blocking pool where the work runs.
#![deny(unsafe_code)]

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::BIN;
use containerd_client::services::v1::snapshots::snapshots_client::SnapshotsClient;
use containerd_client::services::v1::snapshots::*;
use containerd_client::tonic::Code;

#[tokio::test]
async fn lines_about_a_snapshot_name_it() {
    let t = tempfile::tempdir().unwrap();
    let sock = t.path().join("s.sock");
    let log = t.path().join("log");
    let mut child = Command::new(BIN)
        .arg("--root")
        .arg(t.path().join("root"))
        .arg("--address")
        .arg(&sock)
        .args(["--log-level", "debug"])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let mut c = loop {
        if let Ok(ch) = containerd_client::connect(&sock).await {
            break SnapshotsClient::new(ch);
        }
        assert!(child.try_wait().unwrap().is_none(), "daemon exited");
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    c.prepare(PrepareSnapshotRequest {
        snapshotter: "podsnap".into(),
        key: "k1".into(),
        ..Default::default()
    })
    .await
    .unwrap();
    let e = c
        .commit(CommitSnapshotRequest {
            snapshotter: "podsnap".into(),
            name: "n1".into(),
            key: "k1-missing".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    child.kill().unwrap();
    child.wait().unwrap();
    let log = std::fs::read_to_string(&log).unwrap();
    for want in [
        "podshim-snapshotter DEBUG snapshot \"k1\": prepare, parent \"\"",
        "podshim-snapshotter DEBUG snapshot \"k1-missing\": commit as \"n1\"",
    ] {
        assert!(log.contains(want), "{want:?} not in\n{log}");
    }
}

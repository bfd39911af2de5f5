//! `--metrics-address`: the real binary, driven over its socket, then scraped over plain TCP.
#![deny(unsafe_code)]

mod common;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::time::Duration;

use common::Daemon;
use containerd_client::services::v1::snapshots::*;
use containerd_client::tonic::Code;

const SN: &str = "podsnap";

/// A port nobody listens on right now (the daemon binds it next).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `GET /metrics`: the answer's head and its body.
fn scrape(addr: &str) -> (String, String) {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: podshim\r\n\r\n")
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let (head, body) = out.split_once("\r\n\r\n").unwrap();
    (head.to_string(), body.to_string())
}

// Multi-threaded: the daemon's graceful stop waits for the client's connection, which a
// runtime blocked in `terminate` would never close.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_requests_and_show_the_snapshots() {
    let dir = tempfile::tempdir().unwrap();
    let addr = format!("127.0.0.1:{}", free_port());
    let mut d = Daemon::start(
        &dir.path().join("root"),
        &dir.path().join("s.sock"),
        &[],
        &["--metrics-address", &addr],
    );
    let mut c = d.client().await.expect("daemon up");
    let prepare = |key: &str, parent: &str| PrepareSnapshotRequest {
        snapshotter: SN.into(),
        key: key.into(),
        parent: parent.into(),
        labels: HashMap::new(),
    };
    c.prepare(prepare("a", "")).await.unwrap();
    c.commit(CommitSnapshotRequest {
        snapshotter: SN.into(),
        name: "c1".into(),
        key: "a".into(),
        labels: HashMap::new(),
    })
    .await
    .unwrap();
    c.prepare(prepare("b", "c1")).await.unwrap();
    c.view(ViewSnapshotRequest {
        snapshotter: SN.into(),
        key: "v".into(),
        parent: "c1".into(),
        labels: HashMap::new(),
    })
    .await
    .unwrap();
    let e = c.prepare(prepare("x", "no-such-parent")).await.unwrap_err();
    assert_eq!(e.code(), Code::NotFound, "{e:?}");
    c.usage(UsageRequest {
        snapshotter: SN.into(),
        key: "b".into(),
    })
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;

    let (head, body) = tokio::task::spawn_blocking(move || scrape(&addr))
        .await
        .unwrap();
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    assert!(
        head.contains("\r\nContent-Type: text/plain; version=0.0.4\r\n"),
        "{head}"
    );
    let m = podshim_common::metrics::parse(&body).unwrap_or_else(|e| panic!("{e}\n{body}"));
    let get = |k: &str| *m.get(k).unwrap_or_else(|| panic!("no {k} in\n{body}"));
    let requests = |method: &str, code: &str| {
        get(&format!(
            "podshim_snapshotter_requests_total{{method=\"{method}\",code=\"{code}\"}}"
        ))
    };
    assert_eq!(requests("Prepare", "OK"), 2.0);
    assert_eq!(requests("Prepare", "NotFound"), 1.0);
    assert_eq!(requests("Commit", "OK"), 1.0);
    assert_eq!(requests("View", "OK"), 1.0);
    assert_eq!(requests("Usage", "OK"), 1.0);
    let total: f64 = m
        .iter()
        .filter(|(k, _)| k.starts_with("podshim_snapshotter_requests_total{"))
        .map(|(_, v)| v)
        .sum();
    assert_eq!(total, 6.0, "{body}");
    assert_eq!(
        get("podshim_snapshotter_request_seconds_count{method=\"Prepare\"}"),
        3.0
    );
    assert_eq!(get("podshim_snapshotter_snapshots{kind=\"active\"}"), 1.0);
    assert_eq!(get("podshim_snapshotter_snapshots{kind=\"view\"}"), 1.0);
    assert_eq!(
        get("podshim_snapshotter_snapshots{kind=\"committed\"}"),
        1.0
    );
    // "b"'s figure is cached since its Prepare (or its first Usage) and not yet refreshed.
    let lag = get("podshim_snapshotter_usage_lag_seconds");
    assert!(lag > 0.0 && lag < 60.0, "{lag}");
    assert!(get("podshim_snapshotter_store_bytes") > 0.0);
    get("podshim_snapshotter_usage_walks_total");
    d.terminate();
}

#[test]
fn a_bad_metrics_address_stops_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let st = std::process::Command::new(common::BIN)
        .arg("--root")
        .arg(dir.path().join("root"))
        .args(["--metrics-address", "localhost"])
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(!st.success());
    assert!(!dir.path().join("root").exists(), "nothing was created");
}

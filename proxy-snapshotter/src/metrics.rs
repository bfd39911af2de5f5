//! podshim-snapshotter's Prometheus metrics (served on `--metrics-address`, see
//! `podshim_common::metrics`). Requests are counted at the gRPC edge by the `grpc`
//! layer `new` returns; what is state rather than an event (snapshots, the usage cache's
//! staleness and walks, the store's size) is read at each scrape, on the blocking pool.

use std::sync::Arc;

use podshim_common::metrics::{DaemonMetrics, GrpcLayer, Registry, LATENCY_BUCKETS};

use crate::Snapshotter;

pub fn new(snap: Arc<Snapshotter>) -> DaemonMetrics {
    let r = Registry::new();
    let by_kind = r.gauge(
        "podshim_snapshotter_snapshots",
        "Snapshots by kind (active, view, committed).",
        &["kind"],
    );
    let requests = r.counter(
        "podshim_snapshotter_requests_total",
        "Snapshots API requests by method and gRPC status code.",
        &["method", "code"],
    );
    let seconds = r.histogram(
        "podshim_snapshotter_request_seconds",
        "Snapshots API request latency by method.",
        &["method"],
        LATENCY_BUCKETS,
    );
    let lag = r.gauge(
        "podshim_snapshotter_usage_lag_seconds",
        "Age of the oldest cached usage figure of an active snapshot (0: none cached).",
        &[],
    );
    let walks = r.counter(
        "podshim_snapshotter_usage_walks_total",
        "Directory walks done to measure active snapshots' usage.",
        &[],
    );
    let store_bytes = r.gauge(
        "podshim_snapshotter_store_bytes",
        "Size of the metadata store file.",
        &[],
    );
    r.collect(move || {
        by_kind.clear();
        match snap.kinds() {
            Ok(kinds) => {
                for kind in ["active", "view", "committed"] {
                    let n = kinds.get(kind).copied().unwrap_or(0);
                    by_kind.set(&[kind], n as f64);
                }
            }
            // Left out of this scrape: a missing series, not a false zero.
            Err(e) => log::warn!("metrics: count snapshots: {e}"),
        }
        lag.set(&[], snap.usage_lag().as_secs_f64());
        walks.set(&[], snap.usage_walks() as f64);
        let size = std::fs::metadata(snap.store_path()).map_or(0, |m| m.len());
        store_bytes.set(&[], size as f64);
    });
    let grpc = GrpcLayer::new(requests, seconds, crate::service::METHODS);
    DaemonMetrics {
        registry: Arc::new(r),
        grpc,
    }
}

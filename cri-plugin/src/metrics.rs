//! podshim-sandboxer's Prometheus metrics (served on `metrics_address`, see
//! `podshim_common::metrics`). Requests are counted at the gRPC edge by the `grpc` layer `new`
//! returns; what is state rather than an event (sandboxes, idle pool shims, adoptions, the
//! store's size) is read at each scrape.

use std::path::PathBuf;
use std::sync::Arc;

use podshim_common::metrics::{DaemonMetrics, GrpcLayer, Registry, LATENCY_BUCKETS};

use crate::pool::Pool;
use crate::sandboxes::Sandboxes;

/// `store`: the redb file whose size is reported.
pub fn new(sandboxes: Arc<Sandboxes>, pool: Arc<Pool>, store: PathBuf) -> DaemonMetrics {
    let r = Registry::new();
    let by_state = r.gauge(
        "podshim_sandboxer_sandboxes",
        "Sandboxes by the state of their record (creating, created, started, exited).",
        &["state"],
    );
    let idle = r.gauge(
        "podshim_sandboxer_pool_idle",
        "Idle pool shims ready to be adopted.",
        &[],
    );
    let adoptions = r.counter(
        "podshim_sandboxer_pool_adoptions_total",
        "Pool shims adopted by a sandbox since the daemon started.",
        &[],
    );
    let requests = r.counter(
        "podshim_sandboxer_requests_total",
        "Controller API requests by method and gRPC status code.",
        &["method", "code"],
    );
    let seconds = r.histogram(
        "podshim_sandboxer_request_seconds",
        "Controller API request latency by method (Wait lasts as long as the pod).",
        &["method"],
        LATENCY_BUCKETS,
    );
    let store_bytes = r.gauge(
        "podshim_sandboxer_store_bytes",
        "Size of the sandbox store file.",
        &[],
    );
    r.collect(move || {
        by_state.clear();
        for (state, n) in sandboxes.states() {
            by_state.set(&[state], n as f64);
        }
        idle.set(&[], pool.idle_count() as f64);
        adoptions.set(&[], sandboxes.adoptions() as f64);
        let size = std::fs::metadata(&store).map_or(0, |m| m.len());
        store_bytes.set(&[], size as f64);
    });
    let grpc = GrpcLayer::new(requests, seconds, crate::controller::METHODS);
    DaemonMetrics {
        registry: Arc::new(r),
        grpc,
    }
}

//! The daemons' Prometheus metrics: a registry of labelled counters, gauges and histograms
//! rendered in the text exposition format 0.0.4, the HTTP/1.1 responder that serves it on
//! `GET /metrics`, and a tower layer that counts gRPC requests by method and status code.
//!
//! Invariants: a family's series always carry exactly its label names, in order; a series, once
//! created, is only removed by `clear` (gauges of things that come and go are set afresh by a
//! collector on every scrape); rendering runs the collectors first, then prints every family in
//! registration order.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// The content type of the text exposition format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4";

/// Request latency buckets (seconds) of the daemons' RPC histograms.
pub const LATENCY_BUCKETS: &[f64] = &[0.001, 0.005, 0.025, 0.1, 0.5, 2.5, 10.0, 60.0];

#[derive(Clone, Copy, Debug, PartialEq)]
enum Kind {
    Counter,
    Gauge,
    Histogram(&'static [f64]),
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram(_) => "histogram",
        }
    }
}

#[derive(Debug)]
enum Series {
    Value(f64),
    /// Per-bucket counts (not cumulative; the last one is +Inf), sum and count.
    Histogram {
        buckets: Vec<u64>,
        sum: f64,
        count: u64,
    },
}

struct Family {
    name: &'static str,
    help: &'static str,
    kind: Kind,
    labels: &'static [&'static str],
    series: Mutex<BTreeMap<Vec<String>, Series>>,
}

impl Family {
    fn with<R>(&self, labels: &[&str], f: impl FnOnce(&mut Series) -> R) -> R {
        assert_eq!(
            labels.len(),
            self.labels.len(),
            "{}: labels {:?}",
            self.name,
            self.labels
        );
        let mut series = self.series.lock().unwrap_or_else(|e| e.into_inner());
        let s = series
            .entry(labels.iter().map(|l| l.to_string()).collect())
            .or_insert_with(|| match self.kind {
                Kind::Histogram(b) => Series::Histogram {
                    buckets: vec![0; b.len() + 1],
                    sum: 0.0,
                    count: 0,
                },
                _ => Series::Value(0.0),
            });
        f(s)
    }

    fn set(&self, labels: &[&str], v: f64) {
        self.with(labels, |s| {
            if let Series::Value(x) = s {
                *x = v
            }
        })
    }

    fn add(&self, labels: &[&str], v: f64) {
        self.with(labels, |s| {
            if let Series::Value(x) = s {
                *x += v
            }
        })
    }

    fn clear(&self) {
        self.series
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }

    fn render(&self, out: &mut String) {
        let _ = writeln!(out, "# HELP {} {}", self.name, escape_help(self.help));
        let _ = writeln!(out, "# TYPE {} {}", self.name, self.kind.name());
        let series = self.series.lock().unwrap_or_else(|e| e.into_inner());
        for (values, s) in series.iter() {
            match s {
                Series::Value(v) => {
                    let _ = writeln!(
                        out,
                        "{}{} {}",
                        self.name,
                        label_set(self.labels, values, None),
                        number(*v)
                    );
                }
                Series::Histogram {
                    buckets,
                    sum,
                    count,
                } => {
                    let Kind::Histogram(bounds) = self.kind else {
                        continue;
                    };
                    let mut cumulative = 0;
                    for (i, n) in buckets.iter().enumerate() {
                        cumulative += n;
                        let le = bounds.get(i).map_or("+Inf".to_string(), |b| number(*b));
                        let _ = writeln!(
                            out,
                            "{}_bucket{} {cumulative}",
                            self.name,
                            label_set(self.labels, values, Some(&le))
                        );
                    }
                    let labels = label_set(self.labels, values, None);
                    let _ = writeln!(out, "{}_sum{labels} {}", self.name, number(*sum));
                    let _ = writeln!(out, "{}_count{labels} {count}", self.name);
                }
            }
        }
    }
}

/// `{a="x",b="y"}` (with `le` last when given), or nothing without labels.
fn label_set(names: &[&str], values: &[String], le: Option<&str>) -> String {
    let mut pairs: Vec<String> = names
        .iter()
        .zip(values)
        .map(|(n, v)| format!("{n}=\"{}\"", escape_label(v)))
        .collect();
    if let Some(le) = le {
        pairs.push(format!("le=\"{le}\""));
    }
    match pairs.is_empty() {
        true => String::new(),
        false => format!("{{{}}}", pairs.join(",")),
    }
}

fn escape_label(v: &str) -> String {
    v.replace('\\', r"\\")
        .replace('"', "\\\"")
        .replace('\n', r"\n")
}

fn escape_help(v: &str) -> String {
    v.replace('\\', r"\\").replace('\n', r"\n")
}

/// A sample value as the format spells it: integers without a fraction, `+Inf`, `-Inf`, `NaN`.
fn number(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else {
        format!("{v}")
    }
}

/// A counter family; `set` is for counts kept elsewhere and read by a collector.
#[derive(Clone)]
pub struct Counter(Arc<Family>);

impl Counter {
    pub fn inc(&self, labels: &[&str]) {
        self.0.add(labels, 1.0)
    }

    pub fn set(&self, labels: &[&str], v: f64) {
        self.0.set(labels, v)
    }
}

#[derive(Clone)]
pub struct Gauge(Arc<Family>);

impl Gauge {
    pub fn set(&self, labels: &[&str], v: f64) {
        self.0.set(labels, v)
    }

    /// Drops every series (before a collector sets those that exist now).
    pub fn clear(&self) {
        self.0.clear()
    }
}

#[derive(Clone)]
pub struct Histogram(Arc<Family>);

impl Histogram {
    pub fn observe(&self, labels: &[&str], v: f64) {
        let Kind::Histogram(bounds) = self.0.kind else {
            return;
        };
        self.0.with(labels, |s| {
            if let Series::Histogram {
                buckets,
                sum,
                count,
            } = s
            {
                let i = bounds.iter().position(|b| v <= *b).unwrap_or(bounds.len());
                buckets[i] += 1;
                *sum += v;
                *count += 1;
            }
        })
    }
}

type Collector = Box<dyn Fn() + Send + Sync>;

#[derive(Default)]
pub struct Registry {
    families: Mutex<Vec<Arc<Family>>>,
    collectors: Mutex<Vec<Collector>>,
}

impl Registry {
    pub fn new() -> Registry {
        Registry::default()
    }

    fn family(
        &self,
        name: &'static str,
        help: &'static str,
        kind: Kind,
        labels: &'static [&'static str],
    ) -> Arc<Family> {
        let f = Arc::new(Family {
            name,
            help,
            kind,
            labels,
            series: Mutex::new(BTreeMap::new()),
        });
        self.families
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(f.clone());
        f
    }

    pub fn counter(
        &self,
        name: &'static str,
        help: &'static str,
        labels: &'static [&'static str],
    ) -> Counter {
        Counter(self.family(name, help, Kind::Counter, labels))
    }

    pub fn gauge(
        &self,
        name: &'static str,
        help: &'static str,
        labels: &'static [&'static str],
    ) -> Gauge {
        Gauge(self.family(name, help, Kind::Gauge, labels))
    }

    /// `buckets`: upper bounds, ascending; `+Inf` is implied.
    pub fn histogram(
        &self,
        name: &'static str,
        help: &'static str,
        labels: &'static [&'static str],
        buckets: &'static [f64],
    ) -> Histogram {
        Histogram(self.family(name, help, Kind::Histogram(buckets), labels))
    }

    /// `f` runs before every rendering: it sets what is read rather than counted.
    pub fn collect(&self, f: impl Fn() + Send + Sync + 'static) {
        self.collectors
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(Box::new(f));
    }

    /// The text exposition format 0.0.4.
    pub fn render(&self) -> String {
        for c in self
            .collectors
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
        {
            c();
        }
        let mut out = String::new();
        for f in self
            .families
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
        {
            f.render(&mut out);
        }
        out
    }
}

/// A request head larger than this is refused.
const MAX_HEAD: usize = 8 * 1024;
/// A client that does not finish its request head (or read the answer) within this is dropped.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(10);

/// Binds the metrics listener (`host:port`).
pub async fn bind(address: &str) -> std::io::Result<TcpListener> {
    TcpListener::bind(address).await
}

/// Serves `GET /metrics` on `listener` until the task is dropped: one request per connection,
/// 200 with the rendering for `/metrics`, 404 for any other path, 405 for another method, then
/// the connection is closed. Rendering runs on the blocking pool (collectors may read a store).
pub async fn serve(listener: TcpListener, registry: Arc<Registry>) {
    loop {
        match listener.accept().await {
            Ok((sock, _)) => {
                let registry = registry.clone();
                tokio::spawn(async move {
                    let _ = tokio::time::timeout(CLIENT_TIMEOUT, answer(sock, registry)).await;
                });
            }
            Err(e) => {
                // EMFILE and the like: wait for descriptors to come back.
                log::warn!("metrics: accept: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

async fn answer(mut sock: TcpStream, registry: Arc<Registry>) -> std::io::Result<()> {
    let mut head = Vec::with_capacity(512);
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && !head.windows(2).any(|w| w == b"\n\n") {
        if head.len() > MAX_HEAD {
            return respond(&mut sock, "431 Request Header Fields Too Large", "").await;
        }
        let n = sock.read(&mut buf).await?;
        if n == 0 {
            return Ok(());
        }
        head.extend_from_slice(&buf[..n]);
    }
    let line = head.split(|b| *b == b'\n').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let mut parts = line.split_whitespace();
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let path = target.split('?').next().unwrap_or("");
    match (method, path) {
        ("GET", "/metrics") => {
            let body = tokio::task::spawn_blocking(move || registry.render())
                .await
                .map_err(std::io::Error::other)?;
            respond(&mut sock, "200 OK", &body).await
        }
        ("GET", _) => respond(&mut sock, "404 Not Found", "not found\n").await,
        _ => respond(&mut sock, "405 Method Not Allowed", "").await,
    }
}

async fn respond(sock: &mut TcpStream, status: &str, body: &str) -> std::io::Result<()> {
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {CONTENT_TYPE}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    sock.write_all(head.as_bytes()).await?;
    sock.write_all(body.as_bytes()).await?;
    sock.shutdown().await
}

/// gRPC status codes by number, as their names are spelled in the `code` label.
const CODES: [&str; 17] = [
    "OK",
    "Canceled",
    "Unknown",
    "InvalidArgument",
    "DeadlineExceeded",
    "NotFound",
    "AlreadyExists",
    "PermissionDenied",
    "ResourceExhausted",
    "FailedPrecondition",
    "Aborted",
    "OutOfRange",
    "Unimplemented",
    "Internal",
    "Unavailable",
    "DataLoss",
    "Unauthenticated",
];

/// The code of a gRPC response from its head: an error is in the headers (tonic's
/// trailers-only answer), a success has none there (its status comes in the trailers).
fn grpc_code(headers: &http::HeaderMap) -> &'static str {
    match headers.get("grpc-status") {
        None => "OK",
        Some(v) => v
            .to_str()
            .ok()
            .and_then(|v| v.parse::<usize>().ok())
            .and_then(|n| CODES.get(n).copied())
            .unwrap_or("Unknown"),
    }
}

/// A daemon's metrics as its `main` wires them: the registry [`serve`] renders, and the layer
/// its tonic server counts requests with.
pub struct DaemonMetrics {
    pub registry: Arc<Registry>,
    pub grpc: GrpcLayer,
}

/// A tower layer for a tonic server: counts every request in `requests{method,code}` and
/// times it in `seconds{method}`. `method` is the last segment of the request path when it is
/// one of `methods`, else `unknown` (the label's values stay bounded whatever clients send).
/// A request whose caller went away before the answer counts as `Canceled`. A streaming
/// response counts when its head is ready: an error in the middle of a stream is not seen.
#[derive(Clone)]
pub struct GrpcLayer {
    requests: Counter,
    seconds: Histogram,
    methods: &'static [&'static str],
}

impl GrpcLayer {
    pub fn new(requests: Counter, seconds: Histogram, methods: &'static [&'static str]) -> Self {
        GrpcLayer {
            requests,
            seconds,
            methods,
        }
    }

    fn method(&self, path: &str) -> &'static str {
        let last = path.rsplit('/').next().unwrap_or("");
        self.methods
            .iter()
            .find(|m| **m == last)
            .copied()
            .unwrap_or("unknown")
    }
}

impl<S> tower_layer::Layer<S> for GrpcLayer {
    type Service = GrpcMetrics<S>;

    fn layer(&self, inner: S) -> GrpcMetrics<S> {
        GrpcMetrics {
            inner,
            layer: self.clone(),
        }
    }
}

#[derive(Clone)]
pub struct GrpcMetrics<S> {
    inner: S,
    layer: GrpcLayer,
}

/// Records its request once: with the answer's code, or as `Canceled` when dropped first.
struct Pending {
    layer: GrpcLayer,
    method: &'static str,
    start: Instant,
    recorded: bool,
}

impl Pending {
    fn record(&mut self, code: &'static str) {
        if std::mem::replace(&mut self.recorded, true) {
            return;
        }
        self.layer.requests.inc(&[self.method, code]);
        let secs = self.start.elapsed().as_secs_f64();
        self.layer.seconds.observe(&[self.method], secs);
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        self.record("Canceled");
    }
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S, B, R> tower_service::Service<http::Request<B>> for GrpcMetrics<S>
where
    S: tower_service::Service<http::Request<B>, Response = http::Response<R>>,
    S::Future: Send + 'static,
    S::Error: 'static,
    R: 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<Result<S::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let mut pending = Pending {
            method: self.layer.method(req.uri().path()),
            layer: self.layer.clone(),
            start: Instant::now(),
            recorded: false,
        };
        let fut = self.inner.call(req);
        Box::pin(async move {
            let r = fut.await;
            pending.record(match &r {
                Ok(resp) => grpc_code(resp.headers()),
                Err(_) => "Unknown",
            });
            r
        })
    }
}

/// Where the daemons serve their metrics: parsed from the configured `host:port` (empty: off).
pub fn parse_address(s: &str) -> Result<Option<SocketAddr>, String> {
    match s.trim() {
        "" => Ok(None),
        a => a
            .parse()
            .map(Some)
            .map_err(|_| format!("{a:?} is not an address:port")),
    }
}

/// The samples of a text-format rendering, keyed by series as printed (`name{a="x"}`), for
/// checking what was served. Every line must be a `# HELP`/`# TYPE` comment or a sample
/// `name[{label="value",…}] value`; the first other line is the error.
pub fn parse(text: &str) -> Result<BTreeMap<String, f64>, String> {
    fn is_name(s: &str) -> bool {
        let mut c = s.chars();
        c.next()
            .is_some_and(|f| f.is_ascii_alphabetic() || f == '_' || f == ':')
            && c.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
    }
    /// The length of `{…}` at the start of `s`, its label values well quoted and escaped.
    fn labels_len(s: &str) -> Option<usize> {
        let b = s.as_bytes();
        let mut i = 1;
        loop {
            if b.get(i) == Some(&b'}') {
                return Some(i + 1);
            }
            let eq = i + s[i..].find('=')?;
            if !is_name(&s[i..eq]) || b.get(eq + 1) != Some(&b'"') {
                return None;
            }
            i = eq + 2;
            loop {
                match b.get(i)? {
                    b'\\' => match b.get(i + 1)? {
                        b'\\' | b'"' | b'n' => i += 2,
                        _ => return None,
                    },
                    b'"' => break,
                    b'\n' => return None,
                    _ => i += 1,
                }
            }
            i += 1;
            match b.get(i)? {
                b',' => i += 1,
                b'}' => {}
                _ => return None,
            }
        }
    }
    let mut out = BTreeMap::new();
    for (n, line) in text.lines().enumerate() {
        let bad = || format!("line {}: {line:?}", n + 1);
        if let Some(c) = line.strip_prefix("# ") {
            let mut w = c.splitn(3, ' ');
            let (kind, name) = (w.next(), w.next());
            if !matches!(kind, Some("HELP" | "TYPE")) || !name.is_some_and(is_name) {
                return Err(bad());
            }
            continue;
        }
        let name_end = line.find(['{', ' ']).ok_or_else(bad)?;
        let key_end = match line[name_end..].starts_with('{') {
            true => name_end + labels_len(&line[name_end..]).ok_or_else(bad)?,
            false => name_end,
        };
        let value = line[key_end..].strip_prefix(' ').ok_or_else(bad)?;
        let value = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            v => v.parse::<f64>().map_err(|_| bad())?,
        };
        if !is_name(&line[..name_end]) {
            return Err(bad());
        }
        out.insert(line[..key_end].to_string(), value);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registry() -> (Registry, Counter, Gauge, Histogram) {
        let r = Registry::new();
        let c = r.counter("x_requests_total", "Requests.", &["method", "code"]);
        let g = r.gauge("x_things", "Things\\by \"kind\"\nnow.", &["kind"]);
        let h = r.histogram("x_seconds", "Latency.", &["method"], &[0.1, 1.0]);
        (r, c, g, h)
    }

    #[test]
    fn renders_the_text_format() {
        let (r, c, g, h) = registry();
        let plain = r.gauge("x_bytes", "Size.", &[]);
        c.inc(&["Create", "OK"]);
        c.inc(&["Create", "OK"]);
        c.inc(&["Create", "NotFound"]);
        g.set(&["a\"b\\c\nd"], 2.0);
        h.observe(&["Create"], 0.0625);
        h.observe(&["Create"], 0.0625);
        // A bound is inclusive.
        h.observe(&["Create"], 1.0);
        h.observe(&["Create"], 30.0);
        plain.set(&[], 12345.0);
        let text = r.render();
        let expected = r#"# HELP x_requests_total Requests.
# TYPE x_requests_total counter
x_requests_total{method="Create",code="NotFound"} 1
x_requests_total{method="Create",code="OK"} 2
# HELP x_things Things\\by "kind"\nnow.
# TYPE x_things gauge
x_things{kind="a\"b\\c\nd"} 2
# HELP x_seconds Latency.
# TYPE x_seconds histogram
x_seconds_bucket{method="Create",le="0.1"} 2
x_seconds_bucket{method="Create",le="1"} 3
x_seconds_bucket{method="Create",le="+Inf"} 4
x_seconds_sum{method="Create"} 31.125
x_seconds_count{method="Create"} 4
# HELP x_bytes Size.
# TYPE x_bytes gauge
x_bytes 12345
"#;
        assert_eq!(text, expected);
    }

    #[test]
    fn what_is_rendered_parses() {
        let (r, c, g, h) = registry();
        c.inc(&["Create", "OK"]);
        g.set(&["a\"b\\c\nd,e=}"], 2.0);
        h.observe(&["Create"], 0.5);
        let samples = parse(&r.render()).unwrap();
        assert_eq!(
            samples["x_requests_total{method=\"Create\",code=\"OK\"}"],
            1.0
        );
        assert_eq!(samples["x_things{kind=\"a\\\"b\\\\c\\nd,e=}\"}"], 2.0);
        assert_eq!(
            samples["x_seconds_bucket{method=\"Create\",le=\"+Inf\"}"],
            1.0
        );
        assert_eq!(samples["x_seconds_count{method=\"Create\"}"], 1.0);
        assert_eq!(samples.len(), 7);
        for bad in [
            "x 1 2",
            "x{a=\"1\"}1",
            "x{a=1} 1",
            "x{a=\"1\" 1",
            "1x 1",
            "x one",
            "# NOTE x",
            "x{a=\"\\q\"} 1",
        ] {
            assert!(parse(bad).is_err(), "{bad:?} parsed");
        }
        assert_eq!(parse("x +Inf\ny{} 0.5").unwrap().len(), 2);
    }

    #[test]
    fn numbers_as_the_format_spells_them() {
        assert_eq!(number(1.0), "1");
        assert_eq!(number(0.005), "0.005");
        assert_eq!(number(-2.5), "-2.5");
        assert_eq!(number(f64::INFINITY), "+Inf");
        assert_eq!(number(f64::NEG_INFINITY), "-Inf");
        assert_eq!(number(f64::NAN), "NaN");
        assert_eq!(number(1e15), "1000000000000000");
    }

    #[test]
    fn collectors_run_before_rendering_and_clear_drops_series() {
        let (r, _, g, _) = registry();
        let n = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let (g2, n2) = (g.clone(), n.clone());
        r.collect(move || {
            g2.clear();
            let v = n2.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            g2.set(&[if v == 0 { "first" } else { "second" }], v as f64);
        });
        assert!(r.render().contains("x_things{kind=\"first\"} 0\n"));
        let text = r.render();
        assert!(text.contains("x_things{kind=\"second\"} 1\n"), "{text}");
        assert!(!text.contains("first"), "{text}");
    }

    #[test]
    #[should_panic(expected = "labels")]
    fn wrong_label_count_is_a_bug() {
        let (_, c, _, _) = registry();
        c.inc(&["Create"]);
    }

    #[test]
    fn grpc_codes_and_methods() {
        let mut h = http::HeaderMap::new();
        assert_eq!(grpc_code(&h), "OK");
        h.insert("grpc-status", "5".parse().unwrap());
        assert_eq!(grpc_code(&h), "NotFound");
        h.insert("grpc-status", "99".parse().unwrap());
        assert_eq!(grpc_code(&h), "Unknown");
        let (_, c, _, hist) = registry();
        let l = GrpcLayer::new(c, hist, &["Create", "Start"]);
        assert_eq!(
            l.method("/containerd.services.sandbox.v1.Controller/Start"),
            "Start"
        );
        assert_eq!(l.method("/x.Y/Nope"), "unknown");
        assert_eq!(l.method(""), "unknown");
    }

    /// An inner service answering with `grpc-status` `status` in its head (None: a success).
    #[derive(Clone)]
    struct Answer(Option<&'static str>);

    impl tower_service::Service<http::Request<()>> for Answer {
        type Response = http::Response<()>;
        type Error = std::convert::Infallible;
        type Future = BoxFuture<Result<http::Response<()>, Self::Error>>;

        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, _: http::Request<()>) -> Self::Future {
            let mut r = http::Response::new(());
            if let Some(s) = self.0 {
                r.headers_mut().insert("grpc-status", s.parse().unwrap());
            }
            Box::pin(async move {
                if r.headers().get("grpc-status").is_some_and(|s| s == "1") {
                    std::future::pending::<()>().await;
                }
                Ok(r)
            })
        }
    }

    #[tokio::test]
    async fn the_layer_counts_each_request_once_with_its_code() {
        use tower_layer::Layer;
        use tower_service::Service;
        let (r, c, _, h) = registry();
        let l = GrpcLayer::new(c, h, &["Create", "Start"]);
        let call = |status: Option<&'static str>, path: &str| {
            let mut svc = l.layer(Answer(status));
            svc.call(http::Request::get(path).body(()).unwrap())
        };
        call(None, "/s.S/Create").await.unwrap();
        call(None, "/s.S/Create").await.unwrap();
        call(Some("6"), "/s.S/Create").await.unwrap();
        call(Some("12"), "/s.S/Other").await.unwrap();
        // The caller goes away before the answer.
        let hung = call(Some("1"), "/s.S/Start");
        assert!(tokio::time::timeout(Duration::from_millis(10), hung)
            .await
            .is_err());
        let text = r.render();
        for line in [
            "x_requests_total{method=\"Create\",code=\"AlreadyExists\"} 1\n",
            "x_requests_total{method=\"Create\",code=\"OK\"} 2\n",
            "x_requests_total{method=\"Start\",code=\"Canceled\"} 1\n",
            "x_requests_total{method=\"unknown\",code=\"Unimplemented\"} 1\n",
            "x_seconds_count{method=\"Create\"} 3\n",
            "x_seconds_count{method=\"Start\"} 1\n",
        ] {
            assert!(text.contains(line), "{line} not in\n{text}");
        }
    }

    #[test]
    fn addresses() {
        assert_eq!(parse_address("").unwrap(), None);
        assert_eq!(
            parse_address("127.0.0.1:9490").unwrap(),
            Some("127.0.0.1:9490".parse().unwrap())
        );
        assert!(parse_address("[::1]:9490").unwrap().is_some());
        assert!(parse_address("localhost").is_err());
    }

    async fn try_get(addr: SocketAddr, request: &str) -> std::io::Result<String> {
        let mut s = TcpStream::connect(addr).await?;
        s.write_all(request.as_bytes()).await?;
        let mut out = String::new();
        s.read_to_string(&mut out).await?;
        Ok(out)
    }

    async fn get(addr: SocketAddr, request: &str) -> String {
        try_get(addr, request).await.unwrap()
    }

    #[tokio::test]
    async fn serves_metrics_and_nothing_else() {
        let (r, c, _, _) = registry();
        c.inc(&["Create", "OK"]);
        let l = bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let server = tokio::spawn(serve(l, Arc::new(r)));
        let ok = get(addr, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").await;
        let (head, body) = ok.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
        assert!(
            head.contains("\r\nContent-Type: text/plain; version=0.0.4\r\n"),
            "{head}"
        );
        assert!(head.contains(&format!("\r\nContent-Length: {}\r\n", body.len())));
        assert!(body.contains("x_requests_total{method=\"Create\",code=\"OK\"} 1\n"));
        let q = get(addr, "GET /metrics?x=1 HTTP/1.0\r\n\r\n").await;
        assert!(q.starts_with("HTTP/1.1 200 OK\r\n"), "{q}");
        let nf = get(addr, "GET / HTTP/1.1\r\n\r\n").await;
        assert!(nf.starts_with("HTTP/1.1 404 Not Found\r\n"), "{nf}");
        let post = get(addr, "POST /metrics HTTP/1.1\r\n\r\n").await;
        assert!(post.starts_with("HTTP/1.1 405 "), "{post}");
        let huge = format!(
            "GET /metrics HTTP/1.1\r\nX: {}\r\n",
            "a".repeat(MAX_HEAD + 10)
        );
        // Answered and closed (the unread rest of the request may reset the connection first).
        if let Ok(a) = try_get(addr, &huge).await {
            assert!(a.starts_with("HTTP/1.1 431 "), "{a}");
        }
        server.abort();
    }
}

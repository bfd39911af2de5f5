//! Every log line a request causes carries the ids it concerns, as logrus fields containerd's
//! log keeps (`id="…" exec_id="…"`): the request's own lines, and those of the tasks it leaves
//! behind (output copies, exit watchers), which are spawned through [`spawn`].
//!
//! Invariant: a task started for a request runs inside that request's scope; lines from tasks
//! that belong to the whole pod (the reaper, events, the server) carry none.

use std::{future::Future, str::FromStr};

use log::{Log, Metadata, Record};
use tokio::task::JoinHandle;

/// The container (or sandbox) and exec a request concerns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ids {
    pub id: String,
    pub exec_id: String,
}

impl Ids {
    pub fn of(id: &str, exec_id: &str) -> Option<Ids> {
        (!id.is_empty()).then(|| Ids {
            id: id.to_string(),
            exec_id: exec_id.to_string(),
        })
    }
}

tokio::task_local! {
    static IDS: Option<Ids>;
}

/// The ids of the request the current task serves.
pub fn current() -> Option<Ids> {
    IDS.try_with(Clone::clone).ok().flatten()
}

/// Runs `f` as part of the request concerning `ids`.
pub async fn scope<F: Future>(ids: Option<Ids>, f: F) -> F::Output {
    IDS.scope(ids, f).await
}

/// `tokio::spawn`, in the scope of the current request.
pub fn spawn<F>(f: F) -> JoinHandle<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    tokio::spawn(IDS.scope(current(), f))
}

/// containerd-shim's FIFO logger, with the current request's ids added to each line.
struct ScopedLogger<L> {
    inner: L,
}

impl<L: Log> Log for ScopedLogger<L> {
    fn enabled(&self, metadata: &Metadata) -> bool {
        self.inner.enabled(metadata)
    }

    fn log(&self, record: &Record) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let Some(ids) = current() else {
            return self.inner.log(record);
        };
        let fields = [("id", ids.id.as_str()), ("exec_id", ids.exec_id.as_str())];
        let n = if ids.exec_id.is_empty() { 1 } else { 2 };
        let fields = &fields[..n];
        self.inner.log(
            &Record::builder()
                .args(*record.args())
                .metadata(record.metadata().clone())
                .module_path(record.module_path())
                .file(record.file())
                .line(record.line())
                .key_values(&fields)
                .build(),
        );
    }

    fn flush(&self) {
        self.inner.flush()
    }
}

/// As `containerd_shim::logger::init`: the log FIFO containerd opened for this shim, at the
/// level `RUST_LOG` names (info by default, debug at least with `-debug`).
pub fn init(debug: bool, namespace: &str, id: &str) -> std::io::Result<()> {
    let inner = containerd_shim::logger::FifoLogger::new(namespace, id)?;
    let level = std::env::var(containerd_shim::logger::LOG_ENV)
        .ok()
        .and_then(|l| log::LevelFilter::from_str(&l).ok())
        .unwrap_or(log::LevelFilter::Info);
    let level = match debug {
        true => level.max(log::LevelFilter::Debug),
        false => level,
    };
    log::set_boxed_logger(Box::new(ScopedLogger { inner }))
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    log::set_max_level(level);
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use log::kv::{Key, Value, VisitSource};

    use super::*;

    /// A line as the inner logger saw it: its message and fields.
    type Line = (String, Vec<(String, String)>);

    #[derive(Default)]
    struct Seen(Mutex<Vec<Line>>);

    struct Fields(Vec<(String, String)>);

    impl<'kvs> VisitSource<'kvs> for Fields {
        fn visit_pair(&mut self, k: Key<'kvs>, v: Value<'kvs>) -> Result<(), log::kv::Error> {
            self.0.push((k.to_string(), v.to_string()));
            Ok(())
        }
    }

    impl Log for &Seen {
        fn enabled(&self, _: &Metadata) -> bool {
            true
        }
        fn log(&self, record: &Record) {
            let mut f = Fields(Vec::new());
            record.key_values().visit(&mut f).unwrap();
            self.0
                .lock()
                .unwrap()
                .push((record.args().to_string(), f.0));
        }
        fn flush(&self) {}
    }

    fn line(logger: &ScopedLogger<&Seen>, msg: &str) {
        logger.log(
            &Record::builder()
                .args(format_args!("{msg}"))
                .level(log::Level::Info)
                .build(),
        );
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_requests_lines_and_its_tasks_lines_carry_its_ids() {
        let seen = Seen::default();
        let logger = ScopedLogger { inner: &seen };
        line(&logger, "pod-wide");
        let spawned = scope(Ids::of("c1", "e1"), async {
            line(&logger, "in the request");
            // A task the request leaves behind keeps its ids.
            let task = spawn(async { current() });
            Some(task)
        })
        .await;
        assert_eq!(spawned.unwrap().await.unwrap(), Ids::of("c1", "e1"));
        scope(Ids::of("c2", ""), async { line(&logger, "init") }).await;
        let pair = |k: &str, v: &str| (k.to_string(), v.to_string());
        assert_eq!(
            *seen.0.lock().unwrap(),
            vec![
                ("pod-wide".to_string(), vec![]),
                (
                    "in the request".to_string(),
                    vec![pair("id", "c1"), pair("exec_id", "e1")]
                ),
                ("init".to_string(), vec![pair("id", "c2")]),
            ]
        );
    }
}

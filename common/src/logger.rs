//! The daemons' log: one line per record on stderr (journald adds the time), prefixed with the
//! daemon's name and the level, then the subject of the work the line belongs to (`sandbox
//! <id>`, `snapshot "<key>"`) when it runs inside [`scope`] or [`sync_scope`].
//!
//! Invariant: work done for one sandbox or snapshot (a request, or a background step about one)
//! runs inside its subject's scope, and its messages do not name the subject again.

use std::future::Future;

tokio::task_local! {
    static SUBJECT: String;
}

/// Runs `f` as work about `subject`: its log lines carry it, across every `.await`.
pub async fn scope<F: Future>(subject: String, f: F) -> F::Output {
    SUBJECT.scope(subject, f).await
}

/// [`scope`] for synchronous work (a blocking-pool closure).
pub fn sync_scope<R>(subject: String, f: impl FnOnce() -> R) -> R {
    SUBJECT.sync_scope(subject, f)
}

/// The subject of the work the caller runs in, if any (to carry it into spawned tasks).
pub fn subject() -> Option<String> {
    SUBJECT.try_with(Clone::clone).ok()
}

/// `name LEVEL subject: message`, or `name LEVEL message` outside any scope.
fn line(name: &str, r: &log::Record, subject: Option<&str>) -> String {
    match subject {
        Some(s) => format!("{name} {} {s}: {}", r.level(), r.args()),
        None => format!("{name} {} {}", r.level(), r.args()),
    }
}

struct StderrLogger {
    name: &'static str,
}

impl log::Log for StderrLogger {
    fn enabled(&self, m: &log::Metadata) -> bool {
        m.level() <= log::max_level()
    }
    fn log(&self, r: &log::Record) {
        if self.enabled(r.metadata()) {
            let l = SUBJECT
                .try_with(|s| line(self.name, r, Some(s)))
                .unwrap_or_else(|_| line(self.name, r, None));
            eprintln!("{l}");
        }
    }
    fn flush(&self) {}
}

/// Logs as `name` from now on, at `level` and above (called once, at start-up).
pub fn init(name: &'static str, level: log::LevelFilter) {
    let logger: &'static StderrLogger = Box::leak(Box::new(StderrLogger { name }));
    let _ = log::set_logger(logger);
    log::set_max_level(level);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record_line(subject: Option<&str>) -> String {
        line(
            "podshim-sandboxer",
            &log::Record::builder()
                .level(log::Level::Warn)
                .args(format_args!("tearing down"))
                .build(),
            subject,
        )
    }

    #[test]
    fn a_line_names_the_subject_of_its_scope() {
        assert_eq!(
            record_line(Some("sandbox abc")),
            "podshim-sandboxer WARN sandbox abc: tearing down"
        );
        assert_eq!(record_line(None), "podshim-sandboxer WARN tearing down");
    }

    #[tokio::test]
    async fn the_subject_holds_across_awaits_and_in_blocking_work() {
        assert_eq!(subject(), None);
        let s = scope("sandbox a".into(), async {
            tokio::task::yield_now().await;
            subject()
        })
        .await;
        assert_eq!(s.as_deref(), Some("sandbox a"));
        let s = tokio::task::spawn_blocking(|| sync_scope("snapshot \"k\"".into(), subject))
            .await
            .unwrap();
        assert_eq!(s.as_deref(), Some("snapshot \"k\""));
    }
}

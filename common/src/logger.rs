//! The daemons' log: one line per record on stderr (journald adds the time), prefixed with the
//! daemon's name and the level.

struct StderrLogger {
    name: &'static str,
}

impl log::Log for StderrLogger {
    fn enabled(&self, m: &log::Metadata) -> bool {
        m.level() <= log::max_level()
    }
    fn log(&self, r: &log::Record) {
        if self.enabled(r.metadata()) {
            eprintln!("{} {} {}", self.name, r.level(), r.args());
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

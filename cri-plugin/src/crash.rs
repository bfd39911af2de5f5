//! Test-only crash points: `PODSHIM_SANDBOXER_CRASH=<point>` makes the daemon SIGKILL itself the
//! first time it reaches `<point>`, the same as `kill -9` from outside at that instant. Tests
//! use them to check that every step of Create, Start and teardown is recoverable: what the store
//! says on restart is always undone or finished.

use std::sync::OnceLock;

pub const ENV: &str = "PODSHIM_SANDBOXER_CRASH";

/// After a sandbox's `Creating` record is written, before its shim starts.
pub const CREATE_RECORDED: &str = "create.recorded";
/// After the shim accepted CreateSandbox and `Created` is written, before Create answers.
pub const CREATE_ANSWERING: &str = "create.answering";
/// After the shim started the sandbox, before `Started` is written.
pub const START_STARTED: &str = "start.started";
/// After the sandbox's shim is gone, before its record is removed.
pub const TEARDOWN_SHIM_GONE: &str = "teardown.shim_gone";

pub const POINTS: [&str; 4] = [
    CREATE_RECORDED,
    CREATE_ANSWERING,
    START_STARTED,
    TEARDOWN_SHIM_GONE,
];

pub fn at(point: &str) {
    static ARMED: OnceLock<Option<String>> = OnceLock::new();
    if ARMED.get_or_init(|| std::env::var(ENV).ok()).as_deref() == Some(point) {
        log::warn!("crash point {point}: SIGKILL");
        let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGKILL);
    }
}

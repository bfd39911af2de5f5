//! End-to-end tests: each case runs against a private containerd 2.x, once with containerd's own
//! runc shim (handler `runc`, the reference) and once with podshim (handler `podshim`).
//! Filter by handler with `cargo test -p podshim-integration --test e2e -- ::runc` (or `::podshim`).

mod util;

mod ctr;
mod lifecycle;
mod logs;
mod net;
mod restart;
mod runtime;
mod streaming;

use std::ops::AsyncFnOnce;
use std::time::Duration;

use podshim_integration::{with_timeout, Containerd, Options, HANDLER_PODSHIM, HANDLER_RUNC};

/// Per-case deadline (the whole case, not counting containerd start-up and teardown).
const CASE_TIMEOUT: Duration = Duration::from_secs(150);

async fn run_case<F>(handler: &str, opts: fn(Options) -> Options, case: F)
where
    F: for<'a> AsyncFnOnce(&'a mut Containerd) -> anyhow::Result<()>,
{
    let opts = opts(Options::new(handler));
    let mut c = match Containerd::start(opts).await {
        Ok(c) => c,
        Err(e) => panic!("starting containerd for handler {handler}: {e:#}"),
    };
    let r = with_timeout(CASE_TIMEOUT, case(&mut c)).await;
    c.finish(r).await;
}

/// `e2e!(module::case)` → tests `case::runc` and `case::podshim`;
/// `e2e!(module::case, opts_fn)` with an `fn(Options) -> Options`;
/// `e2e!(podshim_only module::case[, opts_fn])` → only `case::podshim` (requirements that
/// containerd's runc shim does not meet or features only podshim has).
macro_rules! e2e {
    (podshim_only $m:ident :: $case:ident) => { e2e!(podshim_only $m::$case, |o| o); };
    (podshim_only $m:ident :: $case:ident, $opts:expr) => {
        mod $case {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn podshim() {
                super::run_case(super::HANDLER_PODSHIM, $opts, super::$m::$case).await
            }
        }
    };
    ($m:ident :: $case:ident) => { e2e!($m::$case, |o| o); };
    ($m:ident :: $case:ident, $opts:expr) => {
        mod $case {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn runc() {
                super::run_case(super::HANDLER_RUNC, $opts, super::$m::$case).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn podshim() {
                super::run_case(super::HANDLER_PODSHIM, $opts, super::$m::$case).await
            }
        }
    };
}

e2e!(net::pod_ip_reachable);
e2e!(net::two_containers_share_net_ipc);
e2e!(logs::cri_log_format);
e2e!(logs::cri_log_volume);
e2e!(lifecycle::exec_sync);
e2e!(lifecycle::stats);
e2e!(lifecycle::stop_container);
e2e!(lifecycle::exit_codes);
e2e!(lifecycle::oom_killed);
e2e!(lifecycle::pod_cleanup);
e2e!(lifecycle::one_shim_per_pod);
e2e!(restart::containerd_restart);
e2e!(podshim_only restart::containerd_restart_backlog);
e2e!(ctr::ctr_run);
e2e!(ctr::missing_command);
e2e!(ctr::ctr_bad_input);
e2e!(podshim_only ctr::failing_runtime, super::ctr::failing_runtime_opts);
e2e!(podshim_only runtime::configured_runtime, super::runtime::wrapper_opts);
e2e!(streaming::exec_stream);
e2e!(streaming::attach_stream);
e2e!(streaming::port_forward);

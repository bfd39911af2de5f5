//! End-to-end tests: each case runs against a private containerd 2.x, once with containerd's own
//! runc shim (handler `runc`, the reference), once with podshim in classic mode (handler
//! `podshim`), once with pause-less podshim pods through containerd's `shim` sandboxer (handler
//! `podshim-pauseless`) and once through the podshim-sandboxer daemon (handler
//! `podshim-sandboxer`).
//! Filter by handler: `cargo test -p podshim-integration --test e2e -- ::podshim_pauseless`.
#![deny(unsafe_code)]

mod util;

mod ctr;
mod lifecycle;
mod logs;
mod net;
mod restart;
mod runtime;
mod sandbox;
mod sandboxer;
mod snapshotter;
mod streaming;

use std::ops::AsyncFnOnce;
use std::time::Duration;

use podshim_integration::{with_timeout, Containerd, Options};

/// Per-case deadline (the whole case, not counting containerd start-up and teardown).
const CASE_TIMEOUT: Duration = Duration::from_secs(150);

/// The first containerd release a case can run on. `make e2e` filters out every test whose name
/// ends in `needs_<major>_<minor>` on an older release (`--skip`, reported by the runner as
/// filtered out, never as passed); run directly on an older release, such a test fails here.
type Since = Option<(u32, u32)>;

async fn run_case<F>(handler: &str, since: Since, opts: fn(Options) -> Options, case: F)
where
    F: for<'a> AsyncFnOnce(&'a mut Containerd) -> anyhow::Result<()>,
{
    if let Some((major, minor)) = since {
        let name = std::thread::current()
            .name()
            .unwrap_or_default()
            .to_string();
        assert!(
            name.is_empty() || name == "main" || name.ends_with(&format!("needs_{major}_{minor}")),
            "test {name} needs containerd {major}.{minor}: its name must end in needs_{major}_{minor}"
        );
        let release = podshim_integration::containerd_release().expect("containerd release");
        assert!(
            release.at_least(major, minor),
            "this case needs containerd {major}.{minor} or later (see its e2e! line), the \
             containerd on PATH is {release}; `make e2e` filters it out on such a release"
        );
    }
    let opts = opts(Options::new(handler));
    let mut c = match Containerd::start(opts).await {
        Ok(c) => c,
        Err(e) => panic!("starting containerd for handler {handler}: {e:#}"),
    };
    let r = with_timeout(CASE_TIMEOUT, case(&mut c)).await;
    c.finish(r).await;
}

/// `e2e!(module::case)` → tests `case::runc`, `case::podshim`, `case::podshim_pauseless` and
/// `case::podshim_sandboxer` (every CRI scenario runs against each podshim handler);
/// `e2e!(module::case, opts_fn)` with an `fn(Options) -> Options`;
/// `e2e!(classic module::case)` → only `runc` and `podshim` (`ctr` cases, which involve no CRI
/// sandbox);
/// `e2e!(podshim_handlers module::case)` → every podshim handler, not `runc` (what containerd's
/// runc shim does not reliably do);
/// `e2e!(pauseless_since [2, 3] podshim_pauseless_needs_2_3 module::case)` → every handler, the
/// `podshim_pauseless` test named as given and run only from that containerd release on;
/// `e2e!(podshim_only module::case[, opts_fn])` → only `case::podshim` (requirements that
/// containerd's runc shim does not meet or features only podshim has);
/// `e2e!(pauseless_only module::case[, opts_fn])` → `case::podshim_pauseless` and
/// `case::podshim_sandboxer`;
/// `e2e!(sandboxer_only module::case[, opts_fn])` → only `case::podshim_sandboxer`.
macro_rules! e2e {
    (@one $name:ident $handler:ident $m:ident :: $case:ident, $opts:expr) => {
        e2e!(@since None, $name $handler $m::$case, $opts);
    };
    (@since $since:expr, $name:ident $handler:ident $m:ident :: $case:ident, $opts:expr) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            super::run_case(podshim_integration::$handler, $since, $opts, super::$m::$case).await
        }
    };
    (pauseless_since [$maj:literal, $min:literal] $pname:ident $m:ident :: $case:ident) => {
        mod $case {
            e2e!(@one runc HANDLER_RUNC $m::$case, |o| o);
            e2e!(@one podshim HANDLER_PODSHIM $m::$case, |o| o);
            e2e!(@since Some(($maj, $min)), $pname HANDLER_PAUSELESS $m::$case, |o| o);
            e2e!(@one podshim_sandboxer HANDLER_SANDBOXER $m::$case, |o| o);
        }
    };
    (podshim_only $m:ident :: $case:ident) => { e2e!(podshim_only $m::$case, |o| o); };
    (podshim_only $m:ident :: $case:ident, $opts:expr) => {
        mod $case {
            e2e!(@one podshim HANDLER_PODSHIM $m::$case, $opts);
        }
    };
    (pauseless_only $m:ident :: $case:ident) => { e2e!(pauseless_only $m::$case, |o| o); };
    (pauseless_only $m:ident :: $case:ident, $opts:expr) => {
        mod $case {
            e2e!(@one podshim_pauseless HANDLER_PAUSELESS $m::$case, $opts);
            e2e!(@one podshim_sandboxer HANDLER_SANDBOXER $m::$case, $opts);
        }
    };
    (sandboxer_only $m:ident :: $case:ident) => { e2e!(sandboxer_only $m::$case, |o| o); };
    (sandboxer_only $m:ident :: $case:ident, $opts:expr) => {
        mod $case {
            e2e!(@one podshim_sandboxer HANDLER_SANDBOXER $m::$case, $opts);
        }
    };
    (classic $m:ident :: $case:ident) => {
        mod $case {
            e2e!(@one runc HANDLER_RUNC $m::$case, |o| o);
            e2e!(@one podshim HANDLER_PODSHIM $m::$case, |o| o);
        }
    };
    (podshim_handlers $m:ident :: $case:ident) => {
        mod $case {
            e2e!(@one podshim HANDLER_PODSHIM $m::$case, |o| o);
            e2e!(@one podshim_pauseless HANDLER_PAUSELESS $m::$case, |o| o);
            e2e!(@one podshim_sandboxer HANDLER_SANDBOXER $m::$case, |o| o);
        }
    };
    ($m:ident :: $case:ident) => { e2e!($m::$case, |o| o); };
    ($m:ident :: $case:ident, $opts:expr) => {
        mod $case {
            e2e!(@one runc HANDLER_RUNC $m::$case, $opts);
            e2e!(@one podshim HANDLER_PODSHIM $m::$case, $opts);
            e2e!(@one podshim_pauseless HANDLER_PAUSELESS $m::$case, $opts);
            e2e!(@one podshim_sandboxer HANDLER_SANDBOXER $m::$case, $opts);
        }
    };
}

e2e!(net::pod_ip_reachable);
e2e!(net::two_containers_share_net_ipc);
e2e!(logs::cri_log_format);
e2e!(logs::cri_log_volume);
e2e!(lifecycle::exec_sync);
e2e!(lifecycle::stats);
e2e!(
    lifecycle::list_pod_stats,
    super::lifecycle::with_pause_image
);
e2e!(lifecycle::stop_container);
e2e!(lifecycle::exit_codes);
e2e!(lifecycle::oom_killed);
e2e!(podshim_handlers lifecycle::oom_killed_at_once);
e2e!(lifecycle::pod_cleanup);
e2e!(lifecycle::shim_killed);
e2e!(lifecycle::one_shim_per_pod);
e2e!(restart::containerd_restart);
e2e!(podshim_only restart::containerd_restart_backlog);
e2e!(classic ctr::ctr_run);
e2e!(classic ctr::missing_command);
e2e!(classic ctr::ctr_bad_input);
e2e!(podshim_only ctr::failing_runtime, super::ctr::failing_runtime_opts);
e2e!(podshim_only runtime::configured_runtime, super::runtime::wrapper_opts);
e2e!(podshim_handlers runtime::handler_features);
e2e!(streaming::exec_stream);
e2e!(streaming::attach_stream);
e2e!(streaming::port_forward);
e2e!(sandbox::pod_environment);
e2e!(sandbox::share_process_namespace);
e2e!(sandbox::unknown_sysctl);
e2e!(sandbox::sysctl_refusals);
e2e!(sandbox::security_refusals);
// hostNetwork: through podshim-pauseless only from 2.3 on (containerd#12983, see host_network).
e2e!(pauseless_since [2, 3] podshim_pauseless_needs_2_3 sandbox::host_network_refusals);
e2e!(sandbox::default_sysctls);
e2e!(sandbox::verbose_status);
e2e!(
    sandbox::pause_image_missing,
    super::sandbox::without_pause_image
);
e2e!(
    sandbox::network_setup_fails,
    super::sandbox::cni_plugin_missing
);
e2e!(sandbox::pod_resize);
// containerd < 2.3 dereferences a nil spec for a hostNetwork pod with `sandboxer = "shim"` and
// panics in its own bundle code (containerd#12983, fixed by containerd#13131 in 2.3.0, not
// backported to 2.2): podshim-pauseless runs it from 2.3 on. podshim-sandboxer makes its own
// bundles and runs it on every release.
e2e!(pauseless_since [2, 3] podshim_pauseless_needs_2_3 sandbox::host_network);
e2e!(pauseless_only sandbox::no_pause);
e2e!(podshim_only snapshotter::pull_unpack_run, super::snapshotter::pull_opts);
e2e!(podshim_only snapshotter::stats_imagefs, super::snapshotter::stats_opts);
e2e!(sandboxer_only sandboxer::sandboxer_restart_mid_pod, super::sandboxer::pool_of_two);
e2e!(sandboxer_only sandboxer::sandboxer_warm_pool, super::sandboxer::pool_of_two);

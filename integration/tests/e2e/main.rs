//! End-to-end tests: each case runs against a private containerd 2.x, once with containerd's own
//! runc shim (handler `runc`, the reference), once with podshim in classic mode (handler
//! `podshim`), once with pause-less podshim pods through containerd's `shim` sandboxer (handler
//! `podshim-pauseless`) and once through the podshim-sandboxer daemon (handler
//! `podshim-sandboxer`).
//! Filter by handler: `cargo test -p podshim-integration --test e2e -- ::podshim_pauseless`.
#![deny(unsafe_code)]

mod util;

mod checkpoint;
mod ctr;
mod exec_helper;
mod lifecycle;
mod logs;
mod net;
mod restart;
mod runtime;
mod sandbox;
mod sandboxer;
mod size_limit;
mod snapshotter;
mod streaming;
mod upgrade;
mod userns;

use std::ops::AsyncFnOnce;
use std::time::Duration;

use podshim_integration::{with_timeout, Containerd, Options};

/// Per-case deadline (the whole case, not counting containerd start-up and teardown).
const CASE_TIMEOUT: Duration = Duration::from_secs(150);

/// The handler a test runs against and the first containerd release it needs, read from the
/// test's name: `runc`, `podshim`, `podshim_pauseless` or `podshim_sandboxer`, optionally ending
/// in `_needs_<major>_<minor>`. `make e2e` filters out (`--skip`, reported by the runner as
/// filtered out, never as passed) every test whose name ends in a release newer than the one it
/// runs against; run directly on an older release, such a test fails here with the reason.
fn handler_and_release(test: &str) -> (&'static str, Option<(u32, u32)>) {
    let (handler, since) = match test.split_once("_needs_") {
        None => (test, None),
        Some((handler, release)) => {
            let parsed = release
                .split_once('_')
                .and_then(|(major, minor)| Some((major.parse().ok()?, minor.parse().ok()?)));
            let release =
                parsed.unwrap_or_else(|| panic!("test {test}: not needs_<major>_<minor>"));
            (handler, Some(release))
        }
    };
    let handler = match handler {
        "runc" => podshim_integration::HANDLER_RUNC,
        "podshim" => podshim_integration::HANDLER_PODSHIM,
        "podshim_pauseless" => podshim_integration::HANDLER_PAUSELESS,
        "podshim_sandboxer" => podshim_integration::HANDLER_SANDBOXER,
        other => panic!("test {test}: {other} names no handler"),
    };
    (handler, since)
}

async fn run_case<F>(test: &str, opts: fn(Options) -> Options, case: F)
where
    F: for<'a> AsyncFnOnce(&'a mut Containerd) -> anyhow::Result<()>,
{
    let (handler, since) = handler_and_release(test);
    if let Some((major, minor)) = since {
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

/// `e2e!(module::case [tests...], opts)`: one test `case::<test>` per name in the list, each
/// against the handler (and from the release) its name gives, with containerd's options passed
/// through `opts` (an `fn(Options) -> Options`, optional). Without a list, the case runs against
/// the reference and every podshim handler: `[runc, podshim, podshim_pauseless,
/// podshim_sandboxer]`.
macro_rules! e2e {
    ($m:ident :: $case:ident $(, $opts:expr)?) => {
        e2e!($m::$case [runc, podshim, podshim_pauseless, podshim_sandboxer] $(, $opts)?);
    };
    ($m:ident :: $case:ident [$($test:ident),+ $(,)?] $(, $opts:expr)?) => {
        mod $case {
            fn opts(o: podshim_integration::Options) -> podshim_integration::Options {
                (e2e!(@opts $($opts)?))(o)
            }
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    super::run_case(stringify!($test), opts, super::$m::$case).await
                }
            )+
        }
    };
    (@opts) => { |o| o };
    (@opts $opts:expr) => { $opts };
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
e2e!(lifecycle::oom_killed_at_once [podshim, podshim_pauseless, podshim_sandboxer]);
e2e!(lifecycle::update_container_resources);
e2e!(lifecycle::shim_stays_in_hot_windows [podshim, podshim_pauseless, podshim_sandboxer]);
e2e!(lifecycle::pod_cleanup);
e2e!(lifecycle::shim_killed);
e2e!(lifecycle::shim_killed_beside_a_created_container);
e2e!(lifecycle::shim_killed_after_containerd_restart);
e2e!(lifecycle::shim_let_go_by_containerd[podshim_pauseless]);
e2e!(
    lifecycle::shim_killed_inside_create,
    super::lifecycle::with_held_create
);
// containerd's runc shim leaves a (renamed) bundle in this window on 2.3.4 (README, "Failure
// behaviour"), as in containerd_killed_right_after_start.
e2e!(
    lifecycle::containerd_stopped_inside_create[podshim, podshim_pauseless, podshim_sandboxer],
    super::lifecycle::with_held_create
);
e2e!(lifecycle::one_shim_per_pod);
e2e!(restart::containerd_restart);
e2e!(restart::containerd_restart_backlog[podshim]);
e2e!(restart::exit_while_containerd_down [podshim, podshim_pauseless, podshim_sandboxer]);
// containerd's runc shim leaves a bundle in this window on 2.3.4 (README, "Failure behaviour").
e2e!(restart::containerd_killed_right_after_start [podshim, podshim_pauseless, podshim_sandboxer]);
e2e!(ctr::ctr_run [runc, podshim]);
e2e!(ctr::missing_command [runc, podshim]);
e2e!(ctr::ctr_bad_input [runc, podshim]);
e2e!(ctr::ctr_log_uri [runc, podshim]);
e2e!(
    ctr::failing_runtime[podshim],
    super::ctr::failing_runtime_opts
);
e2e!(
    runtime::configured_runtime[podshim],
    super::runtime::wrapper_opts
);
e2e!(
    runtime::runtime_options[podshim, podshim_pauseless, podshim_sandboxer],
    super::runtime::runtime_options_opts
);
e2e!(
    runtime::shim_cgroup[podshim, podshim_pauseless, podshim_sandboxer],
    super::runtime::shim_cgroup_opts
);
// podshim-sandboxer starts its shims itself: containerd's shim manager env is not theirs.
e2e!(
    runtime::sched_core[runc, podshim, podshim_pauseless],
    super::runtime::sched_core_opts
);
e2e!(
    runtime::shim_cgroup_missing[podshim, podshim_pauseless, podshim_sandboxer],
    super::runtime::shim_cgroup_missing_opts
);
e2e!(
    userns::host_users_false_shared_runc,
    super::userns::shared_runc
);
e2e!(
    userns::host_users_false_host_network_shared_runc[
        runc_needs_2_3,
        podshim_needs_2_3,
        podshim_pauseless_needs_2_3,
        podshim_sandboxer_needs_2_3
    ],
    super::userns::shared_runc
);
e2e!(
    exec_helper::exec_helper_matches_runc_shared_runc[podshim, podshim_pauseless, podshim_sandboxer],
    super::exec_helper::helper_with_shared_runc
);
e2e!(
    exec_helper::exec_helper_in_userns_shared_runc[podshim, podshim_pauseless, podshim_sandboxer],
    super::exec_helper::helper_with_shared_runc
);
e2e!(
    exec_helper::exec_helper_missing[podshim, podshim_pauseless, podshim_sandboxer],
    super::exec_helper::missing_helper_opts
);
e2e!(checkpoint::checkpoint_container);
e2e!(runtime::handler_features [podshim, podshim_pauseless, podshim_sandboxer]);
e2e!(streaming::exec_stream);
e2e!(streaming::attach_stream);
e2e!(streaming::port_forward);
e2e!(sandbox::pod_environment);
e2e!(sandbox::share_process_namespace);
e2e!(sandbox::unknown_sysctl);
e2e!(sandbox::sysctl_refusals);
e2e!(sandbox::security_refusals);
e2e!(sandbox::userns_refusals);
// hostNetwork: through podshim-pauseless only from 2.3 on (containerd#12983, see host_network).
e2e!(sandbox::host_network_refusals [runc, podshim, podshim_pauseless_needs_2_3, podshim_sandboxer]);
e2e!(sandbox::default_sysctls);
e2e!(sandbox::verbose_status);
e2e!(
    sandbox::pause_image_missing,
    super::sandbox::without_pause_image
);
e2e!(
    sandbox::pause_image_missing_host_network [runc, podshim, podshim_pauseless_needs_2_3, podshim_sandboxer],
    super::sandbox::without_pause_image_short_start_deadline
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
e2e!(sandbox::host_network [runc, podshim, podshim_pauseless_needs_2_3, podshim_sandboxer]);
e2e!(sandbox::no_pause [podshim_pauseless, podshim_sandboxer]);
e2e!(
    snapshotter::pull_unpack_run[podshim],
    super::snapshotter::pull_opts
);
e2e!(snapshotter::stats_imagefs, super::snapshotter::stats_opts);
e2e!(
    size_limit::write_past_the_limit_fails[runc, podshim],
    super::size_limit::btrfs_opts
);
e2e!(
    size_limit::write_past_the_limit_fails_on_ext4[runc, podshim],
    super::size_limit::registered
);
e2e!(
    size_limit::a_malformed_limit_is_refused[runc, podshim],
    super::size_limit::registered
);
e2e!(
    snapshotter::switch_to_podsnap,
    super::snapshotter::switch_opts
);
e2e!(
    sandboxer::sandboxer_restart_mid_pod[podshim_sandboxer],
    super::sandboxer::pool_of_two
);
e2e!(
    sandboxer::sandboxer_warm_pool[podshim_sandboxer],
    super::sandboxer::pool_of_two
);
// A package upgrade under running pods: binaries replaced on disk, daemons restarted.
e2e!(
    upgrade::upgrade_while_pods_run[podshim, podshim_pauseless, podshim_sandboxer],
    super::upgrade::upgrade_opts
);

#[test]
fn test_names_give_the_handler_and_the_release() {
    use podshim_integration::{HANDLER_PAUSELESS, HANDLER_RUNC};
    assert_eq!(handler_and_release("runc"), (HANDLER_RUNC, None));
    assert_eq!(
        handler_and_release("podshim_pauseless_needs_2_3"),
        (HANDLER_PAUSELESS, Some((2, 3)))
    );
    for bad in ["crun", "podshim_needs_2", "podshim_needs_x_y"] {
        assert!(
            std::panic::catch_unwind(|| handler_and_release(bad)).is_err(),
            "{bad}"
        );
    }
}

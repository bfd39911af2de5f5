//! kill -9 the daemon (a real child process) at many points of Prepare/Commit/Remove loops, then
//! check that metadata and directories agree after restart + Cleanup.
#![deny(unsafe_code)]

mod common;

use std::collections::{HashMap, HashSet};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::Daemon;
use containerd_client::services::v1::snapshots::*;
use podshim_snapshotter::{Config, Snapshotter};

type Client = snapshots_client::SnapshotsClient<containerd_client::tonic::transport::Channel>;
const SN: &str = "podsnap";

fn upper_of(m: &[containerd_client::types::Mount]) -> PathBuf {
    let m = &m[0];
    match m.r#type.as_str() {
        "bind" => PathBuf::from(&m.source),
        _ => PathBuf::from(
            m.options
                .iter()
                .find_map(|o| o.strip_prefix("upperdir="))
                .unwrap(),
        ),
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Op {
    Prepare(String),
    Commit(String, String),
    Remove(String),
}

/// Runs Prepare/Commit/View/Remove loops until an RPC fails; returns the op that failed.
async fn workload(c: &mut Client, run: &str, iterations: usize) -> Option<Op> {
    let mut parent = String::new();
    let mut chain: Vec<String> = Vec::new();
    for i in 0..iterations {
        let key = format!("k8s.io/{run}{i}/extract {i}");
        let name = format!("k8s.io/{run}/sha256:{i:064}");
        let r = c
            .prepare(PrepareSnapshotRequest {
                snapshotter: SN.into(),
                key: key.clone(),
                parent: parent.clone(),
                labels: HashMap::new(),
            })
            .await;
        let m = match r {
            Ok(r) => r.into_inner().mounts,
            Err(_) => return Some(Op::Prepare(key)),
        };
        let up = upper_of(&m);
        for f in 0..5 {
            let _ = std::fs::write(up.join(format!("f{f}")), vec![i as u8; 1000 * f]);
        }
        let r = c
            .commit(CommitSnapshotRequest {
                snapshotter: SN.into(),
                name: name.clone(),
                key: key.clone(),
                labels: HashMap::new(),
            })
            .await;
        if r.is_err() {
            return Some(Op::Commit(key, name));
        }
        chain.push(name.clone());
        parent = name.clone();
        let view = format!("k8s.io/{run}{i}/view");
        if c.view(ViewSnapshotRequest {
            snapshotter: SN.into(),
            key: view.clone(),
            parent: parent.clone(),
            labels: HashMap::new(),
        })
        .await
        .is_err()
        {
            return Some(Op::Prepare(view));
        }
        let rm = |k: String| RemoveSnapshotRequest {
            snapshotter: SN.into(),
            key: k,
        };
        if c.remove(rm(view.clone())).await.is_err() {
            return Some(Op::Remove(view));
        }
        if i % 3 == 2 {
            // drop the top of the chain again
            let top = chain.pop().unwrap();
            if c.remove(rm(top.clone())).await.is_err() {
                return Some(Op::Remove(top));
            }
            parent = chain.last().cloned().unwrap_or_default();
        }
    }
    None
}

/// Problems in the root left after restart + Cleanup (empty = consistent).
async fn restart_and_check(root: &Path, sock: &Path) -> (Vec<String>, Vec<String>) {
    let mut d = Daemon::start(root, sock, &[], &[]);
    let mut c = d.client().await.expect("daemon restarts after kill -9");
    c.cleanup(CleanupRequest {
        snapshotter: SN.into(),
    })
    .await
    .unwrap();
    let mut names = Vec::new();
    let mut s = c
        .list(ListSnapshotsRequest {
            snapshotter: SN.into(),
            filters: vec![],
        })
        .await
        .unwrap()
        .into_inner();
    while let Some(m) = s.message().await.unwrap() {
        names.extend(m.info.into_iter().map(|i| i.name));
    }
    d.terminate();
    // What the daemon's Cleanup left.
    (findings_before_cleanup(root), names)
}

/// The daemon on `root`, set to SIGKILL itself at the `n`-th pass through `point`.
fn crashing_daemon(root: &Path, sock: &Path, point: &str, n: u64) -> Daemon {
    eprintln!("crash point {point}:{n}");
    Daemon::start(
        root,
        sock,
        &[("PODSHIM_SNAPSHOTTER_CRASHPOINT", format!("{point}:{n}"))],
        &[],
    )
}

/// What `check` finds in `root` as a crash left it (opened without the start's cleanup).
fn findings_before_cleanup(root: &Path) -> Vec<String> {
    let mut cfg = Config::new(root);
    cfg.cleanup_on_open = false;
    Snapshotter::open(cfg).unwrap().check().unwrap()
}

/// Waits (bounded) for the daemon to die by its crash point.
async fn wait_exit(d: &mut Daemon, point: &str, n: u64) -> std::process::ExitStatus {
    for _ in 0..3000 {
        if let Some(st) = d.child.try_wait().unwrap() {
            return st;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("{point}:{n}: daemon did not crash");
}

const POINTS: &[&str] = &[
    "prepare.before_rename",
    "prepare.before_commit",
    "prepare.after_commit",
    "commit.before_commit",
    "commit.after_commit",
    "remove.before_commit",
    "remove.after_commit",
];

/// Points in the background round that settles Removes (`removals.rs`): the kill lands during
/// whatever request is in flight then.
const ROUND_POINTS: &[&str] = &["remove.after_sync", "remove.after_trash"];

fn spare_names(root: &Path) -> HashSet<std::ffi::OsString> {
    std::fs::read_dir(root.join("spare"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill9_at_every_crash_point() {
    let mut cases = 0;
    for point in POINTS {
        for n in [1u64, 4] {
            let t = tempfile::tempdir().unwrap();
            let root = t.path().join("root");
            let sock = t.path().join("s.sock");
            // A first, uninterrupted run so that crashes hit a non-empty store.
            {
                let mut d = Daemon::start(&root, &sock, &[], &[]);
                let mut c = d.client().await.unwrap();
                assert_eq!(workload(&mut c, "warmup", 2).await, None);
                d.terminate();
            }
            let mut d = crashing_daemon(&root, &sock, point, n);
            let mut c = d.client().await.unwrap();
            let failed =
                tokio::time::timeout(Duration::from_secs(60), workload(&mut c, "crash", 50))
                    .await
                    .unwrap_or_else(|_| panic!("{point}:{n}: workload hung"));
            let status = wait_exit(&mut d, point, n).await;
            assert_eq!(status.signal(), Some(9), "{point}:{n} died by SIGKILL");
            let failed = failed.unwrap_or_else(|| panic!("{point}:{n} never crashed"));
            let spares = spare_names(&root);
            // The checker has teeth: these points leave garbage that only Cleanup removes.
            if matches!(*point, "prepare.before_rename" | "prepare.before_commit") {
                // Before rename, a Prepare that took a spare leaves it in spare/, which no
                // record names and every start empties (not a finding of check; below, no
                // spare of the killed process is left after the start).
                let spare_taken = *point == "prepare.before_rename" && !spares.is_empty();
                let raw = findings_before_cleanup(&root);
                assert!(
                    spare_taken || !raw.is_empty(),
                    "{point}:{n}: expected leftovers before Cleanup"
                );
            }
            let (problems, names) = restart_and_check(&root, &sock).await;
            let kept: Vec<_> = spare_names(&root).intersection(&spares).cloned().collect();
            assert!(
                kept.is_empty(),
                "{point}:{n}: spares of the killed process kept: {kept:?}"
            );
            assert!(problems.is_empty(), "{point}:{n}: {problems:?}");
            // The interrupted operation is all-or-nothing, decided by the metadata commit; a
            // Remove's is not fsynced, and dies with the process (`removals.rs`).
            let committed = point.ends_with("after_commit") && *point != "remove.after_commit";
            match (&failed, point.split('.').next().unwrap()) {
                (Op::Prepare(k), "prepare") => {
                    assert_eq!(names.contains(k), committed, "{point}:{n} {k}")
                }
                (Op::Commit(k, name), "commit") => {
                    assert_eq!(names.contains(name), committed, "{point}:{n}");
                    assert_eq!(names.contains(k), !committed, "{point}:{n}");
                }
                (Op::Remove(k), "remove") => {
                    assert_eq!(names.contains(k), !committed, "{point}:{n} {k}")
                }
                other => panic!("{point}:{n}: unexpected failing op {other:?}"),
            }
            cases += 1;
        }
    }
    assert_eq!(cases, POINTS.len() * 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill9_in_the_round_that_settles_removes() {
    for point in ROUND_POINTS {
        for n in [1u64, 3] {
            let t = tempfile::tempdir().unwrap();
            let root = t.path().join("root");
            let sock = t.path().join("s.sock");
            let mut d = crashing_daemon(&root, &sock, point, n);
            let mut c = d.client().await.unwrap();
            // Rounds run shortly after Removes: keep the workload going until the kill.
            let work = async {
                for run in 0.. {
                    if workload(&mut c, &format!("round{run}-"), 20)
                        .await
                        .is_some()
                    {
                        return;
                    }
                }
            };
            tokio::time::timeout(Duration::from_secs(60), work)
                .await
                .unwrap_or_else(|_| panic!("{point}:{n}: the daemon did not crash"));
            let status = wait_exit(&mut d, point, n).await;
            assert_eq!(status.signal(), Some(9), "{point}:{n} died by SIGKILL");
            // The round had made its deletions durable and had not finished moving their
            // directories out (after_sync) or emptying the trash (after_trash).
            let raw = findings_before_cleanup(&root);
            let left = |what: &str| raw.iter().any(|p| p.contains(what));
            match *point {
                "remove.after_sync" => assert!(left("unreferenced"), "{point}:{n}: {raw:?}"),
                _ => assert!(left("trash"), "{point}:{n}: {raw:?}"),
            }
            let (problems, _) = restart_and_check(&root, &sock).await;
            assert!(problems.is_empty(), "{point}:{n}: {problems:?}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_remove_lost_with_the_process_brings_its_snapshot_back_whole() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("root");
    let sock = t.path().join("s.sock");
    let mut d = Daemon::start(
        &root,
        &sock,
        &[(
            "PODSHIM_SNAPSHOTTER_CRASHPOINT",
            "remove.after_commit:1".into(),
        )],
        &[],
    );
    let mut c = d.client().await.unwrap();
    let m = c
        .prepare(PrepareSnapshotRequest {
            snapshotter: SN.into(),
            key: "doomed".into(),
            parent: String::new(),
            labels: HashMap::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .mounts;
    std::fs::write(upper_of(&m).join("kept"), b"content").unwrap();
    let rm = c
        .remove(RemoveSnapshotRequest {
            snapshotter: SN.into(),
            key: "doomed".into(),
        })
        .await;
    assert!(rm.is_err(), "the daemon dies at remove.after_commit");
    wait_exit(&mut d, "remove.after_commit", 1).await;
    let mut d = Daemon::start(&root, &sock, &[], &[]);
    let mut c = d.client().await.unwrap();
    let m = c
        .mounts(MountsRequest {
            snapshotter: SN.into(),
            key: "doomed".into(),
        })
        .await
        .expect("the unsynced deletion is gone with the process")
        .into_inner()
        .mounts;
    assert_eq!(
        std::fs::read(upper_of(&m).join("kept")).unwrap(),
        b"content"
    );
    d.terminate();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill9_from_outside_at_arbitrary_instants() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("root");
    let sock = t.path().join("s.sock");
    for round in 0..12u64 {
        let mut d = Daemon::start(&root, &sock, &[], &[]);
        let mut c = d.client().await.unwrap();
        let work = tokio::spawn(async move { workload(&mut c, "kill", 1000).await });
        // Vary the instant; nothing below depends on when exactly the kill lands.
        tokio::time::sleep(Duration::from_millis(3 + round * 7)).await;
        d.kill9();
        let _ = work.await;
        let (problems, _) = restart_and_check(&root, &sock).await;
        assert!(problems.is_empty(), "round {round}: {problems:?}");
        // start the next round from an empty store again, through the API
        let mut d = Daemon::start(&root, &sock, &[], &[]);
        let mut c = d.client().await.unwrap();
        loop {
            let mut s = c
                .list(ListSnapshotsRequest {
                    snapshotter: SN.into(),
                    filters: vec![],
                })
                .await
                .unwrap()
                .into_inner();
            let mut names = Vec::new();
            while let Some(m) = s.message().await.unwrap() {
                names.extend(m.info.into_iter().map(|i| i.name));
            }
            if names.is_empty() {
                break;
            }
            for n in names {
                // parents refuse until their children are gone; loop until empty
                let _ = c
                    .remove(RemoveSnapshotRequest {
                        snapshotter: SN.into(),
                        key: n,
                    })
                    .await;
            }
        }
        d.terminate();
    }
}

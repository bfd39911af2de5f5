//! Drives the real binary over its unix socket with containerd-client's SnapshotsClient.
#![deny(unsafe_code)]

mod common;

use std::collections::HashMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;

use common::{is_root, Daemon, Mounted};
use containerd_client::services::v1::snapshots::*;
use containerd_client::tonic::Code;
use prost_types::FieldMask;

type Client = snapshots_client::SnapshotsClient<containerd_client::tonic::transport::Channel>;
const SN: &str = "podsnap";

fn lbl(kv: &[(&str, &str)]) -> HashMap<String, String> {
    kv.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

async fn prepare(
    c: &mut Client,
    key: &str,
    parent: &str,
) -> Result<Vec<containerd_client::types::Mount>, Code> {
    c.prepare(PrepareSnapshotRequest {
        snapshotter: SN.into(),
        key: key.into(),
        parent: parent.into(),
        labels: lbl(&[("containerd.io/gc.root", "x")]),
    })
    .await
    .map(|r| r.into_inner().mounts)
    .map_err(|s| s.code())
}

async fn view(
    c: &mut Client,
    key: &str,
    parent: &str,
) -> Result<Vec<containerd_client::types::Mount>, Code> {
    c.view(ViewSnapshotRequest {
        snapshotter: SN.into(),
        key: key.into(),
        parent: parent.into(),
        labels: HashMap::new(),
    })
    .await
    .map(|r| r.into_inner().mounts)
    .map_err(|s| s.code())
}

async fn commit(
    c: &mut Client,
    key: &str,
    name: &str,
    labels: &[(&str, &str)],
) -> Result<(), Code> {
    c.commit(CommitSnapshotRequest {
        snapshotter: SN.into(),
        name: name.into(),
        key: key.into(),
        labels: lbl(labels),
    })
    .await
    .map(|_| ())
    .map_err(|s| s.code())
}

async fn remove(c: &mut Client, key: &str) -> Result<(), Code> {
    c.remove(RemoveSnapshotRequest {
        snapshotter: SN.into(),
        key: key.into(),
    })
    .await
    .map(|_| ())
    .map_err(|s| s.code())
}

async fn stat(c: &mut Client, key: &str) -> Result<Info, Code> {
    c.stat(StatSnapshotRequest {
        snapshotter: SN.into(),
        key: key.into(),
    })
    .await
    .map(|r| r.into_inner().info.unwrap())
    .map_err(|s| s.code())
}

async fn usage(c: &mut Client, key: &str) -> Result<(i64, i64), Code> {
    c.usage(UsageRequest {
        snapshotter: SN.into(),
        key: key.into(),
    })
    .await
    .map(|r| {
        let r = r.into_inner();
        (r.size, r.inodes)
    })
    .map_err(|s| s.code())
}

async fn list(c: &mut Client, filters: &[&str]) -> Result<Vec<String>, Code> {
    let mut s = c
        .list(ListSnapshotsRequest {
            snapshotter: SN.into(),
            filters: filters.iter().map(|f| f.to_string()).collect(),
        })
        .await
        .map_err(|s| s.code())?
        .into_inner();
    let mut out = Vec::new();
    while let Some(m) = s.message().await.map_err(|s| s.code())? {
        out.extend(m.info.into_iter().map(|i| i.name));
    }
    out.sort();
    Ok(out)
}

/// Every path below `p` but the snapshotter's spares (`<root>/spare/*`), which are made and
/// taken as Prepares come, whatever their input.
fn dir_listing(p: &std::path::Path) -> Vec<String> {
    let mut v: Vec<String> = walk(p)
        .into_iter()
        .filter(|x| !x.ancestors().skip(1).any(|a| a.ends_with("root/spare")))
        .map(|x| x.strip_prefix(p).unwrap().display().to_string())
        .collect();
    v.sort();
    v
}

fn walk(p: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = fs::read_dir(p) {
        for e in rd.flatten() {
            out.push(e.path());
            if e.file_type().unwrap().is_dir() {
                out.extend(walk(&e.path()));
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lifecycle_mounts_errors_list_usage() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("root");
    let sock = t.path().join("run/snap.sock");
    let mut d = Daemon::start(&root, &sock, &[], &["--usage-refresh", "0"]);
    let mut c = d.client().await.unwrap();

    // socket: 0600 in a 0700 directory
    assert_eq!(
        fs::metadata(&sock).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert_eq!(
        fs::metadata(sock.parent().unwrap())
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o700
    );

    // first layer: bind rw
    let k1 = "k8s.io/1/extract-1 sha256:aaa";
    let m = prepare(&mut c, k1, "").await.unwrap();
    assert_eq!(m[0].r#type, "bind");
    assert_eq!(m[0].options, vec!["rw", "rbind"]);
    assert!(m[0].source.starts_with(root.to_str().unwrap()));
    let m2 = c
        .mounts(MountsRequest {
            snapshotter: SN.into(),
            key: k1.into(),
        })
        .await
        .unwrap()
        .into_inner()
        .mounts;
    assert_eq!(m, m2);
    assert_eq!(prepare(&mut c, k1, "").await, Err(Code::AlreadyExists));
    let up1 = std::path::PathBuf::from(&m[0].source);
    if is_root() {
        let mnt = Mounted::new(&m, &t.path().join("mnt1"));
        fs::write(mnt.0.join("base.txt"), b"base").unwrap();
        fs::create_dir(mnt.0.join("etc")).unwrap();
        fs::write(mnt.0.join("etc/gone"), b"x").unwrap();
    } else {
        fs::write(up1.join("base.txt"), b"base").unwrap();
        fs::create_dir(up1.join("etc")).unwrap();
        fs::write(up1.join("etc/gone"), b"x").unwrap();
    }
    let (size, inodes) = usage(&mut c, k1).await.unwrap();
    assert_eq!(inodes, 4);
    assert!(size > 0);
    commit(
        &mut c,
        k1,
        "k8s.io/1/sha256:L1",
        &[("containerd.io/snapshot.reference", "sha256:L1")],
    )
    .await
    .unwrap();
    assert_eq!(
        usage(&mut c, "k8s.io/1/sha256:L1").await.unwrap(),
        (size, inodes)
    );
    assert_eq!(stat(&mut c, k1).await, Err(Code::NotFound));
    let i = stat(&mut c, "k8s.io/1/sha256:L1").await.unwrap();
    assert_eq!(i.kind, Kind::Committed as i32);
    assert_eq!(
        i.labels.get("containerd.io/snapshot.reference").unwrap(),
        "sha256:L1"
    );
    assert!(
        !i.labels.contains_key("containerd.io/gc.root"),
        "commit replaces labels"
    );
    assert_eq!(
        c.mounts(MountsRequest {
            snapshotter: SN.into(),
            key: "k8s.io/1/sha256:L1".into()
        })
        .await
        .unwrap_err()
        .code(),
        Code::FailedPrecondition
    );

    // second layer: overlay with upperdir/workdir/lowerdir
    let k2 = "k8s.io/2/extract-2";
    let m = prepare(&mut c, k2, "k8s.io/1/sha256:L1").await.unwrap();
    assert_eq!(m[0].r#type, "overlay");
    let opts = m[0].options.join(",");
    assert!(
        opts.contains("upperdir=") && opts.contains("workdir=") && opts.contains("lowerdir="),
        "{opts}"
    );
    if is_root() {
        let mnt = Mounted::new(&m, &t.path().join("mnt2"));
        assert_eq!(fs::read(mnt.0.join("base.txt")).unwrap(), b"base");
        fs::write(mnt.0.join("two.txt"), b"two").unwrap();
        fs::remove_file(mnt.0.join("etc/gone")).unwrap(); // whiteout in upper
    }
    assert_eq!(
        commit(&mut c, k2, "k8s.io/1/sha256:L1", &[]).await,
        Err(Code::AlreadyExists)
    );
    assert_eq!(
        commit(&mut c, "nope", "k8s.io/1/sha256:L9", &[]).await,
        Err(Code::NotFound)
    );
    commit(
        &mut c,
        k2,
        "k8s.io/1/sha256:L2",
        &[("containerd.io/snapshot.reference", "sha256:L2")],
    )
    .await
    .unwrap();

    // views: one parent -> bind ro; two parents -> overlay with lowerdirs only
    let v1 = view(&mut c, "k8s.io/3/view1", "k8s.io/1/sha256:L1")
        .await
        .unwrap();
    assert_eq!(
        (v1[0].r#type.as_str(), v1[0].options.clone()),
        ("bind", vec!["ro".to_string(), "rbind".to_string()])
    );
    let v2 = view(&mut c, "k8s.io/3/view2", "k8s.io/1/sha256:L2")
        .await
        .unwrap();
    assert_eq!(v2[0].r#type, "overlay");
    assert!(!v2[0]
        .options
        .iter()
        .any(|o| o.starts_with("upperdir") || o.starts_with("workdir")));
    let v0 = view(&mut c, "k8s.io/3/view0", "").await.unwrap();
    assert_eq!(v0[0].options, vec!["ro", "rbind"]);
    if is_root() {
        let mnt = Mounted::new(&v2, &t.path().join("mnt3"));
        assert_eq!(fs::read(mnt.0.join("two.txt")).unwrap(), b"two");
        assert!(!mnt.0.join("etc/gone").exists());
        assert!(fs::write(mnt.0.join("ro"), b"x").is_err());
        let mnt = Mounted::new(&v1, &t.path().join("mnt4"));
        assert!(mnt.0.join("etc/gone").exists());
        assert!(fs::write(mnt.0.join("ro"), b"x").is_err());
    }

    // container layer: usage follows writes (refresh 0 = exact)
    let m = prepare(&mut c, "k8s.io/4/ctr", "k8s.io/1/sha256:L2")
        .await
        .unwrap();
    let (s0, i0) = usage(&mut c, "k8s.io/4/ctr").await.unwrap();
    assert_eq!(i0, 1);
    let upper = m[0]
        .options
        .iter()
        .find_map(|o| o.strip_prefix("upperdir="))
        .unwrap();
    fs::write(std::path::Path::new(upper).join("blob"), vec![1u8; 1 << 20]).unwrap();
    let (s1, i1) = usage(&mut c, "k8s.io/4/ctr").await.unwrap();
    assert_eq!(i1, 2);
    assert!(s1 >= s0 + (1 << 20), "{s0} -> {s1}");

    // list and filters
    let all = list(&mut c, &[]).await.unwrap();
    assert_eq!(all.len(), 6);
    assert_eq!(
        list(&mut c, &["kind==committed"]).await.unwrap(),
        vec!["k8s.io/1/sha256:L1", "k8s.io/1/sha256:L2"]
    );
    let f = r#"labels."containerd.io/snapshot.reference"==sha256:L2,parent=="k8s.io/1/sha256:L1""#;
    assert_eq!(
        list(&mut c, &[f]).await.unwrap(),
        vec!["k8s.io/1/sha256:L2"]
    );
    assert_eq!(
        list(&mut c, &["kind==view", "name==k8s.io/4/ctr"])
            .await
            .unwrap()
            .len(),
        4
    );
    assert_eq!(list(&mut c, &["name~=x"]).await, Err(Code::InvalidArgument));
    assert_eq!(list(&mut c, &["kind=="]).await, Err(Code::InvalidArgument));

    // update with field paths
    let up = c
        .update(UpdateSnapshotRequest {
            snapshotter: SN.into(),
            info: Some(Info {
                name: "k8s.io/4/ctr".into(),
                labels: lbl(&[("a", "1"), ("b", "2")]),
                ..Default::default()
            }),
            update_mask: Some(FieldMask {
                paths: vec!["labels.a".into()],
            }),
        })
        .await
        .unwrap()
        .into_inner()
        .info
        .unwrap();
    assert_eq!(
        up.labels,
        lbl(&[("a", "1"), ("containerd.io/gc.root", "x")])
    );
    let err = c
        .update(UpdateSnapshotRequest {
            snapshotter: SN.into(),
            info: Some(Info {
                name: "k8s.io/4/ctr".into(),
                ..Default::default()
            }),
            update_mask: Some(FieldMask {
                paths: vec!["parent".into()],
            }),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);

    // remove: parents refuse, leaves first
    assert_eq!(
        remove(&mut c, "k8s.io/1/sha256:L1").await,
        Err(Code::FailedPrecondition)
    );
    assert_eq!(remove(&mut c, "missing").await, Err(Code::NotFound));
    for k in [
        "k8s.io/4/ctr",
        "k8s.io/3/view2",
        "k8s.io/3/view1",
        "k8s.io/3/view0",
        "k8s.io/1/sha256:L2",
        "k8s.io/1/sha256:L1",
    ] {
        remove(&mut c, k).await.unwrap();
    }
    assert!(list(&mut c, &[]).await.unwrap().is_empty());
    c.cleanup(CleanupRequest {
        snapshotter: SN.into(),
    })
    .await
    .unwrap();
    assert_eq!(fs::read_dir(root.join("snapshots")).unwrap().count(), 0);
    d.terminate();
    assert!(!sock.exists(), "socket removed on SIGTERM");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_never_touches_outside_root() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("a/b/root");
    let sock = t.path().join("snap.sock");
    // Sentinels where `..` escapes from root/snapshots would land.
    for p in ["a/b/victim", "a/victim", "victim", "a/b/root-sibling"] {
        fs::create_dir_all(t.path().join(p)).unwrap();
        fs::write(t.path().join(p).join("keep"), b"x").unwrap();
    }
    let mut d = Daemon::start(&root, &sock, &[], &[]);
    let mut c = d.client().await.unwrap();
    let before = dir_listing(t.path());
    let long = "k".repeat(5000);
    let bad = [
        "",
        "..",
        "../victim",
        "../../victim",
        "a/../../b",
        "snap\0shot",
        "x/./y",
        long.as_str(),
    ];
    for k in bad {
        assert_eq!(
            prepare(&mut c, k, "").await,
            Err(Code::InvalidArgument),
            "{k:?}"
        );
        assert_eq!(
            view(&mut c, k, "").await,
            Err(Code::InvalidArgument),
            "{k:?}"
        );
        assert_eq!(remove(&mut c, k).await, Err(Code::InvalidArgument), "{k:?}");
        assert_eq!(
            stat(&mut c, k).await.unwrap_err(),
            Code::InvalidArgument,
            "{k:?}"
        );
        assert_eq!(
            usage(&mut c, k).await.unwrap_err(),
            Code::InvalidArgument,
            "{k:?}"
        );
        assert_eq!(
            commit(&mut c, k, "ok-name", &[]).await,
            Err(Code::InvalidArgument),
            "{k:?}"
        );
        assert_eq!(
            commit(&mut c, "ok-key", k, &[]).await,
            Err(Code::InvalidArgument),
            "{k:?}"
        );
        if !k.is_empty() {
            assert_eq!(
                prepare(&mut c, "ok", k).await,
                Err(Code::InvalidArgument),
                "parent {k:?}"
            );
        }
    }
    // Keys that look like paths are fine: they never become paths.
    for k in [
        "/etc/passwd",
        "victim",
        "a/b/root-sibling",
        "k8s.io/1/sha256:x",
    ] {
        let m = prepare(&mut c, k, "").await.unwrap();
        assert!(m[0]
            .source
            .starts_with(root.join("snapshots").to_str().unwrap()));
        remove(&mut c, k).await.unwrap();
    }
    assert_eq!(
        prepare(&mut c, "x", "unknown-parent").await,
        Err(Code::NotFound)
    );
    prepare(&mut c, "dup", "").await.unwrap();
    assert_eq!(prepare(&mut c, "dup", "").await, Err(Code::AlreadyExists));
    assert_eq!(
        prepare(&mut c, "child", "dup").await,
        Err(Code::InvalidArgument),
        "parent not committed"
    );
    // oversized labels
    let err = c
        .prepare(PrepareSnapshotRequest {
            snapshotter: SN.into(),
            key: "lbl".into(),
            parent: String::new(),
            labels: lbl(&[("k", &"v".repeat(5000))]),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    remove(&mut c, "dup").await.unwrap();
    c.cleanup(CleanupRequest {
        snapshotter: SN.into(),
    })
    .await
    .unwrap();
    let after = dir_listing(t.path());
    assert_eq!(before, after);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_keeps_snapshots_and_mounts() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("root");
    let sock = t.path().join("snap.sock");
    let mut d = Daemon::start(&root, &sock, &[], &[]);
    let mut c = d.client().await.unwrap();
    let m = prepare(&mut c, "l1", "").await.unwrap();
    fs::write(std::path::Path::new(&m[0].source).join("f"), b"1").unwrap();
    commit(&mut c, "l1", "L1", &[]).await.unwrap();
    let m = prepare(&mut c, "ctr", "L1").await.unwrap();
    let mnt = is_root().then(|| Mounted::new(&m, &t.path().join("rootfs")));
    if let Some(mnt) = &mnt {
        fs::write(mnt.0.join("w"), b"before").unwrap();
    }
    // graceful restart, then a hard one
    d.terminate();
    let mut d = Daemon::start(&root, &sock, &[], &[]);
    let mut c = d.client().await.unwrap();
    assert_eq!(prepare(&mut c, "ctr", "L1").await, Err(Code::AlreadyExists));
    d.kill9();
    let mut d = Daemon::start(&root, &sock, &[], &[]);
    let mut c = d.client().await.unwrap();
    let again = c
        .mounts(MountsRequest {
            snapshotter: SN.into(),
            key: "ctr".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .mounts;
    assert_eq!(again, m);
    if let Some(mnt) = &mnt {
        // the running "container" keeps working across restarts
        assert_eq!(fs::read(mnt.0.join("w")).unwrap(), b"before");
        assert_eq!(fs::read(mnt.0.join("f")).unwrap(), b"1");
        fs::write(mnt.0.join("w2"), b"after").unwrap();
    }
    assert_eq!(list(&mut c, &[]).await.unwrap(), vec!["L1", "ctr"]);
    drop(mnt);
    remove(&mut c, "ctr").await.unwrap();
    remove(&mut c, "L1").await.unwrap();
}

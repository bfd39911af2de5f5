//! Commit with a parent (containerd 2.2's rebase, for parallel unpack): a layer prepared without
//! a parent is committed onto one, and from then on is that parent's child in every way: Stat,
//! the lowerdir order of its children's mounts, and Remove's refusal to orphan it. The wire
//! message carries containerd 2.2's `parent` and stays readable to and from the older one.
#![deny(unsafe_code)]

mod common;

use std::collections::BTreeMap;

use common::snapshot_dir;
use podshim_snapshotter::{service::CommitSnapshotRequest, Config, Error, Snapshotter};
use prost::Message;

#[test]
fn a_layer_committed_onto_a_parent_becomes_its_child() {
    let t = tempfile::tempdir().unwrap();
    let s = Snapshotter::open(Config::new(t.path().join("root"))).unwrap();
    let none = BTreeMap::new;
    let l1 = snapshot_dir(&s.prepare("l1-active", "", none()).unwrap());
    s.commit("l1", "l1-active", "", none()).unwrap();
    // Layer 2 unpacked beside layer 1, not on it.
    let l2 = snapshot_dir(&s.prepare("l2-active", "", none()).unwrap());
    s.commit("l2", "l2-active", "l1", none()).unwrap();
    assert_eq!(s.stat("l2").unwrap().parent, "l1");

    let m = s.prepare("c", "l2", none()).unwrap();
    let lower = m[0]
        .options
        .iter()
        .find_map(|o| o.strip_prefix("lowerdir="))
        .unwrap();
    assert_eq!(
        lower,
        format!("{}:{}", l2.join("fs").display(), l1.join("fs").display())
    );
    let err = s.remove("l1").unwrap_err();
    assert!(matches!(err, Error::FailedPrecondition(_)), "{err}");
}

#[test]
fn a_rebase_onto_what_is_not_a_committed_parent_is_refused() {
    let t = tempfile::tempdir().unwrap();
    let s = Snapshotter::open(Config::new(t.path().join("root"))).unwrap();
    let none = BTreeMap::new;
    s.prepare("base-active", "", none()).unwrap();
    s.commit("base", "base-active", "", none()).unwrap();
    s.prepare("other-active", "", none()).unwrap();
    s.commit("other", "other-active", "", none()).unwrap();
    s.prepare("open", "", none()).unwrap();

    s.prepare("a", "", none()).unwrap();
    let err = s.commit("a1", "a", "missing", none()).unwrap_err();
    assert!(matches!(err, Error::NotFound(_)), "{err}");
    let err = s.commit("a1", "a", "open", none()).unwrap_err();
    assert!(matches!(err, Error::FailedPrecondition(_)), "{err}");
    // A refused rebase leaves the snapshot as it was: active, parentless.
    assert_eq!(s.stat("a").unwrap().parent, "");

    // One prepared on a parent keeps it: the same parent is fine, another is refused.
    s.prepare("b", "base", none()).unwrap();
    let err = s.commit("b1", "b", "other", none()).unwrap_err();
    assert!(matches!(err, Error::FailedPrecondition(_)), "{err}");
    s.commit("b1", "b", "base", none()).unwrap();
    assert_eq!(s.stat("b1").unwrap().parent, "base");
}

#[test]
fn the_commit_message_reads_containerd_2_2_s_parent_and_the_older_message() {
    use containerd_client::services::v1::snapshots::CommitSnapshotRequest as Older;
    let ours = CommitSnapshotRequest {
        snapshotter: "podsnap".into(),
        name: "n".into(),
        key: "k".into(),
        labels: [("a".to_string(), "b".to_string())].into(),
        parent: "p".into(),
    };
    let back = CommitSnapshotRequest::decode(ours.encode_to_vec().as_slice()).unwrap();
    assert_eq!(back.parent, "p");
    let older = Older::decode(ours.encode_to_vec().as_slice()).unwrap();
    assert_eq!((older.name.as_str(), older.key.as_str()), ("n", "k"));
    let from_older = CommitSnapshotRequest::decode(older.encode_to_vec().as_slice()).unwrap();
    assert_eq!(from_older.parent, "");
    assert_eq!(from_older.labels, ours.labels);
}

/// A parentless layer being unpacked (containerd's `containerd.io/snapshot.ref` label) mounts as
/// an overlay upper dir, which containerd's applier writes with whiteouts converted; any other
/// parentless snapshot stays a bind mount, which a container can mount.
#[test]
fn a_parentless_layer_being_unpacked_mounts_as_an_upper_dir() {
    let t = tempfile::tempdir().unwrap();
    let s = Snapshotter::open(Config::new(t.path().join("root"))).unwrap();
    let unpack: BTreeMap<String, String> = [(
        "containerd.io/snapshot.ref".to_string(),
        "sha256:1".to_string(),
    )]
    .into();
    let m = s.prepare("extract-1 sha256:1", "", unpack).unwrap();
    assert_eq!(
        (m[0].kind.as_str(), m[0].source.as_str()),
        ("overlay", "overlay")
    );
    let dir = snapshot_dir(&m);
    assert_eq!(
        m[0].options,
        [format!("upperdir={}", dir.join("fs").display())]
    );
    assert_eq!(s.mounts("extract-1 sha256:1").unwrap(), m);
    let m = s.prepare("scratch", "", BTreeMap::new()).unwrap();
    assert_eq!(m[0].kind, "bind");
}

//! A full disk under the snapshotter's root: each request that needs room fails with
//! ResourceExhausted (the code the service edge gives it) and leaves nothing behind; once there
//! is room again the next request succeeds, without a restart.
#![deny(unsafe_code)]

mod common;

use std::collections::BTreeMap;

use common::{is_root, Tmpfs};
use podshim_snapshotter::service::to_status;
use podshim_snapshotter::store::Info;
use podshim_snapshotter::{Config, Error, Snapshotter};

fn labels(kv: &[(&str, &str)]) -> BTreeMap<String, String> {
    kv.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn names(s: &Snapshotter) -> Vec<String> {
    let mut v: Vec<String> = s.list(&[]).unwrap().into_iter().map(|i| i.name).collect();
    v.sort();
    v
}

fn assert_disk_full(what: &str, e: Error) {
    let status = to_status(e);
    assert_eq!(
        status.code(),
        tonic::Code::ResourceExhausted,
        "{what}: {}",
        status.message()
    );
}

#[test]
fn a_full_disk_fails_the_request_and_the_next_succeeds_once_there_is_room() {
    assert!(
        is_root(),
        "a full disk needs a tmpfs of the test's own: run the tests as root"
    );
    let fs = Tmpfs::mount("2m");
    let s = Snapshotter::open(Config::new(fs.path().join("root"))).unwrap();
    s.prepare("kept", "", labels(&[("a", "1")])).unwrap();
    let filler = fs.fill();

    let relabel = |v: &str| Info {
        labels: labels(&[("a", v)]),
        ..s.stat("kept").unwrap()
    };
    let e = s.update(&relabel("2"), &[]).unwrap_err();
    assert_disk_full("update", e);
    let e = s.prepare("lost", "", BTreeMap::new()).unwrap_err();
    assert_disk_full("prepare", e);

    std::fs::remove_file(filler).unwrap();
    s.prepare("next", "", BTreeMap::new())
        .expect("prepare once there is room");
    s.update(&relabel("3"), &[])
        .expect("update once there is room");
    assert_eq!(s.stat("kept").unwrap().labels, labels(&[("a", "3")]));
    assert_eq!(names(&s), vec!["kept", "next"]);
    assert_eq!(s.check().unwrap(), Vec::<String>::new());
}

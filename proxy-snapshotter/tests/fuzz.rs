//! What containerd's clients send a snapshotter, fuzzed (see `podshim_common::fuzz`): List
//! filters, snapshot keys and labels of any bytes are accepted or refused with InvalidArgument,
//! never a panic (a panic aborts the daemon and with it every pull and container start).
#![deny(unsafe_code)]

use std::collections::BTreeMap;

use podshim_common::fuzz;
use podshim_snapshotter::{
    error::Error,
    filter::Filter,
    store::{validate_key, validate_labels, Info, Kind, Timestamp},
};

fn accepted_or_invalid<T: std::fmt::Debug>(r: Result<T, Error>) {
    if let Err(e) = r {
        assert!(
            matches!(e, Error::InvalidArgument(_)),
            "refused with {e:?}, not InvalidArgument"
        );
    }
}

#[test]
fn fuzz_list_filters() {
    let info = Info {
        name: "k8s.io/1/sha256:ab".into(),
        parent: "p".into(),
        kind: Kind::Committed,
        labels: [(
            "containerd.io/snapshot.ref".to_string(),
            "sha256:ab".to_string(),
        )]
        .into(),
        created: Timestamp::now(),
        updated: Timestamp::now(),
    };
    let seeds: [&[u8]; 3] = [
        br#"labels."containerd.io/snapshot.ref"==sha256:ab,kind==committed"#,
        br#"name~=^k8s\.io/,parent!=x"#,
        b"labels.a",
    ];
    fuzz::run("list_filter", &seeds, |b| {
        let f = String::from_utf8_lossy(b).into_owned();
        if let Ok(filter) = Filter::parse_all(&[f.as_str()]).inspect_err(|e| {
            assert!(matches!(e, Error::InvalidArgument(_)), "{e:?}");
        }) {
            filter.matches(&info);
        }
    });
}

#[test]
fn fuzz_keys_and_labels() {
    let seeds: [&[u8]; 2] = [
        b"k8s.io/12/sha256:0123456789abcdef\x00containerd.io/gc.root\x00value",
        "clé-😀/€\0ключ\0значение".as_bytes(),
    ];
    fuzz::run("keys_labels", &seeds, |b| {
        let s = String::from_utf8_lossy(b);
        let mut parts = s.splitn(3, '\0');
        let key = parts.next().unwrap_or_default();
        accepted_or_invalid(validate_key("key", key));
        let (k, v) = (
            parts.next().unwrap_or_default(),
            parts.next().unwrap_or_default(),
        );
        // Bounds are in bytes: make keys and values that straddle them too.
        let long = k.repeat(1 + 4096 / k.len().max(1));
        for key in [k, long.as_str()] {
            let labels = BTreeMap::from([(key.to_string(), v.to_string())]);
            accepted_or_invalid(validate_labels(&labels));
        }
    });
}

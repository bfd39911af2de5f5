//! A directory tree as a listing to compare: every path with its type, mode, owner and content
//! hash (or link target). Tests compare the listings taken before and after an install and its
//! removal.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use sha2::{Digest, Sha256};

/// Every path under `root` (relative, "" for root itself) with its type, mode, and content hash
/// or link target: a recursive listing with sha256sums.
pub fn tree(root: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(p) = stack.pop() {
        let md = fs::symlink_metadata(&p).unwrap();
        let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
        let mode = md.permissions().mode() & 0o7777;
        let what = if md.file_type().is_symlink() {
            format!("link -> {}", fs::read_link(&p).unwrap().display())
        } else if md.is_dir() {
            for e in fs::read_dir(&p).unwrap() {
                stack.push(e.unwrap().path());
            }
            format!("dir {mode:o} {}:{}", uid(&md), gid(&md))
        } else {
            let data = fs::read(&p).unwrap();
            let h: String = Sha256::digest(&data)
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            format!("file {mode:o} {}:{} {h}", uid(&md), gid(&md))
        };
        out.insert(format!("/{rel}"), what);
    }
    out
}

fn uid(md: &fs::Metadata) -> u32 {
    md.uid()
}

fn gid(md: &fs::Metadata) -> u32 {
    md.gid()
}

/// The paths whose entry differs between two listings (added, removed or changed).
pub fn changed(a: &BTreeMap<String, String>, b: &BTreeMap<String, String>) -> BTreeSet<String> {
    a.keys()
        .chain(b.keys())
        .filter(|k| a.get(*k) != b.get(*k))
        .cloned()
        .collect()
}

pub fn assert_same_tree(
    before: &BTreeMap<String, String>,
    after: &BTreeMap<String, String>,
    what: &str,
) {
    let diff = changed(before, after);
    assert!(
        diff.is_empty(),
        "{what}: the tree differs at {:#?}",
        diff.iter()
            .map(|k| format!("{k}: {:?} -> {:?}", before.get(k), after.get(k)))
            .collect::<Vec<_>>()
    );
}

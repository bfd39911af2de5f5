//! What the next start would find, without changing it: `podshim-snapshotter check` (the store
//! read from a private [`ReadCopy`], beside a live daemon or without one) and
//! [`Snapshotter::check`](crate::Snapshotter::check) (tests, on the open store).
//!
//! Reported, each with what a start does about it: the store's own structure (ids, parent
//! chains, children); a recorded snapshot without its directories (a start redoes a lost rename
//! or makes an active snapshot's empty directories again; a committed layer's content is lost; a
//! size-limited snapshot's unmounted image is in order, a start mounts it);
//! directories no record names, and anything left in `tmp/` or `trash/` (a start deletes them).
//! Not reported: `spare/`, whose directories no record ever names and every start empties.
//! Beside a live daemon, the directories of Removes being settled (`removals.rs`) can show as
//! unreferenced.

use std::collections::HashSet;
use std::fs;
use std::path::Path;

use podshim_common::store::ReadCopy;

use crate::error::{Error, IoContext, Result};
use crate::layout::Layout;
use crate::store::{Kind, Store};

/// The findings about the root `root`, one line each; empty when a start would find it in order.
pub fn check(root: &Path) -> Result<Vec<String>> {
    let layout = Layout::of(root);
    if !layout.root.is_dir() {
        return Err(Error::NotFound(format!("root {}", root.display())));
    }
    let src = layout.store();
    let copy = ReadCopy::take(&src, "podshim-snapshotter-check")
        .ctx(|| format!("copy {}", src.display()))?;
    let Some(copy) = copy else {
        // No store: every directory is unreferenced.
        return problems(None, &layout);
    };
    let store = Store::open(copy.file())?;
    problems(Some(&store), &layout)
}

/// The findings about `layout`'s directories against `store` (none: an empty store).
pub(crate) fn problems(store: Option<&Store>, layout: &Layout) -> Result<Vec<String>> {
    let (mut problems, all) = match store {
        Some(s) => (s.check()?, s.all()?),
        None => (Vec::new(), Vec::new()),
    };
    let ids: HashSet<u64> = all.iter().map(|(_, r)| r.id).collect();
    for (k, r) in &all {
        if Layout::image_in(&layout.dir(r.id)).is_file() {
            // A size-limited snapshot's unmounted filesystem: a start mounts it.
            continue;
        }
        if !layout.upper(r.id).is_dir() {
            let what = if layout.new_dir(r.id).is_dir() {
                "still at tmp/ (a start renames it into place)"
            } else if r.kind == Kind::Committed {
                "its content is lost (remove the image and pull it again)"
            } else {
                "a start makes it again, empty"
            };
            problems.push(format!("{k:?} (id {}): missing fs dir: {what}", r.id));
        } else if r.kind == Kind::Active && !layout.work(r.id).is_dir() {
            problems.push(format!("{k:?} (id {}): missing work dir", r.id));
        }
    }
    for e in read_dir(&layout.snapshots)? {
        let referenced = Layout::id_of(&e.file_name()).is_some_and(|id| ids.contains(&id));
        if !referenced {
            problems.push(format!(
                "unreferenced {} (a start deletes it)",
                e.path().display()
            ));
        }
    }
    for d in [&layout.tmp, &layout.trash] {
        let n = read_dir(d)?.len();
        if n > 0 {
            problems.push(format!(
                "{} not empty: {n} entries (a start deletes them)",
                d.display()
            ));
        }
    }
    Ok(problems)
}

/// The entries of `d`; none when it does not exist (a root never served from).
fn read_dir(d: &Path) -> Result<Vec<fs::DirEntry>> {
    match fs::read_dir(d) {
        Ok(rd) => rd
            .collect::<std::io::Result<Vec<_>>>()
            .ctx(|| format!("read {}", d.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(e).ctx(|| format!("read {}", d.display())),
    }
}

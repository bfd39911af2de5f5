//! User namespaces the shim makes or finds for a user-namespaced pod: one with given id ranges
//! (for an id-mapped rootfs, or a hostNetwork pod's holder), or the one that owns a namespace
//! (a pod's network namespace, which CRI made inside the pod's user namespace).

use std::{
    fs::File,
    os::fd::{AsFd, OwnedFd},
    path::Path,
};

use nix::{
    sys::signal::{kill, Signal},
    unistd::Pid,
};

use crate::{reaper::reaper, sys};

/// One range each for uids and gids, the only form CRI gives a pod.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdMap {
    pub uids: IdRange,
    pub gids: IdRange,
}

/// `size` ids from `container` inside map to as many from `host` outside.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdRange {
    container: u32,
    host: u32,
    size: u32,
}

impl IdRange {
    /// `None` for an empty range or one that runs past the last id.
    pub fn new(container: u32, host: u32, size: u32) -> Option<IdRange> {
        let fits = |start: u32| start.checked_add(size).is_some();
        (size > 0 && fits(container) && fits(host)).then_some(IdRange {
            container,
            host,
            size,
        })
    }

    /// A line of `/proc/<pid>/uid_map`.
    fn map_line(&self) -> String {
        format!("{} {} {}\n", self.container, self.host, self.size)
    }
}

impl IdMap {
    /// A user namespace with this mapping, held by the returned descriptor: made by a child
    /// cloned into it, whose maps are written from here, and which is killed once the
    /// namespace is open.
    #[cold]
    pub fn user_namespace(&self) -> std::io::Result<OwnedFd> {
        let pid = sys::spawn_in_new_userns()?;
        // Claimed before the kill, so that its exit is not kept as an orphan's.
        let _exit = reaper().subscribe(pid);
        let opened = (|| {
            std::fs::write(format!("/proc/{pid}/uid_map"), self.uids.map_line())?;
            std::fs::write(format!("/proc/{pid}/gid_map"), self.gids.map_line())?;
            File::open(format!("/proc/{pid}/ns/user")).map(OwnedFd::from)
        })();
        let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        opened
    }
}

/// The user namespace that owns the namespace at `path` (`NS_GET_USERNS`).
#[cold]
pub fn owner_of(path: &Path) -> std::io::Result<OwnedFd> {
    let ns = File::open(path)?;
    sys::owning_userns(ns.as_fd())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_stay_inside_the_id_space() {
        assert!(IdRange::new(0, 65536, 65536).is_some());
        assert!(IdRange::new(0, 1, 0).is_none());
        assert!(IdRange::new(0, u32::MAX, 2).is_none());
        assert!(IdRange::new(u32::MAX - 1, 0, 2).is_none());
        assert_eq!(
            IdRange::new(0, 458752, 65536).unwrap().map_line(),
            "0 458752 65536\n"
        );
    }

    /// A namespace made from a mapping is its own, and owns what is made in it (needs root).
    #[test]
    fn a_made_namespace_is_found_as_the_owner_of_one_made_inside_it() {
        if !nix::unistd::Uid::effective().is_root() {
            eprintln!("SKIPPED: needs root");
            return;
        }
        let r = IdRange::new(0, 300000, 65536).unwrap();
        let made = IdMap { uids: r, gids: r }.user_namespace().unwrap();
        let host = File::open("/proc/self/ns/user").unwrap();
        let id = |f: &OwnedFd| nix::sys::stat::fstat(f.as_fd()).unwrap().st_ino;
        assert_ne!(id(&made), id(&OwnedFd::from(host)));
        let owner = owner_of(Path::new("/proc/self/ns/net")).unwrap();
        assert_ne!(
            id(&owner),
            id(&made),
            "the host's network belongs to the host's user ns"
        );
    }
}

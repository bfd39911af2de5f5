//! Reading cgroup interface files, shared by the v1 and v2 collectors.

use std::{
    collections::HashMap,
    io::ErrorKind,
    path::{Path, PathBuf},
};

use crate::error::{Error, Result};

/// A file every cgroup of its kind has: its absence is an error.
pub(super) fn required(dir: &Path, name: &str) -> Result<String> {
    let path = dir.join(name);
    match std::fs::read_to_string(&path) {
        Ok(content) => Ok(content),
        Err(e) => Err(read_error(dir, &path, e)),
    }
}

/// A file that depends on kernel configuration (swap accounting, kmem, enabled v2
/// controllers): its absence only leaves the matching fields at zero.
pub(super) fn optional(dir: &Path, name: &str) -> Result<Option<String>> {
    let path = dir.join(name);
    match std::fs::read_to_string(&path) {
        Ok(content) => Ok(Some(content)),
        Err(e) if e.kind() == ErrorKind::NotFound && dir.is_dir() => Ok(None),
        Err(e) => Err(read_error(dir, &path, e)),
    }
}

/// A cgroup removed under us shows up as ENOENT, or ENODEV on v2 when the file was
/// already open; either way the caller should hear "gone", not an I/O failure.
fn read_error(dir: &Path, path: &Path, e: std::io::Error) -> Error {
    let vanished = e.kind() == ErrorKind::NotFound || e.raw_os_error() == Some(libc::ENODEV);
    if vanished && !dir.is_dir() {
        return gone(dir);
    }
    Error::Io {
        context: format!("read {}", path.display()),
        source: e,
    }
}

pub(super) fn gone(dir: &Path) -> Error {
    Error::NotFound(format!("cgroup {} no longer exists", dir.display()))
}

fn malformed(path: &Path, what: &str) -> Error {
    Error::Other(format!("{}: malformed content {what:?}", path.display()))
}

/// A file's content together with where it came from, so parse errors can name it.
pub(super) struct Content {
    pub path: PathBuf,
    pub text: String,
}

impl Content {
    pub(super) fn required(dir: &Path, name: &str) -> Result<Content> {
        Ok(Content {
            path: dir.join(name),
            text: required(dir, name)?,
        })
    }

    pub(super) fn optional(dir: &Path, name: &str) -> Result<Option<Content>> {
        Ok(optional(dir, name)?.map(|text| Content {
            path: dir.join(name),
            text,
        }))
    }

    /// `key value` lines (memory.stat, cpu.stat, memory.events, ...).
    pub(super) fn flat_keyed(&self) -> Result<HashMap<&str, u64>> {
        self.text
            .lines()
            .filter(|line| !line.trim().is_empty())
            .map(|line| {
                let mut fields = line.split_whitespace();
                match (fields.next(), fields.next(), fields.next()) {
                    (Some(key), Some(value), None) => value
                        .parse()
                        .map(|value| (key, value))
                        .map_err(|_| malformed(&self.path, line)),
                    _ => Err(malformed(&self.path, line)),
                }
            })
            .collect()
    }

    /// A single number.
    pub(super) fn number(&self) -> Result<u64> {
        let text = self.text.trim();
        text.parse().map_err(|_| malformed(&self.path, text))
    }

    /// A single number or `max`, which becomes `unlimited`: containerd's own readers
    /// disagree on what "no limit" is (v1 pids 0, v2 u64::MAX), so callers choose.
    pub(super) fn limit(&self, unlimited: u64) -> Result<u64> {
        match self.text.trim() {
            "max" => Ok(unlimited),
            _ => self.number(),
        }
    }

    /// Whitespace-separated numbers (cpuacct.usage_percpu).
    pub(super) fn numbers(&self) -> Result<Vec<u64>> {
        self.text
            .split_whitespace()
            .map(|n| n.parse().map_err(|_| malformed(&self.path, n)))
            .collect()
    }
}

/// A flat-keyed file's key and the message field it fills.
pub(super) type Field<T> = (&'static str, fn(&mut T) -> &mut u64);

/// Copies the named keys of a flat-keyed file into a message's fields; keys the kernel
/// doesn't report (older kernels, disabled features) stay zero.
pub(super) fn fill<T>(target: &mut T, values: &HashMap<&str, u64>, fields: &[Field<T>]) {
    for (key, field) in fields {
        if let Some(value) = values.get(key) {
            *field(target) = *value;
        }
    }
}

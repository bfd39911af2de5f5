//! What both daemons' redb stores share (feature `redb`; the pod shim has no store): which errors
//! mean a full disk, the conversion of redb's error types into a crate's own error, and the
//! private copy a `check` reads instead of the file a daemon holds open.

use std::io;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

/// The disk (or the quota) an I/O error met is full: the request fails ResourceExhausted and the
/// next one may succeed once there is room.
pub fn is_disk_full(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded
    )
}

/// The I/O error a redb error carries, if it is one.
pub fn io_error(e: &redb::Error) -> Option<&io::Error> {
    match e {
        redb::Error::Io(source) => Some(source),
        _ => None,
    }
}

/// `From` each of redb's error types for `$error`, boxed in its `$variant(Box<redb::Error>)`.
#[macro_export]
macro_rules! from_redb {
    ($error:ty, $variant:path) => {
        $crate::from_redb!(@each $error, $variant, redb::Error, redb::DatabaseError,
            redb::TransactionError, redb::TableError, redb::StorageError, redb::CommitError);
    };
    (@each $error:ty, $variant:path, $($t:ty),*) => {$(
        impl From<$t> for $error {
            fn from(e: $t) -> Self {
                $variant(Box::new(redb::Error::from(e)))
            }
        }
    )*};
}

/// A private copy of a store file, in a directory of its own under the temp dir, removed on
/// drop. redb locks the file a running daemon holds open; a copy taken during a commit reads as
/// the last whole commit, so a check can read beside a live daemon or without one.
pub struct ReadCopy {
    dir: PathBuf,
    file: PathBuf,
}

impl ReadCopy {
    /// Copies `src`, named `tag` plus this process's id; `None` when there is no store yet.
    pub fn take(src: &Path, tag: &str) -> io::Result<Option<ReadCopy>> {
        if !src.exists() {
            return Ok(None);
        }
        let dir = std::env::temp_dir().join(format!("{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::DirBuilder::new().mode(0o700).create(&dir)?;
        let copy = ReadCopy {
            file: dir.join(src.file_name().unwrap_or(src.as_os_str())),
            dir,
        };
        std::fs::copy(src, &copy.file)?;
        Ok(Some(copy))
    }

    /// The directory the copy is in (its name is the original's).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn file(&self) -> &Path {
        &self.file
    }
}

impl Drop for ReadCopy {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

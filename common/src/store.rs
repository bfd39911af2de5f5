//! What both daemons' redb stores share (feature `redb`; the pod shim has no store): which errors
//! mean a full disk, and the conversion of redb's error types into a crate's own error.

use std::io;

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

//! End-to-end harness for podshim: starts a private containerd 2.x (own root, state, sockets, CNI
//! bridge and cgroup parent under a temp dir, the `config-snippets/conf.d/` drop-ins imported, our
//! shim on its PATH), imports locally built images and drives containerd's CRI as kubelet does.
#![deny(unsafe_code)]

#[cfg(test)]
mod arch_map;
pub mod bench_snapshots;
pub mod chaos;
pub mod containerd;
pub mod cri;
pub mod critest_images;
pub mod fstree;
pub mod images;
pub mod layout;
pub mod logs;
pub mod pod;
pub mod port;
pub mod registry;
pub mod release;
pub mod shared;
pub mod snapshotter;
pub mod stats;
pub mod streaming;
#[allow(unsafe_code)]
pub mod sys;

pub use containerd::{
    is_pauseless, is_podshim, is_sandboxer, shim_bin_dir, Containerd, Options, SnapshotterUse,
    HANDLER_PAUSELESS, HANDLER_PODSHIM, HANDLER_RUNC, HANDLER_SANDBOXER,
};
pub use cri::Cri;
pub use pod::{container, sh, with_memory_limit, Pod};
pub use release::{containerd_release, Release};

use std::future::Future;
use std::time::Duration;

/// Run `fut` with a deadline, turning the timeout into an error.
pub async fn with_timeout<T>(
    d: Duration,
    fut: impl Future<Output = anyhow::Result<T>>,
) -> anyhow::Result<T> {
    match tokio::time::timeout(d, fut).await {
        Ok(r) => r,
        Err(_) => anyhow::bail!("test case timed out after {d:?}"),
    }
}

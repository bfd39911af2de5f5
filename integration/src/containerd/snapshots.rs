//! A run's containerd snapshots API and garbage collection, and its podshim-snapshotter.

use std::collections::HashMap;
use std::time::Duration;

use anyhow::{Context, Result};
use containerd_client::services::v1::leases_client::LeasesClient;
use containerd_client::services::v1::{CreateRequest, DeleteRequest};

use super::Containerd;
use crate::snapshotter::{in_namespace, Daemon, Snapshots};

impl Containerd {
    /// Runs a garbage collection of containerd's metadata store and waits for it, including the
    /// removal of unreferenced snapshots from every snapshotter, as `ctr leases delete --sync`
    /// does: a throwaway lease deleted synchronously.
    ///
    /// Why tests need this: containerd's GC scheduler drops a deletion that commits while a
    /// collection is finishing (its event is older than the collection's end), so the removed
    /// snapshot waits for the next collection. On a node that comes with the next deletion; in a
    /// test that has finished, it never comes.
    pub async fn collect_garbage(&self) -> Result<()> {
        let mut leases = LeasesClient::new(crate::cri::unix_channel(
            self.sock.clone(),
            Duration::from_secs(60),
        )?);
        let id = format!("podshim-e2e-gc-{}", self.seq());
        leases
            .create(in_namespace(
                "default",
                CreateRequest {
                    id: id.clone(),
                    labels: HashMap::new(),
                },
            ))
            .await
            .context("leases Create")?;
        leases
            .delete(in_namespace("default", DeleteRequest { id, sync: true }))
            .await
            .context("leases Delete (sync)")?;
        Ok(())
    }

    /// containerd's snapshots service for `snapshotter` in `namespace`.
    pub fn snapshots(&self, snapshotter: &str, namespace: &str) -> Result<Snapshots> {
        Snapshots::connect(&self.sock, snapshotter, namespace)
    }

    /// What an operator does to switch the node's snapshotter setup: the snapshotter drop-in
    /// rewritten for `use_` (e.g. from `Registered` to the recommended `CriDefault`), then
    /// containerd restarted with its state; running pods stay.
    pub async fn switch_snapshotter_use(&mut self, use_: crate::SnapshotterUse) -> Result<()> {
        anyhow::ensure!(
            self.snapshotter.is_some() && use_ != crate::SnapshotterUse::Off,
            "switching needs this run's podshim-snapshotter and a setup that uses it"
        );
        let dropin = super::config::snapshotter_dropin(&self.dir, use_)?;
        self.kill_containerd().await?;
        std::fs::write(self.dir.join(super::config::SNAPSHOTTER_DROPIN), dropin)?;
        self.opts.snapshotter = use_;
        self.respawn().await
    }

    /// The run's podshim-snapshotter (an error if `opts.snapshotter` is `Off`).
    pub fn snapshotter_daemon(&self) -> Result<&Daemon> {
        self.snapshotter
            .as_ref()
            .context("this run has no podshim-snapshotter (Options::snapshotter is Off)")
    }

    pub fn snapshotter_daemon_mut(&mut self) -> Result<&mut Daemon> {
        self.snapshotter
            .as_mut()
            .context("this run has no podshim-snapshotter (Options::snapshotter is Off)")
    }
}

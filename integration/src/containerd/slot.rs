//! A run's bridge and pod subnet: slot `n` is bridge `psit<n>` and subnet `10.88.<n>.0/24`, held
//! by a lock file for the run's life so that parallel runs never share one.

use std::fs::{self, File};
use std::path::Path;

use anyhow::{anyhow, Result};

use crate::sys;

/// Slots 1 to this many (`slot-<n>.lock` in [`sys::LOCK_DIR`]).
const SLOTS: usize = 250;
/// Pod subnets are 10.88.<slot>.0/24 on a bridge `psit<slot>`; nothing is routed beyond the bridge.
const SUBNET_BASE: &str = "10.88";

pub(super) struct Slot {
    /// `psit<slot>`
    pub bridge: String,
    /// `10.88.<slot>`
    pub subnet_prefix: String,
    /// The CNI network's name (`podshim-e2e-<slot>`); also the prefix of libcni's cache files.
    pub network_name: String,
    /// Held while the run lives.
    pub lock: File,
}

impl Slot {
    /// Takes a free slot and records its bridge and network name in `dir` (for a later run that
    /// cleans up after this one, should it die).
    pub fn take(dir: &Path) -> Result<Slot> {
        let usable = |n: usize| {
            let s = n + 1;
            let bridge = format!("psit{s}");
            if sys::link_exists(&bridge) {
                // Left by a run that died: we hold its slot lock now.
                let _ = sys::link_delete(&bridge);
            }
            !sys::route_exists(&format!("{SUBNET_BASE}.{s}.0/24"))
        };
        if let Some((n, lock)) =
            sys::lease_number(SLOTS, |n| format!("slot-{}.lock", n + 1), usable)?
        {
            let s = n + 1;
            let bridge = format!("psit{s}");
            let network_name = format!("podshim-e2e-{s}");
            fs::write(dir.join("bridge"), &bridge)?;
            fs::write(dir.join("network-name"), &network_name)?;
            return Ok(Slot {
                bridge,
                subnet_prefix: format!("{SUBNET_BASE}.{s}"),
                network_name,
                lock,
            });
        }
        Err(anyhow!("no free bridge/subnet slot in {}", sys::LOCK_DIR))
    }
}

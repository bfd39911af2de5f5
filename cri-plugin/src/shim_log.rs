//! A pod shim's log: the shim library writes it to the FIFO `log` in its working directory and
//! blocks in `open` until someone reads; containerd reads it for the shims it starts, so this
//! daemon does for its own. Lines go to this daemon's log, tagged with the shim.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;

use log::{info, warn};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::unix::pipe;
use tokio::task::AbortHandle;

use crate::error::{Error, Result};

pub const FIFO_NAME: &str = "log";

#[derive(Default)]
pub struct ShimLogs {
    readers: Mutex<HashMap<String, AbortHandle>>,
}

impl ShimLogs {
    /// Creates `<bundle>/log` if needed and keeps reading it. Opened read-write: the reader never
    /// sees EOF between one writer and the next (a shim's `start` and its daemon), and opening
    /// does not wait for a writer.
    pub fn follow(&self, shim_id: &str, bundle: &Path) -> Result<()> {
        let path = bundle.join(FIFO_NAME);
        match nix::unistd::mkfifo(&path, nix::sys::stat::Mode::from_bits_truncate(0o600)) {
            Ok(()) | Err(nix::errno::Errno::EEXIST) => {}
            Err(e) => return Err(Error::io(format!("mkfifo {}", path.display()), e.into())),
        }
        let rx = pipe::OpenOptions::new()
            .read_write(true)
            .open_receiver(&path)
            .map_err(|e| Error::io(format!("open {}", path.display()), e))?;
        let id = shim_id.to_string();
        let task = tokio::spawn(async move {
            let mut lines = BufReader::new(rx).lines();
            loop {
                match lines.next_line().await {
                    Ok(Some(l)) => info!("shim {id}: {l}"),
                    Ok(None) => return,
                    Err(e) => {
                        warn!("shim {id} log: {e}");
                        return;
                    }
                }
            }
        });
        let old = self
            .readers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(shim_id.to_string(), task.abort_handle());
        if let Some(old) = old {
            old.abort();
        }
        Ok(())
    }

    pub fn forget(&self, shim_id: &str) {
        let h = self
            .readers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(shim_id);
        if let Some(h) = h {
            h.abort();
        }
    }
}

//! Requests that change what the shim holds run to their end, whoever is still waiting for them.
//!
//! ttrpc cancels a request's handler when its connection breaks (containerd killed or
//! restarted, podshim-sandboxer killed). An operation that changes a container, a process or the
//! sandbox runs as a task of its own instead, so it completes either way: the caller, back, finds
//! things as they are, never half made, left Starting, or with a holder nobody recorded.
//! One boxed task type for every operation: tokio's task machinery is compiled once, not per RPC.

use std::{future::Future, pin::Pin, sync::Arc};

use crate::{
    error::{Error, Result},
    log_scope::{self, Ids},
};

/// Runs `op(owner)` in a task of its own, in the log scope of `ids`, and answers its result if
/// anyone still waits.
pub async fn to_completion<S, T, F>(
    owner: &Arc<S>,
    ids: Option<Ids>,
    op: impl FnOnce(Arc<S>) -> F,
) -> Result<T>
where
    S: ?Sized,
    F: Future<Output = Result<T>> + Send + 'static,
    T: Send + 'static,
{
    let (tx, rx) = tokio::sync::oneshot::channel();
    let work = op(owner.clone());
    spawn_boxed(Box::pin(log_scope::scope(ids, async move {
        let _ = tx.send(work.await);
    })));
    rx.await
        .unwrap_or_else(|_| Err(Error::Other("request: the runtime went away".into())))
}

fn spawn_boxed(work: Pin<Box<dyn Future<Output = ()> + Send>>) {
    tokio::spawn(work);
}

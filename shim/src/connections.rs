//! The connections callers hold to this shim, counted so that the shim leaves only after they
//! hung up.
//!
//! containerd's ttrpc client (Go) can report "ttrpc: closed" for a call whose response has
//! already arrived when the server closes the connection right behind that response: the
//! calling goroutine waits for the response and for the client's closing in one `select`, and
//! takes either when both are ready. containerd forgives this for the task API's Shutdown, not
//! for ShutdownSandbox, where it fails a pause-less pod's RemovePodSandbox. Invariant: once its
//! last task and its sandbox are gone, the shim stops accepting and leaves only after its callers
//! closed their connections (containerd does as soon as it has its answers), or after a bound,
//! for a caller that keeps a connection open.

use std::{
    io,
    os::unix::net::UnixListener as StdUnixListener,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use containerd_shim_protos::ttrpc::r#async::transport::Listener;
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::{UnixListener, UnixStream},
    sync::watch,
};

/// How many accepted connections ttrpc still holds.
#[derive(Clone)]
pub struct OpenConnections(Arc<watch::Sender<usize>>);

impl Default for OpenConnections {
    fn default() -> Self {
        OpenConnections(Arc::new(watch::channel(0).0))
    }
}

impl OpenConnections {
    /// The ttrpc listener on `listener`, counting each connection until ttrpc drops it.
    pub fn listener(&self, listener: StdUnixListener) -> io::Result<Listener> {
        listener.set_nonblocking(true)?;
        let listener = UnixListener::from_std(listener)?;
        let open = self.clone();
        Ok(Listener::new(futures::stream::unfold(
            (listener, open),
            |(listener, open)| async move {
                let accepted = listener
                    .accept()
                    .await
                    .map(|(stream, _)| Counted::new(stream, &open));
                Some((accepted, (listener, open)))
            },
        )))
    }

    pub fn count(&self) -> usize {
        *self.0.borrow()
    }

    /// Waits until every counted connection is closed; false if some are still open after
    /// `bound`.
    pub async fn all_closed(&self, bound: Duration) -> bool {
        let mut rx = self.0.subscribe();
        let closed = tokio::time::timeout(bound, rx.wait_for(|n| *n == 0))
            .await
            .is_ok();
        closed
    }
}

/// An accepted connection that is counted while it lives.
struct Counted {
    stream: UnixStream,
    open: OpenConnections,
}

impl Counted {
    fn new(stream: UnixStream, open: &OpenConnections) -> Counted {
        open.0.send_modify(|n| *n += 1);
        Counted {
            stream,
            open: open.clone(),
        }
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.open.0.send_modify(|n| *n = n.saturating_sub(1));
    }
}

impl AsyncRead for Counted {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Counted {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn counts_connections_until_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sock");
        let open = OpenConnections::default();
        let mut listener = open
            .listener(StdUnixListener::bind(&path).unwrap())
            .unwrap();
        assert!(open.all_closed(Duration::from_millis(10)).await);

        let mut client = UnixStream::connect(&path).await.unwrap();
        let mut accepted = listener.next().await.unwrap().unwrap();
        assert_eq!(open.count(), 1);
        // Still a working stream both ways.
        client.write_all(b"ping").await.unwrap();
        let mut buf = [0u8; 4];
        accepted.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"ping");
        assert!(!open.all_closed(Duration::from_millis(20)).await);

        // The peer hanging up is not enough: the count follows what the server still holds.
        drop(client);
        assert_eq!(open.count(), 1);
        let waiter = tokio::spawn({
            let open = open.clone();
            async move { open.all_closed(Duration::from_secs(5)).await }
        });
        drop(accepted);
        assert!(waiter.await.unwrap());
        assert_eq!(open.count(), 0);
    }
}

//! Task events to containerd, in the order they happened.
//!
//! Operations queue an event and move on; one task forwards them to containerd's event service.
//! Events are advisory for containerd (CRI learns exits from Wait), so when containerd is away
//! long enough for the queue to fill, the newest events are dropped with a warning rather than
//! stalling the pod.

use std::time::SystemTime;

use containerd_shim::publisher::RemotePublisher;
use containerd_shim_protos::{
    protobuf::{well_known_types::timestamp::Timestamp, MessageDyn},
    ttrpc::context,
};
use log::warn;
use tokio::sync::mpsc;

const QUEUE: usize = 1024;

pub type Event = (&'static str, Box<dyn MessageDyn>);

#[derive(Clone)]
pub struct Events {
    tx: mpsc::Sender<Event>,
}

impl Events {
    /// An event queue whose other end the caller drains (tests, or [`Events::forward_to`]).
    pub fn channel() -> (Events, mpsc::Receiver<Event>) {
        let (tx, rx) = mpsc::channel(QUEUE);
        (Events { tx }, rx)
    }

    pub fn forward_to(publisher: RemotePublisher, namespace: String) -> Events {
        let (events, mut rx) = Self::channel();
        tokio::spawn(async move {
            while let Some((topic, event)) = rx.recv().await {
                let ctx = context::with_timeout(5_000_000_000);
                if let Err(e) = publisher.publish(ctx, topic, &namespace, event).await {
                    warn!("publish {topic}: {e}");
                }
            }
        });
        events
    }

    pub fn send(&self, topic: &'static str, event: impl MessageDyn) {
        if let Err(e) = self.tx.try_send((topic, Box::new(event))) {
            warn!("event {topic} dropped: {e}");
        }
    }
}

pub fn timestamp(t: SystemTime) -> Timestamp {
    let d = t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    Timestamp {
        seconds: d.as_secs() as i64,
        nanos: d.subsec_nanos() as i32,
        ..Default::default()
    }
}

//! Task events to containerd, in the order they happened.
//!
//! Operations queue an event and move on; one task forwards them to containerd's event service
//! (`Events.Forward` on containerd's ttrpc socket), reconnecting across a containerd restart.
//! Events are advisory for containerd (CRI learns exits from Wait), so an event that cannot be
//! delivered within [`DELIVERY_WINDOW`] is dropped with a warning rather than stalling the pod.
//!
//! Each event's type URL is a constant: asking protobuf's reflection for the name would build
//! its descriptor tables on the heap of every pod's shim.

use std::time::{Duration, SystemTime};

use containerd_shim_protos::{
    events::task::{
        TaskCreate, TaskDelete, TaskExecAdded, TaskExecStarted, TaskExit, TaskOOM, TaskPaused,
        TaskResumed, TaskStart,
    },
    protobuf::{
        well_known_types::{any::Any, timestamp::Timestamp},
        Message,
    },
    shim::{event::Envelope, events::ForwardRequest},
    shim_async::{Client, EventsClient},
    topics,
    ttrpc::context,
};
use log::warn;
use tokio::sync::mpsc;

const QUEUE: usize = 1024;
/// How long one event is retried while containerd is unreachable.
const DELIVERY_WINDOW: Duration = Duration::from_secs(30);
const RPC_TIMEOUT: Duration = Duration::from_secs(5);

/// A containerd task event: its topic and its protobuf type name.
pub trait TaskEvent: Message {
    const TOPIC: &'static str;
    const TYPE_URL: &'static str;
}

macro_rules! task_event {
    ($($t:ident => $topic:path),* $(,)?) => {$(
        impl TaskEvent for $t {
            const TOPIC: &'static str = $topic;
            const TYPE_URL: &'static str = concat!("containerd.events.", stringify!($t));
        }
    )*};
}

task_event! {
    TaskCreate => topics::TASK_CREATE_EVENT_TOPIC,
    TaskStart => topics::TASK_START_EVENT_TOPIC,
    TaskExit => topics::TASK_EXIT_EVENT_TOPIC,
    TaskDelete => topics::TASK_DELETE_EVENT_TOPIC,
    TaskOOM => topics::TASK_OOM_EVENT_TOPIC,
    TaskExecAdded => topics::TASK_EXEC_ADDED_EVENT_TOPIC,
    TaskExecStarted => topics::TASK_EXEC_STARTED_EVENT_TOPIC,
    TaskPaused => topics::TASK_PAUSED_EVENT_TOPIC,
    TaskResumed => topics::TASK_RESUMED_EVENT_TOPIC,
}

/// An event as queued: everything but the namespace, which the forwarder adds.
#[derive(Debug)]
pub struct Event {
    pub topic: &'static str,
    pub at: SystemTime,
    pub payload: Any,
}

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

    /// Forwards to containerd's ttrpc address (`TTRPC_ADDRESS`).
    pub fn forward_to(address: String, namespace: String) -> Events {
        let (events, rx) = Self::channel();
        tokio::spawn(forward(address, namespace, rx));
        events
    }

    pub fn send<E: TaskEvent>(&self, event: E) {
        let value = match event.write_to_bytes() {
            Ok(v) => v,
            Err(e) => {
                warn!("encode {}: {e}", E::TOPIC);
                return;
            }
        };
        let event = Event {
            topic: E::TOPIC,
            at: SystemTime::now(),
            payload: Any {
                type_url: E::TYPE_URL.to_string(),
                value,
                ..Default::default()
            },
        };
        if let Err(e) = self.tx.try_send(event) {
            warn!("event dropped, queue full or closed: {e}");
        }
    }
}

async fn forward(address: String, namespace: String, mut rx: mpsc::Receiver<Event>) {
    let address = match address.strip_prefix("unix://") {
        Some(_) => address,
        None => format!("unix://{address}"),
    };
    let mut client: Option<EventsClient> = None;
    while let Some(event) = rx.recv().await {
        let topic = event.topic;
        let request = ForwardRequest {
            envelope: Some(Envelope {
                timestamp: Some(timestamp(event.at)).into(),
                namespace: namespace.clone(),
                topic: topic.to_string(),
                event: Some(event.payload).into(),
                ..Default::default()
            })
            .into(),
            ..Default::default()
        };
        let deadline = tokio::time::Instant::now() + DELIVERY_WINDOW;
        let mut backoff = Duration::from_millis(100);
        loop {
            if client.is_none() {
                client = Client::connect(&address).await.ok().map(EventsClient::new);
            }
            if let Some(c) = &client {
                let ctx = context::with_timeout(RPC_TIMEOUT.as_nanos() as i64);
                match c.forward(ctx, &request).await {
                    Ok(_) => break,
                    Err(e) => {
                        warn!("forward {topic}: {e}");
                        client = None;
                    }
                }
            }
            if tokio::time::Instant::now() + backoff > deadline {
                warn!("containerd unreachable for {DELIVERY_WINDOW:?}: {topic} event dropped");
                break;
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
    }
}

pub fn timestamp(t: SystemTime) -> Timestamp {
    let t = podshim_common::time::Timestamp::from(t);
    Timestamp {
        seconds: t.secs,
        nanos: t.nanos,
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use containerd_shim_protos::protobuf::MessageFull;

    use super::*;

    fn name<M: MessageFull>() -> String {
        M::descriptor().full_name().to_string()
    }

    #[test]
    fn constant_type_urls_are_the_protobuf_names() {
        assert_eq!(TaskCreate::TYPE_URL, name::<TaskCreate>());
        assert_eq!(TaskStart::TYPE_URL, name::<TaskStart>());
        assert_eq!(TaskExit::TYPE_URL, name::<TaskExit>());
        assert_eq!(TaskDelete::TYPE_URL, name::<TaskDelete>());
        assert_eq!(TaskOOM::TYPE_URL, name::<TaskOOM>());
        assert_eq!(TaskExecAdded::TYPE_URL, name::<TaskExecAdded>());
        assert_eq!(TaskExecStarted::TYPE_URL, name::<TaskExecStarted>());
        assert_eq!(TaskPaused::TYPE_URL, name::<TaskPaused>());
        assert_eq!(TaskResumed::TYPE_URL, name::<TaskResumed>());
    }

    #[tokio::test(flavor = "current_thread")]
    async fn events_queue_in_order_with_payload() {
        let (events, mut rx) = Events::channel();
        events.send(TaskStart {
            container_id: "c1".into(),
            pid: 7,
            ..Default::default()
        });
        events.send(TaskExit {
            container_id: "c1".into(),
            exit_status: 3,
            ..Default::default()
        });
        let first = rx.recv().await.unwrap();
        assert_eq!(first.topic, "/tasks/start");
        assert_eq!(first.payload.type_url, "containerd.events.TaskStart");
        let start = TaskStart::parse_from_bytes(&first.payload.value).unwrap();
        assert_eq!((start.container_id.as_str(), start.pid), ("c1", 7));
        let second = rx.recv().await.unwrap();
        assert_eq!(second.topic, "/tasks/exit");
        assert_eq!(
            TaskExit::parse_from_bytes(&second.payload.value)
                .unwrap()
                .exit_status,
            3
        );
    }
}

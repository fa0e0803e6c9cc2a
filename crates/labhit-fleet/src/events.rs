//! The server's one subscription to the fleet's task events, routed to the dispatches that
//! wait for them.
//!
//! Every dispatch needs its task's log lines and reply (`labhit.log.<task>`,
//! `labhit.done.<task>` on the events stream). A consumer per task cost `nats-server` a
//! consumer creation and deletion per stage, the slowest JetStream requests of a dispatch.
//! Instead, a [`Router`] holds one ordered consumer over every task's events, made on the
//! first dispatch at the stream's next sequence, and hands each event to the dispatch
//! registered for its task. A dispatch registers before it publishes its task, so no event of
//! it can come first; events of no registered task (another server's, or a duplicate after
//! the dispatch ended) are dropped. When the subscription ends for good, every waiting
//! dispatch sees its events end (an error naming the task) and the next dispatch subscribes
//! again.
//!
//! A fleet has one server (`labhit serve --nats`), which is the one that dispatches every
//! task, so it receives no event it does not need; servers sharing a NATS system would each
//! receive all of them.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_nats::jetstream::consumer::{DeliverPolicy, push};
use async_nats::jetstream::{Message, stream::Stream};
use futures_util::StreamExt as _;
use tokio::sync::mpsc;

use crate::setup::{FleetError, nats};

/// The dispatches waiting for events, by task key; `None` once the subscription ended (its
/// routes dropped, so that their dispatches see their events end).
type Routes = Arc<Mutex<Option<HashMap<String, mpsc::UnboundedSender<Message>>>>>;

/// One subscription to the events stream and where its events go (see the module
/// documentation). Cheap to clone: clones share the subscription.
#[derive(Clone, Default)]
pub(crate) struct Router {
    /// The routes of the running subscription, if one was made.
    current: Arc<tokio::sync::Mutex<Option<Routes>>>,
}

/// A dispatch's events, until dropped.
pub(crate) struct Registration {
    key: String,
    routes: Routes,
    received: mpsc::UnboundedReceiver<Message>,
}

impl Registration {
    /// The next event of the task; `None` when the subscription ended.
    pub(crate) async fn next(&mut self) -> Option<Message> {
        self.received.recv().await
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        if let Ok(mut routes) = self.routes.lock()
            && let Some(routes) = routes.as_mut()
        {
            routes.remove(&self.key);
        }
    }
}

impl Router {
    /// Routes the events of task `key` to the returned registration from now on,
    /// subscribing to `events` first if there is no running subscription.
    pub(crate) async fn register(
        &self,
        client: &async_nats::Client,
        events: &Stream,
        key: &str,
    ) -> Result<Registration, FleetError> {
        let mut current = self.current.lock().await;
        // Into the running subscription's routes; if it ended, into a new one's.
        for _ in 0..2 {
            let routes = match current.as_ref() {
                Some(routes) => Arc::clone(routes),
                None => {
                    let routes = subscribe(client, events).await?;
                    *current = Some(Arc::clone(&routes));
                    routes
                }
            };
            let received = match routes.lock() {
                Ok(mut held) => held.as_mut().map(|held| {
                    let (sender, received) = mpsc::unbounded_channel();
                    held.insert(key.to_owned(), sender);
                    received
                }),
                Err(_) => None,
            };
            if let Some(received) = received {
                return Ok(Registration {
                    key: key.to_owned(),
                    routes,
                    received,
                });
            }
            *current = None;
        }
        Err(FleetError::Nats {
            what: format!("listening to task `{key}`"),
            source: "the subscription to the task events ended as soon as it was made".into(),
        })
    }
}

/// Subscribes to every task's events from the stream's next sequence (no dispatch waits for
/// an earlier one) and starts routing them.
async fn subscribe(client: &async_nats::Client, events: &Stream) -> Result<Routes, FleetError> {
    let mut stream = events.clone();
    let start_sequence = stream
        .info()
        .await
        .map_err(nats("reading the events stream's state"))?
        .state
        .last_sequence
        + 1;
    // Push, not pull: an ordered push consumer notices a lost consumer (its stream's
    // leader died) after 10 s of missed heartbeats and makes a new one from the last
    // event received; the pull kind takes 30 s.
    let consumer = events
        .create_consumer(push::OrderedConfig {
            deliver_subject: client.new_inbox(),
            filter_subjects: vec!["labhit.log.>".to_owned(), "labhit.done.>".to_owned()],
            deliver_policy: DeliverPolicy::ByStartSequence { start_sequence },
            ..Default::default()
        })
        .await
        .map_err(nats("subscribing to the task events"))?;
    let mut messages = consumer
        .messages()
        .await
        .map_err(nats("subscribing to the task events"))?;
    let live: Routes = Arc::new(Mutex::new(Some(HashMap::new())));
    let routes = Arc::clone(&live);
    // However the task ends (the subscription's end, or its runtime shutting down, even
    // before it first ran), waiting dispatches see their events end and the next one
    // subscribes again.
    let end = EndOnDrop(Arc::clone(&routes));
    tokio::spawn(async move {
        let _end = end;
        // An ordered consumer recovers from a lost message or node by itself; what it
        // yields as an error is a hiccup it recovers from (given a moment), `None` the end.
        while let Some(event) = messages.next().await {
            let Ok(message) = event else {
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            };
            let key = task_key(&message.subject);
            if let (Some(key), Ok(routes)) = (key, routes.lock())
                && let Some(route) = routes.as_ref().and_then(|routes| routes.get(key))
            {
                // The dispatch may just have ended: nothing waits for this event.
                let _ = route.send(message);
            }
        }
    });
    Ok(live)
}

/// Marks a subscription's routes ended when dropped (see [`subscribe`]).
struct EndOnDrop(Routes);

impl Drop for EndOnDrop {
    fn drop(&mut self) {
        if let Ok(mut routes) = self.0.lock() {
            *routes = None;
        }
    }
}

/// The task key of an event's subject (`labhit.log.<key>`, `labhit.done.<key>`).
fn task_key(subject: &str) -> Option<&str> {
    subject
        .strip_prefix("labhit.log.")
        .or_else(|| subject.strip_prefix("labhit.done."))
}

#[cfg(test)]
mod tests {
    use super::task_key;

    #[test]
    fn an_events_subject_names_its_task() {
        let key = "0191e1de-7f00-7000-8000-000000000000.build.1";
        assert_eq!(task_key(&format!("labhit.log.{key}")), Some(key));
        assert_eq!(task_key(&format!("labhit.done.{key}")), Some(key));
        assert_eq!(task_key(&format!("labhit.cancel.{key}")), None);
    }
}

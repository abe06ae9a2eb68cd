//! STEPPING STONE, replaced by the durable `queue.rs` (`OutboundQueue`) when it merges: an in-memory
//! sender per (local domain, remote domain) pair that dials through a [`Dialer`], writes stanzas in order,
//! bounces what it cannot send (RFC 6120 sections 8.3.3.15 remote-server-not-found and 8.3.3.16
//! remote-server-timeout) and closes the link after `[s2s] idle_timeout_seconds` of silence.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::mpsc;

use super::link::{DialError, Dialer, Link};
use crate::router::Router;
use crate::router::routes::RemoteDelivery;
use crate::xmpp::{DefinedCondition, Envelope, WireStanza, ns};

type Pair = (String, String);

/// Per-pair senders.
pub struct MemorySender {
    dialer: Arc<dyn Dialer>,
    idle_timeout: Duration,
    max_stanzas: usize,
    pairs: Mutex<HashMap<Pair, mpsc::Sender<Envelope>>>,
}

impl MemorySender {
    pub fn new(
        dialer: Arc<dyn Dialer>,
        idle_timeout: Duration,
        max_stanzas: usize,
    ) -> Arc<MemorySender> {
        Arc::new(MemorySender {
            dialer,
            idle_timeout,
            max_stanzas: max_stanzas.max(1),
            pairs: Mutex::new(HashMap::new()),
        })
    }

    async fn run(
        self: Arc<Self>,
        router: Arc<Router>,
        pair: Pair,
        mut queue: mpsc::Receiver<Envelope>,
    ) {
        let (local, remote) = (&pair.0, &pair.1);
        let mut link: Option<Box<dyn Link>> = None;
        loop {
            let next = match tokio::time::timeout(self.idle_timeout, queue.recv()).await {
                Ok(Some(envelope)) => envelope,
                Ok(None) => break,
                Err(_) => {
                    // Idle: leave if nothing arrived meanwhile (checked under the lock `submit` holds).
                    let leaving = {
                        let mut pairs = self.pairs.lock().unwrap_or_else(PoisonError::into_inner);
                        queue.is_empty() && pairs.remove(&pair).is_some()
                    };
                    if leaving {
                        if let Some(link) = link.take() {
                            link.close().await;
                        }
                        return;
                    }
                    continue;
                }
            };
            let stanza = WireStanza::for_stream(&next.element, ns::SERVER);
            let mut sent = false;
            // One redial when a kept link turns out dead.
            for _ in 0..2 {
                if link.is_none() {
                    match self.dialer.dial(local, remote).await {
                        Ok(fresh) => link = Some(fresh),
                        Err(error) => {
                            tracing::info!(%local, %remote, %error, "s2s dial failed");
                            let condition = match error {
                                DialError::NotFound => DefinedCondition::RemoteServerNotFound,
                                _ => DefinedCondition::RemoteServerTimeout,
                            };
                            router.bounce(&next, condition.clone());
                            while let Ok(waiting) = queue.try_recv() {
                                router.bounce(&waiting, condition.clone());
                            }
                            sent = true;
                            break;
                        }
                    }
                }
                if let Some(open) = link.as_mut() {
                    if open.send(stanza.as_str()).await.is_ok() {
                        sent = true;
                        break;
                    }
                    link = None;
                }
            }
            if !sent {
                router.bounce(&next, DefinedCondition::RemoteServerTimeout);
            }
        }
    }
}

impl RemoteDelivery for MemorySender {
    fn submit(
        self: Arc<Self>,
        router: &Arc<Router>,
        envelope: Envelope,
    ) -> Result<(), DefinedCondition> {
        let (Some(from), Some(to)) = (&envelope.from, &envelope.to) else {
            return Err(DefinedCondition::BadRequest);
        };
        let pair = (from.domain().to_string(), to.domain().to_string());
        let mut pairs = self.pairs.lock().unwrap_or_else(PoisonError::into_inner);
        let sender = pairs.entry(pair.clone()).or_insert_with(|| {
            let (tx, rx) = mpsc::channel(self.max_stanzas);
            tokio::spawn(self.clone().run(router.clone(), pair, rx));
            tx
        });
        sender
            .try_send(envelope)
            .map_err(|_| DefinedCondition::ResourceConstraint)
    }
}

//! The router's side of the outbound queue (RFC 6120 section 10.4: a stanza for a remote domain goes
//! over a server-to-server stream): [`QueueDelivery`] queues what `Route::Remote` routes, and
//! [`RouterBounces`] answers what the queue gives up on to its sender with a stanza error
//! (sections 8.3.3.15 `remote-server-not-found`, 8.3.3.16 `remote-server-timeout`), never answering an
//! error stanza (section 8.3.1).

use std::sync::{Arc, Weak};

use async_trait::async_trait;

use super::queue::{BounceSink, OutboundQueue};
use crate::router::Router;
use crate::router::routes::RemoteDelivery;
use crate::xmpp::packed::parse_on_stream;
use crate::xmpp::{DefinedCondition, Envelope, WireStanza, ns, renamespace};

/// Queues stanzas for remote domains in the durable [`OutboundQueue`].
#[derive(Debug, Clone)]
pub struct QueueDelivery {
    queue: OutboundQueue,
}

impl QueueDelivery {
    pub fn new(queue: OutboundQueue) -> QueueDelivery {
        QueueDelivery { queue }
    }
}

#[async_trait]
impl RemoteDelivery for QueueDelivery {
    async fn submit(&self, envelope: &Envelope) -> Result<(), DefinedCondition> {
        let (Some(from), Some(to)) = (&envelope.from, &envelope.to) else {
            return Err(DefinedCondition::BadRequest);
        };
        // Queued as it is written on the stream: `jabber:server` content without `xmlns`.
        let stanza = WireStanza::for_stream(&envelope.element, ns::SERVER);
        self.queue
            .submit(
                from.domain().as_str(),
                to.domain().as_str(),
                &from.to_string(),
                stanza.as_str(),
            )
            .await
            .map_err(|error| {
                tracing::warn!(%error, "s2s stanza not queued");
                error.condition()
            })
    }
}

/// Bounces through the router. Holds it weakly: the router holds the queue (through
/// [`QueueDelivery`]), which holds this.
#[derive(Debug)]
pub struct RouterBounces {
    router: Weak<Router>,
}

impl RouterBounces {
    pub fn new(router: &Arc<Router>) -> RouterBounces {
        RouterBounces {
            router: Arc::downgrade(router),
        }
    }
}

impl BounceSink for RouterBounces {
    fn bounce(&self, stanza: &str, condition: DefinedCondition) {
        let Some(router) = self.router.upgrade() else {
            return;
        };
        let Some(envelope) = parse_on_stream(stanza, ns::SERVER)
            .map(|element| renamespace(element, ns::SERVER, ns::CLIENT))
            .and_then(|element| Envelope::parse(element).ok())
        else {
            tracing::warn!("a queued s2s stanza does not parse; dropped without a bounce");
            return;
        };
        // `Router::bounce` answers nothing for an error stanza, so bounces cannot loop.
        router.bounce(&envelope, condition);
    }
}

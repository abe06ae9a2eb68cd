//! The task of one bound client session (RFC 6120 sections 8 and 10): reads stanzas from the client, checks
//! and stamps their `from`, hands them to the features and the router, and writes what the router queues.
//!
//! One task owns the socket; the router reaches it only through its channel. Idle sessions are pinged
//! (XEP-0199 section 4.2) and closed if they stay silent; a session sending faster than the configured rate
//! is closed with `<policy-violation/>`; both end only this stream. A client that stops reading is ended by
//! the socket's write deadline (`[c2s] write_timeout_seconds`, see `net::write_deadline`), and whatever was
//! queued for it and not written is routed again once it is gone, as for any resource that went offline
//! (RFC 6121 section 8.5.3.2).

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::Instant;

use super::negotiation::{Bound, random_id};
use crate::features::{self, ClientSession};
use crate::net::transport::Transport;
use crate::router::events::DeliveryEvent;
use crate::router::mailbox::Mailbox;
use crate::router::{Router, SessionCommand};
use crate::xmpp::Envelope;
use crate::xmpp::WireStanza;
use crate::xmpp::error::{StreamError, StreamErrorCondition};
use crate::xmpp::stream::{Frame, XmlStream};
use crate::xmpp::{Addressing, DefinedCondition, Element, EnvelopeError, Jid, StanzaKind};

/// Most stanzas written to the client in one go.
const WRITE_BATCH_STANZAS: usize = 64;
/// A batch stops growing once it holds this many bytes: each write must make progress within the write
/// deadline, and a smaller write is one a slow but live client can take in time.
const WRITE_BATCH_BYTES: usize = 64 * 1024;

/// Runs a bound session until the client leaves, misbehaves, is replaced, or the server stops.
///
/// This future is what an idle session is made of, so it only waits; whatever woke it is handled in a
/// boxed future. A future is as large as its largest await, and the writes, the stanza handling and the
/// end of the session would otherwise be paid for by every idle session all the time.
///
/// A plain function returning an `async move` block rather than an `async fn`: an async fn moves each
/// argument into a local at its start and keeps both slots (rustc issue 62958), which held the stream
/// twice. For the same reason `bound` is used field by field, never destructured into new locals.
#[allow(clippy::manual_async_fn)] // deliberate: see above
pub fn run<S>(router: Arc<Router>, mut bound: Bound<S>) -> impl Future<Output = ()>
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    async move {
        let ping_interval = router.context.config.ping_interval;
        let mut ping_timer =
            tokio::time::interval_at(Instant::now() + ping_interval, ping_interval);
        let mut live = Live {
            session: ClientSession::new(bound.jid),
            flood: FloodGuard::new(router.context.config.stanzas_per_second),
            ping_interval,
            last_heard: Instant::now(),
            pending_ping: None,
            unwritten: Vec::new(),
        };
        // Boxed: awaited once, it should not widen the idle session's future.
        Box::pin(router.emit(DeliveryEvent::SessionBound {
            jid: &live.session.jid,
        }))
        .await;

        let end: Ending = loop {
            let wake = tokio::select! {
                command = bound.commands.recv() => Wake::Command(command),
                frame = bound.stream.next() => Wake::Frame(frame),
                _ = ping_timer.tick() => Wake::PingDue,
            };
            let step =
                Box::pin(live.act(&router, &mut bound.stream, &mut bound.commands, wake)).await;
            if let Some(end) = step {
                break end;
            }
        };
        Box::pin(finish(
            router,
            &mut bound.stream,
            &mut bound.commands,
            bound.handle.id,
            live,
            end,
        ))
        .await;
    }
}

/// Why a session ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ending {
    /// The client sent its closing tag; ours answers it once the session is finished.
    PeerClosed,
    /// The connection failed or the session's mailbox closed: there is nothing more to write.
    Gone,
    /// We end the stream with this error.
    Error(StreamErrorCondition),
}

/// Ends the session: the stream error if there is one, unbinding, routing again what was queued and not
/// written, unavailable presence, and then, when the client closed its stream, our closing tag. Closing
/// last means that once the client has read it, the session is gone from the router (what is sent to the
/// user from then on is stored offline, not written to a stream that is closing) and its contacts were told
/// it is unavailable. Every write here is bounded by the socket's write deadline.
async fn finish<S>(
    router: Arc<Router>,
    stream: &mut XmlStream<Transport<S>>,
    commands: &mut Mailbox<SessionCommand>,
    session_id: u64,
    live: Live,
    end: Ending,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    let Live {
        mut session,
        unwritten,
        ..
    } = live;
    if let Ending::Error(condition) = end {
        let _ = stream
            .send_error(&StreamError::Condition {
                condition,
                text: None,
            })
            .await;
    }
    router
        .sessions
        .unbind(&session.bare, session.jid.resource().as_str(), session_id);
    // Closed after unbinding: a sender that still found this session is refused from here on and takes
    // the offline path itself, and what it queued before is in `queued`. Nothing falls in between.
    let queued = commands
        .close()
        .into_iter()
        .filter_map(|command| match command {
            SessionCommand::Stanza(stanza) => Some(stanza),
            _ => None,
        });
    reroute(&router, unwritten.into_iter().chain(queued)).await;
    // A replaced session's resource now belongs to its successor: announcing it unavailable would
    // contradict the new session's presence (RFC 6120 section 7.7.2.2).
    if end != Ending::Error(StreamErrorCondition::Conflict) {
        features::presence::session_ended(&router, &mut session).await;
    }
    if end == Ending::PeerClosed {
        // RFC 6120 section 4.4: answer the client's closing tag with ours.
        let _ = stream.close().await;
    }
    router
        .emit(DeliveryEvent::SessionEnded { jid: &session.jid })
        .await;
    tracing::debug!(jid = %session.jid, ?end, "session ended");
}

/// Routes again, in order, stanzas that were queued for this session and not written, now that it is
/// unbound: the rules of RFC 6121 section 8.5.3.2 for a full JID with no such resource then apply (a
/// `chat` or `normal` message goes to the account's other resources or offline storage; a presence is
/// dropped; an IQ request is answered `service-unavailable` and an IQ response dropped); one sent to the
/// bare JID is delivered as such again (RFC 6121 section 8.5.2). A batch whose write
/// failed may have partly reached the client: it is routed again whole, so a message may arrive twice but
/// is never lost.
async fn reroute(router: &Arc<Router>, stanzas: impl Iterator<Item = WireStanza>) {
    for stanza in stanzas {
        let Some(element) = stanza.unpack() else {
            continue;
        };
        match Envelope::parse(element) {
            Ok(envelope) => {
                Box::pin(router.route(envelope)).await;
            }
            Err(e) => tracing::warn!(error = %e, "a queued stanza could not be routed again"),
        }
    }
}

/// What woke the session's wait. Server shutdown arrives as a command too ([`SessionCommand::Shutdown`]),
/// so an idle session does not hold a future waiting for it (160 bytes each).
enum Wake {
    Command(Option<SessionCommand>),
    Frame(Result<Frame, StreamError>),
    PingDue,
}

/// The state a session keeps between wakes.
struct Live {
    session: ClientSession,
    flood: FloodGuard,
    ping_interval: Duration,
    last_heard: Instant,
    /// The id of our unanswered ping, if any.
    pending_ping: Option<String>,
    /// The batch whose write failed, to be routed again when the session ends.
    unwritten: Vec<WireStanza>,
}

impl Live {
    /// Handles one wake. `Some(end)` ends the session.
    async fn act<S>(
        &mut self,
        router: &Arc<Router>,
        stream: &mut XmlStream<Transport<S>>,
        commands: &mut Mailbox<SessionCommand>,
        wake: Wake,
    ) -> Option<Ending>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send,
    {
        match wake {
            Wake::Command(Some(SessionCommand::Stanza(first))) => {
                // Take whatever else is already queued, so a busy session writes in batches.
                let mut bytes = first.wire_bytes();
                let mut batch = vec![first];
                let mut then = None;
                while batch.len() < WRITE_BATCH_STANZAS && bytes < WRITE_BATCH_BYTES {
                    match commands.try_recv() {
                        Some(SessionCommand::Stanza(next)) => {
                            bytes += next.wire_bytes();
                            batch.push(next);
                        }
                        Some(other) => {
                            then = Some(other);
                            break;
                        }
                        None => break,
                    }
                }
                if stream.send_wire(&batch).await.is_err() {
                    // Failed or past the write deadline: the client is not reading. What did not reach it
                    // is routed elsewhere once the session is unbound (see `finish`).
                    self.unwritten = batch;
                    return Some(Ending::Gone);
                }
                then.and_then(ending)
            }
            Wake::Command(Some(command)) => ending(command),
            Wake::Command(None) => Some(Ending::Gone),
            Wake::Frame(Ok(Frame::Element(element))) => {
                self.last_heard = Instant::now();
                self.pending_ping = None;
                if !self.flood.allows(self.last_heard) {
                    return Some(Ending::Error(StreamErrorCondition::PolicyViolation));
                }
                let own_jid = Jid::from(self.session.jid.clone());
                // Boxed again: the features' nested futures are large, and a session writing a batch
                // should not hold them.
                match Box::pin(handle_element(router, &mut self.session, &own_jid, element)).await {
                    Ok(()) => None,
                    Err(condition) => Some(Ending::Error(condition)),
                }
            }
            Wake::Frame(Ok(Frame::End)) => Some(Ending::PeerClosed),
            Wake::Frame(Err(e)) => Some(e.condition().map_or(Ending::Gone, Ending::Error)),
            Wake::PingDue => {
                if self.last_heard.elapsed() < self.ping_interval {
                    return None;
                }
                if self.pending_ping.is_some() {
                    return Some(Ending::Error(StreamErrorCondition::ConnectionTimeout));
                }
                let id = random_id();
                let jid = &self.session.jid;
                let ping = features::ping::request(&id, jid.domain().as_str(), &jid.to_string());
                if stream.send(&ping).await.is_err() {
                    return Some(Ending::Gone);
                }
                self.pending_ping = Some(id);
                None
            }
        }
    }
}

/// Checks one element from the client and passes it on. `Err` ends the stream with that condition.
async fn handle_element(
    router: &Arc<Router>,
    session: &mut ClientSession,
    own_jid: &Jid,
    element: Element,
) -> Result<(), StreamErrorCondition> {
    let addressing = match Addressing::read(&element) {
        Ok(addressing) => addressing,
        // RFC 6120 section 4.9.3.24: a first-level element we do not know.
        Err(EnvelopeError::NotAStanza(_)) => {
            return Err(StreamErrorCondition::UnsupportedStanzaType);
        }
        Err(EnvelopeError::MalformedJid { .. }) => {
            answer_error(router, session, &element, DefinedCondition::JidMalformed).await;
            return Ok(());
        }
        Err(EnvelopeError::BadRequest(_)) => {
            answer_error(router, session, &element, DefinedCondition::BadRequest).await;
            return Ok(());
        }
    };
    // RFC 6120 section 8.1.2.1: a client may only claim its own full or bare JID.
    if let Some(from) = &addressing.from
        && from != own_jid
        && !(from.resource().is_none() && from.to_bare() == session.bare_jid())
    {
        return Err(StreamErrorCondition::InvalidFrom);
    }
    let mut envelope = Envelope::from_parts(element, addressing);
    envelope.set_from(own_jid);
    // RFC 6120 section 10.3.1: a message without `to` is for the sender's own bare JID.
    if envelope.to.is_none() && matches!(envelope.kind, StanzaKind::Message(_)) {
        envelope.set_to(&Jid::from(session.bare_jid()));
    }
    let _ = features::from_client(router, session, envelope).await;
    Ok(())
}

/// Answers a stanza that could not be routed with a stanza error to this session only.
async fn answer_error(
    router: &Arc<Router>,
    session: &ClientSession,
    element: &Element,
    condition: DefinedCondition,
) {
    let error_type = crate::xmpp::error_type_for(&condition);
    if let Some(mut reply) = crate::xmpp::stanza::error_reply(element, error_type, condition, None)
    {
        crate::xmpp::remove_attribute(&mut reply, "from");
        crate::xmpp::set_attribute(&mut reply, "to", &session.jid.to_string());
        router
            .deliver_to_resource(&session.bare, session.jid.resource().as_str(), &reply)
            .await;
    }
}

/// The end a command other than a stanza asks for.
fn ending(command: SessionCommand) -> Option<Ending> {
    let condition = match command {
        SessionCommand::Stanza(_) => return None,
        SessionCommand::Replaced => StreamErrorCondition::Conflict,
        SessionCommand::Terminate => StreamErrorCondition::NotAuthorized,
        SessionCommand::Shutdown => StreamErrorCondition::SystemShutdown,
    };
    Some(Ending::Error(condition))
}

/// A token bucket over stanzas: `rate` per second with bursts of twice that.
struct FloodGuard {
    tokens: f64,
    capacity: f64,
    rate: f64,
    last: Instant,
}

impl FloodGuard {
    fn new(per_second: u32) -> FloodGuard {
        let rate = f64::from(per_second.max(1));
        FloodGuard {
            tokens: rate * 2.0,
            capacity: rate * 2.0,
            rate,
            last: Instant::now(),
        }
    }

    fn allows(&mut self, now: Instant) -> bool {
        let elapsed: Duration = now.saturating_duration_since(self.last);
        self.last = now;
        self.tokens = (self.tokens + elapsed.as_secs_f64() * self.rate).min(self.capacity);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flood_guard_allows_bursts_then_refuses_then_refills() {
        let start = Instant::now();
        let mut guard = FloodGuard::new(10);
        guard.last = start;
        let allowed = (0..100).filter(|_| guard.allows(start)).count();
        assert_eq!(allowed, 20, "burst of twice the rate");
        assert!(
            guard.allows(start + Duration::from_millis(200)),
            "refills over time"
        );
    }
}

//! The task of one bound client session (RFC 6120 sections 8 and 10): reads stanzas from the client, checks
//! and stamps their `from`, hands them to the features and the router, and writes what the router queues.
//!
//! One task owns the socket; the router reaches it only through its channel. Idle sessions are pinged
//! (XEP-0199 section 4.2) and closed if they stay silent; a session sending faster than the configured rate
//! is closed with `<policy-violation/>`; both end only this stream.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::Instant;
use xmpp_parsers::jid::Jid;
use xmpp_parsers::minidom::Element;
use xmpp_parsers::stanza_error::DefinedCondition;

use super::negotiation::{Bound, random_id};
use crate::features::{self, ClientSession};
use crate::net::shutdown::Shutdown;
use crate::router::envelope::{Addressing, EnvelopeError};
use crate::router::rules::StanzaKind;
use crate::router::{Envelope, Router, SessionCommand};
use crate::xmpp::error::{StreamError, StreamErrorCondition};
use crate::xmpp::stream::Frame;

/// Most stanzas written to the client in one go.
const WRITE_BATCH_STANZAS: usize = 64;

/// Runs a bound session until the client leaves, misbehaves, is replaced, or the server stops.
pub async fn run<S>(router: Arc<Router>, bound: Bound<S>, mut shutdown: Shutdown)
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    let Bound {
        mut stream,
        jid,
        handle,
        mut commands,
    } = bound;
    let mut session = ClientSession::new(jid.clone());
    let resource = jid.resource().to_string();
    let domain = jid.domain().to_string();
    let own_jid = Jid::from(jid.clone());
    let mut flood = FloodGuard::new(router.config.stanzas_per_second);
    let ping_interval = router.config.ping_interval;
    let mut ping_timer = tokio::time::interval_at(Instant::now() + ping_interval, ping_interval);
    let mut last_heard = Instant::now();
    let mut pending_ping: Option<String> = None;

    let end: Option<StreamErrorCondition> = loop {
        tokio::select! {
            _ = shutdown.wait() => break Some(StreamErrorCondition::SystemShutdown),
            command = commands.recv() => match command {
                Some(SessionCommand::Stanza(element)) => {
                    // Take whatever else is already queued, so a busy session writes in batches.
                    let mut batch = vec![*element];
                    let mut then = None;
                    while batch.len() < WRITE_BATCH_STANZAS {
                        match commands.try_recv() {
                            Ok(SessionCommand::Stanza(next)) => batch.push(*next),
                            Ok(other) => {
                                then = Some(other);
                                break;
                            }
                            Err(_) => break,
                        }
                    }
                    if stream.send_batch(&batch).await.is_err() {
                        break None;
                    }
                    match then {
                        Some(SessionCommand::Replaced) => break Some(StreamErrorCondition::Conflict),
                        Some(SessionCommand::Terminate) => break Some(StreamErrorCondition::NotAuthorized),
                        _ => {}
                    }
                }
                Some(SessionCommand::Replaced) => break Some(StreamErrorCondition::Conflict),
                Some(SessionCommand::Terminate) => break Some(StreamErrorCondition::NotAuthorized),
                None => break None,
            },
            frame = stream.next() => match frame {
                Ok(Frame::Element(element)) => {
                    last_heard = Instant::now();
                    pending_ping = None;
                    if !flood.allows(last_heard) {
                        break Some(StreamErrorCondition::PolicyViolation);
                    }
                    // Boxed: the features' nested futures are large, and an idle session should
                    // only hold them while a stanza is being handled.
                    if let Err(condition) =
                        Box::pin(handle_element(&router, &mut session, &own_jid, element)).await
                    {
                        break Some(condition);
                    }
                }
                Ok(Frame::End) => {
                    let _ = stream.close().await;
                    break None;
                }
                Err(e) => break e.condition(),
            },
            _ = ping_timer.tick() => {
                if last_heard.elapsed() < ping_interval {
                    continue;
                }
                if pending_ping.is_some() {
                    break Some(StreamErrorCondition::ConnectionTimeout);
                }
                let id = random_id();
                let ping = features::ping::request(&id, &domain, &jid.to_string());
                if stream.send(&ping).await.is_err() {
                    break None;
                }
                pending_ping = Some(id);
            }
        }
    };
    if let Some(condition) = end {
        let _ = stream
            .send_error(&StreamError::Condition {
                condition,
                text: None,
            })
            .await;
    }
    router.sessions.unbind(&session.bare, &resource, handle.id);
    // A replaced session's resource now belongs to its successor: announcing it unavailable would
    // contradict the new session's presence (RFC 6120 section 7.7.2.2).
    if end != Some(StreamErrorCondition::Conflict) {
        features::presence::session_ended(&router, &mut session).await;
    }
    tracing::debug!(%jid, ?end, "session ended");
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
            answer_error(router, session, &element, DefinedCondition::JidMalformed);
            return Ok(());
        }
        Err(EnvelopeError::BadRequest(_)) => {
            answer_error(router, session, &element, DefinedCondition::BadRequest);
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
    // RFC 6121 section 8.5.? : a message without `to` is for the sender's own bare JID.
    if envelope.to.is_none() && matches!(envelope.kind, StanzaKind::Message(_)) {
        envelope.set_to(&Jid::from(session.bare_jid()));
    }
    let _ = features::from_client(router, session, envelope).await;
    Ok(())
}

/// Answers a stanza that could not be routed with a stanza error to this session only.
fn answer_error(
    router: &Arc<Router>,
    session: &ClientSession,
    element: &Element,
    condition: DefinedCondition,
) {
    let error_type = crate::router::envelope::error_type_for(&condition);
    if let Some(mut reply) = crate::xmpp::stanza::error_reply(element, error_type, condition, None)
    {
        crate::router::envelope::remove_attribute(&mut reply, "from");
        crate::router::envelope::set_attribute(&mut reply, "to", &session.jid.to_string());
        router.send_to_session(&session.bare, session.jid.resource().as_str(), reply);
    }
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

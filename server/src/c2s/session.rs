//! A bound client session (RFC 6120 sections 8 and 10): reads stanzas from the client, checks and stamps
//! their `from`, hands them to the features and the router, and writes what the router queues.
//!
//! One task owns a [`Session`]: the client's state, its mailbox and, while one is attached, its
//! connection ([`ClientStream`]). The router reaches it only through the mailbox. Idle sessions are pinged
//! (XEP-0199 section 4.2) and closed if they stay silent; a session sending faster than the configured rate
//! is closed with `<policy-violation/>`; both end only this stream. A client that stops reading is ended by
//! the socket's write deadline (`[c2s] write_timeout_seconds`, see `net::write_deadline`), and whatever was
//! queued for it and not written is routed again once it is gone, as for any resource that went offline
//! (RFC 6121 section 8.5.3.2).
//!
//! XEP-0198 stream management (`features::stream_management`) is driven here: `<enable/>`, `<r/>` and
//! `<a/>` are answered in [`Session::on_nonza`], what is written is kept until the client acknowledges it
//! and a `<r/>` follows a write when no request is pending (section 4). A session that enabled
//! resumption and whose connection drops (or fails) without `</stream:stream>` does not end: it detaches
//! the connection and hibernates for `[c2s] resume_timeout_seconds` (section 5). While detached nothing is
//! written, what the router sends waits in the mailbox (bounded by `[limits] session_queue_bytes` as
//! ever), pings stop, and a command that ends the session still does. A new connection that resumes it
//! is handed over as [`SessionCommand::Resume`]: the session answers `<resumed/>`, writes again what the
//! client's `h` does not cover, then what waited. When the timeout passes, it ends as if the client had
//! left. A clean close, or a stream error we send, ends the session at once.
//!
//! XEP-0352 client state indication (`features::client_state`) is driven here too: `<inactive/>` and
//! `<active/>` are nonzas; while the client is inactive, what the router queues passes through the
//! policy's held-back queue before it is written, so a held stanza is not counted for stream management
//! until it is written; when the connection is lost, what is held joins what waits to be written, so it
//! goes out on resumption or is routed again (to offline storage for messages) when the session ends.
//!
//! Memory: an idle session is this task's future, which only waits (see [`run`]), plus the heap the
//! session points to: its connection behind one box (the XML stream, the socket, and TLS behind a box of
//! its own), the mailbox, the ping timer, and one null pointer each for stream management until it is
//! enabled and for the held-back queue while the client is active. `server/README.md` "Memory budget" has the whole picture.

use std::future::poll_fn;
use std::sync::Arc;

use std::pin::Pin;

use tokio::time::{Instant, Interval, Sleep};

use super::flood::FloodGuard;
use super::negotiation::{Bound, random_id};
use super::stream::{ClientStream, Inbound};
use crate::config::Config;
use crate::features::client_state::{self as csi, ClientState, HeldBack, Release};
use crate::features::stream_management::{self as sm, SmNonza, StreamManagement};
use crate::features::{self, ClientSession};
use crate::router::events::DeliveryEvent;
use crate::router::mailbox::Mailbox;
use crate::router::{Resumption, Router, SessionCommand, SessionHandle};
use crate::xmpp::error::{StreamError, StreamErrorCondition};
use crate::xmpp::{
    Addressing, DefinedCondition, Element, Envelope, EnvelopeError, Jid, StanzaKind, WireStanza,
};

/// Most stanzas written to the client in one go.
const WRITE_BATCH_STANZAS: usize = 64;
/// A batch stops growing once it holds this many bytes: each write must make progress within the write
/// deadline, and a smaller write is one a slow but live client can take in time.
const WRITE_BATCH_BYTES: usize = 64 * 1024;

/// Everything a bound session holds, in one place.
pub struct Session {
    /// What the features read and change: the JID, availability, directed presence (RFC 6121 sections
    /// 4.2 to 4.6).
    client: ClientSession,
    /// How the router reaches this session; its id tells this session's binding from a successor's.
    handle: SessionHandle,
    /// What the router queued for the client.
    commands: Mailbox<SessionCommand>,
    /// The client's connection, while one is attached.
    stream: Option<Box<dyn ClientStream>>,
    /// Stanzas taken from the mailbox and not written: the batch whose write failed, routed again when
    /// the session ends, or written first to a stream attached before that.
    unwritten: Vec<WireStanza>,
    flood: FloodGuard,
    ping: Ping,
    /// XEP-0198 state once the client enabled stream management: `None`, a null pointer, otherwise, so
    /// an idle session that never enables it pays nothing more.
    managed: Option<Box<Managed>>,
    /// XEP-0352: `Some` while the client said it is inactive, with what is held back for it; `None`, a
    /// null pointer, while it is active (clients start active, section 3).
    held: Option<Box<HeldBack>>,
}

/// Stream management of one session (XEP-0198) and what the session adds to it.
struct Managed {
    state: StreamManagement,
    /// While hibernating (section 5): when the session ends unless resumed. Boxed here so that the wait
    /// of an idle session does not hold a timer.
    resume_deadline: Option<Pin<Box<Sleep>>>,
    /// How long a hibernation waits for a resumption: `[c2s] resume_timeout_seconds`, or the client's
    /// shorter `max` (section 3).
    resume_timeout: std::time::Duration,
    /// While hibernating: when it began, for the longer wait once a push went out.
    hibernated_at: Option<Instant>,
    /// While hibernating and kept for push: the end of the longer wait, and whether the devices were
    /// already woken before it (the deadline fires first for that, then at the end).
    kept_for_push: Option<(Instant, bool)>,
    /// Most bytes of stanzas that may wait for an acknowledgement (`[limits] session_queue_bytes`): a
    /// client that never acknowledges cannot make the server hold more.
    unacked_limit: usize,
}

/// The server's side of XEP-0199 section 4.2: a client not heard from for a ping interval is pinged, and
/// one that has not answered by the next interval is gone.
struct Ping {
    /// Ticks every ping interval (its period).
    timer: Interval,
    last_heard: Instant,
    /// The id of our unanswered ping, if any.
    pending: Option<String>,
}

impl Session {
    /// The session of a stream that finished negotiation, with it attached.
    pub fn new(config: &Config, bound: Bound) -> Session {
        let interval = config.ping_interval;
        let now = Instant::now();
        Session {
            client: ClientSession::new(bound.jid),
            handle: bound.handle,
            commands: bound.commands,
            stream: Some(bound.stream),
            unwritten: Vec::new(),
            flood: FloodGuard::new(config.stanzas_per_second),
            ping: Ping {
                timer: tokio::time::interval_at(now + interval, interval),
                last_heard: now,
                pending: None,
            },
            managed: None,
            held: None,
        }
    }

    /// Attaches `stream`, as resumption does (XEP-0198 section 5): what waited is written to it first, in
    /// the order it was queued, and the ping clock starts again. Returns the stream this one replaces.
    pub fn attach(&mut self, stream: Box<dyn ClientStream>) -> Option<Box<dyn ClientStream>> {
        self.ping.last_heard = Instant::now();
        self.ping.pending = None;
        self.ping.timer.reset();
        self.stream.replace(stream)
    }

    /// Detaches the stream and returns it: from now on nothing is written, what the router sends waits in
    /// the mailbox (bounded by `[limits] session_queue_bytes`), pings stop, and a command that ends the
    /// session still ends it.
    pub fn detach(&mut self) -> Option<Box<dyn ClientStream>> {
        self.ping.pending = None;
        self.stream.take()
    }

    /// Whether a stream is attached.
    pub fn is_attached(&self) -> bool {
        self.stream.is_some()
    }

    /// Whether the client enabled resumption (XEP-0198 section 5) and a connection is attached, so losing
    /// it hibernates the session instead of ending it.
    fn can_hibernate(&self) -> bool {
        self.is_attached()
            && self
                .managed
                .as_ref()
                .is_some_and(|managed| managed.state.resume_id().is_some())
    }

    /// The connection is gone but resumption was enabled (XEP-0198 section 5): detach it and wait for
    /// a resumption until the resume timeout; the session stays bound, so what is sent to it queues.
    async fn hibernate(&mut self, router: &Arc<Router>) {
        drop(self.detach());
        // What was held for an inactive client was taken from the mailbox and not written: it waits
        // with the rest, so it is written on resumption or routed again at the end, never lost.
        if let Some(held) = self.held.as_mut() {
            self.unwritten.extend(held.drain());
        }
        if let Some(managed) = self.managed.as_mut() {
            managed.resume_deadline = Some(Box::pin(tokio::time::sleep(managed.resume_timeout)));
            managed.hibernated_at = Some(Instant::now());
            managed.kept_for_push = None;
        }
        router.sessions.set_detached(
            &self.client.bare,
            self.client.jid.resource().as_str(),
            self.handle.id,
            true,
        );
        let unacknowledged = match self.managed.as_mut() {
            Some(managed) => managed.state.unacked_slice(),
            None => &[],
        };
        router
            .emit(DeliveryEvent::SessionHibernated {
                jid: &self.client.jid,
                unacknowledged,
                unwritten: &self.unwritten,
            })
            .await;
        tracing::debug!(jid = %self.client.jid, "session hibernated");
    }

    /// A push went out for this hibernated session (XEP-0357 with XEP-0198 section 5): it now waits
    /// `[c2s] push_resume_timeout` from the start of hibernation, and its deadline first fires
    /// [`wake_margin`] before that, to wake the devices. Only the first call counts.
    fn keep_for_push(&mut self, router: &Arc<Router>) {
        let Some(managed) = self.managed.as_mut() else {
            return;
        };
        let (Some(since), Some(deadline), None) = (
            managed.hibernated_at,
            managed.resume_deadline.as_mut(),
            managed.kept_for_push,
        ) else {
            return;
        };
        let timeout = router.context.config.push_resume_timeout;
        let end = since + timeout;
        let wake_at = end - wake_margin(timeout);
        let woken = wake_at <= Instant::now();
        deadline.as_mut().reset(if woken { end } else { wake_at });
        managed.kept_for_push = Some((end, woken));
        tracing::debug!(jid = %self.client.jid, "hibernated session kept for push");
    }

    /// The deadline of a session kept for push fired before its end: tell the subscribers (push wakes
    /// the devices) and wait for the end. `false` when the session's time is up.
    async fn warn_before_expiry(&mut self, router: &Arc<Router>) -> bool {
        let Some(managed) = self.managed.as_mut() else {
            return false;
        };
        let (Some((end, false)), Some(deadline)) =
            (managed.kept_for_push, managed.resume_deadline.as_mut())
        else {
            return false;
        };
        deadline.as_mut().reset(end);
        managed.kept_for_push = Some((end, true));
        router
            .emit(DeliveryEvent::HibernationExpiring {
                jid: &self.client.jid,
            })
            .await;
        true
    }
}

/// How long before the end of a hibernation kept for push the devices are woken: ten minutes, or a
/// tenth of a shorter wait, so that a client has time to reconnect and resume.
fn wake_margin(timeout: std::time::Duration) -> std::time::Duration {
    std::time::Duration::from_secs(600).min(timeout / 10)
}

/// Runs a bound session until the client leaves, misbehaves, is replaced, or the server stops.
///
/// This future is what an idle session is made of, so it only waits; whatever woke it is handled in a
/// boxed future. A future is as large as its largest await, and the writes, the stanza handling and the
/// end of the session would otherwise be paid for by every idle session all the time.
///
/// A plain function returning an `async move` block rather than an `async fn`: an async fn moves each
/// argument into a local at its start and keeps both slots (rustc issue 62958), which would hold the
/// session twice.
#[allow(clippy::manual_async_fn)] // deliberate: see above
pub fn run(router: Arc<Router>, mut session: Session) -> impl Future<Output = ()> {
    async move {
        // Boxed: awaited once, it should not widen the idle session's future.
        Box::pin(router.emit(DeliveryEvent::SessionBound {
            jid: &session.client.jid,
        }))
        .await;
        let end: Ending = loop {
            let wake = session.wait().await;
            if let Some(end) = Box::pin(session.step(&router, wake)).await {
                break end;
            }
        };
        Box::pin(session.finish(&router, end)).await;
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

/// What woke the session's wait. Server shutdown arrives as a command too ([`SessionCommand::Shutdown`]),
/// so an idle session does not hold a future waiting for it (160 bytes each).
#[derive(Debug)]
enum Wake {
    Command(Option<SessionCommand>),
    Inbound(Result<Inbound, StreamError>),
    PingDue,
    /// A stream is attached and stanzas wait in `unwritten`: they go before anything newer.
    Flush,
    /// A hibernated session was not resumed in time (XEP-0198 section 5).
    ResumeTimeout,
}

impl Session {
    /// Waits for the next thing to do: while a stream is attached, a command, something from the client,
    /// or the ping timer; while none is, only a command that ends the session, since what is to be
    /// written waits in the mailbox.
    async fn wait(&mut self) -> Wake {
        let Some(stream) = self.stream.as_mut() else {
            let command = self
                .commands
                .recv_first(|command| !matches!(command, SessionCommand::Stanza(_)));
            let deadline = self
                .managed
                .as_mut()
                .and_then(|managed| managed.resume_deadline.as_mut());
            return match deadline {
                Some(deadline) => tokio::select! {
                    command = command => Wake::Command(command),
                    () = deadline.as_mut() => Wake::ResumeTimeout,
                },
                None => Wake::Command(command.await),
            };
        };
        if !self.unwritten.is_empty() {
            return Wake::Flush;
        }
        tokio::select! {
            command = self.commands.recv() => Wake::Command(command),
            inbound = poll_fn(|cx| stream.poll_inbound(cx)) => Wake::Inbound(inbound),
            _ = self.ping.timer.tick() => Wake::PingDue,
        }
    }

    /// Handles one wake, and hibernates instead of ending when the connection was lost without a closing
    /// tag or a stream error of ours and the client asked for resumption (XEP-0198 section 5). `Some(end)`
    /// ends the session.
    async fn step(&mut self, router: &Arc<Router>, wake: Wake) -> Option<Ending> {
        let end = self.act(router, wake).await?;
        if end == Ending::Gone && self.can_hibernate() {
            self.hibernate(router).await;
            return None;
        }
        Some(end)
    }

    /// Handles one wake. `Some(end)` ends the session.
    async fn act(&mut self, router: &Arc<Router>, wake: Wake) -> Option<Ending> {
        match wake {
            Wake::Command(Some(SessionCommand::Stanza(first))) => {
                let (batch, then) = self.take_batch(first);
                let batch = self.hold_back(batch);
                if !batch.is_empty()
                    && let Err(end) = self.write(batch).await
                {
                    return Some(end);
                }
                match then {
                    Some(command) => self.command(router, command).await,
                    None => None,
                }
            }
            Wake::Command(Some(command)) => self.command(router, command).await,
            Wake::Command(None) => Some(Ending::Gone),
            Wake::ResumeTimeout => {
                if self.warn_before_expiry(router).await {
                    return None;
                }
                tracing::debug!(jid = %self.client.jid, "not resumed in time");
                Some(Ending::Gone)
            }
            Wake::Flush => {
                let batch = std::mem::take(&mut self.unwritten);
                self.write(batch).await.err()
            }
            Wake::Inbound(Ok(Inbound::Stanza(element))) => {
                if !self.heard() {
                    return Some(Ending::Error(StreamErrorCondition::PolicyViolation));
                }
                if let Some(managed) = self.managed.as_mut() {
                    // XEP-0198 section 4: `h` counts every stanza the client sent since enabling.
                    managed.state.received();
                }
                let own_jid = Jid::from(self.client.jid.clone());
                // Boxed again: the features' nested futures are large, and a session writing a batch
                // should not hold them.
                match Box::pin(handle_stanza(router, &mut self.client, &own_jid, element)).await {
                    Ok(()) => None,
                    Err(condition) => Some(Ending::Error(condition)),
                }
            }
            Wake::Inbound(Ok(Inbound::Nonza(element))) => {
                if !self.heard() {
                    return Some(Ending::Error(StreamErrorCondition::PolicyViolation));
                }
                self.on_nonza(router, element).await
            }
            Wake::Inbound(Ok(Inbound::Closed)) => Some(Ending::PeerClosed),
            Wake::Inbound(Err(e)) => Some(e.condition().map_or(Ending::Gone, Ending::Error)),
            Wake::PingDue => self.ping().await,
        }
    }

    /// A command other than a stanza: a resumption, or the end of the session.
    async fn command(&mut self, router: &Arc<Router>, command: SessionCommand) -> Option<Ending> {
        match command {
            SessionCommand::Resume(resumption) => self.resume(router, *resumption).await,
            SessionCommand::KeepForPush => {
                self.keep_for_push(router);
                None
            }
            SessionCommand::AvatarChanged(hash) => {
                features::vcard_avatar::presence_with_new_avatar(router, &mut self.client, hash)
                    .await;
                None
            }
            other => ending(other),
        }
    }

    /// A first-level element from the client that is not a stanza: XEP-0352's `<active/>` and
    /// `<inactive/>`, XEP-0198's `<enable/>`, `<r/>` and `<a/>`. Anything else, and `<r/>` or `<a/>` before stream management is enabled, ends the stream
    /// with `<unsupported-stanza-type/>` (RFC 6120 section 4.9.3.24), as Prosody does.
    async fn on_nonza(&mut self, router: &Arc<Router>, element: Element) -> Option<Ending> {
        if let Some(state) = ClientState::from_nonza(&element) {
            return self.set_client_state(state).await;
        }
        let unsupported = || {
            tracing::debug!(element = element.name(), "unsupported nonza");
            Some(Ending::Error(StreamErrorCondition::UnsupportedStanzaType))
        };
        let Some(nonza) = SmNonza::parse(&element) else {
            return unsupported();
        };
        let reply = match (nonza, self.managed.as_mut()) {
            (SmNonza::Enable { resume, max }, None) => self.enable(router, resume, max),
            // Section 3: enabling twice is an unexpected request.
            (SmNonza::Enable { .. }, Some(_)) => sm::failed("unexpected-request", None),
            (SmNonza::Request, Some(managed)) => sm::answer(managed.state.inbound()),
            (SmNonza::Ack { h }, Some(managed)) => {
                if let Err(too_high) = managed.state.acknowledge(h) {
                    // Section 4: acknowledging more than was sent is an `undefined-condition` stream
                    // error (with `handled-count-too-high`).
                    tracing::debug!(jid = %self.client.jid, ?too_high, "handled count too high");
                    return Some(Ending::Error(StreamErrorCondition::UndefinedCondition));
                }
                return None;
            }
            (SmNonza::Request | SmNonza::Ack { .. }, None) => return unsupported(),
            // Section 5: resumption replaces binding; a bound stream has nothing to resume.
            (SmNonza::Resume { .. }, _) => sm::failed("unexpected-request", None),
            (SmNonza::Malformed, _) => return Some(Ending::Error(StreamErrorCondition::BadFormat)),
        };
        let stream = self.stream.as_mut()?;
        stream
            .write_element(&reply)
            .await
            .err()
            .map(|_| Ending::Gone)
    }

    /// `<active/>` or `<inactive/>` (XEP-0352 section 3). Becoming active writes everything held, in
    /// order; saying the same twice changes nothing.
    async fn set_client_state(&mut self, state: ClientState) -> Option<Ending> {
        match (state, self.held.take()) {
            (ClientState::Inactive, held) => {
                self.held = Some(held.unwrap_or_default());
                None
            }
            (ClientState::Active, None) => None,
            (ClientState::Active, Some(mut held)) => {
                let batch = held.drain();
                if batch.is_empty() {
                    return None;
                }
                self.write(batch).await.err()
            }
        }
    }

    /// Passes what the router queued through the held-back queue of an inactive client (XEP-0352
    /// section 5): returns what is to be written now, in order.
    fn hold_back(&mut self, batch: Vec<WireStanza>) -> Vec<WireStanza> {
        let Some(held) = self.held.as_mut() else {
            return batch;
        };
        let mut now = Vec::new();
        for stanza in batch {
            let urgency = csi::urgency_of_queued(&stanza);
            if let Release::Write(released) = held.offer(ClientState::Inactive, urgency, stanza) {
                now.extend(released);
            }
        }
        now
    }

    /// Enables stream management (XEP-0198 section 3), resumable when asked and allowed: returns
    /// `<enabled/>`.
    fn enable(&mut self, router: &Arc<Router>, resume: bool, max: Option<u32>) -> Element {
        let config = &router.context.config;
        // Section 3: the client's `max` is its preference; the server keeps the session no longer than
        // that, nor than its own limit, and says which in `<enabled max=…/>`.
        let timeout = match max {
            Some(seconds) if seconds > 0 => config
                .resume_timeout
                .min(std::time::Duration::from_secs(u64::from(seconds))),
            _ => config.resume_timeout,
        };
        let resume_id = (resume && !timeout.is_zero()).then(sm::new_resume_id);
        if let Some(id) = &resume_id {
            router
                .sessions
                .add_resumable(id, &self.client.bare, self.handle.clone());
        }
        let enabled = sm::enabled(resume_id.as_deref().map(|id| (id, timeout.as_secs())));
        self.managed = Some(Box::new(Managed {
            state: StreamManagement::new(resume_id),
            resume_deadline: None,
            resume_timeout: timeout,
            hibernated_at: None,
            kept_for_push: None,
            unacked_limit: config.session_queue_bytes,
        }));
        enabled
    }

    /// A connection resumed this session (XEP-0198 section 5): attach it, answer `<resumed/>`, drop what
    /// the client's `h` acknowledges and write the rest again, once and in order; what queued while
    /// detached follows through the mailbox. The connection it replaces, if the server had not yet seen
    /// it fail, is dropped. Presence is not broadcast again: the session never went unavailable.
    async fn resume(&mut self, router: &Arc<Router>, resumption: Resumption) -> Option<Ending> {
        drop(self.attach(resumption.stream));
        {
            // Under the user's offline gate: a message routed while this session was detached is either
            // stored before this (and fetched below) or finds the session attached and is queued to it.
            let _gate = router.offline_gates.lock(&self.client.bare).await;
            router.sessions.set_detached(
                &self.client.bare,
                self.client.jid.resource().as_str(),
                self.handle.id,
                false,
            );
        }
        let (Some(managed), Some(stream)) = (self.managed.as_mut(), self.stream.as_mut()) else {
            // Not reached: only a session that enabled resumption is found by its id.
            return Some(Ending::Error(StreamErrorCondition::UndefinedCondition));
        };
        managed.resume_deadline = None;
        managed.hibernated_at = None;
        managed.kept_for_push = None;
        if let Err(too_high) = managed.state.acknowledge(resumption.h) {
            // Sections 4 and 5: the client's count cannot be trusted, so the session is not resumed; it
            // is told so with `<failed/>`, the connection is closed, and the session ends as closed
            // (what was not acknowledged goes to offline storage or back to its senders).
            tracing::debug!(jid = %self.client.jid, ?too_high, "resumed with h too high");
            let failed = sm::failed_handled_count_too_high(managed.state.inbound(), too_high);
            let _ = stream.write_element(&failed).await;
            return Some(Ending::PeerClosed);
        }
        let previd = managed.state.resume_id().unwrap_or_default().to_owned();
        let resumed = sm::resumed(&previd, managed.state.inbound());
        if stream.write_element(&resumed).await.is_err() {
            return Some(Ending::Gone);
        }
        let unacked = managed.state.unacked_slice();
        if !unacked.is_empty() && stream.write_stanzas(unacked).await.is_err() {
            return Some(Ending::Gone);
        }
        if managed.state.should_request() && stream.write_element(&sm::request()).await.is_err() {
            return Some(Ending::Gone);
        }
        router
            .emit(DeliveryEvent::SessionResumed {
                jid: &self.client.jid,
            })
            .await;
        // Messages that arrived while it was detached were stored (`Router::store_for_detached`): they
        // follow, through the mailbox, after what queued meanwhile.
        if self.client.is_available {
            let failed = crate::features::offline::deliver(router, &self.client)
                .await
                .is_err();
            self.client.has_undelivered_offline = failed;
        }
        tracing::debug!(jid = %self.client.jid, "session resumed");
        None
    }

    /// Something came from the client: the ping clock starts again. `false` when it is over the rate.
    fn heard(&mut self) -> bool {
        let now = Instant::now();
        self.ping.last_heard = now;
        self.ping.pending = None;
        self.flood.allows(now)
    }

    /// `first` and whatever else is already queued, so a busy session writes in batches, and the command
    /// other than a stanza that stopped the batch, if any.
    fn take_batch(&mut self, first: WireStanza) -> (Vec<WireStanza>, Option<SessionCommand>) {
        let mut bytes = first.wire_bytes();
        let mut batch = vec![first];
        while batch.len() < WRITE_BATCH_STANZAS && bytes < WRITE_BATCH_BYTES {
            match self.commands.try_recv() {
                Some(SessionCommand::Stanza(next)) => {
                    bytes += next.wire_bytes();
                    batch.push(next);
                }
                Some(other) => return (batch, Some(other)),
                None => break,
            }
        }
        (batch, None)
    }

    /// Writes `batch` to the attached stream, or keeps it for the next one when none is attached.
    async fn write(&mut self, batch: Vec<WireStanza>) -> Result<(), Ending> {
        let Some(stream) = self.stream.as_mut() else {
            self.unwritten.extend(batch);
            return Ok(());
        };
        let written = stream.write_stanzas(&batch).await;
        if let Some(managed) = self.managed.as_mut() {
            // Kept until acknowledged (XEP-0198 section 4), even when the write failed: part of it may
            // have reached the client, and on resumption its `h` tells which (section 5).
            managed.state.sent_stanzas(batch);
            if written.is_err() {
                return Err(Ending::Gone);
            }
            if managed.state.unacked_bytes() > managed.unacked_limit {
                tracing::debug!(jid = %self.client.jid, "too much unacknowledged");
                return Err(Ending::Error(StreamErrorCondition::ResourceConstraint));
            }
            if managed.state.should_request() {
                stream
                    .write_element(&sm::request())
                    .await
                    .map_err(|_| Ending::Gone)?;
            }
            return Ok(());
        }
        if written.is_err() {
            // Failed or past the write deadline: the client is not reading. What did not reach it is
            // routed elsewhere once the session is unbound (see `finish`).
            self.unwritten = batch;
            return Err(Ending::Gone);
        }
        Ok(())
    }

    /// The ping timer ticked: ping a client not heard from for an interval, end one that did not answer
    /// the last ping.
    async fn ping(&mut self) -> Option<Ending> {
        if self.ping.last_heard.elapsed() < self.ping.timer.period() {
            return None;
        }
        if self.ping.pending.is_some() {
            return Some(Ending::Error(StreamErrorCondition::ConnectionTimeout));
        }
        let stream = self.stream.as_mut()?;
        let id = random_id();
        let jid = &self.client.jid;
        let request = features::ping::request(&id, jid.domain().as_str(), &jid.to_string());
        let written = match self.managed.as_mut() {
            // A stanza like any other for the client's count (XEP-0198 section 4).
            Some(managed) => {
                let ping = WireStanza::for_client_stream(&request);
                let written = stream.write_stanzas(std::slice::from_ref(&ping)).await;
                managed.state.sent_stanzas([ping]);
                written
            }
            None => stream.write_element(&request).await,
        };
        if written.is_err() {
            return Some(Ending::Gone);
        }
        self.ping.pending = Some(id);
        None
    }

    /// Ends the session: the stream error if there is one, unbinding, routing again what was queued and
    /// not written, unavailable presence, and then, when the client closed its stream, our closing tag.
    /// Closing last means that once the client has read it, the session is gone from the router (what is
    /// sent to the user from then on is stored offline, not written to a stream that is closing) and its
    /// contacts were told it is unavailable. Every write here is bounded by the socket's write deadline.
    /// With no stream attached nothing is written.
    async fn finish(&mut self, router: &Arc<Router>, end: Ending) {
        if let (Ending::Error(condition), Some(stream)) = (end, self.stream.as_mut()) {
            let _ = stream.end_with_error(condition).await;
        }
        let client = &mut self.client;
        let mut unacked = Default::default();
        if let Some(managed) = self.managed.as_mut() {
            if let Some(id) = managed.state.resume_id() {
                router.sessions.remove_resumable(id);
            }
            unacked = managed.state.take_unacked();
        }
        router
            .sessions
            .unbind(&client.bare, client.jid.resource().as_str(), self.handle.id);
        // Closed after unbinding: a sender that still found this session is refused from here on and
        // takes the offline path itself, and what it queued before is in `queued`. Nothing falls in
        // between.
        let mut resumptions = Vec::new();
        let queued: Vec<WireStanza> = self
            .commands
            .close()
            .into_iter()
            .filter_map(|command| match command {
                SessionCommand::Stanza(stanza) => Some(stanza),
                SessionCommand::Resume(resumption) => {
                    resumptions.push(resumption);
                    None
                }
                _ => None,
            })
            .collect();
        // What the client did not acknowledge (XEP-0198 section 4) goes first: it was sent first; then
        // what was taken from the mailbox and not written, released before what is still held
        // (XEP-0352), and what is still queued.
        let unwritten = std::mem::take(&mut self.unwritten);
        let held = self
            .held
            .as_mut()
            .map(|held| held.drain())
            .unwrap_or_default();
        let again = unacked
            .into_iter()
            .chain(unwritten)
            .chain(held)
            .chain(queued);
        reroute(router, again).await;
        // A resumption that came too late: the session it asked for is gone (XEP-0198 section 5).
        for mut resumption in resumptions {
            let _ = resumption
                .stream
                .write_element(&sm::failed("item-not-found", None))
                .await;
            let _ = resumption.stream.close().await;
        }
        // A replaced session's resource now belongs to its successor: announcing it unavailable would
        // contradict the new session's presence (RFC 6120 section 7.7.2.2).
        if end != Ending::Error(StreamErrorCondition::Conflict) {
            features::presence::session_ended(router, client).await;
        }
        if let (Ending::PeerClosed, Some(stream)) = (end, self.stream.as_mut()) {
            // RFC 6120 section 4.4: answer the client's closing tag with ours.
            let _ = stream.close().await;
        }
        router
            .emit(DeliveryEvent::SessionEnded { jid: &client.jid })
            .await;
        tracing::debug!(jid = %client.jid, ?end, "session ended");
    }
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

/// Checks one stanza from the client and passes it on. `Err` ends the stream with that condition.
async fn handle_stanza(
    router: &Arc<Router>,
    session: &mut ClientSession,
    own_jid: &Jid,
    element: Element,
) -> Result<(), StreamErrorCondition> {
    let addressing = match Addressing::read(&element) {
        Ok(addressing) => addressing,
        // Not reached: the stream tells stanzas from nonzas by the same rule (`xmpp::is_stanza`); were
        // they to disagree, the answer is the one `Session::on_nonza` gives.
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
        SessionCommand::Stanza(_)
        | SessionCommand::Resume(_)
        | SessionCommand::KeepForPush
        | SessionCommand::AvatarChanged(_) => {
            return None;
        }
        SessionCommand::Replaced => StreamErrorCondition::Conflict,
        SessionCommand::Terminate => StreamErrorCondition::NotAuthorized,
        SessionCommand::Shutdown => StreamErrorCondition::SystemShutdown,
    };
    Some(Ending::Error(condition))
}

#[cfg(test)]
mod tests;

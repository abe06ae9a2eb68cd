//! XEP-0357: Push Notifications, the user's server side. Section 4 (the account advertises
//! `urn:xmpp:push:0`, derived from `iq::IQ_HANDLERS`), section 5 (enabling an app server's push
//! service and node, with publish-options), section 6 (disabling), section 7 (publishing a
//! notification) and 7.1 (what a publish error does to the registration).
//!
//! Registrations are stored per account (`herald_storage::PushRegistrations`), so they survive
//! restarts, and go with the account. When a stanza that warrants a push ([`triggers`]) is stored
//! offline for a user, or queued for a session hibernating under XEP-0198 while none of the user's
//! sessions is live, every registration of the user is notified: a publish IQ from the user's bare
//! JID routed like any stanza ([`Router::route`]: to an external component, an in-process service
//! such as Herald's own app server, or a remote server), or, for ChatSecure's `token` + `endpoint`
//! publish-options, an HTTP POST ([`http`]).
//!
//! This runs off the delivery path: [`PushNotifications::observe`] only notes the event, and one
//! task per account publishes. Notes arriving while a publish is in flight are coalesced into the
//! next one (a burst of messages is one more publish per registration, not one per message); a
//! stanza is never notified twice (two hibernated resources receiving one message, or a message
//! queued for a hibernated session and stored offline when the session times out). Each publish
//! waits for the app server's answer (bounded in number and time, `router::pending_iqs`): `wait`
//! is retried with backoff, `item-not-found` and `forbidden` disable the registration at once, and
//! [`MAX_FAILURES_IN_A_ROW`] other failures in a row disable it (counted in storage, so a restart
//! does not forgive them).

mod http;
mod triggers;
mod wire;

use std::collections::hash_map::RandomState;
use std::collections::{HashMap, HashSet, VecDeque};
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak};
use std::time::Duration;

use herald_storage::{PushRegistration, PushUpsert, StorageError};
use tokio::sync::Semaphore;

use super::ClientSession;
use super::iq::{IqAnswer, IqError, IqRequest};
use crate::config::PushNotificationSettings;
use crate::router::events::{DeliveryEvent, PushTriggers};
use crate::router::pending_iqs::IqRequestError;
use crate::router::{Router, SessionCommand};
use crate::xmpp::{DefinedCondition, Element};
pub use triggers::{Trigger, warrants_push};
pub use wire::Outcome;

/// Failed publishes in a row (other than `wait`) after which a registration is disabled (XEP-0357
/// section 7.1: "until a sufficient number of errors have been received in a row").
pub const MAX_FAILURES_IN_A_ROW: u32 = 3;
/// Times a publish answered `wait` is tried again, waiting [`WAIT_RETRY_FIRST_DELAY`], then twice
/// as long each time. Then it is given up for this notification, without counting it as a failure.
pub const MAX_WAIT_RETRIES: u32 = 3;
/// The first wait before trying a publish answered `wait` again.
pub const WAIT_RETRY_FIRST_DELAY: Duration = Duration::from_millis(500);
/// Accounts with a notification being published or waiting, at most; beyond it new notifications
/// are dropped (and logged) rather than held.
const MAX_ACCOUNTS_PUBLISHING: usize = 10_000;
/// Stanzas remembered per account once notified, so none is notified twice (a message queued for a
/// hibernated session is stored offline if the session ends unacknowledged, or routed again when a
/// resumed session ends without acknowledging it).
const RECENT_STANZAS: usize = 32;
/// Accounts whose recent stanzas are remembered; the memory is emptied when full.
const MAX_ACCOUNTS_REMEMBERED: usize = 10_000;
/// Accounts remembered as having no registration (so a message stored offline for them costs no
/// database read); the set is emptied when full.
const MAX_ACCOUNTS_WITHOUT_REGISTRATIONS: usize = 100_000;
/// HTTP notifications in flight at once.
const MAX_HTTP_IN_FLIGHT: usize = 256;

/// What waits to be published for one account: the stanzas noted since the last publish.
#[derive(Debug)]
struct Notice {
    count: u32,
    last: Trigger,
    /// Every stanza was for a hibernated session (none stored offline): publish only if none of the
    /// user's sessions is live by then (XEP-0198 resumption ends the need).
    only_hibernated: bool,
}

#[derive(Debug, Default)]
struct State {
    /// Each user's sessions hibernating under XEP-0198.
    hibernating: HashMap<String, Vec<String>>,
    /// Fingerprints of the stanzas notified lately, per account.
    recent: HashMap<String, VecDeque<u64>>,
    /// Accounts whose publishing task runs, with what it should publish next.
    publishing: HashMap<String, Option<Notice>>,
    without_registrations: HashSet<String>,
    /// Every account with a registration, once read at start ([`PushNotifications::load_accounts`]):
    /// a message stored offline for anyone else (nearly everyone) then costs no task and no read.
    with_registrations: Option<HashSet<String>>,
    /// Bumped by every enable, so a task that read "no registrations" before it does not cache it.
    enables: u64,
}

impl State {
    /// Whether `account` is known to have no registration (no publish to try).
    fn has_no_registration(&self, account: &str) -> bool {
        self.without_registrations.contains(account)
            || self
                .with_registrations
                .as_ref()
                .is_some_and(|accounts| !accounts.contains(account))
    }
}

/// The XEP-0357 delivery-event subscriber and publisher (see the module documentation).
pub struct PushNotifications {
    myself: Weak<PushNotifications>,
    router: OnceLock<Weak<Router>>,
    settings: PushNotificationSettings,
    /// `None` when the TLS backend could not start: HTTP notifications then count as failures.
    http: Option<reqwest::Client>,
    http_slots: Semaphore,
    /// Hibernating sessions, so the delivery path skips the lock when there are none.
    hibernating_sessions: AtomicUsize,
    /// Keys the stanza fingerprints, so no one can make two stanzas look alike on purpose.
    fingerprints: RandomState,
    state: Mutex<State>,
}

impl std::fmt::Debug for PushNotifications {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PushNotifications")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl PushNotifications {
    /// A publisher with `settings`; it publishes once [`Self::attach`]ed to a router.
    pub fn new(settings: PushNotificationSettings) -> Arc<PushNotifications> {
        let http = http::client(&settings)
            .inspect_err(|e| tracing::error!(error = %e, "no HTTP client for push endpoints"))
            .ok();
        Arc::new_cyclic(|myself| PushNotifications {
            myself: myself.clone(),
            router: OnceLock::new(),
            settings,
            http,
            http_slots: Semaphore::new(MAX_HTTP_IN_FLIGHT),
            hibernating_sessions: AtomicUsize::new(0),
            fingerprints: RandomState::new(),
            state: Mutex::new(State::default()),
        })
    }

    /// Publishes through `router` from now on (the router holds this as a subscriber, so it is
    /// attached after both exist; a weak reference, so neither keeps the other alive).
    pub fn attach(&self, router: &Arc<Router>) {
        let _ = self.router.set(Arc::downgrade(router));
    }

    /// Reads which accounts have registrations (at start); until it succeeds, an account's first
    /// notice reads its registrations.
    pub async fn load_accounts(
        &self,
        storage: &herald_storage::Storage,
    ) -> Result<(), StorageError> {
        let accounts = storage
            .push_registrations
            .accounts_with_registrations()
            .await?;
        self.lock().with_registrations = Some(accounts.into_iter().collect());
        Ok(())
    }

    /// At start: wakes every account with a registration that has messages waiting in offline
    /// storage. A message stored for a hibernated session ([`Router`]'s `store_for_detached`) may
    /// have been acknowledged to its sender just before the server stopped, with its push not yet
    /// out; the user must still hear of it (XEP-0357 section 7). Content-free, like the wake before a
    /// hibernation ends; the count is the number waiting. Reads one count per such account, one at a
    /// time, so a large install pays it in the background, not in its start. An account notified
    /// since the start is skipped: that push came after everything it has waiting was stored, and
    /// a second one would notify the same stanzas twice.
    pub async fn wake_accounts_with_waiting_messages(&self, router: &Arc<Router>) {
        let accounts: Vec<String> = match &self.lock().with_registrations {
            Some(accounts) => accounts.iter().cloned().collect(),
            None => return,
        };
        for account in accounts {
            if self.was_notified_since_start(&account) {
                continue;
            }
            let waiting = match router.context.storage.offline.count(&account).await {
                Ok(waiting) => waiting,
                Err(error) => {
                    tracing::warn!(%error, "counting offline messages at start failed");
                    continue;
                }
            };
            if waiting == 0 {
                continue;
            }
            let state = self.lock();
            // Noted while the count was read: that publish covers what is waiting.
            if state.recent.contains_key(&account) {
                continue;
            }
            let nothing = Trigger::Message {
                sender: String::new(),
                body: String::new(),
            };
            let count = u32::try_from(waiting).unwrap_or(u32::MAX);
            self.enqueue(state, &account, nothing, false, count);
        }
    }

    /// Whether a stanza for `account` was noted for a publish since the server started (forgotten
    /// only past [`MAX_ACCOUNTS_REMEMBERED`], which at worst wakes such an account once more).
    fn was_notified_since_start(&self, account: &str) -> bool {
        self.lock().recent.contains_key(account)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn fingerprint(&self, stanza: &Element) -> u64 {
        let body = stanza
            .children()
            .find(|c| c.name() == "body")
            .map(Element::text);
        self.fingerprints.hash_one((
            stanza.name(),
            stanza.attr("from"),
            stanza.attr("id"),
            stanza.attr("type"),
            body,
        ))
    }

    /// Notes a stanza that warrants a push for `account`; starts the account's task if none runs.
    fn note(&self, account: &str, stanza: &Element, trigger: Trigger, hibernated: bool) {
        let fingerprint = self.fingerprint(stanza);
        let mut state = self.lock();
        if state.has_no_registration(account) {
            return;
        }
        if !state.recent.contains_key(account) && state.recent.len() >= MAX_ACCOUNTS_REMEMBERED {
            state.recent.clear();
        }
        let recent = state.recent.entry(account.to_string()).or_default();
        if recent.contains(&fingerprint) {
            return;
        }
        if recent.len() == RECENT_STANZAS {
            recent.pop_front();
        }
        recent.push_back(fingerprint);
        self.enqueue(state, account, trigger, hibernated, 1);
    }

    /// A hibernated session kept for push ends soon (XEP-0198 with XEP-0357): wakes the devices with
    /// a notification that carries no message (nothing new arrived), unless a session is live by then.
    fn wake_before_expiry(&self, account: &str) {
        let state = self.lock();
        if state.has_no_registration(account) {
            return;
        }
        let nothing = Trigger::Message {
            sender: String::new(),
            body: String::new(),
        };
        self.enqueue(state, account, nothing, true, 0);
    }

    /// Adds `count` stanzas (the last one `trigger`) to what waits to be published for `account`, and
    /// starts the account's task if none runs.
    fn enqueue(
        &self,
        mut state: MutexGuard<'_, State>,
        account: &str,
        trigger: Trigger,
        hibernated: bool,
        count: u32,
    ) {
        if let Some(waiting) = state.publishing.get_mut(account) {
            *waiting = Some(match waiting.take() {
                Some(notice) => Notice {
                    count: notice.count.saturating_add(count),
                    last: trigger,
                    only_hibernated: notice.only_hibernated && hibernated,
                },
                None => Notice {
                    count,
                    last: trigger,
                    only_hibernated: hibernated,
                },
            });
            return;
        }
        if state.publishing.len() >= MAX_ACCOUNTS_PUBLISHING {
            tracing::warn!("too many push notifications pending; one dropped");
            return;
        }
        let (Some(router), Some(myself)) = (
            self.router.get().and_then(Weak::upgrade),
            self.myself.upgrade(),
        ) else {
            return;
        };
        state.publishing.insert(
            account.to_string(),
            Some(Notice {
                count,
                last: trigger,
                only_hibernated: hibernated,
            }),
        );
        drop(state);
        let account = account.to_string();
        tokio::spawn(async move { myself.publish_until_done(router, account).await });
    }

    fn session_hibernated(&self, account: &str, resource: &str) {
        let mut state = self.lock();
        let hibernating = state.hibernating.entry(account.to_string()).or_default();
        if !hibernating.iter().any(|r| r == resource) {
            hibernating.push(resource.to_string());
            self.hibernating_sessions.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn session_live_or_gone(&self, account: &str, resource: &str) {
        if self.hibernating_sessions.load(Ordering::Relaxed) == 0 {
            return;
        }
        let mut state = self.lock();
        let Some(hibernating) = state.hibernating.get_mut(account) else {
            return;
        };
        let before = hibernating.len();
        hibernating.retain(|r| r != resource);
        if hibernating.len() < before {
            self.hibernating_sessions.fetch_sub(1, Ordering::Relaxed);
        }
        if hibernating.is_empty() {
            state.hibernating.remove(account);
        }
    }

    /// Whether the session `account/resource` is known to hibernate (XEP-0198 section 5).
    pub fn is_hibernating(&self, account: &str, resource: &str) -> bool {
        if self.hibernating_sessions.load(Ordering::Relaxed) == 0 {
            return false;
        }
        self.lock()
            .hibernating
            .get(account)
            .is_some_and(|h| h.iter().any(|r| r == resource))
    }

    /// Whether any session of `account` is bound and not hibernating.
    fn has_live_session(&self, router: &Router, account: &str) -> bool {
        let bound = router.sessions.resources(account);
        let state = self.lock();
        let hibernating = state.hibernating.get(account);
        bound
            .iter()
            .any(|online| !hibernating.is_some_and(|h| h.contains(&online.resource)))
    }

    /// The account's task: publishes what was noted, again while more was noted meanwhile.
    async fn publish_until_done(self: Arc<Self>, router: Arc<Router>, account: String) {
        loop {
            let notice = {
                let mut state = self.lock();
                match state.publishing.get_mut(&account).and_then(Option::take) {
                    Some(notice) => notice,
                    None => {
                        state.publishing.remove(&account);
                        return;
                    }
                }
            };
            if notice.only_hibernated && self.has_live_session(&router, &account) {
                continue;
            }
            let enables = self.lock().enables;
            let storage = &router.context.storage.push_registrations;
            let registrations = match storage.list(&account).await {
                Ok(registrations) => registrations,
                Err(e) => {
                    tracing::error!(error = %e, "reading push registrations failed");
                    continue;
                }
            };
            if registrations.is_empty() {
                let mut state = self.lock();
                if state.enables == enables {
                    if state.without_registrations.len() >= MAX_ACCOUNTS_WITHOUT_REGISTRATIONS {
                        state.without_registrations.clear();
                    }
                    state.without_registrations.insert(account.clone());
                }
                continue;
            }
            let summary = self.summary(&notice);
            let publishes = registrations
                .iter()
                .map(|registration| self.publish_with_retries(&router, registration, &summary));
            futures::future::join_all(publishes).await;
            self.keep_hibernated_sessions(&router, &account);
        }
    }

    /// A push went out for `account`: its hibernated sessions wait the longer `[c2s]
    /// push_resume_timeout` (Prosody's `push_max_hibernation_timeout`), and wake the devices again
    /// shortly before it ends, so the user does not silently drop out of presence and groups.
    fn keep_hibernated_sessions(&self, router: &Router, account: &str) {
        let resources = self
            .lock()
            .hibernating
            .get(account)
            .cloned()
            .unwrap_or_default();
        for resource in resources {
            if let Some(handle) = router.sessions.handle(account, &resource) {
                // A full mailbox only means the session has more urgent work; it stays on the short
                // timeout then.
                let _ = handle.send(SessionCommand::KeepForPush);
            }
        }
    }

    /// The summary form's content, as far as the configuration allows (XEP-0357 section 9).
    fn summary(&self, notice: &Notice) -> wire::Summary {
        let settings = &self.settings;
        let (sender, body) = match &notice.last {
            Trigger::Message { sender, body } => (sender, Some(body)),
            Trigger::SubscriptionRequest { sender } => (sender, None),
        };
        wire::Summary {
            message_count: settings.include_message_count.then_some(notice.count),
            last_sender: (settings.include_sender && !sender.is_empty()).then(|| sender.clone()),
            last_body: body
                .filter(|body| settings.include_body && !body.is_empty())
                .cloned(),
        }
    }

    /// Publishes to one registration, retrying `wait`, and acts on the outcome (section 7.1).
    async fn publish_with_retries(
        &self,
        router: &Arc<Router>,
        registration: &PushRegistration,
        summary: &wire::Summary,
    ) {
        let storage = &router.context.storage.push_registrations;
        let (account, service, node) = (
            registration.account.as_str(),
            registration.service.as_str(),
            registration.node.as_str(),
        );
        let mut delay = WAIT_RETRY_FIRST_DELAY;
        let mut attempt = 0;
        let outcome = loop {
            let outcome = self.publish_once(router, registration, summary).await;
            if outcome != Outcome::Retry || attempt == MAX_WAIT_RETRIES {
                break outcome;
            }
            attempt += 1;
            tokio::time::sleep(delay).await;
            delay *= 2;
            // Section 6: nothing is published to a registration disabled meanwhile.
            match storage.list(account).await {
                Ok(now) if now.iter().any(|r| r.service == service && r.node == node) => {}
                Ok(_) => return,
                Err(e) => {
                    tracing::error!(error = %e, "reading push registrations failed");
                    return;
                }
            }
        };
        let acted: Result<(), StorageError> = async {
            match outcome {
                Outcome::Delivered if registration.failures > 0 => {
                    storage.clear_failures(account, service, node).await
                }
                Outcome::Delivered => Ok(()),
                Outcome::Retry => {
                    tracing::info!(
                        service,
                        "push service kept answering wait; notification given up"
                    );
                    Ok(())
                }
                Outcome::Gone => {
                    tracing::info!(
                        service,
                        "push service says the registration is gone; disabled"
                    );
                    storage.delete(account, service, Some(node)).await.map(drop)
                }
                Outcome::Failed => {
                    let failures = storage.record_failure(account, service, node).await?;
                    if failures.is_some_and(|n| n >= MAX_FAILURES_IN_A_ROW) {
                        tracing::info!(
                            service,
                            "push publishes kept failing; registration disabled"
                        );
                        storage.delete(account, service, Some(node)).await?;
                    }
                    Ok(())
                }
            }
        }
        .await;
        if let Err(e) = acted {
            tracing::error!(error = %e, "updating a push registration failed");
        }
    }

    /// One publish: over HTTP for ChatSecure's publish-options, else an IQ through the router.
    async fn publish_once(
        &self,
        router: &Arc<Router>,
        registration: &PushRegistration,
        summary: &wire::Summary,
    ) -> Outcome {
        let options = registration.publish_options.as_deref();
        if let Some((token, endpoint)) = options.and_then(wire::chatsecure_options) {
            let Some(client) = &self.http else {
                return Outcome::Failed;
            };
            let Ok(_slot) = self.http_slots.acquire().await else {
                return Outcome::Retry;
            };
            return http::notify(client, &self.settings, &endpoint, &token).await;
        }
        let iq = wire::publish(
            &registration.account,
            &registration.service,
            &registration.node,
            summary,
            options,
        );
        match router
            .pending_iqs
            .request(router, iq, self.settings.publish_timeout)
            .await
        {
            Ok(answer) => wire::classify_answer(&answer.element),
            Err(IqRequestError::TooManyPending) => Outcome::Retry,
            Err(error) => {
                tracing::info!(%error, service = %registration.service, "push publish unanswered");
                Outcome::Failed
            }
        }
    }
}

impl PushTriggers for PushNotifications {
    fn observe(&self, event: &DeliveryEvent<'_>) {
        match *event {
            DeliveryEvent::StoredOffline { user, envelope }
            | DeliveryEvent::SubscriptionRequestKept { user, envelope } => {
                if let Some(trigger) = warrants_push(&envelope.element) {
                    self.note(&user.to_string(), &envelope.element, trigger, false);
                }
            }
            DeliveryEvent::DeliveredToResource {
                user,
                resource,
                stanza,
            } => {
                if !self.is_hibernating(user, resource) {
                    return;
                }
                if let Some(element) = stanza.unpack()
                    && let Some(trigger) = warrants_push(&element)
                {
                    self.note(user, &element, trigger, true);
                }
            }
            DeliveryEvent::SessionHibernated {
                jid,
                unacknowledged,
                unwritten,
            } => {
                let account = jid.to_bare().to_string();
                self.session_hibernated(&account, jid.resource().as_str());
                // What went to the connection before its loss was noticed, or waited to be written,
                // is queued for the hibernated session like what arrives from now on (XEP-0357 with
                // XEP-0198; Prosody pushes for its smacks queue at hibernation too).
                for stanza in unacknowledged.iter().chain(unwritten) {
                    if let Some(element) = stanza.unpack()
                        && let Some(trigger) = warrants_push(&element)
                    {
                        self.note(&account, &element, trigger, true);
                    }
                }
            }
            DeliveryEvent::SessionResumed { jid } | DeliveryEvent::SessionEnded { jid } => {
                self.session_live_or_gone(&jid.to_bare().to_string(), jid.resource().as_str());
            }
            DeliveryEvent::HibernationExpiring { jid } => {
                self.wake_before_expiry(&jid.to_bare().to_string());
            }
            DeliveryEvent::SentByClient { .. }
            | DeliveryEvent::SessionBound { .. }
            | DeliveryEvent::DeliveredToUser { .. } => {}
        }
    }

    fn registrations_changed(&self, account: &str) {
        let mut state = self.lock();
        state.enables += 1;
        state.without_registrations.remove(account);
        if let Some(accounts) = state.with_registrations.as_mut() {
            accounts.insert(account.to_string());
        }
    }
}

/// `<enable/>` and `<disable/>` from the user's own client (sections 5 and 6).
pub async fn handle(
    router: &Arc<Router>,
    session: &ClientSession,
    request: &IqRequest<'_>,
) -> IqAnswer {
    if !request.is_set {
        return Err(IqError::new(DefinedCondition::BadRequest));
    }
    let settings = &router.context.config.push_notifications;
    let storage = &router.context.storage.push_registrations;
    let internal = |e: StorageError| {
        tracing::error!(error = %e, "push registration storage failed");
        IqError::new(DefinedCondition::InternalServerError)
    };
    let refused = |e: wire::RequestError| match e {
        wire::RequestError::BadRequest(text) => {
            IqError::with_text(DefinedCondition::BadRequest, text)
        }
        wire::RequestError::TooLarge(text) => {
            IqError::with_text(DefinedCondition::NotAcceptable, text)
        }
    };
    match request.payload.name() {
        "enable" => {
            let enable = wire::parse_enable(request.payload).map_err(refused)?;
            if let Some((_, endpoint)) = enable
                .publish_options
                .as_deref()
                .and_then(wire::chatsecure_options)
            {
                http::check_endpoint(&endpoint, settings).map_err(|e| {
                    IqError::with_text(DefinedCondition::NotAcceptable, &e.to_string())
                })?;
            }
            let registration = PushRegistration {
                account: session.bare.clone(),
                service: enable.service,
                node: enable.node,
                publish_options: enable.publish_options,
                failures: 0,
                enabled_at_ms: chrono::Utc::now().timestamp_millis(),
            };
            let stored = storage
                .upsert(&registration, settings.max_registrations_per_account)
                .await
                .map_err(internal)?;
            if stored == PushUpsert::LimitReached {
                return Err(IqError::with_text(
                    DefinedCondition::PolicyViolation,
                    &format!(
                        "At most {} push registrations per account",
                        settings.max_registrations_per_account
                    ),
                ));
            }
            if let Some(push) = &router.subscribers().push_notifications {
                push.registrations_changed(&session.bare);
            }
            Ok(None)
        }
        "disable" => {
            let disable = wire::parse_disable(request.payload).map_err(refused)?;
            storage
                .delete(&session.bare, &disable.service, disable.node.as_deref())
                .await
                .map_err(internal)?;
            Ok(None)
        }
        _ => Err(IqError::new(DefinedCondition::BadRequest)),
    }
}

//! XEP-0313: Message Archive Management (`urn:xmpp:mam:2` and `urn:xmpp:mam:2#extended`), with
//! XEP-0359 stanza ids, XEP-0059 paging and XEP-0441 preferences, over `herald_storage::Archive`.
//!
//! Covered:
//! - XEP-0313 section 3 (user archives): a `chat` or `normal` message with a body (or a `<store/>`
//!   hint, or an end-to-end encrypted payload) is archived in the recipient's archive when it is
//!   delivered or stored offline (once per message, not per resource), and in the sender's archive
//!   when a local client sends it. Not archived (business rules): chat states or receipts alone,
//!   `<no-store/>`/`<no-permanent-store/>` (XEP-0334 section 4), errors, headlines and groupchat (a
//!   room keeps its own archive).
//! - XEP-0313 section 3.5 with XEP-0359 section 3: the incoming message gets
//!   `<stanza-id xmlns='urn:xmpp:sid:0' by='user@domain' id=…/>` before delivery, after any
//!   `<stanza-id/>` claiming to be by that archive was stripped (a sender must not forge one).
//! - XEP-0313 section 4: the query (`<query queryid>` with a XEP-0004 form: `with`, `start`, `end`
//!   as XEP-0082 times, and the `#extended` `before-id`, `after-id`, `ids`), XEP-0059 `<set>` with
//!   `max`, `after`, `before` (empty for the last page), the results as `<result><forwarded>`
//!   messages to the querying resource in order, then `<fin complete><set><first/><last/></set>`;
//!   `item-not-found` for an id the archive does not hold; a get on `<query/>` returns the form.
//! - `#extended` archive metadata (`<metadata/>`: the first and last message).
//! - XEP-0441 preferences (`<prefs default><always/><never/></prefs>`, still in `urn:xmpp:mam:2`).
//!
//! Archiving runs behind delivery: the stanza id is made in memory, the message is delivered with it,
//! and the row is committed in a batch by the context's archive queue (`context/archive_queue.rs`,
//! which says why and what bounds it). A query, the metadata and an account removal wait for what was
//! queued before them, so a client finds every message it was sent. A storage failure while archiving
//! never loses or holds the message: it is logged and the message stays delivered.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use super::ClientSession;
use super::iq::{IqAnswer, IqError, IqRequest};
use crate::context::{QueuedAppend, ServerContext};
use crate::router::Router;
use crate::router::events::Archiving;
use crate::xmpp::ns;
use crate::xmpp::{
    BareJid, DefinedCondition, Element, Envelope, FullJid, Jid, MessageKind, StanzaKind,
    set_attribute,
};
use herald_storage::{
    ARCHIVE_MAX_IDS, ARCHIVE_MAX_PAGE, ArchiveDefault, ArchivePage, ArchivePaging, ArchivePrefs,
    ArchiveQuery, ArchivedMessage, Direction, Storage, StorageError, new_stanza_id,
};

/// The page size when a query has no RSM `<max>` (XEP-0313 section 4.3.1 lets the server choose; 50 is
/// Prosody's default). Larger pages are capped at [`ARCHIVE_MAX_PAGE`] by the storage.
pub const DEFAULT_PAGE: usize = 50;

/// The most JIDs one preference list (`always` or `never`) may hold; more is `not-acceptable`.
pub const MAX_PREF_JIDS: usize = 1000;

/// XEP-0384 OMEMO payloads (the legacy and the current namespace): no body, still worth archiving.
const OMEMO_LEGACY: &str = "eu.siacs.conversations.axolotl";
const OMEMO: &str = "urn:xmpp:omemo:2";

// ---------------------------------------------------------------------------------------------------
// Archiving (XEP-0313 section 3 and business rules)
// ---------------------------------------------------------------------------------------------------

/// Whether a message element is worth archiving: a body, a `<store/>` hint or an encrypted payload, and
/// no `<no-store/>`/`<no-permanent-store/>` hint (XEP-0334 section 4). Chat states, receipts and markers
/// alone are not. Pure and allocation-free (it is on every message's path).
pub fn is_archivable(message: &Element) -> bool {
    if message.has_child("no-store", ns::HINTS)
        || message.has_child("no-permanent-store", ns::HINTS)
    {
        return false;
    }
    message.has_child("body", ns::CLIENT)
        || message.has_child("store", ns::HINTS)
        || message.has_child("encrypted", OMEMO_LEGACY)
        || message.has_child("encrypted", OMEMO)
}

/// Whether the kind of message is one a user archive keeps: `chat` and `normal` (groupchat belongs to
/// the room's archive, errors and headlines are not conversation).
fn is_archived_kind(kind: StanzaKind) -> bool {
    matches!(
        kind,
        StanzaKind::Message(MessageKind::Chat | MessageKind::Normal)
    )
}

/// What the owner's preferences say about one contact (XEP-0441 section 2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PrefsVerdict {
    Archive,
    Skip,
    /// `default='roster'` and the contact is on neither list: archive if they are in the roster.
    IfInRoster,
}

/// Applies `prefs` to `contact` (XEP-0441 section 2.3: a bare JID on a list matches every resource of
/// it, a full JID only itself; `never` wins, the storage keeps a JID on one list only anyway). JIDs
/// are compared as normalised strings: [`parse_prefs`] stores them normalised.
pub fn prefs_verdict(prefs: &ArchivePrefs, contact: &Jid) -> PrefsVerdict {
    let bare = contact.to_bare();
    let matches = |entry: &String| {
        entry.as_str() == bare.as_str()
            || (contact.resource().is_some() && entry.as_str() == contact.as_str())
    };
    if prefs.never.iter().any(matches) {
        return PrefsVerdict::Skip;
    }
    if prefs.always.iter().any(matches) {
        return PrefsVerdict::Archive;
    }
    match prefs.default {
        ArchiveDefault::Always => PrefsVerdict::Archive,
        ArchiveDefault::Never => PrefsVerdict::Skip,
        ArchiveDefault::Roster => PrefsVerdict::IfInRoster,
    }
}

/// The archive subscriber (`router::events::Archiving`): reads preferences through the context's cache
/// and queues appends on the context's [`crate::context::ArchiveQueue`], so a message is delivered
/// without waiting for a commit.
pub struct MessageArchiver {
    context: Arc<ServerContext>,
}

impl MessageArchiver {
    pub fn new(context: Arc<ServerContext>) -> MessageArchiver {
        MessageArchiver { context }
    }

    /// Whether `owner`'s preferences let a message with `contact` be archived. The preferences come
    /// from the cache (one read per owner, then none); the roster is read only under
    /// `default='roster'` for a contact on neither list (one point read of one item). A storage failure
    /// here archives: losing history silently is worse than keeping one message the owner did not want
    /// kept.
    async fn allowed(&self, owner: &str, contact: &Jid) -> bool {
        let storage = &self.context.storage;
        let prefs = match self.context.archive_prefs.get(storage, owner).await {
            Ok(Some(prefs)) => prefs,
            // XEP-0441: without preferences the server's default applies; ours is `always`.
            Ok(None) => return true,
            Err(e) => {
                tracing::error!(error = %e, "reading archive preferences failed; archiving");
                return true;
            }
        };
        match prefs_verdict(&prefs, contact) {
            PrefsVerdict::Archive => true,
            PrefsVerdict::Skip => false,
            PrefsVerdict::IfInRoster => {
                match storage
                    .rosters
                    .item(owner, contact.to_bare().as_str())
                    .await
                {
                    Ok(item) => item.is_some_and(|item| item.in_roster),
                    Err(e) => {
                        tracing::error!(error = %e, "reading the roster for archiving failed");
                        true
                    }
                }
            }
        }
    }

    /// The archive row of one message of `owner`'s, under a new stanza id, stamped now.
    fn row(owner: &str, contact: &str, direction: Direction, stanza: String) -> QueuedAppend {
        QueuedAppend {
            owner: owner.to_string(),
            id: new_stanza_id(),
            contact: contact.to_string(),
            at_ms: now_ms(),
            direction,
            stanza,
        }
    }

    /// Queues `row` for the archive; a full queue is logged (the message stays delivered, without
    /// its archive row).
    async fn queue(&self, row: QueuedAppend) {
        if let Err(error) = self.context.archive.append(row).await {
            tracing::error!(%error, "a delivered message was not archived");
        }
    }
}

#[async_trait]
impl Archiving for MessageArchiver {
    fn applies(&self, envelope: &Envelope) -> bool {
        is_archived_kind(envelope.kind)
            && (is_archivable(&envelope.element)
                || envelope.element.has_child("stanza-id", ns::STANZA_ID))
    }

    async fn before_delivery(
        &self,
        user: &BareJid,
        envelope: &mut Envelope,
    ) -> Option<QueuedAppend> {
        strip_forged_stanza_ids(&mut envelope.element, user);
        if !is_archivable(&envelope.element) {
            return None;
        }
        // A message from the server itself has no contact to file it under; it is not conversation.
        let from = envelope.from.clone()?;
        let owner = user.as_str();
        if !self.allowed(owner, &from).await {
            return None;
        }
        let stanza = String::from(&envelope.element);
        let contact = from.to_bare();
        let row = Self::row(owner, contact.as_str(), Direction::Incoming, stanza);
        envelope.element.append_child(stanza_id(owner, &row.id));
        Some(row)
    }

    async fn kept(&self, row: QueuedAppend) {
        self.queue(row).await;
    }

    async fn sent_by_client(&self, from: &FullJid, envelope: &Envelope) {
        if !is_archivable(&envelope.element) {
            return;
        }
        let Some(to) = &envelope.to else {
            return;
        };
        let owner = from.to_bare();
        let contact = to.to_bare();
        // A message to oneself is archived once, as incoming, when it is delivered.
        if contact == owner {
            return;
        }
        if !self.allowed(owner.as_str(), to).await {
            return;
        }
        let stanza = String::from(&envelope.element);
        let row = Self::row(
            owner.as_str(),
            contact.as_str(),
            Direction::Outgoing,
            stanza,
        );
        self.queue(row).await;
    }
}

/// XEP-0359 section 3: removes every `<stanza-id/>` whose `by` is `archive` (the server adds the real
/// one; a sender could otherwise make the recipient believe a forged id). Others' ids stay, in place.
pub fn strip_forged_stanza_ids(message: &mut Element, archive: &BareJid) {
    let is_forged = |child: &Element| {
        child.is("stanza-id", ns::STANZA_ID)
            && child
                .attr("by")
                .is_some_and(|by| by.trim().eq_ignore_ascii_case(archive.as_str()))
    };
    if !message.children().any(is_forged) {
        return;
    }
    let nodes = message.take_nodes();
    for node in nodes {
        match node.as_element() {
            Some(child) if is_forged(child) => {}
            _ => message.append_node(node),
        }
    }
}

/// `<stanza-id xmlns='urn:xmpp:sid:0' by=archive id=…/>` (XEP-0359 section 3).
fn stanza_id(archive: &str, id: &str) -> Element {
    let mut element = Element::builder("stanza-id", ns::STANZA_ID).build();
    set_attribute(&mut element, "by", archive);
    set_attribute(&mut element, "id", id);
    element
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

// ---------------------------------------------------------------------------------------------------
// Retention (XEP-0313 section 3.2)
// ---------------------------------------------------------------------------------------------------

/// Deletes archived messages older than `retention` once at start and then every `every`, until
/// `shutdown`; the storage deletes in batches of `ARCHIVE_PURGE_BATCH`, so no other write waits long.
pub async fn run_retention(
    storage: Storage,
    retention: Duration,
    every: Duration,
    mut shutdown: crate::Shutdown,
) {
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.wait() => return,
            _ = ticks.tick() => {}
        }
        let purge = purge_expired(&storage, retention, now_ms());
        tokio::select! {
            _ = shutdown.wait() => return,
            outcome = purge => match outcome {
                Ok(0) => {}
                Ok(deleted) => tracing::info!(deleted, "archive retention purge"),
                Err(e) => tracing::error!(error = %e, "archive retention purge failed"),
            },
        }
    }
}

/// One retention pass at `now_ms`: deletes every message archived more than `retention` ago, in the
/// storage's bounded batches. Returns how many were deleted.
pub async fn purge_expired(
    storage: &Storage,
    retention: Duration,
    now_ms: i64,
) -> Result<u64, StorageError> {
    let retention_ms = i64::try_from(retention.as_millis()).unwrap_or(i64::MAX);
    let cutoff = now_ms.saturating_sub(retention_ms);
    storage
        .archive
        .purge_older_than(cutoff, herald_storage::ARCHIVE_PURGE_BATCH)
        .await
}

// ---------------------------------------------------------------------------------------------------
// Queries (XEP-0313 section 4, XEP-0059), metadata, preferences
// ---------------------------------------------------------------------------------------------------

/// Why a query could not be read: answered with the matching stanza error (XEP-0313 section 4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueryError {
    /// A malformed field or `<set/>`: `bad-request`.
    BadRequest(&'static str),
    /// A well-formed request the server does not accept (a form of another type, too many ids):
    /// `not-acceptable`.
    NotAcceptable(&'static str),
}

impl From<QueryError> for IqError {
    fn from(error: QueryError) -> IqError {
        match error {
            QueryError::BadRequest(text) => IqError::with_text(DefinedCondition::BadRequest, text),
            QueryError::NotAcceptable(text) => {
                IqError::with_text(DefinedCondition::NotAcceptable, text)
            }
        }
    }
}

/// A query as read from the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedQuery {
    /// Echoed on every `<result/>` (XEP-0313 section 4.2).
    pub query_id: Option<String>,
    pub query: ArchiveQuery,
}

/// Reads `<query xmlns='urn:xmpp:mam:2' queryid=…>` with its optional form and `<set/>`.
pub fn parse_query(query: &Element) -> Result<ParsedQuery, QueryError> {
    let mut parsed = ArchiveQuery {
        max: DEFAULT_PAGE,
        ..ArchiveQuery::default()
    };
    if let Some(form) = query.get_child("x", ns::DATA_FORMS) {
        parse_form(form, &mut parsed)?;
    }
    if let Some(set) = query.get_child("set", ns::RSM) {
        parse_rsm(set, &mut parsed)?;
    }
    let named_ids = usize::from(parsed.after_id.is_some())
        + usize::from(parsed.before_id.is_some())
        + parsed.ids.as_ref().map_or(0, Vec::len)
        + usize::from(matches!(
            parsed.paging,
            ArchivePaging::Forward { after: Some(_) } | ArchivePaging::Backward { before: Some(_) }
        ));
    if named_ids > ARCHIVE_MAX_IDS {
        return Err(QueryError::NotAcceptable("too many message ids"));
    }
    Ok(ParsedQuery {
        query_id: query.attr("queryid").map(str::to_string),
        query: parsed,
    })
}

/// XEP-0313 section 4.1 with XEP-0004: a `submit` form of `FORM_TYPE` `urn:xmpp:mam:2`.
fn parse_form(form: &Element, query: &mut ArchiveQuery) -> Result<(), QueryError> {
    if !matches!(form.attr("type"), Some("submit") | None) {
        return Err(QueryError::BadRequest("the form must be of type submit"));
    }
    for field in form.children().filter(|c| c.is("field", ns::DATA_FORMS)) {
        let mut values = field
            .children()
            .filter(|c| c.is("value", ns::DATA_FORMS))
            .map(Element::text);
        let name = field.attr("var").unwrap_or_default();
        if name == "ids" {
            let ids: Vec<String> = values.take(ARCHIVE_MAX_IDS + 1).collect();
            if ids.len() > ARCHIVE_MAX_IDS {
                return Err(QueryError::NotAcceptable("too many message ids"));
            }
            query.ids = Some(ids);
            continue;
        }
        let value = values.next().unwrap_or_default();
        match name {
            "FORM_TYPE" if value == ns::MAM => {}
            "FORM_TYPE" => return Err(QueryError::NotAcceptable("unknown FORM_TYPE")),
            "with" => {
                let with: Jid = value
                    .parse()
                    .map_err(|_| QueryError::BadRequest("with is not a JID"))?;
                // Archived by the bare JID of the other party (the storage's `contact`).
                query.with = Some(with.to_bare().to_string());
            }
            "start" => query.start_ms = Some(parse_time(&value)?),
            "end" => query.end_ms = Some(parse_time(&value)?),
            "after-id" => query.after_id = Some(value),
            "before-id" => query.before_id = Some(value),
            _ => return Err(QueryError::BadRequest("unknown field")),
        }
    }
    Ok(())
}

/// A XEP-0082 DateTime to ms since the epoch.
fn parse_time(value: &str) -> Result<i64, QueryError> {
    chrono::DateTime::parse_from_rfc3339(value.trim())
        .map(|at| at.timestamp_millis())
        .map_err(|_| QueryError::BadRequest("not a XEP-0082 DateTime"))
}

/// XEP-0059 sections 2.2 to 2.5: `max`, `after`, `before` (empty: the last page).
fn parse_rsm(set: &Element, query: &mut ArchiveQuery) -> Result<(), QueryError> {
    if let Some(max) = set.get_child("max", ns::RSM) {
        query.max = max
            .text()
            .trim()
            .parse()
            .map_err(|_| QueryError::BadRequest("max is not a number"))?;
    }
    let after = set.get_child("after", ns::RSM).map(Element::text);
    let before = set.get_child("before", ns::RSM).map(Element::text);
    query.paging = match (after, before) {
        (Some(_), Some(_)) => return Err(QueryError::BadRequest("both after and before")),
        (Some(after), None) if after.is_empty() => {
            return Err(QueryError::BadRequest("empty after"));
        }
        (Some(after), None) => ArchivePaging::Forward { after: Some(after) },
        (None, Some(before)) if before.is_empty() => ArchivePaging::Backward { before: None },
        (None, Some(before)) => ArchivePaging::Backward {
            before: Some(before),
        },
        (None, None) => ArchivePaging::Forward { after: None },
    };
    if set.has_child("index", ns::RSM) {
        // Jumping to an index needs a count of the matches, which this archive does not keep.
        return Err(QueryError::BadRequest("index is not supported"));
    }
    Ok(())
}

/// XEP-0082 DateTime in UTC with milliseconds.
fn stamp(at_ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(at_ms)
        .unwrap_or_default()
        .format("%Y-%m-%dT%H:%M:%S%.3fZ")
        .to_string()
}

/// One result (XEP-0313 section 4.2): `<message to><result queryid id><forwarded><delay stamp/>
/// original</forwarded></result></message>`. `None` if the stored stanza no longer parses.
pub fn result_message(
    to: &str,
    query_id: Option<&str>,
    message: &ArchivedMessage,
) -> Option<Element> {
    let original: Element = message.stanza.parse().ok()?;
    let mut delay = Element::builder("delay", ns::DELAY).build();
    set_attribute(&mut delay, "stamp", &stamp(message.at_ms));
    let forwarded = Element::builder("forwarded", ns::FORWARD)
        .append(delay)
        .append(original)
        .build();
    let mut result = Element::builder("result", ns::MAM)
        .append(forwarded)
        .build();
    if let Some(query_id) = query_id {
        set_attribute(&mut result, "queryid", query_id);
    }
    set_attribute(&mut result, "id", &message.id);
    let mut wrapper = Element::builder("message", ns::CLIENT)
        .append(result)
        .build();
    set_attribute(&mut wrapper, "to", to);
    Some(wrapper)
}

/// `<fin xmlns='urn:xmpp:mam:2' complete='true'?><set><first/><last/></set></fin>` (XEP-0313 section
/// 4.3, XEP-0059 section 2.6: an empty page has an empty `<set/>`).
pub fn fin(page: &ArchivePage) -> Element {
    let mut set = Element::builder("set", ns::RSM).build();
    if let (Some(first), Some(last)) = (page.first_id(), page.last_id()) {
        let mut first_element = Element::builder("first", ns::RSM).build();
        first_element.append_text_node(first);
        set.append_child(first_element);
        let mut last_element = Element::builder("last", ns::RSM).build();
        last_element.append_text_node(last);
        set.append_child(last_element);
    }
    let mut fin = Element::builder("fin", ns::MAM).append(set).build();
    if page.complete {
        set_attribute(&mut fin, "complete", "true");
    }
    fin
}

/// The query form (XEP-0313 section 4.1.5, answered to a get on `<query/>`).
pub fn query_form() -> Element {
    let mut form = Element::builder("x", ns::DATA_FORMS).build();
    set_attribute(&mut form, "type", "form");
    let mut form_type = Element::builder("field", ns::DATA_FORMS)
        .append(
            Element::builder("value", ns::DATA_FORMS)
                .append(ns::MAM)
                .build(),
        )
        .build();
    set_attribute(&mut form_type, "var", "FORM_TYPE");
    set_attribute(&mut form_type, "type", "hidden");
    form.append_child(form_type);
    for (var, kind) in [
        ("with", "jid-single"),
        ("start", "text-single"),
        ("end", "text-single"),
        ("before-id", "text-single"),
        ("after-id", "text-single"),
        ("ids", "text-multi"),
    ] {
        let mut field = Element::builder("field", ns::DATA_FORMS).build();
        set_attribute(&mut field, "var", var);
        set_attribute(&mut field, "type", kind);
        form.append_child(field);
    }
    Element::builder("query", ns::MAM).append(form).build()
}

/// Reads `<prefs default><always><jid/>…</always><never>…</never></prefs>` (XEP-0441 section 2.1), the
/// JIDs normalised so [`prefs_verdict`] compares strings.
pub fn parse_prefs(prefs: &Element) -> Result<ArchivePrefs, QueryError> {
    let default = prefs
        .attr("default")
        .and_then(ArchiveDefault::parse)
        .ok_or(QueryError::BadRequest(
            "default must be always, never or roster",
        ))?;
    let list = |name: &str| -> Result<Vec<String>, QueryError> {
        let mut jids = Vec::new();
        if let Some(list) = prefs.get_child(name, ns::MAM) {
            for jid in list.children().filter(|c| c.is("jid", ns::MAM)) {
                if jids.len() == MAX_PREF_JIDS {
                    return Err(QueryError::NotAcceptable("too many JIDs in a list"));
                }
                let parsed: Jid = jid
                    .text()
                    .trim()
                    .parse()
                    .map_err(|_| QueryError::BadRequest("not a JID"))?;
                jids.push(parsed.to_string());
            }
        }
        Ok(jids)
    };
    Ok(ArchivePrefs {
        default,
        always: list("always")?,
        never: list("never")?,
    })
}

/// The `<prefs/>` element for `prefs`.
pub fn prefs_element(prefs: &ArchivePrefs) -> Element {
    let list = |name: &str, jids: &[String]| {
        let mut list = Element::builder(name, ns::MAM).build();
        for jid in jids {
            list.append_child(
                Element::builder("jid", ns::MAM)
                    .append(jid.as_str())
                    .build(),
            );
        }
        list
    };
    let mut element = Element::builder("prefs", ns::MAM)
        .append(list("always", &prefs.always))
        .append(list("never", &prefs.never))
        .build();
    set_attribute(&mut element, "default", prefs.default.as_str());
    element
}

/// The preferences of an owner who never set any: archive everything.
fn default_prefs() -> ArchivePrefs {
    ArchivePrefs {
        default: ArchiveDefault::Always,
        always: Vec::new(),
        never: Vec::new(),
    }
}

/// A `urn:xmpp:mam:2` IQ from a client to its own account: a query (set), the form (get on
/// `<query/>`), the metadata (get on `<metadata/>`) or the preferences (`<prefs/>`). One handler
/// branching on the element, as the IQ table dispatches by namespace.
pub async fn handle_own(
    router: &Arc<Router>,
    session: &ClientSession,
    request: &IqRequest<'_>,
) -> IqAnswer {
    let context = &router.context;
    // Off (`[archive] enabled = false`): as a server without XEP-0313 (RFC 6120 section 8.4).
    if !context.config.archive_enabled {
        return Err(IqError::new(DefinedCondition::ServiceUnavailable));
    }
    let storage = &context.storage;
    let owner = session.bare.as_str();
    // Reads see every message this account was sent or sent before the request: appends are written
    // behind delivery (see the module documentation).
    if matches!(request.payload.name(), "query" | "metadata") {
        context.archive.sync().await;
    }
    match (request.payload.name(), request.is_set) {
        ("query", false) => Ok(Some(query_form())),
        ("query", true) => run_query(router, session, request.payload).await,
        ("metadata", false) => {
            let metadata = storage.archive.metadata(owner).await.map_err(internal)?;
            let mut element = Element::builder("metadata", ns::MAM).build();
            if let Some(metadata) = metadata {
                for (name, mark) in [("start", metadata.start), ("end", metadata.end)] {
                    let mut end = Element::builder(name, ns::MAM).build();
                    set_attribute(&mut end, "id", &mark.id);
                    set_attribute(&mut end, "timestamp", &stamp(mark.at_ms));
                    element.append_child(end);
                }
            }
            Ok(Some(element))
        }
        ("prefs", false) => {
            let prefs = context
                .archive_prefs
                .get(storage, owner)
                .await
                .map_err(internal)?;
            Ok(Some(match prefs {
                Some(prefs) => prefs_element(&prefs),
                None => prefs_element(&default_prefs()),
            }))
        }
        ("prefs", true) => {
            let prefs = parse_prefs(request.payload)?;
            let stored = context
                .archive_prefs
                .set(storage, owner, &prefs)
                .await
                .map_err(internal)?;
            // Answered with what was stored (a JID on both lists is kept on `never` only).
            Ok(Some(match stored {
                Some(stored) => prefs_element(&stored),
                None => prefs_element(&prefs),
            }))
        }
        _ => Err(IqError::new(DefinedCondition::FeatureNotImplemented)),
    }
}

/// Runs a query: the results to the querying resource, in order, then the `<fin/>` for the IQ result.
async fn run_query(router: &Arc<Router>, session: &ClientSession, payload: &Element) -> IqAnswer {
    let ParsedQuery { query_id, query } = parse_query(payload)?;
    let page = match router
        .context
        .storage
        .archive
        .query(&session.bare, &query)
        .await
    {
        Ok(page) => page,
        // XEP-0313 sections 4.1.3 and 4.3.2: an id this archive does not hold.
        Err(StorageError::UnknownArchiveId(_)) => {
            return Err(IqError::new(DefinedCondition::ItemNotFound));
        }
        Err(StorageError::OverLimit(_)) => {
            return Err(QueryError::NotAcceptable("too many message ids").into());
        }
        Err(e) => return Err(internal(e)),
    };
    let to = session.jid.to_string();
    let resource = session.jid.resource().as_str();
    for message in &page.messages {
        let Some(result) = result_message(&to, query_id.as_deref(), message) else {
            tracing::error!(id = %message.id, "unparsable archived message skipped");
            continue;
        };
        // Straight to the querying resource, before the IQ result, which goes the same way (XEP-0313
        // section 4.2: the results precede the result of the query).
        if !router
            .deliver_to_resource(&session.bare, resource, &result)
            .await
        {
            return Err(IqError::new(DefinedCondition::ResourceConstraint));
        }
    }
    debug_assert!(page.messages.len() <= ARCHIVE_MAX_PAGE);
    Ok(Some(fin(&page)))
}

fn internal(e: StorageError) -> IqError {
    tracing::error!(error = %e, "archive storage failed");
    IqError::new(DefinedCondition::InternalServerError)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn element(xml: &str) -> Element {
        xml.parse().expect("xml")
    }

    fn query(inner: &str) -> Result<ParsedQuery, QueryError> {
        parse_query(&element(&format!(
            "<query xmlns='urn:xmpp:mam:2' queryid='q1'>{inner}</query>"
        )))
    }

    fn form(fields: &str) -> String {
        format!(
            "<x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE' type='hidden'><value>urn:xmpp:mam:2</value></field>{fields}</x>"
        )
    }

    #[test]
    fn an_empty_query_pages_forward_from_the_start() {
        let parsed = query("").expect("query");
        assert_eq!(parsed.query_id.as_deref(), Some("q1"));
        assert_eq!(parsed.query.max, DEFAULT_PAGE);
        assert_eq!(parsed.query.paging, ArchivePaging::Forward { after: None });
        assert_eq!(parsed.query.with, None);
    }

    #[test]
    fn form_fields_become_filters() {
        let parsed = query(&form(
            "<field var='with'><value>juliet@capulet.lit/balcony</value></field>\
             <field var='start'><value>2010-06-07T00:00:00Z</value></field>\
             <field var='end'><value>2010-07-07T13:23:54.5+02:00</value></field>\
             <field var='after-id'><value>a</value></field>\
             <field var='before-id'><value>b</value></field>\
             <field var='ids'><value>x</value><value>y</value></field>",
        ))
        .expect("query");
        let q = parsed.query;
        assert_eq!(q.with.as_deref(), Some("juliet@capulet.lit"));
        assert_eq!(q.start_ms, Some(1_275_868_800_000));
        assert_eq!(q.end_ms, Some(1_278_501_834_500));
        assert_eq!(q.after_id.as_deref(), Some("a"));
        assert_eq!(q.before_id.as_deref(), Some("b"));
        assert_eq!(q.ids, Some(vec!["x".to_string(), "y".to_string()]));
    }

    #[test]
    fn malformed_forms_are_refused() {
        for (fields, expected) in [
            ("<field var='start'><value>yesterday</value></field>", "bad"),
            ("<field var='with'><value>@@</value></field>", "bad"),
            ("<field var='colour'><value>red</value></field>", "bad"),
        ] {
            let outcome = query(&form(fields));
            assert!(
                matches!(
                    (&outcome, expected),
                    (Err(QueryError::BadRequest(_)), "bad")
                ),
                "{fields}: {outcome:?}"
            );
        }
        let other_type = query(
            "<x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE'><value>urn:other</value></field></x>",
        );
        assert!(matches!(other_type, Err(QueryError::NotAcceptable(_))));
        let too_many: String = (0..=ARCHIVE_MAX_IDS)
            .map(|i| format!("<value>{i}</value>"))
            .collect();
        let outcome = query(&form(&format!("<field var='ids'>{too_many}</field>")));
        assert!(matches!(outcome, Err(QueryError::NotAcceptable(_))));
    }

    #[test]
    fn rsm_sets_the_page() {
        let rsm = |inner: &str| {
            query(&format!(
                "<set xmlns='http://jabber.org/protocol/rsm'>{inner}</set>"
            ))
        };
        let parsed = rsm("<max>2</max><after>abc</after>").expect("rsm");
        assert_eq!(parsed.query.max, 2);
        assert_eq!(
            parsed.query.paging,
            ArchivePaging::Forward {
                after: Some("abc".into())
            }
        );
        let last = rsm("<max>5</max><before/>").expect("rsm");
        assert_eq!(last.query.paging, ArchivePaging::Backward { before: None });
        let before = rsm("<before>xyz</before>").expect("rsm");
        assert_eq!(
            before.query.paging,
            ArchivePaging::Backward {
                before: Some("xyz".into())
            }
        );
        for bad in [
            "<max>many</max>",
            "<max>-1</max>",
            "<after>a</after><before>b</before>",
            "<after/>",
            "<index>3</index>",
        ] {
            assert!(matches!(rsm(bad), Err(QueryError::BadRequest(_))), "{bad}");
        }
    }

    fn archived(id: &str, stanza: &str) -> ArchivedMessage {
        ArchivedMessage {
            id: id.into(),
            contact: "alice@localhost".into(),
            at_ms: 1_700_000_000_123,
            direction: Direction::Incoming,
            stanza: stanza.into(),
        }
    }

    #[test]
    fn a_result_forwards_the_original_with_its_stamp() {
        let message = archived(
            "id1",
            "<message xmlns='jabber:client' from='alice@localhost/a' to='bob@localhost' type='chat'><body>hi</body></message>",
        );
        let result = result_message("bob@localhost/r", Some("q1"), &message).expect("result");
        assert_eq!(result.attr("to"), Some("bob@localhost/r"));
        let inner = result.get_child("result", ns::MAM).expect("result");
        assert_eq!(inner.attr("queryid"), Some("q1"));
        assert_eq!(inner.attr("id"), Some("id1"));
        let forwarded = inner
            .get_child("forwarded", ns::FORWARD)
            .expect("forwarded");
        let delay = forwarded.get_child("delay", ns::DELAY).expect("delay");
        assert_eq!(delay.attr("stamp"), Some("2023-11-14T22:13:20.123Z"));
        let original = forwarded
            .get_child("message", ns::CLIENT)
            .expect("original");
        assert_eq!(
            original
                .get_child("body", ns::CLIENT)
                .map(Element::text)
                .as_deref(),
            Some("hi")
        );
        assert!(result_message("bob@localhost/r", None, &archived("x", "<broken")).is_none());
    }

    #[test]
    fn fin_names_the_page_ends() {
        let page = ArchivePage {
            messages: vec![archived("a", "<m/>"), archived("b", "<m/>")],
            complete: false,
        };
        let xml = String::from(&fin(&page));
        assert!(xml.contains("<first>a</first><last>b</last>"), "{xml}");
        assert!(!xml.contains("complete"), "{xml}");
        let empty = ArchivePage {
            messages: Vec::new(),
            complete: true,
        };
        let xml = String::from(&fin(&empty));
        assert!(
            xml.contains("complete=\"true\"") || xml.contains("complete='true'"),
            "{xml}"
        );
        assert!(!xml.contains("first"), "{xml}");
    }

    #[test]
    fn what_is_archived() {
        let chat = |inner: &str| {
            element(&format!(
                "<message xmlns='jabber:client' type='chat'>{inner}</message>"
            ))
        };
        assert!(is_archivable(&chat("<body>hi</body>")));
        assert!(!is_archivable(&chat(
            "<composing xmlns='http://jabber.org/protocol/chatstates'/>"
        )));
        assert!(!is_archivable(&chat(
            "<body>hi</body><no-store xmlns='urn:xmpp:hints'/>"
        )));
        assert!(!is_archivable(&chat(
            "<body>hi</body><no-permanent-store xmlns='urn:xmpp:hints'/>"
        )));
        assert!(is_archivable(&chat("<store xmlns='urn:xmpp:hints'/>")));
        assert!(is_archivable(&chat(
            "<encrypted xmlns='eu.siacs.conversations.axolotl'/>"
        )));
        assert!(!is_archived_kind(StanzaKind::Message(
            MessageKind::Groupchat
        )));
        assert!(!is_archived_kind(StanzaKind::Message(MessageKind::Error)));
        assert!(is_archived_kind(StanzaKind::Message(MessageKind::Normal)));
    }

    #[test]
    fn forged_stanza_ids_by_the_archive_are_stripped() {
        let bob: BareJid = "bob@localhost".parse().expect("jid");
        let mut message = element(
            "<message xmlns='jabber:client'><body>hi</body>\
             <stanza-id xmlns='urn:xmpp:sid:0' by='Bob@localhost' id='forged'/>\
             <stanza-id xmlns='urn:xmpp:sid:0' by='room@muc.example' id='kept'/></message>",
        );
        strip_forged_stanza_ids(&mut message, &bob);
        let ids: Vec<_> = message
            .children()
            .filter(|c| c.is("stanza-id", ns::STANZA_ID))
            .filter_map(|c| c.attr("id"))
            .collect();
        assert_eq!(ids, ["kept"]);
        assert!(message.has_child("body", ns::CLIENT));
    }

    #[test]
    fn preferences_match_bare_and_full_jids() {
        let prefs = ArchivePrefs {
            default: ArchiveDefault::Roster,
            always: vec!["alice@localhost".into(), "carol@localhost/phone".into()],
            never: vec!["mallory@localhost".into()],
        };
        let verdict = |jid: &str| prefs_verdict(&prefs, &jid.parse().expect("jid"));
        assert_eq!(verdict("alice@localhost/any"), PrefsVerdict::Archive);
        assert_eq!(verdict("alice@localhost"), PrefsVerdict::Archive);
        assert_eq!(verdict("carol@localhost/phone"), PrefsVerdict::Archive);
        assert_eq!(verdict("carol@localhost/pc"), PrefsVerdict::IfInRoster);
        assert_eq!(verdict("mallory@localhost/x"), PrefsVerdict::Skip);
        let never = ArchivePrefs {
            default: ArchiveDefault::Never,
            ..prefs.clone()
        };
        assert_eq!(
            prefs_verdict(&never, &"dave@localhost".parse().expect("jid")),
            PrefsVerdict::Skip
        );
    }

    #[tokio::test]
    async fn retention_purges_what_is_older_than_the_period_only() {
        let storage = Storage::connect("sqlite::memory:").await.expect("storage");
        let day_ms = 86_400_000;
        let now = 100 * day_ms;
        for at_ms in [now - 3 * day_ms, now - 2 * day_ms, now - day_ms / 2] {
            let id = new_stanza_id();
            let append = herald_storage::ArchiveAppend {
                owner: "bob@localhost",
                id: &id,
                contact: "alice@localhost",
                at_ms,
                direction: Direction::Incoming,
                stanza: "<message xmlns='jabber:client'><body>x</body></message>",
            };
            storage.archive.append(&append).await.expect("append");
        }
        let deleted = purge_expired(&storage, Duration::from_secs(86_400), now)
            .await
            .expect("purge");
        assert_eq!(deleted, 2);
        let left = storage
            .archive
            .query(
                "bob@localhost",
                &ArchiveQuery {
                    max: 10,
                    ..ArchiveQuery::default()
                },
            )
            .await
            .expect("query");
        assert_eq!(left.messages.len(), 1);
        assert_eq!(left.messages[0].at_ms, now - day_ms / 2);
    }

    #[test]
    fn prefs_round_trip() {
        let parsed = parse_prefs(&element(
            "<prefs xmlns='urn:xmpp:mam:2' default='roster'>\
             <always><jid>romeo@montague.lit/orchard</jid></always>\
             <never><jid>montague@montague.lit</jid></never></prefs>",
        ))
        .expect("prefs");
        assert_eq!(parsed.default, ArchiveDefault::Roster);
        assert_eq!(parsed.always, ["romeo@montague.lit/orchard"]);
        let again = parse_prefs(&prefs_element(&parsed)).expect("again");
        assert_eq!(again, parsed);
        assert!(parse_prefs(&element("<prefs xmlns='urn:xmpp:mam:2' default='often'/>")).is_err());
    }
}

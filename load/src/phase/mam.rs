//! XEP-0313 (`urn:xmpp:mam:2`) archive queries as the archive phase sends them: a XEP-0004 form with
//! an optional `with` filter (XEP-0313 section 4.1.1) and XEP-0059 paging (`<max/>` with `<after/>`,
//! or an empty `<before/>` for the last page, XEP-0059 section 2.5); and the reading of the replies:
//! the `<result/>` messages (section 4.2) and the `<fin/>` that ends the query (section 4.3).

use crate::client::{ClientError, Element, Session, escape};

/// The XEP-0313 namespace (version 2).
pub const NS_MAM: &str = "urn:xmpp:mam:2";
const NS_RSM: &str = "http://jabber.org/protocol/rsm";
const NS_DATA: &str = "jabber:x:data";

/// Which page of the (possibly filtered) archive to ask for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Page {
    /// The oldest messages: `<max/>` alone.
    First,
    /// The messages right after this archive id: `<after>id</after>`.
    After(String),
    /// The newest messages: an empty `<before/>` (XEP-0059 section 2.5).
    Last,
}

/// The `<query/>` payload of an `<iq type='set'>` asking for `max` messages of `page`, only those
/// exchanged with `with` (a bare JID) if given.
pub fn query_payload(query_id: &str, with: Option<&str>, page: &Page, max: usize) -> String {
    let form = match with {
        Some(jid) => format!(
            "<x xmlns='{NS_DATA}' type='submit'>\
             <field var='FORM_TYPE' type='hidden'><value>{NS_MAM}</value></field>\
             <field var='with'><value>{}</value></field></x>",
            escape(jid)
        ),
        None => String::new(),
    };
    let position = match page {
        Page::First => String::new(),
        Page::After(id) => format!("<after>{}</after>", escape(id)),
        Page::Last => "<before/>".to_owned(),
    };
    format!(
        "<query xmlns='{NS_MAM}' queryid='{}'>{form}<set xmlns='{NS_RSM}'><max>{max}</max>{position}</set></query>",
        escape(query_id)
    )
}

/// One archived message as a `<result/>` carries it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchivedItem {
    /// The archive id (`<result id/>`, the XEP-0359 stanza id).
    pub id: String,
    /// `from` of the forwarded message, as written.
    pub from: String,
    /// `to` of the forwarded message, as written.
    pub to: String,
    /// The forwarded message's body, if any.
    pub body: Option<String>,
}

impl ArchivedItem {
    /// The other party (bare JID) from the point of view of `owner` (a bare JID): the sender of an
    /// incoming message, the recipient of an outgoing one.
    pub fn contact(&self, owner: &str) -> &str {
        let from = bare(&self.from);
        if from == owner { bare(&self.to) } else { from }
    }
}

/// The bare part of a JID (everything before the first `/`).
pub fn bare(jid: &str) -> &str {
    jid.split('/').next().unwrap_or(jid)
}

/// The archived message in `message` if it is a `<result/>` of query `query_id` (XEP-0313 section
/// 4.2); `None` for any other stanza (or a result without an id or forwarded message).
pub fn parse_result(message: &Element, query_id: &str) -> Option<ArchivedItem> {
    if message.name != "message" {
        return None;
    }
    let result = message.child_ns("result", NS_MAM)?;
    if result.attr("queryid") != Some(query_id) {
        return None;
    }
    let forwarded = result.child("message").or_else(|| {
        result
            .child("forwarded")
            .and_then(|forwarded| forwarded.child("message"))
    })?;
    Some(ArchivedItem {
        id: result.attr("id")?.to_owned(),
        from: forwarded.attr("from").unwrap_or_default().to_owned(),
        to: forwarded.attr("to").unwrap_or_default().to_owned(),
        body: forwarded.child_text("body").map(str::to_owned),
    })
}

/// What `<fin/>` says about the page (XEP-0313 section 4.3 with XEP-0059 section 2.6).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Fin {
    /// `complete='true'`: the page reaches the end of the archive in the paging direction.
    pub complete: bool,
    /// `<first/>`: the page's first archive id.
    pub first: Option<String>,
    /// `<last/>`: the page's last archive id.
    pub last: Option<String>,
    /// `<count/>`: matching messages in all, if the server says.
    pub count: Option<u64>,
}

/// The `<fin/>` of an `<iq type='result'>`, if it carries one.
pub fn parse_fin(iq: &Element) -> Option<Fin> {
    let fin = iq.child_ns("fin", NS_MAM)?;
    let set = fin.child("set");
    let text = |name: &str| {
        set.and_then(|s| s.child_text(name))
            .map(|t| t.trim().to_owned())
            .filter(|t| !t.is_empty())
    };
    Some(Fin {
        complete: matches!(fin.attr("complete"), Some("true" | "1")),
        first: text("first"),
        last: text("last"),
        count: text("count").and_then(|c| c.parse().ok()),
    })
}

/// The id to page `after` for a middle page of `ids` (oldest first), and the id that page must start
/// with: the item at the middle and the one right after it. `None` if there are fewer than two ids.
pub fn middle_ids(ids: &[String]) -> Option<(&str, &str)> {
    if ids.len() < 2 {
        return None;
    }
    let at = (ids.len() - 1) / 2;
    Some((&ids[at], &ids[at + 1]))
}

/// Sends one query and reads its results up to the `<iq type='result'>` that ends it (results of other
/// queries and other stanzas are skipped).
///
/// Errors: [`ClientError::IqError`] if the server answers with an error (e.g. `item-not-found`,
/// `service-unavailable` without XEP-0313), [`ClientError::Protocol`] for a result without `<fin/>`,
/// transport errors and the session timeout.
pub async fn query<S>(
    session: &mut Session<S>,
    query_id: &str,
    with: Option<&str>,
    page: &Page,
    max: usize,
) -> Result<(Vec<ArchivedItem>, Fin), ClientError>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let id = session.fresh_id();
    let payload = query_payload(query_id, with, page, max);
    session
        .send(&format!("<iq type='set' id='{id}'>{payload}</iq>"))
        .await?;
    let mut items = Vec::with_capacity(max);
    loop {
        let e = session.recv().await?;
        if let Some(item) = parse_result(&e, query_id) {
            items.push(item);
            continue;
        }
        if e.name != "iq" || e.attr("id") != Some(id.as_str()) {
            continue;
        }
        if e.attr("type") != Some("result") {
            return Err(ClientError::IqError(crate::client::error_condition(&e)));
        }
        let fin = parse_fin(&e)
            .ok_or_else(|| ClientError::Protocol("MAM result without <fin/>".into()))?;
        return Ok((items, fin));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::{ElementReader, Incoming};

    async fn parse(xml: &str) -> Element {
        let doc = format!("<stream:stream xmlns:stream='s'>{xml}");
        let mut reader = ElementReader::new(tokio::io::BufReader::new(doc.as_bytes()), 1 << 20);
        loop {
            match reader.next().await.expect("well-formed") {
                Incoming::StreamHeader(_) => continue,
                Incoming::Element(e) => return e,
            }
        }
    }

    #[test]
    fn query_asks_for_the_page_with_the_filter() {
        let first = query_payload("q1", None, &Page::First, 50);
        assert_eq!(
            first,
            "<query xmlns='urn:xmpp:mam:2' queryid='q1'><set xmlns='http://jabber.org/protocol/rsm'><max>50</max></set></query>"
        );
        let last = query_payload("q2", Some("bob@localhost"), &Page::Last, 50);
        assert!(
            last.contains("<field var='with'><value>bob@localhost</value></field>"),
            "{last}"
        );
        assert!(last.contains("<max>50</max><before/></set>"), "{last}");
        let middle = query_payload("q3", None, &Page::After("a<b".into()), 10);
        assert!(middle.contains("<after>a&lt;b</after>"), "{middle}");
    }

    #[tokio::test]
    async fn result_gives_id_parties_and_body_of_its_query_only() {
        let e = parse(
            "<message to='alice@localhost/mam'><result xmlns='urn:xmpp:mam:2' queryid='q1' id='28482-98726-73623'>\
             <forwarded xmlns='urn:xmpp:forward:0'><delay xmlns='urn:xmpp:delay' stamp='2010-07-10T23:08:25Z'/>\
             <message xmlns='jabber:client' from='bob@localhost/phone' to='alice@localhost' type='chat'>\
             <body>archive fill 7</body></message></forwarded></result></message>",
        )
        .await;
        let item = parse_result(&e, "q1").expect("a result of q1");
        assert_eq!(item.id, "28482-98726-73623");
        assert_eq!(item.body.as_deref(), Some("archive fill 7"));
        assert_eq!(item.contact("alice@localhost"), "bob@localhost");
        assert_eq!(parse_result(&e, "q2"), None, "another query's result");
        let chat = parse("<message from='bob@localhost'><body>hi</body></message>").await;
        assert_eq!(parse_result(&chat, "q1"), None);
    }

    #[test]
    fn contact_of_an_outgoing_message_is_its_recipient() {
        let item = ArchivedItem {
            id: "1".into(),
            from: "alice@localhost/send0".into(),
            to: "carol@localhost".into(),
            body: None,
        };
        assert_eq!(item.contact("alice@localhost"), "carol@localhost");
    }

    #[tokio::test]
    async fn fin_gives_completeness_page_ends_and_count() {
        let e = parse(
            "<iq type='result' id='hl1'><fin xmlns='urn:xmpp:mam:2' complete='true'>\
             <set xmlns='http://jabber.org/protocol/rsm'><first index='0'>a</first><last>b</last>\
             <count>20</count></set></fin></iq>",
        )
        .await;
        assert_eq!(
            parse_fin(&e),
            Some(Fin {
                complete: true,
                first: Some("a".into()),
                last: Some("b".into()),
                count: Some(20),
            })
        );
        let empty = parse("<iq type='result' id='hl2'><fin xmlns='urn:xmpp:mam:2'><set xmlns='http://jabber.org/protocol/rsm'/></fin></iq>").await;
        assert_eq!(parse_fin(&empty), Some(Fin::default()));
        let other = parse("<iq type='result' id='hl3'/>").await;
        assert_eq!(parse_fin(&other), None);
    }

    #[test]
    fn middle_page_starts_right_after_the_middle_id() {
        let ids: Vec<String> = (0..5).map(|i| i.to_string()).collect();
        assert_eq!(middle_ids(&ids), Some(("2", "3")));
        let even: Vec<String> = (0..4).map(|i| i.to_string()).collect();
        assert_eq!(middle_ids(&even), Some(("1", "2")));
        assert_eq!(middle_ids(&ids[..1]), None);
    }
}

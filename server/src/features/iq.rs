//! IQ dispatch (RFC 6120 section 8.2.3): one table of the payloads the server answers itself, by
//! namespace and by whom the IQ is addressed to (the server, an account by someone else, the user's own
//! account from their client), and the replies built from a handler's answer.

use std::sync::Arc;

use futures::future::BoxFuture;

use super::{ClientSession, SessionEnd};
use crate::router::{Bounce, Delivery, Router};
use crate::xmpp::Envelope;
use crate::xmpp::ns;
use crate::xmpp::{BareJid, DefinedCondition, Element, Jid, set_attribute};

/// A handler's future (handlers are stored as plain function pointers in [`IQ_HANDLERS`]).
pub type IqFuture<'a> = BoxFuture<'a, IqOutcome>;
/// Answers an IQ addressed to one of our domains (RFC 6120 section 10.3).
pub type ServerHandler = for<'a> fn(&'a Arc<Router>, &'a IqRequest<'a>) -> IqFuture<'a>;
/// Answers an IQ addressed to a local user's bare JID by someone else (RFC 6121 section 8.5.2.1.4).
pub type AccountHandler =
    for<'a> fn(&'a Arc<Router>, &'a BareJid, &'a IqRequest<'a>) -> IqFuture<'a>;
/// Answers an IQ a bound client sent to its own account (no `to`, or its bare JID).
pub type OwnAccountHandler =
    for<'a> fn(&'a Arc<Router>, &'a ClientSession, &'a IqRequest<'a>) -> IqFuture<'a>;

/// The handlers of one payload namespace, by whom the IQ is addressed to. `None` is answered
/// `<service-unavailable/>` (RFC 6120 section 8.3.3.19).
#[derive(Clone, Copy)]
pub struct IqHandlers {
    /// The namespace of the payload (the IQ's one child, RFC 6120 section 8.2.3).
    pub namespace: &'static str,
    /// Whether the server's disco#info lists it (XEP-0030 section 3.1).
    pub is_advertised: bool,
    /// Whether an account's disco#info lists it (XEP-0030 section 3.1 on a bare JID).
    pub is_advertised_on_account: bool,
    /// Addressed to one of our domains (`to='example.org'`).
    pub for_server: Option<ServerHandler>,
    /// Addressed to a local user's bare JID by someone else.
    pub for_account: Option<AccountHandler>,
    /// Sent by a bound client to its own account.
    pub for_own_account: Option<OwnAccountHandler>,
}

/// Every IQ payload the server handles: namespace x addressee. A new XEP is one row here and one file
/// beside this one; disco#info is derived from this table ([`super::disco::server_features`]).
pub static IQ_HANDLERS: [IqHandlers; 15] = [
    // RFC 6121 section 2; implied by RFC 6121, so not advertised.
    IqHandlers {
        namespace: ns::ROSTER,
        is_advertised: false,
        is_advertised_on_account: false,
        for_server: None,
        for_account: None,
        for_own_account: Some(|router, session, request| {
            Box::pin(async move { super::roster::handle(router, session, request).await.into() })
        }),
    },
    // XEP-0054: anyone reads a vCard, only its owner writes it.
    IqHandlers {
        namespace: ns::VCARD,
        is_advertised: true,
        is_advertised_on_account: false,
        for_server: None,
        for_account: Some(|router, user, request| {
            Box::pin(async move {
                super::vcard::handle_other(router, user, request)
                    .await
                    .into()
            })
        }),
        for_own_account: Some(|router, session, request| {
            Box::pin(async move {
                super::vcard::handle_own(router, session, request)
                    .await
                    .into()
            })
        }),
    },
    // XEP-0049: a user's own private XML only; anyone else, the server's JID included, is refused
    // with forbidden (section 2.3).
    IqHandlers {
        namespace: ns::PRIVATE,
        is_advertised: true,
        is_advertised_on_account: false,
        for_server: Some(|_, _| answer_now(super::private_xml::refuse_other())),
        for_account: Some(|_, _, _| answer_now(super::private_xml::refuse_other())),
        for_own_account: Some(|router, session, request| {
            Box::pin(async move {
                super::private_xml::handle_own(router, session, request)
                    .await
                    .into()
            })
        }),
    },
    // XEP-0191.
    IqHandlers {
        namespace: ns::BLOCKING,
        is_advertised: true,
        is_advertised_on_account: false,
        for_server: None,
        for_account: None,
        for_own_account: Some(|router, session, request| {
            Box::pin(async move {
                super::blocking::handle(router, session, request)
                    .await
                    .into()
            })
        }),
    },
    // XEP-0077: password changes and removal, addressed to the server (section 3.3) or to the account.
    IqHandlers {
        namespace: ns::REGISTER,
        is_advertised: true,
        is_advertised_on_account: false,
        for_server: Some(|router, request| Box::pin(super::register::for_server(router, request))),
        for_account: None,
        for_own_account: Some(|router, session, request| {
            Box::pin(super::register::handle_own(router, session, request))
        }),
    },
    // XEP-0199: the server answers for itself and for its users' bare JIDs (a get only, section 4.3).
    IqHandlers {
        namespace: ns::PING,
        is_advertised: true,
        is_advertised_on_account: false,
        for_server: Some(|_, _| answer_now(Ok(None))),
        for_account: Some(|_, _, request| {
            answer_now(if request.is_set {
                Err(IqError::new(DefinedCondition::ServiceUnavailable))
            } else {
                Ok(None)
            })
        }),
        for_own_account: Some(|_, _, _| answer_now(Ok(None))),
    },
    // XEP-0092: the server's software only.
    IqHandlers {
        namespace: ns::VERSION,
        is_advertised: true,
        is_advertised_on_account: false,
        for_server: Some(|_, request| answer_now(super::version::handle(request))),
        for_account: None,
        for_own_account: None,
    },
    // XEP-0030.
    IqHandlers {
        namespace: ns::DISCO_INFO,
        is_advertised: true,
        is_advertised_on_account: false,
        for_server: Some(|router, request| answer_now(super::disco::server_info(router, request))),
        // With a node: a PEP node of the account (XEP-0060 section 5.3).
        for_account: Some(|router, user, request| {
            Box::pin(async move {
                match request.payload.attr("node") {
                    Some(node) if !request.is_set => {
                        super::pep::node_info(router, user, Some(request.from), node)
                            .await
                            .into()
                    }
                    _ => super::disco::account_info(request).into(),
                }
            })
        }),
        for_own_account: Some(|router, session, request| {
            Box::pin(async move {
                match request.payload.attr("node") {
                    Some(node) if !request.is_set => {
                        super::pep::node_info(router, &session.bare_jid(), None, node)
                            .await
                            .into()
                    }
                    _ => super::disco::own_account_info(
                        request,
                        router.context.config.archive_enabled,
                    )
                    .into(),
                }
            })
        }),
    },
    IqHandlers {
        namespace: ns::DISCO_ITEMS,
        is_advertised: true,
        is_advertised_on_account: false,
        for_server: Some(|router, request| answer_now(super::disco::server_items(router, request))),
        for_account: Some(|router, user, request| {
            Box::pin(async move {
                super::disco::account_items(router, user, Some(request.from), request)
                    .await
                    .into()
            })
        }),
        for_own_account: Some(|router, session, request| {
            Box::pin(async move {
                super::disco::account_items(router, &session.bare_jid(), None, request)
                    .await
                    .into()
            })
        }),
    },
    // XEP-0163: the pubsub service on every account's bare JID (XEP-0060 requests, section 4);
    // the account's disco#info lists the namespace with the `#...` features of `pep::FEATURES`.
    IqHandlers {
        namespace: ns::PUBSUB,
        is_advertised: false,
        is_advertised_on_account: true,
        for_server: None,
        for_account: Some(|router, user, request| {
            Box::pin(async move { super::pep::handle_other(router, user, request).await.into() })
        }),
        for_own_account: Some(|router, session, request| {
            Box::pin(async move {
                super::pep::handle_own(router, session, request)
                    .await
                    .into()
            })
        }),
    },
    // XEP-0060 section 8 on the same service: the owner's alone (others get `forbidden`).
    IqHandlers {
        namespace: ns::PUBSUB_OWNER,
        is_advertised: false,
        is_advertised_on_account: false,
        for_server: None,
        for_account: Some(|router, user, request| {
            Box::pin(async move { super::pep::handle_other(router, user, request).await.into() })
        }),
        for_own_account: Some(|router, session, request| {
            Box::pin(async move {
                super::pep::handle_own(router, session, request)
                    .await
                    .into()
            })
        }),
    },
    // XEP-0313 (with XEP-0441 preferences and `#extended` metadata): a user's own archive only. Listed
    // on the account's disco#info, not the server's (XEP-0313: the archive is the account's).
    IqHandlers {
        namespace: ns::MAM,
        is_advertised: false,
        is_advertised_on_account: false,
        for_server: None,
        for_account: None,
        for_own_account: Some(|router, session, request| {
            Box::pin(async move {
                super::archive::handle_own(router, session, request)
                    .await
                    .into()
            })
        }),
    },
    // XEP-0357: enable and disable, on the user's own account only; listed in the account's
    // disco#info (section 4), not the server's.
    IqHandlers {
        namespace: ns::PUSH,
        is_advertised: false,
        is_advertised_on_account: true,
        for_server: None,
        for_account: None,
        for_own_account: Some(|router, session, request| {
            Box::pin(async move {
                super::push_notifications::handle(router, session, request)
                    .await
                    .into()
            })
        }),
    },
    // XEP-0280: enabled and disabled per resource by its own client (sections 4 and 5).
    IqHandlers {
        namespace: ns::CARBONS,
        is_advertised: true,
        is_advertised_on_account: false,
        for_server: None,
        for_account: None,
        for_own_account: Some(|router, session, request| {
            answer_now(super::carbons::handle(router, session, request))
        }),
    },
    // RFC 3921 session establishment, still sent by old clients (RFC 6121 appendix E): a no-op.
    IqHandlers {
        namespace: ns::SESSION,
        is_advertised: false,
        is_advertised_on_account: false,
        for_server: Some(|_, _| answer_now(Ok(None))),
        for_account: None,
        for_own_account: Some(|_, _, _| answer_now(Ok(None))),
    },
];

/// The handlers of `payload`'s namespace, if the server knows it.
fn handlers_for(payload: &Element) -> Option<&'static IqHandlers> {
    let namespace = payload.ns();
    IQ_HANDLERS.iter().find(|h| h.namespace == namespace)
}

/// A handler's answer that is ready at once.
fn answer_now<'a>(answer: IqAnswer) -> IqFuture<'a> {
    Box::pin(std::future::ready(answer.into()))
}

/// What a handler came to: the answer, and whether the account was removed (XEP-0077 section 3.2: every
/// session of it then ends).
#[derive(Debug)]
pub struct IqOutcome {
    pub answer: IqAnswer,
    pub removed_account: bool,
}

impl From<IqAnswer> for IqOutcome {
    fn from(answer: IqAnswer) -> IqOutcome {
        IqOutcome {
            answer,
            removed_account: false,
        }
    }
}

/// A handler's answer: a result payload (or an empty result), or an error condition with optional text.
pub type IqAnswer = Result<Option<Element>, IqError>;

#[derive(Debug, Clone)]
pub struct IqError {
    pub condition: DefinedCondition,
    pub text: Option<String>,
    /// An application-specific condition beside the defined one (RFC 6120 section 8.3.2), e.g.
    /// XEP-0060's `<precondition-not-met/>`.
    /// Boxed: an `IqError` stays small on the many paths that carry none.
    pub app_condition: Option<Box<Element>>,
}

impl IqError {
    pub fn new(condition: DefinedCondition) -> IqError {
        IqError {
            condition,
            text: None,
            app_condition: None,
        }
    }

    pub fn with_text(condition: DefinedCondition, text: &str) -> IqError {
        IqError {
            condition,
            text: Some(text.to_string()),
            app_condition: None,
        }
    }
}

/// The parts of an IQ request a handler needs.
#[derive(Debug)]
pub struct IqRequest<'a> {
    pub from: &'a Jid,
    pub is_set: bool,
    pub payload: &'a Element,
}

/// An IQ a bound client sent to its own account (no `to`, or its bare JID).
pub async fn from_own_client(
    router: &Arc<Router>,
    session: &mut ClientSession,
    envelope: Envelope,
) -> Result<(), SessionEnd> {
    let Some(payload) = single_payload(&envelope) else {
        reply(
            router,
            &envelope,
            Err(IqError::new(DefinedCondition::BadRequest)),
        )
        .await;
        return Ok(());
    };
    let from = Jid::from(session.jid.clone());
    let request = IqRequest {
        from: &from,
        is_set: envelope.element.attr("type") == Some("set"),
        payload,
    };
    let outcome = match handlers_for(payload).and_then(|h| h.for_own_account) {
        Some(handler) => handler(router, session, &request).await,
        None => service_unavailable(),
    };
    reply(router, &envelope, outcome.answer).await;
    if outcome.removed_account {
        super::register::end_all_sessions(router, &session.bare);
        return Err(SessionEnd::AccountRemoved);
    }
    Ok(())
}

/// An IQ addressed to one of our domains.
pub async fn for_server(router: &Arc<Router>, envelope: Envelope) -> Result<Delivery, Bounce> {
    let Some(from) = envelope.from.clone() else {
        return Ok(Delivery::Dropped);
    };
    let Some(payload) = single_payload(&envelope) else {
        return Err(Bounce::new(envelope, DefinedCondition::BadRequest));
    };
    let request = IqRequest {
        from: &from,
        is_set: envelope.element.attr("type") == Some("set"),
        payload,
    };
    let outcome = match handlers_for(payload).and_then(|h| h.for_server) {
        Some(handler) => handler(router, &request).await,
        None => service_unavailable(),
    };
    reply(router, &envelope, outcome.answer).await;
    if outcome.removed_account {
        super::register::end_all_sessions(router, &from.to_bare().to_string());
    }
    Ok(Delivery::Handled)
}

/// An IQ addressed to a local user's bare JID by someone else (RFC 6121 section 8.5.2.1.4).
pub async fn for_account(
    router: &Arc<Router>,
    user: &BareJid,
    envelope: Envelope,
) -> Result<Delivery, Bounce> {
    let Some(from) = envelope.from.clone() else {
        return Ok(Delivery::Dropped);
    };
    let Some(payload) = single_payload(&envelope) else {
        return Err(Bounce::new(envelope, DefinedCondition::BadRequest));
    };
    let request = IqRequest {
        from: &from,
        is_set: envelope.element.attr("type") == Some("set"),
        payload,
    };
    let outcome = match handlers_for(payload).and_then(|h| h.for_account) {
        Some(handler) => handler(router, user, &request).await,
        None => service_unavailable(),
    };
    reply(router, &envelope, outcome.answer).await;
    Ok(Delivery::Handled)
}

fn service_unavailable() -> IqOutcome {
    IqOutcome::from(Err(IqError::new(DefinedCondition::ServiceUnavailable)))
}

/// RFC 6120 section 8.2.3: a get or set carries exactly one payload.
fn single_payload(envelope: &Envelope) -> Option<&Element> {
    let mut children = envelope.element.children();
    let payload = children.next()?;
    if children.next().is_some() {
        return None;
    }
    Some(payload)
}

/// Sends the result or error for `request` back to its sender.
pub async fn reply(router: &Arc<Router>, request: &Envelope, answer: IqAnswer) {
    let element = match answer {
        Ok(payload) => {
            let mut result = Element::builder("iq", ns::CLIENT).build();
            set_attribute(&mut result, "type", "result");
            if let Some(id) = request.id() {
                set_attribute(&mut result, "id", id);
            }
            if let Some(to) = &request.from {
                set_attribute(&mut result, "to", &to.to_string());
            }
            if let Some(from) = &request.to {
                set_attribute(&mut result, "from", &from.to_string());
            }
            if let Some(payload) = payload {
                result.append_child(payload);
            }
            result
        }
        Err(error) => match request.error_reply(error.condition, error.text.as_deref()) {
            Some(mut element) => {
                if let Some(app_condition) = error.app_condition
                    && let Some(error) = element.children_mut().find(|c| c.name() == "error")
                {
                    error.append_child(*app_condition);
                }
                element
            }
            None => return,
        },
    };
    router.send(element).await;
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::config::{Config, RawConfig};
    use crate::context::ServerContext;
    use crate::router::SessionCommand;
    use crate::router::events::Subscribers;
    use crate::router::mailbox::Mailbox;
    use herald_relay::login_throttle::LoginThrottle;
    use herald_storage::Storage;

    /// A server for `localhost` with the real features, alice and bob as accounts and bob bound as
    /// `bob@localhost/pc`.
    async fn server() -> (Arc<Router>, Mailbox<SessionCommand>) {
        let config = Config::resolve(RawConfig::default()).expect("config");
        let storage = Storage::connect("sqlite::memory:").await.expect("storage");
        for name in ["alice@localhost", "bob@localhost"] {
            let jid = crate::accounts::parse_account(name).expect("jid");
            crate::accounts::create(&storage, &jid, "secret")
                .await
                .expect("create");
        }
        let context = ServerContext::new(Arc::new(config), storage, LoginThrottle::default());
        let router = Router::new(
            Arc::new(context),
            Arc::new(super::super::Features),
            Subscribers::new(None),
        );
        let (handle, commands) = router.sessions.new_session();
        router.sessions.bind("bob@localhost", "pc", handle);
        (router, commands)
    }

    fn iq(kind: &str, to: Option<&str>, payload: &str) -> Envelope {
        let to = to.map(|to| format!(" to='{to}'")).unwrap_or_default();
        let xml = format!(
            "<iq xmlns='jabber:client' type='{kind}' id='q' from='bob@localhost/pc'{to}>{payload}</iq>"
        );
        Envelope::parse(xml.parse().expect("xml")).expect("envelope")
    }

    async fn answer(bob: &mut Mailbox<SessionCommand>) -> String {
        match tokio::time::timeout(Duration::from_secs(1), bob.recv()).await {
            Ok(Some(SessionCommand::Stanza(stanza))) => stanza.as_str().to_string(),
            other => panic!("no answer: {other:?}"),
        }
    }

    const PING: &str = "<ping xmlns='urn:xmpp:ping'/>";
    const VERSION: &str = "<query xmlns='jabber:iq:version'/>";

    #[test]
    fn each_namespace_has_one_row() {
        for (i, row) in IQ_HANDLERS.iter().enumerate() {
            assert!(
                IQ_HANDLERS[i + 1..]
                    .iter()
                    .all(|other| other.namespace != row.namespace),
                "{}",
                row.namespace
            );
        }
    }

    #[tokio::test]
    async fn the_server_answers_ping_and_version_for_itself() {
        let (router, mut bob) = server().await;
        for payload in [PING, VERSION] {
            let delivery = for_server(&router, iq("get", Some("localhost"), payload)).await;
            assert!(matches!(delivery, Ok(Delivery::Handled)));
            let reply = answer(&mut bob).await;
            assert!(reply.contains("result"), "{reply}");
            assert_eq!(reply.contains("Herald"), payload == VERSION, "{reply}");
        }
    }

    #[tokio::test]
    async fn an_account_answers_a_ping_get_only_and_no_version() {
        let (router, mut bob) = server().await;
        let user: BareJid = "alice@localhost".parse().expect("jid");
        for (kind, payload, expected) in [
            ("get", PING, "result"),
            ("set", PING, "service-unavailable"),
            ("get", VERSION, "service-unavailable"),
            (
                "get",
                "<query xmlns='urn:example:unknown'/>",
                "service-unavailable",
            ),
        ] {
            let delivery =
                for_account(&router, &user, iq(kind, Some("alice@localhost"), payload)).await;
            assert!(matches!(delivery, Ok(Delivery::Handled)));
            let reply = answer(&mut bob).await;
            assert!(reply.contains(expected), "{kind} {payload}: {reply}");
        }
    }

    #[tokio::test]
    async fn a_get_needs_exactly_one_payload() {
        let (router, _bob) = server().await;
        for payload in [
            "",
            "<ping xmlns='urn:xmpp:ping'/><ping xmlns='urn:xmpp:ping'/>",
        ] {
            let outcome = for_server(&router, iq("get", Some("localhost"), payload)).await;
            assert!(
                matches!(&outcome, Err(bounce) if bounce.condition == DefinedCondition::BadRequest),
                "{outcome:?}"
            );
        }
    }

    #[tokio::test]
    async fn the_own_account_answers_ping_but_not_version() {
        let (router, mut bob) = server().await;
        let mut session = ClientSession::new("bob@localhost/pc".parse().expect("jid"));
        for (payload, expected) in [(PING, "result"), (VERSION, "service-unavailable")] {
            let outcome = from_own_client(&router, &mut session, iq("get", None, payload)).await;
            assert!(outcome.is_ok());
            let reply = answer(&mut bob).await;
            assert!(reply.contains(expected), "{payload}: {reply}");
        }
    }
}

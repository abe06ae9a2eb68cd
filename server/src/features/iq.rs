//! IQ dispatch (RFC 6120 section 8.2.3): the payloads the server answers itself, parsed once into
//! [`IqFeature`], and the replies built from a handler's answer.

use std::sync::Arc;

use super::{ClientSession, SessionEnd};
use crate::router::{Bounce, Delivery, Router};
use crate::xmpp::Envelope;
use crate::xmpp::ns;
use crate::xmpp::{BareJid, DefinedCondition, Element, Jid, set_attribute};

/// Every IQ payload the server handles. A new XEP is a new variant here and a new file beside this one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IqFeature {
    Roster,
    VCard,
    Blocking,
    Register,
    Ping,
    Version,
    DiscoInfo,
    DiscoItems,
    /// RFC 3921 session establishment, still sent by old clients (RFC 6121 appendix E).
    Session,
}

impl IqFeature {
    pub const ALL: [IqFeature; 9] = [
        IqFeature::Roster,
        IqFeature::VCard,
        IqFeature::Blocking,
        IqFeature::Register,
        IqFeature::Ping,
        IqFeature::Version,
        IqFeature::DiscoInfo,
        IqFeature::DiscoItems,
        IqFeature::Session,
    ];

    /// The namespace of the payload this feature answers.
    pub fn namespace(self) -> &'static str {
        match self {
            IqFeature::Roster => ns::ROSTER,
            IqFeature::VCard => ns::VCARD,
            IqFeature::Blocking => ns::BLOCKING,
            IqFeature::Register => ns::REGISTER,
            IqFeature::Ping => ns::PING,
            IqFeature::Version => ns::VERSION,
            IqFeature::DiscoInfo => ns::DISCO_INFO,
            IqFeature::DiscoItems => ns::DISCO_ITEMS,
            IqFeature::Session => ns::SESSION,
        }
    }

    /// Whether the server's disco#info lists this namespace (roster and session are implied by RFC 6121).
    pub fn is_advertised(self) -> bool {
        !matches!(self, IqFeature::Roster | IqFeature::Session)
    }

    fn for_payload(payload: &Element) -> Option<IqFeature> {
        let namespace = payload.ns();
        IqFeature::ALL
            .into_iter()
            .find(|f| f.namespace() == namespace)
    }
}

/// A handler's answer: a result payload (or an empty result), or an error condition with optional text.
pub type IqAnswer = Result<Option<Element>, IqError>;

#[derive(Debug, Clone)]
pub struct IqError {
    pub condition: DefinedCondition,
    pub text: Option<String>,
}

impl IqError {
    pub fn new(condition: DefinedCondition) -> IqError {
        IqError {
            condition,
            text: None,
        }
    }

    pub fn with_text(condition: DefinedCondition, text: &str) -> IqError {
        IqError {
            condition,
            text: Some(text.to_string()),
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
    let Some((feature, payload)) = single_payload(&envelope) else {
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
        payload: &payload,
    };
    let mut end = None;
    let answer = match feature {
        Some(IqFeature::Roster) => super::roster::handle(router, session, &request).await,
        Some(IqFeature::VCard) => super::vcard::handle_own(router, session, &request).await,
        Some(IqFeature::Blocking) => super::blocking::handle(router, session, &request).await,
        Some(IqFeature::Register) => {
            let (answer, removed) = super::register::handle_own(router, session, &request).await;
            end = removed.then_some(SessionEnd::AccountRemoved);
            answer
        }
        Some(IqFeature::Ping) | Some(IqFeature::Session) => Ok(None),
        Some(IqFeature::DiscoInfo) => super::disco::account_info(&request),
        Some(IqFeature::DiscoItems) => super::disco::account_items(&request),
        Some(IqFeature::Version) | None => Err(IqError::new(DefinedCondition::ServiceUnavailable)),
    };
    reply(router, &envelope, answer).await;
    if let Some(end) = end {
        super::register::end_all_sessions(router, &session.bare);
        return Err(end);
    }
    Ok(())
}

/// An IQ addressed to one of our domains.
pub async fn for_server(router: &Arc<Router>, envelope: Envelope) -> Result<Delivery, Bounce> {
    let Some(from) = envelope.from.clone() else {
        return Ok(Delivery::Dropped);
    };
    let Some((feature, payload)) = single_payload(&envelope) else {
        return Err(Bounce::new(envelope, DefinedCondition::BadRequest));
    };
    let request = IqRequest {
        from: &from,
        is_set: envelope.element.attr("type") == Some("set"),
        payload: &payload,
    };
    let answer = match feature {
        Some(IqFeature::Ping) | Some(IqFeature::Session) => Ok(None),
        Some(IqFeature::Version) => super::version::handle(&request),
        Some(IqFeature::DiscoInfo) => super::disco::server_info(router, &request),
        Some(IqFeature::DiscoItems) => super::disco::server_items(router, &request),
        // XEP-0077 section 3.3: password changes are addressed to the server by an authenticated user.
        Some(IqFeature::Register) if router.is_local_user(&from.to_bare()) => {
            let (answer, removed) = super::register::handle_for_user(router, &from, &request).await;
            if removed {
                reply(router, &envelope, answer).await;
                super::register::end_all_sessions(router, &from.to_bare().to_string());
                return Ok(Delivery::Handled);
            }
            answer
        }
        _ => Err(IqError::new(DefinedCondition::ServiceUnavailable)),
    };
    reply(router, &envelope, answer).await;
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
    let Some((feature, payload)) = single_payload(&envelope) else {
        return Err(Bounce::new(envelope, DefinedCondition::BadRequest));
    };
    let request = IqRequest {
        from: &from,
        is_set: envelope.element.attr("type") == Some("set"),
        payload: &payload,
    };
    let answer = match feature {
        Some(IqFeature::VCard) => super::vcard::handle_other(router, user, &request).await,
        Some(IqFeature::DiscoInfo) => super::disco::account_info(&request),
        Some(IqFeature::DiscoItems) => super::disco::account_items(&request),
        Some(IqFeature::Ping) if !request.is_set => Ok(None),
        _ => Err(IqError::new(DefinedCondition::ServiceUnavailable)),
    };
    reply(router, &envelope, answer).await;
    Ok(Delivery::Handled)
}

/// RFC 6120 section 8.2.3: a get or set carries exactly one payload.
fn single_payload(envelope: &Envelope) -> Option<(Option<IqFeature>, Element)> {
    let mut children = envelope.element.children();
    let payload = children.next()?;
    if children.next().is_some() {
        return None;
    }
    Some((IqFeature::for_payload(payload), payload.clone()))
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
            Some(element) => element,
            None => return,
        },
    };
    router.send(element).await;
}

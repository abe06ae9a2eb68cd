//! XEP-0050: Ad-Hoc Commands, the registration commands of the push service (`app_server.rs`), named
//! and shaped as Conversations' app server p2 offers them: `register-push-fcm` (`token`,
//! `android-id` or `device-id`, optional `muc`) and `register-push-apns` (plus optional `topic` and
//! `sandbox`), and Herald's `register-push-webpush` (`endpoint`, `p256dh`, `auth`) and
//! `register-push-unifiedpush` (`endpoint`, optional `p256dh` + `auth`). Each answers a completed
//! command with a form giving `jid`, `node` and `secret` to `enable` with (XEP-0357 section 5).
//! `unregister-push` (and p2's `unregister-push-<service>`) removes a registration by its device id.
//!
//! A command sent with its form completes at once (section 3.3's single-stage case, as p2 works); a
//! command executed without one is answered with the blank form (section 3.4, `executing`), and the
//! submitted form is then taken whatever the session id: no state is kept between the two steps.
//! Accounts of this server register for themselves; so do users of the remote domains that
//! `[relay.push_service] remote_domains` names (their `from` verified by the s2s layer, RFC 6120
//! section 13.7), whose nodes only their own domain's server may publish to, capped per domain.

use std::collections::HashMap;
use std::sync::Arc;

use herald_relay::{NodeRegistration, RegistrationError, Relay, RelayError};
use herald_storage::relay::DeviceKind;

use super::iq::{IqAnswer, IqError};
use crate::router::Router;
use crate::xmpp::{BareJid, DefinedCondition, Element, Jid, ns, set_attribute};

/// Fields read from one form, at most; the rest are ignored.
const MAX_FORM_FIELDS: usize = 32;

/// The commands, with the names disco#items gives them (XEP-0050 section 2.2).
const COMMANDS: [(&str, &str); 5] = [
    (
        "register-push-fcm",
        "Register an FCM (Android) device for push",
    ),
    (
        "register-push-apns",
        "Register an APNs (iOS) device for push",
    ),
    (
        "register-push-webpush",
        "Register a Web Push subscription for push",
    ),
    (
        "register-push-unifiedpush",
        "Register a UnifiedPush endpoint for push",
    ),
    ("unregister-push", "Unregister a device from push"),
];

/// What a command node asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    Register(DeviceKind),
    Unregister,
}

/// The command a node names: ours, and p2's `unregister-push-<service>` aliases.
pub fn command_for(node: &str) -> Option<Command> {
    let kind = |service: &str| match service {
        "fcm" => Some(DeviceKind::Fcm),
        "apns" => Some(DeviceKind::Apns),
        "webpush" => Some(DeviceKind::WebPush),
        "unifiedpush" => Some(DeviceKind::UnifiedPush),
        _ => None,
    };
    if node == "unregister-push" {
        return Some(Command::Unregister);
    }
    if let Some(service) = node.strip_prefix("unregister-push-") {
        return kind(service).map(|_| Command::Unregister);
    }
    node.strip_prefix("register-push-")
        .and_then(kind)
        .map(Command::Register)
}

/// Whether `node` is one of the listed command nodes.
pub fn is_command_node(node: &str) -> bool {
    COMMANDS.iter().any(|(name, _)| *name == node)
}

/// disco#items: the commands under the commands node (XEP-0050 section 2.2); nothing at the top.
pub fn disco_items(node: Option<&str>, service: &str) -> Result<Element, IqError> {
    let mut query = Element::builder("query", ns::DISCO_ITEMS).build();
    match node {
        None => {}
        Some(node) if node == ns::COMMANDS => {
            set_attribute(&mut query, "node", node);
            for (name, description) in COMMANDS {
                let mut item = Element::builder("item", ns::DISCO_ITEMS).build();
                set_attribute(&mut item, "jid", service);
                set_attribute(&mut item, "node", name);
                set_attribute(&mut item, "name", description);
                query.append_child(item);
            }
        }
        Some(_) => return Err(IqError::new(DefinedCondition::ItemNotFound)),
    }
    Ok(query)
}

/// The first value of each field of a data form (XEP-0004 section 3.2), whitespace trimmed; read
/// leniently (no `type` needed), and only the first [`MAX_FORM_FIELDS`] fields.
pub fn form_values(form: &Element) -> HashMap<String, String> {
    form.children()
        .filter(|c| c.is("field", ns::DATA_FORMS))
        .take(MAX_FORM_FIELDS)
        .filter_map(|field| {
            let var = field.attr("var")?;
            let value = field
                .get_child("value", ns::DATA_FORMS)
                .map(|v| v.text().trim().to_string())
                .unwrap_or_default();
            Some((var.to_string(), value))
        })
        .collect()
}

/// Runs a `<command/>` sent by `from` to the push service at `service` (XEP-0050 section 3).
pub async fn execute(
    relay: &Relay,
    router: &Arc<Router>,
    from: &Jid,
    command: &Element,
    service: &str,
) -> IqAnswer {
    let node = command.attr("node").unwrap_or_default();
    let Some(what) = command_for(node) else {
        return Err(IqError::new(DefinedCondition::ItemNotFound));
    };
    let account = from.to_bare();
    let registrant = registrant(relay, router, &account, service)?;
    let form = command.get_child("x", ns::DATA_FORMS);
    let cancelled = command.attr("action") == Some("cancel")
        || form.is_some_and(|f| f.attr("type") == Some("cancel"));
    if cancelled {
        return Ok(Some(response(node, "canceled", None)));
    }
    let Some(form) = form else {
        return Ok(Some(blank_form(node, what)));
    };
    let values = form_values(form);
    match what {
        Command::Register(kind) => {
            let registration = registration(kind, &values)?;
            let domain = account.domain().to_string();
            let jid = account.to_string();
            let pushed = match registrant {
                Registrant::Local => relay
                    .register_node(&jid, &domain, registration)
                    .await
                    .map_err(relay_error)?,
                Registrant::Remote => relay
                    .register_remote_node(&jid, &domain, registration)
                    .await
                    .map_err(remote_refusal)?,
            };
            let result = result_form(&[
                ("jid", service),
                ("node", pushed.node.as_str()),
                ("secret", pushed.secret.as_str()),
            ]);
            Ok(Some(response(node, "completed", Some(result))))
        }
        Command::Unregister => {
            let key = device_key(&values)?;
            let jid = account.to_string();
            let removed = match registrant {
                Registrant::Local => relay.unregister_node(&jid, &key).await,
                Registrant::Remote => {
                    let domain = account.domain().to_string();
                    relay.unregister_remote_node(&jid, &domain, &key).await
                }
            }
            .map_err(relay_error)?;
            if removed {
                Ok(Some(response(node, "completed", None)))
            } else {
                Err(IqError::new(DefinedCondition::ItemNotFound))
            }
        }
    }
}

/// Whose registration a command is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Registrant {
    /// An account of this server.
    Local,
    /// A user of another domain; the relay decides whether that domain may register.
    Remote,
}

/// Who `account` registers as: an account of this server, or a user of a remote domain that
/// `[relay.push_service] remote_domains` allows. Errors: `forbidden` for anyone else (a domain not
/// allowed, a registrant without a user part, anything else on our domains or the service's).
fn registrant(
    relay: &Relay,
    router: &Router,
    account: &BareJid,
    service: &str,
) -> Result<Registrant, IqError> {
    if router.is_local_user(account) {
        return Ok(Registrant::Local);
    }
    let domain = account.domain().as_str();
    let is_ours = router.context.config.is_local_domain(domain) || domain == service;
    if is_ours || account.node().is_none() || !relay.accepts_remote_registrations(domain) {
        return Err(IqError::with_text(
            DefinedCondition::Forbidden,
            "only users of this server and of allowed domains may register",
        ));
    }
    Ok(Registrant::Remote)
}

/// A refusal of a remote user's registration: a domain not allowed is `forbidden` (it will not
/// change by retrying), a domain at its cap `policy-violation`, the service at its cap for every
/// remote domain together `resource-constraint` (RFC 6120 section 8.3.3.18: the service lacks the
/// room, not the requester the right), the rest as [`relay_error`].
fn remote_refusal(error: RegistrationError) -> IqError {
    match error {
        RegistrationError::DomainNotAllowed => IqError::with_text(
            DefinedCondition::Forbidden,
            "only users of this server and of allowed domains may register",
        ),
        RegistrationError::DomainFull => IqError::with_text(
            DefinedCondition::PolicyViolation,
            "your domain holds as many push registrations as it may",
        ),
        RegistrationError::ServiceFull => IqError::with_text(
            DefinedCondition::ResourceConstraint,
            "this push service holds as many registrations from other servers as it may",
        ),
        RegistrationError::Relay(error) => relay_error(error),
    }
}

/// A refusal by the relay as the command's error: what the client sent is wrong (`bad-request`,
/// with the relay's reason), or storage failed (`wait`).
fn relay_error(error: RelayError) -> IqError {
    match error {
        RelayError::BadInput(reason) => IqError::with_text(DefinedCondition::BadRequest, &reason),
        RelayError::RateLimited(_) => IqError::new(DefinedCondition::ResourceConstraint),
        other => {
            tracing::warn!(error = %other, "push service: a registration failed");
            IqError::new(DefinedCondition::InternalServerError)
        }
    }
}

/// The installation's key: `device-id` (p2, iOS) or `android-id` (Conversations), plus the MUC the
/// registration is for, so each (device, MUC) pair is its own node as in p2.
fn device_key(values: &HashMap<String, String>) -> Result<String, IqError> {
    let id = [values.get("device-id"), values.get("android-id")]
        .into_iter()
        .flatten()
        .find(|v| !v.is_empty())
        .ok_or_else(|| missing("device-id or android-id"))?;
    match values.get("muc").filter(|m| !m.is_empty()) {
        None => Ok(id.clone()),
        Some(muc) => {
            let muc: BareJid = muc.parse().map_err(|_| {
                IqError::with_text(DefinedCondition::BadRequest, "muc: a bare JID is required")
            })?;
            Ok(format!("{id} muc:{muc}"))
        }
    }
}

fn missing(field: &str) -> IqError {
    IqError::with_text(
        DefinedCondition::BadRequest,
        &format!("{field} is required"),
    )
}

/// A registration form read into what the relay registers (its values are checked there).
pub fn registration(
    kind: DeviceKind,
    values: &HashMap<String, String>,
) -> Result<NodeRegistration, IqError> {
    let device_key = device_key(values)?;
    let value = |name: &str| values.get(name).filter(|v| !v.is_empty()).cloned();
    let address = match kind {
        DeviceKind::Fcm | DeviceKind::Apns => "token",
        DeviceKind::WebPush | DeviceKind::UnifiedPush => "endpoint",
    };
    let token = value(address).ok_or_else(|| missing(address))?;
    let sandbox = match value("sandbox").as_deref() {
        None => None,
        Some("1" | "true") => Some(true),
        Some("0" | "false") => Some(false),
        Some(_) => {
            return Err(IqError::with_text(
                DefinedCondition::BadRequest,
                "sandbox: a boolean is required",
            ));
        }
    };
    let is_apns = kind == DeviceKind::Apns;
    let has_keys = matches!(kind, DeviceKind::WebPush | DeviceKind::UnifiedPush);
    Ok(NodeRegistration {
        kind,
        device_key,
        token,
        apns_topic: value("topic").filter(|_| is_apns),
        apns_sandbox: sandbox.filter(|_| is_apns),
        p256dh: value("p256dh").filter(|_| has_keys),
        auth: value("auth").filter(|_| has_keys),
    })
}

/// The fields each command's form asks for: (var, label, required).
fn fields_of(command: Command) -> &'static [(&'static str, &'static str, bool)] {
    const DEVICE: (&str, &str, bool) = ("device-id", "A stable id of this installation", true);
    match command {
        Command::Register(DeviceKind::Fcm) => &[
            ("token", "FCM registration token", true),
            DEVICE,
            ("muc", "Group chat (bare JID), if for one", false),
        ],
        Command::Register(DeviceKind::Apns) => &[
            ("token", "APNs device token (hex)", true),
            DEVICE,
            ("muc", "Group chat (bare JID), if for one", false),
            ("topic", "APNs topic (bundle id)", false),
            ("sandbox", "APNs sandbox environment", false),
        ],
        Command::Register(DeviceKind::WebPush) => &[
            ("endpoint", "Push subscription endpoint", true),
            ("p256dh", "Subscription public key (base64url)", true),
            ("auth", "Subscription auth secret (base64url)", true),
            DEVICE,
        ],
        Command::Register(DeviceKind::UnifiedPush) => &[
            ("endpoint", "UnifiedPush endpoint", true),
            DEVICE,
            (
                "p256dh",
                "Public key for encrypted pushes (base64url)",
                false,
            ),
            (
                "auth",
                "Auth secret for encrypted pushes (base64url)",
                false,
            ),
        ],
        Command::Unregister => &[DEVICE, ("muc", "Group chat (bare JID), if for one", false)],
    }
}

/// XEP-0050 section 3.4: the first stage, the form to fill.
fn blank_form(node: &str, command: Command) -> Element {
    let mut form = Element::builder("x", ns::DATA_FORMS).build();
    set_attribute(&mut form, "type", "form");
    for (var, label, required) in fields_of(command) {
        let mut field = Element::builder("field", ns::DATA_FORMS).build();
        set_attribute(&mut field, "var", var);
        set_attribute(&mut field, "label", label);
        let kind = if *var == "sandbox" {
            "boolean"
        } else if *var == "muc" {
            "jid-single"
        } else {
            "text-single"
        };
        set_attribute(&mut field, "type", kind);
        if *required {
            field.append_child(Element::builder("required", ns::DATA_FORMS).build());
        }
        form.append_child(field);
    }
    let mut actions = Element::builder("actions", ns::COMMANDS).build();
    set_attribute(&mut actions, "execute", "complete");
    actions.append_child(Element::builder("complete", ns::COMMANDS).build());
    let mut answer = response(node, "executing", Some(form));
    answer.append_child(actions);
    answer
}

fn result_form(values: &[(&str, &str)]) -> Element {
    let mut form = Element::builder("x", ns::DATA_FORMS).build();
    set_attribute(&mut form, "type", "result");
    for (var, value) in values {
        let mut field = Element::builder("field", ns::DATA_FORMS).build();
        set_attribute(&mut field, "var", var);
        field.append_child(
            Element::builder("value", ns::DATA_FORMS)
                .append(value.to_string())
                .build(),
        );
        form.append_child(field);
    }
    form
}

/// A `<command/>` answer with its status; the session id is the time, as nothing is kept by it.
fn response(node: &str, status: &str, form: Option<Element>) -> Element {
    let mut command = Element::builder("command", ns::COMMANDS).build();
    set_attribute(&mut command, "node", node);
    let session = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or_default();
    set_attribute(&mut command, "sessionid", &session.to_string());
    set_attribute(&mut command, "status", status);
    if let Some(form) = form {
        command.append_child(form);
    }
    command
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(xml: &str) -> HashMap<String, String> {
        form_values(&xml.parse().expect("xml"))
    }

    #[test]
    fn command_nodes() {
        assert_eq!(
            command_for("register-push-fcm"),
            Some(Command::Register(DeviceKind::Fcm))
        );
        assert_eq!(
            command_for("register-push-unifiedpush"),
            Some(Command::Register(DeviceKind::UnifiedPush))
        );
        assert_eq!(command_for("unregister-push"), Some(Command::Unregister));
        assert_eq!(
            command_for("unregister-push-apns"),
            Some(Command::Unregister)
        );
        assert_eq!(command_for("register-push-gcm"), None);
        assert_eq!(command_for("unregister-push-x"), None);
        assert_eq!(command_for(""), None);
        for (name, _) in COMMANDS {
            assert!(command_for(name).is_some(), "{name}");
        }
    }

    #[test]
    fn a_conversations_fcm_form() {
        let values = form(
            "<x xmlns='jabber:x:data' type='submit'>\
               <field var='FORM_TYPE'><value>http://jabber.org/protocol/commands</value></field>\
               <field var='token'><value>fcm-token-1</value></field>\
               <field var='android-id'><value> 1a2b3c </value></field></x>",
        );
        let registration = registration(DeviceKind::Fcm, &values).expect("registration");
        assert_eq!(registration.token, "fcm-token-1");
        assert_eq!(registration.device_key, "1a2b3c");
        assert_eq!(registration.apns_topic, None);
    }

    #[test]
    fn a_muc_makes_its_own_device_key_and_must_be_bare() {
        let values = form(
            "<x xmlns='jabber:x:data'><field var='token'><value>t</value></field>\
               <field var='device-id'><value>d</value></field>\
               <field var='muc'><value>room@muc.example</value></field></x>",
        );
        let registration = registration(DeviceKind::Fcm, &values).expect("registration");
        assert_eq!(registration.device_key, "d muc:room@muc.example");
        let full = form(
            "<x xmlns='jabber:x:data'><field var='token'><value>t</value></field>\
               <field var='device-id'><value>d</value></field>\
               <field var='muc'><value>room@muc.example/nick</value></field></x>",
        );
        assert!(registration_fails(DeviceKind::Fcm, &full));
    }

    fn registration_fails(kind: DeviceKind, values: &HashMap<String, String>) -> bool {
        matches!(registration(kind, values), Err(e) if e.condition == DefinedCondition::BadRequest)
    }

    #[test]
    fn required_fields() {
        let no_device =
            form("<x xmlns='jabber:x:data'><field var='token'><value>t</value></field></x>");
        assert!(registration_fails(DeviceKind::Fcm, &no_device));
        let no_token =
            form("<x xmlns='jabber:x:data'><field var='android-id'><value>a</value></field></x>");
        assert!(registration_fails(DeviceKind::Fcm, &no_token));
        // Web Push and UnifiedPush are addressed by an endpoint, not a token.
        let token_only = form(
            "<x xmlns='jabber:x:data'><field var='token'><value>t</value></field>\
               <field var='device-id'><value>d</value></field></x>",
        );
        assert!(registration_fails(DeviceKind::UnifiedPush, &token_only));
        let bad_sandbox = form(
            "<x xmlns='jabber:x:data'><field var='token'><value>ab</value></field>\
               <field var='device-id'><value>d</value></field>\
               <field var='sandbox'><value>maybe</value></field></x>",
        );
        assert!(registration_fails(DeviceKind::Apns, &bad_sandbox));
    }

    #[test]
    fn web_push_keys_and_apns_options_go_to_their_kind_only() {
        let values = form(
            "<x xmlns='jabber:x:data'><field var='endpoint'><value>https://push.example/1</value></field>\
               <field var='p256dh'><value>key</value></field><field var='auth'><value>a</value></field>\
               <field var='topic'><value>org.example</value></field>\
               <field var='device-id'><value>d</value></field></x>",
        );
        let registration = registration(DeviceKind::WebPush, &values).expect("registration");
        assert_eq!(registration.token, "https://push.example/1");
        assert_eq!(registration.p256dh.as_deref(), Some("key"));
        assert_eq!(registration.apns_topic, None);
    }

    #[test]
    fn forms_are_bounded() {
        let mut xml = String::from("<x xmlns='jabber:x:data'>");
        for i in 0..100 {
            xml.push_str(&format!("<field var='f{i}'><value>v</value></field>"));
        }
        xml.push_str("</x>");
        assert_eq!(form(&xml).len(), MAX_FORM_FIELDS);
    }

    #[test]
    fn the_commands_are_listed_under_the_commands_node() {
        let items = String::from(&disco_items(Some(ns::COMMANDS), "push.example").expect("items"));
        for (name, _) in COMMANDS {
            assert!(items.contains(name), "{name} in {items}");
        }
        assert!(disco_items(Some("other"), "push.example").is_err());
    }
}

//! Herald's relay as a XEP-0357 push service on `push.localhost`, as clients reach it: its
//! configuration against a [`StandInFcm`], device registration with the ad-hoc command
//! `register-push-fcm` (XEP-0050), and the `<enable/>` a client sends its server with the node and
//! secret it got (XEP-0357 section 5).

use std::sync::Arc;

use async_trait::async_trait;
use herald::router::routes::InProcessService;
use herald::router::{Bounce, Delivery, Router};
use herald::xmpp::Envelope;
use tokio::sync::mpsc;

use crate::client::TestClient;
use crate::fcm::StandInFcm;
use crate::server::TestServer;
use crate::{Element, xml};

/// The relay's push service JID in [`relay_toml`].
pub const PUSH_SERVICE: &str = "push.localhost";
const COMMANDS: &str = "http://jabber.org/protocol/commands";
const DATA: &str = "jabber:x:data";

/// A `herald.toml` hosting the relay (HTTP API on a loopback port 0, no collapse window) with its
/// push service on [`PUSH_SERVICE`] and FCM pointed at `fcm`, whose service account is expected in
/// `{dir}/service-account.json` ([`StandInFcm::service_account`]).
pub fn relay_toml(fcm: &StandInFcm) -> String {
    format!(
        "[relay]\nenabled = true\nlisten = \"127.0.0.1:0\"\npubsub_jid = \"{PUSH_SERVICE}\"\n\
         collapse_window_ms = 0\nallow_plain_http = true\n\
         [relay.fcm]\nservice_account_file = \"{{dir}}/service-account.json\"\nbase_url = \"{}\"\n",
        fcm.url
    )
}

/// A submitted data form (XEP-0004) with `fields`.
pub fn form(fields: &[(&str, &str)]) -> String {
    let mut x = format!("<x xmlns='{DATA}' type='submit'>");
    for (var, value) in fields {
        x.push_str(&format!(
            "<field var='{var}'><value>{value}</value></field>"
        ));
    }
    x.push_str("</x>");
    x
}

/// Runs an ad-hoc command on the push service with `fields` and returns the response.
pub async fn command(client: &mut TestClient, node: &str, fields: &[(&str, &str)]) -> Element {
    let payload = format!(
        "<command xmlns='{COMMANDS}' node='{node}' action='execute'>{}</command>",
        form(fields)
    );
    client.iq("set", Some(PUSH_SERVICE), &payload).await
}

/// The value of `var` in the command's result form.
pub fn value(response: &Element, var: &str) -> String {
    let command = response
        .get_child("command", COMMANDS)
        .unwrap_or_else(|| panic!("a command in {}", xml::show(response)));
    assert_eq!(command.attr("status"), Some("completed"));
    command
        .get_child("x", DATA)
        .and_then(|x| {
            x.children()
                .find(|f| f.attr("var") == Some(var))
                .and_then(|f| f.get_child("value", DATA))
        })
        .map(Element::text)
        .unwrap_or_else(|| panic!("{var} in {}", xml::show(response)))
}

/// Registers an FCM device; returns (node, secret).
pub async fn register(client: &mut TestClient, token: &str, android_id: &str) -> (String, String) {
    let response = command(
        client,
        "register-push-fcm",
        &[("token", token), ("android-id", android_id)],
    )
    .await;
    assert_eq!(
        response.attr("type"),
        Some("result"),
        "{}",
        xml::show(&response)
    );
    assert_eq!(value(&response, "jid"), PUSH_SERVICE);
    (value(&response, "node"), value(&response, "secret"))
}

/// Enables push to `node` of the push service with `secret` as publish-option (XEP-0357 section 5).
pub async fn enable(client: &mut TestClient, node: &str, secret: &str) {
    client
        .iq_result(
            "set",
            None,
            &format!(
                "<enable xmlns='urn:xmpp:push:0' jid='{PUSH_SERVICE}' node='{node}'>{}</enable>",
                form(&[
                    (
                        "FORM_TYPE",
                        "http://jabber.org/protocol/pubsub#publish-options"
                    ),
                    ("secret", secret),
                ])
            ),
        )
        .await;
}

/// A remote server as the router sees it: the route of its domain, recording every stanza for it
/// (what an s2s stream would carry there).
struct RemoteServer(mpsc::UnboundedSender<Element>);

#[async_trait]
impl InProcessService for RemoteServer {
    async fn receive(&self, _: &Arc<Router>, envelope: Envelope) -> Result<Delivery, Bounce> {
        let _ = self.0.send(envelope.element.clone());
        Ok(Delivery::Handled)
    }
}

/// Attaches a stand-in remote server as the route of `domain`; returns what it receives.
///
/// Panics if something is already attached for `domain`.
pub fn remote(server: &TestServer, domain: &str) -> mpsc::UnboundedReceiver<Element> {
    let (tx, rx) = mpsc::unbounded_channel();
    assert!(
        server
            .router()
            .attach_service(domain, Arc::new(RemoteServer(tx))),
        "something is already attached for {domain}"
    );
    rx
}

//! Push federating end to end between two Herald domains over real s2s streams (RFC 6120), once
//! with SASL EXTERNAL (XEP-0178; a.test's certificate names its push domain too) and once with
//! Server Dialback (XEP-0220): `a.test` hosts the relay as a XEP-0357 push service on `push.a.test`
//! and lets `b.test`'s users register (`[relay.push_service] remote_domains`); bob on `b.test` runs
//! `register-push-fcm` (XEP-0050) at `push.a.test`, whose answer goes back on a stream from the push
//! domain (with dialback b.test asks a.test's db:verify about it, XEP-0220 section 2.3); bob enables
//! push at his server (XEP-0357 section 5) and his connection drops; alice's message makes `b.test`
//! publish over s2s (section 7) and the stand-in FCM is woken exactly once, with none of the
//! message's text.
#![allow(clippy::unwrap_used)]

use herald_relay::remote_domain_account;
use herald_tests::app_server::{form, value};
use herald_tests::client::TestClient;
use herald_tests::fcm::StandInFcm;
use herald_tests::federation::{Authentication, Listening, TestCa};
use herald_tests::server::TestServerBuilder;
use herald_tests::{TestServer, xml};

const PUSH_DOMAIN: &str = "push.a.test";
const COMMANDS: &str = "http://jabber.org/protocol/commands";

/// The `[[s2s.peers]]` entry for `domain` at `port`; with dialback, allowed without a certificate.
fn peer(authentication: Authentication, domain: &str, port: u16) -> String {
    let mut entry =
        format!("[[s2s.peers]]\ndomain = \"{domain}\"\naddress = \"127.0.0.1:{port}\"\n");
    if authentication == Authentication::Dialback {
        entry.push_str("allow_dialback_without_certificate = true\n");
    }
    entry
}

/// With EXTERNAL: a certificate from `ca` naming `names` (the first is the server's domain) and trust
/// in `ca`, for s2s and for the test's clients. Returns the builder and the TOML to prepend.
fn certificates(
    builder: TestServerBuilder,
    authentication: Authentication,
    ca: &TestCa,
    names: &[&str],
) -> (TestServerBuilder, String) {
    if authentication == Authentication::Dialback {
        return (builder, String::new());
    }
    let (cert, key) = ca.issue_for(names);
    let builder = builder
        .file("ca.pem", &ca.pem)
        .file("server.crt", &cert)
        .file("server.key", &key)
        .client_trust("ca.pem");
    let toml = format!(
        "[[tls.certificates]]\ndomain = \"{}\"\ncert = \"{{dir}}/server.crt\"\n\
         key = \"{{dir}}/server.key\"\n",
        names[0]
    );
    (builder, toml)
}

/// `ca_files` in `[s2s]` with EXTERNAL.
fn trust(authentication: Authentication) -> &'static str {
    match authentication {
        Authentication::External => "ca_files = [\"{dir}/ca.pem\"]\n",
        Authentication::Dialback => "",
    }
}

/// `a.test` with the relay's push service on [`PUSH_DOMAIN`] open to `b.test`'s users.
async fn relay_server(
    authentication: Authentication,
    ca: &TestCa,
    fcm: &StandInFcm,
    a: &Listening,
    b: &Listening,
) -> TestServer {
    let builder = TestServer::builder()
        .env("HERALD_SERVER__DOMAINS", &format!("[\"{}\"]", a.domain))
        .file("service-account.json", &fcm.service_account());
    let (builder, tls) = certificates(builder, authentication, ca, &[&a.domain, PUSH_DOMAIN]);
    let toml = format!(
        "{tls}[relay]\nenabled = true\nlisten = \"127.0.0.1:0\"\npubsub_jid = \"{PUSH_DOMAIN}\"\n\
         collapse_window_ms = 0\nallow_plain_http = true\n\
         [relay.fcm]\nservice_account_file = \"{{dir}}/service-account.json\"\nbase_url = \"{}\"\n\
         [relay.push_service]\nremote_domains = [\"{}\"]\n\
         [s2s]\nlisten = \"127.0.0.1:{}\"\n{}{}",
        fcm.url,
        b.domain,
        a.port,
        trust(authentication),
        peer(authentication, &b.domain, b.port)
    );
    builder.toml(&toml).start().await
}

/// `b.test`, reaching `a.test` and its push domain at `a`'s s2s port.
async fn users_server(
    authentication: Authentication,
    ca: &TestCa,
    a: &Listening,
    b: &Listening,
) -> TestServer {
    let builder =
        TestServer::builder().env("HERALD_SERVER__DOMAINS", &format!("[\"{}\"]", b.domain));
    let (builder, tls) = certificates(builder, authentication, ca, &[&b.domain]);
    let toml = format!(
        "{tls}[s2s]\nlisten = \"127.0.0.1:{}\"\n{}{}{}",
        b.port,
        trust(authentication),
        peer(authentication, &a.domain, a.port),
        peer(authentication, PUSH_DOMAIN, a.port)
    );
    builder.toml(&toml).start().await
}

/// Registers an FCM device at the remote push service; returns (node, secret).
async fn register_remote(client: &mut TestClient, token: &str, device: &str) -> (String, String) {
    let payload = format!(
        "<command xmlns='{COMMANDS}' node='register-push-fcm' action='execute'>{}</command>",
        form(&[("token", token), ("android-id", device)])
    );
    let answer = client.iq("set", Some(PUSH_DOMAIN), &payload).await;
    assert_eq!(
        answer.attr("type"),
        Some("result"),
        "{}",
        xml::show(&answer)
    );
    assert_eq!(value(&answer, "jid"), PUSH_DOMAIN);
    (value(&answer, "node"), value(&answer, "secret"))
}

#[tokio::test]
async fn a_remote_user_registers_and_their_server_publishes_one_wake_over_sasl_external() {
    remote_user_registers_and_their_server_publishes_one_content_free_wake(
        Authentication::External,
    )
    .await;
}

#[tokio::test]
async fn a_remote_user_registers_and_their_server_publishes_one_wake_over_dialback() {
    remote_user_registers_and_their_server_publishes_one_content_free_wake(
        Authentication::Dialback,
    )
    .await;
}

async fn remote_user_registers_and_their_server_publishes_one_content_free_wake(
    authentication: Authentication,
) {
    let mut fcm = StandInFcm::start().await;
    let ca = TestCa::new();
    let a_ports = Listening::new("a.test", false);
    let b_ports = Listening::new("b.test", false);
    let a = relay_server(authentication, &ca, &fcm, &a_ports, &b_ports).await;
    let b = users_server(authentication, &ca, &a_ports, &b_ports).await;
    b.add_user("alice").await;
    b.add_user("bob").await;
    let mut alice = b.online("alice", "pc").await;
    let mut bob = b.online("bob", "phone").await;

    let (node, secret) = register_remote(&mut bob, "fcm-token-bob", "bob-phone").await;
    bob.iq_result(
        "set",
        None,
        &format!(
            "<enable xmlns='urn:xmpp:push:0' jid='{PUSH_DOMAIN}' node='{node}'>{}</enable>",
            form(&[
                (
                    "FORM_TYPE",
                    "http://jabber.org/protocol/pubsub#publish-options"
                ),
                ("secret", &secret),
            ])
        ),
    )
    .await;
    bob.enable_resumption().await;
    drop(bob);
    let push = b.push_notifications().clone();
    herald_tests::eventually("bob's session hibernates", async || {
        push.is_hibernating("bob@b.test", "phone")
    })
    .await;

    alice.chat("bob@b.test", "meet at noon").await;
    let wake = fcm.next_send().await;
    assert!(wake.contains("fcm-token-bob"), "to bob's phone: {wake}");
    assert!(!wake.contains("meet at noon"), "content-free: {wake}");
    assert!(!wake.contains("alice"), "no sender: {wake}");
    // Exactly one: the relay accepted one push for b.test's nodes (its audit trail, written before
    // the publish is answered), and nothing else reached FCM.
    let accepted = a
        .storage
        .push_audit
        .list(&remote_domain_account("b.test"), None, 100)
        .await
        .unwrap()
        .iter()
        .filter(|entry| entry.outcome == "accepted")
        .count();
    assert_eq!(accepted, 1);
    assert!(fcm.sends.try_recv().is_err(), "a second wake-up");
    // a.test itself sent nothing to b.test: its one outbound stream was the push domain's (the
    // answers to bob's command and to the publish), authenticated with the pair's method.
    let (_, _, a_outbound_external, a_outbound_dialback) = a.s2s_authentications();
    let expected = match authentication {
        Authentication::External => (1, 0),
        Authentication::Dialback => (0, 1),
    };
    assert_eq!((a_outbound_external, a_outbound_dialback), expected);
}

//! The failed-login throttle (RFC 6120 section 13.5) as clients see it: exchanges held open cannot all
//! verify a guess, refusals that say nothing about the password do not count, and the relay's HTTP login
//! shares the same throttle as XMPP SASL.
#![allow(clippy::unwrap_used)]

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use herald::xmpp::ns;
use herald_tests::xml::mechanisms;
use herald_tests::{Element, PASSWORD, TestClient, TestServer};
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).unwrap();
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

fn condition(outcome: &Element) -> String {
    if outcome.is("success", ns::SASL) {
        return "success".into();
    }
    outcome
        .children()
        .find(|c| c.ns() == ns::SASL && c.name() != "text")
        .map(|c| c.name().to_string())
        .unwrap_or_default()
}

async fn sasl_outcome(client: &mut TestClient) -> Element {
    client
        .expect("<challenge/>, <success/> or <failure/>", |e| {
            e.is("challenge", ns::SASL) || e.is("success", ns::SASL) || e.is("failure", ns::SASL)
        })
        .await
}

/// A SCRAM-SHA-256 exchange stopped at the server's first challenge.
struct HeldExchange {
    client: TestClient,
    client_first_bare: String,
    server_first: Option<String>,
}

impl HeldExchange {
    /// Connects (plain TCP; the test server does not require TLS for this) and sends client-first.
    async fn open(server: &TestServer, user: &str) -> HeldExchange {
        let mut client = TestClient::connect_plain(server).await;
        let nonce = BASE64.encode(rand::random::<[u8; 18]>());
        let client_first_bare = format!("n={user},r={nonce}");
        client
            .send(&format!(
                "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='SCRAM-SHA-256'>{}</auth>",
                BASE64.encode(format!("n,,{client_first_bare}"))
            ))
            .await;
        let challenge = sasl_outcome(&mut client).await;
        let server_first = challenge
            .is("challenge", ns::SASL)
            .then(|| String::from_utf8(BASE64.decode(challenge.text().trim()).unwrap()).unwrap());
        HeldExchange {
            client,
            client_first_bare,
            server_first,
        }
    }

    /// Sends client-final with a proof for `password`; returns the outcome's condition.
    async fn prove(mut self, password: &str) -> String {
        let Some(server_first) = self.server_first else {
            return "refused before the challenge".into();
        };
        let field = |name: &str| {
            server_first
                .split(',')
                .find_map(|kv| kv.strip_prefix(name))
                .unwrap()
                .to_string()
        };
        let salt = BASE64.decode(field("s=")).unwrap();
        let iterations: u32 = field("i=").parse().unwrap();
        let mut salted = [0u8; 32];
        pbkdf2::pbkdf2_hmac::<Sha256>(password.as_bytes(), &salt, iterations, &mut salted);
        let client_key = hmac(&salted, b"Client Key");
        let stored_key = Sha256::digest(&client_key);
        let without_proof = format!("c={},r={}", BASE64.encode("n,,"), field("r="));
        let auth_message = format!("{},{server_first},{without_proof}", self.client_first_bare);
        let signature = hmac(&stored_key, auth_message.as_bytes());
        let proof: Vec<u8> = client_key
            .iter()
            .zip(&signature)
            .map(|(k, s)| k ^ s)
            .collect();
        self.client
            .send(&format!(
                "<response xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>{}</response>",
                BASE64.encode(format!("{without_proof},p={}", BASE64.encode(proof)))
            ))
            .await;
        condition(&sasl_outcome(&mut self.client).await)
    }
}

/// Finding 3: 150 exchanges held open at the first challenge, then all sending a wrong proof. Only as many
/// as the per-account limit (5) may have their proof verified; the rest are refused unverified.
#[tokio::test]
async fn exchanges_held_open_cannot_all_verify_a_guess() {
    // The throttle is what is tested: the cap on unauthenticated connections per address (32 by default)
    // would refuse most of the 150 before they reach a challenge.
    let server = TestServer::builder()
        .env("HERALD_C2S__REQUIRE_TLS", "false")
        .env("HERALD_LIMITS__MAX_UNAUTHENTICATED_PER_ADDRESS", "1000")
        .start()
        .await;
    server.add_user("alice").await;
    let mut held = Vec::new();
    for _ in 0..150 {
        held.push(HeldExchange::open(&server, "alice").await);
    }
    let outcomes = join_all(held.into_iter().map(|h| h.prove("guess"))).await;
    let verified = outcomes.iter().filter(|c| *c == "not-authorized").count();
    let refused = outcomes
        .iter()
        .filter(|c| *c == "temporary-auth-failure")
        .count();
    assert_eq!(
        (verified, refused),
        (5, 145),
        "wrong proofs verified vs refused: {outcomes:?}"
    );
    // The account is locked even for the right password now.
    let mut late = TestClient::connect_plain(&server).await;
    assert_eq!(
        late.auth_scram_sha256("alice", PASSWORD).await,
        Err("temporary-auth-failure".into())
    );
}

/// Runs every future at once, so all proofs are in flight together; returns their outcomes.
async fn join_all(
    futures: impl Iterator<Item = impl std::future::Future<Output = String> + Send + 'static>,
) -> Vec<String> {
    let mut set = tokio::task::JoinSet::new();
    for future in futures {
        set.spawn(future);
    }
    let mut outcomes = Vec::new();
    while let Some(result) = set.join_next().await {
        outcomes.push(result.unwrap());
    }
    outcomes
}

/// Finding 3: a slixmpp 1.8-like client tries SCRAM-SHA-256-PLUS with tls-unique (which we do not offer),
/// then SCRAM-SHA-256 with the `y` flag (refused: we offer -PLUS), then PLAIN. Neither refusal says
/// anything about the password, so such a client can log in again and again.
#[tokio::test]
async fn refusals_that_check_no_password_do_not_count() {
    let server = TestServer::start().await;
    server.add_user("alice").await;
    for login in 0..50 {
        let mut client = TestClient::connect_direct_tls(&server).await;
        assert!(mechanisms(&client.features).contains(&"SCRAM-SHA-256-PLUS".to_string()));
        let nonce = BASE64.encode(rand::random::<[u8; 18]>());
        for (mechanism, gs2) in [
            ("SCRAM-SHA-256-PLUS", "p=tls-unique,,"),
            ("SCRAM-SHA-256", "y,,"),
        ] {
            client
                .send(&format!(
                    "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='{mechanism}'>{}</auth>",
                    BASE64.encode(format!("{gs2}n=alice,r={nonce}"))
                ))
                .await;
            let outcome = sasl_outcome(&mut client).await;
            assert!(
                outcome.is("failure", ns::SASL),
                "login {login}: {mechanism} {gs2} was not refused"
            );
            assert_ne!(
                condition(&outcome),
                "temporary-auth-failure",
                "login {login}"
            );
        }
        // A mechanism we do not offer at all is refused without counting either.
        client
            .send("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='DIGEST-MD5'/>")
            .await;
        assert_eq!(
            condition(&sasl_outcome(&mut client).await),
            "invalid-mechanism"
        );
        assert_eq!(
            client.auth_plain("alice", PASSWORD).await,
            Ok(()),
            "login {login} refused"
        );
    }
}

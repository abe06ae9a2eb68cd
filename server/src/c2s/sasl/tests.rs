//! Tests of whole SASL exchanges: the RFC 5802 and RFC 7677 test vectors, a small SCRAM client for every
//! mechanism and binding, failures (wrong password, unknown user, binding mismatch, downgrade) and PLAIN.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use herald_storage::Credentials;

use super::scram::{ScramHash, client_proof};
use super::scram_message::escape_saslname;
use super::*;

const EXPORTER: &[u8] = b"exporter-binding-0123456789abcdef";
const END_POINT: &[u8] = b"end-point-binding-0123456789abcd";

fn bindings() -> ChannelBindings {
    ChannelBindings {
        tls_exporter: Some(EXPORTER.to_vec()),
        tls_server_end_point: Some(END_POINT.to_vec()),
    }
}

fn credentials(password: &str) -> Credentials {
    derive_credentials(password, DEFAULT_SCRAM_ITERATIONS).unwrap()
}

/// The client half of SCRAM, written from RFC 5802 section 3 independently of the server code paths
/// (it shares only the primitive HMAC/hash/PBKDF2 helpers).
struct ScramClient {
    hash: ScramHash,
    password: String,
    gs2_header: String,
    binding_data: Vec<u8>,
    bare: String,
    expected_server_signature: Option<Vec<u8>>,
}

impl ScramClient {
    fn new(hash: ScramHash, username: &str, password: &str, nonce: &str) -> ScramClient {
        ScramClient {
            hash,
            password: password.to_owned(),
            gs2_header: "n,,".to_owned(),
            binding_data: Vec::new(),
            bare: format!("n={},r={nonce}", escape_saslname(username)),
            expected_server_signature: None,
        }
    }

    /// Sets the GS2 header (`y,,`, `p=tls-exporter,,`, `n,a=...,`) and the binding data the client sees.
    fn with_header(mut self, gs2_header: &str, binding_data: &[u8]) -> ScramClient {
        self.gs2_header = gs2_header.to_owned();
        self.binding_data = binding_data.to_vec();
        self
    }

    fn first(&self) -> Vec<u8> {
        format!("{}{}", self.gs2_header, self.bare).into_bytes()
    }

    fn last(&mut self, server_first: &[u8]) -> Vec<u8> {
        let server_first = std::str::from_utf8(server_first).unwrap();
        let mut nonce = "";
        let mut salt = Vec::new();
        let mut iterations = 0;
        for attribute in server_first.split(',') {
            match attribute.split_at(2) {
                ("r=", v) => nonce = v,
                ("s=", v) => salt = BASE64.decode(v).unwrap(),
                ("i=", v) => iterations = v.parse().unwrap(),
                other => panic!("unexpected attribute {other:?}"),
            }
        }
        let mut cbind_input = self.gs2_header.as_bytes().to_vec();
        cbind_input.extend_from_slice(&self.binding_data);
        let without_proof = format!("c={},r={nonce}", BASE64.encode(cbind_input));
        let auth_message = format!("{},{server_first},{without_proof}", self.bare);
        let salted = self
            .hash
            .salted_password(self.password.as_bytes(), &salt, iterations);
        let proof = client_proof(self.hash, &salted, auth_message.as_bytes());
        let server_key = self.hash.hmac(&salted, b"Server Key");
        self.expected_server_signature = Some(self.hash.hmac(&server_key, auth_message.as_bytes()));
        format!("{without_proof},p={}", BASE64.encode(proof)).into_bytes()
    }

    fn check_server_final(&self, server_final: &[u8]) {
        let expected = format!(
            "v={}",
            BASE64.encode(self.expected_server_signature.as_ref().unwrap())
        );
        assert_eq!(
            std::str::from_utf8(server_final).unwrap(),
            expected,
            "server signature"
        );
    }
}

/// What the server sent in one exchange: server-first (if it got that far) and the final step.
struct Outcome {
    server_first: Option<Vec<u8>>,
    last: Step,
}

/// Runs a SCRAM exchange; `stored` is what the caller's lookup returns.
fn run_scram(
    mechanism: Mechanism,
    bindings: ChannelBindings,
    client: &mut ScramClient,
    stored: Option<&Credentials>,
) -> Outcome {
    let mut exchange = SaslExchange::start(mechanism, true, bindings).with_domain("example.com");
    match exchange.step(&client.first()) {
        Step::NeedCredentials { .. } => {}
        other => {
            return Outcome {
                server_first: None,
                last: other,
            };
        }
    }
    let server_first = match exchange.provide_credentials(stored) {
        Step::Challenge(data) => data,
        other => {
            return Outcome {
                server_first: None,
                last: other,
            };
        }
    };
    let last = exchange.step(&client.last(&server_first));
    Outcome {
        server_first: Some(server_first),
        last,
    }
}

fn assert_success(outcome: &Outcome, client: &ScramClient, username: &str) {
    match &outcome.last {
        Step::Success {
            authenticated,
            additional_data,
        } => {
            assert_eq!(authenticated.username, username);
            client.check_server_final(additional_data.as_ref().unwrap());
        }
        other => panic!("expected success, got {other:?}"),
    }
}

fn hash_of(mechanism: Mechanism) -> ScramHash {
    mechanism.scram_hash().unwrap()
}

#[test]
fn rfc5802_section5_test_vector() {
    let stored = Credentials {
        sha1: ScramHash::Sha1.keys(b"pencil", &BASE64.decode("QSXCR+Q6sek8bf92").unwrap(), 4096),
        sha256: credentials("unused").sha256,
    };
    let mut exchange = SaslExchange::start_with_nonce(
        Mechanism::ScramSha1,
        false,
        ChannelBindings::default(),
        "3rfcNHYJY1ZVvWVs7j".into(),
    );
    assert_eq!(
        exchange.step(b"n,,n=user,r=fyko+d2lbbFgONRv9qkxdawL"),
        Step::NeedCredentials {
            username: "user".into()
        }
    );
    assert_eq!(
        exchange.provide_credentials(Some(&stored)),
        Step::Challenge(
            b"r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,s=QSXCR+Q6sek8bf92,i=4096".to_vec()
        )
    );
    assert_eq!(
        exchange.step(
            b"c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts="
        ),
        Step::Success {
            authenticated: Authenticated {
                username: "user".into()
            },
            additional_data: Some(b"v=rmF9pqV8S7suAoZWja4dJRkFsKQ=".to_vec()),
        }
    );
}

#[test]
fn rfc7677_section3_test_vector() {
    let stored = Credentials {
        sha1: credentials("unused").sha1,
        sha256: ScramHash::Sha256.keys(
            b"pencil",
            &BASE64.decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap(),
            4096,
        ),
    };
    let mut exchange = SaslExchange::start_with_nonce(
        Mechanism::ScramSha256,
        false,
        ChannelBindings::default(),
        "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0".into(),
    );
    assert_eq!(
        exchange.step(b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO"),
        Step::NeedCredentials {
            username: "user".into()
        }
    );
    assert_eq!(
        exchange.provide_credentials(Some(&stored)),
        Step::Challenge(
            b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096".to_vec()
        )
    );
    assert_eq!(
        exchange.step(
            b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
        ),
        Step::Success {
            authenticated: Authenticated { username: "user".into() },
            additional_data: Some(b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=".to_vec()),
        }
    );
}

#[test]
fn full_exchange_for_every_scram_mechanism_and_binding() {
    let stored = credentials("secret");
    let cases: [(Mechanism, &str, &[u8]); 8] = [
        (Mechanism::ScramSha1, "n,,", b""),
        (Mechanism::ScramSha256, "n,,", b""),
        (Mechanism::ScramSha1Plus, "p=tls-exporter,,", EXPORTER),
        (Mechanism::ScramSha256Plus, "p=tls-exporter,,", EXPORTER),
        (
            Mechanism::ScramSha1Plus,
            "p=tls-server-end-point,,",
            END_POINT,
        ),
        (
            Mechanism::ScramSha256Plus,
            "p=tls-server-end-point,,",
            END_POINT,
        ),
        // An authzid equal to the user's own bare JID is accepted (RFC 6120 section 6.3.8).
        (
            Mechanism::ScramSha256Plus,
            "p=tls-exporter,a=juliet@example.com,",
            EXPORTER,
        ),
        (Mechanism::ScramSha256, "n,a=Juliet@Example.com,", b""),
    ];
    for (mechanism, header, data) in cases {
        let mut client = ScramClient::new(hash_of(mechanism), "juliet", "secret", "clientnonce123")
            .with_header(header, data);
        let outcome = run_scram(mechanism, bindings(), &mut client, Some(&stored));
        assert_success(&outcome, &client, "juliet");
    }
}

#[test]
fn escaped_and_saslprepped_usernames() {
    let stored = credentials("pass");
    let mut client = ScramClient::new(ScramHash::Sha256, "a,b=c", "pass", "nonce");
    let mut exchange =
        SaslExchange::start(Mechanism::ScramSha256, true, ChannelBindings::default());
    assert_eq!(
        exchange.step(&client.first()),
        Step::NeedCredentials {
            username: "a,b=c".into()
        }
    );
    let Step::Challenge(server_first) = exchange.provide_credentials(Some(&stored)) else {
        panic!()
    };
    assert!(matches!(
        exchange.step(&client.last(&server_first)),
        Step::Success { .. }
    ));

    // SASLprep maps U+00A0 (no-break space) to a space and U+00AD (soft hyphen) to nothing (RFC 4013).
    let mut exchange =
        SaslExchange::start(Mechanism::ScramSha256, true, ChannelBindings::default());
    assert_eq!(
        exchange.step("n,,n=jo\u{ad}hn\u{a0}doe,r=abc".as_bytes()),
        Step::NeedCredentials {
            username: "john doe".into()
        }
    );
}

#[test]
fn wrong_password_is_not_authorized() {
    let stored = credentials("secret");
    for mechanism in [Mechanism::ScramSha1, Mechanism::ScramSha256] {
        let mut client = ScramClient::new(hash_of(mechanism), "juliet", "wrong", "n1");
        let outcome = run_scram(
            mechanism,
            ChannelBindings::default(),
            &mut client,
            Some(&stored),
        );
        assert_eq!(outcome.last, Step::Failure(SaslFailure::NotAuthorized));
    }
}

/// Splits server-first into its attribute names and (for s and i) values, minus the random nonce.
fn shape(server_first: &[u8]) -> (Vec<String>, usize, String) {
    let text = String::from_utf8(server_first.to_vec()).unwrap();
    let names = text.split(',').map(|a| a[..2].to_owned()).collect();
    let salt = text.split(',').find_map(|a| a.strip_prefix("s=")).unwrap();
    let iterations = text.split(',').find_map(|a| a.strip_prefix("i=")).unwrap();
    (
        names,
        BASE64.decode(salt).unwrap().len(),
        iterations.to_owned(),
    )
}

#[test]
fn unknown_user_looks_like_a_known_user_until_the_end() {
    let stored = credentials("secret");
    for mechanism in [Mechanism::ScramSha1, Mechanism::ScramSha256Plus] {
        let header = if mechanism.is_plus() {
            "p=tls-exporter,,"
        } else {
            "n,,"
        };
        let mut known = ScramClient::new(hash_of(mechanism), "juliet", "secret", "n1")
            .with_header(header, EXPORTER);
        let known = run_scram(mechanism, bindings(), &mut known, Some(&stored));
        let mut unknown = ScramClient::new(hash_of(mechanism), "nobody", "secret", "n1")
            .with_header(header, EXPORTER);
        let unknown = run_scram(mechanism, bindings(), &mut unknown, None);
        assert_eq!(unknown.last, Step::Failure(SaslFailure::NotAuthorized));
        assert_eq!(
            shape(known.server_first.as_ref().unwrap()),
            shape(unknown.server_first.as_ref().unwrap())
        );
    }
}

fn salt_for_unknown(username: &str, secret: &[u8]) -> String {
    let mut exchange =
        SaslExchange::start(Mechanism::ScramSha256, false, ChannelBindings::default())
            .with_unknown_user_secret(secret);
    exchange.step(format!("n,,n={username},r=abc").as_bytes());
    let Step::Challenge(server_first) = exchange.provide_credentials(None) else {
        panic!()
    };
    let text = String::from_utf8(server_first).unwrap();
    text.split(',')
        .find_map(|a| a.strip_prefix("s="))
        .unwrap()
        .to_owned()
}

#[test]
fn unknown_user_salt_is_stable_and_keyed() {
    assert_eq!(
        salt_for_unknown("nobody", b"k1"),
        salt_for_unknown("nobody", b"k1")
    );
    assert_ne!(
        salt_for_unknown("nobody", b"k1"),
        salt_for_unknown("somebody", b"k1")
    );
    assert_ne!(
        salt_for_unknown("nobody", b"k1"),
        salt_for_unknown("nobody", b"k2")
    );
}

#[test]
fn channel_binding_mismatch_is_not_authorized() {
    let stored = credentials("secret");
    // The client sees different exporter data (a man in the middle terminates TLS).
    let mut client = ScramClient::new(ScramHash::Sha256, "juliet", "secret", "n1")
        .with_header("p=tls-exporter,,", b"attacker's exporter value");
    let outcome = run_scram(
        Mechanism::ScramSha256Plus,
        bindings(),
        &mut client,
        Some(&stored),
    );
    assert_eq!(outcome.last, Step::Failure(SaslFailure::NotAuthorized));

    // c= must repeat the GS2 header exactly, even without binding data.
    let mut client = ScramClient::new(ScramHash::Sha256, "juliet", "secret", "n1");
    let mut exchange =
        SaslExchange::start(Mechanism::ScramSha256, true, ChannelBindings::default());
    exchange.step(&client.first());
    let Step::Challenge(server_first) = exchange.provide_credentials(Some(&stored)) else {
        panic!()
    };
    client.gs2_header = "y,,".into();
    assert_eq!(
        exchange.step(&client.last(&server_first)),
        Step::Failure(SaslFailure::NotAuthorized)
    );
}

#[test]
fn binding_type_we_do_not_have_fails() {
    let only_end_point = ChannelBindings {
        tls_exporter: None,
        tls_server_end_point: Some(END_POINT.to_vec()),
    };
    for header in ["p=tls-exporter,,", "p=tls-unique,,", "p=made-up,,"] {
        let mut exchange =
            SaslExchange::start(Mechanism::ScramSha256Plus, true, only_end_point.clone());
        assert_eq!(
            exchange.step(format!("{header}n=juliet,r=abc").as_bytes()),
            Step::Failure(SaslFailure::NotAuthorized),
            "{header}"
        );
    }
}

#[test]
fn downgrade_with_y_flag_is_refused_when_plus_was_offered() {
    let stored = credentials("secret");
    // RFC 5802 section 6: 'y' means the client believes we do not support binding; we did advertise -PLUS.
    let mut exchange = SaslExchange::start(Mechanism::ScramSha256, true, bindings());
    assert_eq!(
        exchange.step(b"y,,n=juliet,r=abc"),
        Step::Failure(SaslFailure::NotAuthorized)
    );
    // Without bindings to offer, 'y' is honest and the exchange succeeds.
    let mut client =
        ScramClient::new(ScramHash::Sha256, "juliet", "secret", "n1").with_header("y,,", b"");
    let mut exchange =
        SaslExchange::start(Mechanism::ScramSha256, true, ChannelBindings::default());
    exchange.step(&client.first());
    let Step::Challenge(server_first) = exchange.provide_credentials(Some(&stored)) else {
        panic!()
    };
    assert!(matches!(
        exchange.step(&client.last(&server_first)),
        Step::Success { .. }
    ));
    // A -PLUS mechanism without p=, and p= under a plain mechanism, are malformed.
    let mut exchange = SaslExchange::start(Mechanism::ScramSha256Plus, true, bindings());
    assert_eq!(
        exchange.step(b"n,,n=juliet,r=abc"),
        Step::Failure(SaslFailure::MalformedRequest)
    );
    let mut exchange = SaslExchange::start(Mechanism::ScramSha256, true, bindings());
    assert_eq!(
        exchange.step(b"p=tls-exporter,,n=juliet,r=abc"),
        Step::Failure(SaslFailure::MalformedRequest)
    );
}

#[test]
fn plus_needs_tls_and_bindings_and_plain_needs_tls() {
    let mut exchange = SaslExchange::start(Mechanism::ScramSha1Plus, false, bindings());
    assert_eq!(
        exchange.step(b"p=tls-exporter,,n=u,r=a"),
        Step::Failure(SaslFailure::InvalidMechanism)
    );
    let mut exchange =
        SaslExchange::start(Mechanism::ScramSha1Plus, true, ChannelBindings::default());
    assert_eq!(
        exchange.step(b"p=tls-exporter,,n=u,r=a"),
        Step::Failure(SaslFailure::InvalidMechanism)
    );
    let mut exchange = SaslExchange::start(Mechanism::Plain, false, ChannelBindings::default());
    assert_eq!(
        exchange.step(b"\0juliet\0secret"),
        Step::Failure(SaslFailure::EncryptionRequired)
    );
}

#[test]
fn nonce_must_be_client_nonce_plus_server_nonce() {
    let stored = credentials("secret");
    let client = ScramClient::new(ScramHash::Sha256, "juliet", "secret", "n1");
    let mut exchange =
        SaslExchange::start(Mechanism::ScramSha256, true, ChannelBindings::default());
    exchange.step(&client.first());
    let Step::Challenge(server_first) = exchange.provide_credentials(Some(&stored)) else {
        panic!()
    };
    let server_first = String::from_utf8(server_first).unwrap();
    let nonce = server_first
        .split(',')
        .next()
        .unwrap()
        .strip_prefix("r=")
        .unwrap();
    assert!(
        nonce.starts_with("n1") && nonce.len() > 2 + 16,
        "server adds its own random nonce: {nonce}"
    );
    // Replaying with only the client's nonce fails.
    assert_eq!(
        exchange.step(b"c=biws,r=n1,p=AAAA"),
        Step::Failure(SaslFailure::NotAuthorized)
    );
}

#[test]
fn authzid_for_someone_else_is_invalid() {
    for first in [
        &b"n,a=romeo@example.com,n=juliet,r=abc"[..],
        b"n,a=juliet@example.org,n=juliet,r=abc",
        b"n,a=juliet@example.com/balcony,n=juliet,r=abc",
        b"n,a=juliet,n=juliet,r=abc",
    ] {
        let mut exchange =
            SaslExchange::start(Mechanism::ScramSha256, true, ChannelBindings::default())
                .with_domain("example.com");
        assert_eq!(
            exchange.step(first),
            Step::Failure(SaslFailure::InvalidAuthzid)
        );
    }
    let mut exchange = SaslExchange::start(Mechanism::Plain, true, ChannelBindings::default())
        .with_domain("example.com");
    assert_eq!(
        exchange.step(b"romeo@example.com\0juliet\0secret"),
        Step::Failure(SaslFailure::InvalidAuthzid)
    );
}

#[test]
fn empty_initial_response_gets_an_empty_challenge_once() {
    let stored = credentials("secret");
    let mut client = ScramClient::new(ScramHash::Sha1, "juliet", "secret", "n1");
    let mut exchange = SaslExchange::start(Mechanism::ScramSha1, true, ChannelBindings::default());
    assert_eq!(exchange.step(b""), Step::Challenge(Vec::new()));
    assert_eq!(
        exchange.step(&client.first()),
        Step::NeedCredentials {
            username: "juliet".into()
        }
    );
    let Step::Challenge(server_first) = exchange.provide_credentials(Some(&stored)) else {
        panic!()
    };
    assert!(matches!(
        exchange.step(&client.last(&server_first)),
        Step::Success { .. }
    ));
    // Steps after the end, and steps while waiting for credentials, are malformed.
    assert_eq!(
        exchange.step(b"more"),
        Step::Failure(SaslFailure::MalformedRequest)
    );

    let mut exchange = SaslExchange::start(Mechanism::ScramSha1, true, ChannelBindings::default());
    assert_eq!(exchange.step(b""), Step::Challenge(Vec::new()));
    assert_eq!(
        exchange.step(b""),
        Step::Failure(SaslFailure::MalformedRequest)
    );

    let mut exchange = SaslExchange::start(Mechanism::ScramSha1, true, ChannelBindings::default());
    exchange.step(&client.first());
    assert_eq!(
        exchange.step(b"c=biws"),
        Step::Failure(SaslFailure::MalformedRequest)
    );
}

fn run_plain(message: &[u8], stored: Option<&Credentials>) -> Step {
    let mut exchange = SaslExchange::start(Mechanism::Plain, true, ChannelBindings::default())
        .with_domain("example.com");
    match exchange.step(message) {
        Step::NeedCredentials { .. } => exchange.provide_credentials(stored),
        other => other,
    }
}

#[test]
fn plain_checks_the_password_against_the_scram_keys() {
    let stored = credentials("se\u{a0}cret");
    let success = Step::Success {
        authenticated: Authenticated {
            username: "juliet".into(),
        },
        additional_data: None,
    };
    assert_eq!(
        run_plain(b"\0juliet\0se cret", Some(&stored)),
        success,
        "SASLprep maps U+00A0 to space"
    );
    assert_eq!(
        run_plain(b"juliet@example.com\0juliet\0se cret", Some(&stored)),
        success
    );
    assert_eq!(
        run_plain(b"\0juliet\0wrong", Some(&stored)),
        Step::Failure(SaslFailure::NotAuthorized)
    );
    assert_eq!(
        run_plain(b"\0nobody\0se cret", None),
        Step::Failure(SaslFailure::NotAuthorized)
    );
    for malformed in [
        &b"juliet\0secret"[..],
        b"\0\0secret",
        b"\0juliet\0",
        b"\0juliet\0a\0b",
        b"\0ju\xffliet\0pw",
    ] {
        assert_eq!(
            run_plain(malformed, Some(&stored)),
            Step::Failure(SaslFailure::MalformedRequest)
        );
    }
}

#[test]
fn offered_mechanisms_follow_tls_and_bindings() {
    use Mechanism::*;
    assert_eq!(
        offered_mechanisms(false, &bindings(), true),
        vec![ScramSha256, ScramSha1]
    );
    assert_eq!(
        offered_mechanisms(true, &ChannelBindings::default(), true),
        vec![ScramSha256, ScramSha1, Plain]
    );
    assert_eq!(
        offered_mechanisms(true, &bindings(), true),
        vec![
            ScramSha256Plus,
            ScramSha1Plus,
            ScramSha256,
            ScramSha1,
            Plain
        ]
    );
    assert_eq!(
        offered_mechanisms(true, &bindings(), false),
        vec![ScramSha256Plus, ScramSha1Plus, ScramSha256, ScramSha1]
    );
}

#[test]
fn mechanism_names_round_trip() {
    for mechanism in Mechanism::ALL {
        assert_eq!(Mechanism::parse(mechanism.name()), Some(mechanism));
    }
    assert_eq!(Mechanism::parse("scram-sha-1"), None);
    assert_eq!(Mechanism::parse("DIGEST-MD5"), None);
    assert_eq!(
        SaslFailure::TemporaryAuthFailure.as_str(),
        "temporary-auth-failure"
    );
    assert_eq!(SaslFailure::InvalidAuthzid.to_string(), "invalid-authzid");
}

#[test]
fn derive_credentials_validates_and_salts() {
    assert_eq!(
        derive_credentials("pw", 1000).unwrap_err(),
        CredentialError::TooFewIterations(1000)
    );
    assert_eq!(
        derive_credentials("", 4096).unwrap_err(),
        CredentialError::InvalidPassword
    );
    assert_eq!(
        derive_credentials("bell\u{7}", 4096).unwrap_err(),
        CredentialError::InvalidPassword
    );
    let a = credentials("pw");
    let b = credentials("pw");
    assert_ne!(a.sha256.salt, b.sha256.salt, "salts are random");
    assert_ne!(a.sha1.salt, a.sha256.salt, "each hash has its own salt");
    assert_eq!(
        (a.sha1.stored_key.len(), a.sha256.stored_key.len()),
        (20, 32)
    );
    assert_eq!(a.sha256.iterations, DEFAULT_SCRAM_ITERATIONS);
}

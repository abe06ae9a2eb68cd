//! Full SCRAM exchanges against the test client: every mechanism and binding, wrong password, unknown
//! user, binding mismatch, downgrade (RFC 5802 section 6), nonces, authzid, empty initial response.

use super::*;

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

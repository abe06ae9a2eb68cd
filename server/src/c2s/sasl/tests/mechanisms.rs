//! PLAIN (RFC 4616) against stored SCRAM keys, the offered mechanisms, names, and credential derivation.

use super::*;

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
        offered_mechanisms(false, bindings().any(), true),
        vec![ScramSha256, ScramSha1]
    );
    assert_eq!(
        offered_mechanisms(true, ChannelBindings::default().any(), true),
        vec![ScramSha256, ScramSha1, Plain]
    );
    assert_eq!(
        offered_mechanisms(true, bindings().any(), true),
        vec![
            ScramSha256Plus,
            ScramSha1Plus,
            ScramSha256,
            ScramSha1,
            Plain
        ]
    );
    assert_eq!(
        offered_mechanisms(true, bindings().any(), false),
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

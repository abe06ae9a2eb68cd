//! RFC 5802 section 5 and RFC 7677 section 3 test vectors (user `user`, password `pencil`).

use super::*;

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

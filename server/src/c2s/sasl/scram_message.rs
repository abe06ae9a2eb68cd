//! SCRAM message syntax (RFC 5802 section 7): the client-first and client-final messages, the GS2 header
//! and channel-binding flag (RFC 5802 section 6, RFC 5056), and `saslname` escaping (`=2C`, `=3D`).

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;

use super::SaslFailure;

/// The GS2 channel-binding flag (RFC 5802 section 7, `gs2-cbind-flag`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum CbindFlag {
    /// `n`: the client does not support channel binding.
    NotSupported,
    /// `y`: the client supports channel binding but thinks the server does not.
    ClientSupports,
    /// `p=<cb-name>`: the client uses this channel-binding type.
    Used(String),
}

/// The parsed client-first message.
#[derive(Debug, Clone)]
pub(super) struct ClientFirst {
    /// The GS2 header verbatim (`n,,`, `p=tls-exporter,a=...,`), echoed back base64'd in `c=`.
    pub gs2_header: String,
    pub cbind_flag: CbindFlag,
    /// The unescaped authzid (`a=`), if any.
    pub authzid: Option<String>,
    /// The unescaped, SASLprep'd username (`n=`).
    pub username: String,
    pub client_nonce: String,
    /// `client-first-message-bare` verbatim, part of the AuthMessage.
    pub bare: String,
}

impl ClientFirst {
    /// Parses `gs2-header client-first-message-bare`.
    /// Errors: `malformed-request` for anything that does not follow the grammar, for the mandatory
    /// extension `m=` (RFC 5802 section 5.1: the server must fail if it does not understand it), and for an
    /// unusable username.
    pub(super) fn parse(data: &[u8]) -> Result<ClientFirst, SaslFailure> {
        let text = std::str::from_utf8(data).map_err(|_| SaslFailure::MalformedRequest)?;
        let (flag, rest) = text.split_once(',').ok_or(SaslFailure::MalformedRequest)?;
        let (authzid_field, bare) = rest.split_once(',').ok_or(SaslFailure::MalformedRequest)?;
        let gs2_header = text[..flag.len() + authzid_field.len() + 2].to_owned();

        let cbind_flag = match flag {
            "n" => CbindFlag::NotSupported,
            "y" => CbindFlag::ClientSupports,
            _ => {
                let name = flag
                    .strip_prefix("p=")
                    .ok_or(SaslFailure::MalformedRequest)?;
                // cb-name = 1*(ALPHA / DIGIT / "." / "-")
                let valid = !name.is_empty()
                    && name
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-');
                if !valid {
                    return Err(SaslFailure::MalformedRequest);
                }
                CbindFlag::Used(name.to_owned())
            }
        };
        let authzid = if authzid_field.is_empty() {
            None
        } else {
            let escaped = authzid_field
                .strip_prefix("a=")
                .ok_or(SaslFailure::MalformedRequest)?;
            let authzid = unescape_saslname(escaped)?;
            if authzid.is_empty() {
                return Err(SaslFailure::MalformedRequest);
            }
            Some(authzid)
        };

        let mut attributes = bare.split(',');
        let first = attributes.next().unwrap_or_default();
        if first.starts_with("m=") {
            return Err(SaslFailure::MalformedRequest);
        }
        let raw_username = first
            .strip_prefix("n=")
            .ok_or(SaslFailure::MalformedRequest)?;
        let unescaped = unescape_saslname(raw_username)?;
        // RFC 5802 section 5.1: the server SHOULD prepare the username with SASLprep.
        let username = stringprep::saslprep(&unescaped)
            .map_err(|_| SaslFailure::MalformedRequest)?
            .into_owned();
        if username.is_empty() {
            return Err(SaslFailure::MalformedRequest);
        }
        let client_nonce = attributes
            .next()
            .and_then(|a| a.strip_prefix("r="))
            .filter(|nonce| is_valid_nonce(nonce))
            .ok_or(SaslFailure::MalformedRequest)?
            .to_owned();
        // Optional extensions after the nonce are allowed and ignored, but must be well formed.
        if !attributes.all(is_extension) {
            return Err(SaslFailure::MalformedRequest);
        }
        Ok(ClientFirst {
            gs2_header,
            cbind_flag,
            authzid,
            username,
            client_nonce,
            bare: bare.to_owned(),
        })
    }

    /// Checks the channel-binding flag against the mechanism and what we advertised (RFC 5802 section 6).
    /// Errors: `malformed-request` for `p=` under a non-PLUS mechanism or `n`/`y` under a -PLUS one;
    /// `not-authorized` for `y` while we advertised -PLUS (a downgrade attack).
    pub(super) fn check_binding_choice(
        self,
        is_plus: bool,
        server_offers_plus: bool,
    ) -> Result<Self, SaslFailure> {
        match (&self.cbind_flag, is_plus) {
            (CbindFlag::Used(_), true) => Ok(self),
            (CbindFlag::Used(_), false) | (_, true) => Err(SaslFailure::MalformedRequest),
            (CbindFlag::ClientSupports, false) if server_offers_plus => {
                Err(SaslFailure::NotAuthorized)
            }
            (_, false) => Ok(self),
        }
    }
}

/// The parsed client-final message.
#[derive(Debug, Clone)]
pub(super) struct ClientFinal {
    /// The decoded `c=` value: GS2 header plus channel-binding data.
    pub channel_binding: Vec<u8>,
    pub nonce: String,
    pub proof: Vec<u8>,
    /// `client-final-message-without-proof` verbatim, part of the AuthMessage.
    pub without_proof: String,
}

impl ClientFinal {
    /// Parses `c=...,r=...[,ext...],p=...`. Errors: `malformed-request` for anything off-grammar.
    pub(super) fn parse(data: &[u8]) -> Result<ClientFinal, SaslFailure> {
        let text = std::str::from_utf8(data).map_err(|_| SaslFailure::MalformedRequest)?;
        let (without_proof, proof_attr) =
            text.rsplit_once(',').ok_or(SaslFailure::MalformedRequest)?;
        let proof = proof_attr
            .strip_prefix("p=")
            .and_then(|p| BASE64.decode(p).ok())
            .ok_or(SaslFailure::MalformedRequest)?;
        let mut attributes = without_proof.split(',');
        let channel_binding = attributes
            .next()
            .and_then(|a| a.strip_prefix("c="))
            .and_then(|c| BASE64.decode(c).ok())
            .ok_or(SaslFailure::MalformedRequest)?;
        let nonce = attributes
            .next()
            .and_then(|a| a.strip_prefix("r="))
            .filter(|nonce| is_valid_nonce(nonce))
            .ok_or(SaslFailure::MalformedRequest)?
            .to_owned();
        if !attributes.all(is_extension) {
            return Err(SaslFailure::MalformedRequest);
        }
        Ok(ClientFinal {
            channel_binding,
            nonce,
            proof,
            without_proof: without_proof.to_owned(),
        })
    }
}

/// `saslname` to string: `=2C` is `,`, `=3D` is `=`, any other `=` is an error (RFC 5802 section 5.1).
pub(super) fn unescape_saslname(escaped: &str) -> Result<String, SaslFailure> {
    let mut out = String::with_capacity(escaped.len());
    let mut rest = escaped;
    while let Some(at) = rest.find('=') {
        out.push_str(&rest[..at]);
        let code = rest
            .get(at + 1..at + 3)
            .ok_or(SaslFailure::MalformedRequest)?;
        out.push(match code {
            "2C" => ',',
            "3D" => '=',
            _ => return Err(SaslFailure::MalformedRequest),
        });
        rest = &rest[at + 3..];
    }
    if rest.contains(',') {
        return Err(SaslFailure::MalformedRequest);
    }
    out.push_str(rest);
    Ok(out)
}

/// String to `saslname` (the inverse of [`unescape_saslname`]); used by the test client.
#[cfg(test)]
pub(super) fn escape_saslname(name: &str) -> String {
    name.replace('=', "=3D").replace(',', "=2C")
}

/// `printable = %x21-2B / %x2D-7E` (RFC 5802 section 7), at least one character.
fn is_valid_nonce(nonce: &str) -> bool {
    !nonce.is_empty()
        && nonce
            .bytes()
            .all(|b| (0x21..=0x7e).contains(&b) && b != b',')
}

/// `attr-val = ALPHA "=" value` for an optional extension. `m` is reserved for mandatory extensions,
/// which can only appear first in client-first, so it is refused here as well.
fn is_extension(attribute: &str) -> bool {
    let bytes = attribute.as_bytes();
    bytes.len() >= 2 && bytes[0].is_ascii_alphabetic() && bytes[0] != b'm' && bytes[1] == b'='
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saslname_escapes_round_trip() {
        assert_eq!(unescape_saslname("a=2Cb=3Dc").unwrap(), "a,b=c");
        assert_eq!(escape_saslname("a,b=c"), "a=2Cb=3Dc");
        assert_eq!(
            unescape_saslname("a=2").unwrap_err(),
            SaslFailure::MalformedRequest
        );
        assert_eq!(
            unescape_saslname("a=41").unwrap_err(),
            SaslFailure::MalformedRequest
        );
        assert_eq!(
            unescape_saslname("a=").unwrap_err(),
            SaslFailure::MalformedRequest
        );
    }

    #[test]
    fn client_first_parses_header_and_bare() {
        let first = ClientFirst::parse(b"p=tls-exporter,a=u=2Cx@example.com,n=us=3Der,r=abc,x=ext")
            .unwrap();
        assert_eq!(first.gs2_header, "p=tls-exporter,a=u=2Cx@example.com,");
        assert_eq!(first.cbind_flag, CbindFlag::Used("tls-exporter".into()));
        assert_eq!(first.authzid.as_deref(), Some("u,x@example.com"));
        assert_eq!(first.username, "us=er");
        assert_eq!(first.client_nonce, "abc");
        assert_eq!(first.bare, "n=us=3Der,r=abc,x=ext");
    }

    #[test]
    fn client_first_rejects_bad_input() {
        for bad in [
            &b"n,,m=ext,n=user,r=abc"[..],
            b"n,,n=user",
            b"n,,n=user,r=",
            b"n,,n=,r=abc",
            b"n,,r=abc,n=user",
            b"x,,n=user,r=abc",
            b"p=,,n=user,r=abc",
            b"p=tls exporter,,n=user,r=abc",
            b"n,b=x,n=user,r=abc",
            b"n,,n=us=er,r=abc",
            b"n,,n=user,r=abc,7",
            b"n,,n=user,r=abc,m=x",
            b"n,,n=user,r=a\x7fb",
            b"n,n=user,r=abc",
            b"\xff,,n=user,r=abc",
        ] {
            assert_eq!(
                ClientFirst::parse(bad).unwrap_err(),
                SaslFailure::MalformedRequest,
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn client_final_splits_off_the_proof() {
        let last = ClientFinal::parse(b"c=biws,r=abcdef,p=AAEC").unwrap();
        assert_eq!(last.channel_binding, b"n,,");
        assert_eq!(last.nonce, "abcdef");
        assert_eq!(last.proof, vec![0, 1, 2]);
        assert_eq!(last.without_proof, "c=biws,r=abcdef");
        for bad in [
            &b"c=biws,r=abc"[..],
            b"c=biws,p=AAEC",
            b"r=abc,c=biws,p=AAEC",
            b"c=!!,r=abc,p=AAEC",
            b"c=biws,r=abc,p=!!",
            b"c=biws,r=abc,p=AAEC,x=1",
        ] {
            assert_eq!(
                ClientFinal::parse(bad).unwrap_err(),
                SaslFailure::MalformedRequest
            );
        }
    }

    #[test]
    fn binding_choice_follows_rfc5802_section_6() {
        let first =
            |flag: &str| ClientFirst::parse(format!("{flag},,n=u,r=abc").as_bytes()).unwrap();
        // Non-PLUS mechanism.
        assert!(first("n").check_binding_choice(false, true).is_ok());
        assert!(first("y").check_binding_choice(false, false).is_ok());
        assert_eq!(
            first("y").check_binding_choice(false, true).unwrap_err(),
            SaslFailure::NotAuthorized
        );
        assert_eq!(
            first("p=tls-exporter")
                .check_binding_choice(false, true)
                .unwrap_err(),
            SaslFailure::MalformedRequest
        );
        // PLUS mechanism.
        assert!(
            first("p=tls-exporter")
                .check_binding_choice(true, true)
                .is_ok()
        );
        assert_eq!(
            first("n").check_binding_choice(true, true).unwrap_err(),
            SaslFailure::MalformedRequest
        );
        assert_eq!(
            first("y").check_binding_choice(true, true).unwrap_err(),
            SaslFailure::MalformedRequest
        );
    }
}

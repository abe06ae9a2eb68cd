//! RFC 9421 HTTP Message Signatures with Ed25519 (section 3.3.6) and RFC 9530 `Content-Digest`
//! (sha-256, section 2): component values (sections 2.1, 2.2), the signature base (section 2.5), the
//! `Signature-Input` and `Signature` fields (sections 4.1, 4.2; the RFC 8941 dictionary shapes they
//! use, section 3.2), signing and verifying (sections 3.1, 3.2). No policy here: which components
//! must be covered, which keys are trusted and how old a signature may be is `federation.rs`'s.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use reqwest::Url;
use reqwest::header::HeaderMap;
use sha2::{Digest, Sha256};

/// Why a signature could not be read, built or checked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("malformed {0}")]
    Malformed(&'static str),
    #[error("covered component {0} is missing from the request")]
    MissingComponent(String),
    #[error("unsupported covered component {0}")]
    UnsupportedComponent(String),
    #[error("signature does not verify")]
    BadSignature,
}

/// A parameter value of `Signature-Input` (RFC 8941 bare items, as RFC 9421 section 2.3 uses them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParamValue {
    Integer(i64),
    String(String),
    Token(String),
    Boolean(bool),
}

/// One signature's `Signature-Input` member: the covered components in order, and the parameters
/// in the order they were given (the signature base repeats them exactly).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignatureParams {
    /// Component identifiers, e.g. `@method`, `content-digest` (no component parameters).
    pub components: Vec<String>,
    pub params: Vec<(String, ParamValue)>,
}

impl SignatureParams {
    /// An integer parameter (`created`, `expires`).
    pub fn integer(&self, name: &str) -> Option<i64> {
        self.params.iter().find_map(|(k, v)| match v {
            ParamValue::Integer(i) if k == name => Some(*i),
            _ => None,
        })
    }

    /// A string parameter (`keyid`, `nonce`, `alg`, `tag`).
    pub fn string(&self, name: &str) -> Option<&str> {
        self.params.iter().find_map(|(k, v)| match v {
            ParamValue::String(s) if k == name => Some(s.as_str()),
            _ => None,
        })
    }

    /// The serialized inner list: the `@signature-params` value and the `Signature-Input` member.
    pub fn serialize(&self) -> String {
        let mut out = String::from("(");
        for (i, c) in self.components.iter().enumerate() {
            if i > 0 {
                out.push(' ');
            }
            push_string(&mut out, c);
        }
        out.push(')');
        for (k, v) in &self.params {
            out.push(';');
            out.push_str(k);
            match v {
                ParamValue::Integer(i) => out.push_str(&format!("={i}")),
                ParamValue::String(s) => {
                    out.push('=');
                    push_string(&mut out, s);
                }
                ParamValue::Token(t) => out.push_str(&format!("={t}")),
                ParamValue::Boolean(true) => {}
                ParamValue::Boolean(false) => out.push_str("=?0"),
            }
        }
        out
    }
}

fn push_string(out: &mut String, s: &str) {
    out.push('"');
    for ch in s.chars() {
        if ch == '"' || ch == '\\' {
            out.push('\\');
        }
        out.push(ch);
    }
    out.push('"');
}

/// The request as a signer or verifier sees it: the method, the absolute target URI (as the client
/// addressed it), and the header fields.
pub struct SignedRequest<'a> {
    pub method: &'a str,
    pub target_uri: &'a str,
    pub headers: &'a HeaderMap,
}

impl SignedRequest<'_> {
    /// The value of one covered component (section 2.1 for fields, 2.2 for derived components).
    fn component(&self, name: &str) -> Result<String, SignatureError> {
        let url = || Url::parse(self.target_uri).map_err(|_| SignatureError::Malformed("URI"));
        match name {
            "@method" => Ok(self.method.to_string()),
            "@target-uri" => Ok(self.target_uri.to_string()),
            "@scheme" => Ok(url()?.scheme().to_ascii_lowercase()),
            "@authority" => {
                let u = url()?;
                let host = u.host_str().ok_or(SignatureError::Malformed("URI"))?;
                Ok(match u.port() {
                    Some(port) => format!("{}:{port}", host.to_ascii_lowercase()),
                    None => host.to_ascii_lowercase(),
                })
            }
            "@path" => {
                let u = url()?;
                Ok(if u.path().is_empty() { "/" } else { u.path() }.to_string())
            }
            "@query" => Ok(format!("?{}", url()?.query().unwrap_or(""))),
            derived if derived.starts_with('@') => {
                Err(SignatureError::UnsupportedComponent(derived.to_string()))
            }
            field => {
                let mut values = Vec::new();
                for v in self.headers.get_all(field) {
                    let v = v
                        .to_str()
                        .map_err(|_| SignatureError::Malformed("header"))?;
                    values.push(v.trim());
                }
                if values.is_empty() {
                    return Err(SignatureError::MissingComponent(field.to_string()));
                }
                Ok(values.join(", "))
            }
        }
    }
}

/// The signature base (section 2.5): one `"name": value` line per covered component, then the
/// `@signature-params` line, joined by LF with no trailing newline. Errors: a component missing from
/// the request, unsupported, repeated, or a value with a line break.
pub fn signature_base(
    request: &SignedRequest<'_>,
    params: &SignatureParams,
) -> Result<String, SignatureError> {
    let mut base = String::new();
    for (i, name) in params.components.iter().enumerate() {
        if params.components[..i].contains(name) || name == "@signature-params" {
            return Err(SignatureError::Malformed("covered components"));
        }
        let value = request.component(name)?;
        if value.contains(['\n', '\r']) {
            return Err(SignatureError::Malformed("component value"));
        }
        base.push_str(&format!("\"{name}\": {value}\n"));
    }
    base.push_str("\"@signature-params\": ");
    base.push_str(&params.serialize());
    Ok(base)
}

/// Signs `base` with an Ed25519 key (section 3.3.6).
pub fn sign(key: &ring::signature::Ed25519KeyPair, base: &str) -> Vec<u8> {
    key.sign(base.as_bytes()).as_ref().to_vec()
}

/// Verifies an Ed25519 signature of `base` with a raw 32-byte public key. Errors:
/// [`SignatureError::BadSignature`].
pub fn verify(public_key: &[u8], base: &str, signature: &[u8]) -> Result<(), SignatureError> {
    ring::signature::UnparsedPublicKey::new(&ring::signature::ED25519, public_key)
        .verify(base.as_bytes(), signature)
        .map_err(|_| SignatureError::BadSignature)
}

/// The `Content-Digest` value of `body` (RFC 9530 section 2): `sha-256=:<base64>:`.
pub fn content_digest(body: &[u8]) -> String {
    format!("sha-256=:{}:", STANDARD.encode(Sha256::digest(body)))
}

/// Whether a received `Content-Digest` value carries the sha-256 digest of `body` (other algorithms
/// in it are ignored; without sha-256 it does not). Errors: a value that is not a dictionary.
pub fn digest_matches(header: &str, body: &[u8]) -> Result<bool, SignatureError> {
    let members = Parser::new(header).dictionary()?;
    let expected = Sha256::digest(body);
    Ok(members.iter().any(|(k, v)| {
        k == "sha-256" && matches!(v, Member::Bytes(b) if b.as_slice() == expected.as_slice())
    }))
}

/// The `Signature-Input` member `label` (section 4.1). Errors: the field is not a dictionary, the
/// label is absent, or its value is not an inner list of plain component names.
pub fn parse_signature_input(header: &str, label: &str) -> Result<SignatureParams, SignatureError> {
    let members = Parser::new(header).dictionary()?;
    match members.into_iter().find(|(k, _)| k == label) {
        Some((_, Member::InnerList(components, params))) => {
            Ok(SignatureParams { components, params })
        }
        _ => Err(SignatureError::Malformed("Signature-Input")),
    }
}

/// The labels of a `Signature-Input` field, in order.
pub fn signature_labels(header: &str) -> Result<Vec<String>, SignatureError> {
    Ok(Parser::new(header)
        .dictionary()?
        .into_iter()
        .map(|(k, _)| k)
        .collect())
}

/// The signature bytes of member `label` of a `Signature` field (section 4.2).
pub fn parse_signature(header: &str, label: &str) -> Result<Vec<u8>, SignatureError> {
    let members = Parser::new(header).dictionary()?;
    match members.into_iter().find(|(k, _)| k == label) {
        Some((_, Member::Bytes(b))) => Ok(b),
        _ => Err(SignatureError::Malformed("Signature")),
    }
}

/// A `Signature` field value with one member.
pub fn serialize_signature(label: &str, signature: &[u8]) -> String {
    format!("{label}=:{}:", STANDARD.encode(signature))
}

/// Dictionary member values, only the shapes these fields use.
enum Member {
    Bytes(Vec<u8>),
    InnerList(Vec<String>, Vec<(String, ParamValue)>),
    Other,
}

/// An RFC 8941 parser for dictionaries (section 4.2.2), enough for `Signature-Input`, `Signature`
/// and `Content-Digest`. Every byte is peer input: no panics, only errors.
struct Parser<'a> {
    s: &'a [u8],
    i: usize,
}

const MALFORMED: SignatureError = SignatureError::Malformed("structured field");

impl<'a> Parser<'a> {
    fn new(s: &'a str) -> Parser<'a> {
        Parser {
            s: s.as_bytes(),
            i: 0,
        }
    }

    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn skip(&mut self, set: &[u8]) {
        while self.peek().is_some_and(|c| set.contains(&c)) {
            self.i += 1;
        }
    }

    fn eat(&mut self, c: u8) -> bool {
        if self.peek() == Some(c) {
            self.i += 1;
            true
        } else {
            false
        }
    }

    fn dictionary(&mut self) -> Result<Vec<(String, Member)>, SignatureError> {
        let mut out = Vec::new();
        self.skip(b" ");
        while self.peek().is_some() {
            let key = self.key()?;
            let member = if self.eat(b'=') {
                self.member()?
            } else {
                self.params()?;
                Member::Other
            };
            out.push((key, member));
            self.skip(b" \t");
            if self.peek().is_none() {
                break;
            }
            if !self.eat(b',') {
                return Err(MALFORMED);
            }
            self.skip(b" \t");
            if self.peek().is_none() {
                return Err(MALFORMED);
            }
        }
        Ok(out)
    }

    fn member(&mut self) -> Result<Member, SignatureError> {
        if self.eat(b'(') {
            let mut items = Vec::new();
            loop {
                self.skip(b" ");
                if self.eat(b')') {
                    break;
                }
                match self.bare_item()? {
                    ParamValue::String(s) => items.push(s),
                    _ => return Err(SignatureError::Malformed("covered components")),
                }
                // Component parameters (`;sf`, `;key`, `;req`...) are not supported.
                if self.peek() == Some(b';') {
                    return Err(SignatureError::UnsupportedComponent(
                        items.pop().unwrap_or_default(),
                    ));
                }
                if !matches!(self.peek(), Some(b' ' | b')')) {
                    return Err(MALFORMED);
                }
            }
            let params = self.params()?;
            return Ok(Member::InnerList(items, params));
        }
        if self.eat(b':') {
            let start = self.i;
            while self.peek().is_some_and(|c| c != b':') {
                self.i += 1;
            }
            let text = &self.s[start..self.i];
            if !self.eat(b':') {
                return Err(MALFORMED);
            }
            let bytes = STANDARD.decode(text).map_err(|_| MALFORMED)?;
            self.params()?;
            return Ok(Member::Bytes(bytes));
        }
        self.bare_item()?;
        self.params()?;
        Ok(Member::Other)
    }

    fn params(&mut self) -> Result<Vec<(String, ParamValue)>, SignatureError> {
        let mut params: Vec<(String, ParamValue)> = Vec::new();
        while self.eat(b';') {
            self.skip(b" ");
            let key = self.key()?;
            let value = if self.eat(b'=') {
                self.bare_item()?
            } else {
                ParamValue::Boolean(true)
            };
            // RFC 8941 section 4.2.3.2: a repeated key overwrites the earlier value.
            params.retain(|(k, _)| *k != key);
            params.push((key, value));
        }
        Ok(params)
    }

    fn key(&mut self) -> Result<String, SignatureError> {
        let start = self.i;
        match self.peek() {
            Some(c) if c.is_ascii_lowercase() || c == b'*' => self.i += 1,
            _ => return Err(MALFORMED),
        }
        while self
            .peek()
            .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || b"_-.*".contains(&c))
        {
            self.i += 1;
        }
        Ok(String::from_utf8_lossy(&self.s[start..self.i]).into_owned())
    }

    fn bare_item(&mut self) -> Result<ParamValue, SignatureError> {
        match self.peek() {
            Some(b'"') => {
                self.i += 1;
                let mut out = String::new();
                loop {
                    match self.peek() {
                        None => return Err(MALFORMED),
                        Some(b'"') => {
                            self.i += 1;
                            return Ok(ParamValue::String(out));
                        }
                        Some(b'\\') => {
                            self.i += 1;
                            match self.peek() {
                                Some(c @ (b'"' | b'\\')) => out.push(char::from(c)),
                                _ => return Err(MALFORMED),
                            }
                            self.i += 1;
                        }
                        Some(c) if (0x20..0x7f).contains(&c) => {
                            out.push(char::from(c));
                            self.i += 1;
                        }
                        Some(_) => return Err(MALFORMED),
                    }
                }
            }
            Some(c) if c == b'-' || c.is_ascii_digit() => {
                let start = self.i;
                self.i += 1;
                while self.peek().is_some_and(|c| c.is_ascii_digit()) {
                    self.i += 1;
                }
                let text = std::str::from_utf8(&self.s[start..self.i]).map_err(|_| MALFORMED)?;
                // RFC 8941 section 3.3.1: at most 15 digits.
                if text.trim_start_matches('-').len() > 15 || self.peek() == Some(b'.') {
                    return Err(MALFORMED);
                }
                text.parse().map(ParamValue::Integer).map_err(|_| MALFORMED)
            }
            Some(b'?') => {
                self.i += 1;
                let value = match self.peek() {
                    Some(b'1') => true,
                    Some(b'0') => false,
                    _ => return Err(MALFORMED),
                };
                self.i += 1;
                Ok(ParamValue::Boolean(value))
            }
            Some(c) if c.is_ascii_alphabetic() || c == b'*' => {
                let start = self.i;
                while self
                    .peek()
                    .is_some_and(|c| c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~:/".contains(&c))
                {
                    self.i += 1;
                }
                Ok(ParamValue::Token(
                    String::from_utf8_lossy(&self.s[start..self.i]).into_owned(),
                ))
            }
            _ => Err(MALFORMED),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    /// RFC 9421 appendix B.1.4: the Ed25519 test key (PKCS#8 v1; the seed is its last 32 bytes).
    const TEST_KEY_ED25519: &str =
        "MC4CAQAwBQYDK2VwBCIEIJ+DYvh6SEqVTm50DFtMDoQikTmiCqirVv9mWG9qfSnF";
    const TEST_KEY_ED25519_PUBLIC: &str =
        "MCowBQYDK2VwAyEAJrQLj5P/89iXES9+vFgrIy29clF9CC/oPPsw3c5D0bs=";

    fn b26_request_headers() -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in [
            ("host", "example.com"),
            ("date", "Tue, 20 Apr 2021 02:07:55 GMT"),
            ("content-type", "application/json"),
            (
                "content-digest",
                "sha-512=:WZDPaVn/7XgHaAy8pmojAkGWoRx2UFChF41A2svX+TaPm+AbwAgBWnrIiYllu7BNNyealdVLvRwEmTHWXvJwew==:",
            ),
            ("content-length", "18"),
        ] {
            h.insert(k, HeaderValue::from_static(v));
        }
        h
    }

    const B26_INPUT: &str = "sig-b26=(\"date\" \"@method\" \"@path\" \"@authority\" \"content-type\" \"content-length\");created=1618884473;keyid=\"test-key-ed25519\"";
    const B26_SIGNATURE: &str = "sig-b26=:wqcAqbmYJ2ji2glfAMaRy4gruYYnx2nEFN2HN6jrnDnQCK1u02Gb04v9EDgwUPiu4A0w6vuQv5lIp5WPpBKRCw==:";

    /// RFC 9421 appendix B.2.6: signing a request using ed25519: the base, the signature (Ed25519
    /// is deterministic, so ours must equal the RFC's byte for byte), and verification.
    #[test]
    fn rfc9421_b26_ed25519_vector() {
        let headers = b26_request_headers();
        let request = SignedRequest {
            method: "POST",
            target_uri: "https://example.com/foo?param=Value&Pet=dog",
            headers: &headers,
        };
        let params = parse_signature_input(B26_INPUT, "sig-b26").unwrap();
        assert_eq!(params.string("keyid"), Some("test-key-ed25519"));
        assert_eq!(params.integer("created"), Some(1618884473));
        let base = signature_base(&request, &params).unwrap();
        assert_eq!(
            base,
            "\"date\": Tue, 20 Apr 2021 02:07:55 GMT\n\
             \"@method\": POST\n\
             \"@path\": /foo\n\
             \"@authority\": example.com\n\
             \"content-type\": application/json\n\
             \"content-length\": 18\n\
             \"@signature-params\": (\"date\" \"@method\" \"@path\" \"@authority\" \"content-type\" \"content-length\");created=1618884473;keyid=\"test-key-ed25519\""
        );
        let pkcs8 = STANDARD.decode(TEST_KEY_ED25519).unwrap();
        let seed = &pkcs8[pkcs8.len() - 32..];
        let key = ring::signature::Ed25519KeyPair::from_seed_unchecked(seed).unwrap();
        let spki = STANDARD.decode(TEST_KEY_ED25519_PUBLIC).unwrap();
        let public = &spki[spki.len() - 32..];
        assert_eq!(ring::signature::KeyPair::public_key(&key).as_ref(), public);
        let signature = sign(&key, &base);
        assert_eq!(serialize_signature("sig-b26", &signature), B26_SIGNATURE);
        let received = parse_signature(B26_SIGNATURE, "sig-b26").unwrap();
        verify(public, &base, &received).unwrap();
        let mut tampered = base.clone();
        tampered.replace_range(0..1, "'");
        assert_eq!(
            verify(public, &tampered, &received),
            Err(SignatureError::BadSignature)
        );
    }

    #[test]
    fn params_round_trip_in_their_order() {
        let input = "herald=(\"@method\" \"@target-uri\" \"content-digest\");created=10;expires=70;keyid=\"a.example\";nonce=\"n\\\"1\";alg=\"ed25519\"";
        let params = parse_signature_input(input, "herald").unwrap();
        assert_eq!(format!("herald={}", params.serialize()), input);
        assert_eq!(params.string("nonce"), Some("n\"1"));
        assert_eq!(params.integer("expires"), Some(70));
        assert_eq!(signature_labels("a=(), b=()").unwrap(), vec!["a", "b"]);
    }

    #[test]
    fn derived_components_and_fields() {
        let mut headers = HeaderMap::new();
        headers.append("x-many", HeaderValue::from_static(" one "));
        headers.append("x-many", HeaderValue::from_static("two"));
        let request = SignedRequest {
            method: "POST",
            target_uri: "https://Relay.Example:8443/api/v1/federation/messages/",
            headers: &headers,
        };
        let params = SignatureParams {
            components: vec![
                "@method".into(),
                "@target-uri".into(),
                "@authority".into(),
                "@scheme".into(),
                "@query".into(),
                "x-many".into(),
            ],
            params: vec![("created".into(), ParamValue::Integer(1))],
        };
        let base = signature_base(&request, &params).unwrap();
        assert_eq!(
            base,
            "\"@method\": POST\n\
             \"@target-uri\": https://Relay.Example:8443/api/v1/federation/messages/\n\
             \"@authority\": relay.example:8443\n\
             \"@scheme\": https\n\
             \"@query\": ?\n\
             \"x-many\": one, two\n\
             \"@signature-params\": (\"@method\" \"@target-uri\" \"@authority\" \"@scheme\" \"@query\" \"x-many\");created=1"
        );
        let missing = SignatureParams {
            components: vec!["content-digest".into()],
            params: vec![],
        };
        assert_eq!(
            signature_base(&request, &missing),
            Err(SignatureError::MissingComponent("content-digest".into()))
        );
        let repeated = SignatureParams {
            components: vec!["@method".into(), "@method".into()],
            params: vec![],
        };
        assert!(signature_base(&request, &repeated).is_err());
        let unknown = SignatureParams {
            components: vec!["@request-response".into()],
            params: vec![],
        };
        assert!(matches!(
            signature_base(&request, &unknown),
            Err(SignatureError::UnsupportedComponent(_))
        ));
    }

    #[test]
    fn content_digest_sha256() {
        // RFC 9530 appendix B.1: {"hello": "world"} and its sha-256.
        let body = b"{\"hello\": \"world\"}\n";
        assert_eq!(
            content_digest(body),
            "sha-256=:RK/0qy18MlBSVnWgjwz6lZEWjP/lF5HF9bvEF8FabDg=:"
        );
        assert!(digest_matches(&content_digest(body), body).unwrap());
        assert!(
            digest_matches(
                "sha-512=:AAAA:, sha-256=:RK/0qy18MlBSVnWgjwz6lZEWjP/lF5HF9bvEF8FabDg=:",
                body
            )
            .unwrap()
        );
        assert!(!digest_matches(&content_digest(b"other"), body).unwrap());
        assert!(!digest_matches("sha-512=:AAAA:", body).unwrap());
    }

    #[test]
    fn garbage_is_an_error_never_a_panic() {
        for bad in [
            "",
            "(",
            "a=(\"x\"",
            "a=(\"x\";sf)",
            "a=(x)",
            "a=:not base64!:",
            "A=1",
            "a=1,",
            "a=\"unterminated",
            "a=(\"x\");created=99999999999999999",
            "a=(\"\u{e9}\")",
        ] {
            assert!(
                parse_signature_input(bad, "a").is_err(),
                "{bad:?} was accepted"
            );
        }
    }
}

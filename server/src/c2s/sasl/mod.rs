//! SASL for client streams (RFC 6120 section 6, RFC 4422): the mechanisms we offer and one exchange's state.
//!
//! Mechanisms: SCRAM-SHA-1 and SCRAM-SHA-256 (RFC 5802, RFC 7677), their -PLUS variants with the
//! `tls-exporter` (RFC 9266) and `tls-server-end-point` (RFC 5929) channel bindings, and PLAIN (RFC 4616),
//! which is offered only inside TLS (RFC 6120 section 13.8) and checked against the stored SCRAM keys.
//!
//! This module is pure: no I/O and no storage. The caller feeds it the client's (already base64-decoded)
//! data, looks the user up when told [`Step::NeedCredentials`], and maps [`Step`] to `<challenge/>`,
//! `<success/>` and `<failure/>`.

mod authzid;
mod credentials;
mod plain;
mod scram;
mod scram_message;
mod verify;
pub use verify::verify_plain;

#[cfg(test)]
pub(crate) use scram::derivations_on_this_thread;

#[cfg(test)]
mod tests;

pub use credentials::{
    CredentialError, DEFAULT_SCRAM_ITERATIONS, MIN_SCRAM_ITERATIONS, derive_credentials,
};

use herald_storage::Credentials;

use scram::{Rejection, ScramHash, ScramServer};

/// A SASL mechanism this server implements, strongest first in declaration order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mechanism {
    ScramSha256Plus,
    ScramSha1Plus,
    ScramSha256,
    ScramSha1,
    Plain,
}

impl Mechanism {
    /// Every mechanism, strongest first.
    pub const ALL: [Mechanism; 5] = [
        Mechanism::ScramSha256Plus,
        Mechanism::ScramSha1Plus,
        Mechanism::ScramSha256,
        Mechanism::ScramSha1,
        Mechanism::Plain,
    ];

    /// The IANA-registered mechanism name, as sent in `<mechanism/>` and `<auth mechanism=''/>`.
    pub fn name(self) -> &'static str {
        match self {
            Mechanism::ScramSha256Plus => "SCRAM-SHA-256-PLUS",
            Mechanism::ScramSha1Plus => "SCRAM-SHA-1-PLUS",
            Mechanism::ScramSha256 => "SCRAM-SHA-256",
            Mechanism::ScramSha1 => "SCRAM-SHA-1",
            Mechanism::Plain => "PLAIN",
        }
    }

    /// Parses a mechanism name. SASL mechanism names are upper case (RFC 4422 section 3.1); anything else,
    /// including names we do not implement, is `None` (the caller answers `<invalid-mechanism/>`).
    pub fn parse(name: &str) -> Option<Mechanism> {
        Mechanism::ALL.into_iter().find(|m| m.name() == name)
    }

    /// Whether this is a channel-binding (-PLUS) variant.
    pub fn is_plus(self) -> bool {
        matches!(self, Mechanism::ScramSha256Plus | Mechanism::ScramSha1Plus)
    }

    fn scram_hash(self) -> Option<ScramHash> {
        match self {
            Mechanism::ScramSha256Plus | Mechanism::ScramSha256 => Some(ScramHash::Sha256),
            Mechanism::ScramSha1Plus | Mechanism::ScramSha1 => Some(ScramHash::Sha1),
            Mechanism::Plain => None,
        }
    }
}

/// The channel-binding data of the TLS connection the exchange runs over (see `crate::net::channel_binding`).
/// `tls-unique` is not offered: rustls does not expose it and RFC 9266 replaces it for TLS 1.3.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChannelBindings {
    /// RFC 9266 `tls-exporter` (TLS 1.3 only).
    pub tls_exporter: Option<Vec<u8>>,
    /// RFC 5929 section 4 `tls-server-end-point`: the hash of our certificate.
    pub tls_server_end_point: Option<Vec<u8>>,
}

impl ChannelBindings {
    /// Whether any channel binding is available, i.e. whether -PLUS mechanisms can be offered.
    pub fn any(&self) -> bool {
        self.tls_exporter.is_some() || self.tls_server_end_point.is_some()
    }

    /// The binding data for a `p=` channel-binding type name, if we have it.
    fn get(&self, cb_name: &str) -> Option<&[u8]> {
        match cb_name {
            "tls-exporter" => self.tls_exporter.as_deref(),
            "tls-server-end-point" => self.tls_server_end_point.as_deref(),
            _ => None,
        }
    }
}

/// The mechanisms to advertise, strongest first. -PLUS only over TLS with a channel binding available
/// (`plus_possible`); PLAIN only over TLS (RFC 6120 section 13.8) and only if `allow_plain`.
pub fn offered_mechanisms(is_tls: bool, plus_possible: bool, allow_plain: bool) -> Vec<Mechanism> {
    Mechanism::ALL
        .into_iter()
        .filter(|m| match m {
            Mechanism::ScramSha256Plus | Mechanism::ScramSha1Plus => is_tls && plus_possible,
            Mechanism::ScramSha256 | Mechanism::ScramSha1 => true,
            Mechanism::Plain => is_tls && allow_plain,
        })
        .collect()
}

/// The SASL failure conditions of RFC 6120 section 6.5.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
pub enum SaslFailure {
    #[error("aborted")]
    Aborted,
    #[error("account-disabled")]
    AccountDisabled,
    #[error("credentials-expired")]
    CredentialsExpired,
    #[error("encryption-required")]
    EncryptionRequired,
    #[error("incorrect-encoding")]
    IncorrectEncoding,
    #[error("invalid-authzid")]
    InvalidAuthzid,
    #[error("invalid-mechanism")]
    InvalidMechanism,
    #[error("malformed-request")]
    MalformedRequest,
    #[error("mechanism-too-weak")]
    MechanismTooWeak,
    #[error("not-authorized")]
    NotAuthorized,
    #[error("temporary-auth-failure")]
    TemporaryAuthFailure,
}

impl SaslFailure {
    /// The element name inside `<failure xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>`.
    pub fn as_str(self) -> &'static str {
        match self {
            SaslFailure::Aborted => "aborted",
            SaslFailure::AccountDisabled => "account-disabled",
            SaslFailure::CredentialsExpired => "credentials-expired",
            SaslFailure::EncryptionRequired => "encryption-required",
            SaslFailure::IncorrectEncoding => "incorrect-encoding",
            SaslFailure::InvalidAuthzid => "invalid-authzid",
            SaslFailure::InvalidMechanism => "invalid-mechanism",
            SaslFailure::MalformedRequest => "malformed-request",
            SaslFailure::MechanismTooWeak => "mechanism-too-weak",
            SaslFailure::NotAuthorized => "not-authorized",
            SaslFailure::TemporaryAuthFailure => "temporary-auth-failure",
        }
    }
}

/// Who authenticated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authenticated {
    /// The authentication identity (authcid), SASLprep'd; not yet nodeprep'd into a JID localpart.
    pub username: String,
}

/// What the caller does next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Send `<challenge/>` with this data (base64; empty data is sent as `=`).
    Challenge(Vec<u8>),
    /// Look up `username`'s credentials and call [`SaslExchange::provide_credentials`].
    NeedCredentials { username: String },
    /// Send `<success/>` with the additional data if any (RFC 6120 section 6.3.10; SCRAM's server-final).
    Success {
        authenticated: Authenticated,
        additional_data: Option<Vec<u8>>,
    },
    /// Send `<failure/>` with this condition. The exchange is over.
    Failure(SaslFailure),
}

/// One SASL exchange on one stream. Create it at `<auth/>`, feed it every `<response/>`.
pub struct SaslExchange {
    mechanism: Mechanism,
    is_tls: bool,
    bindings: ChannelBindings,
    server_nonce: String,
    domain: Option<String>,
    unknown_user_secret: Vec<u8>,
    state: State,
    /// Set when the exchange ended because a password or proof was checked and is wrong.
    rejected_credentials: bool,
}

enum State {
    /// Nothing received yet (or only an empty initial response, answered with an empty challenge).
    Start {
        sent_empty_challenge: bool,
    },
    ScramAwaitingCredentials(scram_message::ClientFirst),
    ScramAwaitingFinal(Box<ScramServer>),
    PlainAwaitingCredentials(plain::PlainRequest),
    Done,
}

impl SaslExchange {
    /// Starts an exchange for `mechanism` with a fresh random SCRAM server nonce. A -PLUS mechanism without
    /// TLS or without bindings fails with `invalid-mechanism`, PLAIN without TLS with `encryption-required`,
    /// both at the first [`step`](Self::step).
    pub fn start(mechanism: Mechanism, is_tls: bool, bindings: ChannelBindings) -> SaslExchange {
        Self::start_with_nonce(mechanism, is_tls, bindings, scram::random_nonce())
    }

    /// As [`start`](Self::start) with a given server nonce (printable ASCII without `,`); for test vectors.
    pub fn start_with_nonce(
        mechanism: Mechanism,
        is_tls: bool,
        bindings: ChannelBindings,
        server_nonce: String,
    ) -> SaslExchange {
        SaslExchange {
            mechanism,
            is_tls,
            bindings,
            server_nonce,
            domain: None,
            unknown_user_secret: Vec::new(),
            state: State::Start {
                sent_empty_challenge: false,
            },
            rejected_credentials: false,
        }
    }

    /// The domain the stream is for. With it, an authzid must be exactly `username@domain` (compared after
    /// nodeprep/nameprep); without it, only the authzid's localpart is checked against the username.
    pub fn with_domain(mut self, domain: &str) -> SaslExchange {
        self.domain = Some(domain.to_owned());
        self
    }

    /// A server-wide secret (e.g. random bytes generated at start) from which the fake salt of unknown
    /// users is derived, so that the salt cannot be predicted from the name alone. Without it the fake salt
    /// is a plain hash of the username: still stable, but an attacker who computes it can tell that the
    /// account does not exist.
    pub fn with_unknown_user_secret(mut self, secret: &[u8]) -> SaslExchange {
        self.unknown_user_secret = secret.to_vec();
        self
    }

    /// The mechanism this exchange runs.
    pub fn mechanism(&self) -> Mechanism {
        self.mechanism
    }

    /// Whether the next [`step`](Self::step) or [`provide_credentials`](Self::provide_credentials) will
    /// check a password or proof: the moment to reserve a failed-login throttle attempt.
    pub fn checks_credentials_next(&self) -> bool {
        matches!(
            self.state,
            State::ScramAwaitingFinal(_) | State::PlainAwaitingCredentials(_)
        )
    }

    /// Whether the exchange failed because a password or proof was checked and is wrong (including an
    /// unknown user). Other failures (a binding type we do not offer, the `y` flag refusal, bad syntax)
    /// say nothing about the password and must not count as a guess (RFC 6120 section 13.5).
    pub fn rejected_credentials(&self) -> bool {
        self.rejected_credentials
    }

    /// Feeds the initial response or a later response. Call again only after a [`Step::Challenge`].
    pub fn step(&mut self, client_data: &[u8]) -> Step {
        match std::mem::replace(&mut self.state, State::Done) {
            State::Start {
                sent_empty_challenge,
            } => {
                if let Some(failure) = self.mechanism_refusal() {
                    return Step::Failure(failure);
                }
                // RFC 6120 section 6.4.2: no initial response (or an empty one) gets an empty challenge;
                // neither PLAIN nor SCRAM has a valid empty first message.
                if client_data.is_empty() {
                    if sent_empty_challenge {
                        return Step::Failure(SaslFailure::MalformedRequest);
                    }
                    self.state = State::Start {
                        sent_empty_challenge: true,
                    };
                    return Step::Challenge(Vec::new());
                }
                self.first_message(client_data)
            }
            State::ScramAwaitingFinal(server) => match server.finish(client_data) {
                Ok((username, server_final)) => Step::Success {
                    authenticated: Authenticated { username },
                    additional_data: Some(server_final),
                },
                Err(Rejection::Refused(failure)) => Step::Failure(failure),
                Err(Rejection::WrongProof) => {
                    self.rejected_credentials = true;
                    Step::Failure(SaslFailure::NotAuthorized)
                }
            },
            // Data while we wait for the caller's lookup, or after the end, is a protocol error.
            State::ScramAwaitingCredentials(_)
            | State::PlainAwaitingCredentials(_)
            | State::Done => Step::Failure(SaslFailure::MalformedRequest),
        }
    }

    /// Continues after [`Step::NeedCredentials`]. `None` means there is no such user: the exchange goes on
    /// with a deterministic fake salt so the messages look the same as for a real user, and ends in
    /// `not-authorized` (no user enumeration).
    pub fn provide_credentials(&mut self, credentials: Option<&Credentials>) -> Step {
        match std::mem::replace(&mut self.state, State::Done) {
            State::ScramAwaitingCredentials(client_first) => {
                let Some(hash) = self.mechanism.scram_hash() else {
                    return Step::Failure(SaslFailure::MalformedRequest);
                };
                let keys = match credentials {
                    Some(c) => Some(match hash {
                        ScramHash::Sha1 => &c.sha1,
                        ScramHash::Sha256 => &c.sha256,
                    }),
                    None => None,
                };
                match ScramServer::new(
                    hash,
                    client_first,
                    keys,
                    &self.server_nonce,
                    &self.bindings,
                    &self.unknown_user_secret,
                ) {
                    Ok(server) => {
                        let server_first = server.server_first().as_bytes().to_vec();
                        self.state = State::ScramAwaitingFinal(Box::new(server));
                        Step::Challenge(server_first)
                    }
                    Err(failure) => Step::Failure(failure),
                }
            }
            State::PlainAwaitingCredentials(request) => {
                match request.verify(credentials.map(|c| &c.sha256), &self.unknown_user_secret) {
                    Ok(username) => Step::Success {
                        authenticated: Authenticated { username },
                        additional_data: None,
                    },
                    Err(failure) => {
                        self.rejected_credentials = failure == SaslFailure::NotAuthorized;
                        Step::Failure(failure)
                    }
                }
            }
            _ => Step::Failure(SaslFailure::MalformedRequest),
        }
    }

    /// Why the chosen mechanism cannot run on this stream at all, if it cannot.
    fn mechanism_refusal(&self) -> Option<SaslFailure> {
        if self.mechanism == Mechanism::Plain && !self.is_tls {
            return Some(SaslFailure::EncryptionRequired);
        }
        if self.mechanism.is_plus() && !(self.is_tls && self.bindings.any()) {
            return Some(SaslFailure::InvalidMechanism);
        }
        None
    }

    fn first_message(&mut self, client_data: &[u8]) -> Step {
        let parsed = if self.mechanism == Mechanism::Plain {
            plain::PlainRequest::parse(client_data).map(|request| {
                let username = request.username().to_owned();
                (State::PlainAwaitingCredentials(request), username)
            })
        } else {
            let server_offers_plus = self.is_tls && self.bindings.any();
            scram_message::ClientFirst::parse(client_data)
                .and_then(|first| {
                    first.check_binding_choice(self.mechanism.is_plus(), server_offers_plus)
                })
                .and_then(|first| match &first.cbind_flag {
                    // RFC 5802 section 6: a binding type the server does not support fails the exchange.
                    scram_message::CbindFlag::Used(cb_name)
                        if self.bindings.get(cb_name).is_none() =>
                    {
                        Err(SaslFailure::NotAuthorized)
                    }
                    _ => Ok(first),
                })
                .map(|first| {
                    let username = first.username.clone();
                    (State::ScramAwaitingCredentials(first), username)
                })
        };
        let (state, username) = match parsed {
            Ok(parsed) => parsed,
            Err(failure) => return Step::Failure(failure),
        };
        let authzid = match &state {
            State::PlainAwaitingCredentials(request) => request.authzid(),
            State::ScramAwaitingCredentials(first) => first.authzid.as_deref(),
            _ => None,
        };
        if let Some(authzid) = authzid
            && !authzid::matches(authzid, &username, self.domain.as_deref())
        {
            return Step::Failure(SaslFailure::InvalidAuthzid);
        }
        self.state = state;
        Step::NeedCredentials { username }
    }
}

//! Tests of whole SASL exchanges, and the small SCRAM client they use: the RFC 5802 and RFC 7677 test
//! vectors (`vectors`), every SCRAM mechanism and binding with its failures (`exchanges`), PLAIN, the
//! offered mechanisms and credential derivation (`mechanisms`).

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

mod exchanges;
mod mechanisms;
mod vectors;

//! A hand-rolled SCRAM-SHA-256 client (RFC 5802 section 3, RFC 7677), with or without channel binding
//! (SCRAM-SHA-256-PLUS with tls-exporter, RFC 9266), independent of the server's implementation, so one black-box test can log in the way real
//! clients do and check the server's signature.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use herald::xmpp::ns;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use crate::client::TestClient;

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).unwrap();
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

impl TestClient {
    /// SCRAM-SHA-256 then the stream restart. `Err` carries the `<failure/>` condition name. Panics if the
    /// server's final message does not prove it knows the password (`v=` of RFC 5802 section 3).
    pub async fn auth_scram_sha256(&mut self, user: &str, password: &str) -> Result<(), String> {
        self.auth_scram_sha256_bound(user, password, None).await
    }

    /// SCRAM-SHA-256, or SCRAM-SHA-256-PLUS when `binding` names a channel-binding type and its data
    /// (RFC 5802 section 6: gs2 flag `p=<type>`, and `c=` carries the gs2 header plus the binding data).
    pub async fn auth_scram_sha256_bound(
        &mut self,
        user: &str,
        password: &str,
        binding: Option<(&str, Vec<u8>)>,
    ) -> Result<(), String> {
        let nonce = BASE64.encode(rand::random::<[u8; 18]>());
        let client_first_bare = format!("n={user},r={nonce}");
        let (mechanism, gs2_header, binding_data) = match binding {
            Some((kind, data)) => ("SCRAM-SHA-256-PLUS", format!("p={kind},,"), data),
            None => ("SCRAM-SHA-256", "n,,".to_string(), Vec::new()),
        };
        self.send(&format!(
            "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='{mechanism}'>{}</auth>",
            BASE64.encode(format!("{gs2_header}{client_first_bare}"))
        ))
        .await;
        let challenge = self
            .expect("SCRAM challenge", |e| {
                e.is("challenge", ns::SASL) || e.is("failure", ns::SASL)
            })
            .await;
        if challenge.is("failure", ns::SASL) {
            return self.finish_sasl(challenge).await.map(|_| ());
        }
        let server_first =
            String::from_utf8(BASE64.decode(challenge.text().trim()).unwrap()).unwrap();
        let field = |name: &str| {
            server_first
                .split(',')
                .find_map(|kv| kv.strip_prefix(name))
                .unwrap_or_else(|| panic!("no {name} in {server_first}"))
                .to_string()
        };
        let full_nonce = field("r=");
        assert!(full_nonce.starts_with(&nonce), "server nonce extends ours");
        let salt = BASE64.decode(field("s=")).unwrap();
        let iterations: u32 = field("i=").parse().unwrap();

        let mut salted = [0u8; 32];
        pbkdf2::pbkdf2_hmac::<Sha256>(password.as_bytes(), &salt, iterations, &mut salted);
        let client_key = hmac(&salted, b"Client Key");
        let stored_key = Sha256::digest(&client_key);
        let mut channel = gs2_header.into_bytes();
        channel.extend_from_slice(&binding_data);
        let without_proof = format!("c={},r={full_nonce}", BASE64.encode(channel));
        let auth_message = format!("{client_first_bare},{server_first},{without_proof}");
        let signature = hmac(&stored_key, auth_message.as_bytes());
        let proof: Vec<u8> = client_key
            .iter()
            .zip(&signature)
            .map(|(k, s)| k ^ s)
            .collect();
        let server_key = hmac(&salted, b"Server Key");
        let server_signature = hmac(&server_key, auth_message.as_bytes());

        let response = format!("{without_proof},p={}", BASE64.encode(proof));
        self.send(&format!(
            "<response xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>{}</response>",
            BASE64.encode(response)
        ))
        .await;
        let outcome = self
            .expect("<success/> or <failure/>", |e| {
                e.is("success", ns::SASL) || e.is("failure", ns::SASL)
            })
            .await;
        let additional = self.finish_sasl(outcome).await?;
        let expected = format!("v={}", BASE64.encode(server_signature));
        assert_eq!(
            String::from_utf8_lossy(&additional),
            expected,
            "server signature proves the server knows the password"
        );
        Ok(())
    }
}

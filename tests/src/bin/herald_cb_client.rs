//! `herald_cb_client`: OUR OWN small XMPP client (written by the Herald project, not a third-party
//! library) that logs in with SCRAM-SHA-1-PLUS or SCRAM-SHA-256-PLUS (RFC 5802 section 6, RFC 7677) over
//! rustls, with the channel-binding types a TLS 1.3 client can compute: `tls-exporter` (RFC 9266) and
//! `tls-server-end-point` (RFC 5929 section 4). The conformance runner (conformance/xmppconf/cbclient.py)
//! drives it against Herald and Prosody because Python's ssl module offers only `tls-unique`, which TLS 1.3
//! does not define. It reports, as one JSON line on stdout, what the server offered (SASL mechanisms, the
//! XEP-0440 `sasl-channel-binding` types) and how the exchange ended. `--corrupt` flips one byte of the
//! binding data, which the server must refuse (RFC 5802 section 6: the `c=` attribute must match).
//!
//! The SCRAM arithmetic and the binding data are computed here, independently of the server; only the XML
//! framing reuses Herald's stream parser. The server's certificate is not verified (the conformance
//! servers use throwaway self-signed ones, as slixmpp is told too); `tls-server-end-point` hashes
//! whichever certificate the server presented, so a wrong one would still be noticed by the server.
//!
//! ```text
//! herald_cb_client --host 127.0.0.1 --port 5222 --domain localhost --transport starttls \
//!     --user alice --password pw --mechanism SCRAM-SHA-256-PLUS --binding tls-exporter [--corrupt]
//! ```

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use herald::xmpp::stream::{Frame, StreamHeader, XmlStream};
use herald::xmpp::{Element, Limits, ns};
use hmac::{Hmac, Mac};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::{DigitallySignedStruct, SignatureScheme};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use serde_json::json;
use sha1::Sha1;
use sha2::{Digest, Sha256, Sha384, Sha512};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

/// Every network step must finish within this.
const STEP_TIMEOUT: Duration = Duration::from_secs(15);
/// XEP-0440 section 2: the stream feature listing the server's channel-binding types.
const NS_SASL_CB: &str = "urn:xmpp:sasl-cb:0";

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}
type Stream = XmlStream<Box<dyn Io>>;

struct Args {
    host: String,
    port: u16,
    domain: String,
    direct_tls: bool,
    user: String,
    password: String,
    mechanism: String,
    binding: String,
    corrupt: bool,
}

fn parse_args() -> Result<Args> {
    let mut map = std::collections::HashMap::new();
    let mut corrupt = false;
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        if flag == "--corrupt" {
            corrupt = true;
            continue;
        }
        let name = flag
            .strip_prefix("--")
            .ok_or_else(|| anyhow!("unexpected {flag}"))?;
        let value = it.next().ok_or_else(|| anyhow!("{flag} needs a value"))?;
        map.insert(name.to_string(), value);
    }
    let mut take = |k: &str| map.remove(k).ok_or_else(|| anyhow!("--{k} is required"));
    let transport = take("transport")?;
    Ok(Args {
        host: take("host")?,
        port: take("port")?.parse()?,
        domain: take("domain")?,
        direct_tls: match transport.as_str() {
            "starttls" => false,
            "directtls" => true,
            other => bail!("--transport starttls|directtls, not {other}"),
        },
        user: take("user")?,
        password: take("password")?,
        mechanism: take("mechanism")?,
        binding: take("binding")?,
        corrupt,
    })
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let mut report = json!({"client": "herald-cb (ours)"});
    let code = match parse_args() {
        Ok(args) => match run(&args, &mut report).await {
            Ok(()) => 0,
            Err(err) => {
                report["error"] = json!(format!("{err:#}"));
                2
            }
        },
        Err(err) => {
            report["error"] = json!(format!("{err:#}"));
            2
        }
    };
    println!("{report}");
    std::process::exit(code);
}

async fn run(args: &Args, report: &mut serde_json::Value) -> Result<()> {
    let tcp = step(
        "TCP connect",
        TcpStream::connect((args.host.as_str(), args.port)),
    )
    .await??;
    let (mut stream, mut tls) = if args.direct_tls {
        // XEP-0368: TLS first, ALPN `xmpp-client`.
        let tls = handshake(&args.domain, Box::new(tcp), true).await?;
        (XmlStream::new(tls.io, limits()), tls.binding)
    } else {
        let mut stream: Stream = XmlStream::new(Box::new(tcp), limits());
        let features = open(&mut stream, &args.domain).await?;
        if features.get_child("starttls", ns::TLS).is_none() {
            bail!("no <starttls/> offered");
        }
        // RFC 6120 section 5.4.2.
        send(
            &mut stream,
            "<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>",
        )
        .await?;
        let proceed = next(&mut stream).await?;
        if !proceed.is("proceed", ns::TLS) {
            bail!("STARTTLS answered with <{}/>", proceed.name());
        }
        let plain = stream.into_inner().map_err(|e| anyhow!("{e:?}"))?;
        let tls = handshake(&args.domain, plain, false).await?;
        (XmlStream::new(tls.io, limits()), tls.binding)
    };
    report["tls"] = json!(tls.version);
    let features = open(&mut stream, &args.domain).await?;
    let mechanisms: Vec<String> = features
        .get_child("mechanisms", ns::SASL)
        .map(|m| m.children().map(Element::text).collect())
        .unwrap_or_default();
    // XEP-0440 section 2: <sasl-channel-binding><channel-binding type='...'/></sasl-channel-binding>.
    let bindings: Vec<String> = features
        .get_child("sasl-channel-binding", NS_SASL_CB)
        .map(|cb| {
            cb.children()
                .filter_map(|c| c.attr("type").map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    report["mechanisms"] = json!(mechanisms);
    report["channel_bindings"] = json!(bindings);
    report["mechanism"] = json!(args.mechanism);
    report["binding"] = json!(args.binding);
    report["corrupted"] = json!(args.corrupt);
    if !mechanisms.contains(&args.mechanism) {
        report["outcome"] = json!("not-offered");
        return Ok(());
    }
    let mut data = match args.binding.as_str() {
        "tls-exporter" => tls
            .exporter
            .take()
            .ok_or_else(|| anyhow!("no tls-exporter on {}", tls.version))?,
        "tls-server-end-point" => tls
            .end_point
            .take()
            .ok_or_else(|| anyhow!("no server certificate hash"))?,
        other => bail!("unknown binding type {other}"),
    };
    if args.corrupt {
        data[0] ^= 0x01;
    }
    let scram = Scram::new(&args.mechanism)?;
    match scram.login(&mut stream, args, &data).await? {
        Outcome::Failure(condition) => {
            report["outcome"] = json!("failure");
            report["condition"] = json!(condition);
        }
        Outcome::Success { verified } => {
            report["outcome"] = json!("success");
            report["server_signature"] = json!(if verified { "verified" } else { "MISMATCH" });
            // RFC 6120 section 6.4.6 and 7: restart, then bind a resource to show the session is usable.
            stream.reset();
            open(&mut stream, &args.domain).await?;
            send(
                &mut stream,
                "<iq type='set' id='b1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></iq>",
            )
            .await?;
            let bound = next(&mut stream).await?;
            let jid = bound
                .get_child("bind", ns::BIND)
                .and_then(|b| b.get_child("jid", ns::BIND))
                .map(Element::text);
            report["jid"] = json!(jid);
        }
    }
    let _ = stream.send_raw("</stream:stream>").await;
    Ok(())
}

enum Outcome {
    Success { verified: bool },
    Failure(String),
}

/// RFC 5802 SCRAM with SHA-1 or SHA-256 (RFC 7677), the -PLUS variant only.
struct Scram {
    name: String,
    sha256: bool,
}

impl Scram {
    fn new(mechanism: &str) -> Result<Scram> {
        let sha256 = match mechanism {
            "SCRAM-SHA-1-PLUS" => false,
            "SCRAM-SHA-256-PLUS" => true,
            other => {
                bail!("this client does only SCRAM-SHA-1-PLUS and SCRAM-SHA-256-PLUS, not {other}")
            }
        };
        Ok(Scram {
            name: mechanism.to_string(),
            sha256,
        })
    }

    fn hmac(&self, key: &[u8], data: &[u8]) -> Vec<u8> {
        if self.sha256 {
            let mut mac =
                <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes any key length");
            mac.update(data);
            mac.finalize().into_bytes().to_vec()
        } else {
            let mut mac =
                <Hmac<Sha1> as Mac>::new_from_slice(key).expect("HMAC takes any key length");
            mac.update(data);
            mac.finalize().into_bytes().to_vec()
        }
    }

    fn hash(&self, data: &[u8]) -> Vec<u8> {
        if self.sha256 {
            Sha256::digest(data).to_vec()
        } else {
            Sha1::digest(data).to_vec()
        }
    }

    fn salted(&self, password: &str, salt: &[u8], iterations: u32) -> Vec<u8> {
        if self.sha256 {
            let mut out = [0u8; 32];
            pbkdf2::pbkdf2_hmac::<Sha256>(password.as_bytes(), salt, iterations, &mut out);
            out.to_vec()
        } else {
            let mut out = [0u8; 20];
            pbkdf2::pbkdf2_hmac::<Sha1>(password.as_bytes(), salt, iterations, &mut out);
            out.to_vec()
        }
    }

    async fn login(&self, stream: &mut Stream, args: &Args, binding: &[u8]) -> Result<Outcome> {
        let nonce = BASE64.encode(rand::random::<[u8; 18]>());
        // RFC 5802 section 5.1: `=` and `,` in the username are escaped; our test accounts have neither.
        let first_bare = format!("n={},r={nonce}", args.user);
        let gs2 = format!("p={},,", args.binding);
        send(
            stream,
            &format!(
                "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='{}'>{}</auth>",
                self.name,
                BASE64.encode(format!("{gs2}{first_bare}"))
            ),
        )
        .await?;
        let challenge = next(stream).await?;
        if challenge.is("failure", ns::SASL) {
            return Ok(Outcome::Failure(condition(&challenge)));
        }
        let server_first = String::from_utf8(BASE64.decode(challenge.text().trim())?)?;
        let field = |name: &str| {
            server_first
                .split(',')
                .find_map(|kv| kv.strip_prefix(name))
                .map(str::to_string)
                .ok_or_else(|| anyhow!("no {name} in server-first {server_first}"))
        };
        let full_nonce = field("r=")?;
        if !full_nonce.starts_with(&nonce) {
            bail!("server nonce does not extend ours");
        }
        let salt = BASE64.decode(field("s=")?)?;
        let iterations: u32 = field("i=")?.parse()?;
        let salted = self.salted(&args.password, &salt, iterations);
        let client_key = self.hmac(&salted, b"Client Key");
        let stored_key = self.hash(&client_key);
        // RFC 5802 section 7: c= is base64(gs2-header || channel-binding data).
        let mut cbind = gs2.into_bytes();
        cbind.extend_from_slice(binding);
        let without_proof = format!("c={},r={full_nonce}", BASE64.encode(cbind));
        let auth_message = format!("{first_bare},{server_first},{without_proof}");
        let signature = self.hmac(&stored_key, auth_message.as_bytes());
        let proof: Vec<u8> = client_key
            .iter()
            .zip(&signature)
            .map(|(k, s)| k ^ s)
            .collect();
        let server_signature =
            self.hmac(&self.hmac(&salted, b"Server Key"), auth_message.as_bytes());
        send(
            stream,
            &format!(
                "<response xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>{}</response>",
                BASE64.encode(format!("{without_proof},p={}", BASE64.encode(proof)))
            ),
        )
        .await?;
        let outcome = next(stream).await?;
        if outcome.is("failure", ns::SASL) {
            return Ok(Outcome::Failure(condition(&outcome)));
        }
        if !outcome.is("success", ns::SASL) {
            bail!(
                "expected <success/> or <failure/>, got <{}/>",
                outcome.name()
            );
        }
        let additional = String::from_utf8(BASE64.decode(outcome.text().trim())?)?;
        let verified = additional == format!("v={}", BASE64.encode(server_signature));
        Ok(Outcome::Success { verified })
    }
}

fn condition(failure: &Element) -> String {
    failure
        .children()
        .find(|c| c.name() != "text")
        .map(|c| c.name().to_string())
        .unwrap_or_default()
}

struct Binding {
    version: String,
    exporter: Option<Vec<u8>>,
    end_point: Option<Vec<u8>>,
}

struct Tls {
    io: Box<dyn Io>,
    binding: Binding,
}

async fn handshake(domain: &str, io: Box<dyn Io>, alpn: bool) -> Result<Tls> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
        .with_no_client_auth();
    if alpn {
        config.alpn_protocols = vec![b"xmpp-client".to_vec()];
    }
    let name = ServerName::try_from(domain.to_string())?;
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tls = step("TLS handshake", connector.connect(name, io)).await??;
    let conn = tls.get_ref().1;
    let tls13 = conn.protocol_version() == Some(rustls::ProtocolVersion::TLSv1_3);
    // RFC 9266 section 2: 32 bytes, label EXPORTER-Channel-Binding, no context; TLS 1.3 only here.
    let exporter = tls13
        .then(|| {
            conn.export_keying_material([0u8; 32], b"EXPORTER-Channel-Binding", None)
                .ok()
        })
        .flatten()
        .map(|b| b.to_vec());
    let end_point = conn
        .peer_certificates()
        .and_then(|chain| chain.first())
        .map(|cert| server_end_point(cert.as_ref()))
        .transpose()?;
    let version = format!("{:?}", conn.protocol_version().context("no TLS version")?);
    Ok(Tls {
        io: Box::new(tls),
        binding: Binding {
            version,
            exporter,
            end_point,
        },
    })
}

/// RFC 5929 section 4.1: hash the server's certificate with its signature algorithm's hash function,
/// SHA-256 if that is MD5 or SHA-1.
fn server_end_point(der: &[u8]) -> Result<Vec<u8>> {
    let (_, cert) =
        x509_parser::parse_x509_certificate(der).map_err(|e| anyhow!("certificate: {e}"))?;
    let oid = cert.signature_algorithm.algorithm.to_id_string();
    Ok(match oid.as_str() {
        // sha384WithRSAEncryption, ecdsa-with-SHA384
        "1.2.840.113549.1.1.12" | "1.2.840.10045.4.3.3" => Sha384::digest(der).to_vec(),
        // sha512WithRSAEncryption, ecdsa-with-SHA512
        "1.2.840.113549.1.1.13" | "1.2.840.10045.4.3.4" => Sha512::digest(der).to_vec(),
        // md5/sha1/sha256 with RSA, ecdsa-with-SHA1/SHA256
        "1.2.840.113549.1.1.4"
        | "1.2.840.113549.1.1.5"
        | "1.2.840.113549.1.1.11"
        | "1.2.840.10045.4.1"
        | "1.2.840.10045.4.3.2" => Sha256::digest(der).to_vec(),
        other => bail!("tls-server-end-point undefined for signature algorithm {other}"),
    })
}

/// Accepts any server certificate (throwaway self-signed ones in the conformance runs) but still checks
/// the handshake signatures, so the TLS session itself is real.
#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

async fn open(stream: &mut Stream, domain: &str) -> Result<Element> {
    let header = StreamHeader {
        to: Some(domain.to_string()),
        version: Some("1.0".into()),
        default_ns: ns::CLIENT.into(),
        ..StreamHeader::default()
    };
    step("send stream header", stream.send_header(&header)).await??;
    step("server stream header", stream.read_header())
        .await?
        .map_err(|e| anyhow!("{e:?}"))?;
    let features = next(stream).await?;
    if !features.is("features", ns::STREAMS) {
        bail!("expected <stream:features/>, got <{}/>", features.name());
    }
    Ok(features)
}

async fn send(stream: &mut Stream, xml: &str) -> Result<()> {
    step("send", stream.send_raw(xml)).await??;
    Ok(())
}

async fn next(stream: &mut Stream) -> Result<Element> {
    match step("read", stream.next())
        .await?
        .map_err(|e| anyhow!("{e:?}"))?
    {
        Frame::Element(e) => Ok(e),
        Frame::End => bail!("server closed the stream"),
    }
}

async fn step<T>(what: &str, fut: impl std::future::Future<Output = T>) -> Result<T> {
    tokio::time::timeout(STEP_TIMEOUT, fut)
        .await
        .map_err(|_| anyhow!("timed out: {what}"))
}

fn limits() -> Limits {
    Limits {
        max_stanza_bytes: 1024 * 1024,
        max_depth: 64,
        max_elements: 10_000,
        max_attributes: 256,
        max_parsed_bytes: 16 * 1024 * 1024,
    }
}

//! One client stream to an XMPP server: stream open and restart (RFC 6120 section 4), STARTTLS
//! (section 5), SASL (section 6), resource binding (section 7), IQ round trips (section 8.2.3),
//! XEP-0077 in-band registration, XEP-0198 enable, and sending raw XML.

use std::collections::VecDeque;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, BufReader, ReadHalf, WriteHalf};

use super::element::{Element, ElementReader, Incoming, escape};
use super::error::ClientError;
use super::scram::{ScramCache, ScramClient, ScramHash, plain_response};

const NS_SASL: &str = "urn:ietf:params:xml:ns:xmpp-sasl";
const NS_BIND: &str = "urn:ietf:params:xml:ns:xmpp-bind";
const NS_SESSION: &str = "urn:ietf:params:xml:ns:xmpp-session";
const NS_SM: &str = "urn:xmpp:sm:3";
const READ_BUFFER_BYTES: usize = 4096;

/// Which SASL mechanism to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mechanism {
    /// The strongest offered: SCRAM-SHA-256, then SCRAM-SHA-1, then PLAIN.
    Best,
    /// SCRAM-SHA-256 only (RFC 7677).
    ScramSha256,
    /// SCRAM-SHA-1 only (RFC 5802).
    ScramSha1,
    /// PLAIN only (RFC 4616); only ever sent inside TLS by this client.
    Plain,
}

/// A client stream over any byte stream `S` (TCP before STARTTLS, TLS after).
///
/// Elements that arrive while waiting for a specific reply (e.g. a message during an IQ round trip)
/// are kept and returned first by [`Session::recv`], so nothing is lost.
pub struct Session<S> {
    reader: ElementReader<BufReader<ReadHalf<S>>>,
    writer: WriteHalf<S>,
    domain: String,
    features: Element,
    backlog: VecDeque<Element>,
    timeout: Duration,
    jid: Option<String>,
    next_id: u64,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Session<S> {
    /// Opens a stream to `domain` over `socket` and reads the stream features.
    ///
    /// Errors: transport errors, [`ClientError::Timeout`] if the server is silent for `timeout`.
    pub async fn open(
        socket: S,
        domain: &str,
        timeout: Duration,
        max_element_bytes: usize,
    ) -> Result<Self, ClientError> {
        let (read, writer) = tokio::io::split(socket);
        let reader = ElementReader::new(
            BufReader::with_capacity(READ_BUFFER_BYTES, read),
            max_element_bytes,
        );
        let mut session = Session {
            reader,
            writer,
            domain: domain.to_owned(),
            features: Element::default(),
            backlog: VecDeque::new(),
            timeout,
            jid: None,
            next_id: 0,
        };
        session.restart().await?;
        Ok(session)
    }

    /// Sends a new stream header and waits for the server's header and features
    /// (RFC 6120 section 4.3; after STARTTLS and SASL, sections 5.4.3.3 and 6.4.6).
    async fn restart(&mut self) -> Result<(), ClientError> {
        self.reader.reset();
        let header = format!(
            "<?xml version='1.0'?><stream:stream xmlns='jabber:client' \
             xmlns:stream='http://etherx.jabber.org/streams' to='{}' version='1.0'>",
            escape(&self.domain)
        );
        self.send(&header).await?;
        loop {
            match self.next_incoming().await? {
                Incoming::StreamHeader(_) => continue,
                Incoming::Element(e) if e.name == "stream:features" => {
                    self.features = e;
                    return Ok(());
                }
                Incoming::Element(e) => return Err(stream_error_or(e, "expected stream features")),
            }
        }
    }

    async fn next_incoming(&mut self) -> Result<Incoming, ClientError> {
        tokio::time::timeout(self.timeout, self.reader.next())
            .await
            .map_err(|_| ClientError::Timeout("waiting for the server"))?
    }

    /// The features of the current stream (RFC 6120 section 4.3.2).
    pub fn features(&self) -> &Element {
        &self.features
    }

    /// The full JID once bound.
    pub fn jid(&self) -> Option<&str> {
        self.jid.as_deref()
    }

    /// The domain this stream was opened to.
    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// Writes raw XML and flushes it. The caller is responsible for well-formedness.
    pub async fn send(&mut self, xml: &str) -> Result<(), ClientError> {
        self.writer.write_all(xml.as_bytes()).await?;
        self.writer.flush().await?;
        Ok(())
    }

    /// The next top-level element, waiting at most the session timeout.
    ///
    /// Errors: [`ClientError::StreamError`] for `<stream:error/>`, [`ClientError::StreamClosed`],
    /// [`ClientError::Timeout`], transport and XML errors.
    pub async fn recv(&mut self) -> Result<Element, ClientError> {
        if let Some(e) = self.backlog.pop_front() {
            return Ok(e);
        }
        self.recv_fresh().await
    }

    async fn recv_fresh(&mut self) -> Result<Element, ClientError> {
        match self.next_incoming().await? {
            Incoming::Element(e) if e.name == "stream:error" => Err(stream_error_or(e, "")),
            Incoming::Element(e) => Ok(e),
            Incoming::StreamHeader(_) => {
                Err(ClientError::Protocol("unexpected stream header".into()))
            }
        }
    }

    /// Waits for the first element matching `wanted`, keeping the others for [`Session::recv`].
    pub async fn recv_matching(
        &mut self,
        wanted: impl Fn(&Element) -> bool,
    ) -> Result<Element, ClientError> {
        if let Some(e) = self
            .backlog
            .iter()
            .position(&wanted)
            .and_then(|pos| self.backlog.remove(pos))
        {
            return Ok(e);
        }
        loop {
            let e = self.recv_fresh().await?;
            if wanted(&e) {
                return Ok(e);
            }
            self.backlog.push_back(e);
        }
    }

    /// A fresh stanza id, unique within this session.
    pub fn fresh_id(&mut self) -> String {
        self.next_id += 1;
        format!("hl{}", self.next_id)
    }

    /// Sends an `<iq type='get|set'>` with `payload` and waits for its result (RFC 6120 section 8.2.3).
    ///
    /// Errors: [`ClientError::IqError`] with the condition if the reply is `type='error'`.
    pub async fn iq(
        &mut self,
        kind: &str,
        to: Option<&str>,
        payload: &str,
    ) -> Result<Element, ClientError> {
        let id = self.fresh_id();
        let to = to
            .map(|t| format!(" to='{}'", escape(t)))
            .unwrap_or_default();
        self.send(&format!("<iq type='{kind}' id='{id}'{to}>{payload}</iq>"))
            .await?;
        let reply = self
            .recv_matching(|e| e.name == "iq" && e.attr("id") == Some(id.as_str()))
            .await?;
        match reply.attr("type") {
            Some("result") => Ok(reply),
            _ => Err(ClientError::IqError(error_condition(&reply))),
        }
    }

    /// XEP-0077 in-band registration on a not yet authenticated stream.
    ///
    /// Errors: [`ClientError::NotOffered`] if the server does not advertise registration,
    /// [`ClientError::IqError`] (`conflict` if the account exists, `not-allowed`, ...).
    pub async fn register(&mut self, username: &str, password: &str) -> Result<(), ClientError> {
        // XEP-0077 section 3.1: servers advertise the feature; some (ejabberd) do not when
        // registration is disabled, so the advertised feature is only a hint, the reply decides.
        let payload = format!(
            "<query xmlns='jabber:iq:register'><username>{}</username><password>{}</password></query>",
            escape(username),
            escape(password)
        );
        self.iq("set", None, &payload).await.map(|_| ())
    }

    /// SASL authentication (RFC 6120 section 6.4) followed by the stream restart.
    ///
    /// Errors: [`ClientError::NotOffered`] if no acceptable mechanism is offered,
    /// [`ClientError::AuthFailed`] with the SASL condition.
    pub async fn authenticate(
        &mut self,
        username: &str,
        password: &str,
        mechanism: Mechanism,
        cache: Option<&ScramCache>,
    ) -> Result<(), ClientError> {
        let offered: Vec<String> = self
            .features
            .child_ns("mechanisms", NS_SASL)
            .map(|m| {
                m.children
                    .iter()
                    .map(|c| c.text.trim().to_owned())
                    .collect()
            })
            .unwrap_or_default();
        let has = |name: &str| offered.iter().any(|o| o == name);
        let chosen = match mechanism {
            Mechanism::Best if has("SCRAM-SHA-256") => Some(Mechanism::ScramSha256),
            Mechanism::Best if has("SCRAM-SHA-1") => Some(Mechanism::ScramSha1),
            Mechanism::Best if has("PLAIN") => Some(Mechanism::Plain),
            Mechanism::ScramSha256 if has("SCRAM-SHA-256") => Some(mechanism),
            Mechanism::ScramSha1 if has("SCRAM-SHA-1") => Some(mechanism),
            Mechanism::Plain if has("PLAIN") => Some(mechanism),
            _ => None,
        };
        match chosen {
            Some(Mechanism::ScramSha256) => {
                self.scram(ScramHash::Sha256, username, password, cache)
                    .await?
            }
            Some(Mechanism::ScramSha1) => {
                self.scram(ScramHash::Sha1, username, password, cache)
                    .await?
            }
            Some(Mechanism::Plain) => {
                let initial = B64.encode(plain_response(username, password));
                self.send(&format!(
                    "<auth xmlns='{NS_SASL}' mechanism='PLAIN'>{initial}</auth>"
                ))
                .await?;
                let reply = self.sasl_reply().await?;
                if reply.name != "success" {
                    return Err(ClientError::Protocol(format!(
                        "unexpected SASL reply {}",
                        reply.name
                    )));
                }
            }
            _ => {
                return Err(ClientError::NotOffered(format!(
                    "SASL mechanism ({})",
                    offered.join(" ")
                )));
            }
        }
        self.restart().await
    }

    async fn scram(
        &mut self,
        hash: ScramHash,
        username: &str,
        password: &str,
        cache: Option<&ScramCache>,
    ) -> Result<(), ClientError> {
        let mut scram = ScramClient::new(hash, username, password);
        self.send(&format!(
            "<auth xmlns='{NS_SASL}' mechanism='{}'>{}</auth>",
            hash.mechanism(),
            B64.encode(scram.client_first())
        ))
        .await?;
        let challenge = self.sasl_reply().await?;
        if challenge.name != "challenge" {
            return Err(ClientError::Protocol(format!(
                "expected SASL challenge, got {}",
                challenge.name
            )));
        }
        let server_first = decode_sasl(&challenge.text)?;
        let client_final = scram.client_final(&server_first, cache)?;
        self.send(&format!(
            "<response xmlns='{NS_SASL}'>{}</response>",
            B64.encode(client_final)
        ))
        .await?;
        let mut outcome = self.sasl_reply().await?;
        // RFC 6120 section 6.4.6: additional data may come in <success/> or in one more challenge.
        if outcome.name == "challenge" {
            let server_final = decode_sasl(&outcome.text)?;
            scram.verify_server_final(&server_final)?;
            self.send(&format!("<response xmlns='{NS_SASL}'/>")).await?;
            outcome = self.sasl_reply().await?;
            if outcome.name != "success" {
                return Err(ClientError::Protocol(format!(
                    "expected SASL success, got {}",
                    outcome.name
                )));
            }
            return Ok(());
        }
        if outcome.name != "success" {
            return Err(ClientError::Protocol(format!(
                "expected SASL success, got {}",
                outcome.name
            )));
        }
        scram.verify_server_final(&decode_sasl(&outcome.text)?)
    }

    /// The next SASL element; `<failure/>` becomes [`ClientError::AuthFailed`].
    async fn sasl_reply(&mut self) -> Result<Element, ClientError> {
        let e = self.recv_matching(|e| e.xmlns() == Some(NS_SASL)).await?;
        if e.name == "failure" {
            let condition = e
                .children
                .iter()
                .find(|c| c.name != "text")
                .map(|c| c.name.clone())
                .unwrap_or_else(|| "failure".into());
            return Err(ClientError::AuthFailed(condition));
        }
        Ok(e)
    }

    /// Binds a resource (RFC 6120 section 7) and, if the server still requires it, establishes the
    /// legacy session (RFC 3921 section 3; optional per RFC 6121 appendix E). Returns the full JID.
    ///
    /// Errors: [`ClientError::NotOffered`] without a bind feature, [`ClientError::IqError`].
    pub async fn bind(&mut self, resource: &str) -> Result<String, ClientError> {
        if self.features.child_ns("bind", NS_BIND).is_none() {
            return Err(ClientError::NotOffered("resource binding".into()));
        }
        let payload = format!(
            "<bind xmlns='{NS_BIND}'><resource>{}</resource></bind>",
            escape(resource)
        );
        let reply = self.iq("set", None, &payload).await?;
        let jid = reply
            .child("bind")
            .and_then(|b| b.child_text("jid"))
            .map(|j| j.trim().to_owned())
            .ok_or_else(|| ClientError::Protocol("bind result without jid".into()))?;
        let session_required = self
            .features
            .child_ns("session", NS_SESSION)
            .is_some_and(|s| s.child("optional").is_none());
        if session_required {
            self.iq("set", None, &format!("<session xmlns='{NS_SESSION}'/>"))
                .await?;
        }
        self.jid = Some(jid.clone());
        Ok(jid)
    }

    /// Enables XEP-0198 stream management; returns the resumption id if the server granted one.
    ///
    /// Errors: [`ClientError::NotOffered`] if `urn:xmpp:sm:3` is not advertised, or a `failed` reply.
    pub async fn enable_stream_management(
        &mut self,
        resume: bool,
    ) -> Result<Option<String>, ClientError> {
        if self.features.child_ns("sm", NS_SM).is_none() {
            return Err(ClientError::NotOffered("stream management".into()));
        }
        self.send(&format!("<enable xmlns='{NS_SM}' resume='{resume}'/>"))
            .await?;
        let reply = self.recv_matching(|e| e.xmlns() == Some(NS_SM)).await?;
        match reply.name.as_str() {
            "enabled" => Ok(reply.attr("id").map(str::to_owned)),
            _ => Err(ClientError::Protocol(format!(
                "stream management {}",
                error_condition(&reply)
            ))),
        }
    }

    /// Closes the stream politely (RFC 6120 section 4.4) without waiting for the server's close.
    pub async fn close(mut self) -> Result<(), ClientError> {
        self.send("</stream:stream>").await?;
        self.writer.shutdown().await?;
        Ok(())
    }

    /// Splits into an independently usable reader and writer, e.g. to read in one task while
    /// another sends. Elements already waiting in the backlog go to the reader.
    pub fn into_split(self) -> (SessionReader<S>, SessionWriter<S>) {
        (
            SessionReader {
                reader: self.reader,
                backlog: self.backlog,
            },
            SessionWriter {
                writer: self.writer,
            },
        )
    }

    /// Takes the byte stream back (for STARTTLS). Fails if the server already sent more bytes,
    /// which RFC 6120 section 5.4.3.3 forbids after `<proceed/>`.
    pub(crate) fn into_socket(self) -> Result<S, ClientError> {
        let buffered = self.reader.into_inner();
        if !buffered.buffer().is_empty() {
            return Err(ClientError::Protocol("data after <proceed/>".into()));
        }
        Ok(buffered.into_inner().unsplit(self.writer))
    }
}

/// The reading half of a split [`Session`]; no timeout (idle sessions wait indefinitely).
pub struct SessionReader<S> {
    reader: ElementReader<BufReader<ReadHalf<S>>>,
    backlog: VecDeque<Element>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> SessionReader<S> {
    /// The next top-level element. Errors as [`Session::recv`] (without the timeout).
    pub async fn recv(&mut self) -> Result<Element, ClientError> {
        if let Some(e) = self.backlog.pop_front() {
            return Ok(e);
        }
        match self.reader.next().await? {
            Incoming::Element(e) if e.name == "stream:error" => Err(stream_error_or(e, "")),
            Incoming::Element(e) => Ok(e),
            Incoming::StreamHeader(_) => {
                Err(ClientError::Protocol("unexpected stream header".into()))
            }
        }
    }
}

/// The writing half of a split [`Session`].
pub struct SessionWriter<S> {
    writer: WriteHalf<S>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> SessionWriter<S> {
    /// Writes raw XML and flushes it.
    pub async fn send(&mut self, xml: &str) -> Result<(), ClientError> {
        self.writer.write_all(xml.as_bytes()).await?;
        self.writer.flush().await?;
        Ok(())
    }

    /// Sends `</stream:stream>` and shuts the write side down.
    pub async fn close(mut self) -> Result<(), ClientError> {
        self.send("</stream:stream>").await?;
        self.writer.shutdown().await?;
        Ok(())
    }
}

fn decode_sasl(text: &str) -> Result<String, ClientError> {
    let text = text.trim();
    // RFC 6120 section 6.4.2: "=" stands for an empty response.
    if text.is_empty() || text == "=" {
        return Ok(String::new());
    }
    let bytes = B64
        .decode(text)
        .map_err(|_| ClientError::AuthFailed("bad base64 from server".into()))?;
    String::from_utf8(bytes).map_err(|_| ClientError::AuthFailed("non-UTF-8 SASL data".into()))
}

/// The defined condition of an error stanza (RFC 6120 section 8.3.2), or `unknown`.
pub fn error_condition(e: &Element) -> String {
    e.child("error")
        .and_then(|err| err.children.iter().find(|c| c.name != "text"))
        .map(|c| c.name.clone())
        .or_else(|| e.children.first().map(|c| c.name.clone()))
        .unwrap_or_else(|| "unknown".into())
}

fn stream_error_or(e: Element, context: &str) -> ClientError {
    if e.name == "stream:error" {
        let condition = e
            .children
            .iter()
            .find(|c| c.name != "text")
            .map(|c| c.name.clone())
            .unwrap_or_else(|| "undefined-condition".into());
        ClientError::StreamError(condition)
    } else {
        ClientError::Protocol(format!("{context}: got <{}>", e.name))
    }
}

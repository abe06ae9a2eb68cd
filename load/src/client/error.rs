//! Errors of the test client: transport, XML, and protocol failures (RFC 6120 sections 4.9, 6.5, 8.3).

/// Everything that can go wrong while talking to a server.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Socket or TLS transport failure.
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    /// The operation did not finish within its deadline.
    #[error("timed out: {0}")]
    Timeout(&'static str),
    /// Malformed or oversized XML from the server.
    #[error("xml: {0}")]
    Xml(String),
    /// The server closed the stream (`</stream:stream>` or end of input).
    #[error("stream closed by server")]
    StreamClosed,
    /// The server sent a stream error (RFC 6120 section 4.9); the condition name.
    #[error("stream error: {0}")]
    StreamError(String),
    /// SASL failure (RFC 6120 section 6.5); the condition name.
    #[error("authentication failed: {0}")]
    AuthFailed(String),
    /// An IQ got a type='error' reply; the condition name (RFC 6120 section 8.3).
    #[error("iq error: {0}")]
    IqError(String),
    /// The server does not offer something the client needs (STARTTLS, a mechanism, bind).
    #[error("not offered by server: {0}")]
    NotOffered(String),
    /// Any other protocol violation by the server.
    #[error("protocol: {0}")]
    Protocol(String),
    /// Bad TLS configuration or server name.
    #[error("tls: {0}")]
    Tls(String),
}

impl ClientError {
    /// A short stable label for counting errors by kind in reports.
    pub fn kind(&self) -> &'static str {
        match self {
            ClientError::Io(_) => "io",
            ClientError::Timeout(_) => "timeout",
            ClientError::Xml(_) => "xml",
            ClientError::StreamClosed => "stream-closed",
            ClientError::StreamError(_) => "stream-error",
            ClientError::AuthFailed(_) => "auth-failed",
            ClientError::IqError(_) => "iq-error",
            ClientError::NotOffered(_) => "not-offered",
            ClientError::Protocol(_) => "protocol",
            ClientError::Tls(_) => "tls",
        }
    }
}

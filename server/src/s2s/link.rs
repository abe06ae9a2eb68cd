//! The interface between the outbound queue and the streams (RFC 6120 section 10.4: a server delivers a
//! stanza for a remote domain over a stream it opened and authenticated to that domain). The queue asks a
//! [`Dialer`] for a [`Link`] and writes serialised `jabber:server` stanzas to it; everything about
//! addresses, TLS and authentication stays behind `dial`.

use async_trait::async_trait;

/// Opens authenticated outbound streams.
#[async_trait]
pub trait Dialer: Send + Sync {
    /// An authenticated outbound stream from our `local_domain` to `remote_domain`: address (static or
    /// resolved), TCP, TLS, then SASL EXTERNAL (XEP-0178) or dialback (XEP-0220).
    ///
    /// Errors: see [`DialError`]; each names what the queue does next.
    async fn dial(
        &self,
        local_domain: &str,
        remote_domain: &str,
    ) -> Result<Box<dyn Link>, DialError>;
}

/// One authenticated outbound stream.
#[async_trait]
pub trait Link: Send {
    /// Writes one serialised stanza (in the `jabber:server` namespace, without `xmlns`) and flushes it.
    ///
    /// Errors: [`LinkError`] when the stream is gone; the stanza may not have arrived.
    async fn send(&mut self, stanza: &str) -> Result<(), LinkError>;
    /// Closes the stream with `</stream:stream>` (RFC 6120 section 4.4).
    async fn close(self: Box<Self>);
}

/// Why no link could be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DialError {
    /// The domain has no address (no SRV, no A/AAAA record): bounce with `remote-server-not-found`
    /// (RFC 6120 section 8.3.3.15).
    #[error("no address for the domain")]
    NotFound,
    /// The address did not answer or the connection failed: retry.
    #[error("unreachable: {0}")]
    Unreachable(String),
    /// The peer refused us or we refused it (TLS, certificate, authentication, policy): retry with
    /// backoff, bounce at the queue timeout.
    #[error("rejected: {0}")]
    Rejected(String),
}

/// Why a write on a link failed.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error("the stream is gone: {0}")]
    Io(#[from] std::io::Error),
}

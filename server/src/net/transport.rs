//! A connection before or after TLS: the same socket, plain or wrapped by tokio-rustls, behind one type so
//! the XML stream code stays unaware of STARTTLS (RFC 6120 section 5). TLS is either accepted (a client or
//! peer connected to us) or initiated (we connected out, as outbound federation does, RFC 6120 section
//! 5.4.3 with us as the initiating entity, or XEP-0368 direct TLS).

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use rustls_pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_rustls::TlsConnector;

/// A plain or TLS-wrapped byte stream.
pub enum Transport<S> {
    Plain(S),
    /// TLS we accepted, with our certificate.
    ServerTls(Box<tokio_rustls::server::TlsStream<S>>),
    /// TLS we initiated, having verified the peer's certificate.
    ClientTls(Box<tokio_rustls::client::TlsStream<S>>),
}

/// Why [`Transport::connect_tls`] failed.
#[derive(Debug, thiserror::Error)]
pub enum ConnectTlsError {
    /// TLS is already up on this connection.
    #[error("the connection is already TLS")]
    AlreadyTls,
    /// The handshake failed: the peer's certificate did not verify for the name, no common protocol
    /// version or cipher suite, or the connection failed.
    #[error("TLS handshake: {0}")]
    Handshake(#[source] io::Error),
}

impl<S> Transport<S> {
    /// Whether TLS is up, on either side.
    pub fn is_tls(&self) -> bool {
        !matches!(self, Transport::Plain(_))
    }

    /// The rustls connection of TLS we accepted (what channel binding reads, RFC 9266 and RFC 5929).
    pub fn tls_connection(&self) -> Option<&rustls::ServerConnection> {
        match self {
            Transport::ServerTls(tls) => Some(tls.get_ref().1),
            Transport::Plain(_) | Transport::ClientTls(_) => None,
        }
    }

    /// The rustls connection of TLS we initiated.
    pub fn client_tls_connection(&self) -> Option<&rustls::ClientConnection> {
        match self {
            Transport::ClientTls(tls) => Some(tls.get_ref().1),
            Transport::Plain(_) | Transport::ServerTls(_) => None,
        }
    }

    /// What either side's TLS has agreed: protocol version, cipher suite, ALPN protocol.
    pub fn tls_state(&self) -> Option<&rustls::CommonState> {
        match self {
            Transport::Plain(_) => None,
            Transport::ServerTls(tls) => Some(tls.get_ref().1),
            Transport::ClientTls(tls) => Some(tls.get_ref().1),
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Transport<S> {
    /// Starts TLS on a plain connection we initiated, as the client, verifying the peer's certificate for
    /// `server_name` against `config`'s roots (RFC 6120 section 13.7.2; RFC 7590). The caller bounds the
    /// handshake's time.
    ///
    /// Errors: [`ConnectTlsError::AlreadyTls`] on a connection with TLS up, [`ConnectTlsError::Handshake`]
    /// when the handshake fails.
    pub async fn connect_tls(
        self,
        config: Arc<rustls::ClientConfig>,
        server_name: ServerName<'static>,
    ) -> Result<Transport<S>, ConnectTlsError> {
        let Transport::Plain(stream) = self else {
            return Err(ConnectTlsError::AlreadyTls);
        };
        let tls = TlsConnector::from(config)
            .connect(server_name, stream)
            .await
            .map_err(ConnectTlsError::Handshake)?;
        Ok(Transport::ClientTls(Box::new(tls)))
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for Transport<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Transport::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Transport::ServerTls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
            Transport::ClientTls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for Transport<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Transport::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Transport::ServerTls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
            Transport::ClientTls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Transport::Plain(s) => Pin::new(s).poll_flush(cx),
            Transport::ServerTls(s) => Pin::new(s.as_mut()).poll_flush(cx),
            Transport::ClientTls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Transport::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Transport::ServerTls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
            Transport::ClientTls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Config, RawConfig};
    use crate::net::tls::{TlsIdentity, client_config};
    use rustls_pki_types::CertificateDer;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Herald's own TLS identity for `a.test` (a self-signed certificate made in `dir`) and a client
    /// configuration that trusts it.
    fn identity_and_client(dir: &std::path::Path) -> (TlsIdentity, Arc<rustls::ClientConfig>) {
        let env = vec![
            (
                "HERALD_SERVER__DATA_DIR".to_string(),
                dir.display().to_string(),
            ),
            (
                "HERALD_SERVER__DOMAINS".to_string(),
                "[\"a.test\"]".to_string(),
            ),
        ];
        let config = Config::resolve(RawConfig::load(None, env).unwrap()).unwrap();
        let identity = TlsIdentity::load(&config).unwrap();
        let mut roots = rustls::RootCertStore::empty();
        let leaf = identity.leaf_certificate(Some("a.test")).unwrap();
        roots.add(CertificateDer::from(leaf)).unwrap();
        (identity, Arc::new(client_config(roots).unwrap()))
    }

    #[tokio::test]
    async fn the_client_side_handshakes_with_our_acceptor_and_bytes_go_both_ways() {
        let dir = tempfile::tempdir().unwrap();
        let (identity, client) = identity_and_client(dir.path());
        let (near, far) = tokio::io::duplex(16 * 1024);
        let name = ServerName::try_from("a.test").unwrap();
        let (outbound, accepted) = tokio::join!(
            Transport::Plain(near).connect_tls(client, name),
            identity.starttls.accept(far)
        );
        let mut outbound = outbound.unwrap();
        let mut accepted = Transport::ServerTls(Box::new(accepted.unwrap()));
        assert!(outbound.is_tls() && accepted.is_tls());
        assert!(outbound.client_tls_connection().is_some());
        assert!(outbound.tls_connection().is_none(), "not the server side");
        assert!(
            accepted.tls_connection().is_some(),
            "channel binding reads it"
        );
        assert_eq!(
            outbound.tls_state().unwrap().protocol_version(),
            Some(rustls::ProtocolVersion::TLSv1_3)
        );

        outbound.write_all(b"<stream:stream>").await.unwrap();
        outbound.flush().await.unwrap();
        let mut got = [0u8; 15];
        accepted.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"<stream:stream>");
        accepted.write_all(b"<proceed/>").await.unwrap();
        accepted.flush().await.unwrap();
        let mut got = [0u8; 10];
        outbound.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"<proceed/>");
    }

    #[tokio::test]
    async fn a_certificate_for_another_name_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (identity, client) = identity_and_client(dir.path());
        let (near, far) = tokio::io::duplex(16 * 1024);
        let name = ServerName::try_from("b.test").unwrap();
        let (outbound, _) = tokio::join!(
            Transport::Plain(near).connect_tls(client, name),
            identity.starttls.accept(far)
        );
        assert!(matches!(outbound, Err(ConnectTlsError::Handshake(_))));
    }

    #[tokio::test]
    async fn tls_cannot_start_twice() {
        let dir = tempfile::tempdir().unwrap();
        let (identity, client) = identity_and_client(dir.path());
        let (near, far) = tokio::io::duplex(16 * 1024);
        let name = ServerName::try_from("a.test").unwrap();
        let (outbound, _accepted) = tokio::join!(
            Transport::Plain(near).connect_tls(client.clone(), name.clone()),
            identity.starttls.accept(far)
        );
        let again = outbound.unwrap().connect_tls(client, name).await;
        assert!(matches!(again, Err(ConnectTlsError::AlreadyTls)));
    }
}

//! Negotiation steps over in-memory streams (no sockets): the authoritative server's answers to
//! db:verify (XEP-0220 section 2.3), the originating server's db:result (section 2.1), the receiving
//! server's policy (dialback only for domains allowed, section 2.6 errors), and the order RFC 6120 imposes
//! (nothing before TLS when it is required, section 5.3.1; no stanzas before authentication).

use std::sync::Arc;

use tokio::io::DuplexStream;

use super::Federation;
use super::dialback::{Dialback, Outcome};
use super::inbound::Inbound;
use super::outbound::{AuthMethod, FederationDialer, Negotiated, Purpose, negotiate};
use super::queue::DialError;
use crate::config::{Config, RawConfig};
use crate::context::ServerContext;
use crate::net::shutdown::Shutdown;
use crate::net::tls::TlsIdentity;
use crate::net::transport::Transport;
use crate::net::unauthenticated::UnauthenticatedSlots;
use crate::router::Router;
use crate::router::events::Subscribers;
use crate::xmpp::{Element, Frame, Limits, StreamHeader, XmlStream, ns};
use herald_relay::login_throttle::LoginThrottle;
use herald_storage::Storage;

/// `a.test` with `[s2s]` over plaintext allowed (so the steps after TLS can be driven in memory) and
/// `peers` (TOML of `[[s2s.peers]]` entries).
async fn federation(dir: &std::path::Path, peers: &str) -> (Arc<Federation>, Arc<Router>) {
    let path = dir.join("herald.toml");
    std::fs::write(
        &path,
        format!(
            "[server]\ndomains = [\"a.test\"]\ndata_dir = \"{}\"\n[s2s]\nlisten = \"127.0.0.1:0\"\n\
             require_encryption = false\n{peers}",
            dir.display()
        ),
    )
    .unwrap();
    let config = Config::resolve(RawConfig::load(Some(&path), Vec::new()).unwrap()).unwrap();
    let tls = TlsIdentity::load(&config).unwrap();
    let federation = Federation::new(&config, &tls).unwrap().unwrap();
    let storage = Storage::connect("sqlite::memory:").await.unwrap();
    let context = ServerContext::new(Arc::new(config), storage, LoginThrottle::default());
    let router = Router::new(
        Arc::new(context),
        Arc::new(crate::features::Features),
        Subscribers::new(None),
    );
    (federation, router)
}

/// Runs our inbound side on one end of a duplex; returns the other end as a peer's stream.
fn inbound(federation: &Arc<Federation>, router: &Arc<Router>) -> XmlStream<DuplexStream> {
    let (near, far) = tokio::io::duplex(64 * 1024);
    let federation = federation.clone();
    let router = router.clone();
    tokio::spawn(async move {
        let dialer = FederationDialer::new(federation.clone());
        let inbound = Inbound {
            federation: &federation,
            router: &router,
            dialer: &dialer,
            peer: "192.0.2.1".parse().unwrap(),
        };
        let slot = UnauthenticatedSlots::new(10, 10)
            .try_acquire("192.0.2.1".parse().unwrap())
            .unwrap();
        let (_trigger, shutdown) = Shutdown::new();
        let connection = federation
            .connections
            .try_accept("192.0.2.1".parse().unwrap())
            .unwrap();
        let _ = inbound
            .run(Transport::Plain(far), slot, connection, shutdown)
            .await;
    });
    XmlStream::new(near, Limits::default())
}

/// Opens a `jabber:server` stream from `from` to `to`; returns the stream id and the features.
async fn open(peer: &mut XmlStream<DuplexStream>, from: &str, to: &str) -> (String, Element) {
    peer.send_header(&StreamHeader {
        to: Some(to.into()),
        from: Some(from.into()),
        version: Some("1.0".into()),
        default_ns: ns::SERVER.into(),
        ..StreamHeader::default()
    })
    .await
    .unwrap();
    let header = peer.read_header().await.unwrap();
    (header.id.unwrap_or_default(), next(peer).await)
}

async fn next(peer: &mut XmlStream<DuplexStream>) -> Element {
    match tokio::time::timeout(std::time::Duration::from_secs(5), peer.next()).await {
        Ok(Ok(Frame::Element(element))) => element,
        other => panic!("expected an element, got {other:?}"),
    }
}

fn stream_error(element: &Element) -> Option<String> {
    element
        .is("error", ns::STREAMS)
        .then(|| element.children().next().map(|c| c.name().to_string()))
        .flatten()
}

#[tokio::test]
async fn the_authoritative_server_answers_db_verify_for_the_keys_it_gave() {
    let dir = tempfile::tempdir().unwrap();
    let (federation, router) = federation(dir.path(), "").await;
    let mut peer = inbound(&federation, &router);
    let (_, features) = open(&mut peer, "b.test", "a.test").await;
    assert!(
        features
            .get_child("dialback", ns::DIALBACK_FEATURE)
            .is_some()
    );
    assert!(
        features.get_child("mechanisms", ns::SASL).is_none(),
        "no EXTERNAL without a certificate"
    );
    // a.test (originating) gave b.test (receiving) this key for b.test's stream S1.
    let key = federation.secret.key("b.test", "a.test", "S1");
    for (to, key, expected) in [
        ("a.test", key.as_str(), Outcome::Valid),
        ("a.test", "0123", Outcome::Invalid),
        (
            "c.test",
            key.as_str(),
            Outcome::Error("item-not-found".into()),
        ),
    ] {
        let request = Dialback::VerifyRequest {
            from: "b.test".into(),
            to: to.into(),
            id: "S1".into(),
            key: key.into(),
        };
        peer.send(&request.to_element()).await.unwrap();
        let answer = Dialback::parse(&next(&mut peer).await).unwrap();
        assert_eq!(
            answer,
            Dialback::VerifyAnswer {
                from: to.into(),
                to: "b.test".into(),
                id: "S1".into(),
                outcome: expected
            }
        );
    }
}

/// An in-process service that takes everything (stands in for the push service).
struct SilentService;

#[async_trait::async_trait]
impl crate::router::routes::InProcessService for SilentService {
    async fn receive(
        &self,
        _: &Arc<Router>,
        _: crate::xmpp::Envelope,
    ) -> Result<crate::router::Delivery, crate::router::Bounce> {
        Ok(crate::router::Delivery::Handled)
    }
}

#[tokio::test]
async fn db_verify_is_answered_for_an_in_process_service_domain_too() {
    // The push service sends as push.a.test (its IQ replies to remote users), so the peer asks us,
    // on a stream to push.a.test, whether the key is ours (XEP-0220 section 2.3).
    let dir = tempfile::tempdir().unwrap();
    let (federation, router) = federation(dir.path(), "").await;
    assert!(router.attach_service("push.a.test", Arc::new(SilentService)));
    let mut peer = inbound(&federation, &router);
    open(&mut peer, "b.test", "push.a.test").await;
    let key = federation.secret.key("b.test", "push.a.test", "S2");
    let request = Dialback::VerifyRequest {
        from: "b.test".into(),
        to: "push.a.test".into(),
        id: "S2".into(),
        key,
    };
    peer.send(&request.to_element()).await.unwrap();
    assert_eq!(
        Dialback::parse(&next(&mut peer).await),
        Some(Dialback::VerifyAnswer {
            from: "push.a.test".into(),
            to: "b.test".into(),
            id: "S2".into(),
            outcome: Outcome::Valid,
        })
    );
}

#[tokio::test]
async fn dialback_is_refused_for_a_domain_without_certificate_unless_allowed() {
    let dir = tempfile::tempdir().unwrap();
    let (federation, router) = federation(dir.path(), "").await;
    let mut peer = inbound(&federation, &router);
    open(&mut peer, "b.test", "a.test").await;
    let request = Dialback::ResultRequest {
        from: "b.test".into(),
        to: "a.test".into(),
        key: "k".into(),
    };
    peer.send(&request.to_element()).await.unwrap();
    assert_eq!(
        Dialback::parse(&next(&mut peer).await),
        Some(Dialback::ResultAnswer {
            from: "a.test".into(),
            to: "b.test".into(),
            outcome: Outcome::Error("not-authorized".into()),
        })
    );
    // For a domain we do not host: item-not-found (XEP-0220 section 2.6.2).
    let request = Dialback::ResultRequest {
        from: "b.test".into(),
        to: "c.test".into(),
        key: "k".into(),
    };
    peer.send(&request.to_element()).await.unwrap();
    let answer = Dialback::parse(&next(&mut peer).await).unwrap();
    assert!(
        matches!(answer, Dialback::ResultAnswer { outcome: Outcome::Error(ref c), .. } if c == "item-not-found"),
        "{answer:?}"
    );
    // Still unauthenticated: a stanza ends the stream.
    peer.send_raw("<message from='x@b.test' to='y@a.test'/>")
        .await
        .unwrap();
    assert_eq!(
        stream_error(&next(&mut peer).await).as_deref(),
        Some("not-authorized")
    );
}

#[tokio::test]
async fn nothing_but_starttls_before_tls_when_encryption_is_required() {
    let dir = tempfile::tempdir().unwrap();
    let (federation, router) = federation(dir.path(), "").await;
    let mut settings = federation.settings.clone();
    settings.require_encryption = true;
    let strict = Arc::new(Federation {
        settings,
        tls: federation.tls.clone(),
        trust: super::trust::PeerTrust::load(&federation.settings).unwrap(),
        secret: federation.secret.clone(),
        starttls_acceptor: federation.starttls_acceptor.clone(),
        direct_acceptor: federation.direct_acceptor.clone(),
        limits: federation.limits,
        auth_timeout: federation.auth_timeout,
        write_timeout: federation.write_timeout,
        authentications: Default::default(),
        resolver: super::resolve::PeerResolver::new(&Default::default()).unwrap(),
        connections: federation.connections.clone(),
        outbound_tls: Default::default(),
    });
    let mut peer = inbound(&strict, &router);
    let (_, features) = open(&mut peer, "b.test", "a.test").await;
    let starttls = features.get_child("starttls", ns::TLS).unwrap();
    assert!(starttls.get_child("required", ns::TLS).is_some());
    assert!(
        features
            .get_child("dialback", ns::DIALBACK_FEATURE)
            .is_none()
    );
    let request = Dialback::ResultRequest {
        from: "b.test".into(),
        to: "a.test".into(),
        key: "k".into(),
    };
    peer.send(&request.to_element()).await.unwrap();
    assert_eq!(
        stream_error(&next(&mut peer).await).as_deref(),
        Some("policy-violation")
    );
}

#[tokio::test]
async fn a_stream_to_a_domain_we_do_not_serve_is_host_unknown() {
    let dir = tempfile::tempdir().unwrap();
    let (federation, router) = federation(dir.path(), "").await;
    let mut peer = inbound(&federation, &router);
    peer.send_header(&StreamHeader {
        to: Some("elsewhere.test".into()),
        from: Some("b.test".into()),
        version: Some("1.0".into()),
        default_ns: ns::SERVER.into(),
        ..StreamHeader::default()
    })
    .await
    .unwrap();
    peer.read_header().await.unwrap();
    assert_eq!(
        stream_error(&next(&mut peer).await).as_deref(),
        Some("host-unknown")
    );
}

/// The receiving server's side scripted: header with stream id `S1`, dialback offered, then `verdict`
/// for the db:result if its key is the one XEP-0185 gives for (b.test, a.test, S1).
async fn scripted_receiver(
    mut peer: XmlStream<DuplexStream>,
    federation: Arc<Federation>,
    verdict: Outcome,
) -> bool {
    let header = peer.read_header().await.unwrap();
    assert_eq!(header.to.as_deref(), Some("b.test"));
    peer.queue_header(&StreamHeader {
        from: Some("b.test".into()),
        to: Some("a.test".into()),
        id: Some("S1".into()),
        version: Some("1.0".into()),
        default_ns: ns::SERVER.into(),
        ..StreamHeader::default()
    });
    let features = Element::builder("features", ns::STREAMS)
        .append(super::dialback::feature())
        .build();
    peer.send(&features).await.unwrap();
    let Some(Dialback::ResultRequest { from, to, key }) = Dialback::parse(&next(&mut peer).await)
    else {
        return false;
    };
    let key_is_right = (from.as_str(), to.as_str()) == ("a.test", "b.test")
        && key == federation.secret.key("b.test", "a.test", "S1");
    let answer = Dialback::ResultAnswer {
        from: to,
        to: from,
        outcome: verdict,
    };
    peer.send(&answer.to_element()).await.unwrap();
    key_is_right
}

#[tokio::test]
async fn the_originating_server_sends_the_xep_0185_key_and_takes_the_verdict() {
    let dir = tempfile::tempdir().unwrap();
    let (federation, _router) = federation(
        dir.path(),
        "[[s2s.peers]]\ndomain = \"b.test\"\nallow_dialback_without_certificate = true\n",
    )
    .await;
    for (verdict, authenticated) in [(Outcome::Valid, true), (Outcome::Invalid, false)] {
        let (near, far) = tokio::io::duplex(64 * 1024);
        let receiver = tokio::spawn(scripted_receiver(
            XmlStream::new(far, Limits::default()),
            federation.clone(),
            verdict,
        ));
        let outcome = negotiate(
            &federation,
            Transport::Plain(near),
            "a.test",
            "b.test",
            Purpose::Authenticate,
        )
        .await;
        assert!(receiver.await.unwrap(), "the key XEP-0185 gives");
        match outcome {
            Ok(Negotiated::Authenticated(_, method)) => {
                assert!(authenticated);
                assert_eq!(method, AuthMethod::Dialback);
            }
            Err(DialError::Rejected(_)) => assert!(!authenticated),
            _ => panic!("unexpected outcome"),
        }
    }
}

#[tokio::test]
async fn the_originating_server_refuses_a_peer_it_cannot_authenticate() {
    let dir = tempfile::tempdir().unwrap();
    // b.test not listed: its (absent) certificate cannot validate and dialback without one is not allowed.
    let (federation, _router) = federation(dir.path(), "").await;
    let (near, far) = tokio::io::duplex(64 * 1024);
    let receiver = tokio::spawn(scripted_receiver(
        XmlStream::new(far, Limits::default()),
        federation.clone(),
        Outcome::Valid,
    ));
    let outcome = negotiate(
        &federation,
        Transport::Plain(near),
        "a.test",
        "b.test",
        Purpose::Authenticate,
    )
    .await;
    assert!(matches!(outcome, Err(DialError::Rejected(_))));
    receiver.abort();
}

#[tokio::test]
async fn an_unauthenticated_peer_is_held_to_the_pre_authentication_limits() {
    let dir = tempfile::tempdir().unwrap();
    let (federation, router) = federation(dir.path(), "").await;
    let mut peer = inbound(&federation, &router);
    open(&mut peer, "b.test", "a.test").await;
    // Larger than `Limits::PRE_AUTH` allows (8 KiB), far below the stanza limit after authentication.
    let big = format!(
        "<message from='x@b.test' to='y@a.test'><body>{}</body></message>",
        "x".repeat(Limits::PRE_AUTH.max_stanza_bytes)
    );
    peer.send_raw(&big).await.unwrap();
    assert_eq!(
        stream_error(&next(&mut peer).await).as_deref(),
        Some("policy-violation")
    );
}

/// A self-signed certificate for `domain` with only the serverAuth purpose: its PEM, and the key rustls
/// presents it with.
fn server_auth_only_certificate(domain: &str) -> (String, rustls::sign::CertifiedKey) {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(vec![domain.to_string()]).unwrap();
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    let cert = params.self_signed(&key).unwrap();
    let der = rustls_pki_types::PrivateKeyDer::try_from(key.serialize_der()).unwrap();
    let signing = rustls::crypto::ring::sign::any_supported_type(&der).unwrap();
    let certified = rustls::sign::CertifiedKey::new(vec![cert.der().clone()], signing);
    (cert.pem(), certified)
}

#[tokio::test(flavor = "current_thread")]
async fn external_with_a_pinned_server_auth_certificate_then_idle_streams_are_closed() {
    let dir = tempfile::tempdir().unwrap();
    let (pem, certified) = server_auth_only_certificate("b.test");
    let pinned = dir.path().join("b.pem");
    std::fs::write(&pinned, pem).unwrap();
    let (federation, router) = federation(
        dir.path(),
        &format!(
            "idle_timeout_seconds = 5\n[[s2s.peers]]\ndomain = \"b.test\"\ncertificate = \"{}\"\n",
            pinned.display()
        ),
    )
    .await;
    let (near, far) = tokio::io::duplex(64 * 1024);
    tokio::spawn({
        let (federation, router) = (federation.clone(), router.clone());
        async move {
            let dialer = FederationDialer::new(federation.clone());
            let inbound = Inbound {
                federation: &federation,
                router: &router,
                dialer: &dialer,
                peer: "192.0.2.1".parse().unwrap(),
            };
            let slot = UnauthenticatedSlots::new(10, 10)
                .try_acquire("192.0.2.1".parse().unwrap())
                .unwrap();
            let (_trigger, shutdown) = Shutdown::new();
            let connection = federation
                .connections
                .try_accept("192.0.2.1".parse().unwrap())
                .unwrap();
            let _ = inbound
                .run(Transport::Plain(far), slot, connection, shutdown)
                .await;
        }
    });
    let header = StreamHeader {
        to: Some("a.test".into()),
        from: Some("b.test".into()),
        version: Some("1.0".into()),
        default_ns: ns::SERVER.into(),
        ..StreamHeader::default()
    };
    let mut plain = XmlStream::new(Transport::Plain(near), Limits::default());
    plain.send_header(&header).await.unwrap();
    plain.read_header().await.unwrap();
    let features = next_on(&mut plain).await;
    assert!(
        features.get_child("mechanisms", ns::SASL).is_none(),
        "not before TLS"
    );
    plain
        .send(&Element::builder("starttls", ns::TLS).build())
        .await
        .unwrap();
    assert!(next_on(&mut plain).await.is("proceed", ns::TLS));
    let config = super::trust::outbound_config(Some(Arc::new(certified)), Vec::new()).unwrap();
    let tls = plain
        .into_inner()
        .unwrap()
        .connect_tls(Arc::new(config), "a.test".try_into().unwrap())
        .await
        .unwrap();
    let mut peer = XmlStream::new(tls, Limits::default());
    peer.send_header(&header).await.unwrap();
    peer.read_header().await.unwrap();
    let features = next_on(&mut peer).await;
    let mechanisms = features
        .get_child("mechanisms", ns::SASL)
        .expect("EXTERNAL offered for the pinned certificate");
    assert!(mechanisms.children().any(|m| m.text() == "EXTERNAL"));
    peer.send_raw("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='EXTERNAL'>=</auth>")
        .await
        .unwrap();
    assert!(next_on(&mut peer).await.is("success", ns::SASL));
    peer.reset();
    peer.send_header(&header).await.unwrap();
    peer.read_header().await.unwrap();
    next_on(&mut peer).await;
    // SASL once per stream (RFC 6120 section 6.4.6): asking again gets a failure, not a restart.
    peer.send_raw("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='EXTERNAL'>=</auth>")
        .await
        .unwrap();
    assert!(next_on(&mut peer).await.is("failure", ns::SASL));
    assert_eq!(federation.authentications.snapshot(), (1, 0, 0, 0));

    // Idle for `idle_timeout_seconds`: closed politely (RFC 6120 section 4.4).
    tokio::time::pause();
    tokio::time::advance(std::time::Duration::from_secs(6)).await;
    let end = tokio::time::timeout(std::time::Duration::from_secs(1), peer.next()).await;
    assert!(matches!(end, Ok(Ok(Frame::End))), "{end:?}");
}

async fn next_on<S>(peer: &mut XmlStream<S>) -> Element
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    match tokio::time::timeout(std::time::Duration::from_secs(5), peer.next()).await {
        Ok(Ok(Frame::Element(element))) => element,
        other => panic!("expected an element, got {other:?}"),
    }
}

//! The resolver against a DNS stub on loopback, and the RFC 2782 ordering table.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;

use hickory_resolver::proto::op::{Message, MessageType, OpCode, ResponseCode};
use hickory_resolver::proto::rr::rdata::{A, SRV};
use hickory_resolver::proto::rr::{Name, RData, Record, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, UdpSocket};

use super::*;

/// What the stub answers for one (name, type).
#[derive(Clone)]
enum Answer {
    Records(Vec<RData>),
    /// Truncated over UDP (so the resolver must ask again over TCP), the records over TCP.
    RecordsOverTcpOnly(Vec<RData>),
    NxDomain,
    ServFail,
}

type Table = Arc<HashMap<(String, RecordType), Answer>>;

/// A DNS server on 127.0.0.1, UDP and TCP on one port, answering from a table; names not in it
/// get NOERROR with no answer (NODATA). Runs until the test's runtime ends.
async fn dns_stub(table: Vec<(&str, RecordType, Answer)>) -> SocketAddr {
    let table: Table = Arc::new(
        table
            .into_iter()
            .map(|(name, kind, answer)| ((format!("{name}."), kind), answer))
            .collect(),
    );
    let (udp, tcp) = bind_udp_and_tcp().await;
    let address = udp.local_addr().expect("stub address");
    let udp_table = table.clone();
    tokio::spawn(async move {
        let mut buffer = vec![0u8; 4096];
        loop {
            let Ok((length, from)) = udp.recv_from(&mut buffer).await else {
                return;
            };
            if let Some(bytes) = respond(&udp_table, &buffer[..length], false) {
                let _ = udp.send_to(&bytes, from).await;
            }
        }
    });
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = tcp.accept().await {
            let table = table.clone();
            tokio::spawn(async move {
                // RFC 1035 section 4.2.2: each message is preceded by its two-byte length.
                while let Ok(length) = stream.read_u16().await {
                    let mut request = vec![0u8; usize::from(length)];
                    if stream.read_exact(&mut request).await.is_err() {
                        return;
                    }
                    let Some(bytes) = respond(&table, &request, true) else {
                        return;
                    };
                    let Ok(length) = u16::try_from(bytes.len()) else {
                        return;
                    };
                    if stream.write_u16(length).await.is_err()
                        || stream.write_all(&bytes).await.is_err()
                    {
                        return;
                    }
                }
            });
        }
    });
    address
}

/// A UDP socket on a free loopback port and a TCP listener on the same port.
async fn bind_udp_and_tcp() -> (UdpSocket, TcpListener) {
    for _ in 0..20 {
        let udp = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .expect("bind the stub");
        let address = udp.local_addr().expect("stub address");
        if let Ok(tcp) = TcpListener::bind(address).await {
            return (udp, tcp);
        }
    }
    panic!("no loopback port free for both UDP and TCP");
}

fn respond(table: &Table, request: &[u8], over_tcp: bool) -> Option<Vec<u8>> {
    let request = Message::from_vec(request).ok()?;
    let mut response = Message::new(request.metadata.id, MessageType::Response, OpCode::Query);
    response.metadata.recursion_desired = request.metadata.recursion_desired;
    response.metadata.recursion_available = true;
    response.metadata.authoritative = true;
    if let Some(query) = request.queries.first() {
        response.add_query(query.clone());
        let key = (query.name.to_ascii().to_ascii_lowercase(), query.query_type);
        let records = match table.get(&key) {
            Some(Answer::Records(records)) => records.as_slice(),
            Some(Answer::RecordsOverTcpOnly(records)) if over_tcp => records.as_slice(),
            Some(Answer::RecordsOverTcpOnly(_)) => {
                response.metadata.truncation = true;
                &[]
            }
            Some(Answer::NxDomain) => {
                response.metadata.response_code = ResponseCode::NXDomain;
                &[]
            }
            Some(Answer::ServFail) => {
                response.metadata.response_code = ResponseCode::ServFail;
                &[]
            }
            None => &[],
        };
        for data in records {
            response.add_answer(Record::from_rdata(query.name.clone(), 60, data.clone()));
        }
    }
    response.to_vec().ok()
}

fn srv(priority: u16, weight: u16, port: u16, target: &str) -> RData {
    RData::SRV(SRV::new(
        priority,
        weight,
        port,
        Name::from_ascii(format!("{target}.")).expect("target name"),
    ))
}

fn a(ip: [u8; 4]) -> RData {
    RData::A(A(Ipv4Addr::from(ip)))
}

fn resolver(nameserver: SocketAddr) -> PeerResolver {
    PeerResolver::new(&ResolverSettings {
        nameserver: Some(nameserver),
        static_peers: HashMap::new(),
    })
    .expect("resolver")
}

fn candidate(host: &str, port: u16, direct_tls: bool) -> Candidate {
    Candidate {
        host: host.to_string(),
        port,
        direct_tls,
    }
}

#[tokio::test]
async fn srv_records_of_both_services_merge_by_priority_preferring_direct_tls() {
    let stub = dns_stub(vec![
        (
            "_xmpp-server._tcp.b.test",
            RecordType::SRV,
            Answer::Records(vec![
                srv(20, 0, 5269, "backup.b.test"),
                srv(10, 0, 5269, "xmpp.b.test"),
            ]),
        ),
        (
            "_xmpps-server._tcp.b.test",
            RecordType::SRV,
            Answer::Records(vec![
                srv(10, 0, 5270, "xmpp.b.test"),
                srv(30, 0, 443, "last.b.test"),
            ]),
        ),
        (
            "xmpp.b.test",
            RecordType::A,
            Answer::Records(vec![a([127, 0, 0, 2])]),
        ),
        (
            "backup.b.test",
            RecordType::A,
            Answer::Records(vec![a([127, 0, 0, 3])]),
        ),
        (
            "last.b.test",
            RecordType::A,
            Answer::Records(vec![a([127, 0, 0, 4])]),
        ),
    ])
    .await;
    let resolver = resolver(stub);
    assert_eq!(
        resolver.candidates("b.test").await.expect("candidates"),
        vec![
            candidate("xmpp.b.test", 5270, true),
            candidate("xmpp.b.test", 5269, false),
            candidate("backup.b.test", 5269, false),
            candidate("last.b.test", 443, true),
        ]
    );
    let addresses: Vec<(SocketAddr, bool)> = resolver
        .resolve("b.test")
        .await
        .expect("resolve")
        .into_iter()
        .map(|peer| (peer.address, peer.direct_tls))
        .collect();
    let at = |ip: [u8; 4], port| SocketAddr::from((ip, port));
    assert_eq!(
        addresses,
        vec![
            (at([127, 0, 0, 2], 5270), true),
            (at([127, 0, 0, 2], 5269), false),
            (at([127, 0, 0, 3], 5269), false),
            (at([127, 0, 0, 4], 443), true),
        ]
    );
}

#[tokio::test]
async fn a_dot_target_means_no_service_and_no_fallback() {
    let stub = dns_stub(vec![
        (
            "_xmpp-server._tcp.closed.test",
            RecordType::SRV,
            Answer::Records(vec![srv(0, 0, 0, "")]),
        ),
        // The domain has an address, which must not be used as a fallback.
        (
            "closed.test",
            RecordType::A,
            Answer::Records(vec![a([127, 0, 0, 9])]),
        ),
    ])
    .await;
    let resolver = resolver(stub);
    assert!(matches!(
        resolver.candidates("closed.test").await,
        Err(ResolveError::NotFound(domain)) if domain == "closed.test"
    ));
    assert!(matches!(
        resolver.resolve("closed.test").await,
        Err(ResolveError::NotFound(_))
    ));
}

#[tokio::test]
async fn without_srv_records_the_domain_itself_is_tried_on_5269() {
    let stub = dns_stub(vec![
        (
            "_xmpps-server._tcp.plain.test",
            RecordType::SRV,
            Answer::NxDomain,
        ),
        (
            "plain.test",
            RecordType::A,
            Answer::Records(vec![a([127, 0, 0, 5])]),
        ),
    ])
    .await;
    let resolver = resolver(stub);
    assert_eq!(
        resolver.candidates("plain.test").await.expect("candidates"),
        vec![candidate("plain.test", 5269, false)]
    );
    assert_eq!(
        resolver.resolve("plain.test").await.expect("resolve"),
        vec![PeerAddress {
            address: SocketAddr::from(([127, 0, 0, 5], 5269)),
            direct_tls: false,
            host: "plain.test".to_string(),
        }]
    );
}

#[tokio::test]
async fn a_domain_that_does_not_exist_is_not_found() {
    let stub = dns_stub(vec![
        (
            "_xmpps-server._tcp.nowhere.test",
            RecordType::SRV,
            Answer::NxDomain,
        ),
        (
            "_xmpp-server._tcp.nowhere.test",
            RecordType::SRV,
            Answer::NxDomain,
        ),
        ("nowhere.test", RecordType::A, Answer::NxDomain),
        ("nowhere.test", RecordType::AAAA, Answer::NxDomain),
    ])
    .await;
    assert!(matches!(
        resolver(stub).resolve("nowhere.test").await,
        Err(ResolveError::NotFound(domain)) if domain == "nowhere.test"
    ));
}

#[tokio::test]
async fn a_failing_nameserver_is_a_lookup_error_not_a_missing_domain() {
    let stub = dns_stub(vec![
        (
            "_xmpps-server._tcp.flaky.test",
            RecordType::SRV,
            Answer::ServFail,
        ),
        (
            "_xmpp-server._tcp.flaky.test",
            RecordType::SRV,
            Answer::ServFail,
        ),
        ("flaky.test", RecordType::A, Answer::ServFail),
        ("flaky.test", RecordType::AAAA, Answer::ServFail),
    ])
    .await;
    let outcome = resolver(stub).resolve("flaky.test").await;
    assert!(
        matches!(outcome, Err(ResolveError::Lookup { .. })),
        "{outcome:?}"
    );
}

#[tokio::test]
async fn a_static_address_overrides_dns() {
    // The stub would say the domain does not exist; the configured address wins without asking.
    let stub = dns_stub(vec![("b.test", RecordType::A, Answer::NxDomain)]).await;
    let address = SocketAddr::from(([127, 0, 0, 7], 15269));
    let resolver = PeerResolver::new(&ResolverSettings {
        nameserver: Some(stub),
        static_peers: HashMap::from([(
            "B.Test".to_string(),
            StaticPeer {
                address,
                direct_tls: true,
            },
        )]),
    })
    .expect("resolver");
    assert_eq!(
        resolver.resolve("b.test").await.expect("resolve"),
        vec![PeerAddress {
            address,
            direct_tls: true,
            host: "127.0.0.7".to_string(),
        }]
    );
}

#[tokio::test]
async fn a_truncated_answer_is_asked_again_over_tcp_on_the_configured_port() {
    let stub = dns_stub(vec![
        (
            "_xmpp-server._tcp.big.test",
            RecordType::SRV,
            Answer::RecordsOverTcpOnly(vec![srv(0, 0, 15269, "xmpp.big.test")]),
        ),
        (
            "xmpp.big.test",
            RecordType::A,
            Answer::RecordsOverTcpOnly(vec![a([127, 0, 0, 6])]),
        ),
    ])
    .await;
    assert_eq!(
        resolver(stub).resolve("big.test").await.expect("resolve"),
        vec![PeerAddress {
            address: SocketAddr::from(([127, 0, 0, 6], 15269)),
            direct_tls: false,
            host: "xmpp.big.test".to_string(),
        }]
    );
}

fn record(priority: u16, weight: u16, target: &str, direct_tls: bool) -> SrvRecord {
    SrvRecord {
        priority,
        weight,
        port: 5269,
        target: target.to_string(),
        direct_tls,
    }
}

fn hosts(records: Vec<SrvRecord>, draws: &[u32]) -> Vec<String> {
    let mut draws = draws.iter().copied();
    order_candidates(records, &mut |_| draws.next().unwrap_or(0))
        .into_iter()
        .map(|c| c.host)
        .collect()
}

#[test]
fn weighted_selection_follows_rfc_2782() {
    // Weights 10, 30, 60 have running sums 10, 40, 100.
    let three = || {
        vec![
            record(1, 10, "w10", false),
            record(1, 30, "w30", false),
            record(1, 60, "w60", false),
        ]
    };
    let table: [(&[u32], [&str; 3]); 4] = [
        // A draw of 0 or up to 10 picks the first; then sums are 30, 90 over the two left.
        (&[0, 0, 0], ["w10", "w30", "w60"]),
        (&[41, 31, 0], ["w60", "w30", "w10"]),
        (&[11, 11, 0], ["w30", "w60", "w10"]),
        (&[100, 0, 0], ["w60", "w10", "w30"]),
    ];
    for (draws, expected) in table {
        assert_eq!(hosts(three(), draws), expected, "draws {draws:?}");
    }
}

#[test]
fn zero_weights_come_first_in_the_running_sum_and_priority_dominates_weight() {
    let records = vec![
        record(2, 100, "later", false),
        record(1, 5, "heavy", false),
        record(1, 0, "light", false),
    ];
    // Draw 0 selects the zero-weight record, which RFC 2782 places first.
    assert_eq!(
        hosts(records.clone(), &[0, 0, 0]),
        ["light", "heavy", "later"]
    );
    assert_eq!(hosts(records, &[5, 0, 0]), ["heavy", "light", "later"]);
}

#[test]
fn direct_tls_goes_first_at_equal_priority_and_dot_targets_are_dropped() {
    let records = vec![
        record(5, 90, "starttls", false),
        record(5, 1, "direct", true),
        record(1, 0, ".", false),
        record(9, 0, "", true),
    ];
    assert_eq!(hosts(records, &[1, 90]), ["direct", "starttls"]);
}

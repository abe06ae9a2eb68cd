//! Micro-benchmarks of the hot paths, so a regression shows in review: framing and parsing a stream of
//! stanzas, serialising one, reading a stanza's addressing, the RFC 6121 delivery decision, and the SCRAM key
//! work of a login. Run with `cargo bench -p herald --bench hot_paths`.

// A benchmark's inputs are fixed strings written here: a failure to parse them is a bug in the bench.
#![allow(clippy::unwrap_used)]

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use herald::c2s::sasl;
use herald::router::rules::{Addressee, ResourceView, decide};
use herald::xmpp::stream::{Frame, StreamHeader, XmlStream};
use herald::xmpp::{Addressing, Element, Envelope, Limits, MessageKind, StanzaKind, ns};

const MESSAGE: &str = "<message xmlns='jabber:client' to='bob@example.org' type='chat' id='m1'>\
<body>Hello Bob, this is a typical short chat message &amp; a bit.</body>\
<active xmlns='http://jabber.org/protocol/chatstates'/>\
<request xmlns='urn:xmpp:receipts'/></message>";

const STANZAS_PER_STREAM: usize = 100;

fn stream_bytes() -> Vec<u8> {
    let mut bytes = b"<?xml version='1.0'?><stream:stream xmlns='jabber:client' \
xmlns:stream='http://etherx.jabber.org/streams' to='example.org' version='1.0'>"
        .to_vec();
    for _ in 0..STANZAS_PER_STREAM {
        bytes.extend_from_slice(MESSAGE.as_bytes());
    }
    bytes
}

fn framing(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let bytes = stream_bytes();
    let mut group = c.benchmark_group("framing");
    group.throughput(Throughput::Elements(STANZAS_PER_STREAM as u64));
    group.bench_function("parse 100 chat messages", |b| {
        b.to_async(&runtime).iter(|| async {
            let io = tokio::io::join(bytes.as_slice(), tokio::io::sink());
            let mut stream = XmlStream::new(io, Limits::default());
            stream.read_header().await.unwrap();
            for _ in 0..STANZAS_PER_STREAM {
                match stream.next().await.unwrap() {
                    Frame::Element(element) => {
                        black_box(element);
                    }
                    Frame::End => unreachable!(),
                }
            }
        })
    });
    group.finish();

    let element: Element = MESSAGE.parse().unwrap();
    c.bench_function("serialise a chat message", |b| {
        b.to_async(&runtime).iter(|| async {
            let io = tokio::io::join(tokio::io::empty(), tokio::io::sink());
            let mut stream = XmlStream::new(io, Limits::default());
            stream
                .send_header(&StreamHeader {
                    default_ns: ns::CLIENT.into(),
                    ..StreamHeader::default()
                })
                .await
                .unwrap();
            stream.send(black_box(&element)).await.unwrap();
        })
    });
}

fn routing(c: &mut Criterion) {
    let element: Element = MESSAGE.parse().unwrap();
    c.bench_function("read addressing of a chat message", |b| {
        b.iter(|| {
            let addressing = Addressing::read(black_box(&element)).unwrap();
            black_box(Envelope::from_parts(element.clone(), addressing));
        })
    });
    let resources = [
        ResourceView {
            is_available: true,
            priority: 5,
        },
        ResourceView {
            is_available: true,
            priority: 0,
        },
        ResourceView {
            is_available: false,
            priority: 0,
        },
    ];
    c.bench_function("delivery decision (bare JID, 3 resources)", |b| {
        b.iter(|| {
            black_box(decide(
                StanzaKind::Message(MessageKind::Chat),
                Addressee::Bare {
                    resources: black_box(&resources),
                },
            ))
        })
    });
}

fn scram(c: &mut Criterion) {
    let credentials =
        sasl::derive_credentials("correct horse", sasl::DEFAULT_SCRAM_ITERATIONS).unwrap();
    let mut group = c.benchmark_group("scram");
    group.sample_size(20);
    group.bench_function("derive SCRAM-SHA-1 and -256 keys (4096 iterations)", |b| {
        b.iter(|| {
            sasl::derive_credentials(black_box("correct horse"), sasl::DEFAULT_SCRAM_ITERATIONS)
        })
    });
    group.bench_function("verify a password against SCRAM-SHA-256 keys", |b| {
        b.iter(|| {
            sasl::verify_plain(
                black_box(Some(&credentials)),
                "user",
                black_box("correct horse"),
                b"",
            )
        })
    });
    group.finish();
}

criterion_group!(benches, framing, routing, scram);
criterion_main!(benches);

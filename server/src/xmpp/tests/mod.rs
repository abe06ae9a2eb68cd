//! Tests of `herald::xmpp` over `tokio::io::duplex`: framing, restricted XML, limits, restarts,
//! serialisation and stanzas (RFC 6120 sections 4, 8 and 11).

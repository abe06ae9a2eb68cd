//! herald-load: a load generator that speaks real XMPP over TLS (RFC 6120, RFC 6121) to any server,
//! so Herald, Prosody and ejabberd are measured by the same code.
//!
//! - [`client`]: a small async XMPP client (TLS, SASL SCRAM/PLAIN, bind, raw XML in/out), reused by
//!   the black-box tests.
//! - [`phase`]: the bounded load phases (accounts, idle sessions, login storm, chat, push, archive,
//!   hibernated sessions, PEP notifications with a caps burst).
//! - [`stats`]: latency percentiles, error counts and server memory from `/proc/<pid>/status`.
//! - [`report`]: the per-run JSON report and the comparison table.
//! - [`abuse`]: the abuse run (normal users chatting while the server is abused), its report and
//!   table.

pub mod abuse;
pub mod client;
pub mod phase;
pub mod report;
pub mod stats;

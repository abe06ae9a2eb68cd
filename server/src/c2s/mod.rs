//! Client-to-server streams (RFC 6120): negotiation (STARTTLS, SASL, bind), the session task, and the
//! stream trait a session reads and writes its client through.

pub(crate) mod flood;
pub mod negotiation;
pub mod sasl;
pub mod session;
pub mod stream;
pub mod stream_features;

//! Client-to-server streams: negotiation (STARTTLS, SASL, bind) and the session task.

pub mod negotiation;
pub mod sasl;
pub mod session;
pub mod stream_features;

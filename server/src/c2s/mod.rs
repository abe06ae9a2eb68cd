//! Client-to-server streams: negotiation (STARTTLS, SASL, resource binding) and the session task.

pub mod sasl;

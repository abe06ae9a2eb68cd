//! Listeners, TLS and connection limits.

pub mod channel_binding;

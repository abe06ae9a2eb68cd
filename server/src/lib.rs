//! Herald.

pub mod xmpp;

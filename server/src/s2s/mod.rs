//! Server-to-server federation (RFC 6120; XEP-0368 for direct TLS): finding peers (`resolve`), the
//! backoff between attempts (`retry`) and the durable per-domain outbound queue (`queue`), which
//! reaches the streams only through its [`Dialer`], [`Link`] and [`BounceSink`] traits.

pub mod queue;
pub mod resolve;
pub mod retry;

pub use queue::{
    BounceSink, DialError, Dialer, Link, LinkError, OutboundQueue, QueueSettings, SubmitError,
};
pub use resolve::{PeerResolver, ResolveError, ResolverSettings, StaticPeer};
pub use retry::RetryPolicy;

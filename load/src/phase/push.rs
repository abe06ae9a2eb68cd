//! Push to offline users (XEP-0357 over a XEP-0198 hibernated or closed session): the time from
//! sending a message to a stand-in push provider receiving the notification. Herald only, since
//! it needs Herald's built-in relay pointed at a local stand-in provider.

use super::PhaseReport;

/// Why the phase cannot run yet; the comparison reports it as not available.
pub const NOT_AVAILABLE: &str = "not yet available: needs Herald's push relay (relay/), which is not merged; \
     the phase is reported, never estimated";

/// The push phase. It is reported as unavailable until the relay can be pointed at a stand-in
/// provider; see [`NOT_AVAILABLE`].
pub async fn run() -> PhaseReport {
    PhaseReport::unavailable("push", NOT_AVAILABLE)
}

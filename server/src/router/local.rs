//! What the router hands to the server's own handling, as a trait the features implement, so the router
//! does not depend on the features (they depend on it, to send).
//!
//! The three entry points are the places RFC 6121 section 8 gives a stanza to the server: addressed to a
//! domain itself (RFC 6120 section 10.3), on a user's behalf (RFC 6121 sections 3, 4.3 and 8.5.2.1.4),
//! and offline storage for a user with no available resource (section 8.5.2.2.1, XEP-0160).

use std::sync::Arc;

use super::{Bounce, Delivery, Router};
use crate::xmpp::{BareJid, Envelope};
use async_trait::async_trait;

/// What storing a message offline came to, when it did not fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stored {
    /// Kept for the user's next login; the router emits [`super::events::DeliveryEvent::StoredOffline`].
    Kept,
    /// Not worth keeping (chat states alone, a `<no-store/>` hint: XEP-0160 section 3, XEP-0334) and
    /// dropped.
    NotKept,
}

/// The server's own handling of stanzas for local domains and users.
#[async_trait]
pub trait LocalHandling: Send + Sync {
    /// A stanza addressed to one of our domains itself (`to='example.org'`).
    async fn for_server(
        &self,
        router: &Arc<Router>,
        envelope: Envelope,
    ) -> Result<Delivery, Bounce>;

    /// A stanza the delivery rules give to the server on behalf of the local user `user`: IQ requests to
    /// their bare JID, presence probes and subscription stanzas.
    async fn for_user(
        &self,
        router: &Arc<Router>,
        user: &BareJid,
        envelope: Envelope,
    ) -> Result<Delivery, Bounce>;

    /// An available or unavailable presence to the local user `user`'s bare JID from an entity that
    /// is not a local user (a contact on another server), seen before it is delivered, whether or not
    /// any resource takes it: what the server keeps of it for the user (XEP-0163 on XEP-0115: the
    /// caps the user's PEP service notifies by). By default nothing.
    async fn remote_presence(&self, router: &Arc<Router>, user: &BareJid, envelope: &Envelope) {
        let _ = (router, user, envelope);
    }

    /// Stores a message for `user`, who has no resource that can take it. `Err` asks the router to
    /// answer the sender (a full store, a storage failure).
    async fn store_offline(
        &self,
        router: &Arc<Router>,
        user: &BareJid,
        envelope: &Envelope,
    ) -> Result<Stored, Bounce>;
}

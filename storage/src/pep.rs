//! XEP-0163 Personal Eventing Protocol: the nodes every account owns on its bare JID (a XEP-0060
//! pubsub service) with their configuration, and their items. The SQL is in `sql/pep.rs`.
//!
//! Keys are plain strings: the owner's bare JID, the node name and the item id as the client sent
//! them. Values the protocol gives meaning to (the access model's name, the payload's XML) are opaque
//! here. Everything an account owns is deleted with it ([`crate::Accounts::delete`]).

use async_trait::async_trait;

use crate::StorageResult;

/// A node and its configuration (XEP-0060 section 8.2, the fields PEP clients use).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PepNode {
    /// The node name (for example `urn:xmpp:avatar:data`).
    pub node: String,
    /// `pubsub#access_model` as its wire name (`presence`, `open`, `roster`, `whitelist`).
    pub access_model: String,
    /// `pubsub#max_items`, resolved to a number (the caller turns `max` into its own limit).
    pub max_items: u32,
    /// `pubsub#persist_items`.
    pub persist_items: bool,
    /// `pubsub#notify_retract`.
    pub notify_retract: bool,
    /// `pubsub#send_last_published_item` as its wire name (`never`, `on_sub`,
    /// `on_sub_and_presence`).
    pub send_last_published_item: String,
    /// `pubsub#title`.
    pub title: Option<String>,
    /// `pubsub#roster_groups_allowed`, for the `roster` access model. Names must not contain a
    /// line break (they are stored one per line).
    pub roster_groups: Vec<String>,
}

/// One published item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PepItem {
    /// The item id, unique within its node.
    pub id: String,
    /// The payload as serialised XML (empty for none).
    pub payload: String,
    /// Bare JID of whoever published it.
    pub publisher: String,
    /// When it was published, in milliseconds since the Unix epoch.
    pub published_at_ms: i64,
}

/// What [`Pep::create_node`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PepCreate {
    /// The node is new.
    Created,
    /// The owner already has a node of that name; nothing changed.
    Exists,
    /// The owner already has `limit` nodes; nothing was stored.
    LimitReached,
}

/// What [`Pep::publish`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PepPublish {
    /// Stored as the node's newest item (replacing an item of the same id). `trimmed` are the ids
    /// of the oldest items removed to keep the node at its `max_items`.
    Stored { trimmed: Vec<String> },
    /// There is no such node.
    NoNode,
}

/// PEP nodes and items, per account.
#[async_trait]
pub trait Pep: Send + Sync {
    /// Every node of `owner`, sorted by name.
    async fn nodes(&self, owner: &str) -> StorageResult<Vec<PepNode>>;
    /// One node, or `None`.
    async fn node(&self, owner: &str, node: &str) -> StorageResult<Option<PepNode>>;
    /// Creates `node` unless `owner` has one of that name or already `limit` nodes (one statement
    /// counts and writes).
    async fn create_node(
        &self,
        owner: &str,
        node: &PepNode,
        limit: usize,
    ) -> StorageResult<PepCreate>;
    /// Replaces the configuration of an existing node and trims its items to the new `max_items`,
    /// in one transaction. Returns `None` if there is no such node, else the trimmed item ids.
    async fn configure_node(
        &self,
        owner: &str,
        node: &PepNode,
    ) -> StorageResult<Option<Vec<String>>>;
    /// Deletes a node with its items; returns whether it existed.
    async fn delete_node(&self, owner: &str, node: &str) -> StorageResult<bool>;
    /// Stores `item` as the newest of `node` (an item with the same id is replaced and becomes the
    /// newest) and removes the oldest items beyond the node's `max_items`, in one transaction.
    async fn publish(&self, owner: &str, node: &str, item: &PepItem) -> StorageResult<PepPublish>;
    /// The newest `limit` items of a node (all with `None`), newest first. Empty for no such node.
    async fn items(
        &self,
        owner: &str,
        node: &str,
        limit: Option<usize>,
    ) -> StorageResult<Vec<PepItem>>;
    /// The items of a node with these ids, newest first; unknown ids are left out.
    async fn items_by_id(
        &self,
        owner: &str,
        node: &str,
        ids: &[String],
    ) -> StorageResult<Vec<PepItem>>;
    /// Removes one item; returns whether it existed.
    async fn retract(&self, owner: &str, node: &str, item_id: &str) -> StorageResult<bool>;
    /// Removes every item of a node; returns how many.
    async fn purge(&self, owner: &str, node: &str) -> StorageResult<u64>;
    /// Removes every node and item of `owner`; returns how many nodes.
    async fn delete_all(&self, owner: &str) -> StorageResult<u64>;
}

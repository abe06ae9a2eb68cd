//! The XMPP areas' SQL (accounts, rosters, offline messages, vCards, block lists, archives, private XML, PEP, the outbound s2s queue), written once for
//! SQLite and PostgreSQL. As in [`crate::relay::sql`], the queries use only syntax both accept (`$N`
//! placeholders, `RETURNING`, `ON CONFLICT`), and [`xmpp_sql_impl`] stamps the trait implementations
//! out for each backend's pool type. What genuinely differs between the backends (how a transaction
//! begins, and how an offline store counts and inserts atomically) is passed in as named arguments. The
//! contract suite (`crate::contract`) runs on both.

mod accounts;
pub(crate) mod archive;
mod block_lists;
mod offline;
pub(crate) mod pep;
pub(crate) mod private_xml;
pub(crate) mod push_registrations;
mod rosters;
pub(crate) mod s2s_queue;
mod vcards;

pub(crate) use accounts::accounts_sql;
pub(crate) use archive::archive_sql;
pub(crate) use block_lists::block_lists_sql;
pub(crate) use offline::offline_sql;
pub(crate) use pep::pep_sql;
pub(crate) use private_xml::private_xml_sql;
pub(crate) use push_registrations::push_registrations_sql;
pub(crate) use rosters::rosters_sql;
pub(crate) use s2s_queue::s2s_queue_sql;
pub(crate) use vcards::vcards_sql;

/// Implements [`crate::Accounts`], [`crate::Rosters`], [`crate::OfflineMessages`], [`crate::VCards`],
/// [`crate::BlockLists`], [`crate::Archive`], [`crate::PushRegistrations`], [`crate::PrivateXml`],
/// [`crate::Pep`] and [`crate::S2sQueue`] for `$store`, a struct with `pool` (reads) and `writer` (writes) fields of database `$db`.
///
/// - `write`: the statement that begins a read-then-write transaction (account deletion, roster
///   changes with their version bump, offline store, block and unblock, private XML puts).
/// - `snapshot`: the statement that begins a read-only transaction whose reads must agree (roster
///   version plus items).
/// - `offline_store`: one statement that stores an offline message (`$1` owner, `$2` stanza, `$3`
///   stored_at_ms) unless the owner already has `$4` (the quota) waiting, counting and inserting
///   atomically, and returns a row only when it stored.
/// - `archive_contact_hint`: what follows the table name in an archive page query with a contact,
///   and `archive_append`: one statement that archives a message with its timestamp kept from going
///   back, and `archive_append_all`: one statement for a batch of them, or `""` (all explained at
///   [`archive::archive_sql`]).
/// - `private_xml_lock`: a statement run first in a private XML put's transaction (`$1` the owner) so
///   that puts of one owner cannot both pass the fragment limit, or `""` when `write` already
///   serialises writers.
/// - `s2s_queue_lock`: the same for an enqueue to the outbound s2s queue (`$1` the domain), so the
///   per-domain cap holds and a domain's ids commit in order; `""` makes the enqueue its one
///   conditional `INSERT`.
macro_rules! xmpp_sql_impl {
    (
        $store:ident,
        $db:ty,
        write = $write:literal,
        snapshot = $snapshot:literal,
        offline_store = $offline_store:expr,
        archive_contact_hint = $archive_contact_hint:literal,
        archive_append = $archive_append:literal,
        archive_append_all = $archive_append_all:expr,
        private_xml_lock = $private_xml_lock:literal,
        s2s_queue_lock = $s2s_queue_lock:literal $(,)?
    ) => {
        $crate::sql::accounts_sql!($store, $db, write = $write);
        $crate::sql::rosters_sql!($store, $db, write = $write, snapshot = $snapshot);
        $crate::sql::offline_sql!($store, store_statement = $offline_store);
        $crate::sql::vcards_sql!($store);
        $crate::sql::block_lists_sql!($store, write = $write);
        $crate::sql::archive_sql!(
            $store,
            $db,
            write = $write,
            contact_hint = $archive_contact_hint,
            append = $archive_append,
            append_all = $archive_append_all,
        );
        $crate::sql::push_registrations_sql!($store);
        $crate::sql::private_xml_sql!($store, write = $write, lock = $private_xml_lock);
        $crate::sql::pep_sql!($store, write = $write);
        $crate::sql::s2s_queue_sql!($store, write = $write, lock = $s2s_queue_lock);
    };
}
pub(crate) use xmpp_sql_impl;

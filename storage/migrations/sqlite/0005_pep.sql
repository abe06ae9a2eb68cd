-- XEP-0163 Personal Eventing Protocol (a XEP-0060 pubsub service on every account), SQLite dialect.
-- Keep in step with migrations/postgres/0006_pep.sql.
--
-- One row per node an account owns, with its configuration (XEP-0060 section 8.2), and one row per
-- item. `id` orders a node's items by publication (republishing an item id gives it a new, higher
-- id: it becomes the newest); AUTOINCREMENT so it only grows.
CREATE TABLE pep_nodes (
    owner         TEXT    NOT NULL,
    node          TEXT    NOT NULL,
    -- pubsub#access_model: presence, open, roster or whitelist.
    access_model  TEXT    NOT NULL,
    -- pubsub#max_items, already resolved ("max" is the server's limit).
    max_items     INTEGER NOT NULL,
    persist_items BOOLEAN NOT NULL,
    notify_retract BOOLEAN NOT NULL,
    -- pubsub#send_last_published_item: never, on_sub or on_sub_and_presence.
    send_last     TEXT    NOT NULL,
    title         TEXT,
    -- pubsub#roster_groups_allowed, one group per line.
    roster_groups TEXT    NOT NULL DEFAULT '',
    created_at_ms INTEGER NOT NULL,
    PRIMARY KEY (owner, node)
);

CREATE TABLE pep_items (
    id           INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
    owner        TEXT    NOT NULL,
    node         TEXT    NOT NULL,
    item_id      TEXT    NOT NULL,
    -- The item's payload as serialised XML (empty for an item without payload).
    payload      TEXT    NOT NULL,
    publisher    TEXT    NOT NULL,
    -- Milliseconds since the Unix epoch.
    published_at_ms INTEGER NOT NULL
);
-- An item by its id (items by id, retract, the upsert of a republish).
CREATE UNIQUE INDEX pep_items_by_item_id ON pep_items (owner, node, item_id);
-- The newest N items of a node, and trimming to max_items: a range scan from the end.
CREATE INDEX pep_items_by_node ON pep_items (owner, node, id);

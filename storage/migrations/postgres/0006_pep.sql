-- XEP-0163 Personal Eventing Protocol (a XEP-0060 pubsub service on every account), PostgreSQL
-- dialect. Keep in step with migrations/sqlite/0005_pep.sql.
--
-- One row per node an account owns, with its configuration (XEP-0060 section 8.2), and one row per
-- item. `id` orders a node's items by publication (republishing an item id gives it a new, higher
-- id: it becomes the newest).
CREATE TABLE pep_nodes (
    owner          TEXT COLLATE "C" NOT NULL,
    node           TEXT COLLATE "C" NOT NULL,
    -- pubsub#access_model: presence, open, roster or whitelist.
    access_model   TEXT COLLATE "C" NOT NULL,
    -- pubsub#max_items, already resolved ("max" is the server's limit).
    max_items      BIGINT  NOT NULL,
    persist_items  BOOLEAN NOT NULL,
    notify_retract BOOLEAN NOT NULL,
    -- pubsub#send_last_published_item: never, on_sub or on_sub_and_presence.
    send_last      TEXT COLLATE "C" NOT NULL,
    title          TEXT COLLATE "C",
    -- pubsub#roster_groups_allowed, one group per line.
    roster_groups  TEXT COLLATE "C" NOT NULL DEFAULT '',
    created_at_ms  BIGINT  NOT NULL,
    PRIMARY KEY (owner, node)
);

CREATE TABLE pep_items (
    id              BIGSERIAL PRIMARY KEY,
    owner           TEXT COLLATE "C" NOT NULL,
    node            TEXT COLLATE "C" NOT NULL,
    item_id         TEXT COLLATE "C" NOT NULL,
    -- The item's payload as serialised XML (empty for an item without payload).
    payload         TEXT COLLATE "C" NOT NULL,
    publisher       TEXT COLLATE "C" NOT NULL,
    -- Milliseconds since the Unix epoch.
    published_at_ms BIGINT NOT NULL
);
-- An item by its id (items by id, retract, the upsert of a republish).
CREATE UNIQUE INDEX pep_items_by_item_id ON pep_items (owner, node, item_id);
-- The newest N items of a node, and trimming to max_items: a range scan from the end.
CREATE INDEX pep_items_by_node ON pep_items (owner, node, id);

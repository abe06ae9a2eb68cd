-- XEP-0049 private XML storage, PostgreSQL dialect. Keep in step with
-- migrations/sqlite/0006_private_xml.sql (the number differs: 0003 here is the offline-store
-- function; 0006 is left to another area, and sqlx does not need contiguous numbers).
--
-- One row per (account, namespace, element name): the fragment the client stored, as XML
-- (XEP-0049 section 2.3: a set replaces the fragment of that namespace).
CREATE TABLE private_xml (
    owner     TEXT COLLATE "C" NOT NULL,
    namespace TEXT COLLATE "C" NOT NULL,
    name      TEXT COLLATE "C" NOT NULL,
    xml       TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (owner, namespace, name)
);

-- XEP-0049 private XML storage, SQLite dialect. Keep in step with
-- migrations/postgres/0007_private_xml.sql. (0005 here is left to another area; sqlx applies
-- migrations in version order and does not need the numbers to be contiguous.)
--
-- One row per (account, namespace, element name): the fragment the client stored, as XML
-- (XEP-0049 section 2.3: a set replaces the fragment of that namespace).
CREATE TABLE private_xml (
    owner     TEXT NOT NULL,
    namespace TEXT NOT NULL,
    name      TEXT NOT NULL,
    xml       TEXT NOT NULL,
    PRIMARY KEY (owner, namespace, name)
);

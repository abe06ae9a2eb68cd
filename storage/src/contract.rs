//! The behaviour every storage backend must show; run on SQLite always and on PostgreSQL when
//! `HERALD_TEST_POSTGRES_URL` is set.

//! Test support, not for production use: a scratch PostgreSQL database of its own for one test, created
//! on the server an admin URL names and dropped afterwards. Used by this crate's contract tests
//! (storage/tests/contract.rs) and the black-box tests (herald-tests), so both make and remove scratch
//! databases the same way. Like [`crate::contract`], it is public only so those test crates can reach it.

use std::time::{SystemTime, UNIX_EPOCH};

use sqlx::Connection;

use crate::rows::db_error;
use crate::{StorageError, StorageResult};

/// The PostgreSQL admin URL the tests use, from `HERALD_TEST_POSTGRES_URL`. When it is unset or empty the
/// calling test should return early: this prints `SKIPPED (no HERALD_TEST_POSTGRES_URL): <test name>` straight to
/// the process's stderr (the test harness captures `eprintln!`, so a skip would otherwise look like a pass), and
/// `.ci/run` counts those lines.
pub fn postgres_url_or_skip() -> Option<String> {
    match std::env::var("HERALD_TEST_POSTGRES_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            let thread = std::thread::current();
            let line = format!(
                "SKIPPED (no HERALD_TEST_POSTGRES_URL): {}\n",
                thread.name().unwrap_or("unnamed test")
            );
            // One write, so parallel tests cannot interleave inside the line; nothing to do if stderr is gone.
            let _ = std::io::Write::write_all(&mut std::io::stderr(), line.as_bytes());
            None
        }
    }
}

/// PostgreSQL's SQLSTATE for "database already exists" (`duplicate_database`).
const DUPLICATE_DATABASE: &str = "42P04";
/// Names tried before giving up, should another scratch database have taken the first.
const ATTEMPTS: u32 = 8;

/// A database of its own on a PostgreSQL server. Call [`ScratchDatabase::drop_database`] when done: there
/// is no `Drop`, since dropping needs a connection and therefore an async runtime.
#[derive(Debug)]
pub struct ScratchDatabase {
    /// The URL to hand to [`crate::Storage::connect`]: the admin URL with the scratch database's name.
    pub url: String,
    admin_url: String,
    name: String,
}

impl ScratchDatabase {
    /// Creates an empty database named `{prefix}_{pid}_{nanoseconds}_{attempt}` on the server `admin_url`
    /// names; `admin_url` must let its user `CREATE DATABASE`. `prefix` says which suite made it (so a leaked
    /// one can be traced) and must be ASCII lowercase letters, digits and `_`, since the name is spliced into
    /// the statement.
    pub async fn create(admin_url: &str, prefix: &str) -> StorageResult<ScratchDatabase> {
        let plain = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_';
        if prefix.is_empty() || !prefix.chars().all(plain) {
            return Err(StorageError::Database(format!(
                "scratch database prefix {prefix:?} is not [a-z0-9_]+"
            )));
        }
        let mut admin = sqlx::PgConnection::connect(admin_url)
            .await
            .map_err(db_error)?;
        let mut attempt = 0;
        let name = loop {
            let nanos = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |elapsed| elapsed.subsec_nanos());
            let name = format!("{prefix}_{}_{nanos}_{attempt}", std::process::id());
            let created = sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
                .execute(&mut admin)
                .await;
            match created {
                Ok(_) => break name,
                // Two tests of one process asked in the same nanosecond: try another name.
                Err(e) if is_duplicate_database(&e) && attempt + 1 < ATTEMPTS => attempt += 1,
                Err(e) => return Err(db_error(e)),
            }
        };
        admin.close().await.map_err(db_error)?;
        Ok(ScratchDatabase {
            url: with_database(admin_url, &name),
            admin_url: admin_url.to_string(),
            name,
        })
    }

    /// The database's name on the server.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Drops the database, `WITH (FORCE)` because a pool under test may still hold connections to it.
    pub async fn drop_database(self) -> StorageResult<()> {
        let mut admin = sqlx::PgConnection::connect(&self.admin_url)
            .await
            .map_err(db_error)?;
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            self.name
        )))
        .execute(&mut admin)
        .await
        .map_err(db_error)?;
        admin.close().await.map_err(db_error)
    }
}

fn is_duplicate_database(error: &sqlx::Error) -> bool {
    error
        .as_database_error()
        .and_then(|e| e.code())
        .is_some_and(|code| code == DUPLICATE_DATABASE)
}

/// `url` with its database (the path) replaced by `name`, keeping any `?query`.
fn with_database(url: &str, name: &str) -> String {
    let (base, query) = url
        .split_once('?')
        .map_or((url, None), |(b, q)| (b, Some(q)));
    let authority_start = base.find("://").map_or(0, |i| i + 3);
    let path_start = base[authority_start..]
        .find('/')
        .map_or(base.len(), |i| authority_start + i);
    let mut out = format!("{}/{name}", &base[..path_start]);
    if let Some(query) = query {
        out.push('?');
        out.push_str(query);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::with_database;

    #[test]
    fn database_is_replaced_in_postgres_urls() {
        assert_eq!(
            with_database("postgres://postgres@127.0.0.1/test", "x"),
            "postgres://postgres@127.0.0.1/x"
        );
        assert_eq!(
            with_database("postgres://u:p@h:5432/db?sslmode=disable", "x"),
            "postgres://u:p@h:5432/x?sslmode=disable"
        );
        assert_eq!(with_database("postgresql://h", "x"), "postgresql://h/x");
    }

    #[tokio::test]
    async fn prefixes_that_are_not_plain_identifiers_are_refused() {
        for prefix in ["", "Upper", "semi;colon", "dash-ed"] {
            let refused =
                super::ScratchDatabase::create("postgres://nobody@127.0.0.1/x", prefix).await;
            assert!(refused.is_err(), "{prefix:?}");
        }
    }
}

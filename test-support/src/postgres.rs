//! A throwaway PostgreSQL database per test, under the admin URL in `ATOLL_TEST_POSTGRES_URL`
//! (`.ci/pg-setup.sh` starts the machine's server and prints it).

use std::future::Future;
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};

/// The variable holding the admin URL of a PostgreSQL server for tests.
pub const POSTGRES_URL_VAR: &str = "ATOLL_TEST_POSTGRES_URL";

/// The PostgreSQL admin URL for tests, or `None` after recording a visible skip (a failure under
/// CI, which must run the PostgreSQL tests).
pub fn postgres_url_or_skip(test: &str) -> Option<String> {
    match std::env::var(POSTGRES_URL_VAR) {
        Ok(url) if !url.trim().is_empty() => Some(url),
        _ => {
            crate::skip(
                &format!("PostgreSQL test {test}"),
                POSTGRES_URL_VAR,
                "`eval \"$(bash .ci/pg-setup.sh)\"` from the workspace root, as root, starts \
                 PostgreSQL and exports it",
            );
            None
        }
    }
}

/// `url` with its database replaced by `database`.
pub fn with_database(url: &str, database: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let authority_start = base.find("://").map(|i| i + 3).unwrap_or(0);
    let host_end = base[authority_start..]
        .find('/')
        .map(|i| authority_start + i)
        .unwrap_or(base.len());
    let mut out = format!("{}/{database}", &base[..host_end]);
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    out
}

static DB_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Runs `test` with the URL of a fresh, empty PostgreSQL database, created through the admin URL
/// (`ATOLL_TEST_POSTGRES_URL`; its role needs CREATEDB) and dropped afterwards, even if the test
/// panics. Skipped (or failed under CI) when the variable is unset. Tests running in parallel,
/// in one process or many, each get their own database.
pub async fn with_postgres_database<F, Fut>(test: &str, body: F)
where
    F: FnOnce(String) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    use sqlx::Connection;
    let Some(admin_url) = postgres_url_or_skip(test) else {
        return;
    };
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let name = format!(
        "atoll_t_{}_{}_{}",
        std::process::id(),
        DB_COUNTER.fetch_add(1, Ordering::Relaxed),
        nanos
    );
    let mut admin = sqlx::PgConnection::connect(&admin_url)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to {POSTGRES_URL_VAR}: {e}"));
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut admin)
        .await
        .unwrap_or_else(|e| panic!("cannot create test database {name}: {e}"));
    // Durability is irrelevant for a throwaway database; commits get much faster.
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "ALTER DATABASE {name} SET synchronous_commit = off"
    )))
    .execute(&mut admin)
    .await
    .unwrap_or_else(|e| panic!("cannot configure test database {name}: {e}"));
    let outcome = tokio::spawn(body(with_database(&admin_url, &name))).await;
    if let Err(e) = sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
    )))
    .execute(&mut admin)
    .await
    {
        let _ = writeln!(
            std::io::stderr(),
            "warning: cannot drop test database {name}: {e}"
        );
    }
    let _ = admin.close().await;
    if let Err(e) = outcome {
        match e.try_into_panic() {
            Ok(panic) => std::panic::resume_unwind(panic),
            Err(e) => panic!("test task failed: {e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_the_database_of_a_url() {
        assert_eq!(
            with_database("postgres://a:b@127.0.0.1:5432/atoll_test", "x"),
            "postgres://a:b@127.0.0.1:5432/x"
        );
        assert_eq!(
            with_database("postgresql://h/db?sslmode=disable", "x"),
            "postgresql://h/x?sslmode=disable"
        );
        assert_eq!(with_database("postgres://h:1", "x"), "postgres://h:1/x");
    }
}

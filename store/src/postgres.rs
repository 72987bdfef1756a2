//! The PostgreSQL store, for production and for several control-plane replicas sharing state.
//!
//! Writes are single statements with the version check in their `WHERE` clause (optimistic
//! concurrency). Change events do not come from the writer: a trigger announces every committed
//! change with `pg_notify('atoll_changes', …)`, and each store keeps a `LISTEN` connection that
//! feeds its watchers, so every replica sees every replica's writes, in commit order. The
//! listener reconnects by itself when its connection drops; notifications sent while it was
//! down are lost (a warning is logged), so watchers that must not miss a change should also
//! resync with `list` now and then, as they must after `RecvError::Lagged`.

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use atoll_core::{Resource, ResourceKey};
use serde_json::Value;
use sqlx::postgres::{PgConnectOptions, PgListener, PgPool, PgPoolOptions, PgRow};
use sqlx::{Connection, Row};
use tokio::sync::broadcast;
use tokio::task::JoinHandle;

use crate::migrations::{self, Migration};
use crate::row::{RawRow, encode, key_string, kind_of, parse_time, sql_int, time_text};
use crate::{
    ChangeEvent, ChangeOp, EVENT_BUFFER, ListFilter, ListPage, Result, Store, StoreError, now,
};

/// The channel the trigger notifies on.
pub const CHANNEL: &str = "atoll_changes";

/// Advisory lock key serializing migrations across replicas ("atoll" in ASCII).
const MIGRATION_LOCK: i64 = 0x61_74_6f_6c_6c;

const COLUMNS: &str = "kind, mesh, name, version, labels::text AS labels, spec, \
    to_char(creation_time AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"') AS creation_time, \
    to_char(modification_time AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"') AS modification_time";

const MIN_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(10);

fn backend(e: sqlx::Error) -> StoreError {
    StoreError::Backend(format!("postgres: {e}"))
}

fn parse_options(url: &str) -> Result<PgConnectOptions> {
    PgConnectOptions::from_str(url)
        .map(|o| o.application_name("atoll"))
        // sqlx's message does not repeat the URL (which may hold a password).
        .map_err(|e| StoreError::Backend(format!("invalid PostgreSQL URL: {e}")))
}

/// Applies pending migrations to the database a URL names and returns how many were applied.
pub(crate) async fn migrate_url(url: &str) -> Result<usize> {
    migrate_with(&parse_options(url)?).await
}

async fn migrate_with(options: &PgConnectOptions) -> Result<usize> {
    // A connection of its own: the session-level advisory lock goes away with it, whatever
    // happens below.
    let mut conn = sqlx::PgConnection::connect_with(options)
        .await
        .map_err(backend)?;
    let result = apply_migrations(&mut conn, migrations::POSTGRES).await;
    let _ = conn.close().await;
    result
}

async fn apply_migrations(conn: &mut sqlx::PgConnection, known: &[Migration]) -> Result<usize> {
    // Replicas starting together migrate one at a time; the later ones find nothing to do.
    sqlx::query("SELECT pg_advisory_lock($1)")
        .bind(MIGRATION_LOCK)
        .execute(&mut *conn)
        .await
        .map_err(backend)?;
    sqlx::raw_sql(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
             version    BIGINT PRIMARY KEY,
             name       TEXT NOT NULL,
             applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
         )",
    )
    .execute(&mut *conn)
    .await
    .map_err(backend)?;
    let applied: Vec<i64> = sqlx::query_scalar("SELECT version FROM schema_migrations")
        .fetch_all(&mut *conn)
        .await
        .map_err(backend)?;
    let pending = migrations::pending(known, &applied).map_err(StoreError::Backend)?;
    for m in &pending {
        let mut tx = conn.begin().await.map_err(backend)?;
        sqlx::raw_sql(m.sql).execute(&mut *tx).await.map_err(|e| {
            StoreError::Backend(format!(
                "postgres migration {} ({}): {e}",
                m.version, m.name
            ))
        })?;
        sqlx::query("INSERT INTO schema_migrations (version, name) VALUES ($1, $2)")
            .bind(m.version)
            .bind(m.name)
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        tx.commit().await.map_err(backend)?;
        tracing::info!(
            version = m.version,
            name = m.name,
            "applied postgres migration"
        );
    }
    sqlx::query("SELECT pg_advisory_unlock($1)")
        .bind(MIGRATION_LOCK)
        .execute(&mut *conn)
        .await
        .map_err(backend)?;
    Ok(pending.len())
}

fn raw(row: &PgRow) -> Result<RawRow> {
    fn col<T>(row: &PgRow, name: &str) -> Result<T>
    where
        T: for<'r> sqlx::Decode<'r, sqlx::Postgres> + sqlx::Type<sqlx::Postgres>,
    {
        row.try_get::<T, _>(name).map_err(|e| StoreError::Corrupt {
            key: "(unreadable row)".into(),
            reason: format!("column {name}: {e}"),
        })
    }
    Ok(RawRow {
        kind: col(row, "kind")?,
        mesh: col(row, "mesh")?,
        name: col(row, "name")?,
        version: col(row, "version")?,
        labels: col(row, "labels")?,
        spec: col(row, "spec")?,
        creation_time: col(row, "creation_time")?,
        modification_time: col(row, "modification_time")?,
    })
}

/// Reads one trigger notification.
fn parse_notification(payload: &str) -> Result<ChangeEvent> {
    let bad = |reason: String| StoreError::Corrupt {
        key: format!("notification {payload:?}"),
        reason,
    };
    let v: Value = serde_json::from_str(payload).map_err(|e| bad(e.to_string()))?;
    let field = |name: &str| {
        v.get(name)
            .and_then(Value::as_str)
            .ok_or_else(|| bad(format!("no string field {name}")))
    };
    let op = match field("op")? {
        "INSERT" => ChangeOp::Created,
        "UPDATE" => ChangeOp::Updated,
        "DELETE" => ChangeOp::Deleted,
        other => return Err(bad(format!("unknown op {other:?}"))),
    };
    let (kind, mesh, name) = (field("kind")?, field("mesh")?, field("name")?);
    let kind = kind_of(kind, || format!("{kind}/{mesh}/{name}"))?;
    let version = v
        .get("version")
        .and_then(Value::as_i64)
        .ok_or_else(|| bad("no integer field version".into()))?;
    Ok(ChangeEvent {
        op,
        key: ResourceKey::new(kind, mesh, name),
        version,
    })
}

async fn connect_listener(pool: &PgPool) -> Result<PgListener> {
    let mut listener = PgListener::connect_with(pool).await.map_err(backend)?;
    listener.listen(CHANNEL).await.map_err(backend)?;
    Ok(listener)
}

/// Feeds notifications to the broadcast channel until the store is dropped (which aborts it),
/// reconnecting with backoff whenever the connection fails.
async fn run_listener(
    pool: PgPool,
    mut listener: Option<PgListener>,
    events: broadcast::Sender<ChangeEvent>,
) {
    let mut backoff = MIN_BACKOFF;
    loop {
        if listener.is_none() {
            match connect_listener(&pool).await {
                Ok(l) => {
                    tracing::info!(
                        "PostgreSQL change listener reconnected; changes committed while it \
                         was down were not announced"
                    );
                    listener = Some(l);
                }
                Err(e) => {
                    tracing::warn!(error = %e, retry_in = ?backoff, "PostgreSQL change listener cannot reconnect");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    continue;
                }
            }
        }
        let Some(l) = listener.as_mut() else { continue };
        match l.try_recv().await {
            Ok(Some(n)) => {
                backoff = MIN_BACKOFF;
                match parse_notification(n.payload()) {
                    Ok(event) => {
                        let _ = events.send(event);
                    }
                    Err(e) => tracing::warn!(error = %e, "ignoring unreadable change notification"),
                }
            }
            Ok(None) => tracing::warn!(
                "PostgreSQL change listener lost its connection; reconnecting (changes committed \
                 meanwhile are not announced)"
            ),
            Err(e) => {
                tracing::warn!(error = %e, retry_in = ?backoff, "PostgreSQL change listener failed; reconnecting");
                listener = None;
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}

/// Aborts the listener task when the store goes away.
struct ListenerTask(JoinHandle<()>);

impl Drop for ListenerTask {
    fn drop(&mut self) {
        self.0.abort();
    }
}

pub struct PostgresStore {
    pool: PgPool,
    events: broadcast::Sender<ChangeEvent>,
    _listener: ListenerTask,
}

impl PostgresStore {
    /// Connects, applies pending migrations and starts listening for change notifications
    /// (before returning, so no change committed after `connect` returns is missed).
    pub async fn connect(url: &str) -> Result<Self> {
        let options = parse_options(url)?;
        migrate_with(&options).await?;
        let pool = PgPoolOptions::new()
            .max_connections(10)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(options.clone())
            .await
            .map_err(backend)?;
        // The listener's own one-connection pool, which it also uses to reconnect.
        let listener_pool = PgPoolOptions::new()
            .max_connections(1)
            .max_lifetime(None)
            .idle_timeout(None)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(options)
            .await
            .map_err(backend)?;
        let listener = connect_listener(&listener_pool).await?;
        let events = broadcast::channel(EVENT_BUFFER).0;
        let task = tokio::spawn(run_listener(listener_pool, Some(listener), events.clone()));
        Ok(Self {
            pool,
            events,
            _listener: ListenerTask(task),
        })
    }

    /// The connection pool (for leader election or diagnostics sharing the connection).
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    async fn current_version(&self, key: &ResourceKey) -> Result<Option<i64>> {
        sqlx::query_scalar(
            "SELECT version FROM resources WHERE kind = $1 AND mesh = $2 AND name = $3",
        )
        .bind(key.kind.name())
        .bind(&key.mesh)
        .bind(&key.name)
        .fetch_optional(&self.pool)
        .await
        .map_err(backend)
    }
}

#[async_trait]
impl Store for PostgresStore {
    fn backend_name(&self) -> &'static str {
        "postgres"
    }

    async fn get(&self, key: &ResourceKey) -> Result<Option<Resource>> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM resources WHERE kind = $1 AND mesh = $2 AND name = $3"
        )))
        .bind(key.kind.name())
        .bind(&key.mesh)
        .bind(&key.name)
        .fetch_optional(&self.pool)
        .await
        .map_err(backend)?;
        row.map(|r| raw(&r)?.decode()).transpose()
    }

    async fn list(&self, filter: &ListFilter) -> Result<ListPage> {
        // One snapshot for the page and the total.
        let mut tx = self
            .pool
            .begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            .await
            .map_err(backend)?;
        let sql = crate::list_sql::build(crate::list_sql::Dialect::Postgres, COLUMNS, filter);
        let mut count = sqlx::query_scalar(sqlx::AssertSqlSafe(sql.count));
        for b in &sql.binds {
            count = count.bind(b);
        }
        let total: i64 = count.fetch_one(&mut *tx).await.map_err(backend)?;
        let mut page = sqlx::query(sqlx::AssertSqlSafe(sql.page));
        for b in &sql.binds {
            page = page.bind(b);
        }
        let rows = page
            .bind(filter.limit.map(sql_int))
            .bind(sql_int(filter.offset))
            .fetch_all(&mut *tx)
            .await
            .map_err(backend)?;
        tx.commit().await.map_err(backend)?;
        let items = rows
            .iter()
            .map(|r| raw(r)?.decode())
            .collect::<Result<Vec<_>>>()?;
        Ok(ListPage {
            items,
            total: u64::try_from(total).unwrap_or(0),
        })
    }

    async fn create(&self, mut resource: Resource) -> Result<Resource> {
        let enc = encode(&resource)?;
        let t = now();
        let done = sqlx::query(
            "INSERT INTO resources (kind, mesh, name, version, labels, spec, creation_time, \
             modification_time) VALUES ($1, $2, $3, 1, $4::jsonb, $5, $6::timestamptz, \
             $6::timestamptz) ON CONFLICT (kind, mesh, name) DO NOTHING",
        )
        .bind(enc.kind)
        .bind(&resource.mesh)
        .bind(&resource.name)
        .bind(&enc.labels)
        .bind(&enc.spec)
        .bind(time_text(t))
        .execute(&self.pool)
        .await
        .map_err(backend)?;
        if done.rows_affected() == 0 {
            return Err(StoreError::AlreadyExists(resource.key()));
        }
        resource.version = 1;
        resource.creation_time = Some(t);
        resource.modification_time = Some(t);
        Ok(resource)
    }

    async fn update(&self, mut resource: Resource, expected_version: i64) -> Result<Resource> {
        let enc = encode(&resource)?;
        let key = resource.key();
        let t = now();
        let created: Option<String> = sqlx::query_scalar(
            "UPDATE resources SET version = version + 1, labels = $5::jsonb, spec = $6, \
             modification_time = $7::timestamptz \
             WHERE kind = $1 AND mesh = $2 AND name = $3 AND version = $4 \
             RETURNING to_char(creation_time AT TIME ZONE 'UTC', \
             'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')",
        )
        .bind(enc.kind)
        .bind(&key.mesh)
        .bind(&key.name)
        .bind(expected_version)
        .bind(&enc.labels)
        .bind(&enc.spec)
        .bind(time_text(t))
        .fetch_optional(&self.pool)
        .await
        .map_err(backend)?;
        let Some(created) = created else {
            return Err(match self.current_version(&key).await? {
                None => StoreError::NotFound(key),
                Some(found) => StoreError::Conflict {
                    key,
                    expected: expected_version,
                    found,
                },
            });
        };
        let creation_time = parse_time(&created).ok_or_else(|| StoreError::Corrupt {
            key: key_string(&key),
            reason: format!("bad creation time {created:?}"),
        })?;
        resource.version = expected_version + 1;
        resource.creation_time = Some(creation_time);
        resource.modification_time = Some(t);
        Ok(resource)
    }

    async fn delete(&self, key: &ResourceKey, expected_version: Option<i64>) -> Result<()> {
        let deleted: Option<i64> = sqlx::query_scalar(
            "DELETE FROM resources WHERE kind = $1 AND mesh = $2 AND name = $3 \
             AND ($4::bigint IS NULL OR version = $4) RETURNING version",
        )
        .bind(key.kind.name())
        .bind(&key.mesh)
        .bind(&key.name)
        .bind(expected_version)
        .fetch_optional(&self.pool)
        .await
        .map_err(backend)?;
        if deleted.is_some() {
            return Ok(());
        }
        Err(match (self.current_version(key).await?, expected_version) {
            (Some(found), Some(expected)) => StoreError::Conflict {
                key: key.clone(),
                expected,
                found,
            },
            _ => StoreError::NotFound(key.clone()),
        })
    }

    async fn delete_mesh_contents(&self, mesh: &str) -> Result<u64> {
        if mesh.is_empty() {
            return Ok(0);
        }
        let done = sqlx::query("DELETE FROM resources WHERE mesh = $1")
            .bind(mesh)
            .execute(&self.pool)
            .await
            .map_err(backend)?;
        Ok(done.rows_affected())
    }

    fn watch(&self) -> broadcast::Receiver<ChangeEvent> {
        self.events.subscribe()
    }

    async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map_err(backend)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use atoll_core::Kind;

    #[test]
    fn parses_trigger_notifications() {
        let e = parse_notification(
            r#"{"op" : "UPDATE", "kind" : "MeshTimeout", "mesh" : "default", "name" : "t", "version" : 4}"#,
        )
        .expect("parses");
        assert_eq!(
            e,
            ChangeEvent {
                op: ChangeOp::Updated,
                key: ResourceKey::new(Kind::MeshTimeout, "default", "t"),
                version: 4
            }
        );
        let g =
            parse_notification(r#"{"op":"DELETE","kind":"Mesh","mesh":"","name":"m","version":1}"#)
                .expect("parses");
        assert_eq!(g.op, ChangeOp::Deleted);
        assert_eq!(g.key, ResourceKey::global(Kind::Mesh, "m"));
        for bad in [
            "nope",
            r#"{"op":"TRUNCATE","kind":"Mesh","mesh":"","name":"m","version":1}"#,
            r#"{"op":"INSERT","kind":"Bogus","mesh":"","name":"m","version":1}"#,
            r#"{"op":"INSERT","kind":"Mesh","mesh":"","name":"m"}"#,
        ] {
            assert!(parse_notification(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn invalid_urls_do_not_leak_passwords() {
        let err = parse_options("postgres://u:s3cret@host:notaport/db").err();
        if let Some(err) = err {
            assert!(!err.to_string().contains("s3cret"), "{err}");
        }
    }
}

//! The embedded SQLite store: one file in the data directory (WAL mode), the default backend.
//!
//! Writes are single statements with the version check in their `WHERE` clause, so a stale
//! write can never overwrite a newer one, even from another process sharing the file. Within a
//! process, writes also take a lock that covers the broadcast of their change event, so watchers
//! see events in commit order.

use std::path::{Path, PathBuf};
use std::time::Duration;

use async_trait::async_trait;
use atoll_core::{Resource, ResourceKey};
use sqlx::migrate::{Migrate as _, Migrator};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use sqlx::{Connection, Row};
use tokio::sync::{Mutex, broadcast};

use crate::migrations;
use crate::row::{RawRow, encode, kind_of, sql_int, time_text};
use crate::{
    ChangeEvent, ChangeOp, EVENT_BUFFER, ListFilter, ListPage, Result, Store, StoreError, now,
};

/// How long a statement waits for another process's write lock before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

const COLUMNS: &str = "kind, mesh, name, version, labels, spec, creation_time, modification_time";

pub struct SqliteStore {
    pool: SqlitePool,
    path: PathBuf,
    /// Serializes this process's writes with their event broadcast.
    write_lock: Mutex<()>,
    events: broadcast::Sender<ChangeEvent>,
}

fn backend(e: sqlx::Error) -> StoreError {
    StoreError::Backend(format!("sqlite: {e}"))
}

fn options(path: &Path) -> SqliteConnectOptions {
    SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        // With WAL, NORMAL is durable across application crashes; a power loss may lose the
        // last transactions but never corrupts the database.
        .synchronous(SqliteSynchronous::Normal)
        .busy_timeout(BUSY_TIMEOUT)
        .foreign_keys(true)
}

fn create_parent(path: &Path) -> Result<()> {
    if let Some(parent) = path.parent()
        && !parent.as_os_str().is_empty()
    {
        std::fs::create_dir_all(parent).map_err(|e| {
            StoreError::Backend(format!("cannot create directory {}: {e}", parent.display()))
        })?;
    }
    Ok(())
}

/// Applies pending migrations to the SQLite file at `path` (created if missing) and returns how
/// many were applied.
pub(crate) async fn migrate_file(path: &Path) -> Result<usize> {
    create_parent(path)?;
    let mut conn = sqlx::SqliteConnection::connect_with(&options(path))
        .await
        .map_err(backend)?;
    let applied = apply_migrations(&mut conn).await;
    let _ = conn.close().await;
    applied
}

async fn apply_migrations(conn: &mut sqlx::SqliteConnection) -> Result<usize> {
    let migrator: &Migrator = &migrations::SQLITE;
    let table = &*migrator.table_name;
    // BEGIN IMMEDIATE takes the write lock at once: two processes opening the same new file
    // migrate one after the other, and the second finds nothing to do. SQLite has no advisory
    // lock for sqlx to take; its per-migration transactions become savepoints of this one.
    let mut tx = conn.begin_with("BEGIN IMMEDIATE").await.map_err(backend)?;
    let error = |e| migrations::migrate_error("sqlite", migrator, e);
    tx.ensure_migrations_table(table).await.map_err(error)?;
    adopt_legacy_versions(&mut tx, table).await?;
    let before = tx
        .list_applied_migrations(table)
        .await
        .map_err(error)?
        .len();
    // `run_direct` is what `run` calls once it has a connection; calling it directly avoids
    // `run`'s `Acquire` bound, which is "not general enough" inside the callers' `Send`
    // futures (sqlx's own workaround).
    migrator
        .run_direct(None, &mut *tx, false)
        .await
        .map_err(error)?;
    let after = tx
        .list_applied_migrations(table)
        .await
        .map_err(error)?
        .len();
    tx.commit().await.map_err(backend)?;
    Ok(after.saturating_sub(before))
}

/// Records in sqlx's table what the legacy `schema_migrations` table lists, then drops it.
async fn adopt_legacy_versions(conn: &mut sqlx::SqliteConnection, table: &str) -> Result<()> {
    let legacy: Option<String> =
        sqlx::query_scalar("SELECT name FROM sqlite_master WHERE type = 'table' AND name = ?1")
            .bind(migrations::LEGACY_TABLE)
            .fetch_optional(&mut *conn)
            .await
            .map_err(backend)?;
    if legacy.is_none() {
        return Ok(());
    }
    let versions: Vec<i64> = sqlx::query_scalar("SELECT version FROM schema_migrations")
        .fetch_all(&mut *conn)
        .await
        .map_err(backend)?;
    for m in migrations::adoption(&migrations::SQLITE, &versions)? {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT OR IGNORE INTO {table} (version, description, success, checksum, execution_time) \
             VALUES (?1, ?2, TRUE, ?3, 0)"
        )))
        .bind(m.version)
        .bind(&*m.description)
        .bind(&*m.checksum)
        .execute(&mut *conn)
        .await
        .map_err(backend)?;
    }
    sqlx::raw_sql("DROP TABLE schema_migrations")
        .execute(&mut *conn)
        .await
        .map_err(backend)?;
    tracing::info!(
        adopted = versions.len(),
        "recorded the legacy schema_migrations in sqlx's migrations table"
    );
    Ok(())
}

fn raw(row: &SqliteRow) -> Result<RawRow> {
    let get_s = |col: &str| -> Result<String> {
        row.try_get::<String, _>(col)
            .map_err(|e| StoreError::Corrupt {
                key: "(unreadable row)".into(),
                reason: format!("column {col}: {e}"),
            })
    };
    Ok(RawRow {
        kind: get_s("kind")?,
        mesh: get_s("mesh")?,
        name: get_s("name")?,
        version: row.try_get("version").map_err(|e| StoreError::Corrupt {
            key: "(unreadable row)".into(),
            reason: format!("column version: {e}"),
        })?,
        labels: get_s("labels")?,
        spec: get_s("spec")?,
        creation_time: get_s("creation_time")?,
        modification_time: get_s("modification_time")?,
    })
}

impl SqliteStore {
    /// Opens (creating if missing, with its parent directories) the SQLite file at `path` and
    /// applies pending migrations.
    pub async fn open(path: &Path) -> Result<Self> {
        migrate_file(path).await?;
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options(path))
            .await
            .map_err(backend)?;
        tracing::debug!(path = %path.display(), "opened sqlite store");
        Ok(Self {
            pool,
            path: path.to_path_buf(),
            write_lock: Mutex::new(()),
            events: broadcast::channel(EVENT_BUFFER).0,
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Closes the connections (pending operations finish first).
    pub async fn close(&self) {
        self.pool.close().await;
    }

    fn emit(&self, op: ChangeOp, key: ResourceKey, version: i64) {
        let _ = self.events.send(ChangeEvent { op, key, version });
    }

    /// The stored version of a key, after a conditional write matched no row.
    async fn current_version(&self, key: &ResourceKey) -> Result<Option<i64>> {
        sqlx::query_scalar(
            "SELECT version FROM resources WHERE kind = ?1 AND mesh = ?2 AND name = ?3",
        )
        .bind(key.kind.name())
        .bind(&key.mesh)
        .bind(&key.name)
        .fetch_optional(&self.pool)
        .await
        .map_err(backend)
    }
}

impl SqliteStore {
    /// The journal mode SQLite reports (`wal`), for tests.
    #[doc(hidden)]
    pub async fn journal_mode(&self) -> Result<String> {
        let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
            .fetch_one(&self.pool)
            .await
            .map_err(backend)?;
        Ok(mode.to_ascii_lowercase())
    }
}

#[async_trait]
impl Store for SqliteStore {
    fn backend_name(&self) -> &'static str {
        "sqlite"
    }

    async fn get(&self, key: &ResourceKey) -> Result<Option<Resource>> {
        let row = sqlx::query(
            "SELECT kind, mesh, name, version, labels, spec, creation_time, modification_time \
             FROM resources WHERE kind = ?1 AND mesh = ?2 AND name = ?3",
        )
        .bind(key.kind.name())
        .bind(&key.mesh)
        .bind(&key.name)
        .fetch_optional(&self.pool)
        .await
        .map_err(backend)?;
        row.map(|r| raw(&r)?.decode()).transpose()
    }

    async fn list(&self, filter: &ListFilter) -> Result<ListPage> {
        // One read transaction: the page and the total come from the same snapshot.
        let mut tx = self.pool.begin().await.map_err(backend)?;
        let sql = crate::list_sql::build(crate::list_sql::Dialect::Sqlite, COLUMNS, filter);
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
            .bind(filter.limit.map(sql_int).unwrap_or(-1))
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
        let _guard = self.write_lock.lock().await;
        let done = sqlx::query(
            "INSERT INTO resources (kind, mesh, name, version, labels, spec, creation_time, \
             modification_time) VALUES (?1, ?2, ?3, 1, ?4, ?5, ?6, ?6) \
             ON CONFLICT (kind, mesh, name) DO NOTHING",
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
        self.emit(ChangeOp::Created, resource.key(), 1);
        Ok(resource)
    }

    async fn update(&self, mut resource: Resource, expected_version: i64) -> Result<Resource> {
        let enc = encode(&resource)?;
        let key = resource.key();
        let t = now();
        let _guard = self.write_lock.lock().await;
        let created: Option<String> = sqlx::query_scalar(
            "UPDATE resources SET version = version + 1, labels = ?5, spec = ?6, \
             modification_time = ?7 \
             WHERE kind = ?1 AND mesh = ?2 AND name = ?3 AND version = ?4 \
             RETURNING creation_time",
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
        let creation_time =
            crate::row::parse_time(&created).ok_or_else(|| StoreError::Corrupt {
                key: crate::row::key_string(&key),
                reason: format!("bad creation time {created:?}"),
            })?;
        resource.version = expected_version + 1;
        resource.creation_time = Some(creation_time);
        resource.modification_time = Some(t);
        self.emit(ChangeOp::Updated, key, resource.version);
        Ok(resource)
    }

    async fn delete(&self, key: &ResourceKey, expected_version: Option<i64>) -> Result<()> {
        let _guard = self.write_lock.lock().await;
        let deleted: Option<i64> = sqlx::query_scalar(
            "DELETE FROM resources WHERE kind = ?1 AND mesh = ?2 AND name = ?3 \
             AND (?4 IS NULL OR version = ?4) RETURNING version",
        )
        .bind(key.kind.name())
        .bind(&key.mesh)
        .bind(&key.name)
        .bind(expected_version)
        .fetch_optional(&self.pool)
        .await
        .map_err(backend)?;
        match deleted {
            Some(version) => {
                self.emit(ChangeOp::Deleted, key.clone(), version);
                Ok(())
            }
            None => Err(match (self.current_version(key).await?, expected_version) {
                (Some(found), Some(expected)) => StoreError::Conflict {
                    key: key.clone(),
                    expected,
                    found,
                },
                _ => StoreError::NotFound(key.clone()),
            }),
        }
    }

    async fn delete_mesh_contents(&self, mesh: &str) -> Result<u64> {
        if mesh.is_empty() {
            return Ok(0);
        }
        let _guard = self.write_lock.lock().await;
        let rows =
            sqlx::query("DELETE FROM resources WHERE mesh = ?1 RETURNING kind, name, version")
                .bind(mesh)
                .fetch_all(&self.pool)
                .await
                .map_err(backend)?;
        let mut events = Vec::with_capacity(rows.len());
        for row in &rows {
            // The rows are gone already: an unreadable one is logged, not an error.
            let decoded = (|| -> Result<(ResourceKey, i64)> {
                let kind: String = row.try_get("kind").map_err(backend)?;
                let name: String = row.try_get("name").map_err(backend)?;
                let version: i64 = row.try_get("version").map_err(backend)?;
                let kind = kind_of(&kind, || format!("{kind}/{mesh}/{name}"))?;
                Ok((ResourceKey::new(kind, mesh, name), version))
            })();
            match decoded {
                Ok(event) => events.push(event),
                Err(e) => tracing::warn!(error = %e, "deleted a row no change event can name"),
            }
        }
        // RETURNING order is unspecified: announce in key order.
        events.sort();
        for (key, version) in events {
            self.emit(ChangeOp::Deleted, key, version);
        }
        Ok(rows.len() as u64)
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

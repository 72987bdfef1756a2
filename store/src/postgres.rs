//! The PostgreSQL store, for production and for several control-plane replicas sharing state.
//!
//! Writes are single statements with the version check in their `WHERE` clause (optimistic
//! concurrency). Change events do not come from the writer: a trigger announces every committed
//! change with `pg_notify('atoll_changes', …)`, and each store keeps a `LISTEN` connection that
//! feeds its watchers, so every replica sees every replica's writes, in commit order.
//!
//! Notifications sent while the listener's connection is down are lost, so the trigger also
//! writes each change to a change log (`resource_changes`, pruned after
//! [`CHANGE_LOG_RETENTION`]). The listener keeps a cursor, a snapshot before which every change
//! has reached its watchers (moved forward by "marks" it notifies to itself), and when it
//! reconnects it replays the changes visible in a new snapshot and not in the cursor, deletions
//! included, before announcing new ones.

use std::collections::HashSet;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use atoll_backoff::Backoff;
use atoll_core::{Resource, ResourceKey};
use serde_json::Value;
use sqlx::migrate::{Migrate as _, Migrator};
use sqlx::postgres::{PgConnectOptions, PgListener, PgPool, PgPoolOptions, PgRow};
use sqlx::{Connection, Row};
use tokio::sync::broadcast;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::migrations;
use crate::row::{RawRow, encode, key_string, kind_of, parse_time, sql_int, time_text};
use crate::{
    ChangeEvent, ChangeOp, EVENT_BUFFER, ListFilter, ListPage, Result, Store, StoreError,
    StoreOptions, now,
};

/// The channel the trigger notifies on.
pub const CHANNEL: &str = "atoll_changes";

/// The `application_name` of the listener's session (`pg_stat_activity`).
pub const LISTENER_APPLICATION_NAME: &str = "atoll-listener";

/// Advisory lock key serializing the carry-over of the legacy migrations table across replicas
/// ("atoll" in ASCII).
const LEGACY_ADOPTION_LOCK: i64 = 0x61_74_6f_6c_6c;

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
    let result = apply_migrations(&mut conn).await;
    let _ = conn.close().await;
    result
}

async fn apply_migrations(conn: &mut sqlx::PgConnection) -> Result<usize> {
    let migrator: &Migrator = &migrations::POSTGRES;
    let table = &*migrator.table_name;
    let error = |e| migrations::migrate_error("postgres", migrator, e);
    // Carrying over the legacy table happens once, under a lock of ours so that replicas
    // starting together do it one at a time; sqlx's run below takes its own advisory lock.
    sqlx::query("SELECT pg_advisory_lock($1)")
        .bind(LEGACY_ADOPTION_LOCK)
        .execute(&mut *conn)
        .await
        .map_err(backend)?;
    let adopted = async {
        conn.ensure_migrations_table(table).await.map_err(error)?;
        adopt_legacy_versions(conn, table).await?;
        Ok::<_, StoreError>(
            conn.list_applied_migrations(table)
                .await
                .map_err(error)?
                .len(),
        )
    }
    .await;
    sqlx::query("SELECT pg_advisory_unlock($1)")
        .bind(LEGACY_ADOPTION_LOCK)
        .execute(&mut *conn)
        .await
        .map_err(backend)?;
    let before = adopted?;
    // `run_direct` is what `run` calls once it has a connection; calling it directly avoids
    // `run`'s `Acquire` bound, which is "not general enough" inside the callers' `Send`
    // futures (sqlx's own workaround).
    migrator
        .run_direct(None, &mut *conn, false)
        .await
        .map_err(error)?;
    let after = conn
        .list_applied_migrations(table)
        .await
        .map_err(error)?
        .len();
    Ok(after.saturating_sub(before))
}

/// Records in sqlx's table what the legacy `schema_migrations` table lists, then drops it, in
/// one transaction.
async fn adopt_legacy_versions(conn: &mut sqlx::PgConnection, table: &str) -> Result<()> {
    let mut tx = conn.begin().await.map_err(backend)?;
    let legacy: bool = sqlx::query_scalar("SELECT to_regclass($1) IS NOT NULL")
        .bind(migrations::LEGACY_TABLE)
        .fetch_one(&mut *tx)
        .await
        .map_err(backend)?;
    if !legacy {
        return Ok(());
    }
    let versions: Vec<i64> = sqlx::query_scalar("SELECT version FROM schema_migrations")
        .fetch_all(&mut *tx)
        .await
        .map_err(backend)?;
    for m in migrations::adoption(&migrations::POSTGRES, &versions)? {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO {table} (version, description, success, checksum, execution_time) \
             VALUES ($1, $2, TRUE, $3, 0) ON CONFLICT DO NOTHING"
        )))
        .bind(m.version)
        .bind(&*m.description)
        .bind(&*m.checksum)
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
    }
    sqlx::raw_sql("DROP TABLE schema_migrations")
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
    tx.commit().await.map_err(backend)?;
    tracing::info!(
        adopted = versions.len(),
        "recorded the legacy schema_migrations in sqlx's migrations table"
    );
    Ok(())
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

/// Reads one trigger notification: the change and its id in the change log (absent in
/// notifications from a trigger older than the change log).
fn parse_notification(payload: &str) -> Result<(Option<i64>, ChangeEvent)> {
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
    let version = v
        .get("version")
        .and_then(Value::as_i64)
        .ok_or_else(|| bad("no integer field version".into()))?;
    let event = change_event(
        field("op")?,
        field("kind")?,
        field("mesh")?,
        field("name")?,
        version,
    )?;
    Ok((v.get("id").and_then(Value::as_i64), event))
}

/// A change as the trigger describes it (`op` is the trigger's `TG_OP`).
fn change_event(op: &str, kind: &str, mesh: &str, name: &str, version: i64) -> Result<ChangeEvent> {
    let op = match op {
        "INSERT" => ChangeOp::Created,
        "UPDATE" => ChangeOp::Updated,
        "DELETE" => ChangeOp::Deleted,
        other => {
            return Err(StoreError::Corrupt {
                key: format!("{kind}/{mesh}/{name}"),
                reason: format!("unknown change op {other:?}"),
            });
        }
    };
    let kind = kind_of(kind, || format!("{kind}/{mesh}/{name}"))?;
    Ok(ChangeEvent {
        op,
        key: ResourceKey::new(kind, mesh, name),
        version,
    })
}

/// How often a listener marks its progress (moves its [`Cursor`] forward). It bounds how many
/// changes a reconnect replays twice, and keeps the cursor younger than the change log.
const MARK_EVERY: Duration = Duration::from_secs(5);
/// How long the change log keeps a change. A listener away longer than this (less
/// [`RETENTION_SLACK_SECS`]) cannot replay everything it missed.
pub const CHANGE_LOG_RETENTION: Duration = Duration::from_secs(3600);
/// A change's `changed_at` is its transaction's start, which may precede the cursor it
/// committed after: the change log is trusted only up to this much younger than its retention.
const RETENTION_SLACK_SECS: f64 = 300.0;
/// How often each listener prunes the change log.
const PRUNE_EVERY: Duration = Duration::from_secs(60);

/// A point in the database's commit order before which every change has been sent to the
/// watchers: a snapshot (`pg_current_snapshot()`, as text) and the database's clock then.
#[derive(Debug, Clone)]
struct Cursor {
    snapshot: String,
    at_epoch: f64,
}

/// What the listener knows across its connections.
struct ListenerState {
    cursor: Cursor,
    /// Change-log ids sent since the previous two cursors: a replay or a notification of a
    /// change already sent is skipped (watchers must tolerate repeats, but need not see them).
    sent: HashSet<i64>,
    sent_before: HashSet<i64>,
    next_mark: u64,
}

impl ListenerState {
    fn new(cursor: Cursor) -> Self {
        Self {
            cursor,
            sent: HashSet::new(),
            sent_before: HashSet::new(),
            next_mark: 0,
        }
    }

    /// Sends a change unless it was sent already.
    fn send(
        &mut self,
        id: Option<i64>,
        event: ChangeEvent,
        events: &broadcast::Sender<ChangeEvent>,
    ) {
        if let Some(id) = id
            && (self.sent_before.contains(&id) || !self.sent.insert(id))
        {
            return;
        }
        let _ = events.send(event);
    }

    fn advance(&mut self, cursor: Cursor) {
        self.cursor = cursor;
        self.sent_before = std::mem::take(&mut self.sent);
    }
}

/// One connection of the listener.
struct ListenerSession {
    listener: PgListener,
    /// The channel this session's marks come back on (`atoll_mark_<backend pid>`).
    mark_channel: String,
    /// The mark sent and not yet back, with the cursor its return confirms.
    pending: Option<(u64, Cursor)>,
}

/// Connects, listens for changes and for its own marks, and takes the snapshot of the moment
/// from which this connection announces changes.
async fn open_session(pool: &PgPool) -> Result<(ListenerSession, Cursor)> {
    let mut listener = PgListener::connect_with(pool).await.map_err(backend)?;
    // A lost connection is reopened here (with a replay), not silently inside sqlx.
    listener.eager_reconnect(false);
    listener.listen(CHANNEL).await.map_err(backend)?;
    let pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
        .fetch_one(&mut listener)
        .await
        .map_err(backend)?;
    let mark_channel = format!("atoll_mark_{pid}");
    listener.listen(&mark_channel).await.map_err(backend)?;
    let (snapshot, at_epoch): (String, f64) =
        sqlx::query_as("SELECT pg_current_snapshot()::text, extract(epoch FROM now())::float8")
            .fetch_one(&mut listener)
            .await
            .map_err(backend)?;
    Ok((
        ListenerSession {
            listener,
            mark_channel,
            pending: None,
        },
        Cursor { snapshot, at_epoch },
    ))
}

impl ListenerSession {
    /// Takes a snapshot and, in the same transaction, notifies this session's mark channel.
    /// Notifications arrive in commit order, so when the mark comes back every change visible
    /// in the snapshot has arrived before it: the snapshot becomes the cursor.
    async fn send_mark(&mut self, seq: u64) -> Result<()> {
        let (snapshot, at_epoch): (String, f64) = sqlx::query_as(
            "WITH mark AS (SELECT pg_notify($1, $2)) \
             SELECT pg_current_snapshot()::text, extract(epoch FROM now())::float8 FROM mark",
        )
        .bind(&self.mark_channel)
        .bind(seq.to_string())
        .fetch_one(&mut self.listener)
        .await
        .map_err(backend)?;
        self.pending = Some((seq, Cursor { snapshot, at_epoch }));
        Ok(())
    }

    /// The cursor a returning mark confirms.
    fn mark_returned(&mut self, payload: &str) -> Option<Cursor> {
        match &self.pending {
            Some((seq, _)) if payload == seq.to_string() => self.pending.take().map(|(_, c)| c),
            _ => None,
        }
    }

    /// Sends every change committed after `state.cursor` and before `now` (what the watchers
    /// missed while no connection listened), in change-log order; `now` becomes the cursor.
    /// Returns how many changes were replayed.
    async fn replay(
        &mut self,
        now: Cursor,
        state: &mut ListenerState,
        events: &broadcast::Sender<ChangeEvent>,
    ) -> Result<usize> {
        let away = now.at_epoch - state.cursor.at_epoch;
        if away > CHANGE_LOG_RETENTION.as_secs_f64() - RETENTION_SLACK_SECS {
            tracing::error!(
                away_secs = away as u64,
                retention_secs = CHANGE_LOG_RETENTION.as_secs(),
                "the PostgreSQL change listener was away longer than the change log keeps \
                 changes: some may never reach this control plane's watchers; restart it to \
                 rebuild its state from the store"
            );
        }
        let rows: Vec<(i64, String, String, String, String, i64)> = sqlx::query_as(
            "SELECT id, op, kind, mesh, name, version FROM resource_changes \
             WHERE xid >= pg_snapshot_xmin($1::pg_snapshot) \
             AND pg_visible_in_snapshot(xid, $2::pg_snapshot) \
             AND NOT pg_visible_in_snapshot(xid, $1::pg_snapshot) \
             ORDER BY id",
        )
        .bind(&state.cursor.snapshot)
        .bind(&now.snapshot)
        .fetch_all(&mut self.listener)
        .await
        .map_err(backend)?;
        let replayed = rows.len();
        for (id, op, kind, mesh, name, version) in rows {
            match change_event(&op, &kind, &mesh, &name, version) {
                Ok(event) => state.send(Some(id), event, events),
                Err(e) => tracing::warn!(error = %e, id, "ignoring an unreadable change-log row"),
            }
        }
        state.advance(now);
        Ok(replayed)
    }
}

/// Deletes changes older than the retention (every listener does, now and then).
async fn prune_change_log(pool: &PgPool) {
    let done = sqlx::query(
        "DELETE FROM resource_changes WHERE changed_at < now() - make_interval(secs => $1)",
    )
    .bind(CHANGE_LOG_RETENTION.as_secs_f64())
    .execute(pool)
    .await;
    match done {
        Ok(d) if d.rows_affected() > 0 => {
            tracing::debug!(pruned = d.rows_affected(), "pruned the change log")
        }
        Ok(_) => {}
        Err(e) => tracing::debug!(error = %e, "cannot prune the change log; trying later"),
    }
}

/// Feeds changes to the broadcast channel until the store is dropped (which aborts it). When
/// its connection fails it reconnects with backoff and replays from the change log what was
/// committed meanwhile, so watchers miss nothing.
async fn run_listener(
    pool: PgPool,
    listener_pool: PgPool,
    first: ListenerSession,
    mut state: ListenerState,
    events: broadcast::Sender<ChangeEvent>,
) {
    let mut session = Some(first);
    let mut backoff = Backoff::new(MIN_BACKOFF, MAX_BACKOFF);
    let mut next_mark = Instant::now() + MARK_EVERY;
    let mut next_prune = Instant::now();
    loop {
        let Some(s) = session.as_mut() else {
            let reopened = async {
                let (mut s, now) = open_session(&listener_pool).await?;
                let replayed = s.replay(now, &mut state, &events).await?;
                Ok::<_, StoreError>((s, replayed))
            };
            match reopened.await {
                Ok((s, replayed)) => {
                    tracing::info!(
                        replayed,
                        "PostgreSQL change listener reconnected; replayed the changes committed \
                         while it was down"
                    );
                    session = Some(s);
                    backoff.reset();
                }
                Err(e) => {
                    let delay = backoff.next_delay();
                    tracing::warn!(error = %e, retry_in = ?delay, "PostgreSQL change listener cannot reconnect");
                    tokio::time::sleep(delay).await;
                }
            }
            continue;
        };
        let now = Instant::now();
        if now >= next_mark {
            next_mark = now + MARK_EVERY;
            let seq = state.next_mark;
            state.next_mark += 1;
            if let Err(e) = s.send_mark(seq).await {
                tracing::warn!(error = %e, "PostgreSQL change listener failed; reconnecting");
                session = None;
                continue;
            }
            if now >= next_prune {
                next_prune = now + PRUNE_EVERY;
                prune_change_log(&pool).await;
            }
        }
        let received = match tokio::time::timeout_at(next_mark, s.listener.try_recv()).await {
            Err(_) => continue,
            Ok(received) => received,
        };
        match received {
            Ok(Some(n)) if n.channel() == s.mark_channel => {
                if let Some(cursor) = s.mark_returned(n.payload()) {
                    state.advance(cursor);
                }
            }
            Ok(Some(n)) => match parse_notification(n.payload()) {
                Ok((id, event)) => state.send(id, event, &events),
                Err(e) => tracing::warn!(error = %e, "ignoring unreadable change notification"),
            },
            Ok(None) => {
                tracing::warn!("PostgreSQL change listener lost its connection; reconnecting");
                session = None;
            }
            Err(e) => {
                let delay = backoff.next_delay();
                tracing::warn!(error = %e, retry_in = ?delay, "PostgreSQL change listener failed; reconnecting");
                session = None;
                tokio::time::sleep(delay).await;
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
    /// (before returning, so no change committed after `connect` returns is missed), with the
    /// default [`StoreOptions`].
    pub async fn connect(url: &str) -> Result<Self> {
        Self::connect_with(url, &StoreOptions::default()).await
    }

    /// [`PostgresStore::connect`] with options: an operation waits at most `options.timeout`
    /// for a connection (the database being away) before failing with
    /// [`StoreError::Backend`].
    pub async fn connect_with(url: &str, options: &StoreOptions) -> Result<Self> {
        let connect = parse_options(url)?;
        migrate_with(&connect).await?;
        let pool = PgPoolOptions::new()
            .max_connections(10)
            .acquire_timeout(options.timeout)
            .connect_with(connect.clone())
            .await
            .map_err(backend)?;
        // The listener's own one-connection pool, which it also uses to reconnect; its
        // application name lets operators (and tests) find its session.
        let listener_pool = PgPoolOptions::new()
            .max_connections(1)
            .max_lifetime(None)
            .idle_timeout(None)
            .acquire_timeout(options.timeout)
            .connect_with(connect.application_name(LISTENER_APPLICATION_NAME))
            .await
            .map_err(backend)?;
        let (session, cursor) = open_session(&listener_pool).await?;
        let events = broadcast::channel(EVENT_BUFFER).0;
        let task = tokio::spawn(run_listener(
            pool.clone(),
            listener_pool,
            session,
            ListenerState::new(cursor),
            events.clone(),
        ));
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
        let (id, e) = parse_notification(
            r#"{"id": 7, "op" : "UPDATE", "kind" : "MeshTimeout", "mesh" : "default", "name" : "t", "version" : 4}"#,
        )
        .expect("parses");
        assert_eq!(id, Some(7));
        assert_eq!(
            e,
            ChangeEvent {
                op: ChangeOp::Updated,
                key: ResourceKey::new(Kind::MeshTimeout, "default", "t"),
                version: 4
            }
        );
        let (id, g) =
            parse_notification(r#"{"op":"DELETE","kind":"Mesh","mesh":"","name":"m","version":1}"#)
                .expect("parses");
        assert_eq!(
            id, None,
            "notifications of the trigger before the change log have no id"
        );
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

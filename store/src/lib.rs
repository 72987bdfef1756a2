//! Where resources live: the `Store` trait and its backends (SQLite, the embedded default;
//! PostgreSQL for production; memory for tests and throwaway runs).
//!
//! Every backend offers the same contract, checked by one conformance suite (`conformance`):
//! optimistic concurrency on a version number, and change events for watchers. This crate is the
//! only one that talks SQL; it knows nothing of HTTP, xDS or KDS.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use atoll_core::{Kind, Resource, ResourceKey};
use chrono::{DateTime, Utc};
use tokio::sync::broadcast;

#[doc(hidden)]
#[cfg(any(test, feature = "conformance"))]
pub mod conformance;
mod list_sql;
pub mod memory;
mod migrations;
pub mod postgres;
mod row;
pub mod sqlite;

pub use memory::MemoryStore;
pub use postgres::PostgresStore;
pub use sqlite::SqliteStore;

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Create of a key that exists.
    #[error("{0} already exists")]
    AlreadyExists(ResourceKey),
    /// Update or delete of a key that does not exist.
    #[error("{0} not found")]
    NotFound(ResourceKey),
    /// Update or delete with a stale version: someone else wrote in between. Retryable after a
    /// fresh read.
    #[error("{key} was changed concurrently: expected version {expected}, found {found}")]
    Conflict {
        key: ResourceKey,
        expected: i64,
        found: i64,
    },
    /// The backend is unreachable or failed. Usually retryable.
    #[error("store backend error: {0}")]
    Backend(String),
    /// A stored row could not be decoded (corruption or a newer schema).
    #[error("stored data for {key} is unreadable: {reason}")]
    Corrupt { key: String, reason: String },
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// What a list returns: one page and the total matching.
#[derive(Debug, Clone, Default)]
pub struct ListPage {
    pub items: Vec<Resource>,
    /// How many resources match the filter in all.
    pub total: u64,
}

/// Which resources to list. Results are ordered by (mesh, name).
#[derive(Debug, Clone)]
pub struct ListFilter {
    pub kind: Kind,
    /// Only this mesh (mesh-scoped kinds); `None` lists every mesh.
    pub mesh: Option<String>,
    /// Only names starting with this prefix.
    pub name_prefix: Option<String>,
    pub offset: u64,
    /// Page size; `None` returns everything from `offset`.
    pub limit: Option<u64>,
}

impl ListFilter {
    pub fn all(kind: Kind) -> Self {
        Self {
            kind,
            mesh: None,
            name_prefix: None,
            offset: 0,
            limit: None,
        }
    }

    pub fn in_mesh(kind: Kind, mesh: impl Into<String>) -> Self {
        Self {
            mesh: Some(mesh.into()),
            ..Self::all(kind)
        }
    }
}

/// What happened to a resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeOp {
    Created,
    Updated,
    Deleted,
}

/// A change event: sent to every watcher after a write commits (also writes made by other
/// control-plane replicas sharing a PostgreSQL database).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangeEvent {
    pub op: ChangeOp,
    pub key: ResourceKey,
    /// The version after the change (the deleted version for deletes).
    pub version: i64,
}

/// The storage contract every backend implements.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// A short name for logs and metrics: `sqlite`, `postgres`, `memory`.
    fn backend_name(&self) -> &'static str;

    async fn get(&self, key: &ResourceKey) -> Result<Option<Resource>>;

    async fn list(&self, filter: &ListFilter) -> Result<ListPage>;

    /// Stores a new resource: version 1, creation and modification time set to now.
    async fn create(&self, resource: Resource) -> Result<Resource>;

    /// Replaces a resource if its stored version is `expected_version`; the new version is
    /// `expected_version + 1` and the creation time is kept.
    async fn update(&self, resource: Resource, expected_version: i64) -> Result<Resource>;

    /// Deletes a resource; with `expected_version`, only if it is still at that version.
    async fn delete(&self, key: &ResourceKey, expected_version: Option<i64>) -> Result<()>;

    /// Deletes every resource of a mesh (all kinds) and returns how many went. Used when a Mesh
    /// is deleted.
    async fn delete_mesh_contents(&self, mesh: &str) -> Result<u64>;

    /// Subscribes to change events from now on. A receiver that lags gets
    /// `RecvError::Lagged` and must resync with `list`. Events are delivered asynchronously
    /// with PostgreSQL (through LISTEN), so a new receiver may still get events of writes that
    /// committed just before it subscribed: apply events idempotently (subscribe, then list).
    fn watch(&self) -> broadcast::Receiver<ChangeEvent>;

    /// Checks that the backend answers (readiness).
    async fn ping(&self) -> Result<()>;
}

pub type SharedStore = Arc<dyn Store>;

/// How many change events a slow watcher may fall behind before it gets `RecvError::Lagged`.
pub(crate) const EVENT_BUFFER: usize = 4096;

/// Now, truncated to the microsecond: the precision every backend stores, so what `create`
/// returns equals what a later `get` reads back.
pub(crate) fn now() -> DateTime<Utc> {
    let now = Utc::now();
    DateTime::from_timestamp_micros(now.timestamp_micros()).unwrap_or(now)
}

/// Default file name of the embedded SQLite store inside the data directory.
pub const DEFAULT_SQLITE_FILE: &str = "atoll.db";

/// A store location parsed from a `--store` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreUrl {
    Memory,
    Sqlite(PathBuf),
    Postgres(String),
}

impl StoreUrl {
    /// Parses a store URL: `memory`, `sqlite://PATH` (a relative PATH is resolved against
    /// `data_dir`; `sqlite://` alone or an empty URL is `data_dir/atoll.db`), or
    /// `postgres://...` / `postgresql://...`.
    pub fn parse(url: &str, data_dir: &Path) -> Result<StoreUrl> {
        let url = url.trim();
        if url.is_empty() {
            return Ok(StoreUrl::Sqlite(data_dir.join(DEFAULT_SQLITE_FILE)));
        }
        if url == "memory" || url == "memory://" || url == "memory:" {
            return Ok(StoreUrl::Memory);
        }
        if let Some(rest) = url
            .strip_prefix("sqlite://")
            .or_else(|| url.strip_prefix("sqlite:"))
        {
            if rest.is_empty() {
                return Ok(StoreUrl::Sqlite(data_dir.join(DEFAULT_SQLITE_FILE)));
            }
            if rest.contains('?') {
                return Err(StoreError::Backend(format!(
                    "unsupported store URL {url:?}: SQLite URLs take no parameters \
                     (use sqlite://PATH)"
                )));
            }
            let path = Path::new(rest);
            return Ok(StoreUrl::Sqlite(if path.is_absolute() {
                path.to_path_buf()
            } else {
                data_dir.join(path)
            }));
        }
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            return Ok(StoreUrl::Postgres(url.to_string()));
        }
        // Print only the scheme: the rest may hold a password.
        let shown = match url.split_once("://") {
            Some((scheme, _)) => format!("a {scheme}:// URL"),
            None => format!("{url:?}"),
        };
        Err(StoreError::Backend(format!(
            "unsupported store {shown}: expected `memory`, `sqlite://PATH` (relative to the data \
             directory) or `postgres://USER:PASSWORD@HOST:PORT/DATABASE`"
        )))
    }
}

/// Settings of a store that its URL does not hold.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// PostgreSQL: how long an operation waits for a connection while the database is away
    /// before failing with [`StoreError::Backend`] (the API answers 503 then).
    pub timeout: Duration,
}

impl StoreOptions {
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            timeout: Self::DEFAULT_TIMEOUT,
        }
    }
}

/// Opens the store a URL names (see [`StoreUrl::parse`]), applying pending schema migrations.
pub async fn open(url: &str, data_dir: &Path) -> Result<SharedStore> {
    open_with(url, data_dir, &StoreOptions::default()).await
}

/// [`open`] with options.
pub async fn open_with(url: &str, data_dir: &Path, options: &StoreOptions) -> Result<SharedStore> {
    Ok(match StoreUrl::parse(url, data_dir)? {
        StoreUrl::Memory => Arc::new(MemoryStore::new()),
        StoreUrl::Sqlite(path) => Arc::new(SqliteStore::open(&path).await?),
        StoreUrl::Postgres(url) => Arc::new(PostgresStore::connect_with(&url, options).await?),
    })
}

/// Applies pending schema migrations to the store a URL names and returns how many were applied
/// (0 when the schema is current). A relative SQLite path is resolved against the current
/// directory; see [`migrate_in`] to resolve it against a data directory as [`open`] does.
pub async fn migrate(url: &str) -> Result<usize> {
    migrate_in(url, Path::new(".")).await
}

/// [`migrate`], resolving a relative SQLite path against `data_dir`.
pub async fn migrate_in(url: &str, data_dir: &Path) -> Result<usize> {
    match StoreUrl::parse(url, data_dir)? {
        StoreUrl::Memory => Ok(0),
        StoreUrl::Sqlite(path) => sqlite::migrate_file(&path).await,
        StoreUrl::Postgres(url) => postgres::migrate_url(&url).await,
    }
}

/// Receives the latency of every store operation: `(operation, backend, elapsed)`, where the
/// operation is one of `get`, `list`, `create`, `update`, `delete`, `delete_mesh_contents`,
/// `ping`, and the backend is [`Store::backend_name`].
pub type StoreObserver = Arc<dyn Fn(&'static str, &'static str, Duration) + Send + Sync>;

/// A store that reports each operation's latency to an observer (for Prometheus histograms in
/// the CP), successful or not, and otherwise behaves exactly as the store it wraps.
pub struct InstrumentedStore {
    inner: SharedStore,
    observer: StoreObserver,
}

impl InstrumentedStore {
    pub fn new(
        inner: SharedStore,
        observer: impl Fn(&'static str, &'static str, Duration) + Send + Sync + 'static,
    ) -> Self {
        Self {
            inner,
            observer: Arc::new(observer),
        }
    }

    /// Wraps `inner` and returns the result as a [`SharedStore`].
    pub fn shared(
        inner: SharedStore,
        observer: impl Fn(&'static str, &'static str, Duration) + Send + Sync + 'static,
    ) -> SharedStore {
        Arc::new(Self::new(inner, observer))
    }

    fn observe(&self, op: &'static str, started: Instant) {
        (self.observer)(op, self.inner.backend_name(), started.elapsed());
    }
}

#[async_trait]
impl Store for InstrumentedStore {
    fn backend_name(&self) -> &'static str {
        self.inner.backend_name()
    }

    async fn get(&self, key: &ResourceKey) -> Result<Option<Resource>> {
        let t = Instant::now();
        let r = self.inner.get(key).await;
        self.observe("get", t);
        r
    }

    async fn list(&self, filter: &ListFilter) -> Result<ListPage> {
        let t = Instant::now();
        let r = self.inner.list(filter).await;
        self.observe("list", t);
        r
    }

    async fn create(&self, resource: Resource) -> Result<Resource> {
        let t = Instant::now();
        let r = self.inner.create(resource).await;
        self.observe("create", t);
        r
    }

    async fn update(&self, resource: Resource, expected_version: i64) -> Result<Resource> {
        let t = Instant::now();
        let r = self.inner.update(resource, expected_version).await;
        self.observe("update", t);
        r
    }

    async fn delete(&self, key: &ResourceKey, expected_version: Option<i64>) -> Result<()> {
        let t = Instant::now();
        let r = self.inner.delete(key, expected_version).await;
        self.observe("delete", t);
        r
    }

    async fn delete_mesh_contents(&self, mesh: &str) -> Result<u64> {
        let t = Instant::now();
        let r = self.inner.delete_mesh_contents(mesh).await;
        self.observe("delete_mesh_contents", t);
        r
    }

    fn watch(&self) -> broadcast::Receiver<ChangeEvent> {
        self.inner.watch()
    }

    async fn ping(&self) -> Result<()> {
        let t = Instant::now();
        let r = self.inner.ping().await;
        self.observe("ping", t);
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[test]
    fn parses_store_urls() {
        let dir = Path::new("/var/lib/atoll");
        assert_eq!(StoreUrl::parse("memory", dir).ok(), Some(StoreUrl::Memory));
        assert_eq!(
            StoreUrl::parse("", dir).ok(),
            Some(StoreUrl::Sqlite(dir.join("atoll.db")))
        );
        assert_eq!(
            StoreUrl::parse("sqlite://", dir).ok(),
            Some(StoreUrl::Sqlite(dir.join("atoll.db")))
        );
        assert_eq!(
            StoreUrl::parse("sqlite://cp.db", dir).ok(),
            Some(StoreUrl::Sqlite(dir.join("cp.db")))
        );
        assert_eq!(
            StoreUrl::parse("sqlite://sub/cp.db", dir).ok(),
            Some(StoreUrl::Sqlite(dir.join("sub/cp.db")))
        );
        assert_eq!(
            StoreUrl::parse("sqlite:///tmp/x.db", dir).ok(),
            Some(StoreUrl::Sqlite(PathBuf::from("/tmp/x.db")))
        );
        assert_eq!(
            StoreUrl::parse("postgres://u:p@h:5432/db", dir).ok(),
            Some(StoreUrl::Postgres("postgres://u:p@h:5432/db".into()))
        );
        assert_eq!(
            StoreUrl::parse("postgresql://h/db?sslmode=disable", dir).ok(),
            Some(StoreUrl::Postgres(
                "postgresql://h/db?sslmode=disable".into()
            ))
        );
    }

    #[test]
    fn rejects_unknown_store_urls_without_echoing_secrets() {
        let err = StoreUrl::parse("mysql://root:hunter2@db/atoll", Path::new("/d"))
            .expect_err("mysql is not supported");
        let msg = err.to_string();
        assert!(msg.contains("mysql://"), "{msg}");
        assert!(msg.contains("postgres://"), "{msg}");
        assert!(!msg.contains("hunter2"), "{msg}");
        assert!(StoreUrl::parse("etcd", Path::new("/d")).is_err());
        assert!(StoreUrl::parse("sqlite://x.db?mode=ro", Path::new("/d")).is_err());
    }

    #[tokio::test]
    async fn instrumented_store_reports_each_operation() {
        let seen: Arc<Mutex<Vec<(&'static str, &'static str)>>> = Arc::default();
        let sink = seen.clone();
        let store = InstrumentedStore::shared(Arc::new(MemoryStore::new()), move |op, be, _| {
            sink.lock()
                .unwrap_or_else(|e| e.into_inner())
                .push((op, be));
        });
        let r = Resource::new(Kind::Mesh, "", "default");
        let created = store.create(r).await.expect("create");
        store.get(&created.key()).await.expect("get");
        store
            .list(&ListFilter::all(Kind::Mesh))
            .await
            .expect("list");
        store.update(created.clone(), 1).await.expect("update");
        assert!(store.delete(&created.key(), Some(1)).await.is_err());
        store.delete(&created.key(), None).await.expect("delete");
        store.ping().await.expect("ping");
        let seen = seen.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let ops: Vec<_> = seen.iter().map(|(op, _)| *op).collect();
        assert_eq!(
            ops,
            [
                "create", "get", "list", "update", "delete", "delete", "ping"
            ]
        );
        assert!(seen.iter().all(|(_, be)| *be == "memory"));
    }

    #[tokio::test]
    async fn open_dispatches_on_the_url() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mem = open("memory", dir.path()).await.expect("memory");
        assert_eq!(mem.backend_name(), "memory");
        let lite = open("sqlite://", dir.path()).await.expect("sqlite");
        assert_eq!(lite.backend_name(), "sqlite");
        assert!(dir.path().join("atoll.db").exists());
        let nested = open("sqlite://a/b/c.db", dir.path())
            .await
            .expect("nested sqlite");
        nested.ping().await.expect("ping");
        assert!(dir.path().join("a/b/c.db").exists());
        assert!(open("redis://x", dir.path()).await.is_err());
        assert_eq!(
            migrate_in("sqlite://", dir.path()).await.expect("migrate"),
            0
        );
        assert_eq!(
            migrate_in("sqlite://m.db", dir.path())
                .await
                .expect("migrate"),
            crate::migrations::SQLITE.iter().count()
        );
        assert_eq!(
            migrate_in("sqlite://m.db", dir.path())
                .await
                .expect("migrate"),
            0
        );
    }

    /// A file as Atoll's own runner left it: the migrations applied and listed in
    /// `schema_migrations`.
    async fn legacy_sqlite_file(path: &Path, versions: &[i64]) {
        use sqlx::Connection as _;
        let options = sqlx::sqlite::SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true);
        let mut conn = sqlx::SqliteConnection::connect_with(&options)
            .await
            .expect("connect");
        sqlx::raw_sql(
            "CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, \
             applied_at TEXT NOT NULL)",
        )
        .execute(&mut conn)
        .await
        .expect("legacy table");
        for v in versions {
            if let Some(m) = crate::migrations::SQLITE.iter().find(|m| m.version == *v) {
                sqlx::raw_sql(sqlx::AssertSqlSafe(m.sql.as_str().to_string()))
                    .execute(&mut conn)
                    .await
                    .expect("old migration");
            }
            sqlx::query("INSERT INTO schema_migrations VALUES (?1, 'x', '2026-01-01T00:00:00Z')")
                .bind(v)
                .execute(&mut conn)
                .await
                .expect("legacy row");
        }
        conn.close().await.expect("close");
    }

    #[tokio::test]
    async fn a_database_of_the_old_migration_runner_is_carried_over_without_reapplying() {
        let dir = tempfile::tempdir().expect("tempdir");
        legacy_sqlite_file(&dir.path().join("old.db"), &[1]).await;
        // Only what the old runner had not applied yet is applied.
        assert_eq!(
            migrate_in("sqlite://old.db", dir.path())
                .await
                .expect("migrate"),
            crate::migrations::SQLITE.iter().count() - 1
        );
        let store = open("sqlite://old.db", dir.path()).await.expect("open");
        store.ping().await.expect("ping");
        assert_eq!(
            migrate_in("sqlite://old.db", dir.path())
                .await
                .expect("migrate"),
            0
        );

        legacy_sqlite_file(&dir.path().join("newer.db"), &[1, 999]).await;
        let err = migrate_in("sqlite://newer.db", dir.path())
            .await
            .expect_err("schema of a newer Atoll");
        assert!(err.to_string().contains("999"), "{err}");
        assert!(err.to_string().contains("upgrade Atoll"), "{err}");
    }
}

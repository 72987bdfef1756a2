//! Runs the `Store` conformance suite against every backend: memory, SQLite (a temporary
//! directory) and PostgreSQL (a fresh database per test under `ATOLL_TEST_POSTGRES_URL`; skipped
//! with a notice when unset, failed when `CI` is set), plus the behaviour only SQL backends
//! have: persistence, migrations, several PostgreSQL replicas seeing each other's writes.

use std::sync::Arc;
use std::time::Duration;

use atoll_core::{Kind, Resource, ResourceKey};
use atoll_store::conformance::EVENT_TIMEOUT;
use atoll_store::{
    ChangeEvent, ChangeOp, ListFilter, PostgresStore, SharedStore, SqliteStore, Store, StoreError,
};
use atoll_test_support::postgres::with_postgres_database;
use tokio::sync::broadcast;

/// One test per (case, backend). Each test gets a fresh store.
macro_rules! conformance_tests {
    ($($case:ident),+ $(,)?) => {
        mod memory {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let store: atoll_store::SharedStore =
                        std::sync::Arc::new(atoll_store::MemoryStore::new());
                    atoll_store::conformance::$case(store).await;
                }
            )+
        }
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let dir = tempfile::tempdir().expect("tempdir");
                    let store = atoll_store::SqliteStore::open(&dir.path().join("atoll.db"))
                        .await
                        .expect("open sqlite");
                    atoll_store::conformance::$case(std::sync::Arc::new(store)).await;
                }
            )+
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    atoll_test_support::postgres::with_postgres_database(
                        concat!("postgres::", stringify!($case)),
                        |url| async move {
                            let store = atoll_store::PostgresStore::connect(&url)
                                .await
                                .expect("connect postgres");
                            atoll_store::conformance::$case(std::sync::Arc::new(store)).await;
                        },
                    )
                    .await;
                }
            )+
        }
        /// Every case in `conformance::CASES` has a test here.
        #[test]
        fn every_case_is_run() {
            let here = [$(stringify!($case)),+];
            for (name, _) in atoll_store::conformance::CASES {
                assert!(here.contains(name), "conformance case {name} is not run by this file");
            }
            assert_eq!(here.len(), atoll_store::conformance::CASES.len());
        }
    };
}

conformance_tests!(
    create_get,
    list_filters_order_and_pages,
    create_duplicate_is_already_exists,
    update_bumps_version_keeps_creation_time,
    stale_update_conflicts_and_changes_nothing,
    update_missing_is_not_found,
    delete_checks_version_and_existence,
    delete_mesh_contents_deletes_only_that_mesh,
    watch_sees_changes_in_order,
    concurrent_updates_all_land,
    spec_field_order_is_preserved,
    global_and_mesh_scoped_keys_do_not_collide,
    large_list_paginates,
    ping_answers,
);

async fn next_event(rx: &mut broadcast::Receiver<ChangeEvent>) -> ChangeEvent {
    match tokio::time::timeout(EVENT_TIMEOUT, rx.recv()).await {
        Ok(Ok(e)) => e,
        Ok(Err(e)) => panic!("watch failed: {e}"),
        Err(_) => panic!("no change event within {EVENT_TIMEOUT:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_persists_across_reopen_and_is_in_wal_mode() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("nested/dir/atoll.db");
    let store = SqliteStore::open(&path).await.expect("open");
    assert_eq!(store.journal_mode().await.expect("pragma"), "wal");
    let mut r = Resource::new(Kind::MeshTimeout, "default", "kept");
    r.spec.insert("z".into(), serde_json::json!(1));
    r.spec.insert("a".into(), serde_json::json!(2));
    let created = store.create(r).await.expect("create");
    store.close().await;
    drop(store);
    let reopened = SqliteStore::open(&path)
        .await
        .expect("reopen (migrations idempotent)");
    let got = reopened
        .get(&created.key())
        .await
        .expect("get")
        .expect("persisted");
    assert_eq!(got, created);
    assert_eq!(
        atoll_store::migrate(&format!("sqlite://{}", path.display()))
            .await
            .expect("migrate"),
        0,
        "nothing left to migrate"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_two_handles_on_one_file_never_overwrite() {
    // Two stores on one file stand for two processes: the version check is in SQL, not only in
    // the in-process lock.
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("atoll.db");
    let a = SqliteStore::open(&path).await.expect("open a");
    let b = SqliteStore::open(&path).await.expect("open b");
    let created = a
        .create(Resource::new(Kind::Mesh, "", "m"))
        .await
        .expect("create");
    b.update(created.clone(), 1).await.expect("b updates");
    match a.update(created.clone(), 1).await {
        Err(StoreError::Conflict { found: 2, .. }) => {}
        other => panic!("expected Conflict, got {other:?}"),
    }
    let stores: Vec<SharedStore> = vec![Arc::new(a), Arc::new(b)];
    let mut tasks = Vec::new();
    for i in 0..8 {
        let store = stores[i % 2].clone();
        tasks.push(tokio::spawn(async move {
            let mut done = 0;
            while done < 5 {
                let cur = store
                    .get(&ResourceKey::global(Kind::Mesh, "m"))
                    .await
                    .expect("get")
                    .expect("exists");
                let v = cur.version;
                match store.update(cur, v).await {
                    Ok(_) => done += 1,
                    Err(StoreError::Conflict { .. }) => tokio::task::yield_now().await,
                    Err(e) => panic!("update: {e}"),
                }
            }
        }));
    }
    for t in tasks {
        t.await.expect("task");
    }
    let end = stores[0]
        .get(&ResourceKey::global(Kind::Mesh, "m"))
        .await
        .expect("get")
        .expect("exists");
    assert_eq!(end.version, 2 + 40);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_replicas_see_each_others_writes() {
    with_postgres_database(
        "postgres_replicas_see_each_others_writes",
        |url| async move {
            let a = PostgresStore::connect(&url).await.expect("connect a");
            let b = PostgresStore::connect(&url)
                .await
                .expect("connect b (migrations idempotent)");
            let mut a_events = a.watch();
            let mut b_events = b.watch();
            let created = a
                .create(Resource::new(Kind::MeshTimeout, "default", "shared"))
                .await
                .expect("create through a");
            let e = next_event(&mut b_events).await;
            assert_eq!(
                e,
                ChangeEvent {
                    op: ChangeOp::Created,
                    key: created.key(),
                    version: 1
                },
                "b sees a's write"
            );
            assert_eq!(
                next_event(&mut a_events).await,
                e,
                "a sees its own write once"
            );
            b.update(created.clone(), 1)
                .await
                .expect("update through b");
            assert_eq!(next_event(&mut a_events).await.op, ChangeOp::Updated);
            assert_eq!(next_event(&mut b_events).await.op, ChangeOp::Updated);
            let got = a.get(&created.key()).await.expect("get").expect("exists");
            assert_eq!(got.version, 2);
            b.delete(&created.key(), Some(2))
                .await
                .expect("delete through b");
            assert_eq!(
                next_event(&mut a_events).await,
                ChangeEvent {
                    op: ChangeOp::Deleted,
                    key: created.key(),
                    version: 2
                }
            );
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_listener_reconnects_after_losing_its_connection() {
    with_postgres_database("postgres_listener_reconnects", |url| async move {
        use sqlx::Connection;
        let store = PostgresStore::connect(&url).await.expect("connect");
        let mut events = store.watch();
        // Kill the listener's backend (the session that ran LISTEN) from another connection.
        let mut admin = sqlx::PgConnection::connect(&url).await.expect("admin");
        assert_eq!(
            kill_listener(&mut admin).await,
            [true],
            "exactly one listening session"
        );
        // Keep writing until an event arrives through the reconnected listener.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        let mut i = 0;
        loop {
            assert!(
                tokio::time::Instant::now() < deadline,
                "no event after the listener was killed"
            );
            store
                .create(Resource::new(Kind::Mesh, "", format!("after-{i}")))
                .await
                .expect("create");
            i += 1;
            if let Ok(Ok(e)) = tokio::time::timeout(Duration::from_millis(500), events.recv()).await
            {
                assert_eq!(e.op, ChangeOp::Created);
                break;
            }
        }
        let _ = admin.close().await;
    })
    .await;
}

/// Terminates the store listener's session (found by its application name) in the current
/// database; one `true` per session killed.
async fn kill_listener(admin: &mut sqlx::PgConnection) -> Vec<bool> {
    sqlx::query_scalar(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE datname = current_database() AND application_name = $1",
    )
    .bind(atoll_store::postgres::LISTENER_APPLICATION_NAME)
    .fetch_all(admin)
    .await
    .expect("terminate listener")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_watchers_get_every_change_made_while_the_listener_was_down() {
    with_postgres_database("postgres_watchers_miss_nothing", |url| async move {
        use sqlx::Connection;
        let store = PostgresStore::connect(&url).await.expect("connect");
        let mut events = store.watch();
        let doomed = store
            .create(Resource::new(Kind::MeshTimeout, "default", "doomed"))
            .await
            .expect("create doomed");
        let changed = store
            .create(Resource::new(Kind::MeshTimeout, "default", "changed"))
            .await
            .expect("create changed");
        for _ in 0..2 {
            assert_eq!(next_event(&mut events).await.op, ChangeOp::Created);
        }
        // Open several pool connections now: the writes below (and the listener's progress
        // marks, which share the pool) must not need a new one while new ones are refused.
        let all = atoll_store::ListFilter::all(Kind::MeshTimeout);
        let warm = (0..4).map(|_| store.list(&all));
        for listed in futures::future::join_all(warm).await {
            listed.expect("list");
        }
        let mut admin = sqlx::PgConnection::connect(&url).await.expect("admin");
        let database: String = sqlx::query_scalar("SELECT current_database()")
            .fetch_one(&mut admin)
            .await
            .expect("database name");
        // New connections to this test's database are refused, so the listener stays down
        // while the writes below go through connections already open. (PostgreSQL takes that
        // setting only from a session in another database.)
        let mut outside = sqlx::PgConnection::connect(
            &std::env::var(atoll_test_support::postgres::POSTGRES_URL_VAR).expect("admin URL"),
        )
        .await
        .expect("connect outside the test database");
        let allow = |on: bool| format!("ALTER DATABASE {database} ALLOW_CONNECTIONS {on}");
        sqlx::raw_sql(sqlx::AssertSqlSafe(allow(false)))
            .execute(&mut outside)
            .await
            .expect("refuse new connections");
        assert_eq!(kill_listener(&mut admin).await, [true], "one listener");
        store
            .create(Resource::new(Kind::MeshTimeout, "default", "born"))
            .await
            .expect("create while the listener is down");
        store
            .update(changed.clone(), 1)
            .await
            .expect("update while the listener is down");
        store
            .delete(&doomed.key(), None)
            .await
            .expect("delete while the listener is down");
        // Let the listener fail to reconnect at least once.
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert!(
            matches!(
                events.try_recv(),
                Err(broadcast::error::TryRecvError::Empty)
            ),
            "nothing can be announced while the listener is down"
        );
        sqlx::raw_sql(sqlx::AssertSqlSafe(allow(true)))
            .execute(&mut outside)
            .await
            .expect("allow connections again");
        let born = ResourceKey::new(Kind::MeshTimeout, "default", "born");
        let mut got = Vec::new();
        for _ in 0..3 {
            got.push(next_event(&mut events).await);
        }
        assert_eq!(
            got,
            [
                ChangeEvent {
                    op: ChangeOp::Created,
                    key: born.clone(),
                    version: 1
                },
                ChangeEvent {
                    op: ChangeOp::Updated,
                    key: changed.key(),
                    version: 2
                },
                ChangeEvent {
                    op: ChangeOp::Deleted,
                    key: doomed.key(),
                    version: 1
                },
            ],
            "the missed changes are replayed in commit order"
        );
        // Then new changes flow live again, and the replayed ones are not repeated.
        store.delete(&born, Some(1)).await.expect("delete born");
        assert_eq!(
            next_event(&mut events).await,
            ChangeEvent {
                op: ChangeOp::Deleted,
                key: born,
                version: 1
            }
        );
        let _ = admin.close().await;
        let _ = outside.close().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_migrate_is_idempotent_and_open_dispatches() {
    with_postgres_database("postgres_migrate_is_idempotent", |url| async move {
        assert!(atoll_store::migrate(&url).await.expect("migrate") >= 1);
        assert_eq!(atoll_store::migrate(&url).await.expect("migrate again"), 0);
        let dir = tempfile::tempdir().expect("tempdir");
        let store = atoll_store::open(&url, dir.path()).await.expect("open");
        assert_eq!(store.backend_name(), "postgres");
        store.ping().await.expect("ping");
        let page = store
            .list(&ListFilter::all(Kind::Mesh))
            .await
            .expect("list");
        assert_eq!(page.total, 0);
        // Concurrent first connects (replicas starting together) migrate once.
        let (x, y) = tokio::join!(atoll_store::migrate(&url), atoll_store::migrate(&url));
        assert_eq!(x.expect("x") + y.expect("y"), 0);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_corrupt_rows_are_errors_not_panics() {
    with_postgres_database("postgres_corrupt_rows", |url| async move {
        use sqlx::Connection;
        let store = PostgresStore::connect(&url).await.expect("connect");
        let r = store
            .create(Resource::new(Kind::Mesh, "", "broken"))
            .await
            .expect("create");
        let mut conn = sqlx::PgConnection::connect(&url).await.expect("conn");
        sqlx::query("UPDATE resources SET spec = '[not json' WHERE name = 'broken'")
            .execute(&mut conn)
            .await
            .expect("corrupt");
        match store.get(&r.key()).await {
            Err(StoreError::Corrupt { .. }) => {}
            other => panic!("expected Corrupt, got {other:?}"),
        }
        assert!(matches!(
            store.list(&ListFilter::all(Kind::Mesh)).await,
            Err(StoreError::Corrupt { .. })
        ));
        let _ = conn.close().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_corrupt_rows_are_errors_not_panics() {
    use sqlx::Connection;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("atoll.db");
    let store = SqliteStore::open(&path).await.expect("open");
    let good = store
        .create(Resource::new(Kind::Mesh, "", "good"))
        .await
        .expect("create");
    let bad = store
        .create(Resource::new(Kind::Mesh, "", "broken"))
        .await
        .expect("create");
    let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite://{}", path.display()))
        .await
        .expect("conn");
    sqlx::query("UPDATE resources SET labels = '[1, 2]' WHERE name = 'broken'")
        .execute(&mut conn)
        .await
        .expect("corrupt");
    let _ = conn.close().await;
    match store.get(&bad.key()).await {
        Err(StoreError::Corrupt { key, reason }) => {
            assert!(key.contains("broken"), "{key}");
            assert!(reason.contains("labels"), "{reason}");
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }
    assert!(
        store
            .get(&good.key())
            .await
            .expect("good row reads")
            .is_some()
    );
    assert!(matches!(
        store.list(&ListFilter::all(Kind::Mesh)).await,
        Err(StoreError::Corrupt { .. })
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_database_of_the_old_migration_runner_is_carried_over() {
    with_postgres_database("postgres_old_migration_runner", |url| async move {
        use sqlx::Connection as _;
        // The database as Atoll's own runner left it after two migrations.
        let mut conn = sqlx::PgConnection::connect(&url).await.expect("connect");
        sqlx::raw_sql(
            "CREATE TABLE schema_migrations (version BIGINT PRIMARY KEY, name TEXT NOT NULL, \
             applied_at TIMESTAMPTZ NOT NULL DEFAULT now())",
        )
        .execute(&mut conn)
        .await
        .expect("legacy table");
        for (version, sql) in [
            (1i64, include_str!("../migrations/postgres/0001_init.sql")),
            (
                2,
                include_str!("../migrations/postgres/0002_list_speed.sql"),
            ),
        ] {
            sqlx::raw_sql(sql)
                .execute(&mut conn)
                .await
                .expect("old migration");
            sqlx::query("INSERT INTO schema_migrations (version, name) VALUES ($1, 'x')")
                .bind(version)
                .execute(&mut conn)
                .await
                .expect("legacy row");
        }
        conn.close().await.expect("close");

        // Only the third migration is applied; the first two are not run again.
        assert_eq!(atoll_store::migrate(&url).await.expect("migrate"), 1);
        assert_eq!(atoll_store::migrate(&url).await.expect("migrate"), 0);
        let store = atoll_store::open(&url, std::path::Path::new("."))
            .await
            .expect("open");
        let created = store
            .create(Resource::new(Kind::Mesh, "", "carried-over"))
            .await
            .expect("create");
        assert_eq!(created.version, 1);
    })
    .await;
}

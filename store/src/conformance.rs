//! The conformance suite every `Store` backend must pass. Each case takes a fresh, empty store
//! and panics on a violation; `store/tests/conformance.rs` runs them against every backend.
//!
//! Test code, not part of the supported API: compiled only with the `conformance` feature
//! (which test builds turn on), so production binaries do not carry it.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use atoll_core::{Kind, Resource, ResourceKey};
use futures::future::BoxFuture;
use futures::stream::{self, StreamExt};
use serde_json::{Map, Value, json};
use tokio::sync::broadcast;

use crate::{ChangeEvent, ChangeOp, ListFilter, SharedStore, StoreError};

/// How long a watcher waits for an event (PostgreSQL's arrive through LISTEN, asynchronously).
pub const EVENT_TIMEOUT: Duration = Duration::from_secs(10);

/// A conformance case.
pub type Case = fn(SharedStore) -> BoxFuture<'static, ()>;

/// Every case, by name.
pub const CASES: &[(&str, Case)] = &[
    ("create_get", |s| Box::pin(create_get(s))),
    ("list_filters_order_and_pages", |s| {
        Box::pin(list_filters_order_and_pages(s))
    }),
    ("create_duplicate_is_already_exists", |s| {
        Box::pin(create_duplicate_is_already_exists(s))
    }),
    ("update_bumps_version_keeps_creation_time", |s| {
        Box::pin(update_bumps_version_keeps_creation_time(s))
    }),
    ("stale_update_conflicts_and_changes_nothing", |s| {
        Box::pin(stale_update_conflicts_and_changes_nothing(s))
    }),
    ("update_missing_is_not_found", |s| {
        Box::pin(update_missing_is_not_found(s))
    }),
    ("delete_checks_version_and_existence", |s| {
        Box::pin(delete_checks_version_and_existence(s))
    }),
    ("delete_mesh_contents_deletes_only_that_mesh", |s| {
        Box::pin(delete_mesh_contents_deletes_only_that_mesh(s))
    }),
    ("watch_sees_changes_in_order", |s| {
        Box::pin(watch_sees_changes_in_order(s))
    }),
    ("concurrent_updates_all_land", |s| {
        Box::pin(concurrent_updates_all_land(s))
    }),
    ("spec_field_order_is_preserved", |s| {
        Box::pin(spec_field_order_is_preserved(s))
    }),
    ("global_and_mesh_scoped_keys_do_not_collide", |s| {
        Box::pin(global_and_mesh_scoped_keys_do_not_collide(s))
    }),
    ("large_list_paginates", |s| {
        Box::pin(large_list_paginates(s))
    }),
    ("ping_answers", |s| Box::pin(ping_answers(s))),
];

fn timeout(mesh: &str, name: &str, idle: &str) -> Resource {
    let mut r = Resource::new(Kind::MeshTimeout, mesh, name);
    r.spec = spec(json!({
        "targetRef": {"kind": "Mesh"},
        "to": [{"targetRef": {"kind": "Mesh"}, "default": {"idleTimeout": idle}}]
    }));
    r
}

fn spec(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

fn names(items: &[Resource]) -> Vec<String> {
    items
        .iter()
        .map(|r| format!("{}/{}", r.mesh, r.name))
        .collect()
}

async fn next_event(rx: &mut broadcast::Receiver<ChangeEvent>) -> ChangeEvent {
    match tokio::time::timeout(EVENT_TIMEOUT, rx.recv()).await {
        Ok(Ok(e)) => e,
        Ok(Err(e)) => panic!("watch failed: {e}"),
        Err(_) => panic!("no change event within {EVENT_TIMEOUT:?}"),
    }
}

/// Create then get: the store sets version 1 and both times; labels and spec read back equal.
pub async fn create_get(store: SharedStore) {
    let mut r = timeout("default", "t1", "1s");
    r.labels.insert("team".into(), "payments".into());
    r.labels.insert("kuma.io/origin".into(), "zone".into());
    r.version = 42; // ignored: a new resource starts at 1
    let before = chrono::Utc::now() - chrono::Duration::seconds(1);
    let created = store.create(r.clone()).await.expect("create");
    assert_eq!(created.version, 1);
    assert_eq!(created.labels, r.labels);
    assert_eq!(created.spec, r.spec);
    let ct = created.creation_time.expect("creation time set");
    assert!(ct >= before, "creation time {ct} is before the create");
    assert_eq!(created.modification_time, Some(ct));
    let got = store
        .get(&r.key())
        .await
        .expect("get")
        .expect("created resource is found");
    assert_eq!(got, created, "get returns what create returned");
    let missing = store
        .get(&ResourceKey::new(Kind::MeshTimeout, "default", "nope"))
        .await
        .expect("get missing");
    assert!(missing.is_none());
    let other_kind = store
        .get(&ResourceKey::new(Kind::MeshRetry, "default", "t1"))
        .await
        .expect("get other kind");
    assert!(other_kind.is_none(), "keys include the kind");
    let page = store
        .list(&ListFilter::all(Kind::MeshTimeout))
        .await
        .expect("list");
    assert_eq!(page.total, 1);
    assert_eq!(page.items, vec![created]);
}

/// List: kind and mesh filters, name prefix (taken literally), ordering by (mesh, name),
/// offset/limit with the total of all matches.
pub async fn list_filters_order_and_pages(store: SharedStore) {
    // Created out of order on purpose.
    for (mesh, name) in [
        ("mesh-b", "zeta"),
        ("mesh-a", "web-2"),
        ("mesh-b", "web-1"),
        ("mesh-a", "web-1"),
        ("mesh-a", "api"),
        ("mesh-a", "web_x"),
        ("mesh-a", "webxx"),
        ("mesh-a", "Web-3"),
        ("mesh-c", "web-10"),
    ] {
        store
            .create(timeout(mesh, name, "1s"))
            .await
            .expect("create");
    }
    store
        .create(Resource::new(Kind::MeshRetry, "mesh-a", "web-1"))
        .await
        .expect("create other kind");

    let all = store
        .list(&ListFilter::all(Kind::MeshTimeout))
        .await
        .expect("list all");
    assert_eq!(all.total, 9);
    assert_eq!(
        names(&all.items),
        [
            "mesh-a/Web-3",
            "mesh-a/api",
            "mesh-a/web-1",
            "mesh-a/web-2",
            "mesh-a/web_x",
            "mesh-a/webxx",
            "mesh-b/web-1",
            "mesh-b/zeta",
            "mesh-c/web-10"
        ],
        "ordered by (mesh, name), bytewise"
    );

    let in_a = store
        .list(&ListFilter::in_mesh(Kind::MeshTimeout, "mesh-a"))
        .await
        .expect("list mesh-a");
    assert_eq!(in_a.total, 6);
    assert!(in_a.items.iter().all(|r| r.mesh == "mesh-a"));

    let nowhere = store
        .list(&ListFilter::in_mesh(Kind::MeshTimeout, "mesh-z"))
        .await
        .expect("list empty mesh");
    assert_eq!((nowhere.total, nowhere.items.len()), (0, 0));

    let prefixed = store
        .list(&ListFilter {
            name_prefix: Some("web-".into()),
            ..ListFilter::all(Kind::MeshTimeout)
        })
        .await
        .expect("list prefix");
    assert_eq!(
        names(&prefixed.items),
        [
            "mesh-a/web-1",
            "mesh-a/web-2",
            "mesh-b/web-1",
            "mesh-c/web-10"
        ]
    );
    assert_eq!(prefixed.total, 4);

    // `_` and `%` are not wildcards; the prefix is case-sensitive.
    let literal = store
        .list(&ListFilter {
            name_prefix: Some("web_".into()),
            ..ListFilter::in_mesh(Kind::MeshTimeout, "mesh-a")
        })
        .await
        .expect("list literal prefix");
    assert_eq!(names(&literal.items), ["mesh-a/web_x"]);
    let percent = store
        .list(&ListFilter {
            name_prefix: Some("w%".into()),
            ..ListFilter::all(Kind::MeshTimeout)
        })
        .await
        .expect("list percent prefix");
    assert_eq!(percent.total, 0);
    let upper = store
        .list(&ListFilter {
            name_prefix: Some("Web".into()),
            ..ListFilter::all(Kind::MeshTimeout)
        })
        .await
        .expect("list case prefix");
    assert_eq!(names(&upper.items), ["mesh-a/Web-3"]);

    let page = store
        .list(&ListFilter {
            offset: 2,
            limit: Some(3),
            ..ListFilter::all(Kind::MeshTimeout)
        })
        .await
        .expect("page");
    assert_eq!(page.total, 9);
    assert_eq!(
        names(&page.items),
        ["mesh-a/web-1", "mesh-a/web-2", "mesh-a/web_x"]
    );

    let tail = store
        .list(&ListFilter {
            offset: 7,
            limit: Some(5),
            ..ListFilter::all(Kind::MeshTimeout)
        })
        .await
        .expect("last page");
    assert_eq!(names(&tail.items), ["mesh-b/zeta", "mesh-c/web-10"]);
    assert_eq!(tail.total, 9);

    let past = store
        .list(&ListFilter {
            offset: 100,
            limit: Some(5),
            ..ListFilter::all(Kind::MeshTimeout)
        })
        .await
        .expect("past the end");
    assert!(past.items.is_empty());
    assert_eq!(past.total, 9);

    let no_limit = store
        .list(&ListFilter {
            offset: 8,
            ..ListFilter::all(Kind::MeshTimeout)
        })
        .await
        .expect("offset without limit");
    assert_eq!(names(&no_limit.items), ["mesh-c/web-10"]);

    let zero = store
        .list(&ListFilter {
            limit: Some(0),
            ..ListFilter::all(Kind::MeshTimeout)
        })
        .await
        .expect("limit 0");
    assert!(zero.items.is_empty());
    assert_eq!(zero.total, 9);

    let retries = store
        .list(&ListFilter::all(Kind::MeshRetry))
        .await
        .expect("other kind");
    assert_eq!(names(&retries.items), ["mesh-a/web-1"]);
}

/// Creating an existing key fails with AlreadyExists and leaves the stored resource alone.
pub async fn create_duplicate_is_already_exists(store: SharedStore) {
    let first = store
        .create(timeout("default", "dup", "1s"))
        .await
        .expect("create");
    match store.create(timeout("default", "dup", "9s")).await {
        Err(StoreError::AlreadyExists(key)) => assert_eq!(key, first.key()),
        other => panic!("expected AlreadyExists, got {other:?}"),
    }
    let got = store.get(&first.key()).await.expect("get").expect("exists");
    assert_eq!(got, first);
}

/// An update at the right version bumps it, keeps the creation time, replaces labels and spec.
pub async fn update_bumps_version_keeps_creation_time(store: SharedStore) {
    let created = store
        .create(timeout("default", "u", "1s"))
        .await
        .expect("create");
    tokio::time::sleep(Duration::from_millis(5)).await;
    let mut next = timeout("default", "u", "2s");
    next.labels.insert("v".into(), "2".into());
    next.creation_time = None; // whatever the caller sends, the stored creation time stays
    let updated = store.update(next.clone(), 1).await.expect("update");
    assert_eq!(updated.version, 2);
    assert_eq!(updated.creation_time, created.creation_time);
    assert!(
        updated.modification_time > created.modification_time,
        "modification time moves forward"
    );
    assert_eq!(updated.spec, next.spec);
    assert_eq!(updated.labels, next.labels);
    let got = store
        .get(&created.key())
        .await
        .expect("get")
        .expect("exists");
    assert_eq!(got, updated);
    let again = store.update(got.clone(), 2).await.expect("second update");
    assert_eq!(again.version, 3);
    // Labels can be removed.
    assert!(again.labels.contains_key("v"));
    let mut bare = again.clone();
    bare.labels.clear();
    let bare = store.update(bare, 3).await.expect("clear labels");
    let got = store
        .get(&created.key())
        .await
        .expect("get")
        .expect("exists");
    assert!(got.labels.is_empty());
    assert_eq!(got, bare);
}

/// A stale update is a Conflict naming the stored version, and stores nothing.
pub async fn stale_update_conflicts_and_changes_nothing(store: SharedStore) {
    let created = store
        .create(timeout("default", "c", "1s"))
        .await
        .expect("create");
    let v2 = store
        .update(timeout("default", "c", "2s"), 1)
        .await
        .expect("update");
    match store.update(timeout("default", "c", "3s"), 1).await {
        Err(StoreError::Conflict {
            key,
            expected,
            found,
        }) => {
            assert_eq!(key, created.key());
            assert_eq!((expected, found), (1, 2));
        }
        other => panic!("expected Conflict, got {other:?}"),
    }
    match store.update(timeout("default", "c", "3s"), 5).await {
        Err(StoreError::Conflict { found: 2, .. }) => {}
        other => panic!("an update from the future is a Conflict too, got {other:?}"),
    }
    let got = store
        .get(&created.key())
        .await
        .expect("get")
        .expect("exists");
    assert_eq!(got, v2, "the stale update changed nothing");
}

/// Updating a key that does not exist is NotFound (never an upsert).
pub async fn update_missing_is_not_found(store: SharedStore) {
    match store.update(timeout("default", "ghost", "1s"), 1).await {
        Err(StoreError::NotFound(key)) => assert_eq!(key.name, "ghost"),
        other => panic!("expected NotFound, got {other:?}"),
    }
    let got = store
        .get(&ResourceKey::new(Kind::MeshTimeout, "default", "ghost"))
        .await
        .expect("get");
    assert!(got.is_none(), "update must not create");
}

/// Delete: a stale version is a Conflict (nothing deleted), a missing key is NotFound, the right
/// version or none deletes.
pub async fn delete_checks_version_and_existence(store: SharedStore) {
    let a = store
        .create(timeout("default", "a", "1s"))
        .await
        .expect("create a");
    store
        .update(timeout("default", "a", "2s"), 1)
        .await
        .expect("update a");
    match store.delete(&a.key(), Some(1)).await {
        Err(StoreError::Conflict {
            expected, found, ..
        }) => assert_eq!((expected, found), (1, 2)),
        other => panic!("expected Conflict, got {other:?}"),
    }
    assert!(
        store.get(&a.key()).await.expect("get").is_some(),
        "not deleted"
    );
    store.delete(&a.key(), Some(2)).await.expect("delete at v2");
    assert!(store.get(&a.key()).await.expect("get").is_none());
    match store.delete(&a.key(), None).await {
        Err(StoreError::NotFound(key)) => assert_eq!(key, a.key()),
        other => panic!("expected NotFound, got {other:?}"),
    }
    match store.delete(&a.key(), Some(1)).await {
        Err(StoreError::NotFound(_)) => {}
        other => panic!("expected NotFound for a missing key with a version, got {other:?}"),
    }
    let b = store
        .create(timeout("default", "b", "1s"))
        .await
        .expect("create b");
    store
        .delete(&b.key(), None)
        .await
        .expect("unconditional delete");
    // Recreating a deleted key starts over at version 1.
    let b2 = store
        .create(timeout("default", "b", "1s"))
        .await
        .expect("recreate b");
    assert_eq!(b2.version, 1);
}

/// delete_mesh_contents removes every kind in that mesh, nothing elsewhere, and no global
/// resource (not even the Mesh itself).
pub async fn delete_mesh_contents_deletes_only_that_mesh(store: SharedStore) {
    store
        .create(Resource::new(Kind::Mesh, "", "doomed"))
        .await
        .expect("mesh");
    store
        .create(Resource::new(Kind::Mesh, "", "kept"))
        .await
        .expect("mesh");
    for (kind, mesh, name) in [
        (Kind::MeshTimeout, "doomed", "t"),
        (Kind::MeshRetry, "doomed", "r"),
        (Kind::Dataplane, "doomed", "dp-1"),
        (Kind::MeshTimeout, "kept", "t"),
        (Kind::MeshTimeout, "doomed-too-long", "t"),
    ] {
        store
            .create(Resource::new(kind, mesh, name))
            .await
            .expect("create");
    }
    let mut rx = store.watch();
    assert_eq!(
        store.delete_mesh_contents("doomed").await.expect("delete"),
        3
    );
    let mut deleted = BTreeSet::new();
    while deleted.len() < 3 {
        let e = next_event(&mut rx).await;
        if e.op == ChangeOp::Created {
            // With PostgreSQL, the announcements of the creates above may still be on their way.
            continue;
        }
        assert_eq!(e.op, ChangeOp::Deleted);
        assert_eq!(e.version, 1);
        deleted.insert(e.key);
    }
    assert_eq!(
        deleted,
        BTreeSet::from([
            ResourceKey::new(Kind::MeshTimeout, "doomed", "t"),
            ResourceKey::new(Kind::MeshRetry, "doomed", "r"),
            ResourceKey::new(Kind::Dataplane, "doomed", "dp-1"),
        ])
    );
    for kind in [Kind::MeshTimeout, Kind::MeshRetry, Kind::Dataplane] {
        let page = store
            .list(&ListFilter::in_mesh(kind, "doomed"))
            .await
            .expect("list");
        assert_eq!(page.total, 0, "{kind} left in the deleted mesh");
    }
    let left = store
        .list(&ListFilter::all(Kind::MeshTimeout))
        .await
        .expect("list");
    assert_eq!(names(&left.items), ["doomed-too-long/t", "kept/t"]);
    let meshes = store
        .list(&ListFilter::all(Kind::Mesh))
        .await
        .expect("list");
    assert_eq!(meshes.total, 2, "global resources are not mesh contents");
    assert_eq!(
        store.delete_mesh_contents("doomed").await.expect("again"),
        0
    );
    assert_eq!(
        store
            .delete_mesh_contents("")
            .await
            .expect("empty mesh name"),
        0,
        "the empty mesh name never matches global resources"
    );
    assert_eq!(
        store
            .list(&ListFilter::all(Kind::Mesh))
            .await
            .expect("list")
            .total,
        2
    );
}

/// A watcher sees create, update, delete of a key in that order, with the versions; failed
/// writes send nothing.
pub async fn watch_sees_changes_in_order(store: SharedStore) {
    let mut rx = store.watch();
    let key = ResourceKey::new(Kind::MeshTimeout, "default", "w");
    store
        .create(timeout("default", "w", "1s"))
        .await
        .expect("create");
    assert!(store.create(timeout("default", "w", "1s")).await.is_err());
    store
        .update(timeout("default", "w", "2s"), 1)
        .await
        .expect("update");
    assert!(
        store
            .update(timeout("default", "w", "3s"), 1)
            .await
            .is_err()
    );
    store
        .update(timeout("default", "w", "3s"), 2)
        .await
        .expect("update");
    assert!(store.delete(&key, Some(1)).await.is_err());
    store.delete(&key, Some(3)).await.expect("delete");
    let global = ResourceKey::global(Kind::Mesh, "w");
    store
        .create(Resource::new(Kind::Mesh, "", "w"))
        .await
        .expect("create global");
    let expected = [
        (ChangeOp::Created, key.clone(), 1),
        (ChangeOp::Updated, key.clone(), 2),
        (ChangeOp::Updated, key.clone(), 3),
        (ChangeOp::Deleted, key.clone(), 3),
        (ChangeOp::Created, global, 1),
    ];
    for (op, key, version) in expected {
        let e = next_event(&mut rx).await;
        assert_eq!(e, ChangeEvent { op, key, version });
    }
    // Nothing else: the failed writes sent no events.
    match tokio::time::timeout(Duration::from_millis(300), rx.recv()).await {
        Err(_) => {}
        Ok(e) => panic!("unexpected event {e:?}"),
    }
    // A watcher subscribed later sees only later changes.
    let mut late = store.watch();
    store
        .create(timeout("default", "w2", "1s"))
        .await
        .expect("create");
    let e = next_event(&mut late).await;
    assert_eq!(e.key.name, "w2");
}

/// 8 tasks each land 10 read-modify-write updates of one resource, retrying on Conflict: every
/// update lands exactly once (no lost update, no overwrite).
pub async fn concurrent_updates_all_land(store: SharedStore) {
    const TASKS: usize = 8;
    const PER_TASK: u64 = 10;
    let mut r = Resource::new(Kind::MeshTimeout, "default", "counter");
    r.spec.insert("count".into(), json!(0));
    let key = store.create(r).await.expect("create").key();
    let conflicts = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for t in 0..TASKS {
        let store = store.clone();
        let key = key.clone();
        let conflicts = conflicts.clone();
        tasks.push(tokio::spawn(async move {
            let mut done = 0;
            while done < PER_TASK {
                let mut cur = store.get(&key).await.expect("get").expect("exists");
                let count = cur
                    .spec
                    .get("count")
                    .and_then(Value::as_u64)
                    .expect("count");
                cur.spec.insert("count".into(), json!(count + 1));
                cur.spec.insert(format!("task{t}"), json!(done + 1));
                let expected = cur.version;
                match store.update(cur, expected).await {
                    Ok(u) => {
                        assert_eq!(u.version, expected + 1);
                        done += 1;
                    }
                    Err(StoreError::Conflict { found, .. }) => {
                        assert!(found > expected, "conflict found {found} <= {expected}");
                        conflicts.fetch_add(1, Ordering::Relaxed);
                        tokio::task::yield_now().await;
                    }
                    Err(e) => panic!("update failed: {e}"),
                }
            }
        }));
    }
    for t in tasks {
        t.await.expect("task");
    }
    let total = TASKS as u64 * PER_TASK;
    let end = store.get(&key).await.expect("get").expect("exists");
    assert_eq!(end.version, 1 + total as i64);
    assert_eq!(end.spec.get("count"), Some(&json!(total)), "no update lost");
    for t in 0..TASKS {
        assert_eq!(end.spec.get(&format!("task{t}")), Some(&json!(PER_TASK)));
    }
    // Not asserted (scheduling dependent), but shown with --nocapture.
    println!(
        "{} backend: {total} updates, {} conflicts retried",
        store.backend_name(),
        conflicts.load(Ordering::Relaxed)
    );
}

/// The spec reads back exactly as written: field order (top level and nested), numbers,
/// unicode, escapes, nulls, empty containers.
pub async fn spec_field_order_is_preserved(store: SharedStore) {
    let text = r#"{"zeta":1,"alpha":{"z":true,"a":null,"m":[3,2,{"y":1,"b":2}]},"mid":"ünïcødé \"quoted\" \\ / \n tab\t","big":9007199254740993,"neg":-17,"float":1.5,"tiny":1e-7,"empty":{},"none":[],"Upper":"x","0digit":"y"}"#;
    let spec: Map<String, Value> = serde_json::from_str(text).expect("test spec parses");
    let written = serde_json::to_string(&spec).expect("serialize");
    let mut r = Resource::new(Kind::MeshTimeout, "default", "ordered");
    r.spec = spec.clone();
    let created = store.create(r).await.expect("create");
    assert_eq!(serde_json::to_string(&created.spec).expect("json"), written);
    let got = store
        .get(&created.key())
        .await
        .expect("get")
        .expect("exists");
    assert_eq!(
        serde_json::to_string(&got.spec).expect("json"),
        written,
        "get keeps field order"
    );
    let listed = store
        .list(&ListFilter::all(Kind::MeshTimeout))
        .await
        .expect("list");
    assert_eq!(
        serde_json::to_string(&listed.items[0].spec).expect("json"),
        written,
        "list keeps field order"
    );
    // A reordered spec is a different document: the update stores the new order.
    let mut reordered = got.clone();
    let mut rev = Map::new();
    for (k, v) in spec.iter().rev() {
        rev.insert(k.clone(), v.clone());
    }
    reordered.spec = rev.clone();
    store.update(reordered, 1).await.expect("update");
    let got = store
        .get(&created.key())
        .await
        .expect("get")
        .expect("exists");
    assert_eq!(
        serde_json::to_string(&got.spec).expect("json"),
        serde_json::to_string(&rev).expect("json")
    );
}

/// A global resource (mesh "") and mesh-scoped ones with the same name are distinct keys.
pub async fn global_and_mesh_scoped_keys_do_not_collide(store: SharedStore) {
    store
        .create(Resource::new(Kind::Mesh, "", "demo"))
        .await
        .expect("global Mesh demo");
    store
        .create(Resource::new(Kind::MeshTimeout, "demo", "demo"))
        .await
        .expect("MeshTimeout demo in mesh demo");
    // Same kind and name, empty mesh vs a mesh.
    let mut global = Resource::new(Kind::Secret, "", "s");
    global.spec.insert("data".into(), json!("Z2xvYmFs"));
    let mut scoped = Resource::new(Kind::Secret, "default", "s");
    scoped.spec.insert("data".into(), json!("c2NvcGVk"));
    store
        .create(global.clone())
        .await
        .expect("mesh \"\" secret");
    store
        .create(scoped.clone())
        .await
        .expect("mesh default secret");
    let g = store
        .get(&global.key())
        .await
        .expect("get")
        .expect("global");
    let s = store
        .get(&scoped.key())
        .await
        .expect("get")
        .expect("scoped");
    assert_eq!(g.spec, global.spec);
    assert_eq!(s.spec, scoped.spec);
    let in_default = store
        .list(&ListFilter::in_mesh(Kind::Secret, "default"))
        .await
        .expect("list");
    assert_eq!(names(&in_default.items), ["default/s"]);
    let in_global = store
        .list(&ListFilter::in_mesh(Kind::Secret, ""))
        .await
        .expect("list");
    assert_eq!(names(&in_global.items), ["/s"]);
    assert_eq!(
        store
            .list(&ListFilter::all(Kind::Secret))
            .await
            .expect("list")
            .total,
        2
    );
    store
        .update(global.clone(), 1)
        .await
        .expect("update the global one");
    assert_eq!(
        store
            .get(&scoped.key())
            .await
            .expect("get")
            .expect("scoped")
            .version,
        1,
        "the scoped one is untouched"
    );
    store
        .delete(&scoped.key(), Some(1))
        .await
        .expect("delete scoped");
    assert!(store.get(&global.key()).await.expect("get").is_some());
    assert!(
        store
            .get(&ResourceKey::global(Kind::Mesh, "demo"))
            .await
            .expect("get")
            .is_some()
    );
}

/// 10,000 resources: paging through them (pages of 700, a size that does not divide the
/// count) returns each exactly once, in order, with the right total on every page.
pub async fn large_list_paginates(store: SharedStore) {
    const N: usize = 10_000;
    const PAGE: u64 = 700;
    let meshes = ["m-a", "m-b", "m-c"];
    let results: Vec<_> = stream::iter(0..N)
        .map(|i| {
            let store = store.clone();
            async move {
                let r = timeout(meshes[i % 3], &format!("r-{i:05}"), "1s");
                store.create(r).await
            }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    for r in results {
        r.expect("create");
    }
    let mut seen = Vec::with_capacity(N);
    let mut offset = 0;
    loop {
        let page = store
            .list(&ListFilter {
                offset,
                limit: Some(PAGE),
                ..ListFilter::all(Kind::MeshTimeout)
            })
            .await
            .expect("list page");
        assert_eq!(page.total, N as u64);
        assert!(page.items.len() as u64 <= PAGE);
        if page.items.is_empty() {
            break;
        }
        offset += page.items.len() as u64;
        seen.extend(page.items.into_iter().map(|r| (r.mesh, r.name)));
    }
    assert_eq!(seen.len(), N, "every resource once");
    assert!(
        seen.windows(2).all(|w| w[0] < w[1]),
        "pages are in (mesh, name) order without repeats"
    );
    let in_b = store
        .list(&ListFilter {
            offset: 3000,
            limit: Some(1000),
            ..ListFilter::in_mesh(Kind::MeshTimeout, "m-b")
        })
        .await
        .expect("list m-b");
    assert_eq!(in_b.total, 3333);
    assert_eq!(in_b.items.len(), 333);
    let prefixed = store
        .list(&ListFilter {
            name_prefix: Some("r-099".into()),
            ..ListFilter::all(Kind::MeshTimeout)
        })
        .await
        .expect("list prefix");
    assert_eq!(prefixed.total, 100);
}

pub async fn ping_answers(store: SharedStore) {
    store.ping().await.expect("ping");
    assert!(!store.backend_name().is_empty());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn memory_store_passes_every_case() {
        for (name, case) in CASES {
            let store: SharedStore = Arc::new(crate::MemoryStore::new());
            println!("case {name}");
            case(store).await;
        }
    }
}

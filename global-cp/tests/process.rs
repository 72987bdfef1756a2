//! The real `atoll-global-cp` binary as an operator runs it: configured only through environment
//! variables, on SQLite and on PostgreSQL; writes survive a SIGTERM and a restart; `migrate` works.

use std::path::Path;
use std::process::Command;

use atoll_test_support::{CpProcess, free_port};

use serde_json::{Value, json};

async fn put(api: &str, path: &str, doc: Value) -> u16 {
    reqwest::Client::new()
        .put(format!("{api}{path}"))
        .json(&doc)
        .send()
        .await
        .expect("PUT")
        .status()
        .as_u16()
}

async fn get(api: &str, path: &str) -> (u16, Value) {
    let r = reqwest::get(format!("{api}{path}")).await.expect("GET");
    let s = r.status().as_u16();
    (s, r.json().await.unwrap_or(Value::Null))
}

fn spawn(data_dir: &Path, store: Option<&str>) -> CpProcess {
    // Each process gets its own KDS port, so tests can run in parallel.
    let kds = format!("127.0.0.1:{}", free_port());
    let mut env: Vec<(&str, &str)> = store.map(|s| ("ATOLL_STORE", s)).into_iter().collect();
    env.push(("ATOLL_KDS_ADDRESS", &kds));
    CpProcess::spawn(env!("CARGO_BIN_EXE_atoll-global-cp"), data_dir, &env)
}

async fn survives_restart(data_dir: &Path, store: Option<&str>) {
    let mut cp = spawn(data_dir, store);
    cp.wait_ready().await;
    assert_eq!(
        put(&cp.api, "/meshes/m", json!({"type": "Mesh", "name": "m"})).await,
        201
    );
    let timeout = json!({"type": "MeshTimeout", "name": "n", "mesh": "m", "spec": {
        "targetRef": {"kind": "Mesh"},
        "to": [{"targetRef": {"kind": "Mesh"}, "default": {"http": {"requestTimeout": "2s"}}}]
    }});
    assert_eq!(put(&cp.api, "/meshes/m/meshtimeouts/n", timeout).await, 201);
    let (_, index) = get(&cp.api, "/").await;
    assert_eq!(index["mode"], "global");
    cp.terminate();

    let mut cp = spawn(data_dir, store);
    cp.wait_ready().await;
    let (status, body) = get(&cp.api, "/meshes/m/meshtimeouts/n").await;
    assert_eq!(status, 200, "lost across restart: {body}");
    assert_eq!(
        body["spec"]["to"][0]["default"]["http"]["requestTimeout"],
        "2s"
    );
    cp.terminate();
}

#[tokio::test]
async fn starts_on_sqlite_with_only_address_and_data_dir() {
    let dir = tempfile::tempdir().expect("tempdir");
    survives_restart(dir.path(), None).await;
    assert!(dir.path().join("atoll.db").exists());
    assert!(dir.path().join("admin-token").exists());
}

#[tokio::test]
async fn starts_on_postgres() {
    atoll_test_support::postgres::with_postgres_database("global_cp_process", |url| async move {
        let dir = tempfile::tempdir().expect("tempdir");
        survives_restart(dir.path(), Some(&url)).await;
    })
    .await;
}

#[tokio::test]
async fn migrate_subcommand_prepares_the_store_and_bad_store_urls_fail_clearly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = Command::new(env!("CARGO_BIN_EXE_atoll-global-cp"))
        .args(["migrate"])
        .env_clear()
        .env("ATOLL_DATA_DIR", dir.path())
        .output()
        .expect("runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(dir.path().join("atoll.db").exists());

    let out = Command::new(env!("CARGO_BIN_EXE_atoll-global-cp"))
        .args(["run"])
        .env_clear()
        .env("ATOLL_DATA_DIR", dir.path())
        .env("ATOLL_API_ADDRESS", format!("127.0.0.1:{}", free_port()))
        .env(
            "ATOLL_API_HTTPS_ADDRESS",
            format!("127.0.0.1:{}", free_port()),
        )
        .env(
            "ATOLL_DIAGNOSTICS_ADDRESS",
            format!("127.0.0.1:{}", free_port()),
        )
        .env("ATOLL_STORE", "mysql://nope")
        .output()
        .expect("runs");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("mysql"), "{err}");
}

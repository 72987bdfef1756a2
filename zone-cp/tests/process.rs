//! The real `atoll-zone-cp` binary in standalone mode: it serves the same REST API, reports its
//! zone, and keeps what was written across a restart.

use atoll_test_support::CpProcess;
use serde_json::{Value, json};

#[tokio::test]
async fn standalone_zone_serves_the_api_and_keeps_state() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bin = env!("CARGO_BIN_EXE_atoll-zone-cp");
    let mut cp = CpProcess::spawn(bin, dir.path(), &[("ATOLL_ZONE", "east")]);
    cp.wait_ready().await;
    let index: Value = reqwest::get(&cp.api)
        .await
        .expect("GET /")
        .json()
        .await
        .expect("json");
    assert_eq!(index["mode"], "zone");
    assert_eq!(index["zone"], "east");
    let client = reqwest::Client::new();
    let status = client
        .put(format!("{}/meshes/default", cp.api))
        .json(&json!({"type": "Mesh", "name": "default"}))
        .send()
        .await
        .expect("PUT")
        .status();
    assert_eq!(status.as_u16(), 201);
    let ready = reqwest::get(format!("{}/ready", cp.diagnostics))
        .await
        .expect("ready");
    assert_eq!(ready.status().as_u16(), 200);
    cp.terminate();

    let mut cp = CpProcess::spawn(bin, dir.path(), &[("ATOLL_ZONE", "east")]);
    cp.wait_ready().await;
    let mesh = reqwest::get(format!("{}/meshes/default", cp.api))
        .await
        .expect("GET");
    assert_eq!(mesh.status().as_u16(), 200);
    cp.terminate();
}

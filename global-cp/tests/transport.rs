//! KDS transport faults, in-process (global and zone control planes talking KDS over TLS on
//! loopback): a zone whose link freezes without closing (a relay in the test stops forwarding
//! bytes) shows offline on global within seconds, the zone notices too and reconnects once the
//! link thaws; a call with a valid zone token and a frame that is not a protobuf message is
//! refused with the reason and registers no Zone.

use std::time::Duration;

use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint};

use atoll_test_support::raw_grpc::RawCodec;

use atoll_cp::ConfigArgs;
use atoll_test_support::Relay;
use atoll_test_support::in_process::*;
use atoll_test_support::{PATIENCE, eventually, scaled, until};

fn subscriptions(overview: &serde_json::Value) -> usize {
    overview["zoneInsight"]["subscriptions"]
        .as_array()
        .map_or(0, Vec::len)
}

/// Waits (patiently) until `check` holds and asserts that it took less than `bound`, the
/// behaviour under test.
async fn within<F, Fut>(what: &str, bound: Duration, check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let took = until(PATIENCE, check)
        .await
        .unwrap_or_else(|| panic!("never: {what}"));
    assert!(took < bound, "{what} took {took:?}, not within {bound:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_zone_link_shows_offline_within_seconds_and_reconnects_after() {
    let logs = capture_logs();
    let dir = tempfile::tempdir().expect("tempdir");
    let gdir = dir.path().join("global");
    let keepalive = || ConfigArgs {
        kds_keepalive_interval: Some("500ms".into()),
        kds_keepalive_timeout: Some("1s".into()),
        ..Default::default()
    };
    let (mut global, kds) = start_global_with(&gdir, keepalive()).await;
    let relay = Relay::start(kds).await;
    let token = zone_token(&global, "frozen").await;
    let mut zone =
        start_zone_with(dir.path(), "frozen", relay.addr, &gdir, &token, keepalive()).await;
    wait_online(&global, "frozen", true).await;
    let zone_failures = || {
        logs.lines_with(&["KDS connection to global failed", "frozen"])
            .len()
    };
    let failures_before = zone_failures();

    relay.freeze(true);
    // Keepalive of 500 ms + 1 s on both sides: each notices in about 1.5 s. Without keepalive
    // tuned (or with TCP alone) this takes tens of seconds.
    within(
        "global shows the frozen zone offline",
        Duration::from_secs(8),
        || async { overview(&global, "frozen").await["zoneInsight"]["online"] == false },
    )
    .await;
    within(
        "the zone notices the frozen link",
        Duration::from_secs(8),
        || async { zone_failures() > failures_before },
    )
    .await;

    relay.freeze(false);
    let o = eventually(
        "the zone back online on a new connection",
        PATIENCE,
        || async {
            let o = overview(&global, "frozen").await;
            (o["zoneInsight"]["online"] == true && subscriptions(&o) >= 2).then_some(o)
        },
    )
    .await;
    assert!(subscriptions(&o) >= 2, "{o}");
    zone.stop().await;
    global.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_garbage_kds_frame_is_refused_with_the_reason_and_registers_no_zone() {
    let dir = tempfile::tempdir().expect("tempdir");
    let gdir = dir.path().join("global");
    let (mut global, kds) = start_global(&gdir).await;
    let token = zone_token(&global, "garbage").await;
    let ca = std::fs::read_to_string(gdir.join("kds-tls").join("ca.pem")).expect("KDS CA");
    let channel = Endpoint::from_shared(format!("https://127.0.0.1:{}", kds.port()))
        .expect("endpoint")
        .tls_config(ClientTlsConfig::new().ca_certificate(Certificate::from_pem(ca)))
        .expect("tls")
        .connect()
        .await
        .expect("connect");

    for path in [
        atoll_kds::transport::GLOBAL_TO_ZONE_PATH,
        atoll_kds::transport::ZONE_TO_GLOBAL_PATH,
    ] {
        let mut grpc = tonic::client::Grpc::new(channel.clone());
        grpc.ready().await.expect("ready");
        let (tx, rx) = mpsc::channel(2);
        tx.send(vec![0xff, 0xff, 0xff]).await.expect("queue");
        let mut request = tonic::Request::new(ReceiverStream::new(rx));
        atoll_kds::transport::authenticate(&mut request, "garbage", &token).expect("credentials");
        let ended = tokio::time::timeout(scaled(PATIENCE), async {
            let mut stream = grpc
                .streaming(
                    request,
                    tonic::codegen::http::uri::PathAndQuery::from_static(path),
                    RawCodec,
                )
                .await?
                .into_inner();
            // Global's own subscriptions may come first (ZoneToGlobalSync); then the end.
            while stream.message().await?.is_some() {}
            Ok::<(), tonic::Status>(())
        })
        .await
        .expect("the call ends in time");
        drop(tx);
        let status = ended.expect_err("a garbage frame is not OK");
        assert_eq!(
            status.code(),
            tonic::Code::InvalidArgument,
            "{path}: {status:?}"
        );
        assert!(status.message().contains("decode"), "{path}: {status:?}");
    }

    let zones = global.items("/zones").await;
    assert!(
        zones.iter().all(|z| z["name"] != "garbage"),
        "no Zone registered for garbage: {zones:?}"
    );
    let (status, _) = global.get("/zones/garbage").await;
    assert_eq!(status, 404);
    global.stop().await;
}

//! What only the global control plane does beside the shared runtime (atoll-cp): serve KDS, the
//! sync with the zones, over TLS on `ATOLL_KDS_ADDRESS`; keep the zones' insights; delete
//! offline zones with what they owned. It plugs into the runtime through [`start_hook`], and
//! into the REST API through the `ZoneInspector` it installs.

pub mod insights;
pub mod publisher;
pub mod server;
pub mod zones;

use std::sync::Arc;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use atoll_cp::extension::{ExtensionContext, StartHook};
use atoll_kds::transport::KdsServer;

pub use insights::{ZoneLink, ZoneStatus};
pub use server::GlobalKds;
pub use zones::GlobalZones;

/// Starts the KDS server beside the shared runtime.
pub fn start_hook() -> StartHook {
    Box::new(|ctx: ExtensionContext| Box::pin(start(ctx)))
}

async fn start(ctx: ExtensionContext) -> anyhow::Result<Vec<JoinHandle<()>>> {
    let listener = TcpListener::bind(ctx.config.kds_address)
        .await
        .with_context(|| format!("binding the KDS address {}", ctx.config.kds_address))?;
    start_on(ctx, listener).await
}

/// Like the hook, on a listener the caller bound (tests).
pub async fn start_on(
    ctx: ExtensionContext,
    listener: TcpListener,
) -> anyhow::Result<Vec<JoinHandle<()>>> {
    let tls = atoll_cp::server_tls::load_or_generate(&atoll_cp::server_tls::ServerTlsSource {
        server: "KDS",
        setting_prefix: "ATOLL_KDS_TLS",
        cert_file: ctx.config.kds_tls_cert_file.clone(),
        key_file: ctx.config.kds_tls_key_file.clone(),
        dir: ctx.config.data_dir.join("kds-tls"),
        listen: ctx.config.kds_address,
        trust_hint: "give zones ca.pem as ATOLL_GLOBAL_CA_FILE",
    })?;
    let server_tls = atoll_cp::listener::server_tls_config(&tls.cert_chain_pem, &tls.key_pem)
        .context("the KDS server certificate")?;
    let status = ZoneStatus::new(&ctx.instance_id);
    let zones: Arc<dyn atoll_cp::extension::ZoneInspector> =
        Arc::new(GlobalZones::new(ctx.store.clone(), status.clone()));
    if ctx.zone_inspector.set(zones).is_err() {
        tracing::warn!("a zone inspector was already installed; zone overviews use that one");
    }
    let handler = Arc::new(
        GlobalKds::new(ctx.store.clone(), ctx.shutdown.clone(), status)
            .with_ack_timeout(ctx.config.kds_ack_timeout)
            .with_token_clock(server::TokenClock {
                clock: ctx.config.clock.clone(),
                leeway: ctx.config.token_leeway(),
            }),
    );
    let app = tonic::service::Routes::new(KdsServer::new(handler)).into_axum_router();
    tracing::info!(address = %listener.local_addr()?, "KDS server listening (gRPC, TLS)");
    let mut shutdown = ctx.shutdown.clone();
    let listener_settings = atoll_cp::listener::ListenerSettings {
        name: "kds",
        tls: Some(server_tls),
        handshake_timeout: ctx.config.handshake_timeout,
        idle_timeout: ctx.config.idle_timeout,
        max_connections: ctx.config.kds_max_connections,
        max_connections_setting: "ATOLL_KDS_MAX_CONNECTIONS",
        // Pings end the streams of a zone that stopped answering, so it shows offline.
        keepalive: Some(ctx.config.kds_keepalive),
        drain: std::time::Duration::ZERO,
    };
    let server = tokio::spawn(atoll_cp::listener::serve(
        listener,
        app,
        listener_settings,
        ctx.connections.clone(),
        async move {
            let _ = shutdown.wait_for(|s| *s).await;
        },
    ));
    let publisher = tokio::spawn(publisher::run(ctx.store.clone(), ctx.shutdown.clone()));
    Ok(vec![server, publisher])
}

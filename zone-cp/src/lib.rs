//! What only a zone control plane does: serve xDS (delta ADS) to Envoy proxies, register them
//! through the dataplane bootstrap, issue their mesh certificates, and keep each proxy's config
//! current as the store changes. The shared runtime (API, store, metrics) is atoll-cp's; this
//! crate plugs into it through [`start_hook`].

pub mod bootstrap;
pub mod ca;
pub mod directory;
pub mod error;
pub mod external;
pub mod index;
pub mod kds_client;
pub mod remote;
pub mod services;
pub mod snapshot;
pub mod zone_proxies;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;

use atoll_cp::extension::{DataplaneInspector, ExtensionContext, StartHook};
use atoll_xds_server::metrics::XdsMetrics;
use atoll_xds_server::service::AdsService;

use crate::directory::ZoneDirectory;

/// How long one step of a mesh CA switch waits for proxies that do not ACK it.
const CA_SWITCH_MAX_WAIT: std::time::Duration = std::time::Duration::from_secs(60);

/// Starts the zone's xDS server beside the shared runtime.
pub fn start_hook() -> StartHook {
    Box::new(|ctx: ExtensionContext| Box::pin(start(ctx)))
}

async fn start(ctx: ExtensionContext) -> anyhow::Result<Vec<tokio::task::JoinHandle<()>>> {
    let listener = TcpListener::bind(ctx.config.xds_address)
        .await
        .with_context(|| format!("binding the xDS address {}", ctx.config.xds_address))?;
    start_on(ctx, listener).await
}

/// Like the hook, on a listener the caller bound (tests).
pub async fn start_on(
    ctx: ExtensionContext,
    listener: TcpListener,
) -> anyhow::Result<Vec<tokio::task::JoinHandle<()>>> {
    let tls = atoll_cp::server_tls::load_or_generate(&atoll_cp::server_tls::ServerTlsSource {
        server: "xDS",
        setting_prefix: "ATOLL_XDS_TLS",
        cert_file: ctx.config.xds_tls_cert_file.clone(),
        key_file: ctx.config.xds_tls_key_file.clone(),
        dir: ctx.config.data_dir.join("xds-tls"),
        listen: ctx.config.xds_address,
        trust_hint: "give atoll-dp ca.pem with --ca-cert-file",
    })?;
    let server_tls = atoll_cp::listener::server_tls_config(&tls.cert_chain_pem, &tls.key_pem)
        .context("the xDS server certificate")?;
    let metrics = XdsMetrics::register(&ctx.registry).context("registering xDS metrics")?;
    let settings = directory::ZoneSettings {
        dp_auth: ctx.config.dp_auth,
        zone: ctx.config.zone.clone(),
        federated: ctx.config.global_address.is_some(),
        clock: ctx.config.clock.clone(),
        token_leeway: ctx.config.token_leeway(),
    };
    let directory = Arc::new(ZoneDirectory::new(
        ctx.store.clone(),
        settings.clone(),
        metrics.clone(),
    ));
    let inspector: Arc<dyn DataplaneInspector> = directory.clone();
    let _ = ctx.inspector.set(inspector);
    let xds_port = listener.local_addr()?.port();
    let bootstrap_state = Arc::new(bootstrap::BootstrapState {
        directory: directory.clone(),
        store: ctx.store.clone(),
        xds_ca_pem: tls.ca_pem.clone(),
        xds_port,
        settings,
        max_body_bytes: ctx.config.max_body_size,
    });
    let app =
        tonic::service::Routes::new(AdsService::new(directory.clone(), metrics).into_server())
            .into_axum_router()
            .route(
                "/bootstrap",
                axum::routing::post(bootstrap::handle).with_state(bootstrap_state),
            );
    tracing::info!(address = %listener.local_addr()?, "xDS server listening (delta ADS, TLS)");
    let mut shutdown = ctx.shutdown.clone();
    let listener_settings = atoll_cp::listener::ListenerSettings {
        name: "xds",
        tls: Some(server_tls),
        handshake_timeout: ctx.config.handshake_timeout,
        idle_timeout: ctx.config.idle_timeout,
        max_connections: ctx.config.xds_max_connections,
        max_connections_setting: "ATOLL_XDS_MAX_CONNECTIONS",
        // Pings end the stream of a proxy that stopped answering, so it shows offline.
        keepalive: Some(ctx.config.xds_keepalive),
        drain: Duration::ZERO,
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
    let watcher = tokio::spawn(directory.clone().run(ctx.shutdown.clone()));
    let collector = tokio::spawn(
        directory
            .clone()
            .collect_offline(ctx.config.dataplane_offline_grace, ctx.shutdown.clone()),
    );
    let ca_switches = tokio::spawn(
        directory
            .clone()
            .drive_ca_switches(CA_SWITCH_MAX_WAIT, ctx.shutdown.clone()),
    );
    let publisher = tokio::spawn(services::publish(
        ctx.store.clone(),
        ctx.config.zone.clone(),
        ctx.shutdown.clone(),
    ));
    let mut tasks = vec![server, watcher, collector, ca_switches, publisher];
    if let Some(link) = kds_client::spawn(
        &ctx.config,
        &ctx.instance_id,
        ctx.store.clone(),
        ctx.shutdown.clone(),
    )? {
        tasks.push(link);
    }
    Ok(tasks)
}

//! What the global and zone control planes share: configuration, the REST API, the diagnostics
//! server, metrics, and start-up (`run`, `migrate`).
//!
//! Binaries stay thin: they call [`cli_main`] with their [`Mode`]. Tests start a whole control
//! plane in-process with [`ControlPlane::start`] on listeners they bound themselves.

pub mod api;
pub mod auth;
pub mod change_warnings;
pub mod config;
pub mod diagnostics;
pub mod extension;
pub mod listener;
pub mod mesh_ca;
pub mod metrics;
pub mod references;
pub mod server_tls;
pub mod tokens;

use std::net::SocketAddr;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use atoll_store::SharedStore;

pub use config::{Config, ConfigArgs, Mode};

use crate::metrics::Metrics;

/// At shutdown, how long in-flight API requests get to finish.
const API_DRAIN: std::time::Duration = std::time::Duration::from_secs(10);

/// Name of the admin token file in the data directory.
pub const ADMIN_TOKEN_FILE: &str = "admin-token";

#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the control plane.
    Run(ConfigArgs),
    /// Apply the store's schema migrations and exit.
    Migrate(ConfigArgs),
}

/// Entry point of `atoll-global-cp` and `atoll-zone-cp`.
pub fn cli_main(mode: Mode) -> ExitCode {
    cli_main_with(mode, None)
}

/// Entry point with a binary-specific extension started beside the API.
pub fn cli_main_with(mode: Mode, hook: Option<extension::StartHook>) -> ExitCode {
    let cli = Cli::parse();
    let args = match &cli.command {
        Command::Run(a) | Command::Migrate(a) => a,
    };
    let config = match Config::resolve(mode, args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("Error: {e}");
            return ExitCode::FAILURE;
        }
    };
    init_tracing(&config.log_level);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("Error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Run(_) => run(config, hook).await,
            Command::Migrate(_) => migrate(&config).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("Error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_tracing(filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(filter))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

/// Applies migrations and exits (`atoll-*-cp migrate`).
pub async fn migrate(config: &Config) -> anyhow::Result<()> {
    ensure_data_dir(&config.data_dir)?;
    let applied = atoll_store::migrate_in(&config.store, &config.data_dir)
        .await
        .with_context(|| format!("migrating store {}", redact(&config.store)))?;
    tracing::info!(store = %redact(&config.store), applied, "migrations applied");
    Ok(())
}

/// Runs a control plane until SIGINT or SIGTERM.
pub async fn run(config: Config, hook: Option<extension::StartHook>) -> anyhow::Result<()> {
    let api = TcpListener::bind(config.api_address)
        .await
        .with_context(|| format!("binding the API address {}", config.api_address))?;
    let api_https = match config.api_https_address {
        Some(address) => Some(TcpListener::bind(address).await.with_context(|| {
            format!("binding the HTTPS API address {address} (ATOLL_API_HTTPS_ADDRESS)")
        })?),
        None => None,
    };
    let diagnostics = TcpListener::bind(config.diagnostics_address)
        .await
        .with_context(|| {
            format!(
                "binding the diagnostics address {}",
                config.diagnostics_address
            )
        })?;
    let listeners = Listeners {
        api,
        api_https,
        diagnostics,
    };
    let cp = ControlPlane::start_listeners(config, listeners, hook).await?;
    shutdown_signal().await;
    tracing::info!("shutting down");
    cp.stop().await;
    Ok(())
}

/// The sockets a control plane serves on, bound by the caller.
#[derive(Debug)]
pub struct Listeners {
    pub api: TcpListener,
    /// The REST API over HTTPS (`ATOLL_API_HTTPS_ADDRESS`), if served.
    pub api_https: Option<TcpListener>,
    pub diagnostics: TcpListener,
}

/// A running control plane (API + diagnostics servers).
pub struct ControlPlane {
    pub api_address: SocketAddr,
    /// Where the REST API answers over HTTPS, when it does.
    pub api_https_address: Option<SocketAddr>,
    pub diagnostics_address: SocketAddr,
    pub store: SharedStore,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for ControlPlane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControlPlane")
            .field("api_address", &self.api_address)
            .field("diagnostics_address", &self.diagnostics_address)
            .finish()
    }
}

impl ControlPlane {
    /// Opens the store (applying migrations), then serves the API and diagnostics on the given
    /// listeners.
    pub async fn start(
        config: Config,
        api: TcpListener,
        diagnostics: TcpListener,
    ) -> anyhow::Result<Self> {
        Self::start_with(config, api, diagnostics, None).await
    }

    /// Like `start`, also starting a binary-specific extension (e.g. the zone's xDS server).
    pub async fn start_with(
        config: Config,
        api: TcpListener,
        diagnostics: TcpListener,
        hook: Option<extension::StartHook>,
    ) -> anyhow::Result<Self> {
        let listeners = Listeners {
            api,
            api_https: None,
            diagnostics,
        };
        Self::start_listeners(config, listeners, hook).await
    }

    /// Like `start_with`, also serving the API over HTTPS when `listeners.api_https` is given.
    pub async fn start_listeners(
        config: Config,
        listeners: Listeners,
        hook: Option<extension::StartHook>,
    ) -> anyhow::Result<Self> {
        let Listeners {
            api,
            api_https,
            diagnostics,
        } = listeners;
        ensure_data_dir(&config.data_dir)?;
        let rbac = match &config.api_rbac_file {
            Some(path) => auth::RbacPolicy::from_file(path)?,
            None => auth::RbacPolicy::default(),
        };
        let api_tls = match &api_https {
            Some(listener) => {
                let tls = server_tls::load_or_generate(&server_tls::ServerTlsSource {
                    server: "API",
                    setting_prefix: "ATOLL_API_TLS",
                    cert_file: config.api_tls_cert_file.clone(),
                    key_file: config.api_tls_key_file.clone(),
                    dir: config.data_dir.join("api-tls"),
                    listen: listener.local_addr()?,
                    trust_hint: "atollctl trusts it with --ca-cert-file DATA_DIR/api-tls/ca.pem",
                })?;
                Some(
                    listener::server_tls_config(&tls.cert_chain_pem, &tls.key_pem)
                        .context("the HTTPS API certificate (ATOLL_API_TLS_CERT_FILE/_KEY_FILE)")?,
                )
            }
            None => None,
        };
        let metrics = Metrics::new().context("registering metrics")?;
        let store_options = atoll_store::StoreOptions {
            timeout: config.store_timeout,
        };
        let raw = atoll_store::open_with(&config.store, &config.data_dir, &store_options)
            .await
            .with_context(|| format!("opening store {}", redact(&config.store)))?;
        let observed = metrics.clone();
        let store = atoll_store::InstrumentedStore::shared(raw, move |op, backend, elapsed| {
            observed.observe_store(op, backend, elapsed)
        });
        let admin_token = load_or_create_admin_token(&config.data_dir)?;
        let inspector = Arc::new(std::sync::OnceLock::new());
        let zone_inspector = Arc::new(std::sync::OnceLock::new());
        let instance_id = instance_id();
        let state = Arc::new(api::ApiState {
            store: store.clone(),
            mode: config.mode,
            zone: config.zone.clone(),
            instance_id: instance_id.clone(),
            admin_token,
            auth: auth::AuthSettings {
                loopback_admin: config.api_loopback_admin,
                rbac,
            },
            metrics: metrics.clone(),
            inspector: inspector.clone(),
            zone_inspector: zone_inspector.clone(),
            global_address: config.global_address.clone(),
        });
        let api_address = api.local_addr()?;
        let api_https_address = api_https.as_ref().map(|l| l.local_addr()).transpose()?;
        let diagnostics_address = diagnostics.local_addr()?;
        let (shutdown, _) = watch::channel(false);
        let mut extension_tasks = Vec::new();
        if let Some(hook) = hook {
            extension_tasks = hook(extension::ExtensionContext {
                config: config.clone(),
                store: store.clone(),
                registry: metrics.registry(),
                connections: metrics.connections(),
                inspector,
                zone_inspector,
                instance_id,
                shutdown: shutdown.subscribe(),
            })
            .await?;
        }
        let api_app = api::router_with_body_limit(state, config.max_body_size);
        let api_settings = listener::ListenerSettings {
            name: "api",
            tls: None,
            handshake_timeout: config.handshake_timeout,
            idle_timeout: config.idle_timeout,
            max_connections: config.api_max_connections,
            max_connections_setting: "ATOLL_API_MAX_CONNECTIONS",
            keepalive: None,
            drain: API_DRAIN,
        };
        let connections = metrics.connections();
        let mut tasks = Vec::new();
        if let (Some(listener), Some(tls)) = (api_https, api_tls) {
            let settings = listener::ListenerSettings {
                name: "api-https",
                tls: Some(tls),
                ..api_settings.clone()
            };
            let mut rx = shutdown.subscribe();
            tasks.push(tokio::spawn(listener::serve(
                listener,
                api_app.clone(),
                settings,
                connections.clone(),
                async move {
                    let _ = rx.wait_for(|stop| *stop).await;
                },
            )));
        }
        let diag_app = diagnostics::router(Arc::new(diagnostics::DiagnosticsState {
            store: store.clone(),
            metrics,
        }));
        let mut rx = shutdown.subscribe();
        let api_task = tokio::spawn(listener::serve(
            api,
            api_app,
            api_settings,
            connections,
            async move {
                let _ = rx.wait_for(|stop| *stop).await;
            },
        ));
        let mut rx = shutdown.subscribe();
        let diag_task = tokio::spawn(async move {
            let serve = axum::serve(diagnostics, diag_app).with_graceful_shutdown(async move {
                let _ = rx.wait_for(|stop| *stop).await;
            });
            if let Err(e) = serve.await {
                tracing::error!(error = %e, "diagnostics server failed");
            }
        });
        tracing::info!(
            mode = config.mode.as_str(),
            api = %api_address,
            api_https = ?api_https_address,
            loopback_admin = config.api_loopback_admin,
            diagnostics = %diagnostics_address,
            store = %redact(&config.store),
            data_dir = %config.data_dir.display(),
            "control plane started"
        );
        Ok(Self {
            api_address,
            api_https_address,
            diagnostics_address,
            store,
            shutdown,
            tasks: [api_task, diag_task]
                .into_iter()
                .chain(tasks)
                .chain(extension_tasks)
                .collect(),
        })
    }

    /// Stops serving and waits for in-flight requests.
    pub async fn stop(self) {
        let _ = self.shutdown.send(true);
        for t in self.tasks {
            let _ = t.await;
        }
    }
}

fn ensure_data_dir(dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)
        .with_context(|| format!("creating the data directory {}", dir.display()))
}

/// Reads the admin token from the data directory, creating it (owner-only) on first start.
pub fn load_or_create_admin_token(data_dir: &Path) -> anyhow::Result<String> {
    let path = data_dir.join(ADMIN_TOKEN_FILE);
    if let Ok(existing) = std::fs::read_to_string(&path) {
        let token = existing.trim().to_string();
        if !token.is_empty() {
            return Ok(token);
        }
    }
    let token = random_hex(32)?;
    write_private(&path, &token)
        .with_context(|| format!("writing the admin token to {}", path.display()))?;
    tracing::info!(path = %path.display(), "created the admin token");
    Ok(token)
}

#[cfg(unix)]
fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(contents.as_bytes())?;
    f.write_all(b"\n")
}

#[cfg(not(unix))]
fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    std::fs::write(path, contents)
}

fn random_hex(bytes: usize) -> anyhow::Result<String> {
    let mut buf = vec![0u8; bytes];
    getrandom::fill(&mut buf).map_err(|e| anyhow::anyhow!("no randomness available: {e}"))?;
    Ok(buf.iter().map(|b| format!("{b:02x}")).collect())
}

fn instance_id() -> String {
    let host = std::fs::read_to_string("/etc/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_default();
    let suffix = random_hex(3).unwrap_or_default();
    if host.is_empty() {
        format!("atoll-{suffix}")
    } else {
        format!("{host}-{suffix}")
    }
}

/// A store URL without its password, for logs.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let creds = &url[scheme_end + 3..at];
            match creds.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme_end + 3], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_passwords_in_store_urls() {
        assert_eq!(
            redact("postgres://atoll:secret@127.0.0.1:5432/atoll"),
            "postgres://atoll:***@127.0.0.1:5432/atoll"
        );
        assert_eq!(redact("sqlite://x.db"), "sqlite://x.db");
    }

    #[test]
    fn admin_token_is_created_once_and_private() {
        let dir = tempfile::tempdir().expect("tempdir");
        let a = load_or_create_admin_token(dir.path()).expect("token");
        let b = load_or_create_admin_token(dir.path()).expect("token");
        assert_eq!(a, b);
        assert_eq!(a.len(), 64);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join(ADMIN_TOKEN_FILE))
                .expect("meta")
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }
}

//! Control-plane configuration. Every setting is a command-line flag and an `ATOLL_*` environment
//! variable, and a YAML file (`--config`, `ATOLL_CONFIG`) may hold them all. Precedence: flag or
//! environment, then the file, then the default.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Args;
use serde::Deserialize;

/// Which control plane this process is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Global,
    /// A zone control plane; without a global address it runs standalone (one-zone mesh).
    Zone,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Global => "global",
            Mode::Zone => "zone",
        }
    }
}

pub const DEFAULT_API_ADDRESS: &str = "0.0.0.0:5681";
/// The REST API over HTTPS, as Kuma's 5682.
pub const DEFAULT_API_HTTPS_ADDRESS: &str = "0.0.0.0:5682";
pub const DEFAULT_DIAGNOSTICS_ADDRESS: &str = "0.0.0.0:5680";
pub const DEFAULT_DATA_DIR: &str = "./atoll-data";
pub const DEFAULT_ZONE: &str = "default";
pub const DEFAULT_XDS_ADDRESS: &str = "0.0.0.0:5678";
pub const DEFAULT_KDS_ADDRESS: &str = "0.0.0.0:5685";
/// Largest request body the REST API and the zone's `POST /bootstrap` accept.
pub const DEFAULT_MAX_BODY_SIZE: &str = "4MiB";
/// How long a store operation waits for the database while it is away.
pub const DEFAULT_STORE_TIMEOUT: &str = "5s";
/// Kuma removes universal dataplanes that stayed offline this long (72h).
pub const DEFAULT_DATAPLANE_OFFLINE_GRACE: &str = "72h";
pub const DEFAULT_TOKEN_CLOCK_LEEWAY: &str = "30s";
/// A connection that has not finished its TLS handshake (or, on the plain REST API, sent its
/// request headers) by then is closed.
pub const DEFAULT_HANDSHAKE_TIMEOUT: &str = "10s";
/// A connection with no request or stream in flight for this long is closed.
pub const DEFAULT_IDLE_TIMEOUT: &str = "60s";
/// Each listener's cap on open connections. xDS holds one connection per proxy.
pub const DEFAULT_XDS_MAX_CONNECTIONS: usize = 10_000;
pub const DEFAULT_KDS_MAX_CONNECTIONS: usize = 1_000;
pub const DEFAULT_API_MAX_CONNECTIONS: usize = 1_000;
/// HTTP/2 keepalive: a ping after this long without a byte from the peer, and the connection
/// closed when the ping is not answered within the timeout. A frozen peer is noticed within
/// interval + timeout (10 s).
pub const DEFAULT_KEEPALIVE_INTERVAL: &str = "5s";
pub const DEFAULT_KEEPALIVE_TIMEOUT: &str = "5s";
/// A KDS peer that leaves a sent message unacknowledged this long (no ACK or NACK making
/// progress) is taken as gone. Generous: a receiver stores a chunk before it answers, and a
/// store may stall for seconds (a PostgreSQL restart).
pub const DEFAULT_KDS_ACK_TIMEOUT: &str = "30s";

/// How the zone control plane authenticates proxies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DpAuth {
    /// Dataplane tokens (`atollctl generate dataplane-token`).
    #[default]
    Token,
    /// No authentication: for benchmarks only.
    None,
}

/// Settings as given on the command line or in the environment (all optional: unset ones fall
/// back to the config file, then to defaults).
#[derive(Debug, Clone, Default, Args)]
pub struct ConfigArgs {
    /// YAML file holding any of the settings below (keys as in the long flag names, snake_case
    /// or kebab-case).
    #[arg(long, env = "ATOLL_CONFIG")]
    pub config: Option<PathBuf>,

    /// Address of the REST API [default: 0.0.0.0:5681].
    #[arg(long, env = "ATOLL_API_ADDRESS")]
    pub api_address: Option<SocketAddr>,

    /// Address of the REST API over HTTPS [default: 0.0.0.0:5682].
    #[arg(long, env = "ATOLL_API_HTTPS_ADDRESS")]
    pub api_https_address: Option<SocketAddr>,

    /// Serve the REST API over HTTPS too [default: true].
    #[arg(long, env = "ATOLL_API_HTTPS_ENABLED")]
    pub api_https_enabled: Option<bool>,

    /// PEM certificate chain for the HTTPS API; a self-signed one is generated in the data
    /// directory (`api-tls/`) when not given.
    #[arg(long, env = "ATOLL_API_TLS_CERT_FILE")]
    pub api_tls_cert_file: Option<PathBuf>,

    /// PEM private key for the HTTPS API.
    #[arg(long, env = "ATOLL_API_TLS_KEY_FILE")]
    pub api_tls_key_file: Option<PathBuf>,

    /// Requests from loopback without a token are admin, as in Kuma [default: true]; when
    /// false they are anonymous unless they carry a token.
    #[arg(long, env = "ATOLL_API_LOOPBACK_ADMIN")]
    pub api_loopback_admin: Option<bool>,

    /// YAML or JSON file of RBAC rules for the REST API (format in README.md); without it,
    /// Kuma's defaults.
    #[arg(long, env = "ATOLL_API_RBAC_FILE")]
    pub api_rbac_file: Option<PathBuf>,

    /// Address of the diagnostics server (/ready, /healthy, /metrics) [default: 0.0.0.0:5680].
    #[arg(long, env = "ATOLL_DIAGNOSTICS_ADDRESS")]
    pub diagnostics_address: Option<SocketAddr>,

    /// Directory for the embedded store, the admin token and generated keys
    /// [default: ./atoll-data].
    #[arg(long, env = "ATOLL_DATA_DIR")]
    pub data_dir: Option<PathBuf>,

    /// Store: `sqlite://PATH` (default: atoll.db in the data directory), `postgres://...`, or
    /// `memory` (nothing survives a restart).
    #[arg(long, env = "ATOLL_STORE")]
    pub store: Option<String>,

    /// Largest request body the REST API and the zone's POST /bootstrap accept, in bytes or
    /// with a KiB/MiB suffix; larger ones get 413 [default: 4MiB].
    #[arg(long, env = "ATOLL_MAX_BODY_SIZE")]
    pub max_body_size: Option<String>,

    /// PostgreSQL store: how long an operation waits for the database while it is away before
    /// the API answers 503 with Retry-After [default: 5s].
    #[arg(long, env = "ATOLL_STORE_TIMEOUT")]
    pub store_timeout: Option<String>,

    /// Zone name (zone control plane) [default: default].
    #[arg(long, env = "ATOLL_ZONE")]
    pub zone: Option<String>,

    /// Log filter, e.g. `info` or `atoll=debug` [default: info].
    #[arg(long, env = "ATOLL_LOG_LEVEL")]
    pub log_level: Option<String>,

    /// Zone CP: address of the xDS server (delta ADS and dataplane bootstrap, TLS)
    /// [default: 0.0.0.0:5678].
    #[arg(long, env = "ATOLL_XDS_ADDRESS")]
    pub xds_address: Option<SocketAddr>,

    /// Zone CP: PEM certificate chain for the xDS server; a self-signed one is generated in the
    /// data directory when not given.
    #[arg(long, env = "ATOLL_XDS_TLS_CERT_FILE")]
    pub xds_tls_cert_file: Option<PathBuf>,

    /// Zone CP: PEM private key for the xDS server.
    #[arg(long, env = "ATOLL_XDS_TLS_KEY_FILE")]
    pub xds_tls_key_file: Option<PathBuf>,

    /// Zone CP: how proxies authenticate: `token` (dataplane tokens) or `none` (benchmarks only)
    /// [default: token].
    #[arg(long, env = "ATOLL_DP_AUTH", value_enum)]
    pub dp_auth: Option<DpAuth>,

    /// Zone CP: dataplanes offline longer than this are removed [default: 72h].
    #[arg(long, env = "ATOLL_DATAPLANE_OFFLINE_GRACE")]
    pub dataplane_offline_grace: Option<String>,

    /// How far a token's expiry and not-before times may be off the control plane's clock (clock
    /// skew between hosts) [default: 30s].
    #[arg(long, env = "ATOLL_TOKEN_CLOCK_LEEWAY")]
    pub token_clock_leeway: Option<String>,

    /// Global CP: address of the KDS server zones connect to (gRPC over TLS)
    /// [default: 0.0.0.0:5685].
    #[arg(long, env = "ATOLL_KDS_ADDRESS")]
    pub kds_address: Option<SocketAddr>,

    /// Global CP: PEM certificate chain for the KDS server; a self-signed one is generated in the
    /// data directory (`kds-tls/`) when not given.
    #[arg(long, env = "ATOLL_KDS_TLS_CERT_FILE")]
    pub kds_tls_cert_file: Option<PathBuf>,

    /// Global CP: PEM private key for the KDS server.
    #[arg(long, env = "ATOLL_KDS_TLS_KEY_FILE")]
    pub kds_tls_key_file: Option<PathBuf>,

    /// Zone CP: the global control plane's KDS address, `grpcs://host:port`; without it the zone
    /// runs standalone.
    #[arg(long, env = "ATOLL_GLOBAL_ADDRESS")]
    pub global_address: Option<String>,

    /// Zone CP: PEM CA certificate that signed the global's KDS certificate.
    #[arg(long, env = "ATOLL_GLOBAL_CA_FILE")]
    pub global_ca_file: Option<PathBuf>,

    /// Zone CP: file holding the zone token (scope cp) presented to the global.
    #[arg(long, env = "ATOLL_ZONE_TOKEN_FILE")]
    pub zone_token_file: Option<PathBuf>,

    /// Every listener (API, xDS, KDS): a connection that has not completed its TLS handshake
    /// (plain API: sent its request headers) within this is closed [default: 10s].
    #[arg(long, env = "ATOLL_HANDSHAKE_TIMEOUT")]
    pub handshake_timeout: Option<String>,

    /// Every listener: a connection with no request or stream in flight for this long is closed
    /// [default: 60s].
    #[arg(long, env = "ATOLL_IDLE_TIMEOUT")]
    pub idle_timeout: Option<String>,

    /// Most open connections on the REST API; more are closed at once [default: 1000].
    #[arg(long, env = "ATOLL_API_MAX_CONNECTIONS")]
    pub api_max_connections: Option<usize>,

    /// Zone CP: most open connections on the xDS port [default: 10000].
    #[arg(long, env = "ATOLL_XDS_MAX_CONNECTIONS")]
    pub xds_max_connections: Option<usize>,

    /// Global CP: most open connections on the KDS port [default: 1000].
    #[arg(long, env = "ATOLL_KDS_MAX_CONNECTIONS")]
    pub kds_max_connections: Option<usize>,

    /// Zone CP: HTTP/2 ping to a proxy silent this long [default: 5s].
    #[arg(long, env = "ATOLL_XDS_KEEPALIVE_INTERVAL")]
    pub xds_keepalive_interval: Option<String>,

    /// Zone CP: a proxy that does not answer a ping within this is disconnected [default: 5s].
    #[arg(long, env = "ATOLL_XDS_KEEPALIVE_TIMEOUT")]
    pub xds_keepalive_timeout: Option<String>,

    /// Both sides of KDS: HTTP/2 ping to a peer silent this long [default: 5s].
    #[arg(long, env = "ATOLL_KDS_KEEPALIVE_INTERVAL")]
    pub kds_keepalive_interval: Option<String>,

    /// Both sides of KDS: a peer that does not answer a ping within this is disconnected
    /// [default: 5s].
    #[arg(long, env = "ATOLL_KDS_KEEPALIVE_TIMEOUT")]
    pub kds_keepalive_timeout: Option<String>,

    /// Both sides of KDS: a peer that leaves a sent message unacknowledged this long is
    /// disconnected [default: 30s].
    #[arg(long, env = "ATOLL_KDS_ACK_TIMEOUT")]
    pub kds_ack_timeout: Option<String>,
}

/// The same settings read from a YAML file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigFile {
    #[serde(alias = "api-address")]
    api_address: Option<SocketAddr>,
    #[serde(alias = "api-https-address")]
    api_https_address: Option<SocketAddr>,
    #[serde(alias = "api-https-enabled")]
    api_https_enabled: Option<bool>,
    #[serde(alias = "api-tls-cert-file")]
    api_tls_cert_file: Option<PathBuf>,
    #[serde(alias = "api-tls-key-file")]
    api_tls_key_file: Option<PathBuf>,
    #[serde(alias = "api-loopback-admin")]
    api_loopback_admin: Option<bool>,
    #[serde(alias = "api-rbac-file")]
    api_rbac_file: Option<PathBuf>,
    #[serde(alias = "diagnostics-address")]
    diagnostics_address: Option<SocketAddr>,
    #[serde(alias = "data-dir")]
    data_dir: Option<PathBuf>,
    store: Option<String>,
    #[serde(alias = "store-timeout")]
    store_timeout: Option<String>,
    #[serde(alias = "max-body-size")]
    max_body_size: Option<String>,
    zone: Option<String>,
    #[serde(alias = "log-level")]
    log_level: Option<String>,
    #[serde(alias = "xds-address")]
    xds_address: Option<SocketAddr>,
    #[serde(alias = "xds-tls-cert-file")]
    xds_tls_cert_file: Option<PathBuf>,
    #[serde(alias = "xds-tls-key-file")]
    xds_tls_key_file: Option<PathBuf>,
    #[serde(alias = "dp-auth")]
    dp_auth: Option<DpAuth>,
    #[serde(alias = "dataplane-offline-grace")]
    dataplane_offline_grace: Option<String>,
    #[serde(alias = "token-clock-leeway")]
    token_clock_leeway: Option<String>,
    #[serde(alias = "kds-address")]
    kds_address: Option<SocketAddr>,
    #[serde(alias = "kds-tls-cert-file")]
    kds_tls_cert_file: Option<PathBuf>,
    #[serde(alias = "kds-tls-key-file")]
    kds_tls_key_file: Option<PathBuf>,
    #[serde(alias = "global-address")]
    global_address: Option<String>,
    #[serde(alias = "global-ca-file")]
    global_ca_file: Option<PathBuf>,
    #[serde(alias = "zone-token-file")]
    zone_token_file: Option<PathBuf>,
    #[serde(alias = "handshake-timeout")]
    handshake_timeout: Option<String>,
    #[serde(alias = "idle-timeout")]
    idle_timeout: Option<String>,
    #[serde(alias = "api-max-connections")]
    api_max_connections: Option<usize>,
    #[serde(alias = "xds-max-connections")]
    xds_max_connections: Option<usize>,
    #[serde(alias = "kds-max-connections")]
    kds_max_connections: Option<usize>,
    #[serde(alias = "xds-keepalive-interval")]
    xds_keepalive_interval: Option<String>,
    #[serde(alias = "xds-keepalive-timeout")]
    xds_keepalive_timeout: Option<String>,
    #[serde(alias = "kds-keepalive-interval")]
    kds_keepalive_interval: Option<String>,
    #[serde(alias = "kds-keepalive-timeout")]
    kds_keepalive_timeout: Option<String>,
    #[serde(alias = "kds-ack-timeout")]
    kds_ack_timeout: Option<String>,
}

/// The resolved configuration a control plane runs with.
#[derive(Debug, Clone)]
pub struct Config {
    pub mode: Mode,
    pub api_address: SocketAddr,
    /// The HTTPS API's address; None when HTTPS is off.
    pub api_https_address: Option<SocketAddr>,
    pub api_tls_cert_file: Option<PathBuf>,
    pub api_tls_key_file: Option<PathBuf>,
    pub api_loopback_admin: bool,
    pub api_rbac_file: Option<PathBuf>,
    pub diagnostics_address: SocketAddr,
    pub data_dir: PathBuf,
    pub store: String,
    /// How long a store operation waits for an unreachable database.
    pub store_timeout: std::time::Duration,
    /// Largest request body accepted, in bytes.
    pub max_body_size: usize,
    pub zone: String,
    pub log_level: String,
    pub xds_address: SocketAddr,
    pub xds_tls_cert_file: Option<PathBuf>,
    pub xds_tls_key_file: Option<PathBuf>,
    pub dp_auth: DpAuth,
    pub dataplane_offline_grace: Duration,
    /// Clock skew allowed on tokens' expiry and not-before times.
    pub token_clock_leeway: Duration,
    /// The wall clock (token expiry, certificate validity, timestamps): the host's, unless a
    /// test sets another after resolving.
    pub clock: atoll_clock::SharedClock,
    pub kds_address: SocketAddr,
    pub kds_tls_cert_file: Option<PathBuf>,
    pub kds_tls_key_file: Option<PathBuf>,
    /// `grpcs://host:port` of the global's KDS server (zone CP).
    pub global_address: Option<String>,
    pub global_ca_file: Option<PathBuf>,
    pub zone_token_file: Option<PathBuf>,
    /// Limits every listener (API, xDS, KDS) applies to its connections.
    pub handshake_timeout: Duration,
    pub idle_timeout: Duration,
    pub api_max_connections: usize,
    pub xds_max_connections: usize,
    pub kds_max_connections: usize,
    /// HTTP/2 keepalive of the xDS listener (towards proxies).
    pub xds_keepalive: Keepalive,
    /// HTTP/2 keepalive of both ends of KDS.
    pub kds_keepalive: Keepalive,
    pub kds_ack_timeout: Duration,
}

/// HTTP/2 keepalive: ping a peer silent for `interval`; close the connection when the ping is
/// not answered within `timeout`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Keepalive {
    pub interval: Duration,
    pub timeout: Duration,
}

/// Why the configuration could not be resolved.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path} is invalid: {reason}")]
    Invalid { path: PathBuf, reason: String },
    #[error("{setting}: {reason}")]
    Setting {
        setting: &'static str,
        reason: String,
    },
}

impl Config {
    /// [`Config::token_clock_leeway`] as the token verifier takes it.
    pub fn token_leeway(&self) -> chrono::TimeDelta {
        chrono::TimeDelta::from_std(self.token_clock_leeway)
            .unwrap_or(atoll_identity::token::LEEWAY)
    }

    /// Resolves flags/environment over the config file over defaults.
    pub fn resolve(mode: Mode, args: &ConfigArgs) -> Result<Config, ConfigError> {
        let file = match &args.config {
            Some(path) => read_file(path)?,
            None => ConfigFile::default(),
        };
        let default_addr = |s: &str| s.parse::<SocketAddr>().ok();
        let api_cert = args.api_tls_cert_file.is_some() || file.api_tls_cert_file.is_some();
        let api_key = args.api_tls_key_file.is_some() || file.api_tls_key_file.is_some();
        if api_cert != api_key {
            return Err(ConfigError::Setting {
                setting: "ATOLL_API_TLS_CERT_FILE",
                reason: "ATOLL_API_TLS_CERT_FILE and ATOLL_API_TLS_KEY_FILE go together: give both, or neither to use a generated certificate".into(),
            });
        }
        Ok(Config {
            mode,
            api_address: args
                .api_address
                .or(file.api_address)
                .or_else(|| default_addr(DEFAULT_API_ADDRESS))
                .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 5681))),
            api_https_address: args
                .api_https_enabled
                .or(file.api_https_enabled)
                .unwrap_or(true)
                .then(|| {
                    args.api_https_address
                        .or(file.api_https_address)
                        .or_else(|| default_addr(DEFAULT_API_HTTPS_ADDRESS))
                        .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 5682)))
                }),
            api_tls_cert_file: args.api_tls_cert_file.clone().or(file.api_tls_cert_file),
            api_tls_key_file: args.api_tls_key_file.clone().or(file.api_tls_key_file),
            api_loopback_admin: args
                .api_loopback_admin
                .or(file.api_loopback_admin)
                .unwrap_or(true),
            api_rbac_file: args.api_rbac_file.clone().or(file.api_rbac_file),
            diagnostics_address: args
                .diagnostics_address
                .or(file.diagnostics_address)
                .or_else(|| default_addr(DEFAULT_DIAGNOSTICS_ADDRESS))
                .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 5680))),
            data_dir: args
                .data_dir
                .clone()
                .or(file.data_dir)
                .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR)),
            store: args
                .store
                .clone()
                .or(file.store)
                .unwrap_or_else(|| "sqlite://".to_string()),
            store_timeout: {
                let text = args
                    .store_timeout
                    .clone()
                    .or(file.store_timeout)
                    .unwrap_or_else(|| DEFAULT_STORE_TIMEOUT.to_string());
                match atoll_core::types::parse_go_duration(&text) {
                    Some(d) if !d.is_zero() => d,
                    _ => {
                        return Err(ConfigError::Setting {
                            setting: "ATOLL_STORE_TIMEOUT",
                            reason: format!(
                                "must be a positive duration such as 5s or 500ms (got {text:?})"
                            ),
                        });
                    }
                }
            },
            max_body_size: {
                let text = args
                    .max_body_size
                    .clone()
                    .or(file.max_body_size)
                    .unwrap_or_else(|| DEFAULT_MAX_BODY_SIZE.to_string());
                parse_size(&text)
                    .filter(|n| *n > 0)
                    .ok_or(ConfigError::Setting {
                        setting: "ATOLL_MAX_BODY_SIZE",
                        reason: format!(
                            "must be a positive size in bytes or with a KiB or MiB suffix, such as \
                         4MiB (got {text:?})"
                        ),
                    })?
            },
            zone: args
                .zone
                .clone()
                .or(file.zone)
                .unwrap_or_else(|| DEFAULT_ZONE.to_string()),
            log_level: args
                .log_level
                .clone()
                .or(file.log_level)
                .unwrap_or_else(|| "info".to_string()),
            xds_address: args
                .xds_address
                .or(file.xds_address)
                .or_else(|| default_addr(DEFAULT_XDS_ADDRESS))
                .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 5678))),
            xds_tls_cert_file: args.xds_tls_cert_file.clone().or(file.xds_tls_cert_file),
            xds_tls_key_file: args.xds_tls_key_file.clone().or(file.xds_tls_key_file),
            dp_auth: args.dp_auth.or(file.dp_auth).unwrap_or_default(),
            dataplane_offline_grace: duration(
                "ATOLL_DATAPLANE_OFFLINE_GRACE",
                args.dataplane_offline_grace.clone(),
                file.dataplane_offline_grace,
                DEFAULT_DATAPLANE_OFFLINE_GRACE,
            )?,
            token_clock_leeway: duration(
                "ATOLL_TOKEN_CLOCK_LEEWAY",
                args.token_clock_leeway.clone(),
                file.token_clock_leeway,
                DEFAULT_TOKEN_CLOCK_LEEWAY,
            )?,
            clock: atoll_clock::system(),
            kds_address: args
                .kds_address
                .or(file.kds_address)
                .or_else(|| default_addr(DEFAULT_KDS_ADDRESS))
                .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 5685))),
            kds_tls_cert_file: args.kds_tls_cert_file.clone().or(file.kds_tls_cert_file),
            kds_tls_key_file: args.kds_tls_key_file.clone().or(file.kds_tls_key_file),
            global_address: match args.global_address.clone().or(file.global_address) {
                Some(a) if !a.starts_with("grpcs://") => {
                    return Err(ConfigError::Setting {
                        setting: "ATOLL_GLOBAL_ADDRESS",
                        reason: format!("must be grpcs://host:port (got {a:?})"),
                    });
                }
                other => other.filter(|a| !a.is_empty()),
            },
            global_ca_file: args.global_ca_file.clone().or(file.global_ca_file),
            zone_token_file: args.zone_token_file.clone().or(file.zone_token_file),
            handshake_timeout: positive_duration(
                "ATOLL_HANDSHAKE_TIMEOUT",
                args.handshake_timeout.clone(),
                file.handshake_timeout,
                DEFAULT_HANDSHAKE_TIMEOUT,
            )?,
            idle_timeout: positive_duration(
                "ATOLL_IDLE_TIMEOUT",
                args.idle_timeout.clone(),
                file.idle_timeout,
                DEFAULT_IDLE_TIMEOUT,
            )?,
            api_max_connections: connection_cap(
                "ATOLL_API_MAX_CONNECTIONS",
                args.api_max_connections.or(file.api_max_connections),
                DEFAULT_API_MAX_CONNECTIONS,
            )?,
            xds_max_connections: connection_cap(
                "ATOLL_XDS_MAX_CONNECTIONS",
                args.xds_max_connections.or(file.xds_max_connections),
                DEFAULT_XDS_MAX_CONNECTIONS,
            )?,
            kds_max_connections: connection_cap(
                "ATOLL_KDS_MAX_CONNECTIONS",
                args.kds_max_connections.or(file.kds_max_connections),
                DEFAULT_KDS_MAX_CONNECTIONS,
            )?,
            xds_keepalive: Keepalive {
                interval: positive_duration(
                    "ATOLL_XDS_KEEPALIVE_INTERVAL",
                    args.xds_keepalive_interval.clone(),
                    file.xds_keepalive_interval,
                    DEFAULT_KEEPALIVE_INTERVAL,
                )?,
                timeout: positive_duration(
                    "ATOLL_XDS_KEEPALIVE_TIMEOUT",
                    args.xds_keepalive_timeout.clone(),
                    file.xds_keepalive_timeout,
                    DEFAULT_KEEPALIVE_TIMEOUT,
                )?,
            },
            kds_keepalive: Keepalive {
                interval: positive_duration(
                    "ATOLL_KDS_KEEPALIVE_INTERVAL",
                    args.kds_keepalive_interval.clone(),
                    file.kds_keepalive_interval,
                    DEFAULT_KEEPALIVE_INTERVAL,
                )?,
                timeout: positive_duration(
                    "ATOLL_KDS_KEEPALIVE_TIMEOUT",
                    args.kds_keepalive_timeout.clone(),
                    file.kds_keepalive_timeout,
                    DEFAULT_KEEPALIVE_TIMEOUT,
                )?,
            },
            kds_ack_timeout: positive_duration(
                "ATOLL_KDS_ACK_TIMEOUT",
                args.kds_ack_timeout.clone(),
                file.kds_ack_timeout,
                DEFAULT_KDS_ACK_TIMEOUT,
            )?,
        })
    }
}

/// A duration setting: flag or environment, else the file, else the default.
fn duration(
    setting: &'static str,
    arg: Option<String>,
    file: Option<String>,
    default: &str,
) -> Result<Duration, ConfigError> {
    let text = arg.or(file).unwrap_or_else(|| default.to_string());
    atoll_core::types::parse_go_duration(&text).ok_or(ConfigError::Setting {
        setting,
        reason: format!("must be a duration such as 30s or 72h (got {text:?})"),
    })
}

/// A duration setting that must be more than zero (a zero timeout would close everything).
fn positive_duration(
    setting: &'static str,
    arg: Option<String>,
    file: Option<String>,
    default: &str,
) -> Result<Duration, ConfigError> {
    let d = duration(setting, arg, file, default)?;
    if d.is_zero() {
        return Err(ConfigError::Setting {
            setting,
            reason: "must be more than 0".to_string(),
        });
    }
    Ok(d)
}

fn connection_cap(
    setting: &'static str,
    value: Option<usize>,
    default: usize,
) -> Result<usize, ConfigError> {
    match value.unwrap_or(default) {
        0 => Err(ConfigError::Setting {
            setting,
            reason: "must be at least 1".to_string(),
        }),
        n => Ok(n),
    }
}

/// A size: bytes, or a number with a `KiB` or `MiB` suffix.
pub fn parse_size(text: &str) -> Option<usize> {
    let text = text.trim();
    let (digits, unit) = match text.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => text.split_at(i),
        None => (text, ""),
    };
    let n: usize = digits.parse().ok()?;
    let unit = match unit.trim() {
        "" | "B" => 1,
        "KiB" => 1024,
        "MiB" => 1024 * 1024,
        _ => return None,
    };
    n.checked_mul(unit)
}

fn read_file(path: &Path) -> Result<ConfigFile, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    if text.trim().is_empty() {
        return Ok(ConfigFile::default());
    }
    serde_saphyr::from_str(&text).map_err(|e| ConfigError::Invalid {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_override_file_which_overrides_defaults() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("cp.yaml");
        std::fs::write(
            &file,
            "api_address: 127.0.0.1:7000\ndiagnostics-address: 127.0.0.1:7001\nstore: memory\n",
        )
        .expect("write");
        let args = ConfigArgs {
            config: Some(file),
            api_address: Some("127.0.0.1:8000".parse().expect("addr")),
            ..Default::default()
        };
        let c = Config::resolve(Mode::Global, &args).expect("resolves");
        assert_eq!(c.api_address.to_string(), "127.0.0.1:8000");
        assert_eq!(c.diagnostics_address.to_string(), "127.0.0.1:7001");
        assert_eq!(c.store, "memory");
        assert_eq!(c.data_dir, PathBuf::from(DEFAULT_DATA_DIR));
        assert_eq!(c.store_timeout, std::time::Duration::from_secs(5));
        assert_eq!(c.max_body_size, 4 * 1024 * 1024);
    }

    #[test]
    fn max_body_size_takes_bytes_or_binary_units() {
        assert_eq!(parse_size("1024"), Some(1024));
        assert_eq!(parse_size("512KiB"), Some(512 * 1024));
        assert_eq!(parse_size("2MiB"), Some(2 * 1024 * 1024));
        for bad in ["", "MiB", "2MB", "-1", "1.5MiB"] {
            assert_eq!(parse_size(bad), None, "{bad}");
        }
        let args = ConfigArgs {
            max_body_size: Some("lots".into()),
            ..Default::default()
        };
        let err = Config::resolve(Mode::Zone, &args).expect_err("refused");
        assert!(err.to_string().contains("ATOLL_MAX_BODY_SIZE"), "{err}");
    }

    #[test]
    fn store_timeout_is_a_positive_duration() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("cp.yaml");
        std::fs::write(&file, "store-timeout: 750ms\n").expect("write");
        let mut args = ConfigArgs {
            config: Some(file),
            ..Default::default()
        };
        let c = Config::resolve(Mode::Zone, &args).expect("resolves");
        assert_eq!(c.store_timeout, std::time::Duration::from_millis(750));
        for bad in ["0s", "soon"] {
            args.store_timeout = Some(bad.into());
            let err = Config::resolve(Mode::Zone, &args).expect_err("refused");
            assert!(err.to_string().contains("ATOLL_STORE_TIMEOUT"), "{err}");
        }
    }

    #[test]
    fn connection_limits_and_keepalive_have_defaults_and_are_checked() {
        let c = Config::resolve(Mode::Zone, &ConfigArgs::default()).expect("defaults");
        assert_eq!(c.handshake_timeout, Duration::from_secs(10));
        assert_eq!(c.idle_timeout, Duration::from_secs(60));
        assert_eq!(c.xds_max_connections, DEFAULT_XDS_MAX_CONNECTIONS);
        assert_eq!(
            c.kds_keepalive,
            Keepalive {
                interval: Duration::from_secs(5),
                timeout: Duration::from_secs(5)
            }
        );
        assert_eq!(c.kds_ack_timeout, Duration::from_secs(30));

        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("cp.yaml");
        std::fs::write(
            &file,
            "kds-keepalive-interval: 1s\nxds_keepalive_timeout: 250ms\napi-max-connections: 7\n",
        )
        .expect("write");
        let args = ConfigArgs {
            config: Some(file),
            kds_keepalive_timeout: Some("2s".into()),
            ..Default::default()
        };
        let c = Config::resolve(Mode::Zone, &args).expect("resolves");
        assert_eq!(c.kds_keepalive.interval, Duration::from_secs(1));
        assert_eq!(c.kds_keepalive.timeout, Duration::from_secs(2));
        assert_eq!(c.xds_keepalive.timeout, Duration::from_millis(250));
        assert_eq!(c.api_max_connections, 7);

        for (args, setting) in [
            (
                ConfigArgs {
                    idle_timeout: Some("0s".into()),
                    ..Default::default()
                },
                "ATOLL_IDLE_TIMEOUT",
            ),
            (
                ConfigArgs {
                    kds_ack_timeout: Some("soon".into()),
                    ..Default::default()
                },
                "ATOLL_KDS_ACK_TIMEOUT",
            ),
            (
                ConfigArgs {
                    xds_max_connections: Some(0),
                    ..Default::default()
                },
                "ATOLL_XDS_MAX_CONNECTIONS",
            ),
        ] {
            let err = Config::resolve(Mode::Zone, &args).expect_err(setting);
            assert!(err.to_string().starts_with(setting), "{err}");
        }
    }

    #[test]
    fn api_security_settings_have_kumas_defaults_and_come_from_flags_or_the_file() {
        let c = Config::resolve(Mode::Zone, &ConfigArgs::default()).expect("defaults");
        assert!(c.api_loopback_admin);
        assert_eq!(
            c.api_https_address.map(|a| a.to_string()).as_deref(),
            Some("0.0.0.0:5682")
        );
        assert_eq!(c.api_rbac_file, None);

        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("cp.yaml");
        std::fs::write(
            &file,
            "api-loopback-admin: false\napi_rbac_file: /etc/atoll/rbac.yaml\napi-https-address: 127.0.0.1:9443\n",
        )
        .expect("write");
        let args = ConfigArgs {
            config: Some(file.clone()),
            ..Default::default()
        };
        let c = Config::resolve(Mode::Zone, &args).expect("resolves");
        assert!(!c.api_loopback_admin);
        assert_eq!(c.api_rbac_file, Some(PathBuf::from("/etc/atoll/rbac.yaml")));
        assert_eq!(
            c.api_https_address.map(|a| a.to_string()).as_deref(),
            Some("127.0.0.1:9443")
        );
        let args = ConfigArgs {
            config: Some(file),
            api_loopback_admin: Some(true),
            api_https_enabled: Some(false),
            ..Default::default()
        };
        let c = Config::resolve(Mode::Zone, &args).expect("resolves");
        assert!(c.api_loopback_admin, "the flag wins over the file");
        assert_eq!(c.api_https_address, None);

        let args = ConfigArgs {
            api_tls_cert_file: Some("cert.pem".into()),
            ..Default::default()
        };
        let err = Config::resolve(Mode::Zone, &args).expect_err("key missing");
        assert!(err.to_string().contains("ATOLL_API_TLS_KEY_FILE"), "{err}");
    }

    #[test]
    fn unknown_keys_in_the_file_are_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("cp.yaml");
        std::fs::write(&file, "api_adress: 127.0.0.1:7000\n").expect("write");
        let args = ConfigArgs {
            config: Some(file),
            ..Default::default()
        };
        let err = Config::resolve(Mode::Zone, &args).expect_err("typo refused");
        assert!(err.to_string().contains("api_adress"), "{err}");
    }
}

//! Command line and environment: every flag of `atoll-dp run` can also be given as an
//! `ATOLL_DP_*` environment variable (the flag wins when both are set).

use std::path::PathBuf;
use std::time::Duration;

use atoll_core::types::parse_flag_duration;
use clap::{Parser, Subcommand, ValueEnum};

/// atoll-dp: registers a Dataplane with the Atoll control plane, then starts and supervises its Envoy.
#[derive(Debug, Parser)]
#[command(name = "atoll-dp", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Fetch the Envoy bootstrap from the control plane, run Envoy and keep it running.
    Run(RunArgs),
}

/// What kind of proxy this is, and so which kind of document the dataplane file holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ProxyType {
    /// A sidecar next to one workload: the file holds a `Dataplane`.
    Sidecar,
    /// A zone ingress: the file holds a `ZoneIngress`.
    Ingress,
    /// A zone egress: the file holds a `ZoneEgress`.
    Egress,
}

impl ProxyType {
    /// The name sent to the control plane as `proxyType`.
    pub fn as_str(self) -> &'static str {
        match self {
            ProxyType::Sidecar => "sidecar",
            ProxyType::Ingress => "ingress",
            ProxyType::Egress => "egress",
        }
    }

    /// The `type:` the dataplane file must have for this proxy type.
    pub fn expected_kind(self) -> atoll_core::Kind {
        match self {
            ProxyType::Sidecar => atoll_core::Kind::Dataplane,
            ProxyType::Ingress => atoll_core::Kind::ZoneIngress,
            ProxyType::Egress => atoll_core::Kind::ZoneEgress,
        }
    }
}

#[derive(Debug, Clone, clap::Args)]
pub struct RunArgs {
    /// The control plane's bootstrap address, e.g. https://cp.example:5678.
    #[arg(long, env = "ATOLL_DP_CP_ADDRESS", value_name = "URL")]
    pub cp_address: String,

    /// The Dataplane (or ZoneIngress/ZoneEgress) document, in Kuma's universal YAML or JSON.
    #[arg(long, env = "ATOLL_DP_DATAPLANE_FILE", value_name = "FILE")]
    pub dataplane_file: PathBuf,

    /// File holding the dataplane token (surrounding whitespace is ignored).
    #[arg(
        long,
        env = "ATOLL_DP_DATAPLANE_TOKEN_FILE",
        value_name = "FILE",
        required_unless_present = "dataplane_token",
        conflicts_with = "dataplane_token"
    )]
    pub dataplane_token_file: Option<PathBuf>,

    /// The dataplane token itself (prefer --dataplane-token-file: this shows in `ps`).
    #[arg(
        long,
        env = "ATOLL_DP_DATAPLANE_TOKEN",
        value_name = "TOKEN",
        hide_env_values = true
    )]
    pub dataplane_token: Option<String>,

    /// PEM file with the CA that signed the control plane's certificate (the zone's
    /// DATA_DIR/xds-tls/ca.pem for a generated one); only that CA is trusted. Without it
    /// atoll-dp refuses to send its token unless --insecure-skip-verify is given.
    #[arg(long, env = "ATOLL_DP_CA_CERT_FILE", value_name = "FILE")]
    pub ca_cert_file: Option<PathBuf>,

    /// INSECURE: send the dataplane token to a control plane whose certificate is not verified
    /// (no --ca-cert-file) or over plain http://; anyone able to intercept the connection gets
    /// the token.
    #[arg(
        long,
        env = "ATOLL_DP_INSECURE_SKIP_VERIFY",
        conflicts_with = "ca_cert_file"
    )]
    pub insecure_skip_verify: bool,

    /// The Envoy binary: a path, or a name looked up in PATH.
    #[arg(
        long,
        env = "ATOLL_DP_ENVOY_BINARY",
        value_name = "PATH",
        default_value = "envoy"
    )]
    pub envoy_binary: PathBuf,

    /// sidecar (a Dataplane), ingress (a ZoneIngress) or egress (a ZoneEgress).
    #[arg(long, env = "ATOLL_DP_PROXY_TYPE", value_enum, default_value_t = ProxyType::Sidecar)]
    pub proxy_type: ProxyType,

    /// Envoy's admin port, sent to the control plane (which decides the bootstrap's admin
    /// listener); also Envoy's --base-id when set.
    #[arg(long, env = "ATOLL_DP_ADMIN_PORT", value_name = "PORT")]
    pub admin_port: Option<u16>,

    /// Where the bootstrap file is written. Default: a new temporary directory, removed on exit.
    #[arg(long, env = "ATOLL_DP_WORK_DIR", value_name = "DIR")]
    pub work_dir: Option<PathBuf>,

    /// How long to keep retrying while the control plane cannot be reached (e.g. 30s, 500ms, 2m).
    #[arg(long, env = "ATOLL_DP_CP_CONNECT_TIMEOUT", value_name = "DURATION", default_value = "30s", value_parser = parse_flag_duration)]
    pub cp_connect_timeout: Duration,

    /// Envoy's --log-level.
    #[arg(
        long,
        env = "ATOLL_DP_ENVOY_LOG_LEVEL",
        value_name = "LEVEL",
        default_value = "info"
    )]
    pub envoy_log_level: String,

    /// How long Envoy may take to stop after SIGTERM before it is killed.
    #[arg(long, env = "ATOLL_DP_ENVOY_GRACE_PERIOD", value_name = "DURATION", default_value = "10s", value_parser = parse_flag_duration)]
    pub envoy_grace_period: Duration,

    /// Extra arguments for Envoy, after `--` (e.g. `-- --concurrency 2`).
    #[arg(last = true, value_name = "ENVOY_ARGS")]
    pub envoy_args: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_flag_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_flag_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_flag_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_flag_duration("1.5"), Ok(Duration::from_millis(1500)));
        assert!(parse_flag_duration("soon").is_err());
        assert!(parse_flag_duration("3d").is_err());
    }

    /// `atoll-dp run` with the required flags and `extra`.
    fn run_args(extra: &[&str]) -> RunArgs {
        let mut argv = vec![
            "atoll-dp",
            "run",
            "--cp-address",
            "https://127.0.0.1:5678",
            "--dataplane-file",
            "dp.yaml",
            "--dataplane-token-file",
            "token",
        ];
        argv.extend_from_slice(extra);
        let Command::Run(args) = Cli::try_parse_from(argv).expect("parses").command;
        args
    }

    #[test]
    fn durations_take_go_syntax_as_kuma_dp_does() {
        let args = run_args(&[
            "--envoy-grace-period",
            "1m30s",
            "--cp-connect-timeout",
            "1m",
        ]);
        assert_eq!(args.envoy_grace_period, Duration::from_secs(90));
        assert_eq!(args.cp_connect_timeout, Duration::from_secs(60));
    }

    #[test]
    fn flags_and_env_defaults() {
        let args = run_args(&["--proxy-type", "ingress", "--", "--concurrency", "2"]);
        assert_eq!(args.proxy_type, ProxyType::Ingress);
        assert_eq!(args.cp_connect_timeout, Duration::from_secs(30));
        assert_eq!(args.envoy_grace_period, Duration::from_secs(10));
        assert_eq!(args.envoy_binary, PathBuf::from("envoy"));
        assert_eq!(args.envoy_args, vec!["--concurrency", "2"]);
    }

    #[test]
    fn a_token_is_required() {
        let r = Cli::try_parse_from([
            "atoll-dp",
            "run",
            "--cp-address",
            "https://127.0.0.1:5678",
            "--dataplane-file",
            "dp.yaml",
        ]);
        // The environment of the test run may set the variable; only check when it does not.
        if std::env::var_os("ATOLL_DP_DATAPLANE_TOKEN_FILE").is_none()
            && std::env::var_os("ATOLL_DP_DATAPLANE_TOKEN").is_none()
        {
            assert!(r.is_err());
        }
    }
}

//! The zone's KDS link to the global control plane (`ATOLL_GLOBAL_ADDRESS`): dial over TLS
//! trusting `ATOLL_GLOBAL_CA_FILE`, present the zone token from `ATOLL_ZONE_TOKEN_FILE`, store
//! what global sends and send the zone's own resources (`atoll_kds::sync::zone_session`).
//! Every call also carries this control plane's instance id and version, which global shows in
//! its zone insights. The token file is read again at every attempt, so replacing an expired
//! token needs no restart.
//! Reconnects forever with capped, jittered exponential backoff. Nothing else in the zone
//! depends on this link: with global away the zone keeps serving from its own store, and on
//! reconnect both sides resync only what changed.

use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tonic::Code;
use tonic::transport::{Certificate, Channel, ClientTlsConfig};

use atoll_backoff::Backoff;
use atoll_cp::Config;
use atoll_kds::sync::{SyncError, ZoneHello, zone_session};
use atoll_kds::transport::ZoneDescription;
use atoll_store::SharedStore;

/// First reconnect delay.
pub const INITIAL_BACKOFF: Duration = Duration::from_millis(500);
/// Longest reconnect delay.
pub const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// Longest wait for a connection to global (TCP, TLS and HTTP/2 handshakes).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// A connection that lasted this long resets the backoff.
const STABLE: Duration = Duration::from_secs(30);

/// Where and how to dial global.
#[derive(Debug, Clone)]
pub struct GlobalLink {
    /// `https://host:port`.
    pub uri: String,
    pub ca_pem: String,
    pub token_file: std::path::PathBuf,
    pub zone: String,
    /// This control plane's instance id.
    pub instance_id: String,
    /// HTTP/2 pings towards global: a global that stops answering is noticed within
    /// interval + timeout, and the zone reconnects.
    pub keepalive: atoll_cp::config::Keepalive,
    /// How long global may leave a message the zone sent unacknowledged.
    pub ack_timeout: Duration,
}

impl GlobalLink {
    /// The link the configuration asks for; `None` for a standalone zone.
    pub fn from_config(config: &Config, instance_id: &str) -> anyhow::Result<Option<GlobalLink>> {
        let Some(address) = &config.global_address else {
            return Ok(None);
        };
        let hostport = address.strip_prefix("grpcs://").with_context(|| {
            format!("ATOLL_GLOBAL_ADDRESS must be grpcs://host:port (got {address:?})")
        })?;
        let ca_file = config
            .global_ca_file
            .as_ref()
            .context("ATOLL_GLOBAL_CA_FILE is required with ATOLL_GLOBAL_ADDRESS")?;
        let ca_pem = std::fs::read_to_string(ca_file)
            .with_context(|| format!("reading ATOLL_GLOBAL_CA_FILE {}", ca_file.display()))?;
        let token_file = config
            .zone_token_file
            .clone()
            .context("ATOLL_ZONE_TOKEN_FILE is required with ATOLL_GLOBAL_ADDRESS")?;
        Ok(Some(GlobalLink {
            uri: format!("https://{hostport}"),
            ca_pem,
            token_file,
            zone: config.zone.clone(),
            instance_id: instance_id.to_string(),
            keepalive: config.kds_keepalive,
            ack_timeout: config.kds_ack_timeout,
        }))
    }
}

/// Starts the link when the configuration names a global; `None` for a standalone zone.
pub fn spawn(
    config: &Config,
    instance_id: &str,
    store: SharedStore,
    shutdown: watch::Receiver<bool>,
) -> anyhow::Result<Option<JoinHandle<()>>> {
    Ok(GlobalLink::from_config(config, instance_id)?
        .map(|link| tokio::spawn(run(link, store, shutdown))))
}

/// Keeps the link up until shutdown.
pub async fn run(link: GlobalLink, store: SharedStore, mut shutdown: watch::Receiver<bool>) {
    let mut backoff = Backoff::new(INITIAL_BACKOFF, MAX_BACKOFF).with_jitter();
    let mut attempt = 0u64;
    loop {
        let started = Instant::now();
        attempt += 1;
        tokio::select! {
            r = connect_once(&link, store.clone(), attempt) => report(&link, r),
            _ = shutdown.wait_for(|s| *s) => return,
        }
        if started.elapsed() >= STABLE {
            backoff.reset();
        }
        let delay = backoff.next_delay();
        tracing::info!(zone = %link.zone, global = %link.uri, retry_in = ?delay, "reconnecting to global later");
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            _ = shutdown.wait_for(|s| *s) => return,
        }
    }
}

async fn connect_once(
    link: &GlobalLink,
    store: SharedStore,
    attempt: u64,
) -> Result<(), SyncError> {
    let token = std::fs::read_to_string(&link.token_file).map_err(|e| {
        SyncError::Transport(format!(
            "reading ATOLL_ZONE_TOKEN_FILE {}: {e}",
            link.token_file.display()
        ))
    })?;
    let tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(&link.ca_pem));
    let endpoint = Channel::from_shared(link.uri.clone())
        .map_err(|e| SyncError::Transport(format!("bad global address {}: {e}", link.uri)))?
        .tls_config(tls)
        .map_err(|e| SyncError::Transport(format!("TLS settings: {e}")))?
        .connect_timeout(CONNECT_TIMEOUT)
        .http2_keep_alive_interval(link.keepalive.interval)
        .keep_alive_timeout(link.keepalive.timeout)
        .keep_alive_while_idle(true);
    // tonic's connect timeout covers the TCP connect only: bound the TLS and HTTP/2 handshakes
    // too, or a global that accepts and then says nothing holds the attempt forever.
    let channel = match tokio::time::timeout(CONNECT_TIMEOUT, endpoint.connect()).await {
        Ok(Ok(channel)) => channel,
        Ok(Err(e)) => {
            let chain = error_chain(&e);
            let hint = atoll_identity::tls_error_hint(&chain)
                .map(|h| format!(" ({h})"))
                .unwrap_or_default();
            return Err(SyncError::Transport(format!(
                "connecting to {}: {chain}{hint}",
                link.uri
            )));
        }
        Err(_) => {
            return Err(SyncError::Transport(format!(
                "connecting to {}: no TLS/HTTP/2 handshake within {CONNECT_TIMEOUT:?}",
                link.uri
            )));
        }
    };
    let hello = ZoneHello {
        zone: link.zone.clone(),
        token: token.trim().to_string(),
        description: ZoneDescription {
            instance_id: Some(link.instance_id.clone()),
            version: Some(env!("CARGO_PKG_VERSION").to_string()),
            session: Some(format!("{}/{attempt}", link.instance_id)),
        },
        ack_timeout: link.ack_timeout,
    };
    zone_session(channel, store, &hello).await
}

fn report(link: &GlobalLink, result: Result<(), SyncError>) {
    let zone = &link.zone;
    match result {
        Ok(()) | Err(SyncError::Ended) => {
            tracing::warn!(zone, global = %link.uri, "global ended the KDS connection")
        }
        Err(SyncError::Stream(s)) if s.code() == Code::Unauthenticated => tracing::error!(
            zone,
            global = %link.uri,
            token_file = %link.token_file.display(),
            "global refused the zone token: {}; put a valid cp token for zone {zone:?} in ATOLL_ZONE_TOKEN_FILE (it is read again at every attempt)",
            s.message()
        ),
        Err(SyncError::Stream(s)) if s.code() == Code::PermissionDenied => tracing::error!(
            zone,
            global = %link.uri,
            "global refused this zone: {}",
            s.message()
        ),
        Err(e) => {
            tracing::warn!(zone, global = %link.uri, error = %e, "KDS connection to global failed")
        }
    }
}

fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reconnect_delays_grow_to_the_cap_with_jitter() {
        let mut b = Backoff::new(INITIAL_BACKOFF, MAX_BACKOFF).with_jitter();
        let mut last = Duration::ZERO;
        for i in 0..20 {
            let d = b.next_delay();
            assert!(d <= Duration::from_secs(30), "{i}: {d:?}");
            if i > 10 {
                assert!(d >= Duration::from_secs(15), "{i}: {d:?}");
            }
            last = d;
        }
        assert!(last >= Duration::from_secs(15));
        b.reset();
        assert!(b.next_delay() <= Duration::from_millis(500));
    }
}

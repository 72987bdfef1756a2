//! The global's KDS handler: authenticates each zone call with its zone token, refuses a zone
//! whose Zone is disabled, registers the Zone when its first valid message arrives, and runs one
//! engine loop per stream: a `Sender` of global's kinds on `GlobalToZoneSync`, a `Receiver`
//! storing the zone's resources on `ZoneToGlobalSync`. Resources relayed between zones need
//! nothing more: what zone A sends is in the store, and the store watch feeding zone B's sender
//! carries it (the sender never sends a zone what came from that zone).
//!
//! Credentials are checked for as long as a stream is open, not only when it opens: at the
//! token's expiry (plus the configured clock leeway), and whenever the zone-token signing key or
//! the zone's Zone changes, the token is verified again and the Zone read again; if either no
//! longer holds, the stream ends with `Unauthenticated` (token) or `PermissionDenied` (disabled
//! zone) and the reason, which the zone logs.

use std::time::Duration;

use atoll_clock::SharedClock;
use chrono::{DateTime, TimeDelta, Utc};
use serde_json::Value;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::{mpsc, watch};
use tokio_stream::StreamExt;
use tokio_stream::wrappers::UnboundedReceiverStream;
use tonic::codegen::BoxFuture;
use tonic::{Code, Request, Response, Status, Streaming};

use atoll_core::{Kind, Resource, ResourceKey};
use atoll_cp::tokens::{ZONE_SIGNING_KEY_SECRET, zone_verification_keys};
use atoll_identity::{Scope, ZoneClaims, verify_zone_token};
use atoll_kds::Party;
use atoll_kds::engine::{ReceiverConfig, SenderConfig};
use atoll_kds::sync::{SyncError, run_receiver_counted, run_sender_counted};
use atoll_kds::transport::{KdsHandler, MessageStream, credentials, description};
use atoll_store::{SharedStore, StoreError};

use envoy_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse,
};

use crate::insights::{OpenStream, ZoneStatus};

/// How long to wait before checking again when the store could not be read during a re-check.
const RECHECK_RETRY: Duration = Duration::from_secs(5);

/// The wall clock zone tokens are checked by, and the clock skew they are allowed.
#[derive(Debug, Clone)]
pub struct TokenClock {
    pub clock: SharedClock,
    pub leeway: TimeDelta,
}

impl Default for TokenClock {
    fn default() -> Self {
        TokenClock {
            clock: atoll_clock::system(),
            leeway: atoll_identity::token::LEEWAY,
        }
    }
}

impl TokenClock {
    /// When a stream must be re-checked: just after its token stops verifying.
    fn recheck_at(&self, exp: DateTime<Utc>) -> DateTime<Utc> {
        exp + self.leeway + TimeDelta::seconds(1)
    }

    /// How long from now until `t` (zero once past).
    fn until(&self, t: DateTime<Utc>) -> Duration {
        (t - self.clock.now()).to_std().unwrap_or(Duration::ZERO)
    }
}

/// The handler behind `atoll.kds.v1.KdsSync` on global.
#[derive(Clone)]
pub struct GlobalKds {
    store: SharedStore,
    shutdown: watch::Receiver<bool>,
    status: ZoneStatus,
    ack_timeout: Duration,
    time: TokenClock,
}

impl GlobalKds {
    pub fn new(store: SharedStore, shutdown: watch::Receiver<bool>, status: ZoneStatus) -> Self {
        Self {
            store,
            shutdown,
            status,
            ack_timeout: atoll_kds::engine::DEFAULT_ACK_TIMEOUT,
            time: TokenClock::default(),
        }
    }

    /// The clock and leeway zone tokens are checked with (the host's clock and
    /// [`atoll_identity::token::LEEWAY`] unless set).
    pub fn with_token_clock(mut self, time: TokenClock) -> Self {
        self.time = time;
        self
    }

    /// How long a zone may leave a response unanswered before its stream ends.
    pub fn with_ack_timeout(mut self, ack_timeout: Duration) -> Self {
        self.ack_timeout = ack_timeout;
        self
    }

    pub fn status(&self) -> ZoneStatus {
        self.status.clone()
    }

    /// Checks the call's zone token and Zone and registers the stream (refused while the zone
    /// is being deleted). Refusals are logged here and sent to the zone with the reason. The
    /// Zone itself is registered later, when the zone's first valid message arrives
    /// ([`register_on_first_message`]), so a call that sends garbage leaves nothing behind.
    async fn authenticate<T>(
        &self,
        request: &Request<T>,
        g2z: bool,
    ) -> Result<(OpenStream, String, ZoneClaims), Status> {
        let stream = if g2z {
            "GlobalToZoneSync"
        } else {
            "ZoneToGlobalSync"
        };
        let refuse = |zone: &str, status: Status| {
            tracing::warn!(zone, stream, reason = %status.message(), "refused a zone's KDS connection");
            status
        };
        let (zone, token) = credentials(request).map_err(|s| refuse("?", s))?;
        let claims = check_credentials(&self.store, &zone, &token, &self.time)
            .await
            .map_err(|s| refuse(&zone, s))?;
        // Registered before the Zone is written, so a deletion in progress (which holds off
        // new streams) never sees its Zone re-created under it.
        let open = self
            .status
            .open_stream(&zone, &description(request), g2z, self.time.clock.now())
            .map_err(|e| refuse(&zone, Status::unavailable(e.to_string())))?;
        Ok((open, token, claims))
    }

    /// Registers the stream and runs its loop until it ends, the zone's credentials lapse, or
    /// global stops. Returns the channel on which the stream's final status goes out.
    fn spawn_loop<F>(
        &self,
        open: OpenStream,
        token: String,
        claims: ZoneClaims,
        run: F,
    ) -> mpsc::UnboundedReceiver<Status>
    where
        F: std::future::Future<Output = Result<(), SyncError>> + Send + 'static,
    {
        let status = self.status.clone();
        let store = self.store.clone();
        let time = self.time.clone();
        let mut shutdown = self.shutdown.clone();
        let zone = open.zone.clone();
        let (end_tx, end_rx) = mpsc::unbounded_channel();
        let stream = if open.g2z() {
            "GlobalToZoneSync"
        } else {
            "ZoneToGlobalSync"
        };
        tracing::info!(zone, stream, "zone connected (KDS)");
        tokio::spawn(async move {
            let reason = tokio::select! {
                r = run => match r {
                    Ok(()) | Err(SyncError::Ended) => {
                        tracing::info!(zone, stream, "zone disconnected (KDS)");
                        None
                    }
                    Err(e) => {
                        tracing::warn!(zone, stream, error = %e, "zone's KDS stream ended");
                        // The zone learns why (when it can still hear it), instead of an OK.
                        let _ = end_tx.send(end_status(&e));
                        Some(e.to_string())
                    }
                },
                refusal = credentials_lapse(store, zone.clone(), token, claims.exp, time.clone()) => {
                    tracing::warn!(zone, stream, reason = %refusal.message(), "ended a zone's KDS stream: its credentials no longer hold");
                    let reason = refusal.message().to_string();
                    let _ = end_tx.send(refusal);
                    Some(reason)
                }
                _ = shutdown.wait_for(|s| *s) => Some("the global control plane stopped".to_string()),
            };
            status.close_stream(open, reason, time.clock.now());
        });
        end_rx
    }
}

/// Verifies a zone's token with the current keys and reads its Zone: the token must be a valid
/// `cp` token for this zone, and the Zone, if registered, enabled. `Unauthenticated` for the
/// token, `PermissionDenied` for a disabled zone, `Internal` when the store cannot be read.
pub async fn check_credentials(
    store: &SharedStore,
    zone: &str,
    token: &str,
    time: &TokenClock,
) -> Result<ZoneClaims, Status> {
    let keys = zone_verification_keys(&**store)
        .await
        .map_err(|e| Status::internal(format!("reading the zone token keys: {e}")))?;
    let claims = verify_zone_token(token, &keys, time.clock.now(), time.leeway)
        .map_err(|e| Status::unauthenticated(format!("zone token refused: {e}")))?;
    if claims.zone != zone {
        return Err(Status::unauthenticated(format!(
            "the zone token is for zone {:?}, but this control plane says it is zone {zone:?}",
            claims.zone
        )));
    }
    if claims.scope != Scope::Cp {
        return Err(Status::unauthenticated(format!(
            "the zone token has scope {:?}; a zone control plane needs scope cp",
            claims.scope
        )));
    }
    let existing = store
        .get(&ResourceKey::global(Kind::Zone, zone))
        .await
        .map_err(|e| Status::internal(format!("reading zone {zone:?}: {e}")))?;
    if existing.is_some_and(|z| !atoll_cp::api::zone_enabled(&z)) {
        return Err(Status::permission_denied(format!(
            "zone {zone:?} is disabled on the global control plane (its Zone has enabled: false); set enabled: true there to let it connect"
        )));
    }
    Ok(claims)
}

/// Resolves, with the status to end the stream with, once the zone's credentials no longer
/// hold: re-checked at the token's expiry and on every change of the signing key or the Zone.
async fn credentials_lapse(
    store: SharedStore,
    zone: String,
    token: String,
    exp: DateTime<Utc>,
    time: TokenClock,
) -> Status {
    let signing_key = ResourceKey::global(Kind::GlobalSecret, ZONE_SIGNING_KEY_SECRET);
    let zone_key = ResourceKey::global(Kind::Zone, &zone);
    let mut events = store.watch();
    let mut watching = true;
    let mut wake = time.recheck_at(exp);
    loop {
        tokio::select! {
            () = tokio::time::sleep(time.until(wake)) => {}
            ev = events.recv(), if watching => match ev {
                Ok(ev) if ev.key == signing_key || ev.key == zone_key => {}
                Ok(_) => continue,
                Err(RecvError::Lagged(_)) => {}
                // No more events (the store is closing): only the expiry is left to watch.
                Err(RecvError::Closed) => {
                    watching = false;
                    continue;
                }
            },
        }
        match check_credentials(&store, &zone, &token, &time).await {
            Ok(claims) => wake = time.recheck_at(claims.exp),
            Err(s) if s.code() == Code::Internal => {
                tracing::warn!(zone, error = %s.message(), "could not re-check a zone's credentials; trying again");
                wake = time.clock.now()
                    + chrono::Duration::from_std(RECHECK_RETRY).unwrap_or(chrono::Duration::zero());
            }
            Err(s) => return s,
        }
    }
}

/// The status a stream that failed on global's side ends with.
fn end_status(e: &SyncError) -> Status {
    match e {
        // tonic reports a message it cannot decode as Internal "failed to decode ...": that is
        // the zone's bad input, not global's fault.
        SyncError::Stream(s) if s.message().contains("decode") => {
            Status::invalid_argument(format!("refused the zone's KDS message: {}", s.message()))
        }
        SyncError::Stream(s) => Status::new(s.code(), s.message().to_string()),
        SyncError::AckTimeout(_) => Status::deadline_exceeded(e.to_string()),
        SyncError::Store(_) | SyncError::WatchClosed => {
            Status::unavailable(format!("global could not go on: {e}"))
        }
        SyncError::OutgoingClosed | SyncError::Ended | SyncError::Transport(_) => {
            Status::internal(e.to_string())
        }
    }
}

/// The zone's messages, with the Zone registered (once) before the first valid one is passed
/// on. A registration that fails ends the stream with the store's error.
fn register_on_first_message<T: Send + 'static>(
    incoming: Streaming<T>,
    store: SharedStore,
    zone: String,
) -> MessageStream<T> {
    let registered = std::sync::Arc::new(tokio::sync::OnceCell::<()>::new());
    Box::pin(futures::StreamExt::then(incoming, move |item| {
        let registered = registered.clone();
        let store = store.clone();
        let zone = zone.clone();
        async move {
            let message = item?;
            registered
                .get_or_try_init(|| register_zone(&store, &zone))
                .await
                .map_err(|e| Status::internal(format!("registering zone {zone:?}: {e}")))?;
            Ok(message)
        }
    }))
}

/// Creates the Zone resource on a zone's first valid message (an existing one, possibly
/// disabled by the operator, is left as it is).
async fn register_zone(store: &SharedStore, zone: &str) -> Result<(), StoreError> {
    let key = ResourceKey::global(Kind::Zone, zone);
    if store.get(&key).await?.is_some() {
        return Ok(());
    }
    let mut r = Resource::new(Kind::Zone, "", zone);
    r.spec.insert("enabled".into(), Value::Bool(true));
    match store.create(r).await {
        Ok(_) => {
            tracing::info!(zone, "registered a new zone");
            Ok(())
        }
        Err(StoreError::AlreadyExists(_)) => Ok(()),
        Err(e) => Err(e),
    }
}

/// The messages of a stream, then the status it ends with when global ends it.
fn outgoing<T: Send + 'static>(
    rx: mpsc::UnboundedReceiver<T>,
    end: mpsc::UnboundedReceiver<Status>,
) -> MessageStream<T> {
    Box::pin(
        UnboundedReceiverStream::new(rx)
            .map(Ok)
            .merge(UnboundedReceiverStream::new(end).map(Err)),
    )
}

impl KdsHandler for GlobalKds {
    fn global_to_zone(
        &self,
        request: Request<Streaming<DeltaDiscoveryRequest>>,
    ) -> BoxFuture<Response<MessageStream<DeltaDiscoveryResponse>>, Status> {
        let this = self.clone();
        Box::pin(async move {
            let (open, token, claims) = this.authenticate(&request, true).await?;
            let zone = open.zone.clone();
            let (tx, rx) = mpsc::unbounded_channel();
            let config = SenderConfig {
                ack_timeout: this.ack_timeout,
                ..SenderConfig::new(Party::Global, Party::zone(zone.clone()))
            };
            let stats = open.stats.clone();
            let incoming =
                register_on_first_message(request.into_inner(), this.store.clone(), zone);
            let run = run_sender_counted(this.store.clone(), config, incoming, tx, stats);
            let end = this.spawn_loop(open, token, claims, run);
            Ok(Response::new(outgoing(rx, end)))
        })
    }

    fn zone_to_global(
        &self,
        request: Request<Streaming<DeltaDiscoveryResponse>>,
    ) -> BoxFuture<Response<MessageStream<DeltaDiscoveryRequest>>, Status> {
        let this = self.clone();
        Box::pin(async move {
            let (open, token, claims) = this.authenticate(&request, false).await?;
            let zone = open.zone.clone();
            let (tx, rx) = mpsc::unbounded_channel();
            let config = ReceiverConfig::new(Party::Global, Party::zone(zone.clone()));
            let stats = open.stats.clone();
            let incoming =
                register_on_first_message(request.into_inner(), this.store.clone(), zone);
            let run = run_receiver_counted(this.store.clone(), config, incoming, tx, stats);
            let end = this.spawn_loop(open, token, claims, run);
            Ok(Response::new(outgoing(rx, end)))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Duration as StdDuration;

    use atoll_store::MemoryStore;

    async fn token(store: &SharedStore, zone: &str, scope: Scope) -> String {
        atoll_cp::tokens::issue_zone_token(
            &**store,
            zone,
            scope,
            StdDuration::from_secs(3600),
            Utc::now(),
        )
        .await
        .expect("token")
    }

    #[tokio::test]
    async fn credentials_are_checked_against_the_zone_and_its_enabled_flag() {
        let store: SharedStore = Arc::new(MemoryStore::new());
        let t = token(&store, "east", Scope::Cp).await;
        check_credentials(&store, "east", &t, &TokenClock::default())
            .await
            .expect("valid");
        let s = check_credentials(&store, "west", &t, &TokenClock::default())
            .await
            .expect_err("other zone");
        assert_eq!(s.code(), Code::Unauthenticated);
        let ingress = token(&store, "east", Scope::Ingress).await;
        let s = check_credentials(&store, "east", &ingress, &TokenClock::default())
            .await
            .expect_err("scope");
        assert!(s.message().contains("scope cp"), "{}", s.message());

        let mut z = Resource::new(Kind::Zone, "", "east");
        z.spec.insert("enabled".into(), Value::Bool(false));
        store.create(z).await.expect("zone");
        let s = check_credentials(&store, "east", &t, &TokenClock::default())
            .await
            .expect_err("disabled");
        assert_eq!(s.code(), Code::PermissionDenied);
        assert!(s.message().contains("disabled"), "{}", s.message());
    }

    #[tokio::test]
    async fn a_new_signing_key_ends_the_stream_at_once() {
        let store: SharedStore = Arc::new(MemoryStore::new());
        let t = token(&store, "east", Scope::Cp).await;
        let lapse = tokio::spawn(credentials_lapse(
            store.clone(),
            "east".into(),
            t,
            Utc::now() + chrono::Duration::hours(1),
            TokenClock::default(),
        ));
        // Let the watch subscribe before the key changes.
        tokio::task::yield_now().await;
        store
            .delete(
                &ResourceKey::global(Kind::GlobalSecret, ZONE_SIGNING_KEY_SECRET),
                None,
            )
            .await
            .expect("deleted");
        let status = tokio::time::timeout(StdDuration::from_secs(10), lapse)
            .await
            .expect("ends in time")
            .expect("joined");
        assert_eq!(status.code(), Code::Unauthenticated);
        assert!(
            status.message().contains("zone token refused"),
            "{}",
            status.message()
        );
    }

    #[test]
    fn the_recheck_follows_the_verifiers_leeway() {
        let time = TokenClock::default();
        let exp = Utc::now();
        assert!(time.recheck_at(exp) > exp + time.leeway);
        assert!(time.recheck_at(exp) <= exp + time.leeway + chrono::Duration::seconds(2));
    }

    /// A token that expires while its stream is open ends the stream just after the leeway has
    /// passed, not before: shown in moved (paused) time, so a minute and a half takes no time.
    #[tokio::test(start_paused = true)]
    async fn an_expiring_token_ends_the_stream_just_after_the_leeway() {
        let time = TokenClock {
            clock: atoll_clock::TokioClock::new().shared(),
            leeway: TimeDelta::seconds(30),
        };
        let store: SharedStore = Arc::new(MemoryStore::new());
        let t = atoll_cp::tokens::issue_zone_token(
            &*store,
            "east",
            Scope::Cp,
            StdDuration::from_secs(60),
            time.clock.now(),
        )
        .await
        .expect("token");
        let exp = check_credentials(&store, "east", &t, &time)
            .await
            .expect("valid now")
            .exp;
        let started = tokio::time::Instant::now();
        let status = credentials_lapse(store, "east".into(), t, exp, time.clone()).await;
        let waited = started.elapsed();
        assert_eq!(status.code(), Code::Unauthenticated);
        assert!(status.message().contains("expired"), "{}", status.message());
        // Valid for 60 s (whole seconds) plus 30 s of leeway; re-checked a second after that.
        assert!(
            waited >= StdDuration::from_secs(89) && waited <= StdDuration::from_secs(92),
            "ended {waited:?} after issue"
        );
    }
}

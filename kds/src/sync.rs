//! The loops around the engine on one stream, against a store: [`run_sender`] feeds a `Sender`
//! from the store (full list per kind, then watch events) and the peer's requests;
//! [`run_receiver`] applies what a `Receiver` accepts to the store. Both write to an unbounded
//! channel that the transport drains, and keep reading while it does (the engine bounds what
//! waits there). [`zone_session`] runs both of the zone's streams on one channel. Each loop can
//! count what it sends and answers per kind ([`StreamStats`]), for the zone insights on global.
//!
//! Unlike the engine this module does I/O (store and tokio); it stays free of sockets: streams in,
//! channels out.

use atoll_core::{Kind, Resource, ResourceKey};
use atoll_store::{ChangeEvent, ChangeOp, ListFilter, SharedStore, StoreError};
use envoy_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse,
};
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::mpsc::UnboundedSender;
use tokio_stream::{Stream, StreamExt};
use tonic::Status;

use crate::direction::{Party, kinds_sent_by};
use crate::engine::{Action, LocalChange, Receiver, ReceiverConfig, Sender, SenderConfig};
use crate::naming::origin_of;
use crate::stats::StreamStats;

/// Why a stream's loop ended.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error("stream: {} ({})", .0.message(), .0.code())]
    Stream(Status),
    #[error("the store's change feed closed")]
    WatchClosed,
    #[error("the outgoing stream closed")]
    OutgoingClosed,
    #[error("the peer ended the stream")]
    Ended,
    #[error("the peer left a KDS response unanswered for {0:?} (no ACK or NACK): taken as gone")]
    AckTimeout(std::time::Duration),
    #[error("{0}")]
    Transport(String),
}

impl SyncError {
    /// The gRPC status, when the peer ended the stream with one.
    pub fn status(&self) -> Option<&Status> {
        match self {
            SyncError::Stream(s) => Some(s),
            _ => None,
        }
    }
}

async fn list_kind(store: &SharedStore, kind: Kind) -> Result<Vec<Resource>, StoreError> {
    Ok(store.list(&ListFilter::all(kind)).await?.items)
}

async fn local_change(store: &SharedStore, ev: &ChangeEvent) -> Result<LocalChange, StoreError> {
    if ev.op == ChangeOp::Deleted {
        return Ok(LocalChange::Delete(ev.key.clone()));
    }
    Ok(match store.get(&ev.key).await? {
        Some(r) => LocalChange::Upsert(r),
        None => LocalChange::Delete(ev.key.clone()),
    })
}

fn send_all<T>(out: &UnboundedSender<T>, msgs: Vec<T>) -> Result<(), SyncError> {
    for m in msgs {
        out.send(m).map_err(|_| SyncError::OutgoingClosed)?;
    }
    Ok(())
}

fn send_counted(
    out: &UnboundedSender<DeltaDiscoveryResponse>,
    stats: &StreamStats,
    msgs: Vec<DeltaDiscoveryResponse>,
) -> Result<(), SyncError> {
    for m in msgs {
        stats.on_sent(&m);
        out.send(m).map_err(|_| SyncError::OutgoingClosed)?;
    }
    Ok(())
}

/// Runs a `Sender` until the stream ends: the store's state of its kinds, then store changes and
/// the peer's requests.
pub async fn run_sender<S>(
    store: SharedStore,
    config: SenderConfig,
    incoming: S,
    out: UnboundedSender<DeltaDiscoveryResponse>,
) -> Result<(), SyncError>
where
    S: Stream<Item = Result<DeltaDiscoveryRequest, Status>> + Unpin,
{
    run_sender_counted(store, config, incoming, out, StreamStats::new()).await
}

/// [`run_sender`], counting what it sends and how the peer answers in `stats`.
pub async fn run_sender_counted<S>(
    store: SharedStore,
    config: SenderConfig,
    mut incoming: S,
    out: UnboundedSender<DeltaDiscoveryResponse>,
    stats: StreamStats,
) -> Result<(), SyncError>
where
    S: Stream<Item = Result<DeltaDiscoveryRequest, Status>> + Unpin,
{
    let peer = config.peer.clone();
    let ack_timeout = config.ack_timeout;
    let mut watch = store.watch();
    let mut sender = Sender::new(config);
    let kinds: Vec<Kind> = sender.kinds().collect();
    for kind in &kinds {
        let items = list_kind(&store, *kind).await?;
        send_counted(&out, &stats, sender.set_state(*kind, items))?;
    }
    // Since when a response has waited for the peer with no answer from it: a peer whose
    // connection is alive but who stopped answering (stuck, or a relay that swallows messages)
    // is noticed here, where HTTP/2 keepalive sees nothing wrong.
    let mut waiting_since: Option<tokio::time::Instant> = None;
    loop {
        if !sender.awaiting_answer() {
            waiting_since = None;
        } else if waiting_since.is_none() {
            waiting_since = Some(tokio::time::Instant::now());
        }
        let deadline = waiting_since.map(|t| t + ack_timeout);
        tokio::select! {
            () = async {
                if let Some(d) = deadline {
                    tokio::time::sleep_until(d).await;
                }
            }, if deadline.is_some() => {
                tracing::warn!(%peer, timeout = ?ack_timeout, "the KDS peer stopped answering; ending the stream");
                return Err(SyncError::AckTimeout(ack_timeout));
            }
            ev = watch.recv() => match ev {
                Ok(ev) => {
                    if kinds.contains(&ev.key.kind) {
                        let change = local_change(&store, &ev).await?;
                        send_counted(&out, &stats, sender.on_local_change(change))?;
                    }
                }
                Err(RecvError::Lagged(n)) => {
                    tracing::debug!(%peer, missed = n, "store watch lagged; resyncing the KDS sender");
                    for kind in &kinds {
                        let items = list_kind(&store, *kind).await?;
                        send_counted(&out, &stats, sender.set_state(*kind, items))?;
                    }
                }
                Err(RecvError::Closed) => return Err(SyncError::WatchClosed),
            },
            msg = incoming.next() => match msg {
                None => return Err(SyncError::Ended),
                Some(Err(status)) => return Err(SyncError::Stream(status)),
                Some(Ok(req)) => match sender.on_request(&req) {
                    Ok(outcome) => {
                        // The peer answers: its next answer is due within the timeout from now.
                        waiting_since = None;
                        stats.on_answer(&req, &outcome);
                        for r in &outcome.rejected {
                            tracing::warn!(%peer, type_url = %req.type_url, resource = %r.name, reason = %r.reason, "KDS peer refused a resource");
                        }
                        send_counted(&out, &stats, outcome.responses)?;
                    }
                    Err(e) => tracing::warn!(%peer, error = %e, "ignored a KDS request"),
                },
            },
        }
    }
}

/// Runs a `Receiver` until the stream ends: subscribes, then applies every response to the store
/// and answers it.
pub async fn run_receiver<S>(
    store: SharedStore,
    config: ReceiverConfig,
    incoming: S,
    out: UnboundedSender<DeltaDiscoveryRequest>,
) -> Result<(), SyncError>
where
    S: Stream<Item = Result<DeltaDiscoveryResponse, Status>> + Unpin,
{
    run_receiver_counted(store, config, incoming, out, StreamStats::new()).await
}

/// [`run_receiver`], counting what the peer sends and how this side answers in `stats`.
pub async fn run_receiver_counted<S>(
    store: SharedStore,
    config: ReceiverConfig,
    mut incoming: S,
    out: UnboundedSender<DeltaDiscoveryRequest>,
    stats: StreamStats,
) -> Result<(), SyncError>
where
    S: Stream<Item = Result<DeltaDiscoveryResponse, Status>> + Unpin,
{
    let peer = config.peer.clone();
    let mut watch = store.watch();
    let kinds = kinds_sent_by(config.peer.side());
    let mut existing = Vec::new();
    for kind in &kinds {
        existing.extend(list_kind(&store, *kind).await?);
    }
    let mut receiver = Receiver::new(config, existing);
    send_all(&out, receiver.subscribe())?;
    let mut complete = false;
    loop {
        tokio::select! {
            ev = watch.recv() => match ev {
                Ok(ev) => {
                    if kinds.contains(&ev.key.kind) {
                        receiver.on_local_change(local_change(&store, &ev).await?);
                    }
                }
                Err(RecvError::Lagged(n)) => {
                    tracing::debug!(%peer, missed = n, "store watch lagged; re-reading the received kinds");
                    for kind in &kinds {
                        for r in list_kind(&store, *kind).await? {
                            receiver.on_local_change(LocalChange::Upsert(r));
                        }
                    }
                }
                Err(RecvError::Closed) => return Err(SyncError::WatchClosed),
            },
            msg = incoming.next() => match msg {
                None => return Err(SyncError::Ended),
                Some(Err(status)) => return Err(SyncError::Stream(status)),
                Some(Ok(resp)) => {
                    let mut received = receiver.on_response(&resp);
                    stats.on_received(&resp, &received);
                    for action in std::mem::take(&mut received.actions) {
                        apply(&store, &peer, action).await?;
                    }
                    for r in &received.rejected {
                        tracing::warn!(%peer, type_url = %resp.type_url, resource = %r.name, reason = %r.reason, "refused a resource from KDS");
                    }
                    out.send(received.request).map_err(|_| SyncError::OutgoingClosed)?;
                    if !complete && receiver.all_full_states_complete() {
                        complete = true;
                        tracing::info!(%peer, "KDS full state received");
                    }
                }
            },
        }
    }
}

const APPLY_ATTEMPTS: usize = 8;

/// Applies one receiver action: create or update whatever version is stored (retrying on
/// conflicts), or delete. A stored resource of another origin is never touched.
pub async fn apply(store: &SharedStore, peer: &Party, action: Action) -> Result<(), StoreError> {
    match action {
        Action::Upsert(r) => {
            let key = r.key();
            for _ in 0..APPLY_ATTEMPTS {
                match store.get(&key).await? {
                    None => match store.create(r.clone()).await {
                        Ok(_) => return Ok(()),
                        Err(StoreError::AlreadyExists(_)) => continue,
                        Err(e) => return Err(e),
                    },
                    Some(existing) => {
                        if origin_of(&existing) != origin_of(&r) {
                            tracing::warn!(%peer, resource = %key, "not overwriting a resource of another origin");
                            return Ok(());
                        }
                        if existing.labels == r.labels && existing.spec == r.spec {
                            return Ok(());
                        }
                        match store.update(r.clone(), existing.version).await {
                            Ok(_) => return Ok(()),
                            Err(StoreError::Conflict { .. } | StoreError::NotFound(_)) => continue,
                            Err(e) => return Err(e),
                        }
                    }
                }
            }
            Err(StoreError::Backend(format!(
                "{key}: still conflicting after {APPLY_ATTEMPTS} attempts"
            )))
        }
        Action::Delete(key) => delete(store, peer, &key).await,
    }
}

async fn delete(store: &SharedStore, peer: &Party, key: &ResourceKey) -> Result<(), StoreError> {
    if key.kind == Kind::Mesh {
        let n = store.delete_mesh_contents(&key.name).await?;
        tracing::info!(%peer, mesh = %key.name, resources = n, "mesh deleted by KDS peer");
    }
    match store.delete(key, None).await {
        Ok(()) | Err(StoreError::NotFound(_)) => Ok(()),
        Err(e) => Err(e),
    }
}

/// Who a zone control plane is, for one connection to global.
#[derive(Debug, Clone)]
pub struct ZoneHello {
    pub zone: String,
    pub token: String,
    /// Instance id, version and connection id, shown in global's zone insights.
    pub description: crate::transport::ZoneDescription,
    /// How long global may leave a response of the zone unanswered.
    pub ack_timeout: std::time::Duration,
}

/// The zone's side of one connection: `GlobalToZoneSync` (a `Receiver` storing what global
/// sends) and `ZoneToGlobalSync` (a `Sender` of the zone's resources), until either ends.
pub async fn zone_session(
    channel: tonic::transport::Channel,
    store: SharedStore,
    hello: &ZoneHello,
) -> Result<(), SyncError> {
    use crate::transport::{KdsClient, authenticate, describe};
    use tokio::sync::mpsc::unbounded_channel;
    use tokio_stream::wrappers::UnboundedReceiverStream;

    let zone = hello.zone.as_str();
    let mut client = KdsClient::new(channel);
    let (req_tx, req_rx) = unbounded_channel();
    let mut request = tonic::Request::new(UnboundedReceiverStream::new(req_rx));
    authenticate(&mut request, zone, &hello.token).map_err(SyncError::Stream)?;
    describe(&mut request, &hello.description);
    let from_global = client
        .global_to_zone(request)
        .await
        .map_err(SyncError::Stream)?
        .into_inner();
    let (resp_tx, resp_rx) = unbounded_channel();
    let mut request = tonic::Request::new(UnboundedReceiverStream::new(resp_rx));
    authenticate(&mut request, zone, &hello.token).map_err(SyncError::Stream)?;
    describe(&mut request, &hello.description);
    let to_global = client
        .zone_to_global(request)
        .await
        .map_err(SyncError::Stream)?
        .into_inner();
    tracing::info!(zone, "connected to the global control plane (KDS)");
    let me = Party::zone(zone);
    tokio::select! {
        r = run_receiver(store.clone(), ReceiverConfig::new(me.clone(), Party::Global), from_global, req_tx) => r,
        r = run_sender(store, SenderConfig { ack_timeout: hello.ack_timeout, ..SenderConfig::new(me, Party::Global) }, to_global, resp_tx) => r,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use atoll_store::MemoryStore;
    use tokio::sync::mpsc::{UnboundedReceiver, unbounded_channel};
    use tokio_stream::wrappers::UnboundedReceiverStream;

    use super::*;
    use crate::wire::type_url;

    async fn store_with_a_mesh() -> SharedStore {
        let store: SharedStore = Arc::new(MemoryStore::new());
        store
            .create(Resource::new(Kind::Mesh, "", "default"))
            .await
            .expect("mesh");
        store
    }

    fn subscribe(kind: Kind) -> DeltaDiscoveryRequest {
        DeltaDiscoveryRequest {
            type_url: type_url(kind),
            ..Default::default()
        }
    }

    async fn next_response(
        out: &mut UnboundedReceiver<DeltaDiscoveryResponse>,
    ) -> DeltaDiscoveryResponse {
        tokio::time::timeout(Duration::from_secs(5), out.recv())
            .await
            .expect("a response in time")
            .expect("the sender is running")
    }

    #[tokio::test(start_paused = true)]
    async fn a_peer_that_leaves_a_response_unanswered_ends_the_stream() {
        let store = store_with_a_mesh().await;
        let config = SenderConfig {
            ack_timeout: Duration::from_secs(10),
            ..SenderConfig::new(Party::Global, Party::zone("east"))
        };
        let (peer, incoming) = unbounded_channel();
        let (out, mut sent) = unbounded_channel();
        let run = tokio::spawn(run_sender(
            store,
            config,
            UnboundedReceiverStream::new(incoming),
            out,
        ));
        peer.send(Ok(subscribe(Kind::Mesh))).expect("subscribe");
        next_response(&mut sent).await;
        // The peer says nothing more, but keeps the stream open.
        let ended = tokio::time::timeout(Duration::from_secs(60), run)
            .await
            .expect("the stream ends")
            .expect("joined");
        assert!(
            matches!(ended, Err(SyncError::AckTimeout(d)) if d == Duration::from_secs(10)),
            "{ended:?}"
        );
        drop(peer);
    }

    #[tokio::test(start_paused = true)]
    async fn a_peer_that_answers_keeps_the_stream_however_long_it_is_quiet() {
        let store = store_with_a_mesh().await;
        let config = SenderConfig {
            ack_timeout: Duration::from_secs(10),
            ..SenderConfig::new(Party::Global, Party::zone("east"))
        };
        let (peer, incoming) = unbounded_channel();
        let (out, mut sent) = unbounded_channel();
        let mut run = tokio::spawn(run_sender(
            store,
            config,
            UnboundedReceiverStream::new(incoming),
            out,
        ));
        for kind in kinds_sent_by(Party::Global.side()) {
            peer.send(Ok(subscribe(kind))).expect("subscribe");
        }
        // Answer everything, each a little before the timeout.
        let mut answered = 0;
        while let Ok(Some(response)) =
            tokio::time::timeout(Duration::from_secs(9), sent.recv()).await
        {
            tokio::time::sleep(Duration::from_secs(8)).await;
            peer.send(Ok(DeltaDiscoveryRequest {
                type_url: response.type_url.clone(),
                response_nonce: response.nonce.clone(),
                ..Default::default()
            }))
            .expect("ACK");
            answered += 1;
        }
        // More than one answer, 8 s apart: past the timeout in total, never for one response.
        assert!(answered >= 2, "{answered}");
        // Nothing is waiting for an answer: an hour of quiet ends nothing.
        assert!(
            tokio::time::timeout(Duration::from_secs(3600), &mut run)
                .await
                .is_err(),
            "the stream stayed open"
        );
        run.abort();
    }
}

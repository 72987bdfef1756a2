//! The sans-IO sync engine: the two halves of one KDS stream, as plain state machines. Messages
//! and local changes in, messages and store actions out; no tokio, no sockets, no store.
//!
//! On `GlobalToZoneSync` the global runs a [`Sender`] and the zone a [`Receiver`]; on
//! `ZoneToGlobalSync` the other way round. Both carry Envoy's delta discovery messages: the
//! receiver sends `DeltaDiscoveryRequest`s (subscribe, ACK, NACK), the sender answers with
//! `DeltaDiscoveryResponse`s.
//!
//! Protocol:
//! 1. The receiver subscribes to every kind that flows its way (`direction::kinds_sent_by`), one
//!    request per kind with an empty nonce and `initial_resource_versions`: the wire name and
//!    content version of every resource of that kind it holds from this peer.
//! 2. The sender answers each subscription with the **full state** of the kind: every resource
//!    the receiver lacks or holds at another version, and `removed_resources` for what it
//!    declared and the sender no longer has. Unchanged resources are not sent. The full state
//!    may take several messages; `system_version_info` marks them:
//!    `kds:full:<chunk>` for a chunk with more to come, `kds:full-end:<chunk>` for the last one
//!    (an empty `kds:full-end:1` when there is nothing to send). After the last chunk the
//!    receiver deletes what it holds from this peer that was neither sent nor declared: a
//!    receiver that declares nothing is pruned to exactly what was sent.
//! 3. Then **deltas**, `kds:delta:<n>`: upserts and `removed_resources` as local state changes.
//! 4. Every response is ACKed or NACKed by nonce. A NACK lists the refused resources in
//!    `error_detail` (message `<name>: <reason>; ...`, and one `Any` of type
//!    `atoll.kds/RejectedResource` per resource, JSON `{"name", "reason"}` in `details`); the
//!    receiver applied the others. The sender records the refusal per resource, does not resend
//!    that version, and goes on: a bad resource never ends the stream.
//! 5. Flow control: a sender keeps at most `window` unacknowledged responses per kind (default
//!    2) and each response stays under `max_message_bytes` (default 1 MiB; a single resource
//!    larger than that goes alone). Pending work is not queued as messages: it is a set of
//!    names, encoded when the window opens, so memory stays bounded by the local state whatever
//!    the peer's pace. A receiver answers every response at once. So neither side ever waits
//!    for its own writes before reading: the transport loop must keep reading while it has
//!    messages to write (see `tests::both_sides_push_bulk_at_once`).
//! 6. Every (re)connect is a new stream: a new `Sender`, and a `Receiver` seeded from the store,
//!    so the full state resends only what changed.
//!
//! Echo: a zone's sender sends only what the zone created; the global's sender never sends a
//! zone what came from that zone; a receiver refuses a resource that claims to come from itself.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};

use atoll_core::{Kind, Resource, ResourceKey};
use envoy_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, Resource as WireResource,
};
use envoy_types::pb::google::protobuf::Any;
use envoy_types::pb::google::rpc::Status;
use prost::Message;
use serde_json::{Value, json};

use crate::direction::{Party, kinds_sent_by, resource_flows};
use crate::naming::{origin_of, synced_copy};
use crate::wire::{self, content_version, decode, encode, key_of, kind_of, type_url, wire_name};

/// Default largest response, in bytes (gRPC's default limit is 4 MiB).
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 1024 * 1024;
/// Default number of unacknowledged responses per kind.
pub const DEFAULT_WINDOW: usize = 2;
/// `type_url` of the `Any`s in a NACK's `error_detail.details`, one per refused resource.
pub const REJECTED_TYPE_URL: &str = "atoll.kds/RejectedResource";
/// gRPC status code of a NACK (INVALID_ARGUMENT).
const NACK_CODE: i32 = 3;
/// Room kept in a response for everything but its resources (type URL, nonce, version info).
const RESPONSE_OVERHEAD: usize = 256;
/// Room per repeated-field entry (tag and length prefix).
const ENTRY_OVERHEAD: usize = 6;

/// What kind of message a response is (`system_version_info`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Marker {
    /// Chunk `chunk` (from 1) of the full state; `last` completes it.
    Full { chunk: u64, last: bool },
    /// A change after the full state.
    Delta { seq: u64 },
}

impl Marker {
    pub fn format(self) -> String {
        match self {
            Marker::Full { chunk, last: false } => format!("kds:full:{chunk}"),
            Marker::Full { chunk, last: true } => format!("kds:full-end:{chunk}"),
            Marker::Delta { seq } => format!("kds:delta:{seq}"),
        }
    }

    pub fn parse(s: &str) -> Option<Marker> {
        let (kind, n) = s.strip_prefix("kds:")?.split_once(':')?;
        let n: u64 = n.parse().ok()?;
        match kind {
            "full" => Some(Marker::Full {
                chunk: n,
                last: false,
            }),
            "full-end" => Some(Marker::Full {
                chunk: n,
                last: true,
            }),
            "delta" => Some(Marker::Delta { seq: n }),
            _ => None,
        }
    }
}

/// A change to the local store, fed to the engine.
#[derive(Debug, Clone, PartialEq)]
pub enum LocalChange {
    Upsert(Resource),
    Delete(ResourceKey),
}

/// A store operation the receiver's caller applies.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Create or replace (whatever version the store holds).
    Upsert(Resource),
    Delete(ResourceKey),
}

/// A refused resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// Its wire name.
    pub name: String,
    pub reason: String,
}

/// Why a request could not be handled. The stream may go on; the request is ignored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EngineError {
    #[error("unknown KDS type {0:?}")]
    UnknownType(String),
    #[error("{kind} is not sent by {from}")]
    NotSent { kind: Kind, from: Party },
}

// ---------------------------------------------------------------------------------------------
// Sender
// ---------------------------------------------------------------------------------------------

/// Settings of one sender.
#[derive(Debug, Clone)]
pub struct SenderConfig {
    /// Who sends.
    pub local: Party,
    /// Who receives.
    pub peer: Party,
    pub max_message_bytes: usize,
    /// Unacknowledged responses allowed per kind (at least 1).
    pub window: usize,
    /// How long the peer may leave a response unanswered (no ACK or NACK making progress)
    /// before the stream's loop (`sync::run_sender`) takes it as gone. The engine keeps no time.
    pub ack_timeout: std::time::Duration,
}

impl SenderConfig {
    pub fn new(local: Party, peer: Party) -> Self {
        Self {
            local,
            peer,
            max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
            window: DEFAULT_WINDOW,
            ack_timeout: DEFAULT_ACK_TIMEOUT,
        }
    }
}

/// See [`SenderConfig::ack_timeout`].
pub const DEFAULT_ACK_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// What the sender knows of one kind, for inspection and metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SendStatus {
    pub subscribed: bool,
    /// The last chunk of the full state went out.
    pub full_state_sent: bool,
    /// Responses waiting for ACK/NACK.
    pub in_flight: usize,
    /// Resources the receiver holds, as far as the sender knows.
    pub resources_held: usize,
    /// Refused resources by wire name, with the receiver's reason (until a new version).
    pub rejected: BTreeMap<String, String>,
    /// The last NACK's message.
    pub last_nack: Option<String>,
}

/// What came of one request.
#[derive(Debug, Default, PartialEq)]
pub struct SenderOutcome {
    pub responses: Vec<DeltaDiscoveryResponse>,
    /// The request acknowledged a response.
    pub acked: bool,
    /// The request refused resources of a response.
    pub rejected: Vec<Rejection>,
}

#[derive(Debug)]
struct SentEntry {
    name: String,
    /// What `held` said before this response.
    previous: Option<String>,
    /// The version sent; `None` for a removal.
    sent: Option<String>,
}

#[derive(Debug)]
struct Chunk {
    nonce: String,
    entries: Vec<SentEntry>,
}

#[derive(Debug, Default)]
struct SendKind {
    /// What should be at the receiver: wire name -> encoded resource.
    desired: BTreeMap<String, WireResource>,
    /// Local key -> wire name (the synced copy is renamed).
    by_local: HashMap<ResourceKey, String>,
    subscribed: bool,
    /// What the receiver holds, as far as we know (sent counts as held): name -> version.
    held: BTreeMap<String, String>,
    /// Refused versions: name -> (version, reason).
    rejected: BTreeMap<String, (String, String)>,
    /// Names to look at for the next delta.
    dirty: BTreeSet<String>,
    /// During the full state: names still to look at, and chunks sent so far.
    full: Option<(BTreeSet<String>, u64)>,
    full_state_sent: bool,
    in_flight: VecDeque<Chunk>,
    delta_seq: u64,
    last_nack: Option<String>,
}

enum Step {
    Upsert(Box<WireResource>),
    Remove,
    Skip,
}

impl SendKind {
    fn step(&self, name: &str) -> Step {
        match self.desired.get(name) {
            Some(w) => {
                let held = self.held.get(name) == Some(&w.version);
                let refused = self
                    .rejected
                    .get(name)
                    .is_some_and(|(v, _)| *v == w.version);
                if held || refused {
                    Step::Skip
                } else {
                    Step::Upsert(Box::new(w.clone()))
                }
            }
            None if self.held.contains_key(name) => Step::Remove,
            None => Step::Skip,
        }
    }
}

/// The side of a stream that owns resources and sends them.
#[derive(Debug)]
pub struct Sender {
    config: SenderConfig,
    kinds: BTreeMap<Kind, SendKind>,
    nonce: u64,
}

impl Sender {
    pub fn new(mut config: SenderConfig) -> Self {
        config.window = config.window.max(1);
        let kinds = kinds_sent_by(config.local.side())
            .into_iter()
            .map(|k| (k, SendKind::default()))
            .collect();
        Self {
            config,
            kinds,
            nonce: 0,
        }
    }

    pub fn config(&self) -> &SenderConfig {
        &self.config
    }

    /// The kinds this sender serves.
    pub fn kinds(&self) -> impl Iterator<Item = Kind> + '_ {
        self.kinds.keys().copied()
    }

    /// Whether `resource` goes to the peer: its kind flows that way, and it was created here
    /// (or, on global, in a zone other than the peer, for relayed kinds).
    pub fn sends(&self, resource: &Resource) -> bool {
        let flow = resource_flows(resource.kind, &resource.name, self.config.local.side());
        let origin = origin_of(resource);
        match (&self.config.local, origin) {
            (Party::Global, Some(Party::Zone(z))) => {
                flow.relay && self.config.peer.zone_name() != Some(z.as_str())
            }
            (Party::Global, _) => flow.own,
            (Party::Zone(_), None) => flow.own,
            (Party::Zone(me), Some(Party::Zone(z))) => flow.own && *me == z,
            (Party::Zone(_), Some(Party::Global)) => false,
        }
    }

    /// Replaces the local state of one kind (at start, or after a lagging store watch).
    pub fn set_state(
        &mut self,
        kind: Kind,
        resources: impl IntoIterator<Item = Resource>,
    ) -> Vec<DeltaDiscoveryResponse> {
        let mut desired = BTreeMap::new();
        let mut by_local = HashMap::new();
        for r in resources {
            if r.kind != kind || !self.sends(&r) {
                continue;
            }
            let w = encode(&synced_copy(&r, &self.config.local));
            by_local.insert(r.key(), w.name.clone());
            desired.insert(w.name.clone(), w);
        }
        let Some(st) = self.kinds.get_mut(&kind) else {
            return Vec::new();
        };
        for (name, w) in &st.desired {
            if desired.get(name).map(|n: &WireResource| &n.version) != Some(&w.version) {
                st.dirty.insert(name.clone());
            }
        }
        for name in desired.keys() {
            if !st.desired.contains_key(name) {
                st.dirty.insert(name.clone());
            }
        }
        st.desired = desired;
        st.by_local = by_local;
        self.pump(kind)
    }

    /// Applies one local change (a store event).
    pub fn on_local_change(&mut self, change: LocalChange) -> Vec<DeltaDiscoveryResponse> {
        let (kind, key) = match &change {
            LocalChange::Upsert(r) => (r.kind, r.key()),
            LocalChange::Delete(k) => (k.kind, k.clone()),
        };
        let wanted = match &change {
            LocalChange::Upsert(r) if self.sends(r) => {
                Some(encode(&synced_copy(r, &self.config.local)))
            }
            _ => None,
        };
        let Some(st) = self.kinds.get_mut(&kind) else {
            return Vec::new();
        };
        if let Some(old) = st.by_local.remove(&key) {
            st.desired.remove(&old);
            st.dirty.insert(old);
        }
        if let Some(w) = wanted {
            st.by_local.insert(key, w.name.clone());
            st.dirty.insert(w.name.clone());
            st.desired.insert(w.name.clone(), w);
        }
        self.pump(kind)
    }

    /// Handles one request from the receiver: a subscription (empty nonce), an ACK or a NACK.
    pub fn on_request(
        &mut self,
        req: &DeltaDiscoveryRequest,
    ) -> Result<SenderOutcome, EngineError> {
        let kind =
            kind_of(&req.type_url).ok_or_else(|| EngineError::UnknownType(req.type_url.clone()))?;
        let from = self.config.local.clone();
        let st = self
            .kinds
            .get_mut(&kind)
            .ok_or(EngineError::NotSent { kind, from })?;
        let mut outcome = SenderOutcome::default();
        if req.response_nonce.is_empty() {
            // A (re)subscription: start over with a full state against what it declares.
            st.subscribed = true;
            st.held = req
                .initial_resource_versions
                .iter()
                .map(|(n, v)| (n.clone(), v.clone()))
                .collect();
            st.rejected.clear();
            st.in_flight.clear();
            st.dirty.clear();
            let pending = st.desired.keys().chain(st.held.keys()).cloned().collect();
            st.full = Some((pending, 0));
            st.full_state_sent = false;
        } else if let Some(pos) = st
            .in_flight
            .iter()
            .position(|c| c.nonce == req.response_nonce)
        {
            let chunk = st.in_flight.remove(pos).unwrap_or_else(|| Chunk {
                nonce: String::new(),
                entries: Vec::new(),
            });
            match &req.error_detail {
                None => {
                    outcome.acked = true;
                    for e in &chunk.entries {
                        st.rejected.remove(&e.name);
                    }
                }
                Some(status) => {
                    let named = rejections_of(status);
                    let by_name: HashMap<&str, &str> = named
                        .iter()
                        .map(|r| (r.name.as_str(), r.reason.as_str()))
                        .collect();
                    for e in &chunk.entries {
                        // A NACK naming nothing we can read refuses the whole response.
                        let reason = match by_name.get(e.name.as_str()) {
                            Some(r) => *r,
                            None if named.is_empty() => status.message.as_str(),
                            None => {
                                st.rejected.remove(&e.name);
                                continue;
                            }
                        };
                        if st.held.get(&e.name) == e.sent.as_ref() {
                            match &e.previous {
                                Some(v) => st.held.insert(e.name.clone(), v.clone()),
                                None => st.held.remove(&e.name),
                            };
                        }
                        if let Some(v) = &e.sent {
                            st.rejected
                                .insert(e.name.clone(), (v.clone(), reason.to_string()));
                            outcome.rejected.push(Rejection {
                                name: e.name.clone(),
                                reason: reason.to_string(),
                            });
                        }
                    }
                    st.last_nack = Some(status.message.clone());
                }
            }
        }
        // Anything else is a stale nonce (a response of an earlier subscription): ignored.
        outcome.responses = self.pump(kind);
        Ok(outcome)
    }

    /// Status of one kind.
    pub fn status(&self, kind: Kind) -> Option<SendStatus> {
        let st = self.kinds.get(&kind)?;
        Some(SendStatus {
            subscribed: st.subscribed,
            full_state_sent: st.full_state_sent,
            in_flight: st.in_flight.len(),
            resources_held: st.held.len(),
            rejected: st
                .rejected
                .iter()
                .map(|(n, (_, reason))| (n.clone(), reason.clone()))
                .collect(),
            last_nack: st.last_nack.clone(),
        })
    }

    /// Some response went out and the peer has not answered it yet.
    pub fn awaiting_answer(&self) -> bool {
        self.kinds.values().any(|st| !st.in_flight.is_empty())
    }

    /// Every subscribed kind is sent, acknowledged and holds what the local state offers.
    pub fn in_sync(&self) -> bool {
        self.kinds.values().all(|st| {
            !st.subscribed
                || (st.full_state_sent
                    && st.in_flight.is_empty()
                    && st.dirty.iter().all(|n| matches!(st.step(n), Step::Skip)))
        })
    }

    /// Sends what the window allows for one kind.
    fn pump(&mut self, kind: Kind) -> Vec<DeltaDiscoveryResponse> {
        let mut out = Vec::new();
        let budget = self
            .config
            .max_message_bytes
            .saturating_sub(RESPONSE_OVERHEAD);
        let Some(st) = self.kinds.get_mut(&kind) else {
            return out;
        };
        while st.subscribed && st.in_flight.len() < self.config.window {
            let mut resources = Vec::new();
            let mut removed = Vec::new();
            let mut size = 0usize;
            let in_full = st.full.is_some();
            loop {
                let next = match &mut st.full {
                    Some((pending, _)) => pending.pop_first(),
                    None => st.dirty.pop_first(),
                };
                let Some(name) = next else { break };
                if in_full {
                    st.dirty.remove(&name);
                }
                let (cost, step) = match st.step(&name) {
                    Step::Skip => continue,
                    Step::Upsert(w) => (w.encoded_len() + ENTRY_OVERHEAD, Step::Upsert(w)),
                    Step::Remove => (name.len() + ENTRY_OVERHEAD, Step::Remove),
                };
                let empty = resources.is_empty() && removed.is_empty();
                if !empty && size + cost > budget {
                    // Next message.
                    match &mut st.full {
                        Some((pending, _)) => pending.insert(name),
                        None => st.dirty.insert(name),
                    };
                    break;
                }
                size += cost;
                match step {
                    Step::Upsert(w) => resources.push(*w),
                    Step::Remove => removed.push(name),
                    Step::Skip => {}
                }
            }
            let marker = match &mut st.full {
                Some((pending, chunks)) => {
                    *chunks += 1;
                    Marker::Full {
                        chunk: *chunks,
                        last: pending.is_empty(),
                    }
                }
                None if resources.is_empty() && removed.is_empty() => break,
                None => {
                    st.delta_seq += 1;
                    Marker::Delta { seq: st.delta_seq }
                }
            };
            if let Marker::Full { last: true, .. } = marker {
                st.full = None;
                st.full_state_sent = true;
            }
            self.nonce += 1;
            let nonce = self.nonce.to_string();
            let mut entries = Vec::with_capacity(resources.len() + removed.len());
            for w in &resources {
                let previous = st.held.insert(w.name.clone(), w.version.clone());
                entries.push(SentEntry {
                    name: w.name.clone(),
                    previous,
                    sent: Some(w.version.clone()),
                });
            }
            for name in &removed {
                let previous = st.held.remove(name);
                st.rejected.remove(name);
                entries.push(SentEntry {
                    name: name.clone(),
                    previous,
                    sent: None,
                });
            }
            st.in_flight.push_back(Chunk {
                nonce: nonce.clone(),
                entries,
            });
            out.push(DeltaDiscoveryResponse {
                system_version_info: marker.format(),
                resources,
                type_url: type_url(kind),
                removed_resources: removed,
                nonce,
                ..Default::default()
            });
        }
        out
    }
}

/// The refused resources a NACK names.
pub fn rejections_of(status: &Status) -> Vec<Rejection> {
    status
        .details
        .iter()
        .filter(|a| a.type_url == REJECTED_TYPE_URL)
        .filter_map(|a| serde_json::from_slice::<Value>(&a.value).ok())
        .filter_map(|v| {
            Some(Rejection {
                name: v.get("name")?.as_str()?.to_string(),
                reason: v.get("reason")?.as_str()?.to_string(),
            })
        })
        .collect()
}

/// The NACK status for refused resources.
pub fn nack_status(rejected: &[Rejection]) -> Status {
    let message = rejected
        .iter()
        .map(|r| format!("{}: {}", r.name, r.reason))
        .collect::<Vec<_>>()
        .join("; ");
    Status {
        code: NACK_CODE,
        message,
        details: rejected
            .iter()
            .map(|r| Any {
                type_url: REJECTED_TYPE_URL.into(),
                value: json!({"name": r.name, "reason": r.reason})
                    .to_string()
                    .into_bytes(),
            })
            .collect(),
    }
}

// ---------------------------------------------------------------------------------------------
// Receiver
// ---------------------------------------------------------------------------------------------

/// Settings of one receiver.
#[derive(Debug, Clone)]
pub struct ReceiverConfig {
    /// Who receives (and stores).
    pub local: Party,
    /// Who sends.
    pub peer: Party,
    /// Declare what is held in `initial_resource_versions` (default), so unchanged resources are
    /// not resent. Without, the sender resends everything and the receiver prunes to it.
    pub declare_held: bool,
}

impl ReceiverConfig {
    pub fn new(local: Party, peer: Party) -> Self {
        Self {
            local,
            peer,
            declare_held: true,
        }
    }
}

/// What came of one response.
#[derive(Debug, Default, PartialEq)]
pub struct Received {
    /// Store operations, in order.
    pub actions: Vec<Action>,
    /// The ACK or NACK to send back.
    pub request: DeltaDiscoveryRequest,
    pub rejected: Vec<Rejection>,
    /// This response completed the kind's full state.
    pub full_state_complete: bool,
}

#[derive(Debug, Clone)]
struct Held {
    /// Came from this peer (and so may be replaced or deleted by it).
    owned: bool,
    version: String,
}

#[derive(Debug, Default)]
struct RecvKind {
    held: BTreeMap<ResourceKey, Held>,
    /// What the subscription declared.
    declared: BTreeSet<ResourceKey>,
    /// Keys the full state in progress mentioned.
    full_seen: Option<BTreeSet<ResourceKey>>,
    full_complete: bool,
}

/// The side of a stream that stores what the peer sends.
#[derive(Debug)]
pub struct Receiver {
    config: ReceiverConfig,
    kinds: BTreeMap<Kind, RecvKind>,
}

impl Receiver {
    /// A receiver seeded with the local store's resources of the kinds it receives (others are
    /// ignored), so it knows what it holds from this peer and what it must not overwrite.
    pub fn new(config: ReceiverConfig, existing: impl IntoIterator<Item = Resource>) -> Self {
        let mut kinds: BTreeMap<Kind, RecvKind> = kinds_sent_by(config.peer.side())
            .into_iter()
            .map(|k| (k, RecvKind::default()))
            .collect();
        for r in existing {
            let owned = owned_by(&config, &r);
            if let Some(st) = kinds.get_mut(&r.kind) {
                st.held.insert(
                    r.key(),
                    Held {
                        owned,
                        version: content_version(&r),
                    },
                );
            }
        }
        Self { config, kinds }
    }

    /// The kinds this receiver subscribes to.
    pub fn kinds(&self) -> impl Iterator<Item = Kind> + '_ {
        self.kinds.keys().copied()
    }

    /// The subscriptions to send when the stream opens: one per kind, in `Kind::ALL` order
    /// (Mesh first).
    pub fn subscribe(&mut self) -> Vec<DeltaDiscoveryRequest> {
        let declare = self.config.declare_held;
        self.kinds
            .iter_mut()
            .map(|(kind, st)| {
                st.full_seen = None;
                st.full_complete = false;
                st.declared = if declare {
                    st.held
                        .iter()
                        .filter(|(_, h)| h.owned)
                        .map(|(k, _)| k.clone())
                        .collect()
                } else {
                    BTreeSet::new()
                };
                let initial = st
                    .declared
                    .iter()
                    .filter_map(|k| Some((wire_name(k), st.held.get(k)?.version.clone())))
                    .collect();
                DeltaDiscoveryRequest {
                    type_url: type_url(*kind),
                    resource_names_subscribe: vec!["*".into()],
                    initial_resource_versions: initial,
                    ..Default::default()
                }
            })
            .collect()
    }

    /// Keeps the receiver's view of the store current with writes made by others (and with a
    /// store event for its own actions: applying them again is harmless).
    pub fn on_local_change(&mut self, change: LocalChange) {
        match change {
            LocalChange::Upsert(r) => {
                let owned = owned_by(&self.config, &r);
                if let Some(st) = self.kinds.get_mut(&r.kind) {
                    st.held.insert(
                        r.key(),
                        Held {
                            owned,
                            version: content_version(&r),
                        },
                    );
                }
            }
            LocalChange::Delete(key) => {
                if let Some(st) = self.kinds.get_mut(&key.kind) {
                    st.held.remove(&key);
                }
            }
        }
    }

    /// The full state of every kind has arrived.
    pub fn all_full_states_complete(&self) -> bool {
        self.kinds.values().all(|st| st.full_complete)
    }

    pub fn full_state_complete(&self, kind: Kind) -> bool {
        self.kinds.get(&kind).is_some_and(|st| st.full_complete)
    }

    /// Handles one response: the store actions to apply, and the ACK/NACK to send back.
    pub fn on_response(&mut self, resp: &DeltaDiscoveryResponse) -> Received {
        let mut out = Received {
            request: DeltaDiscoveryRequest {
                type_url: resp.type_url.clone(),
                response_nonce: resp.nonce.clone(),
                ..Default::default()
            },
            ..Default::default()
        };
        let kind = kind_of(&resp.type_url);
        let Some((kind, st)) = kind.and_then(|k| Some((k, self.kinds.get_mut(&k)?))) else {
            let reason = format!(
                "type {:?} is not sent by {} to {}",
                resp.type_url, self.config.peer, self.config.local
            );
            let all: Vec<Rejection> = resp
                .resources
                .iter()
                .map(|w| Rejection {
                    name: w.name.clone(),
                    reason: reason.clone(),
                })
                .collect();
            let mut status = nack_status(&all);
            status.message = reason;
            out.request.error_detail = Some(status);
            out.rejected = all;
            return out;
        };
        let marker = Marker::parse(&resp.system_version_info);
        if matches!(marker, Some(Marker::Full { .. })) && st.full_seen.is_none() {
            st.full_seen = Some(BTreeSet::new());
        }
        for w in &resp.resources {
            match accept(&self.config, kind, &resp.type_url, w, &st.held) {
                Ok(r) => {
                    let key = r.key();
                    let version = content_version(&r);
                    if let Some(seen) = &mut st.full_seen {
                        seen.insert(key.clone());
                    }
                    let unchanged = st
                        .held
                        .get(&key)
                        .is_some_and(|h| h.owned && h.version == version);
                    if !unchanged {
                        st.held.insert(
                            key,
                            Held {
                                owned: true,
                                version,
                            },
                        );
                        out.actions.push(Action::Upsert(r));
                    }
                }
                Err(reason) => {
                    // The copy held (if any) stays, as the previous version.
                    if let (Some(seen), Some(key)) = (&mut st.full_seen, key_of(kind, &w.name)) {
                        seen.insert(key);
                    }
                    out.rejected.push(Rejection {
                        name: w.name.clone(),
                        reason,
                    });
                }
            }
        }
        for name in &resp.removed_resources {
            let Some(key) = key_of(kind, name) else {
                continue;
            };
            if st.held.get(&key).is_some_and(|h| h.owned) {
                st.held.remove(&key);
                st.declared.remove(&key);
                if let Some(seen) = &mut st.full_seen {
                    seen.remove(&key);
                }
                out.actions.push(Action::Delete(key));
            }
        }
        if let Some(Marker::Full { last: true, .. }) = marker {
            let seen = st.full_seen.take().unwrap_or_default();
            let stale: Vec<ResourceKey> = st
                .held
                .iter()
                .filter(|(k, h)| h.owned && !seen.contains(*k) && !st.declared.contains(*k))
                .map(|(k, _)| k.clone())
                .collect();
            for key in stale {
                st.held.remove(&key);
                out.actions.push(Action::Delete(key));
            }
            st.declared.clear();
            st.full_complete = true;
            out.full_state_complete = true;
        }
        if !out.rejected.is_empty() {
            out.request.error_detail = Some(nack_status(&out.rejected));
        }
        out
    }
}

/// Whether a resource held locally came from the configured peer.
fn owned_by(config: &ReceiverConfig, r: &Resource) -> bool {
    match (&config.local, origin_of(r)) {
        (Party::Global, Some(Party::Zone(z))) => config.peer.zone_name() == Some(z.as_str()),
        (Party::Global, _) => false,
        (Party::Zone(_), Some(Party::Global)) => true,
        (Party::Zone(me), Some(Party::Zone(z))) => *me != z,
        (Party::Zone(_), None) => false,
    }
}

/// Decodes and checks one received resource.
fn accept(
    config: &ReceiverConfig,
    kind: Kind,
    type_url: &str,
    w: &WireResource,
    held: &BTreeMap<ResourceKey, Held>,
) -> Result<Resource, String> {
    let r = decode(type_url, w).map_err(|e: wire::DecodeError| e.to_string())?;
    let flow = resource_flows(kind, &r.name, config.peer.side());
    match (&config.local, origin_of(&r)) {
        (Party::Global, Some(Party::Zone(z))) if config.peer.zone_name() == Some(z.as_str()) => {}
        (Party::Global, origin) => {
            return Err(format!(
                "origin labels say {}, but this stream carries {}'s resources",
                origin.map_or("nothing".to_string(), |o| o.to_string()),
                config.peer
            ));
        }
        (Party::Zone(me), Some(Party::Zone(z))) if *me == z => {
            return Err("echo: the resource comes from this zone".into());
        }
        (Party::Zone(_), Some(Party::Zone(z))) if !flow.relay => {
            return Err(format!(
                "{kind} from zone {z:?} is not relayed to other zones"
            ));
        }
        (Party::Zone(_), Some(Party::Global)) if !flow.own => {
            return Err(format!("{kind} created on global is not sent to zones"));
        }
        (Party::Zone(_), Some(_)) => {}
        (Party::Zone(_), None) => return Err("missing kuma.io/origin label".into()),
    }
    if held.get(&r.key()).is_some_and(|h| !h.owned) {
        return Err(format!(
            "{} exists here and was not synced from {}",
            r.key(),
            config.peer
        ));
    }
    Ok(r)
}

#[cfg(test)]
#[path = "engine_tests.rs"]
mod tests;

//! One Envoy's delta ADS stream as a state machine: requests and snapshots in, responses out.
//!
//! Rules it keeps (Envoy's delta xDS protocol, and what FIELD-NOTES.md records as pitfalls):
//! - LDS and CDS are wildcard: the first request's empty subscribe list means "everything".
//!   Other types (EDS, RDS, SDS) are subscribed by name.
//! - A request carrying `response_nonce` acknowledges that response (ACK), or rejects it when it
//!   carries `error_detail` (NACK): Envoy keeps its previous config, so the session rolls back
//!   what it believes the client holds and does not resend the rejected versions until the
//!   snapshot changes.
//! - New subscriptions arrive with an empty nonce and must be answered; the first request of
//!   every type is answered even when there is nothing to send, or Envoy's init never completes.
//! - On reconnect, `initial_resource_versions` says what the client already holds: only what
//!   differs is sent.
//! - Make before break: secrets, clusters and endpoints are added first; listeners and routes
//!   change only once those are ACKed; what is no longer referenced is removed last, after the
//!   listeners and routes that stopped using it are ACKed.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use envoy_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, Resource as WireResource,
};
use envoy_types::pb::google::protobuf::Any;

/// The xDS resource types, by the short names the protocol rules use (the URLs themselves are
/// named once, in `atoll_envoy_model::type_urls`).
pub use atoll_envoy_model::type_urls::{
    CLUSTER, CLUSTER_LOAD_ASSIGNMENT as ENDPOINT, LISTENER, ROUTE_CONFIGURATION as ROUTE, SECRET,
};

/// Types whose resources others refer to: added first, removed last.
const WARMING_TYPES: [&str; 3] = [SECRET, CLUSTER, ENDPOINT];
/// Types that refer to others: changed once what they refer to is in place.
const REFERRING_TYPES: [&str; 2] = [LISTENER, ROUTE];

fn is_wildcard_type(type_url: &str) -> bool {
    type_url == LISTENER || type_url == CLUSTER
}

/// One resource of a snapshot.
#[derive(Debug, Clone, PartialEq)]
pub struct SnapshotResource {
    pub version: String,
    /// Shared with the generated resource (and other snapshots): copied only into a response.
    pub resource: std::sync::Arc<Any>,
}

/// The complete configuration of one proxy at one moment, by type URL then name.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Snapshot {
    /// A label for this snapshot (reported as `system_version_info` and in status).
    pub version: String,
    pub resources: BTreeMap<String, BTreeMap<String, SnapshotResource>>,
}

impl Snapshot {
    fn of_type(&self, type_url: &str) -> Option<&BTreeMap<String, SnapshotResource>> {
        self.resources.get(type_url)
    }
}

/// What the session knows of one type on this stream.
#[derive(Debug, Default)]
struct TypeState {
    /// Envoy asked for this type at least once.
    requested: bool,
    /// The first request was answered.
    answered: bool,
    wildcard: bool,
    subscribed: BTreeSet<String>,
    /// Names Envoy asked for that no response has answered yet (each must be answered once).
    unanswered: BTreeSet<String>,
    /// What the client holds (as far as we know): name -> version.
    held: BTreeMap<String, String>,
    /// The response on the wire, waiting for its ACK/NACK: nonce and the state `held` had
    /// before it (restored on NACK).
    in_flight: Option<InFlight>,
    /// Versions refused by Envoy: not resent until the snapshot offers another version.
    rejected: BTreeMap<String, String>,
}

#[derive(Debug)]
struct InFlight {
    nonce: String,
    snapshot_version: String,
    previous: BTreeMap<String, String>,
}

/// ACK/NACK status of one type, for inspection and metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TypeStatus {
    pub last_sent_version: Option<String>,
    pub last_acked_version: Option<String>,
    /// The last NACK: snapshot version and Envoy's error text.
    pub last_nack: Option<(String, String)>,
    pub resources_held: usize,
}

/// What came of one request.
#[derive(Debug, Default, PartialEq)]
pub struct RequestOutcome {
    pub responses: Vec<DeltaDiscoveryResponse>,
    /// The request acknowledged this snapshot version for its type.
    pub acked: Option<String>,
    /// The request rejected this snapshot version, with Envoy's message.
    pub nacked: Option<(String, String)>,
}

/// Why a request was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SessionError {
    #[error("request without a type_url")]
    MissingTypeUrl,
}

/// One proxy's delta ADS session.
#[derive(Debug, Default)]
pub struct DeltaSession {
    types: HashMap<String, TypeState>,
    nonce_counter: u64,
    status: BTreeMap<String, TypeStatus>,
}

impl DeltaSession {
    pub fn new() -> Self {
        Self::default()
    }

    /// Handles one request from Envoy against the current snapshot.
    pub fn handle_request(
        &mut self,
        req: &DeltaDiscoveryRequest,
        snapshot: &Snapshot,
    ) -> Result<RequestOutcome, SessionError> {
        if req.type_url.is_empty() {
            return Err(SessionError::MissingTypeUrl);
        }
        let type_url = req.type_url.clone();
        let mut outcome = RequestOutcome::default();
        let state = self.types.entry(type_url.clone()).or_default();
        let first = !state.requested;
        state.requested = true;

        if first {
            for (name, version) in &req.initial_resource_versions {
                state.held.insert(name.clone(), version.clone());
            }
            if is_wildcard_type(&type_url) && req.resource_names_subscribe.is_empty() {
                state.wildcard = true;
            }
        }
        for name in &req.resource_names_subscribe {
            if name == "*" {
                state.wildcard = true;
            } else if state.subscribed.insert(name.clone()) || req.response_nonce.is_empty() {
                state.unanswered.insert(name.clone());
            }
        }
        for name in &req.resource_names_unsubscribe {
            if name == "*" {
                state.wildcard = false;
            } else {
                state.subscribed.remove(name);
                state.unanswered.remove(name);
                // The client drops it itself; no removal needs to be sent.
                state.held.remove(name);
            }
        }

        if !req.response_nonce.is_empty() {
            let matches = state
                .in_flight
                .as_ref()
                .is_some_and(|f| f.nonce == req.response_nonce);
            if let Some(flight) = state.in_flight.take_if(|_| matches) {
                let status = self.status.entry(type_url.clone()).or_default();
                match &req.error_detail {
                    Some(err) => {
                        // Envoy kept its previous config: roll back our view of it, and
                        // remember the refused versions so they are not resent in a loop.
                        for (name, version) in &state.held {
                            if flight.previous.get(name) != Some(version) {
                                state.rejected.insert(name.clone(), version.clone());
                            }
                        }
                        state.held = flight.previous;
                        let message = err.message.clone();
                        status.last_nack = Some((flight.snapshot_version.clone(), message.clone()));
                        outcome.nacked = Some((flight.snapshot_version, message));
                    }
                    None => {
                        status.last_acked_version = Some(flight.snapshot_version.clone());
                        outcome.acked = Some(flight.snapshot_version);
                    }
                }
            }
            // A stale nonce (an older response) is ignored: a newer one is on the wire.
        }

        outcome.responses = self.pump(snapshot);
        Ok(outcome)
    }

    /// Called when the proxy's snapshot changed: what to send now.
    pub fn on_snapshot(&mut self, snapshot: &Snapshot) -> Vec<DeltaDiscoveryResponse> {
        for state in self.types.values_mut() {
            // A new snapshot may fix what Envoy refused: let it be tried again.
            state.rejected.retain(|name, version| {
                snapshot
                    .resources
                    .values()
                    .any(|m| m.get(name).is_some_and(|r| &r.version == version))
            });
        }
        self.pump(snapshot)
    }

    /// Status per type URL.
    pub fn status(&self) -> &BTreeMap<String, TypeStatus> {
        &self.status
    }

    /// True when nothing is waiting for an ACK and every requested type holds exactly what the
    /// snapshot offers it.
    pub fn in_sync(&self, snapshot: &Snapshot) -> bool {
        self.types.iter().all(|(type_url, state)| {
            state.in_flight.is_none()
                && (!state.requested
                    || (state.answered
                        && holds_exactly(&state.held, &wanted(state, snapshot.of_type(type_url)))))
        })
    }

    /// Sends what may be sent now, in make-before-break order.
    fn pump(&mut self, snapshot: &Snapshot) -> Vec<DeltaDiscoveryResponse> {
        let mut out = Vec::new();
        // 1. Add and update what others refer to.
        for type_url in WARMING_TYPES {
            if let Some(r) = self.push_type(type_url, snapshot, Phase::UpsertOnly) {
                out.push(r);
            }
        }
        // 2. Listeners and routes, once what they refer to is ACKed.
        let warm = WARMING_TYPES
            .iter()
            .all(|t| self.settled(t, snapshot, false));
        for type_url in REFERRING_TYPES {
            let phase = if warm {
                Phase::Full
            } else {
                Phase::FirstAnswerOnly
            };
            if let Some(r) = self.push_type(type_url, snapshot, phase) {
                out.push(r);
            }
        }
        // 3. Remove what is no longer referred to, once the referring types are ACKed.
        let referring_done = REFERRING_TYPES
            .iter()
            .all(|t| self.settled(t, snapshot, true));
        if warm && referring_done {
            for type_url in WARMING_TYPES {
                if let Some(r) = self.push_type(type_url, snapshot, Phase::Full) {
                    out.push(r);
                }
            }
        }
        out
    }

    /// A type is settled when nothing is in flight and (for `with_removals`) it holds exactly
    /// what is wanted, or (without) every wanted resource is held at its version.
    fn settled(&self, type_url: &str, snapshot: &Snapshot, with_removals: bool) -> bool {
        let Some(state) = self.types.get(type_url) else {
            return true;
        };
        if state.in_flight.is_some() {
            return false;
        }
        if !state.requested {
            return true;
        }
        let want = wanted(state, snapshot.of_type(type_url));
        let upserts_done = want.iter().all(|(name, version)| {
            state.held.get(*name).map(String::as_str) == Some(*version)
                || state.rejected.get(*name).map(String::as_str) == Some(*version)
        });
        if with_removals {
            upserts_done && state.held.keys().all(|n| want.contains_key(n.as_str()))
        } else {
            upserts_done
        }
    }

    fn push_type(
        &mut self,
        type_url: &str,
        snapshot: &Snapshot,
        phase: Phase,
    ) -> Option<DeltaDiscoveryResponse> {
        let state = self.types.get_mut(type_url)?;
        if !state.requested || state.in_flight.is_some() {
            return None;
        }
        let offered = snapshot.of_type(type_url);
        let want = wanted(state, offered);
        let mut resources = Vec::new();
        let mut removed = Vec::new();
        if phase != Phase::FirstAnswerOnly {
            for (&name, &version) in &want {
                let changed = state.held.get(name).map(String::as_str) != Some(version);
                let refused = state.rejected.get(name).map(String::as_str) == Some(version);
                let wanted_now = (changed && !refused) || state.unanswered.contains(name);
                if let Some(r) = offered.and_then(|m| m.get(name)).filter(|_| wanted_now) {
                    resources.push(WireResource {
                        name: name.to_string(),
                        version: r.version.clone(),
                        resource: Some((*r.resource).clone()),
                        ..Default::default()
                    });
                }
            }
            if phase == Phase::Full {
                for name in state.held.keys() {
                    if !want.contains_key(name.as_str()) {
                        removed.push(name.clone());
                    }
                }
            }
        }
        let must_answer = !state.answered;
        if resources.is_empty() && removed.is_empty() && !must_answer {
            return None;
        }
        // Names Envoy asked for that do not exist are answered as removed, so its
        // subscription resolves instead of waiting for the init timeout.
        if phase != Phase::FirstAnswerOnly {
            for name in &state.unanswered {
                if !want.contains_key(name.as_str()) && !removed.contains(name) {
                    removed.push(name.clone());
                }
            }
            state.unanswered.clear();
        }
        self.nonce_counter += 1;
        let nonce = self.nonce_counter.to_string();
        let previous = state.held.clone();
        for r in &resources {
            state.held.insert(r.name.clone(), r.version.clone());
        }
        for name in &removed {
            state.held.remove(name);
        }
        state.answered = true;
        state.in_flight = Some(InFlight {
            nonce: nonce.clone(),
            snapshot_version: snapshot.version.clone(),
            previous,
        });
        let status = self.status.entry(type_url.to_string()).or_default();
        status.last_sent_version = Some(snapshot.version.clone());
        status.resources_held = state.held.len();
        Some(DeltaDiscoveryResponse {
            system_version_info: snapshot.version.clone(),
            resources,
            type_url: type_url.to_string(),
            removed_resources: removed,
            nonce,
            ..Default::default()
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Only add or update; keep what is no longer wanted.
    UpsertOnly,
    /// Add, update and remove.
    Full,
    /// Send nothing but the mandatory (empty) answer to a first request.
    FirstAnswerOnly,
}

/// What the client should hold of one type: name -> version, borrowed from the snapshot (this
/// runs for every type on every push: cloning every name and version was most of a push).
fn wanted<'a>(
    state: &TypeState,
    offered: Option<&'a BTreeMap<String, SnapshotResource>>,
) -> BTreeMap<&'a str, &'a str> {
    let Some(offered) = offered else {
        return BTreeMap::new();
    };
    offered
        .iter()
        .filter(|(name, _)| state.wildcard || state.subscribed.contains(*name))
        .map(|(name, r)| (name.as_str(), r.version.as_str()))
        .collect()
}

/// Whether `held` is exactly `want`.
fn holds_exactly(held: &BTreeMap<String, String>, want: &BTreeMap<&str, &str>) -> bool {
    held.len() == want.len()
        && held
            .iter()
            .zip(want)
            .all(|((name, version), (w_name, w_version))| name == w_name && version == w_version)
}

#[cfg(test)]
mod tests {
    use super::*;
    use envoy_types::pb::google::rpc::Status;

    fn res(version: &str) -> SnapshotResource {
        SnapshotResource {
            version: version.into(),
            resource: std::sync::Arc::new(Any {
                type_url: "t".into(),
                value: version.as_bytes().to_vec(),
            }),
        }
    }

    fn snapshot(version: &str, items: &[(&str, &str, &str)]) -> Snapshot {
        let mut s = Snapshot {
            version: version.into(),
            ..Default::default()
        };
        for (type_url, name, v) in items {
            s.resources
                .entry(type_url.to_string())
                .or_default()
                .insert(name.to_string(), res(v));
        }
        s
    }

    fn req(type_url: &str, subscribe: &[&str], nonce: &str) -> DeltaDiscoveryRequest {
        DeltaDiscoveryRequest {
            type_url: type_url.into(),
            resource_names_subscribe: subscribe.iter().map(|s| s.to_string()).collect(),
            response_nonce: nonce.into(),
            ..Default::default()
        }
    }

    fn names(r: &DeltaDiscoveryResponse) -> Vec<&str> {
        r.resources.iter().map(|x| x.name.as_str()).collect()
    }

    fn ack(s: &mut DeltaSession, r: &DeltaDiscoveryResponse, snap: &Snapshot) -> RequestOutcome {
        s.handle_request(&req(&r.type_url, &[], &r.nonce), snap)
            .expect("valid")
    }

    /// Envoy's start-up: CDS (wildcard), EDS by name, LDS (wildcard), each answered and ACKed.
    #[test]
    fn startup_exchange_reaches_sync() {
        let snap = snapshot(
            "v1",
            &[
                (CLUSTER, "backend", "c1"),
                (ENDPOINT, "backend", "e1"),
                (LISTENER, "out", "l1"),
            ],
        );
        let mut s = DeltaSession::new();
        let out = s.handle_request(&req(CLUSTER, &[], ""), &snap).expect("ok");
        assert_eq!(out.responses.len(), 1);
        assert_eq!(names(&out.responses[0]), ["backend"]);
        let cds = out.responses[0].clone();
        let out = ack(&mut s, &cds, &snap);
        assert_eq!(out.acked.as_deref(), Some("v1"));
        assert!(out.responses.is_empty());

        let out = s
            .handle_request(&req(ENDPOINT, &["backend"], ""), &snap)
            .expect("ok");
        assert_eq!(names(&out.responses[0]), ["backend"]);
        let eds = out.responses[0].clone();
        ack(&mut s, &eds, &snap);

        let out = s
            .handle_request(&req(LISTENER, &[], ""), &snap)
            .expect("ok");
        assert_eq!(names(&out.responses[0]), ["out"]);
        let lds = out.responses[0].clone();
        ack(&mut s, &lds, &snap);
        assert!(s.in_sync(&snap));
    }

    #[test]
    fn first_request_is_answered_even_when_empty() {
        let mut s = DeltaSession::new();
        let out = s
            .handle_request(&req(LISTENER, &[], ""), &Snapshot::default())
            .expect("ok");
        assert_eq!(out.responses.len(), 1);
        assert!(out.responses[0].resources.is_empty());
        assert!(!out.responses[0].nonce.is_empty());
    }

    #[test]
    fn nack_rolls_back_and_is_not_resent_until_the_snapshot_changes() {
        let v1 = snapshot("v1", &[(CLUSTER, "a", "1")]);
        let mut s = DeltaSession::new();
        let r = s
            .handle_request(&req(CLUSTER, &[], ""), &v1)
            .expect("ok")
            .responses;
        ack(&mut s, &r[0], &v1);

        let v2 = snapshot("v2", &[(CLUSTER, "a", "2")]);
        let r = s.on_snapshot(&v2);
        assert_eq!(r.len(), 1);
        let mut nack = req(CLUSTER, &[], &r[0].nonce);
        nack.error_detail = Some(Status {
            code: 3,
            message: "bad cluster a".into(),
            details: vec![],
        });
        let out = s.handle_request(&nack, &v2).expect("ok");
        assert_eq!(out.nacked, Some(("v2".into(), "bad cluster a".into())));
        assert!(
            out.responses.is_empty(),
            "must not resend a refused version"
        );
        assert_eq!(
            s.status()[CLUSTER].last_nack.as_ref().map(|n| n.1.as_str()),
            Some("bad cluster a")
        );
        assert_eq!(
            s.status()[CLUSTER].last_acked_version.as_deref(),
            Some("v1")
        );

        let v3 = snapshot("v3", &[(CLUSTER, "a", "3")]);
        let r = s.on_snapshot(&v3);
        assert_eq!(r.len(), 1, "a fixed version is sent");
        assert_eq!(r[0].resources[0].version, "3");
    }

    #[test]
    fn reconnect_sends_only_what_differs() {
        let snap = snapshot("v1", &[(CLUSTER, "a", "1"), (CLUSTER, "b", "2")]);
        let mut s = DeltaSession::new();
        let mut r = req(CLUSTER, &[], "");
        r.initial_resource_versions.insert("a".into(), "1".into());
        r.initial_resource_versions
            .insert("gone".into(), "9".into());
        let out = s.handle_request(&r, &snap).expect("ok");
        assert_eq!(names(&out.responses[0]), ["b"]);
        assert!(
            out.responses[0].removed_resources.is_empty(),
            "removals wait for listeners"
        );
        let first = out.responses[0].clone();
        let out = ack(&mut s, &first, &snap);
        // Nothing refers to "gone" any more (no listener type requested): removed now.
        assert_eq!(out.responses.len(), 1);
        assert_eq!(out.responses[0].removed_resources, ["gone"]);
    }

    #[test]
    fn make_before_break_orders_clusters_listeners_then_removals() {
        let v1 = snapshot("v1", &[(CLUSTER, "old", "1"), (LISTENER, "l", "1")]);
        let mut s = DeltaSession::new();
        let c = s
            .handle_request(&req(CLUSTER, &[], ""), &v1)
            .expect("ok")
            .responses;
        ack(&mut s, &c[0], &v1);
        let l = s
            .handle_request(&req(LISTENER, &[], ""), &v1)
            .expect("ok")
            .responses;
        ack(&mut s, &l[0], &v1);

        // The listener moves from cluster "old" to cluster "new".
        let v2 = snapshot("v2", &[(CLUSTER, "new", "1"), (LISTENER, "l", "2")]);
        let step1 = s.on_snapshot(&v2);
        assert_eq!(step1.len(), 1, "only the new cluster goes first: {step1:?}");
        assert_eq!(step1[0].type_url, CLUSTER);
        assert_eq!(names(&step1[0]), ["new"]);
        assert!(step1[0].removed_resources.is_empty());

        let step2 = ack(&mut s, &step1[0], &v2).responses;
        assert_eq!(step2.len(), 1);
        assert_eq!(step2[0].type_url, LISTENER);

        let step3 = ack(&mut s, &step2[0], &v2).responses;
        assert_eq!(step3.len(), 1);
        assert_eq!(step3[0].type_url, CLUSTER);
        assert_eq!(step3[0].removed_resources, ["old"]);
        ack(&mut s, &step3[0], &v2);
        assert!(s.in_sync(&v2));
    }

    #[test]
    fn named_subscriptions_get_only_what_they_asked_and_missing_names_resolve() {
        let snap = snapshot("v1", &[(ENDPOINT, "a", "1"), (ENDPOINT, "b", "1")]);
        let mut s = DeltaSession::new();
        let out = s
            .handle_request(&req(ENDPOINT, &["a", "zzz"], ""), &snap)
            .expect("ok");
        assert_eq!(names(&out.responses[0]), ["a"]);
        assert_eq!(out.responses[0].removed_resources, ["zzz"]);
        let first = out.responses[0].clone();
        ack(&mut s, &first, &snap);
        // A later subscription arrives with an empty nonce and is answered.
        let out = s
            .handle_request(&req(ENDPOINT, &["b"], ""), &snap)
            .expect("ok");
        assert_eq!(names(&out.responses[0]), ["b"]);
    }

    #[test]
    fn stale_nonces_are_ignored() {
        let v1 = snapshot("v1", &[(CLUSTER, "a", "1")]);
        let mut s = DeltaSession::new();
        let r1 = s
            .handle_request(&req(CLUSTER, &[], ""), &v1)
            .expect("ok")
            .responses;
        ack(&mut s, &r1[0], &v1);
        let v2 = snapshot("v2", &[(CLUSTER, "a", "2")]);
        let r2 = s.on_snapshot(&v2);
        // An old nonce neither ACKs nor NACKs the response on the wire.
        let out = s
            .handle_request(&req(CLUSTER, &[], &r1[0].nonce), &v2)
            .expect("ok");
        assert_eq!(out.acked, None);
        assert!(out.responses.is_empty());
        let out = ack(&mut s, &r2[0], &v2);
        assert_eq!(out.acked.as_deref(), Some("v2"));
    }

    #[test]
    fn requests_without_a_type_are_refused() {
        let mut s = DeltaSession::new();
        assert_eq!(
            s.handle_request(&DeltaDiscoveryRequest::default(), &Snapshot::default()),
            Err(SessionError::MissingTypeUrl)
        );
    }
}

//! Counters of one KDS stream, per kind: responses and resources sent, acknowledged and refused,
//! with the last refusal's reason. The sync loops (`sync`) feed them from what the engine says;
//! the global control plane shows them in its zone insights.
//!
//! The same counters serve both ends of a stream. On a sender's stream they count what this side
//! sent and what the peer answered; on a receiver's stream, what the peer sent and what this side
//! answered. A resource counts once per response that carries it (an upsert or a removal).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use atoll_core::Kind;
use envoy_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse,
};

use crate::engine::{Received, SenderOutcome};
use crate::wire::kind_of;

/// Counters of one kind on one stream.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KindStats {
    pub responses_sent: u64,
    pub responses_acknowledged: u64,
    /// Responses answered with a NACK (some or all of their resources refused).
    pub responses_rejected: u64,
    pub resources_sent: u64,
    pub resources_acknowledged: u64,
    pub resources_rejected: u64,
    /// The message of the last NACK.
    pub last_nack: Option<String>,
    pub last_nack_time: Option<SystemTime>,
}

impl KindStats {
    fn add(&mut self, other: &KindStats) {
        self.responses_sent += other.responses_sent;
        self.responses_acknowledged += other.responses_acknowledged;
        self.responses_rejected += other.responses_rejected;
        self.resources_sent += other.resources_sent;
        self.resources_acknowledged += other.resources_acknowledged;
        self.resources_rejected += other.resources_rejected;
        if other.last_nack_time > self.last_nack_time {
            self.last_nack = other.last_nack.clone();
            self.last_nack_time = other.last_nack_time;
        }
    }
}

/// What the counters of a stream say at one moment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StreamStatsSnapshot {
    pub kinds: BTreeMap<Kind, KindStats>,
    /// When a response was last sent or answered.
    pub last_update: Option<SystemTime>,
}

impl StreamStatsSnapshot {
    /// The sum over kinds (the last NACK is the latest of any kind).
    pub fn total(&self) -> KindStats {
        let mut total = KindStats::default();
        for k in self.kinds.values() {
            total.add(k);
        }
        total
    }
}

#[derive(Debug, Default)]
struct Inner {
    snapshot: StreamStatsSnapshot,
    /// A sender's responses waiting for an answer: nonce -> (kind, resources).
    in_flight: HashMap<String, (Kind, u64)>,
}

/// The counters of one stream, shared between its loop and whoever reports them.
#[derive(Debug, Clone, Default)]
pub struct StreamStats(Arc<Mutex<Inner>>);

fn carried(resp: &DeltaDiscoveryResponse) -> u64 {
    (resp.resources.len() + resp.removed_resources.len()) as u64
}

impl StreamStats {
    pub fn new() -> Self {
        Self::default()
    }

    fn with(&self, f: impl FnOnce(&mut Inner)) {
        if let Ok(mut inner) = self.0.lock() {
            f(&mut inner);
            inner.snapshot.last_update = Some(SystemTime::now());
        }
    }

    /// The counters now.
    pub fn snapshot(&self) -> StreamStatsSnapshot {
        self.0
            .lock()
            .map(|inner| inner.snapshot.clone())
            .unwrap_or_default()
    }

    /// Sender side: a response went out.
    pub fn on_sent(&self, resp: &DeltaDiscoveryResponse) {
        let Some(kind) = kind_of(&resp.type_url) else {
            return;
        };
        let n = carried(resp);
        self.with(|inner| {
            let k = inner.snapshot.kinds.entry(kind).or_default();
            k.responses_sent += 1;
            k.resources_sent += n;
            inner.in_flight.insert(resp.nonce.clone(), (kind, n));
        });
    }

    /// Sender side: the peer's request and what the engine made of it. A subscription forgets
    /// the kind's unanswered responses (the engine starts the kind over); an ACK or NACK of a
    /// response still waiting is counted; anything else (a stale nonce) is not.
    pub fn on_answer(&self, req: &DeltaDiscoveryRequest, outcome: &SenderOutcome) {
        let Some(kind) = kind_of(&req.type_url) else {
            return;
        };
        self.with(|inner| {
            if req.response_nonce.is_empty() {
                inner.in_flight.retain(|_, (k, _)| *k != kind);
                return;
            }
            let Some((_, n)) = inner.in_flight.remove(&req.response_nonce) else {
                return;
            };
            let k = inner.snapshot.kinds.entry(kind).or_default();
            match &req.error_detail {
                None if outcome.acked => {
                    k.responses_acknowledged += 1;
                    k.resources_acknowledged += n;
                }
                None => {}
                Some(status) => {
                    let refused = (outcome.rejected.len() as u64).min(n);
                    k.responses_rejected += 1;
                    k.resources_rejected += refused;
                    k.resources_acknowledged += n - refused;
                    k.last_nack = Some(status.message.clone());
                    k.last_nack_time = Some(SystemTime::now());
                }
            }
        });
    }

    /// Receiver side: a response came in and was answered as `received` says.
    pub fn on_received(&self, resp: &DeltaDiscoveryResponse, received: &Received) {
        let Some(kind) = kind_of(&resp.type_url) else {
            return;
        };
        let n = carried(resp);
        self.with(|inner| {
            let k = inner.snapshot.kinds.entry(kind).or_default();
            k.responses_sent += 1;
            k.resources_sent += n;
            match &received.request.error_detail {
                None => {
                    k.responses_acknowledged += 1;
                    k.resources_acknowledged += n;
                }
                Some(status) => {
                    let refused = (received.rejected.len() as u64).min(n);
                    k.responses_rejected += 1;
                    k.resources_rejected += refused;
                    k.resources_acknowledged += n - refused;
                    k.last_nack = Some(status.message.clone());
                    k.last_nack_time = Some(SystemTime::now());
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{Rejection, nack_status};
    use crate::wire::type_url;
    use envoy_types::pb::envoy::service::discovery::v3::Resource as WireResource;

    fn response(kind: Kind, nonce: &str, upserts: usize, removed: usize) -> DeltaDiscoveryResponse {
        DeltaDiscoveryResponse {
            type_url: type_url(kind),
            nonce: nonce.into(),
            resources: (0..upserts)
                .map(|i| WireResource {
                    name: format!("r{i}"),
                    ..Default::default()
                })
                .collect(),
            removed_resources: (0..removed).map(|i| format!("gone{i}")).collect(),
            ..Default::default()
        }
    }

    fn answer(
        kind: Kind,
        nonce: &str,
        rejected: &[&str],
    ) -> (DeltaDiscoveryRequest, SenderOutcome) {
        let rejected: Vec<Rejection> = rejected
            .iter()
            .map(|n| Rejection {
                name: n.to_string(),
                reason: format!("{n} is broken"),
            })
            .collect();
        let req = DeltaDiscoveryRequest {
            type_url: type_url(kind),
            response_nonce: nonce.into(),
            error_detail: (!rejected.is_empty()).then(|| nack_status(&rejected)),
            ..Default::default()
        };
        let outcome = SenderOutcome {
            acked: rejected.is_empty(),
            rejected,
            ..Default::default()
        };
        (req, outcome)
    }

    #[test]
    fn sender_counts_acks_and_nacks_per_kind() {
        let stats = StreamStats::new();
        stats.on_sent(&response(Kind::Mesh, "1", 2, 0));
        stats.on_sent(&response(Kind::MeshTimeout, "2", 3, 1));
        let (req, out) = answer(Kind::Mesh, "1", &[]);
        stats.on_answer(&req, &out);
        let (req, out) = answer(Kind::MeshTimeout, "2", &["r1"]);
        stats.on_answer(&req, &out);
        // A second answer to the same nonce (or an unknown one) counts nothing.
        stats.on_answer(&req, &out);
        let (req, out) = answer(Kind::MeshTimeout, "99", &[]);
        stats.on_answer(&req, &out);

        let s = stats.snapshot();
        let mesh = &s.kinds[&Kind::Mesh];
        assert_eq!(
            (
                mesh.responses_sent,
                mesh.responses_acknowledged,
                mesh.resources_sent
            ),
            (1, 1, 2)
        );
        assert_eq!(mesh.resources_acknowledged, 2);
        let mt = &s.kinds[&Kind::MeshTimeout];
        assert_eq!(mt.responses_sent, 1);
        assert_eq!(mt.responses_rejected, 1);
        assert_eq!(mt.resources_sent, 4);
        assert_eq!(mt.resources_rejected, 1);
        assert_eq!(mt.resources_acknowledged, 3);
        assert_eq!(mt.last_nack.as_deref(), Some("r1: r1 is broken"));
        let total = s.total();
        assert_eq!(total.resources_sent, 6);
        assert_eq!(total.last_nack.as_deref(), Some("r1: r1 is broken"));
        assert!(s.last_update.is_some());
    }

    #[test]
    fn a_resubscription_forgets_unanswered_responses() {
        let stats = StreamStats::new();
        stats.on_sent(&response(Kind::Mesh, "1", 1, 0));
        let subscribe = DeltaDiscoveryRequest {
            type_url: type_url(Kind::Mesh),
            ..Default::default()
        };
        stats.on_answer(&subscribe, &SenderOutcome::default());
        let (req, out) = answer(Kind::Mesh, "1", &[]);
        stats.on_answer(&req, &out);
        let s = stats.snapshot();
        assert_eq!(s.kinds[&Kind::Mesh].responses_acknowledged, 0);
        assert_eq!(s.kinds[&Kind::Mesh].responses_sent, 1);
    }

    #[test]
    fn receiver_counts_what_it_accepted_and_refused() {
        let stats = StreamStats::new();
        let resp = response(Kind::Dataplane, "7", 3, 0);
        let ok = Received::default();
        stats.on_received(&resp, &ok);
        let rejected = vec![Rejection {
            name: "r0".into(),
            reason: "bad address".into(),
        }];
        let mut nack = Received {
            rejected: rejected.clone(),
            ..Default::default()
        };
        nack.request.error_detail = Some(nack_status(&rejected));
        stats.on_received(&resp, &nack);
        let s = stats.snapshot();
        let dp = &s.kinds[&Kind::Dataplane];
        assert_eq!(dp.responses_sent, 2);
        assert_eq!(dp.responses_acknowledged, 1);
        assert_eq!(dp.responses_rejected, 1);
        assert_eq!(dp.resources_sent, 6);
        assert_eq!(dp.resources_acknowledged, 5);
        assert_eq!(dp.resources_rejected, 1);
        assert_eq!(dp.last_nack.as_deref(), Some("r0: bad address"));
    }
}

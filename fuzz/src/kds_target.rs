//! The KDS engine: one `Sender` and one `Receiver` wired to each other, with the fuzzer choosing
//! which message is delivered next and injecting its own (structured, corrupted, or decoded by
//! prost from raw bytes) on either side, plus local store changes on both sides.
//!
//! Checked on every step: no panic, and a sender never has more than `window` unacknowledged
//! responses of one kind.

use std::collections::VecDeque;

use arbitrary::{Result, Unstructured};
use atoll_core::{Kind, Resource};
use atoll_kds::engine::{REJECTED_TYPE_URL, nack_status, rejections_of};
use atoll_kds::wire::{self, type_url};
use atoll_kds::{LocalChange, Party, Receiver, ReceiverConfig, Rejection, Sender, SenderConfig};
use envoy_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, Resource as WireResource,
};
use envoy_types::pb::google::protobuf::Any;
use envoy_types::pb::google::rpc::Status;
use prost::Message;
use serde_json::json;

/// Valid resources of every direction, some with origin labels of either side.
fn pool() -> Vec<Resource> {
    let docs = [
        json!({"type": "Mesh", "name": "default"}),
        json!({"type": "Mesh", "name": "other", "labels": {"kuma.io/origin": "global"}}),
        json!({"type": "MeshTimeout", "mesh": "default", "name": "t1",
            "spec": {"targetRef": {"kind": "Mesh"}, "to": [{"targetRef": {"kind": "Mesh"},
                "default": {"idleTimeout": "5s"}}]}}),
        json!({"type": "MeshTimeout", "mesh": "default", "name": "t2",
            "labels": {"kuma.io/origin": "global"},
            "spec": {"targetRef": {"kind": "Mesh"}, "to": [{"targetRef": {"kind": "Mesh"},
                "default": {"idleTimeout": "7s"}}]}}),
        json!({"type": "MeshRetry", "mesh": "default", "name": "r",
            "spec": {"targetRef": {"kind": "Mesh"}, "to": [{"targetRef": {"kind": "Mesh"},
                "default": {"http": {"numRetries": 3}}}]}}),
        json!({"type": "Secret", "mesh": "default", "name": "s", "data": "c2VjcmV0"}),
        json!({"type": "Secret", "mesh": "default", "name": "dataplane-token-signing-key",
            "data": "a2V5"}),
        json!({"type": "GlobalSecret", "name": "zone-token-public-key", "data": "a2V5"}),
        json!({"type": "Dataplane", "mesh": "default", "name": "web-1",
            "networking": {"address": "10.0.0.1", "inbound": [{"port": 8080,
                "tags": {"kuma.io/service": "web"}}]}}),
        json!({"type": "Dataplane", "mesh": "default", "name": "web-2",
            "labels": {"kuma.io/origin": "zone", "kuma.io/zone": "east"},
            "networking": {"address": "10.0.0.2", "inbound": [{"port": 8080,
                "tags": {"kuma.io/service": "web"}}]}}),
        json!({"type": "MeshService", "mesh": "default", "name": "redis",
            "labels": {"kuma.io/origin": "zone", "kuma.io/zone": "west"},
            "spec": {"selector": {"dataplaneTags": {"app": "redis"}},
                "ports": [{"port": 6379, "targetPort": 6379, "appProtocol": "tcp"}]}}),
        json!({"type": "MeshService", "mesh": "default", "name": "web",
            "spec": {"selector": {"dataplaneTags": {"app": "web"}},
                "ports": [{"port": 80, "targetPort": 8080, "appProtocol": "http"}]}}),
        json!({"type": "ZoneIngress", "name": "zi", "networking": {"address": "10.0.0.3",
            "port": 10001, "advertisedAddress": "1.2.3.4", "advertisedPort": 10001}}),
    ];
    docs.into_iter()
        .filter_map(|d| Resource::from_value(d).ok())
        .collect()
}

const KINDS: [Kind; 8] = [
    Kind::Mesh,
    Kind::MeshTimeout,
    Kind::MeshRetry,
    Kind::Secret,
    Kind::GlobalSecret,
    Kind::Dataplane,
    Kind::MeshService,
    Kind::ZoneIngress,
];

/// What the fuzzer picks names, versions and nonces from (plus anything it makes up).
#[derive(Default)]
struct Vocab {
    names: Vec<String>,
    versions: Vec<String>,
    nonces: Vec<String>,
    bodies: Vec<WireResource>,
}

impl Vocab {
    fn learn(&mut self, resp: &DeltaDiscoveryResponse) {
        self.nonces.push(resp.nonce.clone());
        for w in &resp.resources {
            self.names.push(w.name.clone());
            self.versions.push(w.version.clone());
            self.bodies.push(w.clone());
        }
        self.names.extend(resp.removed_resources.iter().cloned());
        // Bounded, so a long input costs linear time.
        for v in [&mut self.names, &mut self.versions, &mut self.nonces] {
            if v.len() > 64 {
                v.drain(..v.len() - 64);
            }
        }
        if self.bodies.len() > 32 {
            self.bodies.drain(..self.bodies.len() - 32);
        }
    }
}

fn pick_str(u: &mut Unstructured, known: &[String]) -> Result<String> {
    if !known.is_empty() && u.ratio(3, 4)? {
        Ok(u.choose(known)?.clone())
    } else {
        u.arbitrary()
    }
}

fn pick_type_url(u: &mut Unstructured) -> Result<String> {
    Ok(match u.int_in_range(0..=9)? {
        0 => u.arbitrary()?,
        1 => "atoll.kds/Nope".into(),
        2 => type_url(Kind::Zone),
        _ => type_url(*u.choose(&KINDS)?),
    })
}

fn fuzzed_resource(u: &mut Unstructured, pool: &[Resource]) -> Result<Resource> {
    let mut r = u.choose(pool)?.clone();
    if u.ratio(1, 3)? {
        r.name = u.arbitrary()?;
    }
    if u.ratio(1, 3)? {
        let k = if u.arbitrary()? {
            "kuma.io/origin".to_string()
        } else {
            u.arbitrary()?
        };
        r.labels.insert(k, u.arbitrary()?);
    }
    Ok(r)
}

fn fuzzed_request(u: &mut Unstructured, vocab: &Vocab) -> Result<DeltaDiscoveryRequest> {
    let mut req = DeltaDiscoveryRequest {
        type_url: pick_type_url(u)?,
        ..Default::default()
    };
    if u.arbitrary()? {
        req.response_nonce = pick_str(u, &vocab.nonces)?;
    }
    for _ in 0..u.int_in_range(0..=3)? {
        let name = pick_str(u, &vocab.names)?;
        let version = pick_str(u, &vocab.versions)?;
        req.initial_resource_versions.insert(name, version);
    }
    if u.ratio(1, 3)? {
        let mut details = Vec::new();
        for _ in 0..u.int_in_range(0..=3)? {
            let value = if u.arbitrary()? {
                json!({"name": pick_str(u, &vocab.names)?, "reason": u.arbitrary::<String>()?})
                    .to_string()
                    .into_bytes()
            } else {
                u.arbitrary()?
            };
            let type_url = if u.ratio(3, 4)? {
                REJECTED_TYPE_URL.to_string()
            } else {
                u.arbitrary()?
            };
            details.push(Any { type_url, value });
        }
        let status = Status {
            code: u.arbitrary()?,
            message: u.arbitrary()?,
            details,
        };
        // What the engine makes of it must be readable back.
        let _ = nack_status(&rejections_of(&status));
        req.error_detail = Some(status);
    }
    Ok(req)
}

fn fuzzed_response(
    u: &mut Unstructured,
    vocab: &Vocab,
    pool: &[Resource],
) -> Result<DeltaDiscoveryResponse> {
    let type_url = pick_type_url(u)?;
    let system_version_info = match u.int_in_range(0..=4)? {
        0 => u.arbitrary()?,
        1 => format!("kds:full:{}", u.arbitrary::<u64>()?),
        2 => format!("kds:full-end:{}", u.arbitrary::<u64>()?),
        _ => format!("kds:delta:{}", u.arbitrary::<u64>()?),
    };
    let mut resources = Vec::new();
    for _ in 0..u.int_in_range(0..=3)? {
        let w = match u.int_in_range(0..=4)? {
            // A real resource, maybe renamed or relabelled, in a message of any type.
            0 | 1 => wire::encode(&fuzzed_resource(u, pool)?),
            // One the sender sent, replayed.
            2 if !vocab.bodies.is_empty() => u.choose(&vocab.bodies)?.clone(),
            // A corrupted body.
            3 => {
                let mut w = wire::encode(u.choose(pool)?);
                if let Some(any) = &mut w.resource {
                    corrupt(u, &mut any.value)?;
                    if u.ratio(1, 4)? {
                        any.type_url = pick_type_url(u)?;
                    }
                }
                w
            }
            _ => WireResource {
                name: pick_str(u, &vocab.names)?,
                version: pick_str(u, &vocab.versions)?,
                resource: if u.arbitrary()? {
                    Some(Any {
                        type_url: type_url.clone(),
                        value: u.arbitrary()?,
                    })
                } else {
                    None
                },
                ..Default::default()
            },
        };
        resources.push(w);
    }
    let mut removed_resources = Vec::new();
    for _ in 0..u.int_in_range(0..=3)? {
        removed_resources.push(pick_str(u, &vocab.names)?);
    }
    Ok(DeltaDiscoveryResponse {
        system_version_info,
        resources,
        type_url,
        removed_resources,
        nonce: u.arbitrary()?,
        ..Default::default()
    })
}

/// Overwrites, inserts or removes a few bytes.
fn corrupt(u: &mut Unstructured, bytes: &mut Vec<u8>) -> Result<()> {
    for _ in 0..u.int_in_range(1..=4)? {
        if bytes.is_empty() {
            bytes.push(u.arbitrary()?);
            continue;
        }
        let at = u.choose_index(bytes.len())?;
        match u.int_in_range(0..=2)? {
            0 => bytes[at] = u.arbitrary()?,
            1 => bytes.insert(at, u.arbitrary()?),
            _ => {
                bytes.remove(at);
            }
        }
    }
    Ok(())
}

fn raw<M: Message + Default>(u: &mut Unstructured) -> Result<Option<M>> {
    let len = u.int_in_range(0..=512)?;
    let bytes = u.bytes(len.min(u.len()))?;
    Ok(M::decode(bytes).ok())
}

/// Runs one interleaving.
pub fn kds(data: &[u8]) {
    let _ = run(&mut Unstructured::new(data));
}

fn run(u: &mut Unstructured) -> Result<()> {
    let pool = pool();
    let zone_sends: bool = u.arbitrary()?;
    let (local, peer) = if zone_sends {
        (Party::zone("east"), Party::Global)
    } else {
        (Party::Global, Party::zone("east"))
    };
    let mut config = SenderConfig::new(local.clone(), peer.clone());
    // Small budgets and windows, so chunking and flow control are reached.
    config.max_message_bytes = u.int_in_range(0..=4096)?;
    config.window = u.int_in_range(0..=3)?;
    let window = config.window.max(1);
    let mut sender = Sender::new(config);
    let mut existing = Vec::new();
    for r in &pool {
        if u.arbitrary()? {
            existing.push(atoll_kds::naming::synced_copy(r, &local));
        }
    }
    let mut receiver = Receiver::new(
        ReceiverConfig {
            local: peer,
            peer: local,
            declare_held: u.arbitrary()?,
        },
        existing,
    );
    let mut vocab = Vocab::default();
    let mut to_receiver: VecDeque<DeltaDiscoveryResponse> = VecDeque::new();
    let mut to_sender: VecDeque<DeltaDiscoveryRequest> = receiver.subscribe().into();
    for kind in KINDS {
        let state: Vec<Resource> = pool.iter().filter(|r| r.kind == kind).cloned().collect();
        to_receiver.extend(sender.set_state(kind, state));
    }

    while !u.is_empty() {
        match u.int_in_range(0..=11)? {
            // The other side's real traffic.
            0 | 1 => {
                if let Some(resp) = to_receiver.pop_front() {
                    vocab.learn(&resp);
                    let received = receiver.on_response(&resp);
                    check_received(&received.rejected, &received.request);
                    to_sender.push_back(received.request);
                }
            }
            2 | 3 => {
                if let Some(req) = to_sender.pop_front() {
                    deliver(&mut sender, &req, &mut to_receiver);
                }
            }
            // Made-up messages.
            4 => {
                let req = fuzzed_request(u, &vocab)?;
                deliver(&mut sender, &req, &mut to_receiver);
            }
            5 => {
                let resp = fuzzed_response(u, &vocab, &pool)?;
                let received = receiver.on_response(&resp);
                check_received(&received.rejected, &received.request);
            }
            6 => {
                if let Some(req) = raw::<DeltaDiscoveryRequest>(u)? {
                    deliver(&mut sender, &req, &mut to_receiver);
                }
            }
            7 => {
                if let Some(resp) = raw::<DeltaDiscoveryResponse>(u)? {
                    let received = receiver.on_response(&resp);
                    check_received(&received.rejected, &received.request);
                }
            }
            // Local store changes.
            8 => {
                let change = if u.arbitrary()? {
                    LocalChange::Upsert(fuzzed_resource(u, &pool)?)
                } else {
                    LocalChange::Delete(u.choose(&pool)?.key())
                };
                to_receiver.extend(sender.on_local_change(change));
            }
            9 => {
                let kind = *u.choose(&KINDS)?;
                let mut state = Vec::new();
                for _ in 0..u.int_in_range(0..=4)? {
                    state.push(fuzzed_resource(u, &pool)?);
                }
                to_receiver.extend(sender.set_state(kind, state));
            }
            10 => {
                let change = if u.arbitrary()? {
                    LocalChange::Upsert(fuzzed_resource(u, &pool)?)
                } else {
                    LocalChange::Delete(u.choose(&pool)?.key())
                };
                receiver.on_local_change(change);
            }
            // A reconnect of the receiver's side: subscribe again.
            _ => to_sender.extend(receiver.subscribe()),
        }
        for kind in KINDS {
            if let Some(status) = sender.status(kind) {
                assert!(
                    status.in_flight <= window,
                    "{kind}: {} responses in flight, window {window}",
                    status.in_flight
                );
            }
        }
        let _ = (sender.in_sync(), sender.awaiting_answer());
        let _ = receiver.all_full_states_complete();
    }
    Ok(())
}

fn deliver(
    sender: &mut Sender,
    req: &DeltaDiscoveryRequest,
    to_receiver: &mut VecDeque<DeltaDiscoveryResponse>,
) {
    match sender.on_request(req) {
        Ok(outcome) => to_receiver.extend(outcome.responses),
        Err(e) => assert!(!e.to_string().is_empty()),
    }
    // A peer that never reads must not make the queue grow without bound here.
    while to_receiver.len() > 256 {
        to_receiver.pop_front();
    }
}

/// A NACK names every refused resource, and an ACK refuses none.
fn check_received(rejected: &[Rejection], request: &DeltaDiscoveryRequest) {
    match &request.error_detail {
        Some(status) if !rejected.is_empty() => {
            let named = rejections_of(status);
            assert_eq!(
                named.len(),
                rejected.len(),
                "a NACK must name what it refuses"
            );
        }
        Some(_) => {}
        None => assert!(rejected.is_empty(), "refused resources without a NACK"),
    }
}

//! One Envoy's delta ADS session fed a sequence of requests (structured from a vocabulary of
//! types, names, versions and the nonces the session sent, or decoded by prost from raw bytes)
//! and of snapshot changes.
//!
//! Checked on every step, besides not panicking: at most one response per type is unanswered
//! (a response for a type goes out only once the previous one was ACKed or NACKed), and a
//! response never both sends and removes one name.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use arbitrary::{Result, Unstructured};
use atoll_xds_server::session::{
    CLUSTER, DeltaSession, ENDPOINT, LISTENER, ROUTE, SECRET, Snapshot, SnapshotResource,
};
use envoy_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse,
};
use envoy_types::pb::google::protobuf::Any;
use envoy_types::pb::google::rpc::Status;
use prost::Message;

const TYPES: [&str; 5] = [LISTENER, CLUSTER, ENDPOINT, ROUTE, SECRET];
const NAMES: [&str; 5] = ["a", "b", "c", "d", "*"];
const VERSIONS: [&str; 3] = ["1", "2", "3"];

fn pick_type(u: &mut Unstructured) -> Result<String> {
    Ok(match u.int_in_range(0..=11)? {
        0 => String::new(),
        1 => u.arbitrary()?,
        _ => u.choose(&TYPES)?.to_string(),
    })
}

fn pick_name(u: &mut Unstructured) -> Result<String> {
    if u.ratio(7, 8)? {
        Ok(u.choose(&NAMES)?.to_string())
    } else {
        u.arbitrary()
    }
}

fn fuzzed_snapshot(u: &mut Unstructured, seq: u64) -> Result<Snapshot> {
    let mut snapshot = Snapshot {
        version: format!("s{seq}"),
        resources: BTreeMap::new(),
    };
    for t in TYPES {
        let mut of_type = BTreeMap::new();
        for name in &NAMES[..4] {
            if u.arbitrary()? {
                let version = u.choose(&VERSIONS)?.to_string();
                let resource = Arc::new(Any {
                    type_url: t.to_string(),
                    value: version.as_bytes().to_vec(),
                });
                of_type.insert(name.to_string(), SnapshotResource { version, resource });
            }
        }
        if !of_type.is_empty() {
            snapshot.resources.insert(t.to_string(), of_type);
        }
    }
    Ok(snapshot)
}

fn fuzzed_request(
    u: &mut Unstructured,
    sent: &HashMap<String, Vec<String>>,
) -> Result<DeltaDiscoveryRequest> {
    let type_url = pick_type(u)?;
    let mut req = DeltaDiscoveryRequest {
        type_url: type_url.clone(),
        ..Default::default()
    };
    for _ in 0..u.int_in_range(0..=3)? {
        req.resource_names_subscribe.push(pick_name(u)?);
    }
    for _ in 0..u.int_in_range(0..=2)? {
        req.resource_names_unsubscribe.push(pick_name(u)?);
    }
    if u.ratio(1, 4)? {
        for _ in 0..u.int_in_range(0..=3)? {
            req.initial_resource_versions
                .insert(pick_name(u)?, u.choose(&VERSIONS)?.to_string());
        }
    }
    // Mostly the latest nonce of the type (an ACK or NACK), sometimes an older or made-up one.
    req.response_nonce = match (u.int_in_range(0..=5)?, sent.get(&type_url)) {
        (0, _) => String::new(),
        (1, _) => u.arbitrary()?,
        (2, Some(nonces)) if !nonces.is_empty() => u.choose(nonces)?.clone(),
        (_, Some(nonces)) => nonces.last().cloned().unwrap_or_default(),
        (_, None) => String::new(),
    };
    if u.ratio(1, 4)? {
        req.error_detail = Some(Status {
            code: 13,
            message: u.arbitrary()?,
            details: Vec::new(),
        });
    }
    Ok(req)
}

/// Runs one sequence.
pub fn xds(data: &[u8]) {
    let _ = run(&mut Unstructured::new(data));
}

fn run(u: &mut Unstructured) -> Result<()> {
    let mut session = DeltaSession::new();
    let mut seq = 0;
    let mut snapshot = fuzzed_snapshot(u, seq)?;
    // Nonces sent per type, and the one waiting for an answer.
    let mut sent: HashMap<String, Vec<String>> = HashMap::new();
    let mut in_flight: HashMap<String, String> = HashMap::new();
    while !u.is_empty() {
        let responses = match u.int_in_range(0..=7)? {
            0..=4 => {
                let req = fuzzed_request(u, &sent)?;
                request(&mut session, &req, &snapshot, &mut in_flight)
            }
            5 => {
                let len = u.int_in_range(0..=256)?;
                let bytes = u.bytes(len.min(u.len()))?;
                match DeltaDiscoveryRequest::decode(bytes) {
                    Ok(req) => request(&mut session, &req, &snapshot, &mut in_flight),
                    Err(_) => Vec::new(),
                }
            }
            6 => {
                seq += 1;
                snapshot = fuzzed_snapshot(u, seq)?;
                session.on_snapshot(&snapshot)
            }
            _ => {
                let _ = session.in_sync(&snapshot);
                let _ = session.status();
                Vec::new()
            }
        };
        let mut types = BTreeSet::new();
        for resp in responses {
            assert!(
                types.insert(resp.type_url.clone()),
                "two responses of {} at once",
                resp.type_url
            );
            assert!(
                !in_flight.contains_key(&resp.type_url),
                "a second response of {} before the first was answered",
                resp.type_url
            );
            check_response(&resp);
            in_flight.insert(resp.type_url.clone(), resp.nonce.clone());
            let nonces = sent.entry(resp.type_url).or_default();
            nonces.push(resp.nonce);
            if nonces.len() > 8 {
                nonces.remove(0);
            }
        }
    }
    Ok(())
}

fn request(
    session: &mut DeltaSession,
    req: &DeltaDiscoveryRequest,
    snapshot: &Snapshot,
    in_flight: &mut HashMap<String, String>,
) -> Vec<DeltaDiscoveryResponse> {
    match session.handle_request(req, snapshot) {
        Ok(outcome) => {
            // The request answered the response of its type on the wire, if its nonce matches.
            if in_flight.get(&req.type_url) == Some(&req.response_nonce) {
                in_flight.remove(&req.type_url);
            }
            outcome.responses
        }
        Err(e) => {
            assert!(req.type_url.is_empty(), "refused a typed request: {e}");
            Vec::new()
        }
    }
}

fn check_response(resp: &DeltaDiscoveryResponse) {
    let sent: BTreeSet<&str> = resp.resources.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(sent.len(), resp.resources.len(), "a name sent twice");
    for name in &resp.removed_resources {
        assert!(
            !sent.contains(name.as_str()),
            "{name} both sent and removed"
        );
    }
}

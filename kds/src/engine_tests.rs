//! Tests of the sync engine: a `Sender` and a `Receiver` driven against each other in memory.

use super::*;
use crate::direction::Side;
use crate::naming::{hashed_name, synced_copy};
use serde_json::json;

type Store = BTreeMap<ResourceKey, Resource>;

fn east() -> Party {
    Party::zone("east")
}

fn west() -> Party {
    Party::zone("west")
}

fn doc(value: Value) -> Resource {
    Resource::from_value(value).expect("valid test resource")
}

fn mesh(name: &str) -> Resource {
    doc(json!({"type": "Mesh", "name": name}))
}

fn timeout(name: &str, idle: &str) -> Resource {
    doc(json!({
        "type": "MeshTimeout", "mesh": "default", "name": name,
        "spec": {"targetRef": {"kind": "Mesh"}, "to": [{
            "targetRef": {"kind": "MeshService", "name": "backend"},
            "default": {"idleTimeout": idle, "connectionTimeout": "2s",
                "http": {"requestTimeout": "15s", "streamIdleTimeout": "30m"}}
        }]}
    }))
}

fn dataplane(i: usize) -> Resource {
    doc(json!({
        "type": "Dataplane", "mesh": "default", "name": format!("web-{i}"),
        "networking": {
            "address": format!("10.{}.{}.{}", i / 65536 % 256, i / 256 % 256, i % 256),
            "inbound": [{"port": 8080, "servicePort": 8081,
                "tags": {"kuma.io/service": format!("web-{}", i % 50), "kuma.io/protocol": "http"}}]
        }
    }))
}

fn service(name: &str) -> Resource {
    doc(json!({
        "type": "MeshService", "mesh": "default", "name": name,
        "spec": {"selector": {"dataplaneTags": {"app": name}},
            "ports": [{"port": 6379, "targetPort": 6379, "appProtocol": "tcp"}]}
    }))
}

fn key(kind: Kind, mesh: &str, name: &str) -> ResourceKey {
    ResourceKey::new(kind, mesh, name)
}

fn apply(store: &mut Store, actions: &[Action]) {
    for a in actions {
        match a {
            Action::Upsert(r) => {
                store.insert(r.key(), r.clone());
            }
            Action::Delete(k) => {
                store.remove(k);
            }
        }
    }
}

#[derive(Debug, Default)]
struct Trace {
    responses: Vec<DeltaDiscoveryResponse>,
    requests: Vec<DeltaDiscoveryRequest>,
    actions: Vec<Action>,
}

impl Trace {
    fn of(&self, kind: Kind) -> Vec<&DeltaDiscoveryResponse> {
        self.responses
            .iter()
            .filter(|r| r.type_url == type_url(kind))
            .collect()
    }
}

/// Delivers requests and responses between one sender and one receiver until both are quiet.
fn exchange(
    sender: &mut Sender,
    receiver: &mut Receiver,
    store: &mut Store,
    requests: Vec<DeltaDiscoveryRequest>,
    responses: Vec<DeltaDiscoveryResponse>,
) -> Trace {
    let window = sender.config().window;
    let budget = sender.config().max_message_bytes;
    let mut reqs: VecDeque<_> = requests.into();
    let mut resps: VecDeque<_> = responses.into();
    let mut trace = Trace::default();
    loop {
        if let Some(q) = reqs.pop_front() {
            trace.requests.push(q.clone());
            let out = sender.on_request(&q).expect("request handled");
            resps.extend(out.responses);
            let kind = kind_of(&q.type_url).expect("known kind");
            let status = sender.status(kind).expect("served kind");
            assert!(status.in_flight <= window, "window exceeded: {status:?}");
            continue;
        }
        if let Some(p) = resps.pop_front() {
            assert!(
                p.encoded_len() <= budget,
                "response of {} bytes over the {budget} budget",
                p.encoded_len()
            );
            let out = receiver.on_response(&p);
            apply(store, &out.actions);
            trace.actions.extend(out.actions);
            reqs.push_back(out.request);
            trace.responses.push(p);
            continue;
        }
        return trace;
    }
}

fn connect(sender: &mut Sender, receiver: &mut Receiver, store: &mut Store) -> Trace {
    let subs = receiver.subscribe();
    exchange(sender, receiver, store, subs, Vec::new())
}

fn global_sender() -> Sender {
    Sender::new(SenderConfig::new(Party::Global, east()))
}

fn zone_receiver(existing: &Store) -> Receiver {
    Receiver::new(
        ReceiverConfig::new(east(), Party::Global),
        existing.values().cloned(),
    )
}

fn synced_timeout(name: &str, idle: &str) -> Resource {
    synced_copy(&timeout(name, idle), &Party::Global)
}

#[test]
fn markers_round_trip() {
    for m in [
        Marker::Full {
            chunk: 1,
            last: false,
        },
        Marker::Full {
            chunk: 7,
            last: true,
        },
        Marker::Delta { seq: 3 },
    ] {
        assert_eq!(Marker::parse(&m.format()), Some(m));
    }
    assert_eq!(
        Marker::parse("kds:full-end:1"),
        Some(Marker::Full {
            chunk: 1,
            last: true
        })
    );
    assert_eq!(Marker::parse("v1"), None);
    assert_eq!(Marker::parse("kds:full:x"), None);
}

#[test]
fn full_state_then_deltas() {
    let mut global = global_sender();
    assert!(global.set_state(Kind::Mesh, [mesh("default")]).is_empty());
    assert!(
        global
            .set_state(
                Kind::MeshTimeout,
                [timeout("t1", "5s"), timeout("t2", "6s")]
            )
            .is_empty(),
        "nothing is sent before a subscription"
    );
    let mut store = Store::new();
    let mut zone = zone_receiver(&store);
    let trace = connect(&mut global, &mut zone, &mut store);

    // Every kind is answered with a complete full state, even when empty.
    let kinds: Vec<Kind> = zone.kinds().collect();
    assert_eq!(kinds, kinds_sent_by(Side::Global));
    for kind in &kinds {
        let first = trace.of(*kind);
        assert_eq!(first.len(), 1, "{kind}");
        assert_eq!(first[0].system_version_info, "kds:full-end:1", "{kind}");
    }
    assert!(zone.all_full_states_complete());
    assert!(global.in_sync());
    let t1 = hashed_name("default", "t1", &[]);
    let t2 = hashed_name("default", "t2", &[]);
    assert_eq!(
        store.keys().cloned().collect::<Vec<_>>(),
        [
            key(Kind::Mesh, "", "default"),
            key(Kind::MeshTimeout, "default", &t1),
            key(Kind::MeshTimeout, "default", &t2),
        ]
    );
    let copy = &store[&key(Kind::MeshTimeout, "default", &t1)];
    assert_eq!(copy.labels["kuma.io/display-name"], "t1");
    assert_eq!(copy.labels["kuma.io/origin"], "global");
    assert_eq!(copy.spec, timeout("t1", "5s").spec);

    // Deltas: change t1, delete t2, add t3.
    let mut out = global.on_local_change(LocalChange::Upsert(timeout("t1", "9s")));
    out.extend(global.on_local_change(LocalChange::Delete(key(
        Kind::MeshTimeout,
        "default",
        "t2",
    ))));
    out.extend(global.on_local_change(LocalChange::Upsert(timeout("t3", "1s"))));
    let trace = exchange(&mut global, &mut zone, &mut store, Vec::new(), out);
    assert!(
        trace
            .responses
            .iter()
            .all(|r| r.system_version_info.starts_with("kds:delta:"))
    );
    let t3 = hashed_name("default", "t3", &[]);
    assert_eq!(
        trace.actions,
        [
            Action::Upsert(synced_timeout("t1", "9s")),
            Action::Delete(key(Kind::MeshTimeout, "default", &t2)),
            Action::Upsert(synced_timeout("t3", "1s")),
        ]
    );
    assert!(store.contains_key(&key(Kind::MeshTimeout, "default", &t3)));
    assert!(global.in_sync());

    // A change to a kind that does not flow to zones, or to nothing, sends nothing.
    assert!(
        global
            .on_local_change(LocalChange::Upsert(dataplane(1)))
            .is_empty()
    );
    assert!(
        global
            .on_local_change(LocalChange::Upsert(timeout("t3", "1s")))
            .is_empty(),
        "unchanged content is not resent"
    );
}

#[test]
fn full_state_prunes_what_the_sender_lacks_and_touches_nothing_unchanged() {
    for declare in [false, true] {
        let mut store = Store::new();
        for r in [
            synced_timeout("t1", "5s"),
            synced_timeout("gone", "5s"),
            // Created in this zone: never pruned by global's full state.
            doc(
                json!({"type": "MeshTimeout", "mesh": "default", "name": "local",
                "labels": {"kuma.io/origin": "zone", "kuma.io/zone": "east"},
                "spec": {"targetRef": {"kind": "Mesh"}, "to": [{"targetRef": {"kind": "Mesh"},
                    "default": {"idleTimeout": "1s"}}]}}),
            ),
            doc(
                json!({"type": "MeshTimeout", "mesh": "default", "name": "unlabelled",
                "spec": {"targetRef": {"kind": "Mesh"}, "to": [{"targetRef": {"kind": "Mesh"},
                    "default": {"idleTimeout": "1s"}}]}}),
            ),
        ] {
            store.insert(r.key(), r);
        }
        let mut global = global_sender();
        global.set_state(Kind::MeshTimeout, [timeout("t1", "5s")]);
        let mut config = ReceiverConfig::new(east(), Party::Global);
        config.declare_held = declare;
        let mut zone = Receiver::new(config, store.values().cloned());
        let trace = connect(&mut global, &mut zone, &mut store);
        let gone = key(
            Kind::MeshTimeout,
            "default",
            &hashed_name("default", "gone", &[]),
        );
        assert_eq!(trace.actions, [Action::Delete(gone)], "declare={declare}");
        let sent: usize = trace
            .of(Kind::MeshTimeout)
            .iter()
            .map(|r| r.resources.len())
            .sum();
        assert_eq!(sent, if declare { 0 } else { 1 }, "declare={declare}");
        let names: Vec<&str> = store.keys().map(|k| k.name.as_str()).collect();
        assert_eq!(names.len(), 3);
        assert!(names.contains(&"local") && names.contains(&"unlabelled"));
    }
}

#[test]
fn one_bad_resource_is_nacked_while_the_others_apply() {
    let mut bad = timeout("bad", "5s");
    bad.spec = json!({"spec": {"targetRef": {"kind": "Bogus"}}})
        .as_object()
        .cloned()
        .unwrap_or_default();
    let mut global = global_sender();
    global.set_state(
        Kind::MeshTimeout,
        [timeout("a", "5s"), bad.clone(), timeout("z", "5s")],
    );
    let mut store = Store::new();
    let mut zone = zone_receiver(&store);
    let trace = connect(&mut global, &mut zone, &mut store);
    let bad_wire = format!("default/{}", hashed_name("default", "bad", &[]));

    assert_eq!(store.len(), 2, "the good ones are applied");
    let nacks: Vec<&DeltaDiscoveryRequest> = trace
        .requests
        .iter()
        .filter(|r| r.error_detail.is_some())
        .collect();
    assert_eq!(nacks.len(), 1);
    let status = nacks[0].error_detail.as_ref().expect("nack");
    assert!(status.message.starts_with(&bad_wire), "{}", status.message);
    assert!(
        status.message.contains("spec.targetRef"),
        "{}",
        status.message
    );
    let rejected = rejections_of(status);
    assert_eq!(rejected.len(), 1);
    assert_eq!(rejected[0].name, bad_wire);

    let st = global.status(Kind::MeshTimeout).expect("served");
    assert_eq!(st.rejected.keys().collect::<Vec<_>>(), [&bad_wire]);
    assert!(st.last_nack.is_some());
    assert!(global.in_sync(), "a refused version is not resent");
    assert!(zone.full_state_complete(Kind::MeshTimeout));

    // The stream goes on: deltas still flow, and a fixed version is sent and accepted.
    let out = global.on_local_change(LocalChange::Upsert(timeout("a", "7s")));
    let trace = exchange(&mut global, &mut zone, &mut store, Vec::new(), out);
    assert_eq!(trace.actions.len(), 1);
    let out = global.on_local_change(LocalChange::Upsert(timeout("bad", "5s")));
    let trace = exchange(&mut global, &mut zone, &mut store, Vec::new(), out);
    assert_eq!(trace.actions.len(), 1);
    assert!(trace.requests.iter().all(|r| r.error_detail.is_none()));
    assert_eq!(store.len(), 3);
    let st = global.status(Kind::MeshTimeout).expect("served");
    assert!(st.rejected.is_empty());
}

#[test]
fn reconnect_resends_only_what_changed_and_removes_what_went() {
    let mut global_state: Vec<Resource> =
        (0..50).map(|i| timeout(&format!("t{i}"), "5s")).collect();
    let mut global = global_sender();
    global.set_state(Kind::Mesh, [mesh("default")]);
    global.set_state(Kind::MeshTimeout, global_state.clone());
    let mut store = Store::new();
    let mut zone = zone_receiver(&store);
    connect(&mut global, &mut zone, &mut store);
    assert_eq!(store.len(), 51);

    // The connection drops; meanwhile global changes t1, deletes t2 and adds t99.
    global_state[1] = timeout("t1", "8s");
    global_state.remove(2);
    global_state.push(timeout("t99", "5s"));
    let mut global = global_sender();
    global.set_state(Kind::Mesh, [mesh("default")]);
    global.set_state(Kind::MeshTimeout, global_state);
    // The zone restarts from its store.
    let mut zone = zone_receiver(&store);
    let before = store.clone();
    let trace = connect(&mut global, &mut zone, &mut store);

    let sent: Vec<&str> = trace
        .responses
        .iter()
        .flat_map(|r| r.resources.iter().map(|w| w.name.as_str()))
        .collect();
    let t1 = hashed_name("default", "t1", &[]);
    let t2 = hashed_name("default", "t2", &[]);
    let t99 = hashed_name("default", "t99", &[]);
    assert_eq!(
        sent,
        [format!("default/{t1}"), format!("default/{t99}")],
        "only changed resources are resent"
    );
    let removed: Vec<&String> = trace
        .responses
        .iter()
        .flat_map(|r| &r.removed_resources)
        .collect();
    assert_eq!(removed, [&format!("default/{t2}")]);
    assert_eq!(
        trace.actions,
        [
            Action::Upsert(synced_timeout("t1", "8s")),
            Action::Upsert(synced_timeout("t99", "5s")),
            Action::Delete(key(Kind::MeshTimeout, "default", &t2)),
        ]
    );
    assert_eq!(store.len(), 51);
    assert_eq!(
        store[&key(Kind::Mesh, "", "default")],
        before[&key(Kind::Mesh, "", "default")]
    );
    assert!(zone.all_full_states_complete() && global.in_sync());
}

#[test]
fn resources_never_go_back_to_their_zone() {
    let from_east = synced_copy(&service("redis"), &east());
    let from_west = synced_copy(&service("redis"), &west());

    // Global relays west's MeshService to east, never east's own.
    let mut global = global_sender();
    global.set_state(Kind::MeshService, [from_east.clone(), from_west.clone()]);
    global.set_state(Kind::Dataplane, [synced_copy(&dataplane(1), &west())]);
    let mut store = Store::new();
    let mut zone = zone_receiver(&store);
    connect(&mut global, &mut zone, &mut store);
    assert_eq!(store.values().collect::<Vec<_>>(), [&from_west]);

    // East sends what it created (stamped or not), not what it received.
    let mut east_sender = Sender::new(SenderConfig::new(east(), Party::Global));
    let mut stamped = service("db");
    stamped
        .labels
        .insert("kuma.io/origin".into(), "zone".into());
    stamped.labels.insert("kuma.io/zone".into(), "east".into());
    east_sender.set_state(
        Kind::MeshService,
        [service("redis"), stamped, from_west.clone()],
    );
    east_sender.set_state(Kind::MeshTimeout, [synced_timeout("t", "5s")]);
    let mut global_store = Store::new();
    let mut global_receiver = Receiver::new(ReceiverConfig::new(Party::Global, east()), []);
    connect(&mut east_sender, &mut global_receiver, &mut global_store);
    let mut names: Vec<String> = global_store
        .values()
        .map(|r| {
            assert_eq!(r.labels["kuma.io/zone"], "east");
            r.labels["kuma.io/display-name"].clone()
        })
        .collect();
    names.sort();
    assert_eq!(names, ["db", "redis"]);

    // Receivers refuse echoes and resources that claim another zone.
    let forged = |r: &Resource, nonce: &str| DeltaDiscoveryResponse {
        system_version_info: "kds:delta:1".into(),
        resources: vec![encode(r)],
        type_url: type_url(r.kind),
        nonce: nonce.into(),
        ..Default::default()
    };
    let out = zone.on_response(&forged(&from_east, "n1"));
    assert!(out.actions.is_empty());
    assert!(
        out.rejected[0].reason.contains("echo"),
        "{:?}",
        out.rejected
    );
    let out = global_receiver.on_response(&forged(&from_west, "n2"));
    assert!(out.actions.is_empty());
    assert!(
        out.request
            .error_detail
            .as_ref()
            .is_some_and(|s| s.message.contains("zone \"east\"")),
        "{:?}",
        out.request
    );
    // A kind the peer does not send is refused as a whole.
    let out = global_receiver.on_response(&forged(&synced_copy(&mesh("other"), &east()), "n3"));
    assert!(out.actions.is_empty() && out.request.error_detail.is_some());
}

#[test]
fn a_zone_policy_goes_up_to_global_and_no_further() {
    // East created `local-timeout`; it also holds `t`, received from global.
    let mut east_sender = Sender::new(SenderConfig::new(east(), Party::Global));
    east_sender.set_state(
        Kind::MeshTimeout,
        [timeout("local-timeout", "7s"), synced_timeout("t", "5s")],
    );
    let mut global_store = Store::new();
    let mut global_receiver = Receiver::new(ReceiverConfig::new(Party::Global, east()), []);
    connect(&mut east_sender, &mut global_receiver, &mut global_store);
    let up: Vec<&Resource> = global_store.values().collect();
    assert_eq!(up.len(), 1, "only east's own policy goes up: {up:?}");
    assert_eq!(up[0].labels["kuma.io/origin"], "zone");
    assert_eq!(up[0].labels["kuma.io/zone"], "east");
    assert_eq!(up[0].labels["kuma.io/display-name"], "local-timeout");
    assert_ne!(
        up[0].name, "local-timeout",
        "named with the zone's hash on global"
    );

    // Global sends its own policies to every zone, but east's policy to none: not back to
    // east, and not to west (it selects only east's proxies).
    let from_east = up[0].clone();
    let own = timeout("global-timeout", "9s");
    for zone in [east(), west()] {
        let mut global = Sender::new(SenderConfig::new(Party::Global, zone.clone()));
        global.set_state(Kind::MeshTimeout, [from_east.clone(), own.clone()]);
        let mut store = Store::new();
        let mut receiver = Receiver::new(ReceiverConfig::new(zone.clone(), Party::Global), []);
        connect(&mut global, &mut receiver, &mut store);
        let names: Vec<&str> = store
            .values()
            .map(|r| r.labels["kuma.io/display-name"].as_str())
            .collect();
        assert_eq!(names, ["global-timeout"], "{zone}");
    }
}

#[test]
fn a_local_resource_is_not_overwritten_by_a_synced_one() {
    // A Secret keeps its name when synced: a zone's own Secret of that name is not replaced.
    let secret = doc(json!({"type": "Secret", "mesh": "default", "name": "tls", "data": "YQ=="}));
    let mut store = Store::new();
    store.insert(secret.key(), secret.clone());
    let mut global = global_sender();
    let mut theirs = secret.clone();
    theirs.spec.insert("data".into(), json!("Yg=="));
    global.set_state(Kind::Secret, [theirs]);
    let mut zone = zone_receiver(&store);
    let trace = connect(&mut global, &mut zone, &mut store);
    assert!(trace.actions.is_empty());
    assert_eq!(store[&secret.key()], secret);
    let st = global.status(Kind::Secret).expect("served");
    assert!(
        st.rejected["default/tls"].contains("was not synced"),
        "{st:?}"
    );
}

fn ten_thousand_chunked(budget: usize) {
    let mut config = SenderConfig::new(Party::Global, east());
    config.max_message_bytes = budget;
    let mut global = Sender::new(config);
    global.set_state(
        Kind::MeshTimeout,
        (0..10_000).map(|i| timeout(&format!("timeout-{i:05}"), "5s")),
    );
    let mut store = Store::new();
    let mut zone = zone_receiver(&store);
    // `exchange` checks every response against the budget and the window after every request.
    let trace = connect(&mut global, &mut zone, &mut store);
    let chunks = trace.of(Kind::MeshTimeout);
    assert!(chunks.len() > 2, "{} chunks", chunks.len());
    for (i, c) in chunks.iter().enumerate() {
        let want = if i + 1 == chunks.len() {
            format!("kds:full-end:{}", i + 1)
        } else {
            format!("kds:full:{}", i + 1)
        };
        assert_eq!(c.system_version_info, want);
        assert!(c.encoded_len() <= budget);
    }
    assert_eq!(store.len(), 10_000);
    assert!(zone.all_full_states_complete() && global.in_sync());
}

#[test]
fn ten_thousand_resources_are_chunked_under_the_default_budget() {
    ten_thousand_chunked(DEFAULT_MAX_MESSAGE_BYTES);
}

#[test]
fn ten_thousand_resources_are_chunked_under_a_small_budget() {
    ten_thousand_chunked(32 * 1024);
}

/// One frame on the one connection between a zone and global (both streams multiplexed, the
/// worst case: data and ACKs of both directions share one bounded pipe per direction).
#[derive(Debug)]
enum Frame {
    Request(Box<DeltaDiscoveryRequest>),
    Response(Box<DeltaDiscoveryResponse>),
}

/// One control plane: the sender of its outgoing stream, the receiver of its incoming one.
struct Peer {
    sender: Sender,
    receiver: Receiver,
    store: Store,
    outbox: VecDeque<Frame>,
    max_outbox: usize,
}

impl Peer {
    /// Writes what the pipe takes, then reads everything that arrived, whether or not its own
    /// writes are done: reading never waits for writing.
    /// Returns whether the pipe was full with frames still waiting (write pressure).
    fn step(
        &mut self,
        out: &mut VecDeque<Frame>,
        incoming: &mut VecDeque<Frame>,
        cap: usize,
    ) -> bool {
        while out.len() < cap {
            let Some(f) = self.outbox.pop_front() else {
                break;
            };
            out.push_back(f);
        }
        let blocked = !self.outbox.is_empty();
        while let Some(frame) = incoming.pop_front() {
            match frame {
                Frame::Request(q) => {
                    let o = self.sender.on_request(&q).expect("request handled");
                    self.outbox.extend(
                        o.responses
                            .into_iter()
                            .map(|r| Frame::Response(Box::new(r))),
                    );
                }
                Frame::Response(p) => {
                    let o = self.receiver.on_response(&p);
                    assert!(o.rejected.is_empty(), "{:?}", o.rejected);
                    apply(&mut self.store, &o.actions);
                    self.outbox.push_back(Frame::Request(Box::new(o.request)));
                }
            }
        }
        self.max_outbox = self.max_outbox.max(self.outbox.len());
        blocked
    }
}

#[test]
fn both_sides_push_bulk_at_once() {
    const N: usize = 5_000;
    const CAP: usize = 4;
    let window = 2;
    let budget = 32 * 1024;
    let sender = |local: Party, peer: Party| {
        let mut c = SenderConfig::new(local, peer);
        c.window = window;
        c.max_message_bytes = budget;
        Sender::new(c)
    };
    let mut global = Peer {
        sender: sender(Party::Global, east()),
        receiver: Receiver::new(ReceiverConfig::new(Party::Global, east()), []),
        store: Store::new(),
        outbox: VecDeque::new(),
        max_outbox: 0,
    };
    let mut zone = Peer {
        sender: sender(east(), Party::Global),
        receiver: Receiver::new(ReceiverConfig::new(east(), Party::Global), []),
        store: Store::new(),
        outbox: VecDeque::new(),
        max_outbox: 0,
    };
    global.sender.set_state(Kind::Mesh, [mesh("default")]);
    global.sender.set_state(
        Kind::MeshTimeout,
        (0..N).map(|i| timeout(&format!("t-{i}"), "5s")),
    );
    zone.sender
        .set_state(Kind::Dataplane, (0..N).map(dataplane));
    let subs = global.receiver.subscribe();
    global
        .outbox
        .extend(subs.into_iter().map(|r| Frame::Request(Box::new(r))));
    let subs = zone.receiver.subscribe();
    zone.outbox
        .extend(subs.into_iter().map(|r| Frame::Request(Box::new(r))));

    let mut to_zone = VecDeque::new();
    let mut to_global = VecDeque::new();
    let mut both_full = 0;
    let mut steps = 0;
    loop {
        let g = global.step(&mut to_zone, &mut to_global, CAP);
        let z = zone.step(&mut to_global, &mut to_zone, CAP);
        if g && z {
            both_full += 1;
        }
        let quiet = global.outbox.is_empty()
            && zone.outbox.is_empty()
            && to_zone.is_empty()
            && to_global.is_empty();
        if quiet {
            break;
        }
        steps += 1;
        assert!(steps < 1_000_000, "no progress: deadlock");
    }
    assert!(global.receiver.all_full_states_complete());
    assert!(zone.receiver.all_full_states_complete());
    assert!(global.sender.in_sync() && zone.sender.in_sync());
    assert_eq!(zone.store.len(), N + 1);
    assert_eq!(global.store.len(), N);
    assert!(
        both_full > 0,
        "both sides never had writes waiting at once: no pressure"
    );
    // What waits to be written stays bounded by the windows, not by the data.
    let g_kinds = kinds_sent_by(Side::Global).len();
    let z_kinds = kinds_sent_by(Side::Zone).len();
    let bound = (g_kinds + z_kinds) * (window + 1);
    assert!(
        global.max_outbox <= bound && zone.max_outbox <= bound,
        "outboxes grew to {} and {} (bound {bound})",
        global.max_outbox,
        zone.max_outbox
    );
}

#[test]
fn bad_requests_are_errors_and_stale_nonces_are_ignored() {
    let mut global = global_sender();
    let req = |t: &str, nonce: &str| DeltaDiscoveryRequest {
        type_url: t.into(),
        response_nonce: nonce.into(),
        ..Default::default()
    };
    assert_eq!(
        global.on_request(&req("atoll.kds/Nope", "")),
        Err(EngineError::UnknownType("atoll.kds/Nope".into()))
    );
    assert!(matches!(
        global.on_request(&req(&type_url(Kind::Dataplane), "")),
        Err(EngineError::NotSent {
            kind: Kind::Dataplane,
            ..
        })
    ));
    global.set_state(Kind::Mesh, [mesh("default")]);
    let first = global
        .on_request(&req(&type_url(Kind::Mesh), ""))
        .expect("subscribed");
    assert_eq!(first.responses.len(), 1);
    let stale = global
        .on_request(&req(&type_url(Kind::Mesh), "999"))
        .expect("ignored");
    assert!(!stale.acked && stale.responses.is_empty());
    assert_eq!(global.status(Kind::Mesh).map(|s| s.in_flight), Some(1));
    let ack = global
        .on_request(&req(&type_url(Kind::Mesh), &first.responses[0].nonce))
        .expect("acked");
    assert!(ack.acked);
    assert!(global.in_sync());
}
